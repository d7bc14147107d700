//! One worker per Envoy polls the scorer. Workers share a lease in Envoy's shared
//! data: `<holder>:<expires_ms>`. The holder renews it; when it stops (its worker
//! stalls, its configuration is replaced), another worker takes it once it expires.
//! Writes use compare-and-swap, so two workers cannot both take it.

/// A lease as stored in shared data.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Lease {
    pub holder: u64,
    pub expires_ms: u64,
}

/// What a worker does with the lease at a tick.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum LeaseAction {
    /// It holds the lease: renew it and poll.
    Renew,
    /// Nobody holds a live lease: try to take it.
    Take,
    /// Another worker holds it.
    Follow,
}

impl Lease {
    pub fn encode(&self) -> String {
        format!("{:016x}:{}", self.holder, self.expires_ms)
    }

    pub fn decode(bytes: &[u8]) -> Option<Lease> {
        let text = std::str::from_utf8(bytes).ok()?;
        let (holder, expires) = text.split_once(':')?;
        Some(Lease {
            holder: u64::from_str_radix(holder, 16).ok()?,
            expires_ms: expires.parse().ok()?,
        })
    }
}

/// How long a lease lasts: three poll intervals, so one late tick does not lose it.
pub fn lease_ms(poll_interval_ms: u64) -> u64 {
    poll_interval_ms.saturating_mul(3).max(1_000)
}

pub fn lease_action(current: Option<&Lease>, me: u64, now_ms: u64) -> LeaseAction {
    match current {
        Some(lease) if lease.holder == me => LeaseAction::Renew,
        Some(lease) if lease.expires_ms > now_ms => LeaseAction::Follow,
        _ => LeaseAction::Take,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn encoding_round_trips_and_rejects_garbage() {
        let lease = Lease {
            holder: 0xdead_beef,
            expires_ms: 1_700_000_000_123,
        };
        assert_eq!(Lease::decode(lease.encode().as_bytes()), Some(lease));
        for bad in [&b""[..], b"xyz", b"12:", b":12", b"zz:12", b"\xff\xfe"] {
            assert_eq!(Lease::decode(bad), None);
        }
    }

    #[test]
    fn actions() {
        let lease = Lease {
            holder: 1,
            expires_ms: 5_000,
        };
        assert_eq!(lease_action(None, 2, 0), LeaseAction::Take);
        assert_eq!(lease_action(Some(&lease), 1, 9_000), LeaseAction::Renew);
        assert_eq!(lease_action(Some(&lease), 2, 4_999), LeaseAction::Follow);
        assert_eq!(lease_action(Some(&lease), 2, 5_000), LeaseAction::Take);
        assert_eq!(lease_ms(1_000), 3_000);
        assert_eq!(lease_ms(100), 1_000);
    }
}
