//! Agreement with scipy / statsmodels on the reference cases written by
//! `fixtures/generate.py`: statistics to 1e-9 relative, p-values to 1e-6
//! absolute.

use outrider_stats::ab::power::{PowerRequest, sample_size};
use outrider_stats::ab::{bayes, holm, srm, welch, ztest};
use outrider_stats::drift::{self, CategoricalDriftRequest, DriftThresholds, NumericDriftRequest};
use outrider_stats::judge::mann_whitney::mann_whitney_u;
use outrider_stats::special::{kolmogorov::kstwo_sf, smirnov::smirnov_sf};
use serde_json::Value;

fn cases(name: &str) -> Vec<Value> {
    let path = format!("{}/fixtures/{name}.json", env!("CARGO_MANIFEST_DIR"));
    let text = std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("{path}: {e}"));
    let doc: Value = serde_json::from_str(&text).unwrap();
    let cases = doc["cases"].as_array().unwrap().clone();
    assert!(cases.len() >= 200, "{name}: only {} cases", cases.len());
    cases
}

fn num(v: &Value) -> f64 {
    v.as_f64().unwrap_or_else(|| panic!("not a number: {v}"))
}

fn nums(v: &Value) -> Vec<f64> {
    v.as_array().unwrap().iter().map(num).collect()
}

#[track_caller]
fn stat(name: &str, i: usize, got: f64, want: f64) {
    let tol = 1e-9 * want.abs().max(1e-12);
    assert!(
        (got - want).abs() <= tol || (got == want),
        "case {i} {name}: got {got:e}, scipy {want:e}"
    );
}

#[track_caller]
fn pval(name: &str, i: usize, got: f64, want: f64) {
    assert!(
        (got - want).abs() <= 1e-6,
        "case {i} {name}: got {got:e}, scipy {want:e}"
    );
}

#[test]
fn two_proportion_ztest() {
    for (i, c) in cases("ztest").iter().enumerate() {
        let t = ztest::two_proportion(
            num(&c["x_c"]),
            num(&c["n_c"]),
            num(&c["x_v"]),
            num(&c["n_v"]),
            num(&c["alpha"]),
        );
        stat("z", i, t.z, num(&c["z"]));
        pval("p", i, t.p_value, num(&c["p_value"]));
        stat("ci_low", i, t.ci_low, num(&c["ci_low"]));
        stat("ci_high", i, t.ci_high, num(&c["ci_high"]));
    }
}

#[test]
fn welch_t_test() {
    for (i, c) in cases("welch").iter().enumerate() {
        let arm = |n: &str, s: &str, ss: &str| {
            outrider_stats::ab::moments(&outrider_stats::ab::VariantStats {
                name: String::new(),
                n: c[n].as_u64().unwrap(),
                sum: num(&c[s]),
                sum_sq: Some(num(&c[ss])),
                expected_share: None,
            })
        };
        let t = welch::welch(
            arm("n_c", "sum_c", "sum_sq_c"),
            arm("n_v", "sum_v", "sum_sq_v"),
            num(&c["alpha"]),
        );
        stat("t", i, t.t, num(&c["t"]));
        stat("df", i, t.df, num(&c["df"]));
        pval("p", i, t.p_value, num(&c["p_value"]));
        stat("ci_low", i, t.ci_low, num(&c["ci_low"]));
        stat("ci_high", i, t.ci_high, num(&c["ci_high"]));
    }
}

#[test]
fn srm_chisquare() {
    for (i, c) in cases("srm").iter().enumerate() {
        let counts: Vec<u64> = c["counts"]
            .as_array()
            .unwrap()
            .iter()
            .map(|v| v.as_u64().unwrap())
            .collect();
        let r = srm::srm(&counts, &nums(&c["shares"]));
        stat("statistic", i, r.statistic, num(&c["statistic"]));
        pval("p", i, r.p_value, num(&c["p_value"]));
    }
}

#[test]
fn holm_correction() {
    for (i, c) in cases("holm").iter().enumerate() {
        let got = holm::holm(&nums(&c["p_values"]));
        for (g, w) in got.iter().zip(nums(&c["adjusted"])) {
            pval("adjusted", i, *g, w);
        }
    }
}

#[test]
fn bayes_chance_to_beat_control() {
    for (i, c) in cases("bayes").iter().enumerate() {
        let u = |k: &str| c[k].as_u64().unwrap();
        let p = bayes::binomial_chance_to_beat(u("x_c"), u("n_c"), u("x_v"), u("n_v"));
        pval("chance", i, p, num(&c["chance_to_beat_control"]));
    }
}

#[test]
fn power_sample_size() {
    for (i, c) in cases("power").iter().enumerate() {
        let req: PowerRequest = serde_json::from_value(c["request"].clone()).unwrap();
        let r = sample_size(&req).unwrap();
        stat("effect_size", i, r.effect_size, num(&c["effect_size"]));
        stat(
            "n_control_exact",
            i,
            r.n_control_exact,
            num(&c["n_control_exact"]),
        );
    }
}

#[test]
fn numeric_drift() {
    let mut asymptotic = 0;
    for (i, c) in cases("drift_numeric").iter().enumerate() {
        let req = NumericDriftRequest {
            reference: nums(&c["reference"]),
            current: nums(&c["current"]),
            bins: c["bins"].as_u64().unwrap() as usize,
            thresholds: DriftThresholds::default(),
        };
        let r = drift::numeric(&req).unwrap();
        for (g, w) in r.edges.iter().zip(nums(&c["edges"])) {
            assert!(*g == w, "case {i} edge: {g:e} vs numpy {w:e}");
        }
        stat("psi", i, r.psi, num(&c["psi"]));
        if let Some(js) = c["js_distance"].as_f64() {
            stat("js", i, r.js_distance, js);
        }
        stat("ks_statistic", i, r.ks_statistic, num(&c["ks_statistic"]));
        pval("ks_p_value", i, r.ks_p_value, num(&c["ks_p_value"]));
        stat("wasserstein", i, r.wasserstein, num(&c["wasserstein"]));
        match c["wasserstein_normed"].as_f64() {
            Some(w) => stat("wasserstein_normed", i, r.wasserstein_normed.unwrap(), w),
            None => assert_eq!(r.wasserstein_normed, None),
        }
        asymptotic += usize::from(r.ks_method == drift::ks::KsMethod::Asymptotic);
    }
    assert!(asymptotic >= 5, "the asymptotic KS path must be covered");
}

#[test]
fn categorical_drift() {
    for (i, c) in cases("drift_categorical").iter().enumerate() {
        let strings = |k: &str| -> Vec<String> {
            c[k].as_array()
                .unwrap()
                .iter()
                .map(|v| v.as_str().unwrap().to_string())
                .collect()
        };
        let r = drift::categorical(&CategoricalDriftRequest {
            reference: strings("reference"),
            current: strings("current"),
            thresholds: DriftThresholds::default(),
        })
        .unwrap();
        stat("chi2", i, r.chi2, num(&c["chi2"]));
        pval("chi2_p", i, r.chi2_p_value, num(&c["chi2_p_value"]));
        stat("psi", i, r.psi, num(&c["psi"]));
        if let Some(js) = c["js_distance"].as_f64() {
            stat("js", i, r.js_distance, js);
        }
    }
}

#[test]
fn mann_whitney() {
    for (i, c) in cases("mann_whitney").iter().enumerate() {
        let r = mann_whitney_u(&nums(&c["x"]), &nums(&c["y"]));
        stat("u", i, r.u, num(&c["u"]));
        if let Some(p) = c["p_value"].as_f64() {
            pval("p", i, r.p_value, p);
        }
    }
}

#[test]
fn kolmogorov_and_smirnov() {
    for (i, c) in cases("kolmogorov").iter().enumerate() {
        let (n, d) = (c["n"].as_u64().unwrap(), num(&c["d"]));
        pval("kstwo.sf", i, kstwo_sf(n, d), num(&c["sf"]));
        pval("smirnov", i, smirnov_sf(n, d), num(&c["smirnov"]));
    }
}
