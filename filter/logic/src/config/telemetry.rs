//! `telemetry`: which requests are sampled for the scorer, and what is read from them.

use serde::Deserialize;

use super::ConfigError;
use super::fields::{check_name, pointer};

pub const DEFAULT_SAMPLE_BODY_BYTES: usize = 64 * 1024;
pub const DEFAULT_SAMPLES_PER_BATCH: usize = 100;
const MAX_SAMPLE_BODY_BYTES: usize = 1024 * 1024;
const MAX_SAMPLES_PER_BATCH: usize = 10_000;
const MAX_FEATURES: usize = 64;

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct RawTelemetry {
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

pub(super) fn validate(raw: RawTelemetry) -> Result<SampleRule, ConfigError> {
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
        check_name(&field, &name)?;
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
