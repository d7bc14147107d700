//! The scorer's own metrics, served at `/metrics` in the Prometheus text format.

use std::collections::{BTreeSet, HashMap};
use std::fmt::Write;
use std::sync::Mutex;
use std::sync::atomic::AtomicU64;

use outrider_protocol::{BatchOutcome, ClosedSet, PollResult};
use prometheus_client::encoding::{EncodeLabelSet, EncodeLabelValue, LabelValueEncoder};
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::registry::Registry;

use crate::rollout::Status;

outrider_protocol::closed_set! {
    /// What became of a posted feedback event.
    pub enum FeedbackResult {
        /// Stored.
        Accepted => "accepted",
        /// Its `event_id` was stored before; nothing changed.
        Duplicate => "duplicate",
    }
}

/// A member of a closed set as a label value: its name.
#[derive(Clone, Copy, Debug, Hash, PartialEq, Eq)]
pub struct Named<T>(pub T);

impl<T: ClosedSet> EncodeLabelValue for Named<T> {
    fn encode(&self, encoder: &mut LabelValueEncoder) -> Result<(), std::fmt::Error> {
        encoder.write_str(self.0.name())
    }
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct HttpLabels {
    pub route: String,
    pub method: String,
    pub status: u16,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct BatchLabels {
    pub result: Named<BatchOutcome>,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct FeedbackLabels {
    pub result: Named<FeedbackResult>,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct PollLabels {
    pub rollout: String,
    pub result: Named<PollResult>,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct VariantLabels {
    pub rollout: String,
    pub variant: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct RunLabels {
    pub rollout: String,
    pub outcome: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct RegistryLabels {
    pub model: String,
    pub result: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct JobLabels {
    pub model: String,
    pub status: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct NotifyLabels {
    pub sink: String,
    pub result: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct RolloutLabels {
    pub rollout: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct VerdictLabels {
    pub rollout: String,
    pub verdict: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct StatusLabels {
    pub rollout: String,
    pub status: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct ModelLabels {
    pub model: String,
    pub version: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct FeatureLabels {
    pub model: String,
    pub version: String,
    pub feature: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct StatisticLabels {
    pub model: String,
    pub version: String,
    pub feature: String,
    pub statistic: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct WindowLabels {
    pub model: String,
    pub version: String,
    /// `judged` or `insufficient_data`.
    pub result: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct FindingLabels {
    pub model: String,
    pub version: String,
    pub kind: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct PerformanceLabels {
    pub model: String,
    pub version: String,
    /// `precision` or `recall` (and `pr_auc`, realised).
    pub metric: String,
    /// `value`, `low` or `high`.
    pub bound: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, PartialOrd, Ord, EncodeLabelSet)]
pub struct ChangeLabels {
    pub rollout: String,
    pub status: String,
    /// Who made the change in effect (`controller`, `analysis`, `experiment`,
    /// `guardrail`, `shadow`, `api`, ...).
    pub actor: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct ShadowLabels {
    pub rollout: String,
    pub variant: String,
    /// `pass`, `fail` or `insufficient_data`.
    pub verdict: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct JobModelLabels {
    pub model: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, PartialOrd, Ord, EncodeLabelSet)]
pub struct SubjectLabels {
    pub model: String,
    pub version: String,
    pub kind: String,
    /// The feature or the metric the finding is about; empty (no label) for dataset
    /// and prediction drift.
    pub subject: String,
}

/// The verdicts of a shadow report.
const SHADOW_VERDICTS: [&str; 3] = ["pass", "fail", "insufficient_data"];

type FloatGauge = Gauge<f64, AtomicU64>;

/// The model monitor's series.
pub struct ModelMetrics {
    pub feature_drift: Family<StatisticLabels, FloatGauge>,
    pub feature_drifted: Family<FeatureLabels, Gauge>,
    pub feature_missing: Family<FeatureLabels, FloatGauge>,
    pub dataset_drift_share: Family<ModelLabels, FloatGauge>,
    pub findings: Family<FindingLabels, Gauge>,
    pub windows: Family<WindowLabels, Counter>,
    pub estimated: Family<PerformanceLabels, FloatGauge>,
    pub realised: Family<PerformanceLabels, FloatGauge>,
    pub monitoring: Gauge,
    /// 1 while a finding holds, 0 once it no longer does.
    pub finding: Family<SubjectLabels, Gauge>,
    /// The findings shown at 1, per model version, to set to 0 when they clear.
    holding: Mutex<HashMap<(String, String), BTreeSet<SubjectLabels>>>,
}

pub struct Metrics {
    registry: Registry,
    pub model: ModelMetrics,
    pub http_requests: Family<HttpLabels, Counter>,
    pub telemetry_batches: Family<BatchLabels, Counter>,
    pub ingested_requests: Family<VariantLabels, Counter>,
    pub feedback_events: Family<FeedbackLabels, Counter>,
    pub state_polls: Family<PollLabels, Counter>,
    pub leader: Gauge,
    pub controller_steps: Counter,
    pub analysis_runs: Family<RunLabels, Counter>,
    pub retrain_jobs: Family<JobLabels, Counter>,
    pub registry_promotions: Family<RegistryLabels, Counter>,
    pub experiment_runs: Family<VerdictLabels, Counter>,
    pub alert_notifications: Family<NotifyLabels, Counter>,
    pub rollout_status: Family<StatusLabels, Gauge>,
    pub rollout_step: Family<RolloutLabels, Gauge>,
    pub rollout_weight: Family<VariantLabels, Gauge<f64, AtomicU64>>,
    pub analysis_last: Family<RunLabels, Gauge>,
    pub judge_score: Family<VariantLabels, Gauge<f64, AtomicU64>>,
    pub rollout_change: Family<ChangeLabels, Gauge>,
    pub rollout_baseline: Family<VariantLabels, Gauge>,
    pub shadow_gate: Family<ShadowLabels, Gauge>,
    pub shadow_min_agreement: Family<RolloutLabels, FloatGauge>,
    pub retrain_latest_failed: Family<JobModelLabels, Gauge>,
    /// The series last set per rollout, removed when its labels change.
    shown: Mutex<HashMap<String, (ChangeLabels, VariantLabels)>>,
}

impl Default for Metrics {
    fn default() -> Self {
        Self::new()
    }
}

impl Metrics {
    pub fn new() -> Self {
        let mut registry = Registry::with_prefix("outrider_scorer");
        let http_requests = Family::default();
        registry.register(
            "http_requests",
            "API requests by route, method and status",
            http_requests.clone(),
        );
        let telemetry_batches = Family::default();
        registry.register(
            "telemetry_batches",
            "Telemetry batches received, applied or duplicate",
            telemetry_batches.clone(),
        );
        let ingested_requests = Family::default();
        registry.register(
            "ingested_requests",
            "Requests counted by filters, by rollout and variant, as ingested",
            ingested_requests.clone(),
        );
        let feedback_events = Family::default();
        registry.register(
            "feedback_events",
            "Feedback events, accepted or duplicate",
            feedback_events.clone(),
        );
        let state_polls = Family::default();
        registry.register(
            "state_polls",
            "Rollout state polls by rollout and result (ok, not_modified)",
            state_polls.clone(),
        );
        let leader = Gauge::default();
        registry.register(
            "leader",
            "1 while this replica runs rollout decisions",
            leader.clone(),
        );
        let controller_steps = Counter::default();
        registry.register(
            "controller_steps",
            "Rollout changes made by the controller",
            controller_steps.clone(),
        );
        let registry_promotions = Family::default();
        registry.register(
            "registry_promotions",
            "Promoted model versions made the registry's champion, by model and result (ok, failed)",
            registry_promotions.clone(),
        );
        let retrain_jobs = Family::default();
        registry.register(
            "retrain_jobs",
            "Retraining jobs this replica ran to their end, by model and status (succeeded, failed)",
            retrain_jobs.clone(),
        );
        let analysis_runs = Family::default();
        registry.register(
            "analysis_runs",
            "Analysis runs by rollout and outcome (passed, failed, inconclusive)",
            analysis_runs.clone(),
        );
        let experiment_runs = Family::default();
        registry.register(
            "experiment_runs",
            "Experiment runs by rollout and verdict (sample_ratio_mismatch, not_judged, continue, winner, guardrail_lost, no_winner)",
            experiment_runs.clone(),
        );
        let alert_notifications = Family::default();
        registry.register(
            "alert_notifications",
            "Alerts posted to Alertmanager and webhooks, by sink and result (sent, failed)",
            alert_notifications.clone(),
        );
        let rollout_status = Family::default();
        registry.register(
            "rollout_status",
            "1 for each rollout's status (pending, shadowing, progressing, paused, promoted, rolled_back, aborted, concluded), 0 for the others",
            rollout_status.clone(),
        );
        let rollout_step = Family::default();
        registry.register(
            "rollout_step",
            "The step in effect, from 1; 0 without a running schedule",
            rollout_step.clone(),
        );
        let rollout_weight = Family::default();
        registry.register(
            "rollout_weight_percent",
            "Each variant's weight in effect, in percent",
            rollout_weight.clone(),
        );
        let analysis_last = Family::default();
        registry.register(
            "analysis_last_run",
            "1 for the outcome of each rollout's latest analysis run, 0 for the others",
            analysis_last.clone(),
        );
        let judge_score = Family::default();
        registry.register(
            "analysis_judge_score",
            "The canary judge's 0-100 score of each candidate in the latest analysis run",
            judge_score.clone(),
        );
        let model = ModelMetrics {
            feature_drift: Family::default(),
            feature_drifted: Family::default(),
            feature_missing: Family::default(),
            dataset_drift_share: Family::default(),
            findings: Family::default(),
            windows: Family::default(),
            estimated: Family::default(),
            realised: Family::default(),
            monitoring: Gauge::default(),
            finding: Family::default(),
            holding: Mutex::default(),
        };
        registry.register(
            "finding",
            "1 while a finding of the model monitor holds for the model version, by kind and subject (the feature, or the metric); 0 once it cleared",
            model.finding.clone(),
        );
        let rollout_change = Family::default();
        registry.register(
            "rollout_last_change",
            "1, labelled with each rollout's status and the actor of the change in effect (controller, analysis, experiment, guardrail, shadow, api)",
            rollout_change.clone(),
        );
        let rollout_baseline = Family::default();
        registry.register(
            "rollout_baseline",
            "1 for the baseline variant of each rollout (the one its candidates are compared with)",
            rollout_baseline.clone(),
        );
        let shadow_gate = Family::default();
        registry.register(
            "shadow_gate",
            "1 for the verdict of each shadow variant's report against its rollout's shadow gate (pass, fail, insufficient_data), 0 for the others",
            shadow_gate.clone(),
        );
        let shadow_min_agreement = Family::default();
        registry.register(
            "shadow_gate_min_agreement",
            "The share of compared requests a shadow must agree on to pass its rollout's shadow gate",
            shadow_min_agreement.clone(),
        );
        let retrain_latest_failed = Family::default();
        registry.register(
            "retrain_latest_failed",
            "1 when the newest retraining job of a model with a policy failed, 0 otherwise",
            retrain_latest_failed.clone(),
        );
        registry.register(
            "feature_drift",
            "Each input feature's (and the score's) drift statistic in its version's latest judged window (psi, js_distance, ks_statistic, wasserstein_normed, chi2)",
            model.feature_drift.clone(),
        );
        registry.register(
            "feature_drifted",
            "1 when the feature (or the score) drifted in its version's latest judged window",
            model.feature_drifted.clone(),
        );
        registry.register(
            "feature_missing_share",
            "Share of the latest window's samples without the feature (absent, null or not a number)",
            model.feature_missing.clone(),
        );
        registry.register(
            "dataset_drift_share",
            "Share of the input features that drifted in the version's latest judged window",
            model.dataset_drift_share.clone(),
        );
        registry.register(
            "model_findings",
            "Findings holding for each model version, by kind (feature_drift, dataset_drift, prediction_drift, feature_missing, estimated_performance_drop, realised_performance_drop)",
            model.findings.clone(),
        );
        registry.register(
            "drift_windows",
            "Windows of model versions judged by this replica, by result (judged, insufficient_data)",
            model.windows.clone(),
        );
        registry.register(
            "estimated_performance",
            "CBPE's estimate of precision and recall in the version's latest judged window, with its band (value, low, high)",
            model.estimated.clone(),
        );
        registry.register(
            "realised_performance",
            "Precision, recall and PR AUC on the version's labelled window, with their 95% intervals (value, low, high)",
            model.realised.clone(),
        );
        registry.register(
            "model_monitoring",
            "1 while the model monitor runs (the scorer has a --registry)",
            model.monitoring.clone(),
        );
        Self {
            registry,
            model,
            http_requests,
            telemetry_batches,
            ingested_requests,
            feedback_events,
            state_polls,
            leader,
            controller_steps,
            analysis_runs,
            retrain_jobs,
            registry_promotions,
            experiment_runs,
            alert_notifications,
            rollout_status,
            rollout_step,
            rollout_weight,
            analysis_last,
            judge_score,
            rollout_change,
            rollout_baseline,
            shadow_gate,
            shadow_min_agreement,
            retrain_latest_failed,
            shown: Mutex::default(),
        }
    }

    /// Sets a rollout's status with the actor of its change in effect, its baseline,
    /// and its shadows' verdicts: what the scorer's rollout alerts are computed from.
    pub fn observe_alert_facts(
        &self,
        rollout: &crate::rollout::Rollout,
        last_event: Option<&crate::rollout::Event>,
        shadows: &[crate::shadow_report::ShadowReport],
    ) {
        let actor = last_event
            .filter(|e| e.version == rollout.version)
            .map_or("", |e| e.actor.as_str());
        let change = ChangeLabels {
            rollout: rollout.name.clone(),
            status: rollout.status.as_str().to_owned(),
            actor: actor.to_owned(),
        };
        let baseline = VariantLabels {
            rollout: rollout.name.clone(),
            variant: rollout
                .variants
                .first()
                .map(|v| v.name.clone())
                .unwrap_or_default(),
        };
        let mut shown = self.shown.lock().unwrap_or_else(|e| e.into_inner());
        if let Some((old_change, old_baseline)) = shown.get(&rollout.name) {
            if *old_change != change {
                self.rollout_change.remove(old_change);
            }
            if *old_baseline != baseline {
                self.rollout_baseline.remove(old_baseline);
            }
        }
        self.rollout_change.get_or_create(&change).set(1);
        self.rollout_baseline.get_or_create(&baseline).set(1);
        shown.insert(rollout.name.clone(), (change, baseline));
        drop(shown);
        self.shadow_min_agreement
            .get_or_create(&RolloutLabels {
                rollout: rollout.name.clone(),
            })
            .set(rollout.shadow_gate.min_agreement);
        for report in shadows {
            for verdict in SHADOW_VERDICTS {
                self.shadow_gate
                    .get_or_create(&ShadowLabels {
                        rollout: rollout.name.clone(),
                        variant: report.variant.clone(),
                        verdict: verdict.to_owned(),
                    })
                    .set(i64::from(report.verdict == verdict));
            }
        }
    }

    /// Sets whether a model's newest retraining job failed.
    pub fn observe_latest_job(&self, model: &str, newest: Option<&crate::retrain::Job>) {
        let failed = newest.is_some_and(|j| j.status == crate::retrain::JobStatus::Failed);
        self.retrain_latest_failed
            .get_or_create(&JobModelLabels {
                model: model.to_owned(),
            })
            .set(i64::from(failed));
    }

    /// Sets the findings that hold for a model version to 1, and to 0 those that could
    /// hold (`candidates`: every feature, the score and the metrics judged) and those
    /// that held before and no longer do, so a query sees a 0 rather than nothing.
    pub fn observe_findings(
        &self,
        model: &str,
        version: u64,
        candidates: &[crate::monitor::findings::FindingKey],
        findings: &[crate::monitor::findings::Finding],
    ) {
        use outrider_protocol::ClosedSet as _;
        let version = version.to_string();
        let labels = |key: &crate::monitor::findings::FindingKey| SubjectLabels {
            model: model.to_owned(),
            version: version.clone(),
            kind: key.kind.name().to_owned(),
            subject: key.subject.clone(),
        };
        let now: BTreeSet<SubjectLabels> = findings.iter().map(|f| labels(&f.key)).collect();
        for candidate in candidates.iter().map(labels) {
            if !now.contains(&candidate) {
                self.model.finding.get_or_create(&candidate).set(0);
            }
        }
        let mut holding = self.model.holding.lock().unwrap_or_else(|e| e.into_inner());
        let before = holding
            .insert((model.to_owned(), version.clone()), now.clone())
            .unwrap_or_default();
        for cleared in before.difference(&now) {
            self.model.finding.get_or_create(cleared).set(0);
        }
        for held in &now {
            self.model.finding.get_or_create(held).set(1);
        }
    }

    /// Sets the rollout gauges from the rollouts as stored, and the latest run's
    /// outcome where there is one.
    pub fn observe(
        &self,
        rollout: &crate::rollout::Rollout,
        last_run: Option<&crate::analysis::Run>,
    ) {
        for status in Status::ALL.map(Status::as_str) {
            self.rollout_status
                .get_or_create(&StatusLabels {
                    rollout: rollout.name.clone(),
                    status: status.to_owned(),
                })
                .set(i64::from(rollout.status.as_str() == status));
        }
        self.rollout_step
            .get_or_create(&RolloutLabels {
                rollout: rollout.name.clone(),
            })
            .set(rollout.step.map_or(0, |s| s as i64 + 1));
        for v in &rollout.variants {
            self.rollout_weight
                .get_or_create(&VariantLabels {
                    rollout: rollout.name.clone(),
                    variant: v.name.clone(),
                })
                .set(v.weight);
        }
        if let Some(run) = last_run {
            let last = run.outcome.as_str();
            for check in run
                .checks
                .iter()
                .filter(|c| c.metric == crate::analysis::Metric::Judge)
            {
                if let Some(score) = check.value {
                    self.judge_score
                        .get_or_create(&VariantLabels {
                            rollout: rollout.name.clone(),
                            variant: check.candidate.clone(),
                        })
                        .set(score);
                }
            }
            for outcome in ["passed", "failed", "inconclusive"] {
                self.analysis_last
                    .get_or_create(&RunLabels {
                        rollout: rollout.name.clone(),
                        outcome: outcome.to_owned(),
                    })
                    .set(i64::from(last == outcome));
            }
        }
    }

    /// Counts a window this replica judged and stored.
    pub fn observe_window_judged(&self, w: &crate::monitor::judge::WindowReport) {
        self.model
            .windows
            .get_or_create(&WindowLabels {
                model: w.model.clone(),
                version: w.version.to_string(),
                result: if w.judged {
                    "judged"
                } else {
                    "insufficient_data"
                }
                .to_owned(),
            })
            .inc();
    }

    /// Sets a version's gauges from its latest window (a judged one keeps the
    /// figures of the last judged window until the next).
    pub fn observe_model(&self, w: &crate::monitor::judge::WindowReport) {
        use crate::monitor::findings::FindingKind;
        use outrider_protocol::ClosedSet as _;
        let (model, version) = (w.model.clone(), w.version.to_string());
        for kind in FindingKind::ALL {
            let n = w.findings.iter().filter(|f| f.key.kind == *kind).count();
            self.model
                .findings
                .get_or_create(&FindingLabels {
                    model: model.clone(),
                    version: version.clone(),
                    kind: kind.name().to_owned(),
                })
                .set(n as i64);
        }
        if !w.judged {
            return;
        }
        let feature = |name: &str| FeatureLabels {
            model: model.clone(),
            version: version.clone(),
            feature: name.to_owned(),
        };
        for f in w.features.iter().chain([&w.prediction]) {
            self.model
                .feature_missing
                .get_or_create(&feature(&f.name))
                .set(f.missing_share);
            self.model
                .feature_drifted
                .get_or_create(&feature(&f.name))
                .set(i64::from(
                    f.verdict == crate::monitor::judge::Verdict::Drifted,
                ));
            let Some(s) = &f.statistics else { continue };
            let figures = [
                ("psi", Some(s.psi)),
                ("js_distance", Some(s.js_distance)),
                ("ks_statistic", s.ks_statistic),
                ("wasserstein_normed", s.wasserstein_normed),
                ("chi2", s.chi2),
            ];
            for (statistic, value) in figures {
                if let Some(v) = value {
                    self.model
                        .feature_drift
                        .get_or_create(&StatisticLabels {
                            model: model.clone(),
                            version: version.clone(),
                            feature: f.name.clone(),
                            statistic: statistic.to_owned(),
                        })
                        .set(v);
                }
            }
        }
        self.model
            .dataset_drift_share
            .get_or_create(&ModelLabels {
                model: model.clone(),
                version: version.clone(),
            })
            .set(w.dataset.share);
        if let Some(p) = &w.performance {
            for (metric, e) in [
                ("precision", p.estimate.precision),
                ("recall", p.estimate.recall),
            ] {
                self.set_bounds(
                    &self.model.estimated,
                    &model,
                    &version,
                    metric,
                    [e.value, e.low, e.high],
                );
            }
        }
    }

    /// Sets a version's realised-performance gauges.
    pub fn observe_realised(&self, p: &crate::monitor::realised::RealisedPerformance) {
        let version = p.version.to_string();
        let r = &p.realised;
        for (metric, i) in [
            ("precision", r.precision),
            ("recall", r.recall),
            ("pr_auc", r.pr_auc),
        ] {
            if let Some(i) = i {
                self.set_bounds(
                    &self.model.realised,
                    &p.model,
                    &version,
                    metric,
                    [i.value, i.low, i.high],
                );
            }
        }
    }

    fn set_bounds(
        &self,
        family: &Family<PerformanceLabels, FloatGauge>,
        model: &str,
        version: &str,
        metric: &str,
        values: [f64; 3],
    ) {
        for (bound, v) in ["value", "low", "high"].into_iter().zip(values) {
            family
                .get_or_create(&PerformanceLabels {
                    model: model.to_owned(),
                    version: version.to_owned(),
                    metric: metric.to_owned(),
                    bound: bound.to_owned(),
                })
                .set(v);
        }
    }

    pub fn encode(&self) -> String {
        let mut out = String::new();
        // Writing into a String cannot fail.
        let _ = prometheus_client::encoding::text::encode(&mut out, &self.registry);
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Typed labels are written as the names of their members.
    #[test]
    fn labels_are_the_names_of_results() {
        let metrics = Metrics::new();
        metrics
            .state_polls
            .get_or_create(&PollLabels {
                rollout: "fraud".into(),
                result: Named(PollResult::NotModified),
            })
            .inc();
        metrics
            .telemetry_batches
            .get_or_create(&BatchLabels {
                result: Named(BatchOutcome::Duplicate),
            })
            .inc_by(2);
        metrics
            .feedback_events
            .get_or_create(&FeedbackLabels {
                result: Named(FeedbackResult::Accepted),
            })
            .inc_by(3);
        let text = metrics.encode();
        for line in [
            "outrider_scorer_state_polls_total{rollout=\"fraud\",result=\"not_modified\"} 1",
            "outrider_scorer_telemetry_batches_total{result=\"duplicate\"} 2",
            "outrider_scorer_feedback_events_total{result=\"accepted\"} 3",
        ] {
            assert!(text.lines().any(|l| l == line), "{line} not in\n{text}");
        }
    }

    fn rollout() -> crate::rollout::Rollout {
        let req: crate::rollout::CreateRequest = serde_json::from_value(serde_json::json!({
            "name": "fraud",
            "variants": [{"name": "stable", "weight": 90}, {"name": "canary", "weight": 10}]
        }))
        .unwrap();
        crate::rollout::Rollout::create(req, &crate::rollout::Attribution::default(), 1_000)
            .unwrap()
            .0
    }

    fn has(text: &str, line: &str) -> bool {
        text.lines().any(|l| l == line)
    }

    /// The rollout alerts' facts: one status-and-actor series per rollout, replaced (not
    /// added to) when the rollout changes; the baseline; each shadow's verdict.
    #[test]
    fn a_rollouts_change_in_effect_is_one_series_with_its_actor() {
        let metrics = Metrics::new();
        let r = rollout();
        let by = |actor: &str| crate::rollout::Attribution {
            actor: actor.into(),
            reason: "test".into(),
        };
        let gate = r.shadow_gate;
        let mut failing =
            crate::shadow_report::report(&outrider_protocol::ShadowCounts::default(), &gate);
        failing.variant = "candidate".into();
        failing.verdict = "fail";
        metrics.observe_alert_facts(&r, None, std::slice::from_ref(&failing));
        let text = metrics.encode();
        for line in [
            r#"outrider_scorer_rollout_last_change{rollout="fraud",status="progressing",actor=""} 1"#,
            r#"outrider_scorer_rollout_baseline{rollout="fraud",variant="stable"} 1"#,
            r#"outrider_scorer_shadow_gate{rollout="fraud",variant="candidate",verdict="fail"} 1"#,
            r#"outrider_scorer_shadow_gate{rollout="fraud",variant="candidate",verdict="pass"} 0"#,
            r#"outrider_scorer_shadow_gate_min_agreement{rollout="fraud"} 0.99"#,
        ] {
            assert!(has(&text, line), "{line} not in\n{text}");
        }
        let (back, event) = r.rollback(&by("guardrail"), 5_000).unwrap();
        metrics.observe_alert_facts(&back, Some(&event), &[]);
        let text = metrics.encode();
        assert!(
            has(
                &text,
                r#"outrider_scorer_rollout_last_change{rollout="fraud",status="rolled_back",actor="guardrail"} 1"#
            ),
            "{text}"
        );
        assert_eq!(
            text.matches("outrider_scorer_rollout_last_change{").count(),
            1,
            "the earlier change's series is gone:\n{text}"
        );
        // An event of another version names no actor of the change in effect.
        let (paused, _) = r.pause(&by("alice"), 6_000).unwrap();
        let mut older = event.clone();
        older.version = paused.version - 1;
        metrics.observe_alert_facts(&paused, Some(&older), &[]);
        let text = metrics.encode();
        assert!(
            has(
                &text,
                r#"outrider_scorer_rollout_last_change{rollout="fraud",status="paused",actor=""} 1"#
            ),
            "{text}"
        );
    }

    #[test]
    fn the_newest_job_of_a_model_says_whether_it_failed() {
        let metrics = Metrics::new();
        let job = |status: &str| -> crate::retrain::Job {
            serde_json::from_value(serde_json::json!({"id": 3, "model": "fraud",
                "status": status, "trigger": "drift", "reason": "r", "created_ms": 1}))
            .unwrap()
        };
        metrics.observe_latest_job("fraud", Some(&job("failed")));
        assert!(has(
            &metrics.encode(),
            r#"outrider_scorer_retrain_latest_failed{model="fraud"} 1"#
        ));
        metrics.observe_latest_job("fraud", Some(&job("queued")));
        assert!(has(
            &metrics.encode(),
            r#"outrider_scorer_retrain_latest_failed{model="fraud"} 0"#
        ));
        metrics.observe_latest_job("other", None);
        assert!(has(
            &metrics.encode(),
            r#"outrider_scorer_retrain_latest_failed{model="other"} 0"#
        ));
    }

    #[test]
    fn findings_show_1_while_they_hold_and_0_once_cleared() {
        use crate::monitor::findings::{Finding, FindingKey, FindingKind};
        let key = |kind, subject: &str| FindingKey {
            kind,
            subject: subject.into(),
        };
        let finding = |k: FindingKey| Finding {
            key: k,
            windows: 2,
            of: 3,
            detail: String::new(),
            since_ms: 0,
        };
        let metrics = Metrics::new();
        let candidates = [
            key(FindingKind::FeatureDrift, "amount"),
            key(FindingKind::FeatureDrift, "hour"),
            key(FindingKind::DatasetDrift, ""),
        ];
        metrics.observe_findings(
            "fraud",
            2,
            &candidates,
            &[finding(key(FindingKind::FeatureDrift, "amount"))],
        );
        let text = metrics.encode();
        for line in [
            r#"outrider_scorer_finding{model="fraud",version="2",kind="feature_drift",subject="amount"} 1"#,
            r#"outrider_scorer_finding{model="fraud",version="2",kind="feature_drift",subject="hour"} 0"#,
            r#"outrider_scorer_finding{model="fraud",version="2",kind="dataset_drift",subject=""} 0"#,
        ] {
            assert!(has(&text, line), "{line} not in\n{text}");
        }
        // Cleared with no candidate naming it (a window with no features): still 0.
        metrics.observe_findings("fraud", 2, &[], &[]);
        assert!(has(
            &metrics.encode(),
            r#"outrider_scorer_finding{model="fraud",version="2",kind="feature_drift",subject="amount"} 0"#
        ));
    }
}
