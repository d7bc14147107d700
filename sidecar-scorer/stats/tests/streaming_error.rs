//! The streaming KS statistic (two KLL sketches) against the exact
//! `ks_2samp` statistic on the same data: within the reported bound.

use outrider_stats::drift::DriftThresholds;
use outrider_stats::drift::ks::ks_2samp;
use outrider_stats::streaming::drift::{DEFAULT_SKETCH_K, ReferenceProfile};
use rand::SeedableRng;
use rand::rngs::StdRng;
use rand_distr::{Distribution, Exp, Normal};

#[test]
fn streaming_ks_error_is_within_its_bound() {
    let mut rng = StdRng::seed_from_u64(3);
    let mut worst: f64 = 0.0;
    for (shift, scale) in [(0.0, 1.0), (0.05, 1.0), (0.3, 1.2), (1.0, 0.5)] {
        let normal = Normal::new(0.0, 1.0).unwrap();
        let exp = Exp::new(1.0).unwrap();
        let reference: Vec<f64> = (0..200_000).map(|_| normal.sample(&mut rng)).collect();
        let current: Vec<f64> = (0..300_000)
            .map(|i| {
                let x = if i % 3 == 0 {
                    exp.sample(&mut rng) - 1.0
                } else {
                    normal.sample(&mut rng)
                };
                x * scale + shift
            })
            .collect();
        let profile = ReferenceProfile::new(&reference, 10, DEFAULT_SKETCH_K).unwrap();
        let mut window = profile.new_window();
        for &x in &current {
            window.observe(&profile.bins, x);
        }
        let report = window
            .report(&profile, &DriftThresholds::default())
            .unwrap();
        let exact = ks_2samp(&reference, &current).statistic;
        let error = (report.ks_statistic - exact).abs();
        eprintln!(
            "shift {shift} scale {scale}: exact {exact:.5} streaming {:.5} error {error:.5} bound {:.5}",
            report.ks_statistic, report.ks_error_bound
        );
        assert!(
            error <= report.ks_error_bound,
            "error {error} > bound {}",
            report.ks_error_bound
        );
        worst = worst.max(error);
    }
    eprintln!("worst streaming KS error: {worst:.5}");
}
