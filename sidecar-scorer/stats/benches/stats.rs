//! `make bench-stats`: streaming drift of 1,000,000 rows × 50 numeric
//! features against reference bins (bin counts alone, with every row
//! sketched, with the default sampling), and the exact forms on
//! 100,000 × 100,000 samples beside scipy on the same data in the same run.
//!
//! Environment: `OUTRIDER_PYTHON` (default `.venv/bin/python`) runs the scipy
//! side; without it the scipy columns are left out.

use outrider_stats::drift::chi2::contingency_2xk;
use outrider_stats::drift::{
    DriftThresholds, NumericDriftRequest, bins::ReferenceBins, bins::shares, jensen_shannon, ks,
    psi, wasserstein,
};
use outrider_stats::judge::mann_whitney::mann_whitney_u;
use outrider_stats::streaming::Mergeable;
use outrider_stats::streaming::drift::{DEFAULT_SKETCH_K, DriftWindow, ReferenceProfile, Sampling};
use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};
use rand_distr::{Distribution, Normal};
use std::hint::black_box;
use std::process::Command;
use std::time::{Duration, Instant};

const ROWS: usize = 1_000_000;
const FEATURES: usize = 50;
const REFERENCE_ROWS: usize = 100_000;
const CHUNK: usize = 10_000;
const EXACT_N: usize = 100_000;

fn main() {
    streaming();
    exact();
}

fn peak_rss_kb() -> u64 {
    std::fs::read_to_string("/proc/self/status")
        .ok()
        .and_then(|s| {
            s.lines()
                .find(|l| l.starts_with("VmHWM:"))
                .and_then(|l| l.split_whitespace().nth(1)?.parse().ok())
        })
        .unwrap_or(0)
}

/// Wall time, and the time this thread spent on a CPU: on a shared machine
/// the second leaves out the time other processes held the core.
#[derive(Debug, Default, Clone, Copy)]
struct Spent {
    wall: Duration,
    cpu: Duration,
}

impl Spent {
    fn time<T>(&mut self, f: impl FnOnce() -> T) -> T {
        let (wall, cpu) = (Instant::now(), thread_cpu_ns());
        let out = f();
        self.wall += wall.elapsed();
        self.cpu += Duration::from_nanos(thread_cpu_ns().saturating_sub(cpu));
        out
    }
}

/// Nanoseconds this thread has run (first field of its schedstat); 0 where
/// the kernel does not provide it.
fn thread_cpu_ns() -> u64 {
    std::fs::read_to_string("/proc/thread-self/schedstat")
        .ok()
        .and_then(|s| s.split_whitespace().next()?.parse().ok())
        .unwrap_or(0)
}

fn streaming() {
    let mut rng = StdRng::seed_from_u64(1);
    let normal = Normal::new(0.0, 1.0).unwrap();
    let profiles: Vec<ReferenceProfile> = (0..FEATURES)
        .map(|_| {
            let r: Vec<f64> = (0..REFERENCE_ROWS)
                .map(|_| normal.sample(&mut rng))
                .collect();
            ReferenceProfile::new(&r, 10, DEFAULT_SKETCH_K).unwrap()
        })
        .collect();
    let mut bins_only: Vec<Vec<u64>> = profiles
        .iter()
        .map(|p| vec![0; p.bins.bin_count()])
        .collect();
    // The same rows into bin counts alone, into windows that sketch every
    // row, and into windows with the default sampling.
    let mut every_row: Vec<DriftWindow> = profiles
        .iter()
        .map(|p| p.clone().with_sampling(Sampling::EXACT).new_window())
        .collect();
    let mut windows: Vec<DriftWindow> = profiles.iter().map(|p| p.new_window()).collect();
    let rss_before = peak_rss_kb();
    let (mut t_bins, mut t_every, mut t_sampled) =
        (Spent::default(), Spent::default(), Spent::default());
    // Rows arrive in chunks (telemetry batches); generating them is not timed.
    let mut chunk = vec![0.0f64; CHUNK * FEATURES];
    for c in 0..ROWS / CHUNK {
        let shift = if c % 2 == 0 { 0.0 } else { 0.2 };
        for v in chunk.iter_mut() {
            *v = normal.sample(&mut rng) + shift;
        }
        t_bins.time(|| {
            for row in chunk.chunks_exact(FEATURES) {
                for (f, &x) in row.iter().enumerate() {
                    bins_only[f][profiles[f].bins.bin_of(x)] += 1;
                }
            }
        });
        t_every.time(|| {
            for row in chunk.chunks_exact(FEATURES) {
                for (f, &x) in row.iter().enumerate() {
                    every_row[f].observe(&profiles[f].bins, x);
                }
            }
        });
        t_sampled.time(|| {
            for row in chunk.chunks_exact(FEATURES) {
                for (f, &x) in row.iter().enumerate() {
                    windows[f].observe(&profiles[f].bins, x);
                }
            }
        });
    }
    let report = |ws: &[DriftWindow]| {
        let mut spent = Spent::default();
        let reports: Vec<_> = spent.time(|| {
            ws.iter()
                .zip(&profiles)
                .map(|(w, p)| w.report(p, &DriftThresholds::default()).unwrap())
                .collect()
        });
        (reports, spent)
    };
    let (reports_every, t_report_every) = report(&every_row);
    let (reports, t_report) = report(&windows);
    let state_bytes = |ws: &[DriftWindow]| -> usize {
        ws.iter()
            .map(|w| w.sketch.serialize_bytes().len() + 8 * w.counts.len())
            .sum()
    };
    let mut merged = profiles[0].new_window();
    merged.merge(&windows[0]).unwrap();
    black_box((&bins_only, &reports_every, &reports, merged));
    let sampling = Sampling::default();
    println!("## streaming drift: {ROWS} rows x {FEATURES} features, one core");
    println!(
        "{:<42} {:>9} {:>11} {:>13}",
        "state updated per value", "wall (s)", "on-CPU (s)", "/ bins only"
    );
    let sampled_name = format!(
        "bins + KLL, {} rows then 1 in {}",
        sampling.exact_rows, sampling.one_in
    );
    let every_name = format!("bins + KLL (k={DEFAULT_SKETCH_K}), every row");
    for (name, t) in [
        ("bin counts only (PSI/JS state)", t_bins),
        (every_name.as_str(), t_every),
        (sampled_name.as_str(), t_sampled),
    ] {
        println!(
            "{name:<42} {:>9.3} {:>11.3} {:>12.2}x",
            t.wall.as_secs_f64(),
            t.cpu.as_secs_f64(),
            t.cpu.as_secs_f64() / t_bins.cpu.as_secs_f64()
        );
    }
    println!(
        "every row / sampled: {:.2}x wall, {:.2}x on-CPU",
        t_every.wall.as_secs_f64() / t_sampled.wall.as_secs_f64(),
        t_every.cpu.as_secs_f64() / t_sampled.cpu.as_secs_f64()
    );
    println!(
        "reports for {FEATURES} features (wall): every row {:.3} s, sampled {:.3} s",
        t_report_every.wall.as_secs_f64(),
        t_report.wall.as_secs_f64()
    );
    println!(
        "window state, all features: every row {} bytes, sampled {} bytes (independent of rows)",
        state_bytes(&every_row),
        state_bytes(&windows)
    );
    println!(
        "peak RSS {} MB (before rows: {} MB; rows are generated in {CHUNK}-row chunks)",
        peak_rss_kb() / 1024,
        rss_before / 1024
    );
    for (name, r) in [("every row", &reports_every[0]), ("sampled", &reports[0])] {
        println!(
            "feature 0, {name}: psi {:.4}, ks {:.4} (bound {:.4}), wasserstein {:.4}",
            r.psi, r.ks_statistic, r.ks_error_bound, r.wasserstein
        );
    }
}

fn best<T>(mut f: impl FnMut() -> T) -> f64 {
    (0..3)
        .map(|_| {
            let t = Instant::now();
            black_box(f());
            t.elapsed().as_secs_f64()
        })
        .fold(f64::INFINITY, f64::min)
}

fn exact() {
    let mut rng = StdRng::seed_from_u64(2);
    let normal = Normal::new(0.0, 1.0).unwrap();
    let reference: Vec<f64> = (0..EXACT_N).map(|_| normal.sample(&mut rng)).collect();
    let current: Vec<f64> = (0..EXACT_N)
        .map(|_| normal.sample(&mut rng) * 1.1 + 0.05)
        .collect();
    let cats: Vec<u8> = (0..2 * EXACT_N)
        .map(|i| {
            (rng.random::<f64>()
                .powf(if i < EXACT_N { 1.0 } else { 1.1 })
                * 20.0) as u8
        })
        .collect();
    let (ref_cat, cur_cat) = cats.split_at(EXACT_N);

    let path = std::env::temp_dir().join(format!("outrider-bench-{}.f64", std::process::id()));
    let bytes: Vec<u8> = reference
        .iter()
        .chain(&current)
        .flat_map(|x| x.to_le_bytes())
        .collect();
    std::fs::write(&path, bytes).unwrap();
    let cat_path = format!("{}.cat", path.display());
    std::fs::write(&cat_path, &cats).unwrap();

    let sorted = |v: &[f64]| {
        let mut s = v.to_vec();
        s.sort_unstable_by(f64::total_cmp);
        s
    };
    let rust = [
        ("ks", best(|| ks::ks_2samp(&reference, &current))),
        (
            "wasserstein",
            best(|| wasserstein::wasserstein_distance(&reference, &current)),
        ),
        (
            "psi_js",
            best(|| {
                let r = sorted(&reference);
                let bins = ReferenceBins::from_sorted(&r, 10);
                let (rc, cc) = (bins.counts_sorted(&r), bins.counts(&current));
                let (rs, cs) = (shares(&rc), shares(&cc));
                (psi::psi(&rs, &cs), jensen_shannon::distance(&rs, &cs))
            }),
        ),
        (
            "mann_whitney",
            best(|| mann_whitney_u(&current, &reference)),
        ),
        (
            "chi2",
            best(|| {
                let (mut a, mut b) = ([0u64; 256], [0u64; 256]);
                ref_cat.iter().for_each(|&c| a[c as usize] += 1);
                cur_cat.iter().for_each(|&c| b[c as usize] += 1);
                let keep: Vec<usize> = (0..256).filter(|&i| a[i] + b[i] > 0).collect();
                let ra: Vec<u64> = keep.iter().map(|&i| a[i]).collect();
                let rb: Vec<u64> = keep.iter().map(|&i| b[i]).collect();
                contingency_2xk(&ra, &rb)
            }),
        ),
    ];
    let full = best(|| {
        outrider_stats::drift::numeric(&NumericDriftRequest {
            reference: reference.clone(),
            current: current.clone(),
            bins: 10,
            thresholds: DriftThresholds::default(),
        })
    });

    let python = std::env::var("OUTRIDER_PYTHON")
        .unwrap_or_else(|_| concat!(env!("CARGO_MANIFEST_DIR"), "/../../.venv/bin/python").into());
    let script = concat!(env!("CARGO_MANIFEST_DIR"), "/benches/scipy_bench.py");
    let scipy: Option<serde_json::Value> = Command::new(&python)
        .args([script, &path.display().to_string(), &EXACT_N.to_string()])
        .output()
        .ok()
        .filter(|o| o.status.success())
        .and_then(|o| serde_json::from_slice(&o.stdout).ok());
    let _ = std::fs::remove_file(&path);
    let _ = std::fs::remove_file(&cat_path);

    println!();
    println!("## exact forms: {EXACT_N} x {EXACT_N} samples, best of 3");
    println!(
        "{:<14} {:>10} {:>10} {:>14}",
        "method", "rust (ms)", "scipy (ms)", "scipy / rust"
    );
    for (name, t) in rust {
        match scipy.as_ref().and_then(|s| s[name].as_f64()) {
            Some(p) => println!(
                "{name:<14} {:>10.2} {:>10.2} {:>13.1}x",
                t * 1e3,
                p * 1e3,
                p / t
            ),
            None => println!("{name:<14} {:>10.2} {:>10} {:>14}", t * 1e3, "-", "-"),
        }
    }
    println!(
        "drift::numeric (KS + Wasserstein + PSI + JS, one call) {:.2} ms",
        full * 1e3
    );
    if let Some(s) = &scipy {
        let k = ks::ks_2samp(&reference, &current);
        println!(
            "check: ks {:.6}/{:.6}, p {:e}/{:e}; wasserstein {:.9}/{:.9}; mwu p {:e}/{:e}",
            k.statistic,
            s["check"]["ks_statistic"].as_f64().unwrap_or(f64::NAN),
            k.p_value,
            s["check"]["ks_p_value"].as_f64().unwrap_or(f64::NAN),
            wasserstein::wasserstein_distance(&reference, &current),
            s["check"]["wasserstein"].as_f64().unwrap_or(f64::NAN),
            mann_whitney_u(&current, &reference).p_value,
            s["check"]["mann_whitney_p"].as_f64().unwrap_or(f64::NAN),
        );
    } else {
        println!("(scipy side not run: {python} unavailable; run `make setup-stats-bench`)");
    }
}
