//! An experiment as a person reads it (`outrider-scorer rollout status`): a line per
//! run, then the latest run in full: each variant's exposures and metrics, each
//! comparison's lift with its interval and its p-values, raw and Holm-adjusted.

use serde_json::Value;

use super::judge::{Effect, ExperimentRun, MetricComparison, p_text};
use super::{ExperimentSpec, MetricKind};

/// A metric's figure: a rate in percent, a mean with four decimals.
fn figure(kind: MetricKind, v: Option<f64>) -> String {
    match (kind, v) {
        (_, None) => "-".to_owned(),
        (MetricKind::Conversion, Some(v)) => format!("{:.2}%", v * 100.0),
        (MetricKind::Revenue, Some(v)) => format!("{v:.4}"),
    }
}

fn lift(v: Option<f64>) -> String {
    v.map_or_else(|| "-".to_owned(), |v| format!("{:+.1}%", v * 100.0))
}

/// A time of day (UTC) from ms since the epoch: `14:03:20`.
fn clock(ms: u64) -> String {
    let s = (ms / 1000) % 86_400;
    format!("{:02}:{:02}:{:02}", s / 3600, (s / 60) % 60, s % 60)
}

fn effect(c: &MetricComparison) -> &'static str {
    match c.effect {
        Effect::Better => "better",
        Effect::Worse => "worse",
        Effect::NotSignificant => "-",
    }
}

/// `GET /v1/rollouts/{name}/experiment` as a table.
pub fn render(status: &Value) -> String {
    let mut out = format!(
        "rollout {}: {}\n",
        status["rollout"].as_str().unwrap_or(""),
        status["status"].as_str().unwrap_or("")
    );
    let Ok(spec) = serde_json::from_value::<ExperimentSpec>(status["experiment"].clone()) else {
        out.push_str("no experiment\n");
        return out;
    };
    let metrics: Vec<String> = spec
        .metrics
        .iter()
        .map(|m| {
            format!(
                "{} ({} {}, {})",
                m.name,
                m.kind.as_str(),
                m.direction.as_str(),
                m.role.as_str()
            )
        })
        .collect();
    out.push_str(&format!(
        "experiment by {}: {}; alpha {} ({}), srm_alpha {}, min_exposures {}, at most {} intervals of {} s\n",
        spec.unit.as_str(),
        metrics.join(", "),
        spec.alpha,
        if spec.sequential {
            "sequential"
        } else {
            "fixed horizon"
        },
        spec.srm_alpha,
        spec.min_exposures,
        spec.max_intervals,
        spec.interval_seconds
    ));
    let runs: Vec<ExperimentRun> =
        serde_json::from_value(status["runs"].clone()).unwrap_or_default();
    let Some(last) = runs.last() else {
        out.push_str(
            "no experiment run yet (a run waits for its interval's telemetry to be complete)\n",
        );
        return out;
    };
    out.push_str(&format!(
        "{:<17}  {:>6}  {:<22} {:>9}  exposures\n",
        "data (UTC)", "judged", "verdict", "srm p"
    ));
    for run in &runs {
        let verdict = match &run.winner {
            Some(w) => format!("{} {w}", run.verdict.as_str()),
            None => run.verdict.as_str().to_owned(),
        };
        let exposures: Vec<String> = run
            .variants
            .iter()
            .map(|v| format!("{}={}", v.variant, v.exposures))
            .collect();
        out.push_str(&format!(
            "{:<17}  {:>6}  {:<22} {:>9}  {}\n",
            format!("{}-{}", clock(run.start_ms), clock(run.end_ms)),
            run.judged,
            verdict,
            p_text(run.srm.p_value),
            exposures.join(" ")
        ));
    }
    out.push_str(&format!(
        "\nlatest, {}-{}: {}\n",
        clock(last.start_ms),
        clock(last.end_ms),
        last.reason
    ));
    let mut header = format!(
        "{:<12} {:>8} {:>10} {:>10}",
        "variant", "weight", "exposures", last.srm.counted
    );
    for m in &spec.metrics {
        header.push_str(&format!(" {:>12}", m.name));
    }
    out.push_str(&header);
    out.push('\n');
    for v in &last.variants {
        let mut line = format!(
            "{:<12} {:>7.2}% {:>10} {:>10}",
            v.variant,
            v.expected_share * 100.0,
            v.exposures,
            v.srm_count
        );
        for m in &spec.metrics {
            let value = v.metrics.get(&m.name).copied().flatten();
            line.push_str(&format!(" {:>12}", figure(m.kind, value)));
        }
        out.push_str(&line);
        out.push('\n');
    }
    out.push_str(&format!(
        "SRM: chi-square {:.2}, p {} (pauses below {})\n",
        last.srm.statistic,
        p_text(last.srm.p_value),
        last.srm.alpha
    ));
    if last.comparisons.is_empty() {
        return out;
    }
    out.push_str(&format!(
        "{:<12} {:<9} {:<12} {:>10} {:>10} {:>8}  {:<18} {:>9} {:>9}  effect\n",
        "metric", "role", "variant", "control", "treatment", "lift", "interval", "p", "p (Holm)"
    ));
    for c in &last.comparisons {
        out.push_str(&format!(
            "{:<12} {:<9} {:<12} {:>10} {:>10} {:>8}  {:<18} {:>9} {:>9}  {}\n",
            c.metric,
            c.role.as_str(),
            c.variant,
            figure(c.kind, Some(c.control_value)),
            figure(c.kind, Some(c.variant_value)),
            lift(c.lift),
            format!("[{}, {}]", lift(c.lift_low), lift(c.lift_high)),
            p_text(c.p_value),
            p_text(c.p_value_adjusted),
            effect(c)
        ));
    }
    out
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;
    use crate::experiment::judge::{Arm, judge};
    use crate::store::ExposureSums;

    #[test]
    fn the_latest_run_shows_every_figure_and_the_runs_one_line_each() {
        let spec: ExperimentSpec = serde_json::from_value(json!({
            "interval_seconds": 5, "max_intervals": 12, "metrics": [
                {"name": "converted", "kind": "conversion", "direction": "increase", "role": "primary"},
                {"name": "revenue", "kind": "revenue", "direction": "increase", "role": "guardrail"}]}))
        .unwrap();
        let arm = |name: &str, n: u64, c: u64, sum: f64, sq: f64| Arm {
            sums: ExposureSums {
                variant: name.into(),
                exposures: n,
                conversions: c,
                value_sum: sum,
                value_sum_sq: sq,
            },
            weight: 50.0,
            srm_count: n + 1,
        };
        let start = 1_795_700_000_000;
        let early = judge(
            "shop",
            &spec,
            (start, start + 5_000),
            &[arm("a", 60, 6, 0.0, 0.0), arm("b", 61, 12, 0.0, 0.0)],
            0,
            start + 6_000,
        );
        let won = judge(
            "shop",
            &spec,
            (start, start + 10_000),
            &[
                arm("a", 1000, 100, 3000.0, 90_000.0),
                arm("b", 1000, 200, 6000.0, 180_000.0),
            ],
            0,
            start + 11_000,
        );
        let text = render(&json!({"rollout": "shop", "status": "concluded",
            "experiment": spec, "runs": [early, won]}));
        let lines: Vec<&str> = text.lines().collect();
        assert_eq!(lines[0], "rollout shop: concluded");
        assert!(
            lines[1].starts_with("experiment by request: converted (conversion increase, primary)"),
            "{text}"
        );
        assert!(lines[3].contains("not_judged"), "{text}");
        assert!(lines[4].contains("winner b"), "{text}");
        assert!(lines[4].ends_with("a=1000 b=1000"), "{text}");
        let row = |v: &str| {
            lines
                .iter()
                .find(|l| l.starts_with(v))
                .unwrap()
                .split_whitespace()
                .collect::<Vec<_>>()
        };
        assert_eq!(
            row("a "),
            ["a", "50.00%", "1000", "1001", "10.00%", "3.0000"]
        );
        assert_eq!(
            row("b "),
            ["b", "50.00%", "1000", "1001", "20.00%", "6.0000"]
        );
        let converted = row("converted ");
        assert_eq!(
            converted[..6],
            ["converted", "primary", "b", "10.00%", "20.00%", "+100.0%"]
        );
        assert_eq!(converted.last(), Some(&"better"));
        assert!(text.contains("SRM: chi-square 0.00, p 1.0000"), "{text}");
    }
}
