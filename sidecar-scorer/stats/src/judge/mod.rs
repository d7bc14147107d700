//! Canary judgment: Mann-Whitney per metric with Kayenta's rules, then a
//! weighted score and a pass / marginal / fail verdict.

pub mod kayenta;
pub mod mann_whitney;

use crate::error::InputError;
use kayenta::{Classification, Direction, MetricRules, NanStrategy};
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;

fn one() -> f64 {
    1.0
}
fn default_pass() -> f64 {
    90.0
}
fn default_marginal() -> f64 {
    75.0
}

/// Body of `stats judge` / `POST /v1/stats/judge`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct JudgeRequest {
    pub metrics: Vec<JudgeMetric>,
    #[serde(default = "default_pass")]
    pub pass_threshold: f64,
    #[serde(default = "default_marginal")]
    pub marginal_threshold: f64,
    /// Kayenta group weights in percent; groups left out share what remains
    /// of 100. When absent, a group weighs the sum of its metrics' `weight`.
    #[serde(default)]
    pub group_weights: Option<BTreeMap<String, f64>>,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct JudgeMetric {
    pub name: String,
    /// Values; `null` marks a missing one (handled by `nan_strategy`).
    pub baseline: Vec<Option<f64>>,
    pub canary: Vec<Option<f64>>,
    #[serde(default)]
    pub direction: Direction,
    #[serde(default)]
    pub critical: bool,
    #[serde(default = "one")]
    pub weight: f64,
    /// Largest mean ratio canary/baseline still tolerated for an increase.
    #[serde(default = "one")]
    pub allowed_increase: f64,
    /// Smallest mean ratio still tolerated for a decrease.
    #[serde(default = "one")]
    pub allowed_decrease: f64,
    /// For critical metrics: the ratio from which a High fails the canary.
    #[serde(default = "one")]
    pub critical_increase: f64,
    #[serde(default = "one")]
    pub critical_decrease: f64,
    /// Scoring group; the metric's own name when absent.
    #[serde(default)]
    pub group: Option<String>,
    #[serde(default)]
    pub nan_strategy: NanStrategy,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Verdict {
    Pass,
    Marginal,
    Fail,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct JudgeReport {
    pub score: f64,
    pub verdict: Verdict,
    /// Why the score was forced to 0, if it was.
    pub reason: Option<String>,
    pub metrics: Vec<MetricResult>,
    pub groups: Vec<GroupResult>,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct MetricResult {
    pub name: String,
    pub classification: Classification,
    /// Two-sided Mann-Whitney p-value; null without data.
    pub p_value: Option<f64>,
    pub critical: bool,
    pub critical_failure: bool,
    /// mean(canary) / mean(baseline); null when undefined.
    pub ratio: Option<f64>,
    /// 98% interval and Hodges-Lehmann estimate of the shift canary − baseline.
    pub ci_low: Option<f64>,
    pub ci_high: Option<f64>,
    pub estimate: Option<f64>,
    pub reason: Option<String>,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct GroupResult {
    pub name: String,
    /// Share of the group's metrics with data that passed (percent); null
    /// when none had data (then the group counts as 100 in the score).
    pub score: Option<f64>,
    pub weight: f64,
}

/// Judges a canary against its baseline.
pub fn analyze(request: &JudgeRequest) -> Result<JudgeReport, InputError> {
    validate(request)?;
    let metrics: Vec<MetricResult> = request
        .metrics
        .iter()
        .map(|m| {
            let rules = MetricRules {
                direction: m.direction,
                critical: m.critical,
                allowed_increase: m.allowed_increase,
                allowed_decrease: m.allowed_decrease,
                critical_increase: m.critical_increase,
                critical_decrease: m.critical_decrease,
            };
            let baseline = kayenta::clean(&m.baseline, m.nan_strategy);
            let canary = kayenta::clean(&m.canary, m.nan_strategy);
            let o = kayenta::classify(&baseline, &canary, &rules);
            MetricResult {
                name: m.name.clone(),
                classification: o.classification,
                p_value: o.p_value,
                critical: m.critical,
                critical_failure: o.critical_failure,
                ratio: o.ratio.is_finite().then_some(o.ratio),
                ci_low: o.ci_low,
                ci_high: o.ci_high,
                estimate: o.estimate,
                reason: o.reason,
            }
        })
        .collect();

    // Groups in first-seen order.
    let mut order: Vec<String> = Vec::new();
    let mut members: BTreeMap<String, (Vec<Classification>, f64)> = BTreeMap::new();
    for (m, r) in request.metrics.iter().zip(&metrics) {
        let g = m.group.clone().unwrap_or_else(|| m.name.clone());
        if !members.contains_key(&g) {
            order.push(g.clone());
        }
        let entry = members.entry(g).or_default();
        entry.0.push(r.classification);
        entry.1 += m.weight;
    }
    let weights = group_weights(request, &order, &members);
    let groups: Vec<GroupResult> = order
        .iter()
        .zip(&weights)
        .map(|(g, &w)| GroupResult {
            name: g.clone(),
            score: kayenta::group_score(&members[g].0),
            weight: w,
        })
        .collect();

    let nodata = metrics
        .iter()
        .filter(|m| m.classification == Classification::Nodata)
        .count();
    let (score, reason) = if let Some(m) = metrics.iter().find(|m| m.critical_failure) {
        (0.0, Some(format!("critical metric {} failed", m.name)))
    } else if nodata as f64 / metrics.len() as f64 >= kayenta::NODATA_FAIL_SHARE {
        (
            0.0,
            Some("half or more of the metrics have no data".to_string()),
        )
    } else {
        let s: f64 = groups
            .iter()
            .map(|g| g.score.unwrap_or(100.0) * g.weight / 100.0)
            .sum();
        (kayenta::round_score(s), None)
    };
    let verdict = if score >= request.pass_threshold {
        Verdict::Pass
    } else if score >= request.marginal_threshold {
        Verdict::Marginal
    } else {
        Verdict::Fail
    };
    Ok(JudgeReport {
        score,
        verdict,
        reason,
        metrics,
        groups,
    })
}

/// Weight of each group in percent.
fn group_weights(
    request: &JudgeRequest,
    order: &[String],
    members: &BTreeMap<String, (Vec<Classification>, f64)>,
) -> Vec<f64> {
    match &request.group_weights {
        Some(given) => {
            let sum: f64 = given.values().sum();
            let missing = order.iter().filter(|g| !given.contains_key(*g)).count();
            let share = if missing > 0 {
                (100.0 - sum) / missing as f64
            } else {
                0.0
            };
            order
                .iter()
                .map(|g| given.get(g).copied().unwrap_or(share))
                .collect()
        }
        None => {
            let total: f64 = members.values().map(|m| m.1).sum();
            order.iter().map(|g| 100.0 * members[g].1 / total).collect()
        }
    }
}

fn validate(request: &JudgeRequest) -> Result<(), InputError> {
    if request.metrics.is_empty() {
        return Err(InputError::invalid("metrics", "must not be empty"));
    }
    for (name, v) in [
        ("pass_threshold", request.pass_threshold),
        ("marginal_threshold", request.marginal_threshold),
    ] {
        if !(v.is_finite() && (0.0..=100.0).contains(&v)) {
            return Err(InputError::invalid(name, "must be between 0 and 100"));
        }
    }
    if request.marginal_threshold > request.pass_threshold {
        return Err(InputError::invalid(
            "marginal_threshold",
            "must not exceed pass_threshold",
        ));
    }
    if let Some(given) = &request.group_weights {
        for (g, &w) in given {
            if !(w.is_finite() && w >= 0.0) {
                return Err(InputError::invalid(
                    format!("group_weights.{g}"),
                    "must be a non-negative number",
                ));
            }
        }
        if given.values().sum::<f64>() > 100.0 + 1e-9 {
            return Err(InputError::invalid(
                "group_weights",
                "must not add up to more than 100",
            ));
        }
    }
    for (i, m) in request.metrics.iter().enumerate() {
        let field = |name: &str| format!("metrics[{i}].{name}");
        if request.metrics[..i].iter().any(|o| o.name == m.name) {
            return Err(InputError::invalid(field("name"), "duplicate metric name"));
        }
        if !(m.weight.is_finite() && m.weight >= 0.0) {
            return Err(InputError::invalid(
                field("weight"),
                "must be a non-negative number",
            ));
        }
        for (name, v) in [
            ("allowed_increase", m.allowed_increase),
            ("allowed_decrease", m.allowed_decrease),
            ("critical_increase", m.critical_increase),
            ("critical_decrease", m.critical_decrease),
        ] {
            if !(v.is_finite() && v >= 0.0) {
                return Err(InputError::invalid(
                    field(name),
                    "must be a non-negative number",
                ));
            }
        }
    }
    if request.group_weights.is_none() && request.metrics.iter().all(|m| m.weight == 0.0) {
        return Err(InputError::invalid(
            "metrics",
            "at least one metric needs a positive weight",
        ));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn metric(name: &str, baseline: Vec<f64>, canary: Vec<f64>) -> JudgeMetric {
        JudgeMetric {
            name: name.into(),
            baseline: baseline.into_iter().map(Some).collect(),
            canary: canary.into_iter().map(Some).collect(),
            direction: Direction::Either,
            critical: false,
            weight: 1.0,
            allowed_increase: 1.0,
            allowed_decrease: 1.0,
            critical_increase: 1.0,
            critical_decrease: 1.0,
            group: None,
            nan_strategy: NanStrategy::Remove,
        }
    }

    fn request(metrics: Vec<JudgeMetric>) -> JudgeRequest {
        JudgeRequest {
            metrics,
            pass_threshold: 90.0,
            marginal_threshold: 75.0,
            group_weights: None,
        }
    }

    fn noisy(offset: f64) -> Vec<f64> {
        (0..40)
            .map(|i| offset + ((i * 13) % 40) as f64 / 10.0)
            .collect()
    }

    #[test]
    fn weights_and_verdicts() {
        let mut bad = metric("latency", noisy(10.0), noisy(20.0));
        bad.weight = 1.0;
        let mut good = metric("errors", noisy(5.0), noisy(5.0));
        good.weight = 3.0;
        let r = analyze(&request(vec![bad, good])).unwrap();
        assert_eq!(r.metrics[0].classification, Classification::High);
        assert_eq!(r.score, 75.0);
        assert_eq!(r.verdict, Verdict::Marginal);
    }

    #[test]
    fn critical_failure_zeroes_the_score() {
        let mut bad = metric("latency", noisy(10.0), noisy(20.0));
        bad.critical = true;
        let good: Vec<JudgeMetric> = (0..5)
            .map(|i| metric(&format!("m{i}"), noisy(1.0), noisy(1.0)))
            .collect();
        let mut all = vec![bad];
        all.extend(good);
        let r = analyze(&request(all)).unwrap();
        assert_eq!((r.score, r.verdict), (0.0, Verdict::Fail));
        assert!(r.reason.unwrap().contains("latency"));
    }

    #[test]
    fn nodata_counts_as_passing_group_until_half() {
        let mut empty = metric("e", vec![], vec![]);
        empty.baseline = vec![None, None];
        let r = analyze(&request(vec![
            empty.clone(),
            metric("a", noisy(1.0), noisy(1.0)),
            metric("b", noisy(1.0), noisy(1.0)),
        ]))
        .unwrap();
        assert_eq!(r.metrics[0].classification, Classification::Nodata);
        assert_eq!(r.score, 100.0);
        let r = analyze(&request(vec![empty, metric("a", noisy(1.0), noisy(1.0))])).unwrap();
        assert_eq!(r.score, 0.0);
    }

    #[test]
    fn kayenta_group_weights() {
        let mut a = metric("a", noisy(10.0), noisy(20.0));
        a.group = Some("latency".into());
        let mut b = metric("b", noisy(1.0), noisy(1.0));
        b.group = Some("latency".into());
        let mut c = metric("c", noisy(1.0), noisy(1.0));
        c.group = Some("errors".into());
        let mut req = request(vec![a, b, c]);
        req.group_weights = Some(BTreeMap::from([("latency".to_string(), 60.0)]));
        let r = analyze(&req).unwrap();
        // latency: 1 of 2 passed -> 50 * 0.6; errors: 100 * 0.4
        assert_eq!(r.score, 70.0);
    }

    #[test]
    fn invalid_inputs_name_their_field() {
        let mut m = metric("a", vec![1.0], vec![1.0]);
        m.weight = -1.0;
        assert_eq!(
            analyze(&request(vec![m])).unwrap_err().field,
            "metrics[0].weight"
        );
        assert_eq!(analyze(&request(vec![])).unwrap_err().field, "metrics");
    }
}
