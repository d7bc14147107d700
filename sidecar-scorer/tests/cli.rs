//! The `stats` subcommands as a user runs them.

use std::io::Write;
use std::process::{Command, Stdio};

fn run(args: &[&str], stdin: &str) -> (i32, serde_json::Value) {
    let mut child = Command::new(env!("CARGO_BIN_EXE_outrider-scorer"))
        .args(args)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .spawn()
        .expect("binary runs");
    child
        .stdin
        .take()
        .unwrap()
        .write_all(stdin.as_bytes())
        .unwrap();
    let out = child.wait_with_output().unwrap();
    let json = serde_json::from_slice(&out.stdout).expect("stdout is one JSON document");
    (out.status.code().unwrap(), json)
}

#[test]
fn ab_report() {
    let (code, out) = run(
        &["stats", "ab"],
        r#"{"metric": "binomial", "alpha": 0.05, "control": "a", "correction": "none",
            "sequential": false, "tuning": 5000,
            "variants": [{"name": "a", "n": 1000, "sum": 120, "sum_sq": 120, "expected_share": 0.5},
                         {"name": "b", "n": 1000, "sum": 150, "sum_sq": 150, "expected_share": 0.5}]}"#,
    );
    assert_eq!(code, 0);
    for key in ["statistic", "p_value", "mismatch"] {
        assert!(out["srm"].get(key).is_some(), "srm.{key}");
    }
    let c = &out["comparisons"][0];
    for key in [
        "variant",
        "control",
        "mean_control",
        "mean_variant",
        "difference",
        "ci_low",
        "ci_high",
        "p_value",
        "p_value_adjusted",
        "significant",
        "test",
    ] {
        assert!(c.get(key).is_some(), "comparisons[0].{key}");
    }
    assert_eq!(c["variant"], "b");
}

#[test]
fn drift_and_judge_and_power() {
    let (code, out) = run(
        &["stats", "drift"],
        r#"{"kind": "numeric", "reference": [1, 2, 3, 4, 5, 6], "current": [2, 3, 4, 5, 6, 7], "bins": 3}"#,
    );
    assert_eq!(code, 0);
    for key in [
        "psi",
        "ks_statistic",
        "ks_p_value",
        "wasserstein",
        "wasserstein_normed",
        "js_distance",
    ] {
        assert!(out[key].is_number(), "{key}");
    }
    let (code, out) = run(
        &["stats", "drift"],
        r#"{"kind": "categorical", "reference": ["a", "b", "a"], "current": ["b", "c"]}"#,
    );
    assert_eq!(code, 0);
    for key in ["chi2", "chi2_p_value", "psi", "js_distance"] {
        assert!(out[key].is_number(), "{key}");
    }
    let (code, out) = run(
        &["stats", "judge"],
        r#"{"metrics": [{"name": "latency", "baseline": [1, 2, 3, 4], "canary": [1, 2, 3, 5],
            "direction": "increase", "critical": false, "weight": 1.0,
            "allowed_increase": 1.0, "allowed_decrease": 1.0}],
            "pass_threshold": 90, "marginal_threshold": 75}"#,
    );
    assert_eq!(code, 0);
    assert!(out["score"].is_number());
    assert!(["pass", "marginal", "fail"].contains(&out["verdict"].as_str().unwrap()));
    assert!(out["metrics"][0]["classification"].is_string());
    let (code, out) = run(
        &["stats", "power"],
        r#"{"metric": "binomial", "baseline": 0.1, "mde": 0.01}"#,
    );
    assert_eq!(code, 0);
    assert!(out["n_control"].as_u64().unwrap() > 10_000);
}

#[test]
fn invalid_input_exits_2_naming_the_field() {
    let (code, out) = run(
        &["stats", "ab"],
        r#"{"metric": "binomial", "variants": [{"name": "a", "n": 10, "sum": 1}, {"name": "b", "n": -1, "sum": 1}]}"#,
    );
    assert_eq!(code, 2);
    assert_eq!(out["error"]["field"], "variants[1].n");
    let (code, out) = run(
        &["stats", "drift"],
        r#"{"kind": "numeric", "reference": [], "current": [1]}"#,
    );
    assert_eq!(code, 2);
    assert_eq!(out["error"]["field"], "reference");
    assert_eq!(out["error"]["code"], "invalid_value");
    let (code, out) = run(&["stats", "judge"], "not json");
    assert_eq!(code, 2);
    assert_eq!(out["error"]["code"], "invalid_json");
}
