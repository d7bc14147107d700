//! Variant assignment: a salted hash of the sticky key gives a point in [0, 1), and the
//! point falls into one variant's slice of the cumulative weights.
//!
//! The slices are laid out in configuration order, so the first variant owns
//! `[0, w0)` and the last owns `[1 - w_last, 1)`. Growing the last variant (or the
//! first) only moves the boundary away from the points it already holds: raising a
//! canary listed last never moves a user out of it. The hash depends only on the salt
//! and the key, so a user's variant is the same on every worker and after restarts.

use std::cell::Cell;

use xxhash_rust::xxh3::{xxh3_64, xxh3_64_with_seed};

/// Cumulative weights as upper bounds of each variant's slice of [0, 1).
#[derive(Debug, Clone, PartialEq)]
pub struct Split {
    upper_bounds: Vec<f64>,
}

impl Split {
    /// Weights in basis points; they are expected to add up to 10,000 (validated by the
    /// configuration). The last bound is exactly 1.0 so every point has a slice.
    pub fn from_basis_points(weights: impl IntoIterator<Item = u32>) -> Self {
        let mut cumulative: u32 = 0;
        let mut upper_bounds: Vec<f64> = weights
            .into_iter()
            .map(|w| {
                cumulative = cumulative.saturating_add(w);
                f64::from(cumulative) / 10_000.0
            })
            .collect();
        if let Some(last) = upper_bounds.last_mut() {
            *last = 1.0;
        }
        Self { upper_bounds }
    }

    /// Index of the variant whose slice holds `point` (0 <= point < 1). Variants with a
    /// zero weight have an empty slice and are never chosen.
    pub fn variant_at(&self, point: f64) -> usize {
        self.upper_bounds
            .iter()
            .position(|bound| point < *bound)
            .unwrap_or_else(|| self.upper_bounds.len().saturating_sub(1))
    }
}

/// The salted hash of a sticky key, as a point in [0, 1). The salt seeds the hash
/// rather than being concatenated, so nothing is allocated per request.
pub fn sticky_point(salt_seed: u64, key: &[u8]) -> f64 {
    unit_interval(xxh3_64_with_seed(key, salt_seed))
}

/// The seed that a salt gives [`sticky_point`]; computed once per configuration.
pub fn salt_seed(salt: &str) -> u64 {
    xxh3_64(salt.as_bytes())
}

/// The top 53 bits of a 64-bit value as a double in [0, 1): exact, never 1.0.
pub fn unit_interval(bits: u64) -> f64 {
    (bits >> 11) as f64 * (1.0 / (1u64 << 53) as f64)
}

/// Per-request randomness for requests without a sticky key: a counter hashed under a
/// random seed. It needs no `RefCell` (a borrow could panic) and costs one hash.
#[derive(Debug)]
pub struct RandomPoints {
    seed: u64,
    counter: Cell<u64>,
}

impl RandomPoints {
    pub fn new(seed: u64) -> Self {
        Self {
            seed,
            counter: Cell::new(0),
        }
    }

    pub fn next_point(&self) -> f64 {
        let n = self.counter.get().wrapping_add(1);
        self.counter.set(n);
        unit_interval(xxh3_64_with_seed(&n.to_le_bytes(), self.seed))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn split(weights: &[u32]) -> Split {
        Split::from_basis_points(weights.iter().copied())
    }

    #[test]
    fn points_fall_into_the_cumulative_slices() {
        let s = split(&[9000, 1000]);
        assert_eq!(s.variant_at(0.0), 0);
        assert_eq!(s.variant_at(0.899_999), 0);
        assert_eq!(s.variant_at(0.9), 1);
        assert_eq!(s.variant_at(0.999_999_999), 1);
    }

    #[test]
    fn zero_weights_are_never_chosen() {
        let s = split(&[0, 10_000, 0]);
        for i in 0..1000 {
            assert_eq!(s.variant_at(f64::from(i) / 1000.0), 1);
        }
        let s = split(&[5000, 0, 5000]);
        assert_eq!(s.variant_at(0.4999), 0);
        assert_eq!(s.variant_at(0.5), 2);
    }

    #[test]
    fn the_last_bound_is_one_whatever_rounding_does() {
        let s = split(&[3333, 3333, 3334]);
        assert_eq!(s.variant_at(0.999_999_999_999), 2);
        assert_eq!(s.variant_at(unit_interval(u64::MAX)), 2);
    }

    #[test]
    fn unit_interval_stays_below_one() {
        assert_eq!(unit_interval(0), 0.0);
        assert!(unit_interval(u64::MAX) < 1.0);
        assert_eq!(unit_interval(1 << 63), 0.5);
    }

    /// Reference values pin the hash (xxh3-64 of the key, seeded with xxh3-64 of the
    /// salt): a change here moves users between variants in production, so it must be
    /// deliberate. Other tools can recompute an assignment from these definitions.
    #[test]
    fn sticky_points_are_pinned() {
        let seed = salt_seed("fraud");
        assert_eq!(seed, 0x6e16_ef28_0111_82a5);
        assert_eq!(sticky_point(seed, b"user-1"), 0.949_989_795_256_937_7);
        assert_eq!(sticky_point(seed, b"user-2"), 0.879_841_823_723_143_9);
        assert_ne!(
            sticky_point(salt_seed("other-salt"), b"user-1"),
            0.949_989_795_256_937_7
        );
    }

    #[test]
    fn keys_spread_evenly() {
        let seed = salt_seed("spread");
        let s = split(&[2500, 2500, 2500, 2500]);
        let mut counts = [0u32; 4];
        let n = 100_000;
        for i in 0..n {
            counts[s.variant_at(sticky_point(seed, format!("user-{i}").as_bytes()))] += 1;
        }
        // Binomial sd of a quarter share of 100,000 is about 137; allow 4 sd.
        for c in counts {
            assert!((f64::from(c) - 25_000.0).abs() < 4.0 * 137.0, "{counts:?}");
        }
    }

    #[test]
    fn random_points_are_uniform_and_differ_by_seed() {
        let r = RandomPoints::new(7);
        let s = split(&[9000, 1000]);
        let n = 100_000;
        let canary = (0..n).filter(|_| s.variant_at(r.next_point()) == 1).count();
        // sd of a 10% share of 100,000 is about 95.
        assert!((canary as f64 - 10_000.0).abs() < 4.0 * 95.0, "{canary}");
        assert_ne!(
            RandomPoints::new(1).next_point(),
            RandomPoints::new(2).next_point()
        );
    }

    #[test]
    fn ramping_the_last_variant_keeps_its_users() {
        let seed = salt_seed("ramp");
        let steps = [0u32, 100, 500, 1000, 2500, 3000, 5000, 9999, 10_000];
        let mut previous: Option<Vec<bool>> = None;
        for canary in steps {
            let s = split(&[10_000 - canary, canary]);
            let in_canary: Vec<bool> = (0..20_000)
                .map(|i| s.variant_at(sticky_point(seed, format!("k{i}").as_bytes())) == 1)
                .collect();
            if let Some(prev) = &previous {
                for (i, (was, is)) in prev.iter().zip(&in_canary).enumerate() {
                    assert!(!was || *is, "key k{i} left the canary at {canary} bp");
                }
            }
            previous = Some(in_canary);
        }
    }

    #[test]
    fn ramping_the_first_variant_keeps_its_users() {
        let seed = salt_seed("ramp-first");
        let before = split(&[1000, 4500, 4500]);
        let after = split(&[3000, 3500, 3500]);
        for i in 0..20_000 {
            let p = sticky_point(seed, format!("k{i}").as_bytes());
            if before.variant_at(p) == 0 {
                assert_eq!(after.variant_at(p), 0);
            }
        }
    }
}
