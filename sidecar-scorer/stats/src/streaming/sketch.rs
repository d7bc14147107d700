//! The quantile sketch of a drift window: Apache DataSketches KLL, fed every
//! row of a small window and a uniform sample of the rows of a large one.
//!
//! A KLL update costs ~40 ns here, mostly compaction bookkeeping, so 1 M rows
//! × 50 features cannot all go through the sketch within a second. The first
//! `exact_rows` rows of a window go in one by one (the *head*); each later row
//! enters a second KLL sketch (the *tail*) with probability `1 / one_in`,
//! decided by a pseudo-random stream that never looks at the value. The CDF
//! of the window is the mixture of the two, weighted by the rows each stands
//! for: `F = (n_head · F_head + n_tail · F_tail) / n`, which stays exact
//! under merging (heads merge with heads, tails with tails).

use super::Mergeable;
use crate::InputError;
use datasketches::common::SearchCriteria;
use datasketches::kll::{KllSketch, SortedView};
use serde::{Deserialize, Deserializer, Serialize, Serializer};
use std::num::NonZeroU32;

/// KLL accuracy parameter. At k = 2000 the normalised rank error is about
/// 0.14% (99% confidence) and a sketch retains at most ~6,000 items (48 KB)
/// whatever the row count.
pub const DEFAULT_SKETCH_K: u16 = 2000;

/// Points per sketch at which CDFs and quantiles are compared.
pub const GRID: usize = 4096;

/// λ with 2·exp(−2λ²) = 1%: the 99% quantile of the Kolmogorov–Smirnov
/// distance in its Dvoretzky–Kiefer–Wolfowitz–Massart form.
const DKW_99: f64 = 1.627_6;

/// How a window feeds its quantile sketch.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Sampling {
    /// Rows that enter the sketch one by one before sampling starts.
    pub exact_rows: u64,
    /// Each later row enters the sketch with probability `1 / one_in`.
    pub one_in: NonZeroU32,
}

impl Sampling {
    /// Every row: the reference profile, or windows that must not sample.
    pub const EXACT: Self = Self {
        exact_rows: u64::MAX,
        one_in: NonZeroU32::MIN,
    };
}

/// 32,768 rows exact, then one row in 16: 1 M rows × 50 features fit in the
/// one-second budget with room for a noisy core (BENCHMARKS.md), and up to
/// 32,768 rows a window is as accurate as the sketch alone.
impl Default for Sampling {
    fn default() -> Self {
        Self {
            exact_rows: 1 << 15,
            one_in: NonZeroU32::new(16).expect("16 is not zero"),
        }
    }
}

/// A mergeable quantile sketch of finite f64 values. Values are stored as
/// order-preserving i64 keys: integer compares make KLL updates markedly
/// faster than the float wrapper.
#[derive(Debug, Clone, PartialEq)]
pub struct QuantileSketch {
    sampling: Sampling,
    /// Every row until `sampling.exact_rows` (more after merges).
    head: KllSketch<i64>,
    /// Bernoulli sample, rate `1 / one_in`, of the rows after the head.
    tail: KllSketch<i64>,
    /// Rows after the head, sampled or not.
    tail_rows: u64,
    /// SplitMix64 state of the sampler.
    rng: u64,
}

impl QuantileSketch {
    /// A sketch that takes every row.
    pub fn new(k: u16) -> Result<Self, InputError> {
        Self::with_sampling(k, Sampling::EXACT)
    }

    pub fn with_sampling(k: u16, sampling: Sampling) -> Result<Self, InputError> {
        let kll = || KllSketch::new(k).map_err(|e| InputError::invalid("sketch_k", e.to_string()));
        Ok(Self {
            sampling,
            head: kll()?,
            tail: kll()?,
            tail_rows: 0,
            rng: 0,
        })
    }

    #[inline]
    pub fn update(&mut self, x: f64) {
        let key = to_key(x);
        if self.head.n() < self.sampling.exact_rows {
            // The sampler starts from a state that depends on the head, so
            // panes and replicas draw different samples of their tails.
            self.rng = (self.rng ^ key as u64).wrapping_mul(0x9E37_79B9_7F4A_7C15);
            self.head.update(key);
            return;
        }
        self.tail_rows += 1;
        // r · one_in / 2⁶⁴ is uniform on 0..one_in (Lemire's reduction).
        let r = self.next_random();
        if (u128::from(r) * u128::from(self.sampling.one_in.get())) >> 64 == 0 {
            self.tail.update(key);
        }
    }

    #[inline]
    fn next_random(&mut self) -> u64 {
        self.rng = self.rng.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = self.rng;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^ (z >> 31)
    }

    /// Rows seen, sampled or not.
    pub fn n(&self) -> u64 {
        self.head.n() + self.tail_rows
    }

    /// Rows that went into the KLL sketches.
    pub fn sketched(&self) -> u64 {
        self.head.n() + self.tail.n()
    }

    pub fn k(&self) -> u16 {
        self.head.k()
    }

    pub fn sampling(&self) -> Sampling {
        self.sampling
    }

    /// Bound on sup |F̂ − F| between the sketch's CDF and the exact empirical
    /// CDF of the rows seen: each stratum's share times its KLL rank error
    /// (99% confidence; zero while the KLL has not compacted) plus, for the
    /// sampled stratum, the 99% bound on the distance between a uniform
    /// sample of m of its N rows and all N. That distance is (N − m)/N times
    /// the two-sample KS distance of the sample and the rest, whose DKW–Massart
    /// bound λ·√((m + n)/(m·n)) with n = N − m gives λ·√((1 − m/N)/m). Ties only
    /// make the distance smaller. Each of the up to three terms holds with
    /// probability ≥ 99%.
    pub fn rank_error(&self) -> f64 {
        let n = self.n();
        if n == 0 {
            return 0.0;
        }
        let share = |rows: u64| rows as f64 / n as f64;
        let mut bound = share(self.head.n()) * kll_rank_error(&self.head);
        if self.tail_rows > 0 {
            let m = self.tail.n() as f64;
            let sampling = if m == 0.0 {
                1.0
            } else {
                DKW_99 * ((1.0 - m / self.tail_rows as f64).max(0.0) / m).sqrt()
            };
            bound += share(self.tail_rows) * (kll_rank_error(&self.tail) + sampling);
        }
        bound.min(1.0)
    }

    pub(crate) fn view(&self) -> Option<SketchView> {
        let n = self.n() as f64;
        let mut parts = Vec::with_capacity(2);
        if !self.head.is_empty() {
            parts.push((self.head.n() as f64 / n, self.head.sorted_view()));
        }
        if !self.tail.is_empty() {
            // Every unsampled tail row is represented by the sample.
            parts.push((self.tail_rows as f64 / n, self.tail.sorted_view()));
        }
        match parts.len() {
            0 => None,
            1 => Some(SketchView::Single(parts.pop().expect("one part").1)),
            _ => Some(SketchView::mixture(parts)),
        }
    }

    /// Compact binary form: a 33-byte header (version, sampling, tail rows,
    /// sampler state, length of the head image) and the two KLL images in the
    /// DataSketches format.
    pub fn serialize_bytes(&self) -> Vec<u8> {
        let head = self.head.serialize();
        let tail = self.tail.serialize();
        let mut out = Vec::with_capacity(HEADER + head.len() + tail.len());
        out.push(FORMAT_VERSION);
        out.extend_from_slice(&self.sampling.exact_rows.to_le_bytes());
        out.extend_from_slice(&self.sampling.one_in.get().to_le_bytes());
        out.extend_from_slice(&self.tail_rows.to_le_bytes());
        out.extend_from_slice(&self.rng.to_le_bytes());
        out.extend_from_slice(&(head.len() as u32).to_le_bytes());
        out.extend_from_slice(&head);
        out.extend_from_slice(&tail);
        out
    }

    pub fn deserialize_bytes(bytes: &[u8]) -> Result<Self, InputError> {
        let bad = |m: &str| InputError::invalid("sketch", m);
        if bytes.len() < HEADER || bytes[0] != FORMAT_VERSION {
            return Err(bad("not a quantile sketch of this version"));
        }
        let u64_at = |i: usize| u64::from_le_bytes(bytes[i..i + 8].try_into().expect("8 bytes"));
        let u32_at = |i: usize| u32::from_le_bytes(bytes[i..i + 4].try_into().expect("4 bytes"));
        let one_in = NonZeroU32::new(u32_at(9)).ok_or_else(|| bad("one_in must be positive"))?;
        let head_len = u32_at(29) as usize;
        let rest = &bytes[HEADER..];
        if head_len > rest.len() {
            return Err(bad("truncated"));
        }
        let kll = |b: &[u8]| KllSketch::deserialize(b).map_err(|e| bad(&e.to_string()));
        let sketch = Self {
            sampling: Sampling {
                exact_rows: u64_at(1),
                one_in,
            },
            head: kll(&rest[..head_len])?,
            tail: kll(&rest[head_len..])?,
            tail_rows: u64_at(13),
            rng: u64_at(21),
        };
        if sketch.tail.n() > sketch.tail_rows {
            return Err(bad("more sampled rows than rows"));
        }
        Ok(sketch)
    }
}

const FORMAT_VERSION: u8 = 1;
const HEADER: usize = 1 + 8 + 4 + 8 + 8 + 4;

/// KLL's rank error (99%), zero while the sketch still holds every item.
fn kll_rank_error(s: &KllSketch<i64>) -> f64 {
    if s.is_estimation_mode() {
        s.normalized_rank_error()
    } else {
        0.0
    }
}

impl Mergeable for QuantileSketch {
    fn merge(&mut self, other: &Self) -> Result<(), InputError> {
        if self.sampling != other.sampling {
            // Tail items of different rates stand for different row counts.
            return Err(InputError::invalid(
                "sketch",
                "sketches were built with different sampling",
            ));
        }
        let err = |e: datasketches::error::Error| InputError::invalid("sketch", e.to_string());
        self.head.merge(&other.head).map_err(err)?;
        self.tail.merge(&other.tail).map_err(err)?;
        self.tail_rows += other.tail_rows;
        Ok(())
    }
}

impl Serialize for QuantileSketch {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_bytes(&self.serialize_bytes())
    }
}

impl<'de> Deserialize<'de> for QuantileSketch {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let bytes = Vec::<u8>::deserialize(d)?;
        Self::deserialize_bytes(&bytes).map_err(serde::de::Error::custom)
    }
}

/// The CDF of a sketch, ready for queries.
pub(crate) enum SketchView {
    Single(SortedView<i64>),
    /// Strata with their shares of the rows, and the mixture CDF tabulated
    /// at every stratum's grid quantiles (ascending points, CDF at each).
    Mixture {
        parts: Vec<(f64, SortedView<i64>)>,
        points: Vec<f64>,
        cdf: Vec<f64>,
    },
}

impl SketchView {
    fn mixture(parts: Vec<(f64, SortedView<i64>)>) -> Self {
        let mut points: Vec<f64> = parts
            .iter()
            .flat_map(|(_, v)| (0..=GRID).map(move |i| quantile_of(v, i as f64 / GRID as f64)))
            .collect();
        points.sort_unstable_by(f64::total_cmp);
        points.dedup();
        let cdf = points.iter().map(|&x| mixture_cdf(&parts, x)).collect();
        Self::Mixture { parts, points, cdf }
    }

    /// Estimated P(X ≤ x).
    pub(crate) fn cdf(&self, x: f64) -> f64 {
        match self {
            Self::Single(v) => rank_of(v, x),
            Self::Mixture { parts, .. } => mixture_cdf(parts, x),
        }
    }

    /// Estimated quantile at `rank`. For a mixture, the smallest tabulated
    /// point whose CDF reaches `rank`: between two tabulated points each
    /// stratum's CDF rises by less than 1/GRID, so this is the sketch's own
    /// quantile within 1/GRID in rank.
    pub(crate) fn quantile(&self, rank: f64) -> f64 {
        match self {
            Self::Single(v) => quantile_of(v, rank),
            Self::Mixture { points, cdf, .. } => {
                let i = cdf.partition_point(|&c| c < rank);
                points[i.min(points.len() - 1)]
            }
        }
    }

    /// Points that resolve this CDF to within 1/GRID.
    pub(crate) fn grid_points(&self) -> Vec<f64> {
        match self {
            Self::Single(v) => (0..=GRID)
                .map(|i| quantile_of(v, i as f64 / GRID as f64))
                .collect(),
            Self::Mixture { points, .. } => points.clone(),
        }
    }
}

fn mixture_cdf(parts: &[(f64, SortedView<i64>)], x: f64) -> f64 {
    parts.iter().map(|(w, v)| w * rank_of(v, x)).sum()
}

fn rank_of(v: &SortedView<i64>, x: f64) -> f64 {
    v.rank(&to_key(x), SearchCriteria::Inclusive).unwrap_or(0.0)
}

fn quantile_of(v: &SortedView<i64>, rank: f64) -> f64 {
    match v.quantile(rank.clamp(0.0, 1.0), SearchCriteria::Inclusive) {
        Ok(Some(k)) => from_key(k),
        _ => f64::NAN,
    }
}

/// Order-preserving map of finite f64 onto i64 (IEEE sign-magnitude to
/// two's complement); -0.0 and 0.0 map together.
#[inline]
fn to_key(x: f64) -> i64 {
    let x = if x == 0.0 { 0.0 } else { x };
    let bits = x.to_bits() as i64;
    if bits < 0 { bits ^ i64::MAX } else { bits }
}

#[inline]
fn from_key(k: i64) -> f64 {
    let bits = if k < 0 { k ^ i64::MAX } else { k };
    f64::from_bits(bits as u64)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keys_preserve_order() {
        let xs = [-1e300, -2.5, -0.0, 0.0, 1e-300, 3.0, 1e300];
        for w in xs.windows(2) {
            assert!(to_key(w[0]) <= to_key(w[1]));
            assert_eq!(from_key(to_key(w[1])), w[1]);
        }
    }

    fn sampled(exact_rows: u64, one_in: u32) -> QuantileSketch {
        let sampling = Sampling {
            exact_rows,
            one_in: NonZeroU32::new(one_in).unwrap(),
        };
        QuantileSketch::with_sampling(2000, sampling).unwrap()
    }

    #[test]
    fn head_takes_every_row_then_tail_samples() {
        let mut s = sampled(1000, 8);
        for i in 0..81_000 {
            s.update(i as f64);
        }
        assert_eq!((s.n(), s.head.n(), s.tail_rows), (81_000, 1000, 80_000));
        // Binomial(80,000, 1/8): mean 10,000, sd 94.
        let m = s.tail.n() as f64;
        assert!((m - 10_000.0).abs() < 500.0, "{m}");
        assert_eq!(s.sketched(), 1000 + s.tail.n());
    }

    #[test]
    fn one_in_one_keeps_every_tail_row() {
        let mut s = sampled(10, 1);
        for i in 0..100 {
            s.update(i as f64);
        }
        assert_eq!((s.head.n(), s.tail.n(), s.tail_rows), (10, 90, 90));
        assert_eq!(s.rank_error(), 0.0);
    }

    #[test]
    fn mixture_weights_strata_by_rows() {
        // Head: 1000 rows at 0; tail: 99,000 rows at 1, about 1/8 sketched.
        let mut s = sampled(1000, 8);
        for i in 0..100_000 {
            s.update(if i < 1000 { 0.0 } else { 1.0 });
        }
        let v = s.view().unwrap();
        assert!((v.cdf(0.0) - 0.01).abs() < 1e-12);
        assert_eq!(v.cdf(1.0), 1.0);
        assert_eq!(v.quantile(0.005), 0.0);
        assert_eq!(v.quantile(0.02), 1.0);
    }

    #[test]
    fn merge_needs_the_same_sampling() {
        let mut a = sampled(10, 8);
        assert!(a.merge(&sampled(10, 4)).is_err());
        let mut b = sampled(10, 8);
        for i in 0..1000 {
            b.update(i as f64);
        }
        a.merge(&b).unwrap();
        a.merge(&b).unwrap();
        assert_eq!((a.n(), a.head.n(), a.tail_rows), (2000, 20, 1980));
    }

    #[test]
    fn bytes_round_trip_and_reject_garbage() {
        let mut s = sampled(100, 8);
        for i in 0..5000 {
            s.update((i as f64).sin());
        }
        let bytes = s.serialize_bytes();
        assert_eq!(QuantileSketch::deserialize_bytes(&bytes).unwrap(), s);
        assert!(QuantileSketch::deserialize_bytes(&bytes[..20]).is_err());
        let mut bad = bytes.clone();
        bad[0] = 9;
        assert!(QuantileSketch::deserialize_bytes(&bad).is_err());
        let mut zero = bytes;
        zero[9..13].copy_from_slice(&0u32.to_le_bytes());
        assert!(QuantileSketch::deserialize_bytes(&zero).is_err());
    }

    /// The sampling term of `rank_error` is a 99% bound: over many samples
    /// it is exceeded about 1% of the time or less, whatever the order of
    /// the rows. Periodic rows would defeat a 1-in-8 systematic sample, and
    /// sorted rows a sample biased to the start or the end of the window.
    #[test]
    fn sampling_bound_holds_at_its_confidence() {
        const N: usize = 16_384;
        // Scrambled, sorted, and periodic rows with ties.
        let shapes: [fn(usize) -> f64; 3] = [
            |i| ((i as u64).wrapping_mul(0x9E37_79B9_7F4A_7C15) >> 11) as f64,
            |i| i as f64,
            |i| (i % 8) as f64 + (i % 5) as f64 * 0.1,
        ];
        let (mut trials, mut exceeded, mut worst) = (0, 0, 0.0f64);
        for value in shapes {
            let rows: Vec<f64> = (0..N).map(value).collect();
            let mut sorted = rows.clone();
            sorted.sort_unstable_by(f64::total_cmp);
            let mut distinct = sorted.clone();
            distinct.dedup();
            for seed in 0..300u64 {
                // k above the sample size: KLL keeps every sampled item, so
                // the whole error is the sampling's.
                let mut s = QuantileSketch::with_sampling(
                    8000,
                    Sampling {
                        exact_rows: 0,
                        one_in: NonZeroU32::new(8).unwrap(),
                    },
                )
                .unwrap();
                s.rng = seed.wrapping_mul(0xD1B5_4A32_D192_ED03);
                rows.iter().for_each(|&x| s.update(x));
                assert!(!s.tail.is_estimation_mode());
                let view = s.view().unwrap();
                // Both CDFs are steps at row values: the sup is at one of them.
                let error = distinct
                    .iter()
                    .map(|&x| {
                        let exact = sorted.partition_point(|&v| v <= x) as f64 / N as f64;
                        (view.cdf(x) - exact).abs()
                    })
                    .fold(0.0, f64::max);
                trials += 1;
                exceeded += usize::from(error > s.rank_error());
                worst = worst.max(error / s.rank_error());
            }
        }
        eprintln!(
            "sampling bound exceeded in {exceeded} of {trials}; worst error/bound {worst:.2}"
        );
        // Expected ≤ 9 of 900; more than 18 has probability < 0.3% at 1%.
        assert!(exceeded <= 18, "{exceeded} of {trials}");
    }
}
