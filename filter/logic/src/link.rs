//! The filter's link to the scorer (`scorer` in the configuration): which Envoy
//! cluster reaches it, how often to poll the rollout state and flush telemetry; and
//! which requests to sample for it (`telemetry`).

use serde::Deserialize;

use crate::config::ConfigError;

pub const DEFAULT_POLL_INTERVAL_MS: u64 = 1_000;
pub const DEFAULT_FLUSH_INTERVAL_MS: u64 = 1_000;
pub const DEFAULT_TIMEOUT_MS: u64 = 1_000;
pub const DEFAULT_MAX_PENDING_BATCHES: usize = 60;
pub const DEFAULT_SAMPLE_BODY_BYTES: usize = 64 * 1024;
pub const DEFAULT_SAMPLES_PER_BATCH: usize = 100;
const MAX_SAMPLE_BODY_BYTES: usize = 1024 * 1024;
const MAX_SAMPLES_PER_BATCH: usize = 10_000;
const MAX_FEATURES: usize = 64;

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct RawScorer {
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

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct RawTelemetry {
    #[serde(default)]
    sample_rate: Option<f64>,
    #[serde(default)]
    features: std::collections::BTreeMap<String, String>,
    #[serde(default)]
    score: Option<String>,
    #[serde(default)]
    max_body_bytes: Option<usize>,
    #[serde(default)]
    max_samples_per_batch: Option<usize>,
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

/// Which requests are sampled, and what is read from them.
#[derive(Debug, Clone, PartialEq)]
pub struct SampleRule {
    /// Share of requests sampled, 0 to 1.
    pub rate: f64,
    /// Feature name and the JSON pointer to it in the request body.
    pub features: Vec<(String, String)>,
    /// JSON pointer to the score in the response body.
    pub score: Option<String>,
    /// Bodies longer than this are not sampled.
    pub max_body_bytes: usize,
    pub max_samples_per_batch: usize,
}

impl SampleRule {
    pub fn reads_request_body(&self) -> bool {
        !self.features.is_empty()
    }

    pub fn reads_response_body(&self) -> bool {
        self.score.is_some()
    }
}

fn within(
    field: &str,
    value: Option<u64>,
    default: u64,
    min: u64,
    max: u64,
) -> Result<u64, ConfigError> {
    let v = value.unwrap_or(default);
    if !(min..=max).contains(&v) {
        return Err(ConfigError::new(
            field,
            format!("must be between {min} and {max}, got {v}"),
        ));
    }
    Ok(v)
}

fn pointer(field: &str, p: &str) -> Result<String, ConfigError> {
    if !p.is_empty() && !p.starts_with('/') {
        return Err(ConfigError::new(
            field,
            format!("`{p}` is not a JSON pointer (it starts with `/`, as in `/outputs/0/data/0`)"),
        ));
    }
    Ok(p.to_owned())
}

pub(crate) fn validate_scorer(
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

pub(crate) fn validate_telemetry(raw: RawTelemetry) -> Result<SampleRule, ConfigError> {
    let rate = raw.sample_rate.unwrap_or(0.0);
    if !rate.is_finite() || !(0.0..=1.0).contains(&rate) {
        return Err(ConfigError::new(
            "telemetry.sample_rate",
            format!("must be between 0 and 1, got {rate}"),
        ));
    }
    if raw.features.len() > MAX_FEATURES {
        return Err(ConfigError::new(
            "telemetry.features",
            format!("at most {MAX_FEATURES} features"),
        ));
    }
    let mut features = Vec::new();
    for (name, p) in raw.features {
        let field = format!("telemetry.features.{name}");
        crate::config::check_name(&field, &name)?;
        features.push((name, pointer(&field, &p)?));
    }
    let score = raw
        .score
        .map(|p| pointer("telemetry.score", &p))
        .transpose()?;
    let max_body_bytes = raw.max_body_bytes.unwrap_or(DEFAULT_SAMPLE_BODY_BYTES);
    if max_body_bytes == 0 || max_body_bytes > MAX_SAMPLE_BODY_BYTES {
        return Err(ConfigError::new(
            "telemetry.max_body_bytes",
            format!("must be between 1 and {MAX_SAMPLE_BODY_BYTES}"),
        ));
    }
    let max_samples_per_batch = raw
        .max_samples_per_batch
        .unwrap_or(DEFAULT_SAMPLES_PER_BATCH);
    if max_samples_per_batch == 0 || max_samples_per_batch > MAX_SAMPLES_PER_BATCH {
        return Err(ConfigError::new(
            "telemetry.max_samples_per_batch",
            format!("must be between 1 and {MAX_SAMPLES_PER_BATCH}"),
        ));
    }
    Ok(SampleRule {
        rate,
        features,
        score,
        max_body_bytes,
        max_samples_per_batch,
    })
}
