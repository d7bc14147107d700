//! `shadows`: variants that get copies of requests, to compare their answers with the
//! primary's.

use serde::Deserialize;
use xxhash_rust::xxh3::xxh3_64_with_seed;

use super::ConfigError;
use super::fields::{check_name, pointer, weight_to_basis_points};

pub const MAX_SHADOWS: usize = 8;
pub const DEFAULT_SHADOW_TIMEOUT_MS: u64 = 5_000;
pub const DEFAULT_SHADOW_BODY_BYTES: usize = 64 * 1024;
pub const DEFAULT_SHADOW_IN_FLIGHT: usize = 64;
const MAX_SHADOW_BODY_BYTES: usize = 4 * 1024 * 1024;

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct RawShadow {
    name: String,
    cluster: String,
    #[serde(default)]
    authority: Option<String>,
    share: f64,
    #[serde(default)]
    by_key: bool,
    #[serde(default)]
    timeout_ms: Option<u64>,
    #[serde(default)]
    max_body_bytes: Option<usize>,
    #[serde(default)]
    max_in_flight: Option<usize>,
    prediction: RawPrediction,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawPrediction {
    pointer: String,
    #[serde(default)]
    primary_pointer: Option<String>,
    threshold: f64,
}

/// Where a prediction is in a response, and the threshold that makes it a label.
#[derive(Debug, Clone, PartialEq)]
pub struct Prediction {
    /// JSON pointer to the score in the shadow's response.
    pub pointer: String,
    /// JSON pointer to the score in the primary's response.
    pub primary_pointer: String,
    /// A score at or above it is label 1.
    pub threshold: f64,
}

/// One validated shadow variant.
#[derive(Debug, Clone, PartialEq)]
pub struct Shadow {
    pub name: String,
    /// The Envoy cluster the copies go to.
    pub cluster: String,
    /// `:authority` of the copies; the request's own when unset.
    pub authority: Option<String>,
    /// Share of requests mirrored, in basis points.
    pub share_bp: u32,
    /// Mirror the same users every time (by sticky key) rather than random requests.
    pub by_key: bool,
    pub timeout_ms: u64,
    /// Requests (and answers) larger than this are not mirrored.
    pub max_body_bytes: usize,
    /// Copies in flight per worker; beyond it requests are not mirrored.
    pub max_in_flight: usize,
    pub prediction: Prediction,
    /// Seed that makes this shadow's by-key choice independent of the split.
    pub(crate) seed: u64,
}

pub(super) fn validate(
    raw: Vec<RawShadow>,
    variant_names: &[&str],
    salt_seed: u64,
) -> Result<Vec<Shadow>, ConfigError> {
    if raw.len() > MAX_SHADOWS {
        return Err(ConfigError::new(
            "shadows",
            format!("at most {MAX_SHADOWS} shadow variants, got {}", raw.len()),
        ));
    }
    let mut shadows: Vec<Shadow> = Vec::with_capacity(raw.len());
    for (i, s) in raw.into_iter().enumerate() {
        let field = |f: &str| format!("shadows[{i}].{f}");
        check_name(&field("name"), &s.name)?;
        if variant_names.contains(&s.name.as_str()) || shadows.iter().any(|o| o.name == s.name) {
            return Err(ConfigError::new(
                field("name"),
                format!("`{}` is already the name of a variant or shadow", s.name),
            ));
        }
        if s.cluster.is_empty() {
            return Err(ConfigError::new(
                field("cluster"),
                "must name the Envoy cluster of the shadow",
            ));
        }
        let timeout_ms = s.timeout_ms.unwrap_or(DEFAULT_SHADOW_TIMEOUT_MS);
        if !(10..=60_000).contains(&timeout_ms) {
            return Err(ConfigError::new(
                field("timeout_ms"),
                format!("must be between 10 and 60000, got {timeout_ms}"),
            ));
        }
        let max_body_bytes = s.max_body_bytes.unwrap_or(DEFAULT_SHADOW_BODY_BYTES);
        if max_body_bytes == 0 || max_body_bytes > MAX_SHADOW_BODY_BYTES {
            return Err(ConfigError::new(
                field("max_body_bytes"),
                format!("must be between 1 and {MAX_SHADOW_BODY_BYTES}"),
            ));
        }
        let max_in_flight = s.max_in_flight.unwrap_or(DEFAULT_SHADOW_IN_FLIGHT);
        if !(1..=10_000).contains(&max_in_flight) {
            return Err(ConfigError::new(
                field("max_in_flight"),
                format!("must be between 1 and 10000, got {max_in_flight}"),
            ));
        }
        if !s.prediction.threshold.is_finite() {
            return Err(ConfigError::new(
                field("prediction.threshold"),
                "must be a number",
            ));
        }
        let shadow_pointer = pointer(&field("prediction.pointer"), &s.prediction.pointer)?;
        let primary_pointer = match s.prediction.primary_pointer {
            Some(p) => pointer(&field("prediction.primary_pointer"), &p)?,
            None => shadow_pointer.clone(),
        };
        shadows.push(Shadow {
            share_bp: weight_to_basis_points(&field("share"), s.share)?,
            seed: xxh3_64_with_seed(s.name.as_bytes(), salt_seed),
            name: s.name,
            cluster: s.cluster,
            authority: s.authority,
            by_key: s.by_key,
            timeout_ms,
            max_body_bytes,
            max_in_flight,
            prediction: Prediction {
                pointer: shadow_pointer,
                primary_pointer,
                threshold: s.prediction.threshold,
            },
        });
    }
    Ok(shadows)
}

#[cfg(test)]
mod tests {
    use super::super::testing::{ONE_SHADOW as ONE, with_shadows as rollout};

    #[test]
    fn configuration_defaults_and_refusals() {
        let r = rollout(ONE).unwrap();
        let s = &r.shadows[0];
        assert_eq!(
            (s.share_bp, s.timeout_ms, s.max_body_bytes, s.max_in_flight),
            (2500, 5_000, 65_536, 64)
        );
        assert_eq!(s.prediction.primary_pointer, "/outputs/0/data/0");
        let bad = [
            (
                r#"[{"name": "stable", "cluster": "c", "share": 1, "prediction": {"pointer": "/a", "threshold": 0.5}}]"#,
                "shadows[0].name",
            ),
            (
                r#"[{"name": "v3", "cluster": "", "share": 1, "prediction": {"pointer": "/a", "threshold": 0.5}}]"#,
                "shadows[0].cluster",
            ),
            (
                r#"[{"name": "v3", "cluster": "c", "share": 120, "prediction": {"pointer": "/a", "threshold": 0.5}}]"#,
                "shadows[0].share",
            ),
            (
                r#"[{"name": "v3", "cluster": "c", "share": 1, "prediction": {"pointer": "a", "threshold": 0.5}}]"#,
                "shadows[0].prediction.pointer",
            ),
            (
                r#"[{"name": "v3", "cluster": "c", "share": 1, "timeout_ms": 0, "prediction": {"pointer": "/a", "threshold": 0.5}}]"#,
                "shadows[0].timeout_ms",
            ),
            (
                r#"[{"name": "v3", "cluster": "c", "share": 1, "max_in_flight": 0, "prediction": {"pointer": "/a", "threshold": 0.5}}]"#,
                "shadows[0].max_in_flight",
            ),
            (
                r#"[{"name": "v3", "cluster": "c", "share": 1}]"#,
                "shadows[0].prediction",
            ),
            (
                r#"[{"name": "v3", "cluster": "c", "share": 1, "prediction": {"pointer": "/a", "threshold": 0.5}},
                 {"name": "v3", "cluster": "d", "share": 1, "prediction": {"pointer": "/a", "threshold": 0.5}}]"#,
                "shadows[1].name",
            ),
        ];
        for (json, field) in bad {
            let err = rollout(json).unwrap_err();
            assert_eq!(err.field, field, "{json}: {err}");
        }
    }
}
