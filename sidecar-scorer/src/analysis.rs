//! Canary analysis: what a rollout checks every interval, and the verdict of one run.
//! Pure: the controller ([`crate::controller`]) reads the interval's complete telemetry
//! windows and sampled scores, [`judge`] turns them into a run, and [`decide`] turns
//! the runs of a step into the next move.
//!
//! A run compares each candidate (every variant after the first with traffic) with the
//! baseline (the first variant) over one interval. A run without the minimum of
//! requests on both sides is inconclusive: never a failure, never a pass. Checks marked
//! `dry_run` are measured and shown but never decide.

use std::collections::BTreeMap;

use outrider_protocol::{FieldError, LATENCY_SLOTS};
use outrider_stats::drift::bins::{ReferenceBins, shares};
use outrider_stats::drift::{jensen_shannon, ks, psi};
use serde::{Deserialize, Serialize};

use crate::histogram::latency_quantile;
use crate::prometheus;
use crate::store::WindowCounts;

/// Shortest analysis interval.
pub const MIN_INTERVAL_SECONDS: u64 = 5;
/// Bins of the baseline's scores for PSI and Jensen-Shannon.
const SCORE_BINS: usize = 10;

/// What a rollout's analysis checks and how the results decide.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct AnalysisSpec {
    /// Length of one run, a whole number of the scorer's telemetry windows.
    pub interval_seconds: u64,
    /// Requests each of the baseline and the candidate needs in an interval before
    /// anything is judged.
    #[serde(default = "default_min_requests")]
    pub min_requests: u64,
    /// Failed runs in a row that roll the rollout back.
    #[serde(default = "default_failure_limit")]
    pub failure_limit: u32,
    /// Inconclusive runs in a row that pause the rollout.
    #[serde(default = "default_inconclusive_limit")]
    pub inconclusive_limit: u32,
    /// Passed runs a step needs (besides its `hold_seconds`) before the next step.
    #[serde(default = "default_passes_per_step")]
    pub passes_per_step: u32,
    pub checks: Vec<Check>,
}

fn default_min_requests() -> u64 {
    50
}
fn default_failure_limit() -> u32 {
    2
}
fn default_inconclusive_limit() -> u32 {
    3
}
fn default_passes_per_step() -> u32 {
    1
}

/// What a check measures.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Metric {
    /// 5xx responses / responses.
    ErrorRate,
    /// Responses with a non-OK `grpc-status` / responses.
    GrpcErrorRate,
    LatencyP50Ms,
    LatencyP99Ms,
    /// Kolmogorov-Smirnov statistic of the candidate's sampled scores against the
    /// baseline's.
    PredictionKs,
    /// Population stability index of the candidate's scores, in ten bins of the
    /// baseline's.
    PredictionPsi,
    /// Jensen-Shannon distance (base 2) in the same bins.
    PredictionJs,
    /// Share of sampled scores at or above `threshold`.
    ScoreShareAbove,
    /// Kayenta's judge over the interval: per-window error rate and p99 latency, and
    /// the sampled scores, each candidate against the baseline by Mann-Whitney; a
    /// 0-100 score that passes at `pass_threshold` and fails below
    /// `marginal_threshold` (in between: inconclusive).
    Judge,
    /// The one value a PromQL `query` gives for the variant at the end of the
    /// interval, from the Prometheus at the check's `address` or `--prometheus-url`.
    Prometheus,
}

impl Metric {
    fn name(self) -> &'static str {
        match self {
            Metric::ErrorRate => "error_rate",
            Metric::GrpcErrorRate => "grpc_error_rate",
            Metric::LatencyP50Ms => "latency_p50_ms",
            Metric::LatencyP99Ms => "latency_p99_ms",
            Metric::PredictionKs => "prediction_ks",
            Metric::PredictionPsi => "prediction_psi",
            Metric::PredictionJs => "prediction_js",
            Metric::ScoreShareAbove => "score_share_above",
            Metric::Judge => "judge",
            Metric::Prometheus => "prometheus",
        }
    }

    /// Distances between the two sides: they have no baseline figure of their own.
    fn is_distance(self) -> bool {
        matches!(
            self,
            Metric::PredictionKs | Metric::PredictionPsi | Metric::PredictionJs
        )
    }

    fn needs_scores(self) -> bool {
        self.is_distance() || self == Metric::ScoreShareAbove
    }
}

/// One check: a metric and its pass condition. `max` and `min` bound the candidate's
/// figure (a distance for the prediction metrics: `max` only); `max_increase` bounds
/// candidate minus baseline; `max_ratio` bounds candidate / baseline. Every bound
/// given must hold.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Check {
    /// Defaults to the metric's name.
    #[serde(default)]
    pub name: Option<String>,
    pub metric: Metric,
    #[serde(default)]
    pub max: Option<f64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub min: Option<f64>,
    #[serde(default)]
    pub max_increase: Option<f64>,
    #[serde(default)]
    pub max_ratio: Option<f64>,
    /// For `score_share_above`: the decision threshold.
    #[serde(default)]
    pub threshold: Option<f64>,
    /// For the prediction metrics: sampled scores each side needs, else the check is
    /// inconclusive.
    #[serde(default)]
    pub min_samples: Option<u64>,
    /// For `judge`: the score that passes (default 90) and the one below which the
    /// run fails (default 75).
    #[serde(default)]
    pub pass_threshold: Option<f64>,
    #[serde(default)]
    pub marginal_threshold: Option<f64>,
    /// For `prometheus`: PromQL giving one value, with `{{rollout}}`, `{{variant}}`
    /// and `{{interval}}` (the interval as a Prometheus duration, e.g. `30s`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub query: Option<String>,
    /// For `prometheus`: the Prometheus to ask (`http://host:9090`), instead of the
    /// scorer's `--prometheus-url`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub address: Option<String>,
    /// Measured and shown, never deciding.
    #[serde(default)]
    pub dry_run: bool,
}

const DEFAULT_MIN_SAMPLES: u64 = 50;

impl Check {
    /// The judge's pass and marginal scores.
    pub fn thresholds(&self) -> (f64, f64) {
        (
            self.pass_threshold.unwrap_or(90.0),
            self.marginal_threshold.unwrap_or(75.0),
        )
    }

    pub fn name(&self) -> String {
        self.name
            .clone()
            .unwrap_or_else(|| self.metric.name().to_owned())
    }

    /// Whether a bound compares the candidate with the baseline.
    pub fn compares(&self) -> bool {
        self.max_increase.is_some() || self.max_ratio.is_some()
    }

    /// The bounds given, as words (`max 0.05, max_increase 0.01`).
    fn bounds(&self) -> String {
        [
            ("max", self.max),
            ("min", self.min),
            ("max_increase", self.max_increase),
            ("max_ratio", self.max_ratio),
        ]
        .iter()
        .filter_map(|(name, v)| v.map(|v| format!("{name} {v}")))
        .collect::<Vec<_>>()
        .join(", ")
    }

    /// Checks one check; `at` makes a field's path.
    fn validate(&self, at: &dyn Fn(&str) -> String, setup: &ScorerSetup) -> Result<(), FieldError> {
        if self.metric == Metric::Judge {
            return self.validate_judge(at);
        }
        if self.pass_threshold.is_some() || self.marginal_threshold.is_some() {
            return Err(FieldError::new(
                at("pass_threshold"),
                "only the judge takes thresholds",
            ));
        }
        self.validate_bounds(at)?;
        self.validate_threshold(at)?;
        if self.min_samples.is_some() && !self.metric.needs_scores() {
            return Err(FieldError::new(
                at("min_samples"),
                "only the prediction metrics take min_samples",
            ));
        }
        self.validate_query(at, setup)
    }

    fn validate_judge(&self, at: &dyn Fn(&str) -> String) -> Result<(), FieldError> {
        if self.max.is_some() || self.min.is_some() || self.compares() {
            return Err(FieldError::new(
                at("metric"),
                "the judge decides by its score: give pass_threshold and marginal_threshold, not bounds",
            ));
        }
        let (pass, marginal) = self.thresholds();
        if !(0.0..=100.0).contains(&pass) || !(0.0..=pass).contains(&marginal) {
            return Err(FieldError::new(
                at("marginal_threshold"),
                "needs 0 <= marginal_threshold <= pass_threshold <= 100",
            ));
        }
        if self.query.is_some() || self.address.is_some() {
            return Err(FieldError::new(
                at(if self.query.is_some() {
                    "query"
                } else {
                    "address"
                }),
                "only prometheus checks take a query and an address",
            ));
        }
        Ok(())
    }

    fn validate_bounds(&self, at: &dyn Fn(&str) -> String) -> Result<(), FieldError> {
        if self.max.is_none() && self.min.is_none() && !self.compares() {
            return Err(FieldError::new(
                at("max"),
                "give at least one of max, min, max_increase, max_ratio",
            ));
        }
        // A query may measure anything, negative figures included; the built-in
        // metrics are shares, latencies and distances.
        let signed = self.metric == Metric::Prometheus;
        for (bound, value, may_be_negative) in [
            ("max", self.max, signed),
            ("min", self.min, signed),
            ("max_increase", self.max_increase, false),
            ("max_ratio", self.max_ratio, false),
        ] {
            match value {
                Some(v) if !v.is_finite() => {
                    return Err(FieldError::new(at(bound), "must be a finite number"));
                }
                Some(v) if v < 0.0 && !may_be_negative => {
                    return Err(FieldError::new(at(bound), "must be a number of at least 0"));
                }
                _ => {}
            }
        }
        if let (Some(min), Some(max)) = (self.min, self.max)
            && min > max
        {
            return Err(FieldError::new(
                at("min"),
                format!("min {min} is above max {max}: no figure could pass"),
            ));
        }
        if self.metric.is_distance() && (self.min.is_some() || self.compares()) {
            return Err(FieldError::new(
                at("metric"),
                "a distance between candidate and baseline takes `max` only",
            ));
        }
        Ok(())
    }

    fn validate_threshold(&self, at: &dyn Fn(&str) -> String) -> Result<(), FieldError> {
        match (self.metric, self.threshold) {
            (Metric::ScoreShareAbove, None) => Err(FieldError::new(
                at("threshold"),
                "score_share_above needs the decision threshold",
            )),
            (Metric::ScoreShareAbove, Some(t)) if !t.is_finite() => {
                Err(FieldError::new(at("threshold"), "must be a finite number"))
            }
            (Metric::ScoreShareAbove, Some(_)) | (_, None) => Ok(()),
            (_, Some(_)) => Err(FieldError::new(
                at("threshold"),
                "only score_share_above takes a threshold",
            )),
        }
    }

    /// A prometheus check's query and where it goes; no other check takes them.
    fn validate_query(
        &self,
        at: &dyn Fn(&str) -> String,
        setup: &ScorerSetup,
    ) -> Result<(), FieldError> {
        if self.metric != Metric::Prometheus {
            return match (&self.query, &self.address) {
                (None, None) => Ok(()),
                (Some(_), _) => Err(FieldError::new(
                    at("query"),
                    "only prometheus checks take a query",
                )),
                (None, Some(_)) => Err(FieldError::new(
                    at("address"),
                    "only prometheus checks take an address",
                )),
            };
        }
        let query = self.query.as_deref().map(str::trim).unwrap_or_default();
        if query.is_empty() {
            return Err(FieldError::new(
                at("query"),
                "a prometheus check needs a PromQL query that gives one value",
            ));
        }
        let probe = prometheus::Bindings {
            rollout: "r",
            variant: "v",
            interval_seconds: 1,
        };
        prometheus::substitute(query, &probe).map_err(|why| FieldError::new(at("query"), why))?;
        match &self.address {
            Some(a) if !(a.starts_with("http://") || a.starts_with("https://")) => {
                Err(FieldError::new(
                    at("address"),
                    format!("must be an http:// or https:// URL, got `{a}`"),
                ))
            }
            Some(_) => Ok(()),
            None if setup.prometheus => Ok(()),
            None => Err(FieldError::new(
                at("address"),
                "no Prometheus to ask: give the check an address, or start the scorer with --prometheus-url",
            )),
        }
    }
}

/// What the scorer that runs an analysis offers it.
#[derive(Debug, Clone, Copy, Default)]
pub struct ScorerSetup {
    /// Length of its telemetry windows (`--window-seconds`).
    pub window_ms: u64,
    /// Whether `--prometheus-url` gives prometheus checks a default address.
    pub prometheus: bool,
}

impl ScorerSetup {
    /// A scorer with these windows and no default Prometheus.
    pub fn windows(window_ms: u64) -> Self {
        Self {
            window_ms,
            prometheus: false,
        }
    }
}

impl AnalysisSpec {
    /// Checks the spec against what the scorer offers; `field` prefixes paths.
    pub fn check(&self, field: &str, setup: &ScorerSetup) -> Result<(), FieldError> {
        let window_ms = setup.window_ms;
        let at = |name: &str| format!("{field}{name}");
        let interval_ms = self.interval_seconds.saturating_mul(1000);
        if self.interval_seconds < MIN_INTERVAL_SECONDS {
            return Err(FieldError::new(
                at("interval_seconds"),
                format!("must be at least {MIN_INTERVAL_SECONDS}"),
            ));
        }
        if window_ms == 0 || !interval_ms.is_multiple_of(window_ms) {
            return Err(FieldError::new(
                at("interval_seconds"),
                format!(
                    "must be a whole number of the scorer's {} s telemetry windows (--window-seconds)",
                    window_ms / 1000
                ),
            ));
        }
        if self.failure_limit == 0 || self.inconclusive_limit == 0 {
            let name = if self.failure_limit == 0 {
                "failure_limit"
            } else {
                "inconclusive_limit"
            };
            return Err(FieldError::new(at(name), "must be at least 1"));
        }
        if self.checks.is_empty() {
            return Err(FieldError::new(at("checks"), "needs at least one check"));
        }
        let mut names = Vec::new();
        for (i, c) in self.checks.iter().enumerate() {
            let at = |name: &str| format!("{field}checks[{i}].{name}");
            let name = c.name();
            if names.contains(&name) {
                return Err(FieldError::new(
                    at("name"),
                    format!("`{name}` names two checks; give them distinct names"),
                ));
            }
            names.push(name);
            c.validate(&at, setup)?;
        }
        Ok(())
    }

    pub fn interval_ms(&self) -> u64 {
        self.interval_seconds.saturating_mul(1000)
    }
}

/// What one side of a comparison saw in an interval.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Side {
    /// The interval's sums.
    pub counts: WindowCounts,
    /// The telemetry windows that make them up (for the judge's per-window series).
    pub windows: Vec<WindowCounts>,
    /// Sampled scores.
    pub scores: Vec<f64>,
    /// What each prometheus check's query gave for this side, by check name, fetched
    /// before judging (only where a check needs it).
    pub queried: BTreeMap<String, Queried>,
}

/// A prometheus check's query for one side, as sent, and its one value or why there
/// is none.
#[derive(Debug, Clone, PartialEq)]
pub struct Queried {
    pub query: String,
    pub value: Result<f64, String>,
}

impl Side {
    fn rate(&self, n: u64) -> Option<f64> {
        share(&self.counts, n)
    }

    /// The side's own figure for a metric (`None` when it has no data).
    fn figure(&self, check: &Check) -> Option<f64> {
        let latency = |q| latency(&self.counts, q);
        match check.metric {
            Metric::ErrorRate => self.rate(self.counts.responses.server_error),
            Metric::GrpcErrorRate => self.rate(self.counts.grpc_errors),
            Metric::LatencyP50Ms => latency(0.5),
            Metric::LatencyP99Ms => latency(0.99),
            Metric::ScoreShareAbove => {
                let threshold = check.threshold.unwrap_or(0.5);
                (!self.scores.is_empty()).then(|| {
                    self.scores.iter().filter(|s| **s >= threshold).count() as f64
                        / self.scores.len() as f64
                })
            }
            Metric::PredictionKs
            | Metric::PredictionPsi
            | Metric::PredictionJs
            | Metric::Judge
            | Metric::Prometheus => None,
        }
    }
}

/// `n` over the responses counted in `counts` (`None` without responses).
fn share(counts: &WindowCounts, n: u64) -> Option<f64> {
    let r = &counts.responses;
    let responses = r.success + r.redirect + r.client_error + r.server_error;
    (responses > 0).then(|| n as f64 / responses as f64)
}

/// A latency quantile of `counts`' histogram.
fn latency(counts: &WindowCounts, q: f64) -> Option<f64> {
    if counts.latency_ms.len() == LATENCY_SLOTS {
        return latency_quantile(&counts.latency_ms, q);
    }
    let mut slots = counts.latency_ms.clone();
    slots.resize(LATENCY_SLOTS, 0);
    latency_quantile(&slots, q)
}

/// How a check or a run came out.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Outcome {
    Passed,
    Failed,
    Inconclusive,
}

impl Outcome {
    pub fn as_str(self) -> &'static str {
        match self {
            Outcome::Passed => "passed",
            Outcome::Failed => "failed",
            Outcome::Inconclusive => "inconclusive",
        }
    }
}

/// One check of one candidate in a run, with its figures.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct CheckResult {
    pub name: String,
    pub metric: Metric,
    pub candidate: String,
    /// The candidate's figure, or the distance for the prediction metrics.
    pub value: Option<f64>,
    /// The baseline's figure, where the metric has one.
    pub baseline: Option<f64>,
    /// The KS test's p-value, for `prediction_ks`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub p_value: Option<f64>,
    /// For `prometheus`: the candidate's query as sent (the baseline's differs only
    /// in its variant).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub query: Option<String>,
    pub outcome: Outcome,
    pub dry_run: bool,
    /// Why, in words: the bound crossed or the data missing.
    pub reason: String,
}

/// One analysis run: an interval, what each side saw, and the checks.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Run {
    pub rollout: String,
    /// Index of the step the run judged.
    pub step: Option<usize>,
    pub start_ms: u64,
    pub end_ms: u64,
    /// Requests and sampled scores per variant in the interval.
    pub requests: BTreeMap<String, u64>,
    pub samples: BTreeMap<String, u64>,
    pub outcome: Outcome,
    pub checks: Vec<CheckResult>,
    /// Why the run came out as it did.
    pub reason: String,
}

fn sorted(scores: &[f64]) -> Vec<f64> {
    let mut s: Vec<f64> = scores.iter().copied().filter(|x| x.is_finite()).collect();
    s.sort_by(f64::total_cmp);
    s
}

/// The distance of a prediction metric between the two sides' scores, and the KS
/// p-value.
fn distance(metric: Metric, baseline: &[f64], candidate: &[f64]) -> (Option<f64>, Option<f64>) {
    let (b, c) = (sorted(baseline), sorted(candidate));
    if b.is_empty() || c.is_empty() {
        return (None, None);
    }
    match metric {
        Metric::PredictionKs => {
            let r = ks::ks_2samp_sorted(&b, &c);
            (Some(r.statistic), Some(r.p_value))
        }
        Metric::PredictionPsi | Metric::PredictionJs => {
            let bins = ReferenceBins::from_sorted(&b, SCORE_BINS);
            let (rb, rc) = (
                shares(&bins.counts_sorted(&b)),
                shares(&bins.counts_sorted(&c)),
            );
            if metric == Metric::PredictionPsi {
                (Some(psi::psi(&rb, &rc)), None)
            } else {
                (jensen_shannon::distance(&rb, &rc), None)
            }
        }
        _ => (None, None),
    }
}

fn fmt(v: f64) -> String {
    format!("{v:.4}")
}

/// Per-window figures of a side for the judge: 5xx share and p99 latency of each
/// window with responses.
fn series(side: &Side) -> (Vec<Option<f64>>, Vec<Option<f64>>) {
    side.windows
        .iter()
        .map(|w| (share(w, w.responses.server_error), latency(w, 0.99)))
        .unzip()
}

/// Kayenta's judge on one candidate: its score, and a line per metric.
fn kayenta(check: &Check, baseline: &Side, candidate: &Side) -> (Option<f64>, Outcome, String) {
    use outrider_stats::judge::kayenta::Direction;
    use outrider_stats::judge::{JudgeMetric, JudgeRequest, Verdict, analyze};
    let (b_errors, b_p99) = series(baseline);
    let (c_errors, c_p99) = series(candidate);
    let metric =
        |name: &str, b: Vec<Option<f64>>, c: Vec<Option<f64>>, direction, critical| JudgeMetric {
            name: name.to_owned(),
            baseline: b,
            canary: c,
            direction,
            critical,
            weight: 1.0,
            allowed_increase: 1.0,
            allowed_decrease: 1.0,
            critical_increase: 1.0,
            critical_decrease: 1.0,
            group: None,
            nan_strategy: Default::default(),
        };
    let (pass, marginal) = check.thresholds();
    let request = JudgeRequest {
        metrics: vec![
            metric("error_rate", b_errors, c_errors, Direction::Increase, true),
            metric("latency_p99_ms", b_p99, c_p99, Direction::Increase, false),
            metric(
                "score",
                baseline.scores.iter().map(|s| Some(*s)).collect(),
                candidate.scores.iter().map(|s| Some(*s)).collect(),
                Direction::Either,
                false,
            ),
        ],
        pass_threshold: pass,
        marginal_threshold: marginal,
        group_weights: None,
    };
    match analyze(&request) {
        Ok(report) => {
            let outcome = match report.verdict {
                Verdict::Pass => Outcome::Passed,
                Verdict::Marginal => Outcome::Inconclusive,
                Verdict::Fail => Outcome::Failed,
            };
            let metrics: Vec<String> = report
                .metrics
                .iter()
                .map(|m| format!("{} {:?}", m.name, m.classification).to_lowercase())
                .collect();
            let mut reason = format!(
                "score {} (pass {pass}, marginal {marginal}): {}",
                report.score,
                metrics.join(", ")
            );
            if let Some(why) = report.reason {
                reason.push_str(&format!("; {why}"));
            }
            (Some(report.score), outcome, reason)
        }
        Err(e) => (
            None,
            Outcome::Inconclusive,
            format!("the judge could not run: {e}"),
        ),
    }
}

/// One check of one candidate against the baseline.
fn judge_check(check: &Check, name: &str, baseline: &Side, candidate: &Side) -> CheckResult {
    let mut result = CheckResult {
        name: check.name(),
        metric: check.metric,
        candidate: name.to_owned(),
        value: None,
        baseline: None,
        p_value: None,
        query: None,
        outcome: Outcome::Inconclusive,
        dry_run: check.dry_run,
        reason: String::new(),
    };
    if check.metric == Metric::Judge {
        (result.value, result.outcome, result.reason) = kayenta(check, baseline, candidate);
        return result;
    }
    if check.metric.needs_scores() {
        let need = check.min_samples.unwrap_or(DEFAULT_MIN_SAMPLES).max(1);
        let have = (baseline.scores.len() as u64).min(candidate.scores.len() as u64);
        if have < need {
            result.reason = format!(
                "{} and {} sampled scores (baseline, candidate); the check needs {need} each",
                baseline.scores.len(),
                candidate.scores.len()
            );
            return result;
        }
    }
    if check.metric == Metric::Prometheus {
        if let Err(why) = queried(check, baseline, candidate, &mut result) {
            result.reason = why;
            return result;
        }
    } else if check.metric.is_distance() {
        let (d, p) = distance(check.metric, &baseline.scores, &candidate.scores);
        result.value = d;
        result.p_value = p;
    } else {
        result.value = candidate.figure(check);
        result.baseline = baseline.figure(check);
    }
    let Some(value) = result.value else {
        result.reason = "no data for this metric in the interval".into();
        return result;
    };
    let mut crossed = Vec::new();
    if let Some(max) = check.max
        && value > max
    {
        crossed.push(format!("{} is above max {max}", fmt(value)));
    }
    if let Some(min) = check.min
        && value < min
    {
        crossed.push(format!("{} is below min {min}", fmt(value)));
    }
    if let Some(limit) = check.max_increase {
        match result.baseline {
            Some(b) if value - b > limit => crossed.push(format!(
                "{} is {} above the baseline's {} (max_increase {limit})",
                fmt(value),
                fmt(value - b),
                fmt(b)
            )),
            Some(_) => {}
            None => {
                result.reason = "the baseline has no figure to compare with".into();
                return result;
            }
        }
    }
    if let Some(limit) = check.max_ratio {
        match result.baseline {
            Some(b) if b > 0.0 && value / b > limit => crossed.push(format!(
                "{} is {:.2}x the baseline's {} (max_ratio {limit})",
                fmt(value),
                value / b,
                fmt(b)
            )),
            Some(b) if b <= 0.0 && value > 0.0 => crossed.push(format!(
                "{} against a baseline of 0 (max_ratio {limit})",
                fmt(value)
            )),
            Some(_) => {}
            None => {
                result.reason = "the baseline has no figure to compare with".into();
                return result;
            }
        }
    }
    if crossed.is_empty() {
        result.outcome = Outcome::Passed;
        result.reason = format!("{} within bounds ({})", fmt(value), check.bounds());
    } else {
        result.outcome = Outcome::Failed;
        result.reason = crossed.join("; ");
    }
    result
}

/// A prometheus check's figures, fetched before judging: the candidate's value and
/// query, and the baseline's value when a bound compares with it; why not otherwise.
fn queried(
    check: &Check,
    baseline: &Side,
    candidate: &Side,
    result: &mut CheckResult,
) -> Result<(), String> {
    let name = check.name();
    let own = candidate
        .queried
        .get(&name)
        .ok_or("the query was not run for this variant")?;
    result.query = Some(own.query.clone());
    result.value = Some(own.value.clone()?);
    if check.compares() {
        let theirs = baseline
            .queried
            .get(&name)
            .ok_or("the query was not run for the baseline")?;
        let value = theirs
            .value
            .clone()
            .map_err(|why| format!("the baseline's query: {why}"))?;
        result.baseline = Some(value);
    }
    Ok(())
}

/// A run over one interval. `sides` maps each variant (in rollout order, the baseline
/// first) to what it saw; candidates are the variants after the first with requests.
pub fn judge(
    rollout: &str,
    step: Option<usize>,
    spec: &AnalysisSpec,
    (start_ms, end_ms): (u64, u64),
    sides: &[(String, Side)],
) -> Run {
    let mut run = Run {
        rollout: rollout.to_owned(),
        step,
        start_ms,
        end_ms,
        requests: sides
            .iter()
            .map(|(n, s)| (n.clone(), s.counts.requests))
            .collect(),
        samples: sides
            .iter()
            .map(|(n, s)| (n.clone(), s.scores.len() as u64))
            .collect(),
        outcome: Outcome::Inconclusive,
        checks: Vec::new(),
        reason: String::new(),
    };
    let Some(((baseline_name, baseline), candidates)) = sides.split_first() else {
        run.reason = "no variants".into();
        return run;
    };
    let candidates: Vec<&(String, Side)> = candidates
        .iter()
        .filter(|(_, s)| s.counts.requests > 0)
        .collect();
    if candidates.is_empty() {
        run.reason = "no candidate had traffic in the interval".into();
        return run;
    }
    // A step that gives the baseline nothing (the last, at 100%) has no comparison to
    // make: only the candidates' own bounds are judged.
    let compared = baseline.counts.requests > 0;
    let short: Vec<String> = std::iter::once((baseline_name, baseline))
        .filter(|_| compared)
        .chain(candidates.iter().map(|(n, s)| (n, s)))
        .filter(|(_, s)| s.counts.requests < spec.min_requests)
        .map(|(n, s)| format!("{n} {}", s.counts.requests))
        .collect();
    if !short.is_empty() {
        run.reason = format!(
            "too few requests to judge ({}; min_requests {})",
            short.join(", "),
            spec.min_requests
        );
        return run;
    }
    let mut skipped = Vec::new();
    for (name, side) in &candidates {
        for check in &spec.checks {
            if compared {
                run.checks.push(judge_check(check, name, baseline, side));
            } else if (check.max.is_some() || check.min.is_some()) && !check.metric.is_distance() {
                let own = Check {
                    max_increase: None,
                    max_ratio: None,
                    ..check.clone()
                };
                run.checks.push(judge_check(&own, name, baseline, side));
            } else {
                skipped.push(check.name());
            }
        }
    }
    let deciding = || run.checks.iter().filter(|c| !c.dry_run);
    let failed: Vec<String> = deciding()
        .filter(|c| c.outcome == Outcome::Failed)
        .map(|c| format!("{} of {}: {}", c.name, c.candidate, c.reason))
        .collect();
    let open: Vec<String> = deciding()
        .filter(|c| c.outcome == Outcome::Inconclusive)
        .map(|c| format!("{} of {}: {}", c.name, c.candidate, c.reason))
        .collect();
    (run.outcome, run.reason) = if !failed.is_empty() {
        (Outcome::Failed, failed.join("; "))
    } else if !open.is_empty() {
        (Outcome::Inconclusive, open.join("; "))
    } else {
        (Outcome::Passed, "every check passed".into())
    };
    if !skipped.is_empty() {
        skipped.dedup();
        run.reason.push_str(&format!(
            "; the baseline had no traffic, so {} (comparisons with it) were not judged",
            skipped.join(", ")
        ));
    }
    run
}

/// What the runs of the step in effect say to do.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Decision {
    /// Keep going: more runs needed.
    Wait,
    /// The step has its passes: the next step may start once its hold is over.
    StepPassed,
    RollBack(String),
    Pause(String),
}

/// Looks at the runs of the current step, oldest first.
pub fn decide(spec: &AnalysisSpec, runs: &[Run]) -> Decision {
    let trailing = |outcome: Outcome| {
        runs.iter()
            .rev()
            .take_while(|r| r.outcome == outcome)
            .count()
    };
    let failed = trailing(Outcome::Failed);
    if failed >= spec.failure_limit as usize {
        let last = runs.last().map(|r| r.reason.as_str()).unwrap_or("");
        return Decision::RollBack(format!(
            "{failed} failed analysis runs in a row (failure_limit {}): {last}",
            spec.failure_limit
        ));
    }
    let open = trailing(Outcome::Inconclusive);
    if open >= spec.inconclusive_limit as usize {
        let last = runs.last().map(|r| r.reason.as_str()).unwrap_or("");
        return Decision::Pause(format!(
            "{open} inconclusive analysis runs in a row (inconclusive_limit {}): {last}",
            spec.inconclusive_limit
        ));
    }
    let passed = runs.iter().filter(|r| r.outcome == Outcome::Passed).count();
    if passed >= spec.passes_per_step as usize
        && runs.last().is_some_and(|r| r.outcome == Outcome::Passed)
    {
        Decision::StepPassed
    } else {
        Decision::Wait
    }
}

#[cfg(test)]
mod tests {
    use outrider_protocol::{ClassCounts, latency_slot};

    use super::*;

    fn spec(checks: serde_json::Value) -> AnalysisSpec {
        serde_json::from_value(serde_json::json!({
            "interval_seconds": 10, "min_requests": 100, "checks": checks
        }))
        .unwrap()
    }

    /// `requests` responses of which `errors` are 5xx, all at `latency_ms`.
    fn side(requests: u64, errors: u64, latency_ms: f64, scores: &[f64]) -> Side {
        let mut latency = vec![0; LATENCY_SLOTS];
        latency[latency_slot(latency_ms)] = requests;
        Side {
            counts: WindowCounts {
                requests,
                responses: ClassCounts {
                    success: requests - errors,
                    server_error: errors,
                    ..ClassCounts::default()
                },
                latency_ms: latency,
                ..WindowCounts::default()
            },
            windows: Vec::new(),
            scores: scores.to_vec(),
            queried: BTreeMap::new(),
        }
    }

    fn run(spec: &AnalysisSpec, baseline: Side, canary: Side) -> Run {
        judge(
            "fraud",
            Some(1),
            spec,
            (0, 10_000),
            &[("stable".into(), baseline), ("canary".into(), canary)],
        )
    }

    #[test]
    fn a_spec_is_refused_with_the_field_at_fault() {
        let refused = |json: serde_json::Value, window_ms: u64| {
            serde_json::from_value::<AnalysisSpec>(json)
                .unwrap()
                .check("analysis.", &ScorerSetup::windows(window_ms))
                .unwrap_err()
                .field
        };
        let check = serde_json::json!([{"metric": "error_rate", "max": 0.01}]);
        use serde_json::json;
        assert_eq!(
            refused(json!({"interval_seconds": 2, "checks": check}), 1_000),
            "analysis.interval_seconds"
        );
        assert_eq!(
            refused(json!({"interval_seconds": 15, "checks": check}), 10_000),
            "analysis.interval_seconds",
            "not a whole number of windows"
        );
        assert_eq!(
            refused(json!({"interval_seconds": 10, "checks": []}), 10_000),
            "analysis.checks"
        );
        assert_eq!(
            refused(
                json!({"interval_seconds": 10, "checks": [{"metric": "error_rate"}]}),
                10_000
            ),
            "analysis.checks[0].max"
        );
        assert_eq!(
            refused(
                json!({"interval_seconds": 10, "checks": [{"metric": "prediction_ks", "max_ratio": 2}]}),
                10_000
            ),
            "analysis.checks[0].metric"
        );
        assert_eq!(
            refused(
                json!({"interval_seconds": 10, "checks": [{"metric": "score_share_above", "max_increase": 0.1}]}),
                10_000
            ),
            "analysis.checks[0].threshold"
        );
        assert_eq!(
            refused(
                json!({"interval_seconds": 10, "checks": [{"metric": "error_rate", "max": 1}, {"metric": "error_rate", "max": 2}]}),
                10_000
            ),
            "analysis.checks[1].name"
        );
        assert_eq!(
            refused(
                json!({"interval_seconds": 10, "failure_limit": 0, "checks": check}),
                10_000
            ),
            "analysis.failure_limit"
        );
        spec(check)
            .check("analysis.", &ScorerSetup::windows(5_000))
            .unwrap();
    }

    #[test]
    fn error_rates_and_latency_are_judged_against_bounds_and_the_baseline() {
        let s = spec(serde_json::json!([
            {"metric": "error_rate", "max": 0.05, "max_increase": 0.01},
            {"metric": "latency_p99_ms", "max_ratio": 1.5},
        ]));
        let healthy = run(&s, side(1_000, 5, 20.0, &[]), side(200, 1, 20.0, &[]));
        assert_eq!(healthy.outcome, Outcome::Passed, "{}", healthy.reason);
        assert_eq!(healthy.checks[0].value, Some(0.005));
        assert_eq!(healthy.checks[0].baseline, Some(0.005));

        let erring = run(&s, side(1_000, 5, 20.0, &[]), side(200, 6, 20.0, &[]));
        assert_eq!(erring.outcome, Outcome::Failed);
        assert_eq!(erring.checks[0].outcome, Outcome::Failed);
        assert!(
            erring.checks[0].reason.contains("above the baseline"),
            "{}",
            erring.reason
        );

        // 300 ms slower: p99 in the (300, 500] bucket against (15, 20].
        let slow = run(&s, side(1_000, 0, 20.0, &[]), side(200, 0, 320.0, &[]));
        assert_eq!(slow.outcome, Outcome::Failed);
        assert_eq!(slow.checks[1].outcome, Outcome::Failed);
        assert!(slow.checks[1].value.unwrap() > 300.0);
        assert_eq!(slow.requests["canary"], 200);
    }

    #[test]
    fn too_little_traffic_is_inconclusive_never_a_verdict() {
        let s = spec(serde_json::json!([{"metric": "error_rate", "max": 0.01}]));
        let r = run(&s, side(1_000, 0, 5.0, &[]), side(99, 99, 5.0, &[]));
        assert_eq!(r.outcome, Outcome::Inconclusive);
        assert!(r.checks.is_empty());
        assert!(r.reason.contains("canary 99"), "{}", r.reason);
        let none = run(&s, side(1_000, 0, 5.0, &[]), side(0, 0, 5.0, &[]));
        assert_eq!(none.outcome, Outcome::Inconclusive);
    }

    #[test]
    fn without_baseline_traffic_only_the_candidates_own_bounds_are_judged() {
        let s = spec(serde_json::json!([
            {"metric": "error_rate", "max": 0.05, "max_increase": 0.0},
            {"metric": "latency_p99_ms", "max_ratio": 1.5},
            {"metric": "prediction_ks", "max": 0.1, "min_samples": 1},
        ]));
        let last_step = run(&s, side(0, 0, 5.0, &[]), side(200, 2, 5.0, &[0.5]));
        assert_eq!(last_step.outcome, Outcome::Passed, "{}", last_step.reason);
        assert_eq!(last_step.checks.len(), 1);
        assert!(
            last_step.reason.contains("latency_p99_ms, prediction_ks"),
            "{}",
            last_step.reason
        );
        let bad = run(&s, side(0, 0, 5.0, &[]), side(200, 20, 5.0, &[]));
        assert_eq!(bad.outcome, Outcome::Failed);
    }

    #[test]
    fn a_dry_run_check_is_shown_but_never_decides() {
        let s = spec(serde_json::json!([
            {"metric": "error_rate", "max": 0.5},
            {"name": "strict", "metric": "error_rate", "max": 0.0, "dry_run": true},
        ]));
        let r = run(&s, side(1_000, 0, 5.0, &[]), side(200, 10, 5.0, &[]));
        assert_eq!(r.outcome, Outcome::Passed);
        assert_eq!(r.checks[1].outcome, Outcome::Failed);
        assert!(r.checks[1].dry_run);
    }

    #[test]
    fn a_silently_wrong_model_shows_in_its_score_distribution() {
        let s = spec(serde_json::json!([
            {"metric": "prediction_ks", "max": 0.2, "min_samples": 4},
            {"metric": "prediction_psi", "max": 0.25, "min_samples": 4},
            {"metric": "score_share_above", "threshold": 0.5, "max_increase": 0.1, "min_samples": 4},
        ]));
        let low: Vec<f64> = (0..40).map(|i| 0.01 * f64::from(i)).collect();
        let high: Vec<f64> = low.iter().map(|x| x + 0.6).collect();
        let same = run(&s, side(100, 0, 5.0, &low), side(100, 0, 5.0, &low));
        assert_eq!(same.outcome, Outcome::Passed, "{}", same.reason);
        assert_eq!(same.checks[0].value, Some(0.0));
        assert_eq!(same.checks[1].value, Some(0.0));
        let wrong = run(&s, side(100, 0, 5.0, &low), side(100, 0, 5.0, &high));
        assert_eq!(wrong.outcome, Outcome::Failed);
        // Every candidate score is above every baseline score.
        assert_eq!(wrong.checks[0].value, Some(1.0));
        assert!(wrong.checks[0].p_value.unwrap() < 1e-10);
        // Baseline: none at or above 0.5; candidate: every score.
        assert_eq!(
            (wrong.checks[2].baseline, wrong.checks[2].value),
            (Some(0.0), Some(1.0))
        );
        assert!(wrong.checks.iter().all(|c| c.outcome == Outcome::Failed));
        let few = run(&s, side(100, 0, 5.0, &low[..3]), side(100, 0, 5.0, &high));
        assert_eq!(few.outcome, Outcome::Inconclusive, "{}", few.reason);
    }

    /// A side whose interval is `windows` one-second windows, each with `requests`
    /// responses of which `errors` are 5xx, at `latency_ms`.
    fn windowed(
        windows: usize,
        requests: u64,
        errors: u64,
        latency_ms: f64,
        scores: &[f64],
    ) -> Side {
        let one = side(requests, errors, latency_ms, &[]);
        let mut all = side(0, 0, latency_ms, scores);
        all.counts.latency_ms = vec![0; LATENCY_SLOTS];
        for _ in 0..windows {
            all.counts.add(&one.counts);
            all.windows.push(one.counts.clone());
        }
        all
    }

    #[test]
    fn the_judge_scores_the_candidate_against_the_baseline() {
        let s = spec(
            serde_json::json!([{"metric": "judge", "pass_threshold": 90, "marginal_threshold": 75}]),
        );
        let scores: Vec<f64> = (0..200).map(|i| f64::from(i % 100) / 100.0).collect();
        let same = run(
            &s,
            windowed(10, 100, 1, 20.0, &scores),
            windowed(10, 100, 1, 20.0, &scores),
        );
        assert_eq!(same.outcome, Outcome::Passed, "{}", same.reason);
        assert_eq!(same.checks[0].value, Some(100.0));
        // Every window of the candidate has half its responses failing: the critical
        // error rate fails the canary whatever else.
        let failing = run(
            &s,
            windowed(10, 100, 1, 20.0, &scores),
            windowed(10, 100, 50, 20.0, &scores),
        );
        assert_eq!(failing.outcome, Outcome::Failed, "{}", failing.reason);
        assert_eq!(failing.checks[0].value, Some(0.0));
        assert!(
            failing.checks[0].reason.contains("error_rate high"),
            "{}",
            failing.reason
        );
        // Without baseline traffic there is nothing to judge against.
        let alone = run(
            &s,
            side(0, 0, 1.0, &[]),
            windowed(10, 100, 0, 20.0, &scores),
        );
        assert!(alone.checks.is_empty());
        assert!(alone.reason.contains("judge"), "{}", alone.reason);
        let refused = |json: serde_json::Value| {
            serde_json::from_value::<AnalysisSpec>(
                serde_json::json!({"interval_seconds": 10, "checks": [json]}),
            )
            .unwrap()
            .check("", &ScorerSetup::windows(1_000))
            .unwrap_err()
            .field
        };
        assert_eq!(
            refused(serde_json::json!({"metric": "judge", "max": 1})),
            "checks[0].metric"
        );
        assert_eq!(
            refused(
                serde_json::json!({"metric": "judge", "pass_threshold": 70, "marginal_threshold": 80})
            ),
            "checks[0].marginal_threshold"
        );
        assert_eq!(
            refused(serde_json::json!({"metric": "error_rate", "max": 1, "pass_threshold": 70})),
            "checks[0].pass_threshold"
        );
    }

    /// `side` with what a prometheus check's query gave for it.
    fn answered(mut side: Side, check: &str, variant: &str, value: Result<f64, String>) -> Side {
        let query = format!("share{{variant=\"{variant}\"}}");
        side.queried
            .insert(check.to_owned(), Queried { query, value });
        side
    }

    #[test]
    fn a_prometheus_check_is_refused_with_the_field_at_fault() {
        let refused = |check: serde_json::Value, prometheus: bool| {
            let spec: AnalysisSpec = serde_json::from_value(
                serde_json::json!({"interval_seconds": 10, "checks": [check]}),
            )
            .unwrap();
            let setup = ScorerSetup {
                window_ms: 1_000,
                prometheus,
            };
            spec.check("analysis.", &setup)
                .err()
                .map(|e| (e.field, e.problem))
        };
        use serde_json::json;
        let field = |check, prometheus| refused(check, prometheus).unwrap().0;
        assert_eq!(
            field(json!({"metric": "prometheus", "max": 0.1}), true),
            "analysis.checks[0].query"
        );
        assert_eq!(
            field(
                json!({"metric": "prometheus", "query": "  ", "max": 0.1}),
                true
            ),
            "analysis.checks[0].query"
        );
        let (at, why) = refused(
            json!({"metric": "prometheus", "query": "x{job=\"{{job}}\"}", "max": 0.1}),
            true,
        )
        .unwrap();
        assert_eq!(at, "analysis.checks[0].query");
        assert!(why.contains("`{{job}}`"), "{why}");
        let (at, why) = refused(
            json!({"metric": "prometheus", "query": "up", "max": 1}),
            false,
        )
        .unwrap();
        assert_eq!(at, "analysis.checks[0].address");
        assert!(why.contains("--prometheus-url"), "{why}");
        assert_eq!(
            field(
                json!({"metric": "prometheus", "query": "up", "max": 1, "address": "prom:9090"}),
                false
            ),
            "analysis.checks[0].address"
        );
        assert_eq!(
            field(json!({"metric": "prometheus", "query": "up"}), true),
            "analysis.checks[0].max",
            "no bound"
        );
        assert_eq!(
            field(
                json!({"metric": "prometheus", "query": "up", "min": 2, "max": 1}),
                true
            ),
            "analysis.checks[0].min"
        );
        assert_eq!(
            field(
                json!({"metric": "error_rate", "max": 0.1, "query": "up"}),
                true
            ),
            "analysis.checks[0].query"
        );
        assert_eq!(
            field(
                json!({"metric": "error_rate", "max": 0.1, "address": "http://p:9090"}),
                true
            ),
            "analysis.checks[0].address"
        );
        assert_eq!(
            field(json!({"metric": "error_rate", "max": -0.1}), true),
            "analysis.checks[0].max"
        );
        assert_eq!(
            field(json!({"metric": "prediction_ks", "min": 0.1}), true),
            "analysis.checks[0].metric"
        );
        // A query may measure a signed figure; an address of its own needs no flag.
        let fine = [
            (
                json!({"metric": "prometheus", "query": "delta(x[{{interval}}])", "min": -5, "max": -1}),
                true,
            ),
            (
                json!({"metric": "prometheus", "query": "up{job=\"{{rollout}}-{{variant}}\"}", "min": 1,
                       "address": "http://prometheus:9090"}),
                false,
            ),
        ];
        for (check, flag) in fine {
            assert_eq!(refused(check.clone(), flag), None, "{check}");
        }
    }

    #[test]
    fn a_prometheus_check_judges_the_values_fetched_before_the_run() {
        let s = spec(serde_json::json!([
            {"name": "errors", "metric": "prometheus", "query": "q", "max": 0.1, "max_increase": 0.05},
            {"name": "availability", "metric": "prometheus", "query": "q", "min": 0.95},
        ]));
        let both = |base: Side, (errors, availability): (f64, f64)| {
            let canary = answered(side(200, 0, 5.0, &[]), "errors", "canary", Ok(errors));
            let canary = answered(canary, "availability", "canary", Ok(availability));
            run(&s, base, canary)
        };
        let stable = answered(side(1_000, 0, 5.0, &[]), "errors", "stable", Ok(0.01));
        let healthy = both(stable.clone(), (0.02, 0.99));
        assert_eq!(healthy.outcome, Outcome::Passed, "{}", healthy.reason);
        let errors = &healthy.checks[0];
        assert_eq!((errors.value, errors.baseline), (Some(0.02), Some(0.01)));
        assert_eq!(errors.query.as_deref(), Some("share{variant=\"canary\"}"));
        assert_eq!(
            errors.reason,
            "0.0200 within bounds (max 0.1, max_increase 0.05)"
        );
        assert_eq!(
            healthy.checks[1].baseline, None,
            "no relative bound: not asked"
        );

        let failing = both(stable.clone(), (0.3, 0.7));
        assert_eq!(failing.outcome, Outcome::Failed);
        assert!(
            failing.checks[0].reason.contains("0.3000 is above max 0.1"),
            "{}",
            failing.reason
        );
        assert!(
            failing.checks[1]
                .reason
                .contains("0.7000 is below min 0.95"),
            "{}",
            failing.reason
        );
        assert!(
            failing.reason.contains("errors of canary"),
            "{}",
            failing.reason
        );

        // What Prometheus could not say makes the check inconclusive, never a pass.
        let silent = run(
            &s,
            stable.clone(),
            answered(
                answered(
                    side(200, 0, 5.0, &[]),
                    "errors",
                    "canary",
                    Err("no data: the query returned no series".into()),
                ),
                "availability",
                "canary",
                Ok(1.0),
            ),
        );
        assert_eq!(silent.outcome, Outcome::Inconclusive, "{}", silent.reason);
        assert!(silent.checks[0].reason.starts_with("no data"));
        assert_eq!(
            silent.checks[0].query.as_deref(),
            Some("share{variant=\"canary\"}")
        );
        let unasked_baseline = both(side(1_000, 0, 5.0, &[]), (0.02, 0.99));
        assert_eq!(unasked_baseline.checks[0].outcome, Outcome::Inconclusive);
        let broken_baseline = both(
            answered(
                side(1_000, 0, 5.0, &[]),
                "errors",
                "stable",
                Err("Prometheus answered 503".into()),
            ),
            (0.02, 0.99),
        );
        assert_eq!(broken_baseline.checks[0].outcome, Outcome::Inconclusive);
        assert!(
            broken_baseline.checks[0]
                .reason
                .contains("the baseline's query: Prometheus answered 503"),
            "{}",
            broken_baseline.reason
        );

        // At 100% only the candidate's own bounds are judged: no baseline query needed.
        let last_step = both(side(0, 0, 5.0, &[]), (0.02, 0.99));
        assert_eq!(last_step.outcome, Outcome::Passed, "{}", last_step.reason);
        assert_eq!(last_step.checks[0].reason, "0.0200 within bounds (max 0.1)");
    }

    fn outcomes(list: &[Outcome]) -> Vec<Run> {
        let s = spec(serde_json::json!([{"metric": "error_rate", "max": 0.01}]));
        list.iter()
            .map(|o| {
                let mut r = run(&s, side(1, 0, 1.0, &[]), side(1, 0, 1.0, &[]));
                r.outcome = *o;
                r.reason = o.as_str().into();
                r
            })
            .collect()
    }

    #[test]
    fn runs_decide_step_rollback_and_pause() {
        use Outcome::*;
        let s = spec(serde_json::json!([{"metric": "error_rate", "max": 0.01}]));
        assert_eq!(decide(&s, &[]), Decision::Wait);
        assert_eq!(decide(&s, &outcomes(&[Passed])), Decision::StepPassed);
        assert_eq!(decide(&s, &outcomes(&[Passed, Failed])), Decision::Wait);
        assert!(matches!(
            decide(&s, &outcomes(&[Passed, Failed, Failed])),
            Decision::RollBack(_)
        ));
        assert_eq!(
            decide(&s, &outcomes(&[Failed, Passed])),
            Decision::StepPassed,
            "a failure followed by a pass is no longer in a row"
        );
        assert_eq!(
            decide(&s, &outcomes(&[Inconclusive, Inconclusive])),
            Decision::Wait
        );
        assert!(matches!(
            decide(
                &s,
                &outcomes(&[Passed, Inconclusive, Inconclusive, Inconclusive])
            ),
            Decision::Pause(_)
        ));
        assert_eq!(
            decide(&s, &outcomes(&[Passed, Inconclusive])),
            Decision::Wait,
            "the last run must pass"
        );
    }
}
