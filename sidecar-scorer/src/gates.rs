//! Gate webhooks: a team's own service that must agree before a rollout starts
//! (`pre_rollout`), before the controller promotes (`confirm_promotion`) and before the
//! analysis rolls back (`pre_rollback`). A non-2xx answer, or none within the timeout,
//! holds the rollout where it is; the gate is asked again every `retry_seconds`.

use std::time::Duration;

use outrider_protocol::FieldError;
use serde::{Deserialize, Serialize};

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Gate {
    PreRollout,
    ConfirmPromotion,
    PreRollback,
}

impl Gate {
    pub fn as_str(self) -> &'static str {
        match self {
            Gate::PreRollout => "pre_rollout",
            Gate::ConfirmPromotion => "confirm_promotion",
            Gate::PreRollback => "pre_rollback",
        }
    }
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Webhook {
    pub url: String,
    #[serde(default = "default_timeout")]
    pub timeout_seconds: u64,
    #[serde(default = "default_retry")]
    pub retry_seconds: u64,
}

fn default_timeout() -> u64 {
    5
}

fn default_retry() -> u64 {
    10
}

#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Gates {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub pre_rollout: Option<Webhook>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub confirm_promotion: Option<Webhook>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub pre_rollback: Option<Webhook>,
}

impl Gates {
    pub fn is_empty(&self) -> bool {
        self.pre_rollout.is_none()
            && self.confirm_promotion.is_none()
            && self.pre_rollback.is_none()
    }

    pub fn get(&self, gate: Gate) -> Option<&Webhook> {
        match gate {
            Gate::PreRollout => self.pre_rollout.as_ref(),
            Gate::ConfirmPromotion => self.confirm_promotion.as_ref(),
            Gate::PreRollback => self.pre_rollback.as_ref(),
        }
    }

    /// Checks every webhook; `field` prefixes the error's field path.
    pub fn check(&self, field: &str) -> Result<(), FieldError> {
        for gate in [Gate::PreRollout, Gate::ConfirmPromotion, Gate::PreRollback] {
            let Some(hook) = self.get(gate) else { continue };
            let at = |name: &str| format!("{field}{}.{name}", gate.as_str());
            let scheme_ok = hook.url.starts_with("http://") || hook.url.starts_with("https://");
            if !scheme_ok || reqwest::Url::parse(&hook.url).is_err() {
                return Err(FieldError::new(
                    at("url"),
                    format!("`{}` is not an http:// or https:// URL", hook.url),
                ));
            }
            if !(1..=60).contains(&hook.timeout_seconds) {
                return Err(FieldError::new(
                    at("timeout_seconds"),
                    "must be between 1 and 60",
                ));
            }
            if !(1..=3600).contains(&hook.retry_seconds) {
                return Err(FieldError::new(
                    at("retry_seconds"),
                    "must be between 1 and 3600",
                ));
            }
        }
        Ok(())
    }
}

/// A gate's answer, kept on a rollout it holds.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Answer {
    pub gate: Gate,
    pub url: String,
    /// The HTTP status; none when the call failed or timed out.
    pub status: Option<u16>,
    /// The start of the answer's body, or why there was none.
    pub message: String,
    pub at_ms: u64,
}

impl Answer {
    pub fn passed(&self) -> bool {
        self.status.is_some_and(|s| (200..300).contains(&s))
    }

    /// One line for an event's reason.
    pub fn describe(&self) -> String {
        let said = match self.status {
            Some(s) => format!("answered {s}"),
            None => "did not answer".to_owned(),
        };
        let mut line = format!("gate {} ({}) {said}", self.gate.as_str(), self.url);
        if !self.message.is_empty() {
            line.push_str(&format!(": {}", self.message));
        }
        line
    }
}

/// What a gate's answer may carry back into events.
const MESSAGE_CHARS: usize = 300;

/// Posts `body` to the gate and reads its answer.
pub async fn ask(
    http: &reqwest::Client,
    gate: Gate,
    hook: &Webhook,
    body: &serde_json::Value,
    now_ms: u64,
) -> Answer {
    let sent = http
        .post(&hook.url)
        .timeout(Duration::from_secs(hook.timeout_seconds))
        .json(body)
        .send()
        .await;
    let (status, message) = match sent {
        Ok(reply) => {
            let status = reply.status().as_u16();
            let text = reply.text().await.unwrap_or_default();
            (
                Some(status),
                text.trim().chars().take(MESSAGE_CHARS).collect(),
            )
        }
        Err(e) if e.is_timeout() => (None, format!("no answer within {} s", hook.timeout_seconds)),
        Err(e) => (None, e.to_string()),
    };
    Answer {
        gate,
        url: hook.url.clone(),
        status,
        message,
        at_ms: now_ms,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn hook(url: &str) -> Webhook {
        Webhook {
            url: url.into(),
            timeout_seconds: 5,
            retry_seconds: 10,
        }
    }

    #[test]
    fn webhooks_are_checked_with_their_field() {
        let ok = Gates {
            pre_rollout: Some(hook("http://gate.example:8080/ok")),
            ..Gates::default()
        };
        assert_eq!(ok.check("gates."), Ok(()));
        let bad = Gates {
            confirm_promotion: Some(hook("ftp://gate")),
            ..Gates::default()
        };
        assert_eq!(
            bad.check("gates.").unwrap_err().field,
            "gates.confirm_promotion.url"
        );
        let slow = Gates {
            pre_rollback: Some(Webhook {
                timeout_seconds: 0,
                ..hook("https://gate")
            }),
            ..Gates::default()
        };
        assert_eq!(
            slow.check("gates.").unwrap_err().field,
            "gates.pre_rollback.timeout_seconds"
        );
    }

    #[test]
    fn only_a_2xx_answer_passes() {
        let answer = |status| Answer {
            gate: Gate::PreRollout,
            url: "http://gate".into(),
            status,
            message: "no".into(),
            at_ms: 0,
        };
        assert!(answer(Some(204)).passed());
        assert!(!answer(Some(409)).passed());
        assert!(!answer(None).passed());
        assert_eq!(
            answer(Some(409)).describe(),
            "gate pre_rollout (http://gate) answered 409: no"
        );
    }
}
