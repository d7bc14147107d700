//! Quantiles of the bucketed histograms filters report: latency (interpolated within
//! a bucket) and score difference (a bucket's upper bound).

use outrider_protocol::{LATENCY_BUCKETS_MS, SCORE_DIFF_BUCKETS};

/// The value below which a share `q` of the counts fall, interpolated linearly inside
/// its bucket (`bounds` are the buckets' upper bounds; the first bucket starts at 0;
/// the overflow bucket reports its lower bound). `None` for an empty histogram.
pub fn quantile(counts: &[u64], bounds: &[f64], q: f64) -> Option<f64> {
    let total: u64 = counts.iter().sum();
    if total == 0 {
        return None;
    }
    let rank = q.clamp(0.0, 1.0) * total as f64;
    let mut seen = 0.0;
    for (i, count) in counts.iter().enumerate() {
        let next = seen + *count as f64;
        if next >= rank && *count > 0 {
            let lower = if i == 0 {
                0.0
            } else {
                bounds.get(i - 1).copied().unwrap_or(0.0)
            };
            let Some(upper) = bounds.get(i) else {
                return Some(lower);
            };
            return Some(lower + (upper - lower) * ((rank - seen) / *count as f64));
        }
        seen = next;
    }
    None
}

pub fn latency_quantile(counts: &[u64], q: f64) -> Option<f64> {
    quantile(counts, &LATENCY_BUCKETS_MS, q)
}

/// The bucket that holds the share `q` of the counts: the first whose running total
/// reaches `q` of the whole (at least one count), as an index into `counts` (the last
/// index is the overflow). `None` for an empty histogram.
pub fn quantile_bucket(counts: &[u64], q: f64) -> Option<usize> {
    let total: u64 = counts.iter().sum();
    if total == 0 {
        return None;
    }
    // The epsilon keeps 0.9 × 1000 at rank 900 whatever the rounding.
    let rank = (q.clamp(0.0, 1.0) * total as f64 - 1e-9).ceil().max(1.0);
    let mut seen = 0u64;
    for (i, count) in counts.iter().enumerate() {
        seen += count;
        if *count > 0 && seen as f64 >= rank {
            return Some(i);
        }
    }
    None
}

/// The share `q` of the |score difference| counts as the upper bound of the bucket
/// that holds it: the true quantile is at most this and above the bound before it.
/// The overflow bucket (differences above the last bound) reports the last bound.
pub fn score_diff_quantile(counts: &[u64], q: f64) -> Option<f64> {
    quantile_bucket(counts, q).map(|i| SCORE_DIFF_BUCKETS[i.min(SCORE_DIFF_BUCKETS.len() - 1)])
}

#[cfg(test)]
mod tests {
    use outrider_protocol::LATENCY_SLOTS;

    use super::*;

    #[test]
    fn quantiles_interpolate_within_buckets() {
        let mut counts = vec![0u64; LATENCY_SLOTS];
        counts[4] = 100; // (3, 5] ms
        assert_eq!(latency_quantile(&counts, 0.5), Some(4.0));
        assert_eq!(latency_quantile(&counts, 1.0), Some(5.0));
        counts[LATENCY_SLOTS - 1] = 100;
        assert_eq!(latency_quantile(&counts, 0.99), Some(10_000.0));
        assert_eq!(latency_quantile(&[0; LATENCY_SLOTS], 0.5), None);
    }

    #[test]
    fn score_diff_quantiles_are_bucket_upper_bounds() {
        let mut diffs = vec![0u64; SCORE_DIFF_BUCKETS.len() + 1];
        diffs[0] = 90; // [0, 0.0001]
        diffs[8] = 10; // (0.2, 0.5]
        assert_eq!(score_diff_quantile(&diffs, 0.5), Some(0.0001));
        assert_eq!(
            score_diff_quantile(&diffs, 0.9),
            Some(0.0001),
            "the 90th of 100"
        );
        assert_eq!(score_diff_quantile(&diffs, 0.91), Some(0.5));
        assert_eq!(score_diff_quantile(&diffs, 1.0), Some(0.5));
        assert_eq!(quantile_bucket(&diffs, 0.0), Some(0));
        diffs[SCORE_DIFF_BUCKETS.len()] = 1; // above 1
        assert_eq!(quantile_bucket(&diffs, 1.0), Some(SCORE_DIFF_BUCKETS.len()));
        assert_eq!(score_diff_quantile(&diffs, 1.0), Some(1.0));
        assert_eq!(score_diff_quantile(&[0; 11], 0.5), None);
    }
}
