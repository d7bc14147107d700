//! Shadow variants at request time: which requests are mirrored, which headers go
//! with the copy, how two answers compare, and how often the worker sends copies. The
//! user's response never waits for the shadow; the desk ([`crate::desk`]) sends the
//! copies and pairs the answers.

use outrider_protocol::{ComparisonResult, LabelPair};

use crate::assignment::sticky_point;
use crate::config::Shadow;

/// The header that marks a mirrored request, with the shadow's name as its value.
pub const SHADOW_HEADER: &str = "x-outrider-shadow";

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

impl Comparison {
    /// How it is counted.
    pub fn result(&self) -> ComparisonResult {
        match self {
            Comparison::Compared {
                primary_label,
                shadow_label,
                ..
            } if primary_label == shadow_label => ComparisonResult::Agree,
            Comparison::Compared { .. } => ComparisonResult::Disagree,
            Comparison::NoPrimaryPrediction => ComparisonResult::NoPredictionPrimary,
            Comparison::NoShadowPrediction => ComparisonResult::NoPredictionShadow,
        }
    }

    /// The label pair and the score difference, when both answers had a prediction.
    pub fn labels(&self) -> Option<(LabelPair, f64)> {
        match self {
            Comparison::Compared {
                primary_label,
                shadow_label,
                diff,
                ..
            } => Some((LabelPair::of(*primary_label, *shadow_label), *diff)),
            _ => None,
        }
    }
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
    use crate::config::testing::{ONE_SHADOW as ONE, with_shadows as rollout};
    use crate::json_body::score as read_score;

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
