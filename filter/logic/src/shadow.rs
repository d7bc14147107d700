//! Shadow variants: a share of requests is copied to another model, whose answer is
//! compared with the one the user got. The user's response never waits for the shadow.
//! This module holds the configuration (`shadows` in the filter's JSON) and the
//! decisions: which requests to mirror, which headers to copy, how two answers compare.

use serde::Deserialize;
use xxhash_rust::xxh3::xxh3_64_with_seed;

use crate::assignment::{sticky_point, unit_interval};
use crate::config::{ConfigError, check_name, weight_to_basis_points};
use crate::telemetry::number_at;

pub const MAX_SHADOWS: usize = 8;
pub const DEFAULT_SHADOW_TIMEOUT_MS: u64 = 5_000;
pub const DEFAULT_SHADOW_BODY_BYTES: usize = 64 * 1024;
pub const DEFAULT_SHADOW_IN_FLIGHT: usize = 64;
const MAX_SHADOW_BODY_BYTES: usize = 4 * 1024 * 1024;

/// The header that marks a mirrored request, with the shadow's name as its value.
pub const SHADOW_HEADER: &str = "x-outrider-shadow";

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct RawShadow {
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
    seed: u64,
}

fn pointer(field: &str, p: &str) -> Result<String, ConfigError> {
    if !p.is_empty() && !p.starts_with('/') {
        return Err(ConfigError::new(
            field,
            format!("`{p}` is not a JSON pointer (it starts with `/`)"),
        ));
    }
    Ok(p.to_owned())
}

pub(crate) fn validate_shadows(
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

impl Shadow {
    /// Whether a request is mirrored: by its sticky key (the same users every time)
    /// when `by_key` is set and the request has one, else at random.
    pub fn mirrors(&self, key: Option<&str>, random_point: impl FnOnce() -> f64) -> bool {
        if self.share_bp == 0 {
            return false;
        }
        if self.share_bp >= 10_000 {
            return true;
        }
        let point = match key.filter(|_| self.by_key) {
            Some(key) => sticky_point(self.seed, key.as_bytes()),
            None => random_point(),
        };
        point < f64::from(self.share_bp) / 10_000.0
    }
}

/// Whether a request header goes to the shadow. Hop-by-hop headers belong to one
/// connection; `content-length` is set from the copied body; the routing header and
/// Envoy's own headers describe the primary's route, not the shadow's.
pub fn forwarded(name: &str, routing_header: &str) -> bool {
    const HOP_BY_HOP: [&str; 9] = [
        "connection",
        "keep-alive",
        "proxy-authenticate",
        "proxy-authorization",
        "proxy-connection",
        "te",
        "trailer",
        "transfer-encoding",
        "upgrade",
    ];
    !(HOP_BY_HOP.contains(&name)
        || name == "content-length"
        || name == routing_header
        || name == SHADOW_HEADER
        || name.starts_with("x-envoy-"))
}

/// An answer, as far as the comparison is concerned.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Answer {
    pub score: Option<f64>,
    pub latency_ms: u64,
}

/// The score at `pointer` in a response body.
pub fn read_score(body: &[u8], pointer: &str) -> Option<f64> {
    let document: serde_json::Value = serde_json::from_slice(body).ok()?;
    number_at(&document, pointer)
}

/// How a primary and a shadow answer compare.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum Comparison {
    Compared {
        primary_label: bool,
        shadow_label: bool,
        /// |primary score − shadow score|.
        diff: f64,
        /// Shadow latency minus primary latency.
        latency_delta_ms: i64,
    },
    NoPrimaryPrediction,
    NoShadowPrediction,
}

pub fn compare(primary: Answer, shadow: Answer, threshold: f64) -> Comparison {
    match (primary.score, shadow.score) {
        (None, _) => Comparison::NoPrimaryPrediction,
        (_, None) => Comparison::NoShadowPrediction,
        (Some(p), Some(s)) => Comparison::Compared {
            primary_label: p >= threshold,
            shadow_label: s >= threshold,
            diff: (p - s).abs(),
            latency_delta_ms: i64::try_from(shadow.latency_ms).unwrap_or(i64::MAX)
                - i64::try_from(primary.latency_ms).unwrap_or(i64::MAX),
        },
    }
}

/// A point for requests mirrored at random, from a per-request counter and a seed.
pub fn random_point(seed: u64, n: u64) -> f64 {
    unit_interval(xxh3_64_with_seed(&n.to_le_bytes(), seed))
}

/// How often a worker's root context wakes to send the shadow copies its requests
/// queued: every millisecond while copies flow, so they leave a few at a time rather
/// than in bursts that hold up the primaries queued behind them on the worker; every
/// 20 ms once none has been sent for a while, so an idle worker costs little.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Pace {
    fast: bool,
    last_sent_ms: u64,
}

pub const FAST_TICK_MS: u64 = 1;
pub const SLOW_TICK_MS: u64 = 20;
/// How long the fast tick outlasts the last copy sent.
const FAST_LINGER_MS: u64 = 200;

impl Default for Pace {
    fn default() -> Self {
        Self::new()
    }
}

impl Pace {
    /// Starts slow: the root sets [`SLOW_TICK_MS`] when it is configured.
    pub const fn new() -> Self {
        Self {
            fast: false,
            last_sent_ms: 0,
        }
    }

    /// After a tick that sent `sent` copies at `now_ms`: the new tick period in
    /// milliseconds, when it changes.
    pub fn after_tick(&mut self, now_ms: u64, sent: usize) -> Option<u64> {
        if sent > 0 {
            self.last_sent_ms = now_ms;
        }
        let fast = sent > 0 || now_ms.saturating_sub(self.last_sent_ms) < FAST_LINGER_MS;
        if fast == self.fast {
            return None;
        }
        self.fast = fast;
        Some(if fast { FAST_TICK_MS } else { SLOW_TICK_MS })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_tick_is_fast_while_copies_flow_and_slow_when_idle() {
        let mut pace = Pace::new();
        assert_eq!(pace.after_tick(1_000, 0), None, "idle stays slow");
        assert_eq!(pace.after_tick(1_020, 3), Some(FAST_TICK_MS));
        assert_eq!(pace.after_tick(1_021, 1), None);
        assert_eq!(
            pace.after_tick(1_022, 0),
            None,
            "a quiet moment keeps it fast"
        );
        assert_eq!(pace.after_tick(1_220, 0), None);
        assert_eq!(pace.after_tick(1_221, 0), Some(SLOW_TICK_MS));
        assert_eq!(pace.after_tick(1_241, 0), None);
        assert_eq!(pace.after_tick(1_261, 1), Some(FAST_TICK_MS));
    }
    use crate::config::Rollout;

    fn rollout(shadows: &str) -> Result<Rollout, ConfigError> {
        Rollout::from_json(
            format!(r#"{{"rollout": "fraud", "variants": [{{"name": "stable", "weight": 100}}], "shadows": {shadows}}}"#).as_bytes(),
            |_| None,
        )
    }

    const ONE: &str = r#"[{"name": "v3", "cluster": "model-v3", "share": 25, "by_key": true,
        "prediction": {"pointer": "/outputs/0/data/0", "threshold": 0.5}}]"#;

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

    #[test]
    fn by_key_mirroring_picks_the_same_users_at_the_configured_share() {
        let r = rollout(ONE).unwrap();
        let s = &r.shadows[0];
        let chosen: Vec<bool> = (0..20_000)
            .map(|i| s.mirrors(Some(&format!("u{i}")), || panic!("random")))
            .collect();
        let share = chosen.iter().filter(|c| **c).count() as f64 / 20_000.0;
        assert!(
            (share - 0.25).abs() < 4.0 * (0.25f64 * 0.75 / 20_000.0).sqrt(),
            "{share}"
        );
        let again: Vec<bool> = (0..20_000)
            .map(|i| s.mirrors(Some(&format!("u{i}")), || 0.0))
            .collect();
        assert_eq!(chosen, again);
        assert!(s.mirrors(None, || 0.1), "no key: random");
        assert!(!s.mirrors(None, || 0.3));
        let none = rollout(&ONE.replace("\"share\": 25", "\"share\": 0")).unwrap();
        assert!(!none.shadows[0].mirrors(Some("u1"), || 0.0));
        let all = rollout(&ONE.replace("\"share\": 25", "\"share\": 100")).unwrap();
        assert!(all.shadows[0].mirrors(Some("u1"), || 0.999));
    }

    #[test]
    fn headers_that_describe_the_primary_hop_stay_behind() {
        for h in [
            "connection",
            "transfer-encoding",
            "content-length",
            "x-outrider-variant",
            "x-envoy-expected-rq-timeout-ms",
            "x-outrider-shadow",
        ] {
            assert!(!forwarded(h, "x-outrider-variant"), "{h}");
        }
        for h in [
            ":method",
            ":path",
            ":authority",
            "content-type",
            "x-user-id",
            "x-request-id",
            "authorization",
        ] {
            assert!(forwarded(h, "x-outrider-variant"), "{h}");
        }
    }

    #[test]
    fn comparisons() {
        let p = Answer {
            score: Some(0.7),
            latency_ms: 10,
        };
        let s = Answer {
            score: Some(0.4),
            latency_ms: 25,
        };
        match compare(p, s, 0.5) {
            Comparison::Compared {
                primary_label,
                shadow_label,
                diff,
                latency_delta_ms,
            } => {
                assert!(primary_label && !shadow_label);
                assert!((diff - 0.3).abs() < 1e-12);
                assert_eq!(latency_delta_ms, 15);
            }
            other => panic!("{other:?}"),
        }
        assert_eq!(
            compare(
                Answer {
                    score: None,
                    latency_ms: 1
                },
                s,
                0.5
            ),
            Comparison::NoPrimaryPrediction
        );
        assert_eq!(
            compare(
                p,
                Answer {
                    score: None,
                    latency_ms: 1
                },
                0.5
            ),
            Comparison::NoShadowPrediction
        );
        assert_eq!(
            read_score(br#"{"outputs": [{"data": [0.93]}]}"#, "/outputs/0/data/0"),
            Some(0.93)
        );
        assert_eq!(
            read_score(br#"{"error": "boom"}"#, "/outputs/0/data/0"),
            None
        );
    }
}
