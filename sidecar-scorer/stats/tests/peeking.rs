//! A/A simulation: peeking every 100 observations up to 10,000. The
//! confidence sequence keeps the chance of ever declaring a difference at or
//! below alpha; the fixed-horizon test, peeked the same way, does not.

use outrider_stats::ab::{AbRequest, Correction, MetricKind, VariantStats, analyze};
use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};
use rand_distr::{Distribution, Normal};

const ALPHA: f64 = 0.05;
const RUNS: usize = 400;
const OBSERVATIONS: usize = 10_000;
const PEEK_EVERY: usize = 100;

fn request(sequential: bool, sums: &[(u64, f64, f64); 2], metric: MetricKind) -> AbRequest {
    AbRequest {
        metric,
        alpha: ALPHA,
        control: None,
        correction: Correction::None,
        sequential,
        tuning: 5000.0,
        variants: ["a", "b"]
            .iter()
            .zip(sums)
            .map(|(name, &(n, sum, sum_sq))| VariantStats {
                name: name.to_string(),
                n,
                sum,
                sum_sq: Some(sum_sq),
                expected_share: None,
            })
            .collect(),
    }
}

/// Share of A/A runs in which some peek declared a significant difference.
fn false_positive_rate(sequential: bool, metric: MetricKind, seed: u64) -> f64 {
    let mut rng = StdRng::seed_from_u64(seed);
    let normal = Normal::new(10.0, 3.0).unwrap();
    let mut false_positives = 0;
    for _ in 0..RUNS {
        let mut sums = [(0u64, 0.0f64, 0.0f64); 2];
        for i in 1..=OBSERVATIONS {
            // Observations alternate between the arms (a 50/50 split).
            let x: f64 = match metric {
                MetricKind::Binomial => f64::from(u8::from(rng.random::<f64>() < 0.1)),
                MetricKind::Continuous => normal.sample(&mut rng),
            };
            let arm = &mut sums[i % 2];
            arm.0 += 1;
            arm.1 += x;
            arm.2 += x * x;
            if i % PEEK_EVERY == 0 && sums[0].0 >= 2 && sums[1].0 >= 2 {
                let report = analyze(&request(sequential, &sums, metric)).unwrap();
                if report.comparisons[0].significant {
                    false_positives += 1;
                    break;
                }
            }
        }
    }
    false_positives as f64 / RUNS as f64
}

#[test]
fn sequential_keeps_false_positives_at_alpha_fixed_horizon_does_not() {
    for (metric, seed) in [(MetricKind::Continuous, 7), (MetricKind::Binomial, 11)] {
        let sequential = false_positive_rate(true, metric, seed);
        let fixed = false_positive_rate(false, metric, seed);
        eprintln!("{metric:?}: sequential {sequential:.3}, fixed-horizon {fixed:.3}");
        assert!(
            sequential <= ALPHA,
            "{metric:?}: sequential FPR {sequential}"
        );
        // 100 looks at a 5% test inflate the error several-fold.
        assert!(fixed > 2.0 * ALPHA, "{metric:?}: fixed-horizon FPR {fixed}");
    }
}
