//! Retraining: each model's policy (what starts a job, what the job runs, what
//! happens to the version it registers) and its jobs, tracked queued → running →
//! succeeded or failed. The decisions here are pure; [`runner`] runs the commands and
//! talks to the registry, [`compare`] judges a challenger against the champion.
//!
//! A model has at most one job queued or running at a time (the store refuses a
//! second). A job runs on the replica that claimed it, which keeps a heartbeat; a job
//! whose replica stopped (killed, restarted) is marked failed, never run again.

pub mod champion;
pub mod cli;
pub mod compare;
pub mod runner;
pub mod supervise;

use outrider_protocol::FieldError;
use serde::{Deserialize, Serialize};

/// What a model's retraining does; `PUT /v1/models/{name}/retraining`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Policy {
    /// The command and its arguments; by default the project's trainer
    /// (`outrider-model train`) on the exported data.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub command: Option<Vec<String>>,
    #[serde(default = "default_timeout")]
    pub timeout_seconds: u64,
    /// How far back the labelled samples of the serving versions are exported.
    #[serde(default = "default_window")]
    pub labelled_window_seconds: u64,
    /// A CSV of labelled transactions (the reference data) the export starts with.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub reference_data: Option<String>,
    #[serde(default)]
    pub triggers: Triggers,
    /// What a registered challenger must show before it is rolled out.
    #[serde(default)]
    pub gate: ChallengerGate,
    /// The rollout a registered challenger starts; none: it is only registered.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub rollout: Option<serde_json::Value>,
}

fn default_timeout() -> u64 {
    1_800
}

fn default_window() -> u64 {
    7 * 86_400
}

#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Triggers {
    /// Start a job when the drift monitor reports one of these verdicts.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub drift: Option<DriftTrigger>,
    /// Start a job this often.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub schedule: Option<Schedule>,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct DriftTrigger {
    /// Finding kinds that start a job (e.g. `dataset_drift`, `prediction_drift`).
    pub verdicts: Vec<String>,
    /// The least time between two jobs this trigger starts.
    #[serde(default = "default_cooldown")]
    pub cooldown_seconds: u64,
}

fn default_cooldown() -> u64 {
    3_600
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Schedule {
    pub every_seconds: u64,
}

/// The challenger must beat the champion on the labelled window: its PR AUC at least
/// the champion's plus `min_pr_auc_gain` (negative: a loss it may have), on at least
/// `min_labelled` labelled samples.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ChallengerGate {
    #[serde(default)]
    pub min_pr_auc_gain: f64,
    #[serde(default = "default_min_labelled")]
    pub min_labelled: u64,
}

fn default_min_labelled() -> u64 {
    200
}

impl Default for ChallengerGate {
    fn default() -> Self {
        Self {
            min_pr_auc_gain: 0.0,
            min_labelled: default_min_labelled(),
        }
    }
}

/// At most this much of a job's output is kept (its end: where errors are).
pub const LOG_BYTES: usize = 64 * 1024;

impl Policy {
    /// Checks the policy's own values; field paths are those of the request body.
    pub fn check(&self) -> Result<(), FieldError> {
        if let Some(command) = &self.command
            && command.first().is_none_or(|c| c.trim().is_empty())
        {
            return Err(FieldError::new(
                "command",
                "give the program and its arguments",
            ));
        }
        if !(1..=86_400).contains(&self.timeout_seconds) {
            return Err(FieldError::new(
                "timeout_seconds",
                "must be between 1 and 86400",
            ));
        }
        if self.labelled_window_seconds == 0 {
            return Err(FieldError::new(
                "labelled_window_seconds",
                "must be positive",
            ));
        }
        if let Some(drift) = &self.triggers.drift
            && drift.verdicts.is_empty()
        {
            return Err(FieldError::new(
                "triggers.drift.verdicts",
                "name at least one verdict",
            ));
        }
        if let Some(schedule) = &self.triggers.schedule
            && schedule.every_seconds < 60
        {
            return Err(FieldError::new(
                "triggers.schedule.every_seconds",
                "must be at least 60",
            ));
        }
        if let Some(rollout) = &self.rollout
            && !rollout.is_object()
        {
            return Err(FieldError::new(
                "rollout",
                "must be a rollout spec (an object)",
            ));
        }
        Ok(())
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum JobStatus {
    Queued,
    Running,
    Succeeded,
    Failed,
}

impl JobStatus {
    pub fn as_str(self) -> &'static str {
        match self {
            JobStatus::Queued => "queued",
            JobStatus::Running => "running",
            JobStatus::Succeeded => "succeeded",
            JobStatus::Failed => "failed",
        }
    }
}

/// One retraining job.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Job {
    pub id: u64,
    pub model: String,
    pub status: JobStatus,
    /// `manual`, `schedule` or `drift`.
    pub trigger: String,
    pub reason: String,
    pub created_ms: u64,
    #[serde(default)]
    pub started_ms: Option<u64>,
    #[serde(default)]
    pub ended_ms: Option<u64>,
    /// The replica that runs (or ran) it.
    #[serde(default)]
    pub replica: Option<String>,
    #[serde(default)]
    pub command: Vec<String>,
    #[serde(default)]
    pub exit_code: Option<i32>,
    /// Why it failed, or what became of its version.
    #[serde(default)]
    pub outcome: String,
    /// The version it registered.
    #[serde(default)]
    pub version: Option<u64>,
    /// The challenger against the champion on the labelled window.
    #[serde(default)]
    pub comparison: Option<compare::Comparison>,
    /// The rollout it started.
    #[serde(default)]
    pub rollout: Option<String>,
    /// The end of the command's output ([`LOG_BYTES`] at most).
    #[serde(default)]
    pub log: String,
}

impl Job {
    pub fn queued(model: &str, trigger: &str, reason: &str, now_ms: u64) -> Self {
        Job {
            id: 0,
            model: model.to_owned(),
            status: JobStatus::Queued,
            trigger: trigger.to_owned(),
            reason: reason.to_owned(),
            created_ms: now_ms,
            started_ms: None,
            ended_ms: None,
            replica: None,
            command: Vec::new(),
            exit_code: None,
            outcome: String::new(),
            version: None,
            comparison: None,
            rollout: None,
            log: String::new(),
        }
    }

    /// The job marked failed with `why`.
    pub fn failed(mut self, why: &str, now_ms: u64) -> Self {
        self.status = JobStatus::Failed;
        self.outcome = why.to_owned();
        self.ended_ms = Some(now_ms);
        self
    }
}

/// Keeps the end of `text`, at most [`LOG_BYTES`], cut at a character boundary.
pub fn log_tail(text: &str) -> String {
    if text.len() <= LOG_BYTES {
        return text.to_owned();
    }
    let mut start = text.len() - LOG_BYTES;
    while !text.is_char_boundary(start) {
        start += 1;
    }
    format!("[… {start} bytes cut]\n{}", &text[start..])
}

/// Whether a trigger may start a job at `now_ms`, given when the model's last job
/// from that trigger was created.
pub fn due(last_ms: Option<u64>, every_ms: u64, now_ms: u64) -> bool {
    last_ms.is_none_or(|last| now_ms >= last.saturating_add(every_ms))
}

/// The drift finding, if any, among `findings` that the policy's drift trigger
/// starts a job for.
pub fn drift_reason<'a>(policy: &Policy, findings: &'a [String]) -> Option<&'a str> {
    let trigger = policy.triggers.drift.as_ref()?;
    findings
        .iter()
        .find(|f| trigger.verdicts.contains(f))
        .map(String::as_str)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn policy(body: serde_json::Value) -> Result<Policy, FieldError> {
        let p: Policy =
            serde_json::from_value(body).map_err(|e| FieldError::new("", e.to_string()))?;
        p.check().map(|()| p)
    }

    #[test]
    fn a_policy_names_its_bad_field() {
        let p = policy(serde_json::json!({})).unwrap();
        assert_eq!(
            (p.timeout_seconds, p.labelled_window_seconds),
            (1_800, 604_800)
        );
        assert_eq!(p.gate, ChallengerGate::default());
        for (body, field) in [
            (serde_json::json!({"command": []}), "command"),
            (serde_json::json!({"timeout_seconds": 0}), "timeout_seconds"),
            (
                serde_json::json!({"triggers": {"drift": {"verdicts": []}}}),
                "triggers.drift.verdicts",
            ),
            (
                serde_json::json!({"triggers": {"schedule": {"every_seconds": 5}}}),
                "triggers.schedule.every_seconds",
            ),
            (serde_json::json!({"rollout": "fraud"}), "rollout"),
        ] {
            assert_eq!(policy(body.clone()).unwrap_err().field, field, "{body}");
        }
    }

    #[test]
    fn triggers_respect_their_cooldown_and_verdicts() {
        assert!(due(None, 60_000, 0));
        assert!(!due(Some(1_000), 60_000, 60_999));
        assert!(due(Some(1_000), 60_000, 61_000));
        let p = policy(serde_json::json!({"triggers": {"drift": {"verdicts": ["dataset_drift"]}}}))
            .unwrap();
        let findings = vec!["feature_drift".to_owned(), "dataset_drift".to_owned()];
        assert_eq!(drift_reason(&p, &findings), Some("dataset_drift"));
        assert_eq!(drift_reason(&p, &findings[..1]), None);
    }

    #[test]
    fn a_long_log_keeps_its_end() {
        let long = "é".repeat(LOG_BYTES);
        let kept = log_tail(&long);
        assert!(kept.starts_with("[… "), "{}", &kept[..20]);
        assert!(kept.ends_with('é'));
        assert!(kept.len() < LOG_BYTES + 40);
        assert_eq!(log_tail("short"), "short");
    }
}
