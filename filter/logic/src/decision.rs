//! The per-request decision: an authentic override wins, then the sticky key, then
//! per-request randomness. The decision carries the sticky key, so nothing later in
//! the request reads it again.

use crate::assignment::sticky_point;
use crate::config::Rollout;
use crate::host::{Host, Map};
use crate::override_token::Rejection;

/// Read access to the request's headers (names are lowercase).
pub trait RequestHeaders {
    fn get(&self, name: &str) -> Option<String>;
}

/// The request headers of a host.
pub struct HostRequestHeaders<'a, H: Host>(pub &'a H);

impl<H: Host> RequestHeaders for HostRequestHeaders<'_, H> {
    fn get(&self, name: &str) -> Option<String> {
        self.0.header(Map::RequestHeaders, name)
    }
}

/// How the variant was chosen.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Via {
    Override,
    StickyKey,
    Random,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Decision {
    /// Index into [`Rollout::variants`].
    pub variant: usize,
    pub via: Via,
    /// Set when the request carried an override that was ignored.
    pub rejected_override: Option<Rejection>,
    /// The request's sticky key, if it has one (also when an override decided).
    pub sticky_key: Option<String>,
}

impl Rollout {
    /// Chooses the variant for one request. `now_unix` and `random_point` are only
    /// called when needed (an override to check; no sticky key), so the common path
    /// reads one header and nothing else.
    pub fn decide(
        &self,
        headers: &impl RequestHeaders,
        now_unix: impl FnOnce() -> u64,
        random_point: impl FnOnce() -> f64,
    ) -> Decision {
        let sticky_key = headers
            .get(self.sticky_key.header_name())
            .and_then(|value| self.sticky_key.owned_key_from(value));
        let mut rejected_override = None;
        if let Some(rule) = &self.override_rule
            && let Some(token) = headers.get(&rule.header)
        {
            match rule.verify(&self.name, &token, now_unix(), |v| {
                self.variant_index(v).is_some()
            }) {
                Ok(name) => {
                    if let Some(variant) = self.variant_index(name) {
                        return Decision {
                            variant,
                            via: Via::Override,
                            rejected_override: None,
                            sticky_key,
                        };
                    }
                    rejected_override = Some(Rejection::UnknownVariant);
                }
                Err(rejection) => rejected_override = Some(rejection),
            }
        }
        let (point, via) = match &sticky_key {
            Some(key) => (sticky_point(self.salt_seed, key.as_bytes()), Via::StickyKey),
            None => (random_point().clamp(0.0, 1.0), Via::Random),
        };
        Decision {
            variant: self.split.variant_at(point),
            via,
            rejected_override,
            sticky_key,
        }
    }
}

#[cfg(test)]
mod tests {
    use std::collections::HashMap;

    use super::*;
    use crate::override_token::mint;

    const SECRET: &str = "0123456789abcdef0123456789abcdef";
    const NOW: u64 = 1_800_000_000;

    struct Headers(HashMap<&'static str, String>);

    impl RequestHeaders for Headers {
        fn get(&self, name: &str) -> Option<String> {
            self.0.get(name).cloned()
        }
    }

    fn headers(pairs: &[(&'static str, &str)]) -> Headers {
        Headers(pairs.iter().map(|(k, v)| (*k, (*v).to_owned())).collect())
    }

    fn rollout(extra: &str) -> Rollout {
        let json = format!(
            r#"{{"rollout": "fraud", "variants": [{{"name": "stable", "weight": 50}},
                {{"name": "canary", "weight": 50}}]{extra}}}"#
        );
        Rollout::from_json(json.as_bytes(), |_| None).unwrap()
    }

    fn never_now() -> u64 {
        panic!("the clock was read without an override header")
    }

    #[test]
    fn sticky_keys_decide_and_never_touch_randomness() {
        let r = rollout("");
        let mut seen = [false; 2];
        for i in 0..64 {
            let key = format!("user-{i}");
            let d = r.decide(&headers(&[("x-user-id", &key)]), never_now, || {
                panic!("random")
            });
            assert_eq!(d.via, Via::StickyKey);
            assert_eq!(d.rejected_override, None);
            let again = r.decide(&headers(&[("x-user-id", &key)]), never_now, || {
                panic!("random")
            });
            assert_eq!(d, again);
            seen[d.variant] = true;
        }
        assert_eq!(seen, [true, true]);
    }

    #[test]
    fn no_key_uses_the_random_point() {
        let r = rollout("");
        let low = r.decide(&headers(&[]), never_now, || 0.1);
        let high = r.decide(&headers(&[("x-user-id", "  ")]), never_now, || 0.9);
        assert_eq!((low.variant, low.via), (0, Via::Random));
        assert_eq!((high.variant, high.via), (1, Via::Random));
    }

    #[test]
    fn cookie_keys() {
        let r = rollout(r#", "sticky_key": {"cookie": "uid"}"#);
        let a = r.decide(
            &headers(&[("cookie", "theme=dark; uid=u7")]),
            never_now,
            || panic!("random"),
        );
        let b = rollout("").decide(&headers(&[("x-user-id", "u7")]), never_now, || {
            panic!("random")
        });
        assert_eq!(
            a, b,
            "the same key hashes the same whichever source it came from"
        );
        let none = r.decide(&headers(&[("x-user-id", "u7")]), never_now, || 0.99);
        assert_eq!(none.via, Via::Random);
    }

    #[test]
    fn overrides_need_a_valid_token() {
        let r = rollout(&format!(r#", "override": {{"secrets": ["{SECRET}"]}}"#));
        // Find a key that the hash puts in stable, then force it into the canary.
        let key = (0..)
            .map(|i| format!("user-{i}"))
            .find(|k| {
                r.decide(&headers(&[("x-user-id", k)]), never_now, || 0.0)
                    .variant
                    == 0
            })
            .unwrap();
        let token = mint(SECRET.as_bytes(), "fraud", "canary", NOW + 60).unwrap();
        let forced = r.decide(
            &headers(&[("x-user-id", &key), ("x-outrider-override", &token)]),
            || NOW,
            || 0.0,
        );
        assert_eq!(
            forced,
            Decision {
                variant: 1,
                via: Via::Override,
                rejected_override: None,
                sticky_key: Some(key.clone()),
            }
        );

        let forged = mint(b"some-other-secret-entirely", "fraud", "canary", NOW + 60).unwrap();
        let d = r.decide(
            &headers(&[("x-user-id", &key), ("x-outrider-override", &forged)]),
            || NOW,
            || 0.0,
        );
        assert_eq!(
            d,
            Decision {
                variant: 0,
                via: Via::StickyKey,
                rejected_override: Some(Rejection::BadSignature),
                sticky_key: Some(key.clone()),
            }
        );

        let expired = mint(SECRET.as_bytes(), "fraud", "canary", NOW - 1).unwrap();
        let d = r.decide(
            &headers(&[("x-user-id", &key), ("x-outrider-override", &expired)]),
            || NOW,
            || 0.0,
        );
        assert_eq!(d.rejected_override, Some(Rejection::Expired));
        assert_eq!(d.variant, 0);
    }

    #[test]
    fn overrides_are_ignored_when_not_configured() {
        let r = rollout("");
        let token = mint(SECRET.as_bytes(), "fraud", "canary", NOW + 60).unwrap();
        let d = r.decide(
            &headers(&[("x-outrider-override", &token)]),
            never_now,
            || 0.1,
        );
        assert_eq!(
            d,
            Decision {
                variant: 0,
                via: Via::Random,
                rejected_override: None,
                sticky_key: None,
            }
        );
    }
}
