//! Rollouts and what may happen to them: creation, weight changes, pause and resume,
//! promotion, rollback, and the step schedule the controller advances. Every change
//! is a pure function from a rollout to the next rollout plus the event that records
//! it; the store applies both at once.

use std::collections::BTreeMap;

use outrider_protocol::rules::{MAX_VARIANTS, check_name, check_total, weight_to_basis_points};
use outrider_protocol::{FieldError, RolloutState, VariantWeight};
use serde::{Deserialize, Serialize};

use crate::analysis::AnalysisSpec;
use crate::experiment::ExperimentSpec;
use crate::gates::{Answer, Gates};
use crate::shadow_report::ShadowGate;

/// How the variants share traffic.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Mode {
    /// A baseline (listed first) and one or more candidates that ramp up.
    Canary,
    /// Two variants; all traffic goes to one of them at a time.
    BlueGreen,
    /// Fixed shares for an experiment; a winner is promoted at the end.
    Ab,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Status {
    /// Waiting for the pre-rollout gate; all traffic stays on the baseline.
    Pending,
    /// The candidate only sees copies of traffic until the shadow gate passes.
    Shadowing,
    /// Weights follow the step schedule (or were set by hand).
    #[serde(alias = "active")]
    Progressing,
    /// Weights are frozen: the step schedule does not advance.
    Paused,
    /// All traffic on one variant, by a person or at the end of the schedule.
    #[serde(alias = "completed")]
    Promoted,
    /// All traffic back on the baseline after a failure or by hand.
    RolledBack,
    /// Stopped before the candidate was trusted with traffic: the shadow gate failed
    /// or a person aborted it. All traffic on the baseline.
    Aborted,
    /// An A/B experiment reached its end.
    Concluded,
}

impl std::fmt::Display for Status {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

impl Status {
    pub const ALL: [Status; 8] = [
        Status::Pending,
        Status::Shadowing,
        Status::Progressing,
        Status::Paused,
        Status::Promoted,
        Status::RolledBack,
        Status::Aborted,
        Status::Concluded,
    ];

    /// Whether the rollout still moves on its own or waits for a person to resume it.
    pub fn is_running(self) -> bool {
        matches!(
            self,
            Status::Pending | Status::Shadowing | Status::Progressing | Status::Paused
        )
    }

    pub fn as_str(self) -> &'static str {
        match self {
            Status::Pending => "pending",
            Status::Shadowing => "shadowing",
            Status::Progressing => "progressing",
            Status::Paused => "paused",
            Status::Promoted => "promoted",
            Status::RolledBack => "rolled_back",
            Status::Aborted => "aborted",
            Status::Concluded => "concluded",
        }
    }
}

/// One step of a ramp: the weights to apply, then how long to hold them before the
/// next step.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Step {
    pub weights: BTreeMap<String, f64>,
    #[serde(default)]
    pub hold_seconds: u64,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Variant {
    pub name: String,
    /// Percent of traffic; all variants add up to 100.
    pub weight: f64,
    /// The registered model version the variant serves (`models:/NAME/VERSION`), for
    /// the drift monitor and the model's performance.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub model: Option<String>,
}

/// A stage before any traffic moves: the candidate only gets copies of requests (the
/// filter's shadow of that name) until its shadow report passes the rollout's
/// `shadow_gate`; a failed report aborts the rollout.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ShadowStage {
    /// The shadow variant as the filter reports it; by default the candidate's name.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub variant: Option<String>,
}

/// Blue-green with a preview: the preview colour (listed second) is judged by the
/// rollout's analysis on the traffic it gets (overrides, or a small `preview_weight`),
/// then takes all traffic in one switch; for `rollback_window_seconds` after it, the old
/// colour stays routable and a rollback is one switch back.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct BlueGreen {
    /// Percent of traffic for the preview while it is judged (0: overrides only).
    #[serde(default)]
    pub preview_weight: f64,
    /// Switch as soon as the analysis passes (after `hold_seconds`); if false, wait
    /// for a person to promote.
    #[serde(default = "default_true")]
    pub auto_promote: bool,
    /// The least time the preview is judged before the switch.
    #[serde(default)]
    pub hold_seconds: u64,
    #[serde(default = "default_rollback_window")]
    pub rollback_window_seconds: u64,
}

fn default_true() -> bool {
    true
}

fn default_rollback_window() -> u64 {
    300
}

/// The most a preview may get while it is judged: it is a preview, not a canary.
const MAX_PREVIEW_WEIGHT: f64 = 50.0;

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Rollout {
    pub name: String,
    pub mode: Mode,
    pub status: Status,
    /// Grows by one with every change; filters apply a state only if it is newer.
    pub version: u64,
    /// In order: the baseline first.
    pub variants: Vec<Variant>,
    #[serde(default)]
    pub steps: Vec<Step>,
    /// Index of the step in effect, when a schedule is running.
    #[serde(default)]
    pub step: Option<usize>,
    /// When the step in effect began (ms since the epoch).
    #[serde(default)]
    pub step_started_ms: u64,
    /// What shadow variants must show to pass the shadow stage.
    #[serde(default)]
    pub shadow_gate: ShadowGate,
    /// What each step's analysis checks; without it steps advance on their hold alone.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub analysis: Option<AnalysisSpec>,
    /// An A/B experiment the controller judges and ends.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub experiment: Option<ExperimentSpec>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub shadow: Option<ShadowStage>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub blue_green: Option<BlueGreen>,
    #[serde(default, skip_serializing_if = "Gates::is_empty")]
    pub gates: Gates,
    /// The gate answer that holds the rollout where it is, until the gate agrees.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub held: Option<Answer>,
    /// The analysis passed and the switch waits for a person (`auto_promote: false`).
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub awaiting_promotion: bool,
    /// After a blue-green switch: until when the old colour stays routable and a
    /// rollback is one switch back.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub rollback_window_until_ms: Option<u64>,
    pub created_ms: u64,
    pub updated_ms: u64,
}

/// A change to record, with who made it and why.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Event {
    pub rollout: String,
    /// The rollout's version after the change.
    pub version: u64,
    pub kind: String,
    pub actor: String,
    pub reason: String,
    pub at_ms: u64,
    /// The weights after the change, and anything else worth keeping.
    pub details: serde_json::Value,
}

/// `POST /v1/rollouts`.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct CreateRequest {
    pub name: String,
    #[serde(default = "default_mode")]
    pub mode: Mode,
    pub variants: Vec<Variant>,
    #[serde(default)]
    pub steps: Vec<Step>,
    #[serde(default)]
    pub shadow_gate: Option<ShadowGate>,
    #[serde(default)]
    pub analysis: Option<AnalysisSpec>,
    #[serde(default)]
    pub experiment: Option<ExperimentSpec>,
    #[serde(default)]
    pub shadow: Option<ShadowStage>,
    #[serde(default)]
    pub blue_green: Option<BlueGreen>,
    #[serde(default)]
    pub gates: Gates,
    #[serde(default)]
    pub actor: Option<String>,
    #[serde(default)]
    pub reason: Option<String>,
}

fn default_mode() -> Mode {
    Mode::Canary
}

/// Who asked for a change and why; every mutating request may carry them.
#[derive(Debug, Clone, Default, Deserialize)]
pub struct Attribution {
    pub actor: String,
    pub reason: String,
}

/// A rollout after a change, and the event that records the change.
pub type Change = (Rollout, Event);

/// Why a rollout cannot be created or changed as asked.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum RolloutError {
    /// A value the rules refuse, with the path of its field.
    #[error(transparent)]
    Invalid(#[from] FieldError),
    #[error("only a progressing rollout can be paused; `{rollout}` is {status}")]
    NotActive { rollout: String, status: Status },
    #[error("`{rollout}` is {status}: only a running rollout can be aborted")]
    NotRunning { rollout: String, status: Status },
    #[error(
        "a rollout named `{rollout}` exists and is {status}: abort, promote or roll it back before giving it a new plan"
    )]
    StillRunning { rollout: String, status: Status },
    #[error(
        "the rollback window of `{rollout}` closed at {closed_ms} ms: the old colour may be gone; set weights to send traffic back to it"
    )]
    RollbackWindowClosed { rollout: String, closed_ms: u64 },
    #[error("only a paused rollout can be resumed; `{rollout}` is {status}")]
    NotPaused { rollout: String, status: Status },
    #[error("`{rollout}` is already promoted to {variant}")]
    AlreadyPromoted { rollout: String, variant: String },
    #[error("`{rollout}` is already rolled back")]
    AlreadyRolledBack { rollout: String },
}

const MAX_STEPS: usize = 64;

fn invalid(field: impl Into<String>, problem: impl Into<String>) -> RolloutError {
    RolloutError::Invalid(FieldError::new(field, problem))
}

/// Checks a full assignment of weights to `variants` (missing ones are 0) and returns
/// it in variant order.
fn checked_weights(
    field: &str,
    variants: &[String],
    weights: &BTreeMap<String, f64>,
) -> Result<Vec<f64>, FieldError> {
    for name in weights.keys() {
        if !variants.contains(name) {
            return Err(FieldError::new(
                format!("{field}.{name}"),
                format!("no variant `{name}` in this rollout"),
            ));
        }
    }
    let mut total = 0u32;
    let mut out = Vec::with_capacity(variants.len());
    for name in variants {
        let weight = weights.get(name).copied().unwrap_or(0.0);
        total += weight_to_basis_points(&format!("{field}.{name}"), weight)?;
        out.push(weight);
    }
    check_total(field, total)?;
    Ok(out)
}

fn check_mode(mode: Mode, field: &str, weights: &[f64]) -> Result<(), FieldError> {
    if mode == Mode::BlueGreen && weights.iter().any(|w| *w != 0.0 && *w != 100.0) {
        return Err(FieldError::new(
            field,
            "a blue-green rollout sends all traffic to one variant: use weights of 0 and 100",
        ));
    }
    Ok(())
}

/// A model version as the registry names it: `models:/NAME/VERSION`.
fn check_model_uri(field: &str, uri: &str) -> Result<(), FieldError> {
    match crate::retrain::champion::model_version(uri) {
        Some((name, _)) if !name.is_empty() => Ok(()),
        _ => Err(FieldError::new(
            field,
            format!("`{uri}` is not a model version: give models:/NAME/VERSION"),
        )),
    }
}

/// The one step of a blue-green preview: the active colour (listed first) keeps all
/// traffic but the preview's share, and the analysis judges the preview.
fn blue_green_steps(
    mode: Mode,
    names: &[String],
    weights: &[f64],
    steps: &[Step],
    bg: &BlueGreen,
) -> Result<Vec<Step>, RolloutError> {
    if mode != Mode::BlueGreen {
        return Err(invalid(
            "blue_green",
            "a `blue_green` section needs mode blue_green",
        ));
    }
    if !steps.is_empty() {
        return Err(invalid(
            "steps",
            "a blue-green rollout with a preview has no steps: its preview is judged, then switched",
        ));
    }
    if weights.first() != Some(&100.0) {
        return Err(invalid(
            "variants",
            "the active colour (listed first) starts with all traffic",
        ));
    }
    if !(0.0..=MAX_PREVIEW_WEIGHT).contains(&bg.preview_weight) {
        return Err(invalid(
            "blue_green.preview_weight",
            format!("must be between 0 and {MAX_PREVIEW_WEIGHT}"),
        ));
    }
    weight_to_basis_points("blue_green.preview_weight", bg.preview_weight)?;
    let (Some(active), Some(preview)) = (names.first(), names.get(1)) else {
        return Err(invalid(
            "variants",
            "a blue-green rollout has exactly two variants",
        ));
    };
    Ok(vec![Step {
        weights: [
            (active.clone(), 100.0 - bg.preview_weight),
            (preview.clone(), bg.preview_weight),
        ]
        .into(),
        hold_seconds: bg.hold_seconds,
    }])
}

impl Rollout {
    fn variant_names(&self) -> Vec<String> {
        self.variants.iter().map(|v| v.name.clone()).collect()
    }

    /// What filters poll.
    pub fn state(&self) -> RolloutState {
        RolloutState {
            rollout: self.name.clone(),
            version: self.version,
            status: self.status.as_str().to_owned(),
            weights: self
                .variants
                .iter()
                .map(|v| VariantWeight {
                    variant: v.name.clone(),
                    weight: v.weight,
                })
                .collect(),
        }
    }

    fn weights_json(&self) -> serde_json::Value {
        serde_json::Value::Object(
            self.variants
                .iter()
                .map(|v| (v.name.clone(), serde_json::json!(v.weight)))
                .collect(),
        )
    }

    /// The next version of this rollout with `apply` done, and its event.
    fn change(
        &self,
        kind: &str,
        by: &Attribution,
        now_ms: u64,
        apply: impl FnOnce(&mut Rollout),
    ) -> Change {
        let mut next = self.clone();
        // Any change moves on from what a gate held.
        next.held = None;
        apply(&mut next);
        next.version = self.version + 1;
        next.updated_ms = now_ms;
        let event = Event {
            rollout: next.name.clone(),
            version: next.version,
            kind: kind.to_owned(),
            actor: by.actor.clone(),
            reason: by.reason.clone(),
            at_ms: now_ms,
            details: serde_json::json!({"weights": next.weights_json(), "status": next.status.as_str(), "step": next.step}),
        };
        (next, event)
    }

    /// Validates a creation request into version 1 of a rollout. With steps, the
    /// first step's weights apply at once.
    pub fn create(
        req: CreateRequest,
        by: &Attribution,
        now_ms: u64,
    ) -> Result<Change, RolloutError> {
        check_name("name", &req.name)?;
        if req.variants.is_empty() || req.variants.len() > MAX_VARIANTS {
            return Err(invalid(
                "variants",
                format!(
                    "give 1 to {MAX_VARIANTS} variants, got {}",
                    req.variants.len()
                ),
            ));
        }
        let mut names: Vec<String> = Vec::new();
        for (i, v) in req.variants.iter().enumerate() {
            check_name(&format!("variants[{i}].name"), &v.name)?;
            if names.contains(&v.name) {
                return Err(invalid(
                    format!("variants[{i}].name"),
                    format!("duplicate variant `{}`", v.name),
                ));
            }
            names.push(v.name.clone());
        }
        let given: BTreeMap<String, f64> = req
            .variants
            .iter()
            .map(|v| (v.name.clone(), v.weight))
            .collect();
        let weights = checked_weights("variants", &names, &given)?;
        check_mode(req.mode, "variants", &weights)?;
        if req.mode == Mode::BlueGreen && names.len() != 2 {
            return Err(invalid(
                "variants",
                "a blue-green rollout has exactly two variants",
            ));
        }
        if req.steps.len() > MAX_STEPS {
            return Err(invalid(
                "steps",
                format!("at most {MAX_STEPS} steps, got {}", req.steps.len()),
            ));
        }
        for (i, v) in req.variants.iter().enumerate() {
            if let Some(model) = &v.model {
                check_model_uri(&format!("variants[{i}].model"), model)?;
            }
        }
        let mut variants: Vec<Variant> = req
            .variants
            .iter()
            .zip(&weights)
            .map(|(v, weight)| Variant {
                name: v.name.clone(),
                weight: *weight,
                model: v.model.clone(),
            })
            .collect();
        let steps = match &req.blue_green {
            Some(bg) => blue_green_steps(req.mode, &names, &weights, &req.steps, bg)?,
            None => req.steps,
        };
        for (i, step) in steps.iter().enumerate() {
            let w = checked_weights(&format!("steps[{i}].weights"), &names, &step.weights)?;
            if req.blue_green.is_none() {
                check_mode(req.mode, &format!("steps[{i}].weights"), &w)?;
            }
        }
        if let Some(experiment) = &req.experiment {
            experiment.check_plan(req.mode, &req.variants, &steps)?;
        }
        let shadow_gate = req.shadow_gate.unwrap_or_default();
        shadow_gate.check("shadow_gate.")?;
        req.gates.check("gates.")?;
        if req.analysis.is_some() {
            let judged = req.mode == Mode::Canary || req.blue_green.is_some();
            if !judged {
                return Err(invalid(
                    "analysis",
                    "analysis judges canary steps or a blue-green preview; give mode canary, or blue_green with a `blue_green` section",
                ));
            }
            if steps.is_empty() || names.len() < 2 {
                return Err(invalid(
                    "analysis",
                    "analysis judges steps: give a baseline, a candidate and steps",
                ));
            }
        }
        let staged = req.shadow.is_some() || req.gates.pre_rollout.is_some();
        if staged && (steps.is_empty() || names.len() < 2) {
            let field = if req.shadow.is_some() {
                "shadow"
            } else {
                "gates.pre_rollout"
            };
            return Err(invalid(
                field,
                "a stage before the rollout leads into its steps: give a baseline, a candidate and steps",
            ));
        }
        if let Some(ShadowStage {
            variant: Some(shadow),
        }) = &req.shadow
        {
            check_name("shadow.variant", shadow)?;
        }
        let status = if req.gates.pre_rollout.is_some() {
            Status::Pending
        } else if req.shadow.is_some() {
            Status::Shadowing
        } else {
            Status::Progressing
        };
        if status == Status::Progressing {
            if let Some(first) = steps.first() {
                let w = checked_weights("steps[0].weights", &names, &first.weights)?;
                for (v, weight) in variants.iter_mut().zip(w) {
                    v.weight = weight;
                }
            }
        } else {
            // Nothing moves before the stages pass.
            for (i, v) in variants.iter_mut().enumerate() {
                v.weight = if i == 0 { 100.0 } else { 0.0 };
            }
        }
        let rollout = Rollout {
            shadow_gate,
            analysis: req.analysis,
            experiment: req.experiment,
            shadow: req.shadow,
            blue_green: req.blue_green,
            gates: req.gates,
            held: None,
            awaiting_promotion: false,
            rollback_window_until_ms: None,
            name: req.name,
            mode: req.mode,
            status,
            version: 1,
            variants,
            step: (status == Status::Progressing && !steps.is_empty()).then_some(0),
            steps,
            step_started_ms: now_ms,
            created_ms: now_ms,
            updated_ms: now_ms,
        };
        let event = Event {
            rollout: rollout.name.clone(),
            version: 1,
            kind: "created".into(),
            actor: by.actor.clone(),
            reason: by.reason.clone(),
            at_ms: now_ms,
            details: serde_json::json!({"weights": rollout.weights_json(), "mode": rollout.mode,
                "steps": rollout.steps.len(), "status": rollout.status.as_str()}),
        };
        Ok((rollout, event))
    }

    /// A finished rollout given the plan of `new` (a rollout just created under the
    /// same name, and its event): the versions go on from this one's, so filters take
    /// the new plan as newer.
    pub fn replan(&self, mut new: Rollout, mut event: Event) -> Result<Change, RolloutError> {
        if self.status.is_running() {
            return Err(RolloutError::StillRunning {
                rollout: self.name.clone(),
                status: self.status,
            });
        }
        new.version = self.version + 1;
        event.version = new.version;
        event.details["previous"] =
            serde_json::json!({"version": self.version, "status": self.status.as_str()});
        Ok((new, event))
    }

    /// The shadow variant a shadow stage judges.
    pub fn shadow_variant(&self) -> Option<&str> {
        let stage = self.shadow.as_ref()?;
        stage
            .variant
            .as_deref()
            .or_else(|| self.variants.last().map(|v| v.name.as_str()))
    }

    /// The stage after a passed pre-rollout gate: the shadow stage if there is one,
    /// else the first step.
    pub fn start(&self, by: &Attribution, now_ms: u64) -> Option<Change> {
        if self.status != Status::Pending {
            return None;
        }
        if self.shadow.is_some() {
            return Some(self.change("shadowing", by, now_ms, |r| {
                r.status = Status::Shadowing;
                r.step_started_ms = now_ms;
            }));
        }
        self.first_step(by, now_ms)
    }

    /// From the shadow stage (or a pending rollout without one) to the first step.
    pub fn first_step(&self, by: &Attribution, now_ms: u64) -> Option<Change> {
        if !matches!(self.status, Status::Pending | Status::Shadowing) {
            return None;
        }
        let first = self.steps.first()?;
        let weights = checked_weights("steps", &self.variant_names(), &first.weights).ok()?;
        Some(self.change("step", by, now_ms, |r| {
            for (v, weight) in r.variants.iter_mut().zip(weights) {
                v.weight = weight;
            }
            r.status = Status::Progressing;
            r.step = Some(0);
            r.step_started_ms = now_ms;
        }))
    }

    /// Stops a rollout that is still running: all traffic to the baseline, for good.
    pub fn abort(&self, by: &Attribution, now_ms: u64) -> Result<Change, RolloutError> {
        if !self.status.is_running() {
            return Err(RolloutError::NotRunning {
                rollout: self.name.clone(),
                status: self.status,
            });
        }
        Ok(self.change("aborted", by, now_ms, |r| {
            for (i, v) in r.variants.iter_mut().enumerate() {
                v.weight = if i == 0 { 100.0 } else { 0.0 };
            }
            r.status = Status::Aborted;
            r.step = None;
            r.awaiting_promotion = false;
        }))
    }

    /// The end of an A/B experiment: all traffic to the variant at `winner` (the
    /// control, listed first, when nobody won), for good.
    pub fn conclude(&self, winner: usize, by: &Attribution, now_ms: u64) -> Change {
        self.change("concluded", by, now_ms, |r| {
            for (i, v) in r.variants.iter_mut().enumerate() {
                v.weight = if i == winner { 100.0 } else { 0.0 };
            }
            r.status = Status::Concluded;
            r.step = None;
        })
    }

    /// Records that `answer` holds the rollout, unless the same gate already holds it
    /// with the same status (a hold is one event, not one per retry).
    pub fn hold(&self, answer: &Answer, now_ms: u64) -> Option<Change> {
        if let Some(held) = &self.held
            && held.gate == answer.gate
            && held.status == answer.status
        {
            return None;
        }
        let by = Attribution {
            actor: "gate".into(),
            reason: format!("held: {}", answer.describe()),
        };
        let (next, mut event) = self.change("held", &by, now_ms, |r| {
            r.held = Some(answer.clone());
        });
        event.details["gate"] = serde_json::to_value(answer).unwrap_or_default();
        Some((next, event))
    }

    /// Whether a rollback is still one switch back to the old colour.
    fn check_rollback_window(&self, now_ms: u64) -> Result<(), RolloutError> {
        match self.rollback_window_until_ms {
            Some(until) if self.status == Status::Promoted && now_ms > until => {
                Err(RolloutError::RollbackWindowClosed {
                    rollout: self.name.clone(),
                    closed_ms: until,
                })
            }
            _ => Ok(()),
        }
    }

    /// A manual weight change. It stops the step schedule (people override plans) and
    /// reactivates a finished rollout; a paused one stays paused.
    pub fn set_weights(
        &self,
        weights: &BTreeMap<String, f64>,
        by: &Attribution,
        now_ms: u64,
    ) -> Result<Change, RolloutError> {
        let w = checked_weights("weights", &self.variant_names(), weights)?;
        check_mode(self.mode, "weights", &w)?;
        Ok(self.change("weights_set", by, now_ms, |r| {
            for (v, weight) in r.variants.iter_mut().zip(w) {
                v.weight = weight;
            }
            r.step = None;
            r.awaiting_promotion = false;
            r.rollback_window_until_ms = None;
            if r.status != Status::Paused {
                r.status = Status::Progressing;
            }
        }))
    }

    pub fn pause(&self, by: &Attribution, now_ms: u64) -> Result<Change, RolloutError> {
        if self.status != Status::Progressing {
            return Err(RolloutError::NotActive {
                rollout: self.name.clone(),
                status: self.status,
            });
        }
        Ok(self.change("paused", by, now_ms, |r| r.status = Status::Paused))
    }

    /// Resumes a paused rollout; a running step's hold starts again from now.
    pub fn resume(&self, by: &Attribution, now_ms: u64) -> Result<Change, RolloutError> {
        if self.status != Status::Paused {
            return Err(RolloutError::NotPaused {
                rollout: self.name.clone(),
                status: self.status,
            });
        }
        Ok(self.change("resumed", by, now_ms, |r| {
            r.status = Status::Progressing;
            r.step_started_ms = now_ms;
        }))
    }

    /// All traffic to `variant` (by default the candidate, listed last).
    pub fn promote(
        &self,
        variant: Option<&str>,
        by: &Attribution,
        now_ms: u64,
    ) -> Result<Change, RolloutError> {
        let target = match variant {
            Some(name) => self
                .variants
                .iter()
                .position(|v| v.name == name)
                .ok_or_else(|| {
                    invalid("variant", format!("no variant `{name}` in this rollout"))
                })?,
            None if self.mode == Mode::Ab => {
                return Err(invalid(
                    "variant",
                    "an A/B rollout needs the winning variant named",
                ));
            }
            None => self.variants.len() - 1,
        };
        if self.status == Status::Promoted && self.variants[target].weight == 100.0 {
            return Err(RolloutError::AlreadyPromoted {
                rollout: self.name.clone(),
                variant: self.variants[target].name.clone(),
            });
        }
        Ok(self.promoted(target, by, now_ms))
    }

    /// All traffic to the variant at `target`; a blue-green switch opens its rollback
    /// window.
    fn promoted(&self, target: usize, by: &Attribution, now_ms: u64) -> Change {
        let window_ms = self
            .blue_green
            .as_ref()
            .map(|bg| bg.rollback_window_seconds.saturating_mul(1000));
        let (next, mut event) = self.change("promoted", by, now_ms, |r| {
            for (i, v) in r.variants.iter_mut().enumerate() {
                v.weight = if i == target { 100.0 } else { 0.0 };
            }
            r.status = Status::Promoted;
            r.step = None;
            r.awaiting_promotion = false;
            r.rollback_window_until_ms = window_ms.map(|w| now_ms.saturating_add(w));
        });
        if let Some(until) = next.rollback_window_until_ms {
            event.details["rollback_window_until_ms"] = serde_json::json!(until);
        }
        (next, event)
    }

    /// All traffic back to the baseline (listed first).
    pub fn rollback(&self, by: &Attribution, now_ms: u64) -> Result<Change, RolloutError> {
        if self.status == Status::RolledBack {
            return Err(RolloutError::AlreadyRolledBack {
                rollout: self.name.clone(),
            });
        }
        self.check_rollback_window(now_ms)?;
        Ok(self.change("rolled_back", by, now_ms, |r| {
            for (i, v) in r.variants.iter_mut().enumerate() {
                v.weight = if i == 0 { 100.0 } else { 0.0 };
            }
            r.status = Status::RolledBack;
            r.step = None;
            r.awaiting_promotion = false;
            r.rollback_window_until_ms = None;
        }))
    }

    /// What the controller does at `now_ms`: move to the next step once the current
    /// one has been held long enough (and, with an analysis, `passed` says what its
    /// runs showed); after the last, promote the candidate (listed last), or wait for
    /// a person where `auto_promote` is off; an A/B schedule concludes on its last
    /// weights.
    pub fn advance(&self, now_ms: u64, passed: Option<&str>) -> Option<Change> {
        if self.status != Status::Progressing || self.awaiting_promotion {
            return None;
        }
        let current = self.step?;
        let hold_ms = self.steps.get(current)?.hold_seconds.saturating_mul(1000);
        if now_ms < self.step_started_ms.saturating_add(hold_ms) {
            return None;
        }
        let mut reason = format!("step {} held {} s", current + 1, hold_ms / 1000);
        match (&self.analysis, passed) {
            (Some(_), None) => return None,
            (Some(_), Some(why)) => reason.push_str(&format!("; analysis: {why}")),
            (None, _) => {}
        }
        let by = Attribution {
            actor: "controller".into(),
            reason,
        };
        let names = self.variant_names();
        match self.steps.get(current + 1) {
            Some(next) => {
                let weights = checked_weights("steps", &names, &next.weights).ok()?;
                Some(self.change("step", &by, now_ms, |r| {
                    for (v, weight) in r.variants.iter_mut().zip(weights) {
                        v.weight = weight;
                    }
                    r.step = Some(current + 1);
                    r.step_started_ms = now_ms;
                }))
            }
            None if self.mode == Mode::Ab => Some(self.change("concluded", &by, now_ms, |r| {
                r.status = Status::Concluded;
                r.step = None;
            })),
            None if self.blue_green.as_ref().is_some_and(|bg| !bg.auto_promote) => {
                let by = Attribution {
                    reason: format!("{}; promote to switch", by.reason),
                    ..by
                };
                Some(self.change("awaiting_promotion", &by, now_ms, |r| {
                    r.awaiting_promotion = true;
                }))
            }
            None => Some(self.promoted(self.variants.len().saturating_sub(1), &by, now_ms)),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn by() -> Attribution {
        Attribution {
            actor: "alice".into(),
            reason: "test".into(),
        }
    }

    fn create(json: serde_json::Value) -> Result<Change, RolloutError> {
        Rollout::create(serde_json::from_value(json).unwrap(), &by(), 1_000)
    }

    /// The field an `Invalid` error names; other errors name none.
    fn field_of(err: &RolloutError) -> Option<&str> {
        match err {
            RolloutError::Invalid(e) => Some(e.field.as_str()),
            _ => None,
        }
    }

    fn canary() -> Rollout {
        create(serde_json::json!({"name": "fraud", "variants": [
            {"name": "stable", "weight": 90}, {"name": "canary", "weight": 10}]}))
        .unwrap()
        .0
    }

    fn weights(r: &Rollout) -> Vec<f64> {
        r.variants.iter().map(|v| v.weight).collect()
    }

    #[test]
    fn creation_validates_names_and_weights() {
        let (r, e) = create(serde_json::json!({"name": "fraud", "variants": [
            {"name": "stable", "weight": 90}, {"name": "canary", "weight": 10}]}))
        .unwrap();
        assert_eq!(
            (r.version, r.status, r.mode),
            (1, Status::Progressing, Mode::Canary)
        );
        assert_eq!(
            (e.kind.as_str(), e.actor.as_str(), e.version),
            ("created", "alice", 1)
        );
        let bad = [
            (
                serde_json::json!({"name": "a.b", "variants": [{"name": "x", "weight": 100}]}),
                "name",
            ),
            (serde_json::json!({"name": "r", "variants": []}), "variants"),
            (
                serde_json::json!({"name": "r", "variants": [{"name": "x", "weight": 60}, {"name": "y", "weight": 30}]}),
                "variants",
            ),
            (
                serde_json::json!({"name": "r", "variants": [{"name": "x", "weight": 50}, {"name": "x", "weight": 50}]}),
                "variants[1].name",
            ),
            (
                serde_json::json!({"name": "r", "variants": [{"name": "x", "weight": 100.001}]}),
                "variants.x",
            ),
            (
                serde_json::json!({"name": "r", "mode": "blue_green", "variants": [{"name": "x", "weight": 50}, {"name": "y", "weight": 50}]}),
                "variants",
            ),
            (
                serde_json::json!({"name": "r", "variants": [{"name": "x", "weight": 100}, {"name": "y", "weight": 0}],
                "steps": [{"weights": {"x": 90, "z": 10}}]}),
                "steps[0].weights.z",
            ),
            (
                serde_json::json!({"name": "r", "variants": [{"name": "x", "weight": 100, "model": "models:/fraud/1"},
                    {"name": "y", "weight": 0, "model": "models:/fraud@champion"}]}),
                "variants[1].model",
            ),
        ];
        for (json, field) in bad {
            let err = create(json.clone()).unwrap_err();
            assert_eq!(field_of(&err), Some(field), "{json}: {err:?}");
        }
    }

    #[test]
    fn weight_changes_bump_the_version_and_stop_the_schedule() {
        let r = canary();
        let (next, event) = r
            .set_weights(
                &[("canary".to_owned(), 30.0), ("stable".to_owned(), 70.0)].into(),
                &by(),
                2_000,
            )
            .unwrap();
        assert_eq!(weights(&next), vec![70.0, 30.0]);
        assert_eq!((next.version, event.kind.as_str()), (2, "weights_set"));
        assert_eq!(event.details["weights"]["canary"], 30.0);
        let missing_means_zero = r
            .set_weights(&[("stable".to_owned(), 100.0)].into(), &by(), 2_000)
            .unwrap()
            .0;
        assert_eq!(weights(&missing_means_zero), vec![100.0, 0.0]);
        let err = r
            .set_weights(&[("shadow".to_owned(), 100.0)].into(), &by(), 2_000)
            .unwrap_err();
        assert_eq!(field_of(&err), Some("weights.shadow"));
    }

    #[test]
    fn pause_resume_promote_rollback() {
        let r = canary();
        let paused = r.pause(&by(), 2).unwrap().0;
        assert_eq!(paused.status, Status::Paused);
        assert_eq!(
            paused.pause(&by(), 3).unwrap_err().to_string(),
            "only a progressing rollout can be paused; `fraud` is paused"
        );
        assert_eq!(
            r.resume(&by(), 3).unwrap_err(),
            RolloutError::NotPaused {
                rollout: "fraud".into(),
                status: Status::Progressing
            }
        );
        let resumed = paused.resume(&by(), 4).unwrap().0;
        assert_eq!(resumed.status, Status::Progressing);
        let promoted = resumed.promote(None, &by(), 5).unwrap().0;
        assert_eq!(
            (weights(&promoted), promoted.status),
            (vec![0.0, 100.0], Status::Promoted)
        );
        assert_eq!(
            promoted.promote(None, &by(), 6).unwrap_err().to_string(),
            "`fraud` is already promoted to canary"
        );
        let back = promoted.rollback(&by(), 7).unwrap().0;
        assert_eq!(
            (weights(&back), back.status, back.version),
            (vec![100.0, 0.0], Status::RolledBack, 5)
        );
        assert_eq!(
            back.rollback(&by(), 8).unwrap_err().to_string(),
            "`fraud` is already rolled back"
        );
    }

    #[test]
    fn the_schedule_advances_after_each_hold_and_then_promotes() {
        let (r, _) = create(serde_json::json!({"name": "fraud",
            "variants": [{"name": "stable", "weight": 100}, {"name": "canary", "weight": 0}],
            "steps": [{"weights": {"stable": 95, "canary": 5}, "hold_seconds": 10},
                      {"weights": {"stable": 50, "canary": 50}, "hold_seconds": 10}]}))
        .unwrap();
        assert_eq!(
            weights(&r),
            vec![95.0, 5.0],
            "the first step applies at once"
        );
        assert!(r.advance(1_000 + 9_999, None).is_none());
        let (r2, e) = r.advance(11_000, None).unwrap();
        assert_eq!(
            (weights(&r2), r2.step, e.kind.as_str(), e.actor.as_str()),
            (vec![50.0, 50.0], Some(1), "step", "controller")
        );
        assert!(r2.advance(20_999, None).is_none());
        let (done, e) = r2.advance(21_000, None).unwrap();
        assert_eq!(
            (done.status, done.step, e.kind.as_str(), weights(&done)),
            (Status::Promoted, None, "promoted", vec![0.0, 100.0])
        );
        assert!(done.advance(99_000, None).is_none());
        let paused = r2.pause(&by(), 12_000).unwrap().0;
        assert!(
            paused.advance(99_000, None).is_none(),
            "paused rollouts hold their step"
        );
    }

    fn steps() -> serde_json::Value {
        serde_json::json!([{"weights": {"stable": 90, "canary": 10}, "hold_seconds": 10},
                           {"weights": {"stable": 50, "canary": 50}, "hold_seconds": 10}])
    }

    #[test]
    fn a_gated_and_shadowed_rollout_moves_nothing_until_its_stages_pass() {
        let (r, e) = create(serde_json::json!({"name": "fraud",
            "variants": [{"name": "stable", "weight": 100}, {"name": "canary", "weight": 0}],
            "steps": steps(), "shadow": {},
            "gates": {"pre_rollout": {"url": "http://gate:8080/pre"}}}))
        .unwrap();
        assert_eq!(
            (r.status, r.step, weights(&r), e.details["status"].as_str()),
            (Status::Pending, None, vec![100.0, 0.0], Some("pending"))
        );
        assert!(
            r.advance(99_000, None).is_none(),
            "pending holds its weights"
        );
        assert_eq!(r.shadow_variant(), Some("canary"));
        let (shadowing, e) = r.start(&by(), 2_000).unwrap();
        assert_eq!(
            (
                shadowing.status,
                e.kind.as_str(),
                weights(&shadowing),
                shadowing.step_started_ms
            ),
            (Status::Shadowing, "shadowing", vec![100.0, 0.0], 2_000)
        );
        assert!(shadowing.start(&by(), 3_000).is_none());
        let (first, e) = shadowing.first_step(&by(), 4_000).unwrap();
        assert_eq!(
            (first.status, first.step, e.kind.as_str(), weights(&first)),
            (Status::Progressing, Some(0), "step", vec![90.0, 10.0])
        );
        let (aborted, e) = shadowing.abort(&by(), 5_000).unwrap();
        assert_eq!(
            (aborted.status, e.kind.as_str(), weights(&aborted)),
            (Status::Aborted, "aborted", vec![100.0, 0.0])
        );
        assert_eq!(
            aborted.abort(&by(), 6_000).unwrap_err().to_string(),
            "`fraud` is aborted: only a running rollout can be aborted"
        );
        let no_steps = create(serde_json::json!({"name": "fraud", "shadow": {},
            "variants": [{"name": "stable", "weight": 100}, {"name": "canary", "weight": 0}]}))
        .unwrap_err();
        assert_eq!(field_of(&no_steps), Some("shadow"));
        let bad_gate = create(serde_json::json!({"name": "fraud", "steps": steps(),
            "variants": [{"name": "stable", "weight": 100}, {"name": "canary", "weight": 0}],
            "gates": {"pre_rollback": {"url": "gate"}}}))
        .unwrap_err();
        assert_eq!(field_of(&bad_gate), Some("gates.pre_rollback.url"));
    }

    #[test]
    fn a_gate_hold_is_recorded_once_per_answer_and_cleared_by_the_next_change() {
        let (r, _) = create(serde_json::json!({"name": "fraud", "steps": steps(),
            "variants": [{"name": "stable", "weight": 100}, {"name": "canary", "weight": 0}],
            "gates": {"pre_rollout": {"url": "http://gate/pre"}}}))
        .unwrap();
        let answer = |status| Answer {
            gate: crate::gates::Gate::PreRollout,
            url: "http://gate/pre".into(),
            status,
            message: "change freeze".into(),
            at_ms: 2_000,
        };
        let (held, e) = r.hold(&answer(Some(423)), 2_000).unwrap();
        assert_eq!(
            (held.status, held.version, e.kind.as_str(), e.actor.as_str()),
            (Status::Pending, 2, "held", "gate")
        );
        assert_eq!(
            e.reason,
            "held: gate pre_rollout (http://gate/pre) answered 423: change freeze"
        );
        assert_eq!(e.details["gate"]["status"], 423);
        assert!(held.hold(&answer(Some(423)), 3_000).is_none());
        assert!(held.hold(&answer(None), 3_000).is_some());
        let (started, _) = held.start(&by(), 4_000).unwrap();
        assert_eq!(
            (started.held.as_ref(), started.status),
            (None, Status::Progressing)
        );
    }

    fn blue_green(extra: serde_json::Value) -> Result<Change, RolloutError> {
        let mut body = serde_json::json!({"name": "fraud", "mode": "blue_green",
            "variants": [{"name": "blue", "weight": 100}, {"name": "green", "weight": 0}],
            "blue_green": {"preview_weight": 5, "rollback_window_seconds": 60}});
        for (k, v) in extra.as_object().unwrap() {
            body[k] = v.clone();
        }
        create(body)
    }

    #[test]
    fn a_blue_green_preview_is_one_judged_step_then_one_switch_with_a_rollback_window() {
        let (r, _) = blue_green(serde_json::json!({})).unwrap();
        assert_eq!(
            (r.status, r.step, weights(&r), r.steps.len()),
            (Status::Progressing, Some(0), vec![95.0, 5.0], 1)
        );
        let (switched, e) = r.advance(1_000, None).unwrap();
        assert_eq!(
            (switched.status, e.kind.as_str(), weights(&switched)),
            (Status::Promoted, "promoted", vec![0.0, 100.0])
        );
        assert_eq!(switched.rollback_window_until_ms, Some(61_000));
        assert_eq!(e.details["rollback_window_until_ms"], 61_000);
        let (back, _) = switched.rollback(&by(), 61_000).unwrap();
        assert_eq!(
            (back.status, weights(&back)),
            (Status::RolledBack, vec![100.0, 0.0])
        );
        assert_eq!(
            switched.rollback(&by(), 61_001).unwrap_err(),
            RolloutError::RollbackWindowClosed {
                rollout: "fraud".into(),
                closed_ms: 61_000
            }
        );
        let manual = blue_green(serde_json::json!({"blue_green": {"auto_promote": false}}))
            .unwrap()
            .0;
        assert_eq!(weights(&manual), vec![100.0, 0.0], "overrides only");
        let (waiting, e) = manual.advance(1_000, None).unwrap();
        assert_eq!(
            (waiting.status, waiting.awaiting_promotion, e.kind.as_str()),
            (Status::Progressing, true, "awaiting_promotion")
        );
        assert!(waiting.advance(2_000, None).is_none());
        let (promoted, _) = waiting.promote(None, &by(), 3_000).unwrap();
        assert_eq!(
            (
                promoted.awaiting_promotion,
                promoted.rollback_window_until_ms
            ),
            (false, Some(303_000))
        );
        for (extra, field) in [
            (
                serde_json::json!({"blue_green": {"preview_weight": 60}}),
                "blue_green.preview_weight",
            ),
            (serde_json::json!({"steps": steps()}), "steps"),
            (serde_json::json!({"mode": "canary"}), "blue_green"),
            (
                serde_json::json!({"variants": [{"name": "blue", "weight": 0}, {"name": "green", "weight": 100}]}),
                "variants",
            ),
        ] {
            let err = blue_green(extra.clone()).unwrap_err();
            assert_eq!(field_of(&err), Some(field), "{extra}: {err}");
        }
    }
}
