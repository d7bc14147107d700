//! Two-sample Kolmogorov-Smirnov test, as `scipy.stats.ks_2samp` with its
//! default `method="auto"`.

use crate::special::kolmogorov::kstwo_sf;
use serde::{Deserialize, Serialize};

/// Above this sample size `auto` stops trying the exact distribution.
pub const MAX_EXACT_N: usize = 10_000;

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum KsMethod {
    Exact,
    Asymptotic,
}

#[derive(Debug, Clone, Copy, PartialEq)]
pub struct KsResult {
    pub statistic: f64,
    pub p_value: f64,
    pub method: KsMethod,
}

/// The KS statistic `sup |F_a − F_b|` of two sorted non-empty samples, with the
/// empirical CDFs evaluated as scipy does (count / n, at every pooled value).
pub fn statistic_sorted(a: &[f64], b: &[f64]) -> f64 {
    let (na, nb) = (a.len() as f64, b.len() as f64);
    let (mut i, mut j) = (0usize, 0usize);
    let mut max_diff = f64::NEG_INFINITY;
    let mut min_diff = f64::INFINITY;
    while i < a.len() || j < b.len() {
        let x = match (a.get(i), b.get(j)) {
            (Some(&u), Some(&v)) => u.min(v),
            (Some(&u), None) => u,
            (None, Some(&v)) => v,
            (None, None) => break,
        };
        while i < a.len() && a[i] <= x {
            i += 1;
        }
        while j < b.len() && b[j] <= x {
            j += 1;
        }
        let diff = i as f64 / na - j as f64 / nb;
        max_diff = max_diff.max(diff);
        min_diff = min_diff.min(diff);
    }
    let min_s = (-min_diff).clamp(0.0, 1.0);
    if min_s > max_diff { min_s } else { max_diff }
}

/// `ks_2samp(a, b)` (two-sided, method auto) on sorted, non-empty samples.
///
/// Exact when both sizes are at most [`MAX_EXACT_N`], computed by lattice-path
/// counting (Hodges 1958; the numerically stable 1 − p recursion of Viehmann
/// 2021); otherwise, or if the exact computation fails, the Kolmogorov
/// distribution `kstwo(round(n·m/(n+m)))`. In exact mode the statistic is
/// snapped to the lattice `h / lcm(n, m)`, as scipy reports it.
pub fn ks_2samp_sorted(a: &[f64], b: &[f64]) -> KsResult {
    let d = statistic_sorted(a, b);
    ks_from_statistic(d, a.len() as u64, b.len() as u64)
}

/// `ks_2samp` on unsorted finite samples.
pub fn ks_2samp(a: &[f64], b: &[f64]) -> KsResult {
    ks_2samp_sorted(&crate::sample::sorted(a), &crate::sample::sorted(b))
}

/// The p-value part of `ks_2samp`, given the statistic and both sizes.
pub fn ks_from_statistic(d: f64, n1: u64, n2: u64) -> KsResult {
    let mut d = d;
    if n1.max(n2) as usize <= MAX_EXACT_N {
        let g = gcd(n1, n2);
        let lcm = (n1 / g) * n2;
        let h = (d * lcm as f64).round_ties_even() as u64;
        d = h as f64 / lcm as f64;
        if h == 0 {
            return KsResult {
                statistic: d,
                p_value: 1.0,
                method: KsMethod::Exact,
            };
        }
        let p = if n1 == n2 {
            prob_outside_square(n1, h)
        } else {
            prob_outside_band(n1, n2, g, h)
        };
        if p.is_finite() && (0.0..=1.0).contains(&p) {
            return KsResult {
                statistic: d,
                p_value: p,
                method: KsMethod::Exact,
            };
        }
    }
    KsResult {
        statistic: d,
        p_value: asymptotic_p_value(d, n1, n2),
        method: KsMethod::Asymptotic,
    }
}

/// `kstwo.sf(d, round(n·m / (n + m)))`.
pub fn asymptotic_p_value(d: f64, n1: u64, n2: u64) -> f64 {
    let (m, n) = (n1.max(n2) as f64, n1.min(n2) as f64);
    let en = (m * n / (m + n)).round_ties_even().max(1.0);
    kstwo_sf(en as u64, d).clamp(0.0, 1.0)
}

fn gcd(mut a: u64, mut b: u64) -> u64 {
    while b != 0 {
        (a, b) = (b, a % b);
    }
    a
}

/// `P(D_{n,n} >= h/n)` for equal sample sizes: the alternating sum
/// `2 Σ_k (−1)^(k+1) C(2n, n−kh) / C(2n, n)`, evaluated in nested (Horner) form
/// with each ratio built as a product of h factors to avoid cancellation.
fn prob_outside_square(n: u64, h: u64) -> f64 {
    let (n, h) = (n as i64, h as i64);
    let mut p = 0.0;
    let mut k = n / h;
    while k >= 0 {
        let mut ratio = 1.0;
        for j in 0..h {
            ratio = (n - k * h - j) as f64 * ratio / (n + k * h + j + 1) as f64;
        }
        p = ratio * (1.0 - p);
        k -= 1;
    }
    2.0 * p
}

/// Proportion of monotone lattice paths from (0,0) to (m,n) that leave the
/// band |x/m − y/n| < h/lcm(m,n). The recursion carries 1 − (share of paths
/// still inside) per column, which keeps every value in [0, 1].
fn prob_outside_band(m: u64, n: u64, g: u64, h: u64) -> f64 {
    let (m, n) = if m < n { (n, m) } else { (m, n) };
    let (m, n, g, h) = (m as i64, n as i64, g as i64, h as i64);
    let mg = m / g;
    let ng = n / g;
    let ceil_div = |a: i64, b: i64| -((-a).div_euclid(b));
    let mut minj: i64 = 0;
    let mut maxj: i64 = ceil_div(h, mg).min(n + 1);
    let mut curlen = maxj - minj;
    let len_a = (2 * maxj + 2).min(n + 1) as usize;
    let mut col = vec![1.0f64; len_a];
    for slot in col.iter_mut().take(maxj as usize) {
        *slot = 0.0;
    }
    for i in 1..=m {
        let (lastminj, lastlen) = (minj, curlen);
        minj = ((ng * i - h).div_euclid(mg) + 1).max(0).min(n);
        maxj = ceil_div(ng * i + h, mg).min(n + 1);
        if maxj <= minj {
            return 1.0;
        }
        let mut val = if minj == 0 { 0.0 } else { 1.0 };
        let (i_f, offset) = (i as f64, minj - lastminj);
        for jj in 0..(maxj - minj) {
            let j = jj + minj;
            let prev = col[(jj + offset) as usize];
            val = (prev * i_f + val * j as f64) / (i_f + j as f64);
            col[jj as usize] = val;
        }
        curlen = maxj - minj;
        if lastlen > curlen {
            let start = (maxj - minj) as usize;
            let end = (start + (lastlen - curlen) as usize).min(col.len());
            for slot in &mut col[start..end] {
                *slot = 1.0;
            }
        }
    }
    col[(maxj - minj - 1) as usize]
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn small_exact_cases_match_scipy() {
        // ks_2samp([1,2,3,4,5], [3,4,5,6,7,8]) -> 0.5, p 0.35714285714285715
        let r = ks_2samp(&[1.0, 2.0, 3.0, 4.0, 5.0], &[3.0, 4.0, 5.0, 6.0, 7.0, 8.0]);
        assert_eq!(r.method, KsMethod::Exact);
        assert!((r.statistic - 0.5).abs() < 1e-15);
        assert!(
            (r.p_value - 0.35714285714285715).abs() < 1e-12,
            "{}",
            r.p_value
        );
        // ks_2samp([1,2,3], [4,5,6]) -> 1.0, p 0.1
        let r = ks_2samp(&[1.0, 2.0, 3.0], &[4.0, 5.0, 6.0]);
        assert!((r.p_value - 0.1).abs() < 1e-12, "{}", r.p_value);
        let r = ks_2samp(&[1.0, 2.0], &[1.0, 2.0]);
        assert_eq!((r.statistic, r.p_value), (0.0, 1.0));
    }
}
