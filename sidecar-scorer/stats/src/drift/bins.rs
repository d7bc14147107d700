//! Reference quantile bins: the binning of PSI and Jensen-Shannon.

use crate::sample::{count_le, quantile_linear};

/// Bin edges taken from a reference sample: the reference quantiles at
/// `i / bins`, `i = 1..bins-1` (`numpy.quantile`, linear). A value `x` falls in
/// bin `numpy.searchsorted(edges, x, side="right")`; the outer bins are open, so
/// values outside the reference range land in the first or last bin.
#[derive(Debug, Clone, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct ReferenceBins {
    pub edges: Vec<f64>,
}

impl ReferenceBins {
    /// Edges from a sorted, non-empty, finite reference sample; `bins >= 1`.
    pub fn from_sorted(reference_sorted: &[f64], bins: usize) -> Self {
        let edges = (1..bins)
            .map(|i| quantile_linear(reference_sorted, i as f64 / bins as f64))
            .collect();
        Self { edges }
    }

    pub fn bin_count(&self) -> usize {
        self.edges.len() + 1
    }

    /// The bin of one value.
    #[inline]
    pub fn bin_of(&self, x: f64) -> usize {
        // A short linear scan beats a binary search for the usual 10 bins and
        // compiles to branch-free compares.
        if self.edges.len() <= 32 {
            self.edges.iter().map(|&e| usize::from(e <= x)).sum()
        } else {
            count_le(&self.edges, x)
        }
    }

    /// Counts of a sorted sample per bin.
    pub fn counts_sorted(&self, sorted: &[f64]) -> Vec<u64> {
        let mut counts = Vec::with_capacity(self.bin_count());
        let mut below = 0usize;
        for &edge in &self.edges {
            // searchsorted(right) puts x == edge in the upper bin, so bin i
            // holds edges[i-1] <= x < edges[i].
            let lt = sorted.partition_point(|&v| v < edge);
            counts.push((lt - below) as u64);
            below = lt;
        }
        counts.push((sorted.len() - below) as u64);
        counts
    }

    /// Counts of an unsorted sample per bin.
    pub fn counts(&self, values: &[f64]) -> Vec<u64> {
        let mut counts = vec![0u64; self.bin_count()];
        for &v in values {
            counts[self.bin_of(v)] += 1;
        }
        counts
    }
}

/// Shares of each bin (`count / total`); all zero for an empty sample.
pub fn shares(counts: &[u64]) -> Vec<f64> {
    let total: u64 = counts.iter().sum();
    if total == 0 {
        return vec![0.0; counts.len()];
    }
    counts.iter().map(|&c| c as f64 / total as f64).collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn value_on_an_edge_goes_to_the_upper_bin() {
        let bins = ReferenceBins {
            edges: vec![1.0, 2.0],
        };
        assert_eq!(bins.bin_of(0.5), 0);
        assert_eq!(bins.bin_of(1.0), 1);
        assert_eq!(bins.bin_of(2.0), 2);
        assert_eq!(bins.bin_of(99.0), 2);
        let sorted = [0.5, 1.0, 1.5, 2.0, 3.0];
        assert_eq!(bins.counts_sorted(&sorted), vec![1, 2, 2]);
        assert_eq!(bins.counts(&sorted), vec![1, 2, 2]);
    }

    #[test]
    fn tied_reference_gives_repeated_edges() {
        let reference = [1.0, 1.0, 1.0, 1.0, 2.0];
        let bins = ReferenceBins::from_sorted(&reference, 4);
        assert_eq!(bins.edges, vec![1.0, 1.0, 1.0]);
        assert_eq!(bins.counts(&[1.0, 2.0, 0.0]), vec![1, 0, 0, 2]);
    }
}
