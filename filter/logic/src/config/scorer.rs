//! `scorer`: which Envoy cluster reaches the scorer, and how often the filter polls
//! the rollout state and flushes its telemetry.

use serde::Deserialize;

use super::ConfigError;
use super::fields::within;

pub const DEFAULT_POLL_INTERVAL_MS: u64 = 1_000;
pub const DEFAULT_FLUSH_INTERVAL_MS: u64 = 1_000;
pub const DEFAULT_TIMEOUT_MS: u64 = 1_000;
pub const DEFAULT_MAX_PENDING_BATCHES: usize = 60;

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct RawScorer {
    cluster: String,
    #[serde(default)]
    authority: Option<String>,
    #[serde(default)]
    poll_interval_ms: Option<u64>,
    #[serde(default)]
    flush_interval_ms: Option<u64>,
    #[serde(default)]
    timeout_ms: Option<u64>,
    #[serde(default)]
    token: Option<String>,
    #[serde(default)]
    token_env: Option<String>,
    #[serde(default)]
    max_pending_batches: Option<usize>,
}

/// How the filter reaches the scorer.
#[derive(Clone, PartialEq, Eq)]
pub struct ScorerLink {
    /// The Envoy cluster the calls go through.
    pub cluster: String,
    /// `:authority` of the calls.
    pub authority: String,
    pub poll_interval_ms: u64,
    pub flush_interval_ms: u64,
    pub timeout_ms: u64,
    /// Bearer token for telemetry.
    pub token: Option<String>,
    /// Batches kept while the scorer is unreachable; the oldest go first.
    pub max_pending_batches: usize,
}

impl std::fmt::Debug for ScorerLink {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ScorerLink")
            .field("cluster", &self.cluster)
            .field("authority", &self.authority)
            .field("poll_interval_ms", &self.poll_interval_ms)
            .field("flush_interval_ms", &self.flush_interval_ms)
            .field("timeout_ms", &self.timeout_ms)
            .field("token", &self.token.as_ref().map(|_| "redacted"))
            .field("max_pending_batches", &self.max_pending_batches)
            .finish()
    }
}

pub(super) fn validate(
    raw: RawScorer,
    env: &dyn Fn(&str) -> Option<String>,
) -> Result<ScorerLink, ConfigError> {
    if raw.cluster.is_empty() {
        return Err(ConfigError::new(
            "scorer.cluster",
            "must name the Envoy cluster that reaches the scorer",
        ));
    }
    let token = match (raw.token, raw.token_env) {
        (Some(_), Some(_)) => {
            return Err(ConfigError::new(
                "scorer",
                "give `token` or `token_env`, not both",
            ));
        }
        (Some(t), None) => Some(t),
        (None, Some(name)) => Some(env(&name).ok_or_else(|| {
            ConfigError::new(
                "scorer.token_env",
                format!("environment variable `{name}` is not set in the VM"),
            )
        })?),
        (None, None) => None,
    };
    if token
        .as_ref()
        .is_some_and(|t| t.is_empty() || t.len() > 512 || !t.chars().all(|c| c.is_ascii_graphic()))
    {
        return Err(ConfigError::new(
            "scorer.token",
            "must be 1 to 512 visible ASCII characters",
        ));
    }
    let pending = raw
        .max_pending_batches
        .unwrap_or(DEFAULT_MAX_PENDING_BATCHES);
    if !(1..=1000).contains(&pending) {
        return Err(ConfigError::new(
            "scorer.max_pending_batches",
            format!("must be between 1 and 1000, got {pending}"),
        ));
    }
    Ok(ScorerLink {
        authority: raw.authority.unwrap_or_else(|| raw.cluster.clone()),
        cluster: raw.cluster,
        poll_interval_ms: within(
            "scorer.poll_interval_ms",
            raw.poll_interval_ms,
            DEFAULT_POLL_INTERVAL_MS,
            100,
            60_000,
        )?,
        flush_interval_ms: within(
            "scorer.flush_interval_ms",
            raw.flush_interval_ms,
            DEFAULT_FLUSH_INTERVAL_MS,
            100,
            60_000,
        )?,
        timeout_ms: within(
            "scorer.timeout_ms",
            raw.timeout_ms,
            DEFAULT_TIMEOUT_MS,
            10,
            60_000,
        )?,
        token,
        max_pending_batches: pending,
    })
}
