//! `guardrail`: per-variant limits that take a failing variant to 0% on this Envoy
//! without waiting for the scorer (see [`crate::guardrail`]).

use serde::Deserialize;

use super::ConfigError;
use super::fields::within;

pub const DEFAULT_GUARDRAIL_WINDOW_MS: u64 = 10_000;
pub const DEFAULT_GUARDRAIL_MIN_REQUESTS: u64 = 20;
const MIN_WINDOW_MS: u64 = 1_000;
const MAX_WINDOW_MS: u64 = 600_000;
const MAX_MIN_REQUESTS: u64 = 1_000_000;
const MAX_P99_MS: u64 = 600_000;

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct RawGuardrail {
    #[serde(default)]
    window_ms: Option<u64>,
    #[serde(default)]
    min_requests: Option<u64>,
    #[serde(default)]
    max_5xx_share: Option<f64>,
    #[serde(default)]
    max_grpc_error_share: Option<f64>,
    #[serde(default)]
    max_p99_ms: Option<u64>,
    #[serde(default)]
    variants: Option<Vec<String>>,
}

/// The limits, and which variants they guard.
#[derive(Debug, Clone, PartialEq)]
pub struct Guardrail {
    /// The span judged: the last `window_ms`, kept in ten buckets.
    pub window_ms: u64,
    /// Requests of a variant answered within the window before it is judged.
    pub min_requests: u64,
    /// Largest share of 5xx responses allowed, in [0, 1).
    pub max_5xx_share: Option<f64>,
    /// Largest share of responses with a non-OK `grpc-status` allowed, in [0, 1).
    pub max_grpc_error_share: Option<f64>,
    /// Largest p99 latency allowed, ms: at most 1% of the responses may be slower.
    pub max_p99_ms: Option<u64>,
    /// Indexes of the guarded variants; never 0, the baseline that takes their traffic.
    pub variants: Vec<usize>,
}

fn share(field: &str, value: Option<f64>) -> Result<Option<f64>, ConfigError> {
    match value {
        Some(v) if !v.is_finite() || !(0.0..1.0).contains(&v) => Err(ConfigError::new(
            field,
            format!("must be at least 0 and below 1, got {v}"),
        )),
        other => Ok(other),
    }
}

pub(super) fn validate(raw: RawGuardrail, variants: &[&str]) -> Result<Guardrail, ConfigError> {
    let window_ms = within(
        "guardrail.window_ms",
        raw.window_ms,
        DEFAULT_GUARDRAIL_WINDOW_MS,
        MIN_WINDOW_MS,
        MAX_WINDOW_MS,
    )?;
    let min_requests = within(
        "guardrail.min_requests",
        raw.min_requests,
        DEFAULT_GUARDRAIL_MIN_REQUESTS,
        1,
        MAX_MIN_REQUESTS,
    )?;
    let max_5xx_share = share("guardrail.max_5xx_share", raw.max_5xx_share)?;
    let max_grpc_error_share = share("guardrail.max_grpc_error_share", raw.max_grpc_error_share)?;
    let max_p99_ms = raw
        .max_p99_ms
        .map(|ms| within("guardrail.max_p99_ms", Some(ms), ms, 1, MAX_P99_MS))
        .transpose()?;
    if max_5xx_share.is_none() && max_grpc_error_share.is_none() && max_p99_ms.is_none() {
        return Err(ConfigError::new(
            "guardrail",
            "give at least one limit: `max_5xx_share`, `max_grpc_error_share` or `max_p99_ms`",
        ));
    }
    let baseline = variants.first().copied().unwrap_or_default();
    let guarded = match raw.variants {
        None => (1..variants.len()).collect(),
        Some(names) => {
            let mut guarded: Vec<usize> = Vec::with_capacity(names.len());
            for (i, name) in names.iter().enumerate() {
                let field = format!("guardrail.variants[{i}]");
                let index = variants.iter().position(|v| v == name).ok_or_else(|| {
                    ConfigError::new(&field, format!("no variant `{name}` in this rollout"))
                })?;
                if index == 0 {
                    return Err(ConfigError::new(
                        &field,
                        format!(
                            "`{name}` is the baseline (the first variant): it takes the \
                             traffic of a tripped variant, so it cannot be guarded"
                        ),
                    ));
                }
                if guarded.contains(&index) {
                    return Err(ConfigError::new(
                        &field,
                        format!("`{name}` is listed twice"),
                    ));
                }
                guarded.push(index);
            }
            guarded
        }
    };
    if guarded.is_empty() {
        return Err(ConfigError::new(
            "guardrail.variants",
            format!(
                "guards no variant: `{baseline}`, the first variant, is the baseline and is \
                 never guarded, and there is no other"
            ),
        ));
    }
    Ok(Guardrail {
        window_ms,
        min_requests,
        max_5xx_share,
        max_grpc_error_share,
        max_p99_ms,
        variants: guarded,
    })
}
