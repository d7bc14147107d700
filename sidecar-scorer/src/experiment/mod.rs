//! A/B experiments: an `ab` rollout with an `experiment` section keeps its variants'
//! weights fixed while the deciding replica judges, every interval, the outcomes
//! (feedback) of the exposures (the filter's samples) so far, and ends the experiment
//! when a treatment wins, a guardrail is lost, or time is up.
//!
//! - this module: the spec and its checks;
//! - [`judge`]: from per-variant sufficient statistics to a run and its verdict (pure);
//! - [`control`]: what the deciding replica does each tick (reads the store, stores
//!   runs, returns the rollout change a verdict calls for);
//! - [`table`]: the runs as `outrider-scorer rollout status` prints them.

pub mod control;
pub mod judge;
pub mod table;

use outrider_protocol::FieldError;
use outrider_protocol::rules::check_name;
use serde::{Deserialize, Serialize};

use crate::rollout::{Mode, Step, Variant};

pub use judge::{ExperimentRun, Verdict};

/// Shortest interval between two runs.
pub const MIN_INTERVAL_SECONDS: u64 = 5;

/// What one exposure is, and how feedback finds it.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Unit {
    /// Every sampled request; feedback joins it by `request_id`.
    #[default]
    Request,
    /// Every user (sticky key), once, in the variant of their first exposure;
    /// feedback joins by `user_key`.
    User,
}

impl Unit {
    pub fn as_str(self) -> &'static str {
        match self {
            Unit::Request => "request",
            Unit::User => "user",
        }
    }
}

/// Which part of the feedback a metric reads.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum MetricKind {
    /// The share of exposures whose (latest) feedback `label` is positive.
    Conversion,
    /// The mean feedback `value` per exposure; an exposure without feedback counts 0.
    Revenue,
}

impl MetricKind {
    pub fn as_str(self) -> &'static str {
        match self {
            MetricKind::Conversion => "conversion",
            MetricKind::Revenue => "revenue",
        }
    }
}

/// Which way is better.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Direction {
    Increase,
    Decrease,
}

impl Direction {
    pub fn as_str(self) -> &'static str {
        match self {
            Direction::Increase => "increase",
            Direction::Decrease => "decrease",
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Role {
    /// The metric that picks a winner (exactly one).
    Primary,
    /// A metric no treatment may make significantly worse.
    Guardrail,
}

impl Role {
    pub fn as_str(self) -> &'static str {
        match self {
            Role::Primary => "primary",
            Role::Guardrail => "guardrail",
        }
    }
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct MetricSpec {
    pub name: String,
    pub kind: MetricKind,
    pub direction: Direction,
    pub role: Role,
}

/// The `experiment` section of an `ab` rollout.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ExperimentSpec {
    /// Time between two looks, a whole number of the scorer's telemetry windows.
    pub interval_seconds: u64,
    #[serde(default)]
    pub unit: Unit,
    pub metrics: Vec<MetricSpec>,
    /// Level of every test, after Holm's correction across all comparisons.
    #[serde(default = "default_alpha")]
    pub alpha: f64,
    /// Always-valid inference (a confidence sequence), so a look every interval does
    /// not inflate false positives; with false, fixed-horizon tests.
    #[serde(default = "default_true")]
    pub sequential: bool,
    /// A sample ratio mismatch below this p-value pauses the experiment.
    #[serde(default = "default_srm_alpha")]
    pub srm_alpha: f64,
    /// Exposures every variant needs before the metrics are judged.
    #[serde(default = "default_min_exposures")]
    pub min_exposures: u64,
    /// Judged intervals without a winner after which the experiment concludes and
    /// traffic goes back to the control.
    pub max_intervals: u32,
}

fn default_alpha() -> f64 {
    0.05
}
fn default_true() -> bool {
    true
}
fn default_srm_alpha() -> f64 {
    0.001
}
fn default_min_exposures() -> u64 {
    100
}

/// A level strictly between 0 and 1.
fn check_level(field: String, value: f64) -> Result<(), FieldError> {
    if value.is_finite() && value > 0.0 && value < 1.0 {
        Ok(())
    } else {
        Err(FieldError::new(
            field,
            "must be between 0 and 1 (exclusive)",
        ))
    }
}

impl ExperimentSpec {
    pub fn interval_ms(&self) -> u64 {
        self.interval_seconds.saturating_mul(1000)
    }

    /// The primary metric (validated specs have exactly one).
    pub fn primary(&self) -> Option<&MetricSpec> {
        self.metrics.iter().find(|m| m.role == Role::Primary)
    }

    /// Checks the spec against the scorer's telemetry window; `field` prefixes paths.
    pub fn check(&self, field: &str, window_ms: u64) -> Result<(), FieldError> {
        let at = |name: &str| format!("{field}{name}");
        if self.interval_seconds < MIN_INTERVAL_SECONDS {
            return Err(FieldError::new(
                at("interval_seconds"),
                format!("must be at least {MIN_INTERVAL_SECONDS}"),
            ));
        }
        if window_ms == 0 || !self.interval_ms().is_multiple_of(window_ms) {
            return Err(FieldError::new(
                at("interval_seconds"),
                format!(
                    "must be a whole number of the scorer's {} s telemetry windows (--window-seconds)",
                    window_ms / 1000
                ),
            ));
        }
        check_level(at("alpha"), self.alpha)?;
        check_level(at("srm_alpha"), self.srm_alpha)?;
        if self.min_exposures < 2 {
            return Err(FieldError::new(
                at("min_exposures"),
                "must be at least 2 (a mean's variance needs two exposures)",
            ));
        }
        if self.max_intervals == 0 {
            return Err(FieldError::new(at("max_intervals"), "must be at least 1"));
        }
        if self.metrics.is_empty() {
            return Err(FieldError::new(
                at("metrics"),
                "needs a primary metric (and any guardrails)",
            ));
        }
        for (i, m) in self.metrics.iter().enumerate() {
            let at = |name: &str| format!("{field}metrics[{i}].{name}");
            check_name(&at("name"), &m.name)?;
            if let Some(j) = self.metrics[..i].iter().position(|o| o.name == m.name) {
                return Err(FieldError::new(
                    at("name"),
                    format!("`{}` names metrics[{j}] too; give distinct names", m.name),
                ));
            }
            // Feedback has one label and one value: a second metric of a kind would
            // read the very same numbers.
            if let Some(j) = self.metrics[..i].iter().position(|o| o.kind == m.kind) {
                return Err(FieldError::new(
                    at("kind"),
                    format!(
                        "metrics[{j}] is a {} metric already: both would read the same feedback {}",
                        m.kind.as_str(),
                        if m.kind == MetricKind::Conversion {
                            "label"
                        } else {
                            "value"
                        }
                    ),
                ));
            }
        }
        let primaries = self
            .metrics
            .iter()
            .filter(|m| m.role == Role::Primary)
            .count();
        if primaries != 1 {
            return Err(FieldError::new(
                at("metrics"),
                format!("needs exactly one metric with role primary, got {primaries}"),
            ));
        }
        Ok(())
    }

    /// Checks what the experiment needs of its rollout: mode `ab`, two or more
    /// variants each with a share of traffic (the shares are the experiment's
    /// design, and SRM tests them), and no steps (the weights stay as they are).
    pub fn check_plan(
        &self,
        mode: Mode,
        variants: &[Variant],
        steps: &[Step],
    ) -> Result<(), FieldError> {
        if mode != Mode::Ab {
            return Err(FieldError::new(
                "experiment",
                "an experiment runs on an A/B rollout: give mode ab",
            ));
        }
        if variants.len() < 2 {
            return Err(FieldError::new(
                "variants",
                "an experiment needs a control (listed first) and at least one treatment",
            ));
        }
        if let Some(i) = variants.iter().position(|v| v.weight <= 0.0) {
            return Err(FieldError::new(
                format!("variants[{i}].weight"),
                "every variant of an experiment needs a share of traffic",
            ));
        }
        if !steps.is_empty() {
            return Err(FieldError::new(
                "steps",
                "an experiment keeps the variants' weights for its whole length: give no steps",
            ));
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;

    fn spec(json: serde_json::Value) -> ExperimentSpec {
        serde_json::from_value(json).unwrap()
    }

    fn base() -> serde_json::Value {
        json!({"interval_seconds": 10, "max_intervals": 20, "metrics": [
            {"name": "converted", "kind": "conversion", "direction": "increase", "role": "primary"},
            {"name": "revenue", "kind": "revenue", "direction": "increase", "role": "guardrail"}]})
    }

    /// The field a check of `base()` with `value` at `pointer` refuses.
    fn refused(pointer: &str, value: serde_json::Value, window_ms: u64) -> String {
        let mut json = base();
        if let Some((parent, key)) = pointer.rsplit_once('/') {
            match json.pointer_mut(parent).unwrap() {
                serde_json::Value::Array(items) => items[key.parse::<usize>().unwrap()] = value,
                object => object[key] = value,
            }
        }
        spec(json)
            .check("experiment.", window_ms)
            .unwrap_err()
            .field
    }

    #[test]
    fn defaults_fill_in() {
        let s = spec(base());
        assert_eq!(
            (s.unit, s.alpha, s.sequential, s.srm_alpha, s.min_exposures),
            (Unit::Request, 0.05, true, 0.001, 100)
        );
        s.check("experiment.", 5_000).unwrap();
        assert_eq!(s.primary().unwrap().name, "converted");
    }

    #[test]
    fn a_spec_is_refused_with_the_field_at_fault() {
        let cases = [
            (
                "/interval_seconds",
                json!(4),
                1_000,
                "experiment.interval_seconds",
            ),
            ("", json!(null), 3_000, "experiment.interval_seconds"),
            ("/alpha", json!(1.0), 1_000, "experiment.alpha"),
            ("/srm_alpha", json!(0.0), 1_000, "experiment.srm_alpha"),
            (
                "/min_exposures",
                json!(1),
                1_000,
                "experiment.min_exposures",
            ),
            (
                "/max_intervals",
                json!(0),
                1_000,
                "experiment.max_intervals",
            ),
            ("/metrics", json!([]), 1_000, "experiment.metrics"),
            (
                "/metrics/1/role",
                json!("primary"),
                1_000,
                "experiment.metrics",
            ),
            (
                "/metrics/0/role",
                json!("guardrail"),
                1_000,
                "experiment.metrics",
            ),
            (
                "/metrics/1/kind",
                json!("conversion"),
                1_000,
                "experiment.metrics[1].kind",
            ),
            (
                "/metrics/1/name",
                json!("converted"),
                1_000,
                "experiment.metrics[1].name",
            ),
            (
                "/metrics/0/name",
                json!("a.b"),
                1_000,
                "experiment.metrics[0].name",
            ),
        ];
        for (pointer, value, window_ms, field) in cases {
            assert_eq!(refused(pointer, value, window_ms), field, "{pointer}");
        }
    }

    #[test]
    fn unknown_fields_and_kinds_do_not_parse() {
        let mut typo = base();
        typo["min_exposure"] = json!(10);
        assert!(serde_json::from_value::<ExperimentSpec>(typo).is_err());
        let mut kind = base();
        kind["metrics"][0]["kind"] = json!("clicks");
        assert!(serde_json::from_value::<ExperimentSpec>(kind).is_err());
    }

    #[test]
    fn the_rollout_must_be_an_ab_split_without_steps() {
        let s = spec(base());
        let v = |name: &str, weight: f64| Variant {
            name: name.into(),
            weight,
            model: None,
        };
        let two = [v("a", 50.0), v("b", 50.0)];
        s.check_plan(Mode::Ab, &two, &[]).unwrap();
        let field = |r: Result<(), FieldError>| r.unwrap_err().field;
        assert_eq!(field(s.check_plan(Mode::Canary, &two, &[])), "experiment");
        assert_eq!(
            field(s.check_plan(Mode::Ab, &[v("a", 100.0)], &[])),
            "variants"
        );
        assert_eq!(
            field(s.check_plan(Mode::Ab, &[v("a", 100.0), v("b", 0.0)], &[])),
            "variants[1].weight"
        );
        let step = Step {
            weights: [("a".to_owned(), 50.0), ("b".to_owned(), 50.0)].into(),
            hold_seconds: 0,
        };
        assert_eq!(field(s.check_plan(Mode::Ab, &two, &[step])), "steps");
    }
}
