//! Streaming KS and Wasserstein (sketched, sampled windows) against the exact
//! `ks_2samp` and `wasserstein_distance` on the same data.
//!
//! Bounds, derived rather than fitted:
//! * KS: the report's `ks_error_bound` = ε_ref + ε_cur + 2/GRID, with ε the
//!   sketches' `rank_error` (sup |F̂ − F| at 99% per term);
//! * Wasserstein: the report's value is the W₁ distance between two
//!   GRID-point distributions, each within η = ε + 2/GRID of the exact
//!   empirical CDF in sup norm. If sup |Ĝ − F| ≤ η then
//!   Q(u − η) ≤ Q̂(u) ≤ Q(u + η), so W₁(Ĝ, F) ≤ ∫₀¹ Q(u + η) − Q(u − η) du
//!   (Q clamped to [min, max]); by the triangle inequality the error is at
//!   most the sum of that integral over reference and current.
//!
//! The cases include a window whose head and tail differ (drift inside the
//! window) and a window merged from panes, where weighting the strata by
//! their sketched items instead of their rows would miss by far more than
//! the bounds.

use outrider_stats::drift::DriftThresholds;
use outrider_stats::drift::ks::ks_2samp;
use outrider_stats::drift::wasserstein::wasserstein_distance;
use outrider_stats::streaming::Mergeable;
use outrider_stats::streaming::drift::{
    DEFAULT_SKETCH_K, DriftWindow, GRID, ReferenceProfile, Sampling,
};
use rand::SeedableRng;
use rand::rngs::StdRng;
use rand_distr::{Distribution, Exp, Normal};

/// ∫₀¹ Q(u + η) − Q(u − η) du for the empirical quantile function of
/// `sorted`: η·(max − min) + ∫ over the top η of Q − ∫ over the bottom η.
fn quantile_spread(sorted: &[f64], eta: f64) -> f64 {
    let n = sorted.len() as f64;
    let eta = eta.min(1.0);
    // ∫₀^η Q(u) du of the step function Q(u) = x_⌈u·n⌉.
    let low = |xs: &mut dyn Iterator<Item = f64>| {
        let t = eta * n;
        let whole = t.floor() as usize;
        let mut xs = xs.peekable();
        let mut sum = 0.0;
        for _ in 0..whole {
            sum += xs.next().unwrap_or(0.0);
        }
        (sum + (t - whole as f64) * xs.peek().copied().unwrap_or(0.0)) / n
    };
    let (min, max) = (sorted[0], sorted[sorted.len() - 1]);
    let bottom = low(&mut sorted.iter().copied());
    let top = -low(&mut sorted.iter().rev().map(|x| -x));
    eta * (max - min) + top - bottom
}

struct Case {
    name: &'static str,
    current: Vec<f64>,
    /// Rows per pane; the window is the merge of the panes.
    pane: usize,
}

fn cases(rng: &mut StdRng) -> Vec<Case> {
    let normal = Normal::new(0.0, 1.0).unwrap();
    let exp = Exp::new(1.0).unwrap();
    let mut shifted = |n: usize, shift: f64, scale: f64| -> Vec<f64> {
        (0..n)
            .map(|i| {
                let x = if i % 3 == 0 {
                    exp.sample(rng) - 1.0
                } else {
                    normal.sample(rng)
                };
                x * scale + shift
            })
            .collect()
    };
    let mut out = vec![
        Case {
            name: "20k rows, inside the exact head",
            current: shifted(20_000, 0.1, 1.0),
            pane: usize::MAX,
        },
        Case {
            name: "300k rows, no drift",
            current: shifted(300_000, 0.0, 1.0),
            pane: usize::MAX,
        },
        Case {
            name: "300k rows, shift 0.05",
            current: shifted(300_000, 0.05, 1.0),
            pane: usize::MAX,
        },
        Case {
            name: "1M rows, shift 0.3 scale 1.2",
            current: shifted(1_000_000, 0.3, 1.2),
            pane: usize::MAX,
        },
        Case {
            name: "1M rows, shift 1 scale 0.5",
            current: shifted(1_000_000, 1.0, 0.5),
            pane: usize::MAX,
        },
        Case {
            name: "1M rows in 4 merged panes, shift 0.2",
            current: shifted(1_000_000, 0.2, 1.0),
            pane: 250_000,
        },
    ];
    // The head (first 32,768 rows) at 0, the rest shifted by 2.
    let mut drifting = shifted(32_768, 0.0, 1.0);
    drifting.extend(shifted(467_232, 2.0, 1.0));
    out.push(Case {
        name: "500k rows, drift after the head",
        current: drifting,
        pane: usize::MAX,
    });
    out
}

fn window(profile: &ReferenceProfile, rows: &[f64], pane: usize) -> DriftWindow {
    let mut merged = profile.new_window();
    for chunk in rows.chunks(pane.min(rows.len())) {
        let mut w = profile.new_window();
        chunk.iter().for_each(|&x| w.observe(&profile.bins, x));
        merged.merge(&w).unwrap();
    }
    merged
}

/// Every case with every row in the sketch and with the default sampling:
/// both within the bounds, errors printed side by side.
#[test]
fn streaming_ks_and_wasserstein_are_within_their_bounds() {
    let mut rng = StdRng::seed_from_u64(3);
    let normal = Normal::new(0.0, 1.0).unwrap();
    let reference: Vec<f64> = (0..200_000).map(|_| normal.sample(&mut rng)).collect();
    let sampled = ReferenceProfile::new(&reference, 10, DEFAULT_SKETCH_K).unwrap();
    assert_eq!(sampled.sampling, Sampling::default());
    let every_row = sampled.clone().with_sampling(Sampling::EXACT);
    let mut ref_sorted = reference.clone();
    ref_sorted.sort_unstable_by(f64::total_cmp);
    let mut worst = [[0.0f64; 2]; 2];
    for case in cases(&mut rng) {
        let exact_ks = ks_2samp(&reference, &case.current).statistic;
        let exact_w = wasserstein_distance(&reference, &case.current);
        let mut cur_sorted = case.current.clone();
        cur_sorted.sort_unstable_by(f64::total_cmp);
        eprintln!("{}: exact KS {exact_ks:.5}, W {exact_w:.5}", case.name);
        for (scheme, profile) in [&every_row, &sampled].into_iter().enumerate() {
            let w = window(profile, &case.current, case.pane);
            assert_eq!(w.n(), case.current.len() as u64);
            let report = w.report(profile, &DriftThresholds::default()).unwrap();
            let ks_error = (report.ks_statistic - exact_ks).abs();
            let w_error = (report.wasserstein - exact_w).abs();
            let w_bound = quantile_spread(&ref_sorted, profile.sketch.rank_error() + grid_bound())
                + quantile_spread(&cur_sorted, w.sketch.rank_error() + grid_bound());
            eprintln!(
                "  {:>9}: KS error {ks_error:.5} (bound {:.5}), W error {w_error:.5} \
                 (bound {w_bound:.5}); sketched {} of {} rows",
                ["every row", "sampled"][scheme],
                report.ks_error_bound,
                w.sketch.sketched(),
                w.sketch.n(),
            );
            assert!(
                ks_error <= report.ks_error_bound,
                "{}: KS error {ks_error} > {}",
                case.name,
                report.ks_error_bound
            );
            assert!(
                w_error <= w_bound,
                "{}: W error {w_error} > {w_bound}",
                case.name
            );
            worst[scheme][0] = worst[scheme][0].max(ks_error);
            worst[scheme][1] = worst[scheme][1].max(w_error / profile.std);
        }
    }
    for (scheme, [ks, w]) in worst.iter().enumerate() {
        eprintln!(
            "{}: worst KS error {ks:.5}, worst W error {w:.5} reference sd",
            ["every row", "sampled"][scheme]
        );
    }
}

#[test]
fn windows_inside_the_head_are_as_exact_as_the_sketch() {
    let mut rng = StdRng::seed_from_u64(4);
    let normal = Normal::new(0.0, 1.0).unwrap();
    let reference: Vec<f64> = (0..1000).map(|_| normal.sample(&mut rng)).collect();
    let current: Vec<f64> = (0..1500).map(|_| normal.sample(&mut rng) + 0.3).collect();
    // Fewer rows than k: KLL keeps them all, and the window never samples.
    let profile = ReferenceProfile::new(&reference, 10, DEFAULT_SKETCH_K).unwrap();
    let w = window(&profile, &current, usize::MAX);
    assert_eq!(w.sketch.rank_error(), 0.0);
    let report = w.report(&profile, &DriftThresholds::default()).unwrap();
    let exact = ks_2samp(&reference, &current).statistic;
    assert!(
        (report.ks_statistic - exact).abs() <= grid_bound(),
        "{report:?}"
    );
    assert_eq!(report.ks_error_bound, grid_bound());
}

fn grid_bound() -> f64 {
    2.0 / GRID as f64
}
