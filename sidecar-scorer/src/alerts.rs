//! Alerts: which conditions hold for a rollout now, as Alertmanager alerts (labels,
//! annotations with a runbook link, when they started). Pure: [`crate::notifier`]
//! evaluates them on the leader, sends them to Alertmanager and webhooks, and stores
//! every firing and resolution.
//!
//! - `OutriderRolloutRolledBack`: rolled back, by the analysis or by a person;
//! - `OutriderRolloutAborted`: stopped before the candidate was trusted (a failed
//!   shadow gate, or a person);
//! - `OutriderGuardrailTripped`: rolled back because a filter's guardrail tripped;
//! - `OutriderAnalysisInconclusive`: paused by the analysis after inconclusive runs;
//! - `OutriderShadowGateFailed`: a shadow variant fails the rollout's shadow gate;
//! - `OutriderSampleRatioMismatch`: an experiment paused because its variants' counts
//!   are not what its weights promise.
//!
//! And per model version, from the monitor's findings ([`ModelFacts`]):
//!
//! - `OutriderFeatureDrift`: an input feature drifted from the reference;
//! - `OutriderDatasetDrift`: a large share of the features drifted together;
//! - `OutriderPredictionDrift`: the score's distribution moved;
//! - `OutriderFeatureMissing`: many samples lack a feature (a broken pipeline);
//! - `OutriderEstimatedPerformanceDrop`: CBPE's estimated precision or recall fell;
//! - `OutriderRealisedPerformanceDrop`: precision or recall on labelled samples fell.
//!
//! An alert lasts while its condition holds, and resolves when it clears (a new change
//! to the rollout, a shadow back within its gate, a finding that no longer holds).

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

use crate::monitor::findings::{Finding, FindingKind};
use crate::rollout::{Event, Rollout, Status};
use crate::shadow_report::ShadowReport;

/// Every alert the scorer raises; each has its section in `docs/runbook.md`.
pub const NAMES: [&str; 13] = [
    "OutriderRolloutRolledBack",
    "OutriderRolloutAborted",
    "OutriderGuardrailTripped",
    "OutriderAnalysisInconclusive",
    "OutriderShadowGateFailed",
    "OutriderSampleRatioMismatch",
    "OutriderRetrainingFailed",
    "OutriderFeatureDrift",
    "OutriderDatasetDrift",
    "OutriderPredictionDrift",
    "OutriderFeatureMissing",
    "OutriderEstimatedPerformanceDrop",
    "OutriderRealisedPerformanceDrop",
];

/// One alert as Alertmanager takes it, with when it started.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Alert {
    pub labels: BTreeMap<String, String>,
    pub annotations: BTreeMap<String, String>,
    pub starts_ms: u64,
}

impl Alert {
    pub fn name(&self) -> &str {
        self.labels.get("alertname").map_or("", String::as_str)
    }

    /// A stable id of the alert: FNV-1a over its sorted labels, as 16 hex digits.
    pub fn fingerprint(&self) -> String {
        let mut hash: u64 = 0xcbf2_9ce4_8422_2325;
        for (k, v) in &self.labels {
            for byte in k.bytes().chain([0xff]).chain(v.bytes()).chain([0xfe]) {
                hash ^= u64::from(byte);
                hash = hash.wrapping_mul(0x0100_0000_01b3);
            }
        }
        format!("{hash:016x}")
    }
}

/// What the alerts of one rollout are computed from.
pub struct Facts<'a> {
    pub rollout: &'a Rollout,
    /// The event of the rollout's current version (its last change).
    pub last_event: Option<&'a Event>,
    pub shadows: &'a [ShadowReport],
}

fn alert(
    name: &str,
    severity: &str,
    rollout: &str,
    extra: &[(&str, &str)],
    text: (String, String),
    runbook_url: &str,
    starts_ms: u64,
) -> Alert {
    labelled(
        name,
        severity,
        &[("rollout", rollout)],
        extra,
        text,
        runbook_url,
        starts_ms,
    )
}

/// An alert about `subject` (its rollout, or its model and version).
fn labelled(
    name: &str,
    severity: &str,
    subject: &[(&str, &str)],
    extra: &[(&str, &str)],
    (summary, description): (String, String),
    runbook_url: &str,
    starts_ms: u64,
) -> Alert {
    let mut labels: BTreeMap<String, String> = [
        ("alertname", name),
        ("severity", severity),
        ("service", "outrider"),
    ]
    .iter()
    .chain(subject)
    .chain(extra)
    .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
    .collect();
    labels.retain(|_, v| !v.is_empty());
    let anchor = name.to_ascii_lowercase();
    let annotations = [
        ("summary", summary),
        ("description", description),
        ("runbook_url", format!("{runbook_url}#{anchor}")),
    ]
    .into_iter()
    .map(|(k, v)| (k.to_owned(), v))
    .collect();
    Alert {
        labels,
        annotations,
        starts_ms,
    }
}

/// The alerts that hold for one rollout now.
pub fn active(facts: &Facts<'_>, runbook_url: &str) -> Vec<Alert> {
    let r = facts.rollout;
    let mut out = Vec::new();
    let event = facts.last_event.filter(|e| e.version == r.version);
    let (actor, reason, at) = event.map_or(("", "", r.updated_ms), |e| {
        (e.actor.as_str(), e.reason.as_str(), e.at_ms)
    });
    match r.status {
        Status::RolledBack if actor == "guardrail" => {
            let variant = event
                .and_then(|e| e.details["guardrail"]["variant"].as_str())
                .unwrap_or("");
            out.push(alert(
                "OutriderGuardrailTripped",
                "critical",
                &r.name,
                &[("variant", variant)],
                (
                    format!(
                        "A filter's guardrail took {variant} of rollout {} to 0%",
                        r.name
                    ),
                    format!("{reason}. The rollout was rolled back to its baseline."),
                ),
                runbook_url,
                at,
            ));
        }
        Status::RolledBack => out.push(alert(
            "OutriderRolloutRolledBack",
            if actor == "analysis" || actor == "experiment" {
                "critical"
            } else {
                "warning"
            },
            &r.name,
            &[("by", actor)],
            (
                format!("Rollout {} was rolled back by {actor}", r.name),
                format!("{reason}. All traffic goes to the baseline."),
            ),
            runbook_url,
            at,
        )),
        Status::Aborted => out.push(alert(
            "OutriderRolloutAborted",
            "warning",
            &r.name,
            &[("by", actor)],
            (
                format!("Rollout {} was aborted by {actor}", r.name),
                format!("{reason}. All traffic stays on the baseline."),
            ),
            runbook_url,
            at,
        )),
        Status::Paused if actor == "analysis" => out.push(alert(
            "OutriderAnalysisInconclusive",
            "warning",
            &r.name,
            &[],
            (
                format!("Rollout {} is paused: its analysis cannot decide", r.name),
                format!(
                    "{reason}. The weights stay until someone resumes, promotes or rolls back."
                ),
            ),
            runbook_url,
            at,
        )),
        Status::Paused if actor == "experiment" => out.push(alert(
            "OutriderSampleRatioMismatch",
            "warning",
            &r.name,
            &[],
            (
                format!(
                    "Experiment {} is paused: its variants' counts do not match its weights",
                    r.name
                ),
                format!(
                    "{reason}. The split is not what the experiment assumes (a routing or sampling fault), so its results cannot be trusted; fix the split, then resume to start the experiment afresh."
                ),
            ),
            runbook_url,
            at,
        )),
        _ => {}
    }
    for s in facts.shadows.iter().filter(|s| s.verdict == "fail") {
        out.push(alert(
            "OutriderShadowGateFailed",
            "warning",
            &r.name,
            &[("variant", &s.variant)],
            (
                format!("Shadow {} of rollout {} fails its gate", s.variant, r.name),
                s.reasons.join("; "),
            ),
            runbook_url,
            // A shadow's failure has no single moment: it counts from the rollout's
            // last change at the latest.
            r.updated_ms,
        ));
    }
    out
}

/// The alert of a model whose newest retraining job failed; it resolves when a newer
/// job is queued.
pub fn job_alerts(latest: Option<&crate::retrain::Job>, runbook_url: &str) -> Vec<Alert> {
    let Some(job) = latest.filter(|j| j.status == crate::retrain::JobStatus::Failed) else {
        return Vec::new();
    };
    let id = job.id.to_string();
    vec![labelled(
        "OutriderRetrainingFailed",
        "warning",
        &[("model", &job.model)],
        &[("job", &id)],
        (
            format!("Retraining job {id} of model {} failed", job.model),
            format!(
                "{} (trigger {}: {}). Nothing that serves traffic changed.",
                job.outcome, job.trigger, job.reason
            ),
        ),
        runbook_url,
        job.ended_ms.unwrap_or(job.created_ms),
    )]
}

/// What the alerts of one model version are computed from: the findings after its
/// latest window and on its labelled window.
pub struct ModelFacts<'a> {
    pub model: &'a str,
    pub version: u64,
    pub findings: &'a [Finding],
}

/// The alert name and severity of each kind of finding.
fn model_alert(kind: FindingKind) -> (&'static str, &'static str) {
    match kind {
        FindingKind::FeatureDrift => ("OutriderFeatureDrift", "warning"),
        FindingKind::DatasetDrift => ("OutriderDatasetDrift", "critical"),
        FindingKind::PredictionDrift => ("OutriderPredictionDrift", "warning"),
        FindingKind::FeatureMissing => ("OutriderFeatureMissing", "critical"),
        FindingKind::EstimatedPerformanceDrop => ("OutriderEstimatedPerformanceDrop", "warning"),
        FindingKind::RealisedPerformanceDrop => ("OutriderRealisedPerformanceDrop", "critical"),
    }
}

/// The alerts that hold for one model version now: one per finding.
pub fn active_for_model(facts: &ModelFacts<'_>, runbook_url: &str) -> Vec<Alert> {
    let version = facts.version.to_string();
    facts
        .findings
        .iter()
        .map(|f| {
            let (name, severity) = model_alert(f.key.kind);
            let subject_label = match f.key.kind {
                FindingKind::FeatureDrift | FindingKind::FeatureMissing => "feature",
                FindingKind::EstimatedPerformanceDrop | FindingKind::RealisedPerformanceDrop => {
                    "metric"
                }
                FindingKind::DatasetDrift | FindingKind::PredictionDrift => "",
            };
            let what = if f.key.subject.is_empty() {
                f.key.kind.to_string().replace('_', " ")
            } else {
                format!(
                    "{} ({})",
                    f.key.kind.to_string().replace('_', " "),
                    f.key.subject
                )
            };
            labelled(
                name,
                severity,
                &[("model", facts.model), ("version", &version)],
                &[(subject_label, &f.key.subject)],
                (
                    format!("models:/{}/{}: {what}", facts.model, facts.version),
                    format!(
                        "{}; in {} of the last {} windows.",
                        f.detail, f.windows, f.of
                    ),
                ),
                runbook_url,
                f.since_ms,
            )
        })
        .collect()
}

/// RFC 3339 in UTC with milliseconds, as Alertmanager reads and writes times.
pub fn rfc3339(ms: u64) -> String {
    let secs = (ms / 1000) as i64;
    let days = secs.div_euclid(86_400);
    let rem = secs.rem_euclid(86_400);
    // Civil date from days since 1970-01-01 (Howard Hinnant's algorithm).
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z.rem_euclid(146_097);
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let day = doy - (153 * mp + 2) / 5 + 1;
    let month = if mp < 10 { mp + 3 } else { mp - 9 };
    let year = yoe + era * 400 + i64::from(month <= 2);
    format!(
        "{year:04}-{month:02}-{day:02}T{:02}:{:02}:{:02}.{:03}Z",
        rem / 3600,
        (rem / 60) % 60,
        rem % 60,
        ms % 1000
    )
}

/// An alert for Alertmanager's `POST /api/v2/alerts`: firing until `ends_ms` (a time
/// ahead, so it resolves by itself if nobody resends it), or resolved at `ends_ms`.
pub fn for_alertmanager(a: &Alert, ends_ms: u64, generator_url: &str) -> serde_json::Value {
    serde_json::json!({
        "labels": a.labels,
        "annotations": a.annotations,
        "startsAt": rfc3339(a.starts_ms),
        "endsAt": rfc3339(ends_ms),
        "generatorURL": generator_url,
    })
}

/// The body of a webhook, in the format Alertmanager's webhook receivers take
/// (version 4), for one alert that fires or resolved.
pub fn webhook_body(
    a: &Alert,
    resolved_ms: Option<u64>,
    generator_url: &str,
    external_url: &str,
) -> serde_json::Value {
    let status = if resolved_ms.is_some() {
        "resolved"
    } else {
        "firing"
    };
    // Grouped by name and subject: the rollout, or the model of a monitor alert.
    let subject = if a.labels.contains_key("model") {
        "model"
    } else {
        "rollout"
    };
    let group: BTreeMap<&str, &str> = [
        ("alertname", a.name()),
        (subject, a.labels.get(subject).map_or("", String::as_str)),
    ]
    .into_iter()
    .collect();
    serde_json::json!({
        "version": "4",
        "groupKey": format!("{{}}:{{alertname=\"{}\", {subject}=\"{}\"}}", group["alertname"], group[subject]),
        "truncatedAlerts": 0,
        "status": status,
        "receiver": "outrider",
        "groupLabels": group,
        "commonLabels": a.labels,
        "commonAnnotations": a.annotations,
        "externalURL": external_url,
        "alerts": [{
            "status": status,
            "labels": a.labels,
            "annotations": a.annotations,
            "startsAt": rfc3339(a.starts_ms),
            // Alertmanager's zero time for an alert still firing.
            "endsAt": resolved_ms.map_or_else(|| "0001-01-01T00:00:00Z".to_owned(), rfc3339),
            "generatorURL": generator_url,
            "fingerprint": a.fingerprint(),
        }],
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::rollout::{Attribution, CreateRequest};

    fn rollout() -> Rollout {
        let req: CreateRequest = serde_json::from_value(serde_json::json!({
            "name": "fraud",
            "variants": [{"name": "stable", "weight": 90}, {"name": "canary", "weight": 10}]
        }))
        .unwrap();
        Rollout::create(req, &Attribution::default(), 1_000)
            .unwrap()
            .0
    }

    fn by(actor: &str, reason: &str) -> Attribution {
        Attribution {
            actor: actor.into(),
            reason: reason.into(),
        }
    }

    #[test]
    fn a_rollback_fires_until_the_rollout_changes_again() {
        let r = rollout();
        assert!(
            active(
                &Facts {
                    rollout: &r,
                    last_event: None,
                    shadows: &[]
                },
                "rb"
            )
            .is_empty()
        );
        let (back, event) = r.rollback(&by("analysis", "2 failed runs"), 5_000).unwrap();
        let alerts = active(
            &Facts {
                rollout: &back,
                last_event: Some(&event),
                shadows: &[],
            },
            "https://example.org/runbook.md",
        );
        assert_eq!(alerts.len(), 1);
        let a = &alerts[0];
        assert_eq!(a.name(), "OutriderRolloutRolledBack");
        assert_eq!(a.labels["severity"], "critical");
        assert_eq!(a.labels["by"], "analysis");
        assert_eq!(a.starts_ms, 5_000);
        assert_eq!(
            a.annotations["runbook_url"],
            "https://example.org/runbook.md#outriderrolloutrolledback"
        );
        assert!(a.annotations["description"].starts_with("2 failed runs"));
        let (again, event) = back
            .set_weights(
                &[("stable".to_owned(), 100.0)].into_iter().collect(),
                &by("alice", "fixed"),
                9_000,
            )
            .unwrap();
        assert!(
            active(
                &Facts {
                    rollout: &again,
                    last_event: Some(&event),
                    shadows: &[]
                },
                "rb"
            )
            .is_empty()
        );
    }

    #[test]
    fn a_guardrail_trip_an_inconclusive_pause_and_an_abort_have_their_own_alerts() {
        let r = rollout();
        let (back, mut event) = r
            .rollback(&by("guardrail", "canary 5xx share 1.0"), 5_000)
            .unwrap();
        event.details["guardrail"] = serde_json::json!({"variant": "canary"});
        let a = active(
            &Facts {
                rollout: &back,
                last_event: Some(&event),
                shadows: &[],
            },
            "rb",
        );
        assert_eq!(a[0].name(), "OutriderGuardrailTripped");
        assert_eq!(a[0].labels["variant"], "canary");
        let (paused, event) = r
            .pause(&by("analysis", "3 inconclusive runs"), 6_000)
            .unwrap();
        let a = active(
            &Facts {
                rollout: &paused,
                last_event: Some(&event),
                shadows: &[],
            },
            "rb",
        );
        assert_eq!(a[0].name(), "OutriderAnalysisInconclusive");
        let (aborted, event) = r
            .abort(&by("shadow_gate", "shadow gate failed"), 7_000)
            .unwrap();
        let a = active(
            &Facts {
                rollout: &aborted,
                last_event: Some(&event),
                shadows: &[],
            },
            "rb",
        );
        assert_eq!(
            (a[0].name(), a[0].labels["by"].as_str()),
            ("OutriderRolloutAborted", "shadow_gate")
        );
        let (paused, event) = r.pause(&by("alice", "lunch"), 6_000).unwrap();
        assert!(
            active(
                &Facts {
                    rollout: &paused,
                    last_event: Some(&event),
                    shadows: &[]
                },
                "rb"
            )
            .is_empty(),
            "a person's pause is no alert"
        );
    }

    #[test]
    fn every_alert_has_its_runbook_section() {
        let runbook = include_str!("../../docs/runbook.md");
        for name in NAMES {
            assert!(
                runbook.contains(&format!("\n## {name}\n")),
                "docs/runbook.md has no section `## {name}`"
            );
        }
        // Every name the code raises (outside these tests) is in NAMES.
        let source = include_str!("alerts.rs");
        let code = source.split("#[cfg(test)]").next().unwrap_or("");
        let raised: std::collections::BTreeSet<&str> = code
            .split('"')
            .filter(|s| s.starts_with("Outrider") && s.chars().all(|c| c.is_ascii_alphanumeric()))
            .collect();
        let named: std::collections::BTreeSet<&str> = NAMES.into_iter().collect();
        assert_eq!(raised, named);
    }

    #[test]
    fn an_experiment_paused_on_its_sample_ratio_alerts_until_resumed() {
        let req: CreateRequest = serde_json::from_value(serde_json::json!({
            "name": "shop", "mode": "ab",
            "variants": [{"name": "a", "weight": 50}, {"name": "b", "weight": 50}],
            "experiment": {"interval_seconds": 5, "max_intervals": 3, "metrics": [
                {"name": "converted", "kind": "conversion", "direction": "increase", "role": "primary"}]}
        }))
        .unwrap();
        let r = Rollout::create(req, &Attribution::default(), 1_000)
            .unwrap()
            .0;
        let why = "paused: sample ratio mismatch: requests a=450 b=560";
        let (paused, event) = r.pause(&by("experiment", why), 7_000).unwrap();
        let facts = |r, e| Facts {
            rollout: r,
            last_event: Some(e),
            shadows: &[],
        };
        let a = active(&facts(&paused, &event), "rb");
        assert_eq!(a.len(), 1);
        assert_eq!(a[0].name(), "OutriderSampleRatioMismatch");
        assert_eq!(
            (
                a[0].labels["severity"].as_str(),
                a[0].labels["rollout"].as_str()
            ),
            ("warning", "shop")
        );
        assert!(a[0].annotations["description"].starts_with(why));
        assert_eq!(
            a[0].annotations["runbook_url"],
            "rb#outridersampleratiomismatch"
        );
        let (resumed, event) = paused.resume(&by("alice", "split fixed"), 9_000).unwrap();
        assert!(active(&facts(&resumed, &event), "rb").is_empty());
        let (back, event) = r.rollback(&by("experiment", "guardrail"), 8_000).unwrap();
        let a = active(&facts(&back, &event), "rb");
        assert_eq!(
            (a[0].name(), a[0].labels["severity"].as_str()),
            ("OutriderRolloutRolledBack", "critical")
        );
    }

    #[test]
    fn a_failed_retraining_job_alerts_until_a_newer_job() {
        let job = crate::retrain::Job::queued("fraud", "drift", "dataset_drift", 1_000);
        assert!(job_alerts(Some(&job), "rb").is_empty());
        let failed = job.failed("the command exited with status 3", 9_000);
        let a = job_alerts(Some(&failed), "rb");
        assert_eq!(a.len(), 1);
        assert_eq!(
            (
                a[0].name(),
                a[0].labels["model"].as_str(),
                a[0].labels.get("rollout"),
                a[0].starts_ms
            ),
            ("OutriderRetrainingFailed", "fraud", None, 9_000)
        );
        assert!(
            a[0].annotations["description"]
                .starts_with("the command exited with status 3 (trigger drift: dataset_drift)")
        );
        assert!(job_alerts(None, "rb").is_empty());
    }

    #[test]
    fn each_finding_of_a_model_version_is_an_alert() {
        use crate::monitor::findings::FindingKey;
        let finding = |kind, subject: &str| Finding {
            key: FindingKey {
                kind,
                subject: subject.to_owned(),
            },
            windows: 3,
            of: 5,
            detail: "amount drifted: PSI 0.912, JS distance 0.410".into(),
            since_ms: 42_000,
        };
        let findings = [
            finding(FindingKind::FeatureDrift, "amount"),
            finding(FindingKind::DatasetDrift, ""),
            finding(FindingKind::RealisedPerformanceDrop, "recall"),
        ];
        let alerts = active_for_model(
            &ModelFacts {
                model: "fraud",
                version: 3,
                findings: &findings,
            },
            "rb",
        );
        let a = &alerts[0];
        assert_eq!(a.name(), "OutriderFeatureDrift");
        assert_eq!(
            (a.labels["model"].as_str(), a.labels["version"].as_str()),
            ("fraud", "3")
        );
        assert_eq!(a.labels["feature"], "amount");
        assert!(!a.labels.contains_key("rollout"));
        assert_eq!(a.starts_ms, 42_000);
        assert_eq!(a.annotations["runbook_url"], "rb#outriderfeaturedrift");
        assert!(a.annotations["description"].ends_with("in 3 of the last 5 windows."));
        assert_eq!(alerts[1].name(), "OutriderDatasetDrift");
        assert!(!alerts[1].labels.contains_key("feature"));
        assert_eq!(alerts[2].labels["metric"], "recall");
        assert_eq!(alerts[2].labels["severity"], "critical");
        let body = webhook_body(
            a,
            None,
            "http://scorer/v1/models/fraud/drift",
            "http://scorer",
        );
        assert_eq!(body["groupLabels"]["model"], "fraud");
    }

    #[test]
    fn times_are_rfc3339_and_fingerprints_follow_the_labels() {
        assert_eq!(rfc3339(0), "1970-01-01T00:00:00.000Z");
        assert_eq!(rfc3339(951_782_400_123), "2000-02-29T00:00:00.123Z");
        assert_eq!(rfc3339(1_796_006_199_328), "2026-11-30T02:36:39.328Z");
        let r = rollout();
        let (back, event) = r.rollback(&by("alice", ""), 5_000).unwrap();
        let a = &active(
            &Facts {
                rollout: &back,
                last_event: Some(&event),
                shadows: &[],
            },
            "rb",
        )[0];
        let mut b = a.clone();
        b.starts_ms += 1;
        assert_eq!(a.fingerprint(), b.fingerprint());
        b.labels.insert("rollout".into(), "other".into());
        assert_ne!(a.fingerprint(), b.fingerprint());
        let body = webhook_body(
            a,
            Some(6_000),
            "http://scorer/v1/rollouts/fraud",
            "http://scorer",
        );
        assert_eq!(body["version"], "4");
        assert_eq!(body["status"], "resolved");
        assert_eq!(body["alerts"][0]["endsAt"], "1970-01-01T00:00:06.000Z");
        assert_eq!(body["alerts"][0]["fingerprint"], a.fingerprint());
    }
}
