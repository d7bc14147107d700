//! Streaming drift: a reference profile built once, and per-window state
//! that is updated row by row and merged across replicas.

use super::Mergeable;
use crate::InputError;
use crate::drift::bins::{ReferenceBins, shares};
use crate::drift::thresholds::{DriftLevels, DriftThresholds};
use crate::drift::{jensen_shannon, ks, psi};
use crate::error::require_finite;
use crate::sample::{sorted, std_population};
use serde::{Deserialize, Serialize};

use super::sketch::SketchView;
pub use super::sketch::{DEFAULT_SKETCH_K, GRID, QuantileSketch, Sampling};

/// What the scorer keeps of the reference window of a feature.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ReferenceProfile {
    pub bins: ReferenceBins,
    pub counts: Vec<u64>,
    pub n: u64,
    /// Standard deviation (ddof 0) that normalises the Wasserstein distance.
    pub std: f64,
    /// Every reference row.
    pub sketch: QuantileSketch,
    /// How the windows of this reference feed their sketches.
    pub sampling: Sampling,
}

impl ReferenceProfile {
    /// Profiles a reference sample (finite, non-empty) with `bins` quantile
    /// bins; its windows sample with [`Sampling::default`].
    pub fn new(reference: &[f64], bins: usize, sketch_k: u16) -> Result<Self, InputError> {
        if reference.is_empty() {
            return Err(InputError::invalid("reference", "must not be empty"));
        }
        require_finite("reference", reference)?;
        if bins == 0 || bins > crate::drift::MAX_BINS {
            return Err(InputError::invalid("bins", "out of range"));
        }
        let s = sorted(reference);
        let bins = ReferenceBins::from_sorted(&s, bins);
        let counts = bins.counts_sorted(&s);
        let mut sketch = QuantileSketch::new(sketch_k)?;
        for &x in reference {
            sketch.update(x);
        }
        Ok(Self {
            counts,
            n: reference.len() as u64,
            std: std_population(reference),
            sketch,
            sampling: Sampling::default(),
            bins,
        })
    }

    /// The same profile, with windows that feed their sketches as `sampling` says.
    pub fn with_sampling(self, sampling: Sampling) -> Self {
        Self { sampling, ..self }
    }

    /// An empty window state for this reference.
    pub fn new_window(&self) -> DriftWindow {
        DriftWindow {
            counts: vec![0; self.bins.bin_count()],
            sketch: QuantileSketch::with_sampling(self.sketch.k(), self.sampling)
                .expect("k of a valid sketch"),
            non_finite: 0,
        }
    }
}

/// One window of current values of a feature.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct DriftWindow {
    pub counts: Vec<u64>,
    pub sketch: QuantileSketch,
    /// NaN / infinite values seen and left out.
    pub non_finite: u64,
}

impl DriftWindow {
    #[inline]
    pub fn observe(&mut self, bins: &ReferenceBins, x: f64) {
        if !x.is_finite() {
            self.non_finite += 1;
            return;
        }
        self.counts[bins.bin_of(x)] += 1;
        self.sketch.update(x);
    }

    pub fn n(&self) -> u64 {
        self.counts.iter().sum()
    }

    /// Drift of this window against the reference; `None` while empty.
    pub fn report(
        &self,
        reference: &ReferenceProfile,
        thresholds: &DriftThresholds,
    ) -> Option<StreamingDriftReport> {
        let cur = self.sketch.view()?;
        let refv = reference.sketch.view()?;
        let (r, c) = (shares(&reference.counts), shares(&self.counts));
        let psi = psi::psi(&r, &c);
        let js = jensen_shannon::distance(&r, &c).unwrap_or(0.0);
        let ks_statistic = sketch_ks(&refv, &cur);
        let wasserstein = sketch_wasserstein(&refv, &cur);
        let wasserstein_normed = (reference.std > 0.0).then(|| wasserstein / reference.std);
        let n = self.n();
        Some(StreamingDriftReport {
            psi,
            js_distance: js,
            ks_statistic,
            ks_p_value: ks::asymptotic_p_value(ks_statistic, reference.n, n),
            ks_error_bound: (reference.sketch.rank_error()
                + self.sketch.rank_error()
                + 2.0 / GRID as f64)
                .min(1.0),
            wasserstein,
            wasserstein_normed,
            n_current: n,
            non_finite: self.non_finite,
            drift: thresholds.numeric_levels(psi, Some(js), wasserstein_normed, ks_statistic),
        })
    }
}

impl Mergeable for DriftWindow {
    fn merge(&mut self, other: &Self) -> Result<(), InputError> {
        if self.counts.len() != other.counts.len() {
            return Err(InputError::invalid(
                "counts",
                "windows were built against different reference bins",
            ));
        }
        // The sketch checks its sampling before it changes anything.
        self.sketch.merge(&other.sketch)?;
        for (a, b) in self.counts.iter_mut().zip(&other.counts) {
            *a += b;
        }
        self.non_finite += other.non_finite;
        Ok(())
    }
}

/// Streaming drift scores; PSI and JS are exact for the window, KS and
/// Wasserstein come from the sketches.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct StreamingDriftReport {
    pub psi: f64,
    pub js_distance: f64,
    pub ks_statistic: f64,
    /// Asymptotic p-value of the sketched statistic; uninformative at the
    /// sample sizes of live traffic (see docs/statistics.md).
    pub ks_p_value: f64,
    /// Bound on |ks_statistic − exact statistic| (≥ 96% confidence): the two
    /// sketches' [`QuantileSketch::rank_error`] plus 2/4096 for the
    /// comparison grid.
    pub ks_error_bound: f64,
    pub wasserstein: f64,
    pub wasserstein_normed: Option<f64>,
    pub n_current: u64,
    pub non_finite: u64,
    pub drift: DriftLevels,
}

/// sup |F_a − F_b| over the quantile grids of both sketches.
fn sketch_ks(a: &SketchView, b: &SketchView) -> f64 {
    let mut points: Vec<f64> = a.grid_points();
    points.extend(b.grid_points());
    points.retain(|x| x.is_finite());
    points.sort_unstable_by(f64::total_cmp);
    points.dedup();
    points
        .iter()
        .map(|&x| (a.cdf(x) - b.cdf(x)).abs())
        .fold(0.0, f64::max)
}

/// ∫₀¹ |Q_a(u) − Q_b(u)| du on a midpoint grid of ranks.
fn sketch_wasserstein(a: &SketchView, b: &SketchView) -> f64 {
    (0..GRID)
        .map(|i| {
            let u = (i as f64 + 0.5) / GRID as f64;
            (a.quantile(u) - b.quantile(u)).abs()
        })
        .sum::<f64>()
        / GRID as f64
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn merged_windows_equal_one_window() {
        let reference: Vec<f64> = (0..1000).map(|i| (i as f64).sin()).collect();
        let profile = ReferenceProfile::new(&reference, 10, 2000).unwrap();
        let mut a = profile.new_window();
        let mut b = profile.new_window();
        let mut whole = profile.new_window();
        for i in 0..500 {
            let x = (i as f64 * 0.7).cos();
            if i % 2 == 0 {
                a.observe(&profile.bins, x)
            } else {
                b.observe(&profile.bins, x)
            }
            whole.observe(&profile.bins, x);
        }
        a.observe(&profile.bins, f64::NAN);
        a.merge(&b).unwrap();
        assert_eq!(a.counts, whole.counts);
        assert_eq!(a.n(), 500);
        assert_eq!(a.non_finite, 1);
        let t = DriftThresholds::default();
        let ra = a.report(&profile, &t).unwrap();
        let rw = whole.report(&profile, &t).unwrap();
        assert_eq!(ra.psi, rw.psi);
        // Below k items per window the sketches are exact.
        assert!((ra.ks_statistic - rw.ks_statistic).abs() < 1e-12);
    }

    #[test]
    fn state_round_trips_through_json() {
        let profile = ReferenceProfile::new(&[1.0, 2.0, 3.0, 4.0], 2, 200).unwrap();
        let mut w = profile.new_window();
        w.observe(&profile.bins, 2.5);
        let text = serde_json::to_string(&w).unwrap();
        let back: DriftWindow = serde_json::from_str(&text).unwrap();
        assert_eq!(back.counts, w.counts);
        assert_eq!(back.sketch.n(), 1);
    }

    #[test]
    fn windows_of_different_sampling_do_not_merge() {
        let profile = ReferenceProfile::new(&[1.0, 2.0, 3.0, 4.0], 2, 200).unwrap();
        let mut a = profile.new_window();
        a.observe(&profile.bins, 1.5);
        let before = a.clone();
        let mut b = profile.clone().with_sampling(Sampling::EXACT).new_window();
        b.observe(&profile.bins, 3.5);
        assert!(a.merge(&b).is_err());
        assert_eq!(a, before);
    }

    #[test]
    fn profile_round_trips_through_json() {
        let sampling = Sampling {
            exact_rows: 10,
            one_in: std::num::NonZeroU32::new(4).unwrap(),
        };
        let profile = ReferenceProfile::new(&[1.0, 2.0, 3.0, 4.0], 2, 200)
            .unwrap()
            .with_sampling(sampling);
        let text = serde_json::to_string(&profile).unwrap();
        let back: ReferenceProfile = serde_json::from_str(&text).unwrap();
        assert_eq!(back, profile);
        assert_eq!(back.new_window().sketch.sampling(), sampling);
        let zero = text.replace("\"one_in\":4", "\"one_in\":0");
        assert!(serde_json::from_str::<ReferenceProfile>(&zero).is_err());
    }
}
