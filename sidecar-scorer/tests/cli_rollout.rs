//! `outrider-scorer rollout ...` against a running scorer, as an operator uses it.

mod common;

use std::process::Command;

use common::*;
use outrider_harness::scorer::ADMIN_TOKEN;

fn cli(server: &str, token: Option<&str>, args: &[&str]) -> (i32, String, String) {
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_outrider-scorer"));
    cmd.arg("rollout")
        .args(args)
        .env("OUTRIDER_SERVER", server)
        .env_remove("OUTRIDER_ADMIN_TOKEN")
        .env("USER", "alice");
    if let Some(t) = token {
        cmd.env("OUTRIDER_ADMIN_TOKEN", t);
    }
    let out = cmd.output().unwrap();
    (
        out.status.code().unwrap_or(-1),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_operator_drives_a_rollout_from_the_command_line() {
    let backend = Backend::sqlite();
    let scorer = start_scorer(&backend, "cli").await;
    let url = scorer.url();
    let run = |token: Option<&str>, args: &[&str]| cli(&url, token, args);
    let admin = Some(ADMIN_TOKEN);

    let (code, out, _) = run(
        admin,
        &[
            "create",
            "fraud",
            "--variant",
            "stable=90",
            "--variant",
            "canary=10",
            "--reason",
            "first canary",
        ],
    );
    assert_eq!(code, 0, "{out}");
    assert!(out.contains("\"status\": \"progressing\""), "{out}");

    let (code, out, _) = run(
        admin,
        &[
            "set-weights",
            "fraud",
            "stable=70",
            "canary=30",
            "--reason",
            "ramp",
        ],
    );
    assert_eq!(code, 0);
    let rollout: serde_json::Value = serde_json::from_str(&out).unwrap();
    assert_eq!(rollout["variants"][1]["weight"], 30.0);
    assert_eq!(rollout["version"], 2);

    for (args, status) in [
        (vec!["pause", "fraud"], "paused"),
        (vec!["resume", "fraud"], "progressing"),
        (vec!["promote", "fraud"], "promoted"),
        (vec!["rollback", "fraud"], "rolled_back"),
    ] {
        let (code, out, err) = run(admin, &args);
        assert_eq!(code, 0, "{args:?}: {err}");
        assert!(
            out.contains(&format!("\"status\": \"{status}\"")),
            "{args:?}: {out}"
        );
    }

    let (code, out, _) = run(None, &["list"]);
    assert_eq!(code, 0);
    let line = out.lines().find(|l| l.starts_with("fraud")).unwrap();
    assert!(
        line.contains("rolled_back") && line.contains("stable=100") && line.contains("canary=0"),
        "{line}"
    );

    let (code, out, _) = run(None, &["events", "fraud"]);
    assert_eq!(code, 0);
    let events: serde_json::Value = serde_json::from_str(&out).unwrap();
    let kinds: Vec<&str> = events["events"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| e["kind"].as_str().unwrap())
        .collect();
    assert_eq!(
        kinds,
        [
            "created",
            "weights_set",
            "paused",
            "resumed",
            "promoted",
            "rolled_back"
        ]
    );
    let ramp = &events["events"][1];
    assert_eq!(
        (ramp["actor"].as_str(), ramp["reason"].as_str()),
        (Some("alice"), Some("ramp"))
    );

    // Errors: a clear message on stderr and a failing exit status.
    let (code, _, err) = run(None, &["pause", "fraud"]);
    assert_ne!(code, 0);
    assert!(err.contains("401") && err.contains("Bearer"), "{err}");
    let (code, _, err) = run(admin, &["set-weights", "fraud", "stable=70", "canary=20"]);
    assert_ne!(code, 0);
    assert!(
        err.contains("add up to 90") && err.contains("field `weights`"),
        "{err}"
    );
    let (code, _, err) = run(admin, &["set-weights", "fraud", "stable:70"]);
    assert_ne!(code, 0);
    assert!(err.contains("NAME=WEIGHT"), "{err}");
    let (code, _, err) = cli("http://127.0.0.1:9", admin, &["list"]);
    assert_ne!(code, 0);
    assert!(err.contains("cannot reach the scorer"), "{err}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_shadow_gate_is_set_from_the_command_line() {
    let backend = Backend::sqlite();
    let scorer = start_scorer(&backend, "cli-gate").await;
    let url = scorer.url();
    let run = |args: &[&str]| cli(&url, Some(ADMIN_TOKEN), args);

    let (code, out, err) = run(&[
        "create",
        "fraud",
        "--variant",
        "stable=100",
        "--shadow-gate",
        "min_copies=200",
        "--shadow-gate",
        "max_timeout_rate=0.05",
        "--shadow-gate",
        "min_agreement=1",
    ]);
    assert_eq!(code, 0, "{err}");
    let rollout: serde_json::Value = serde_json::from_str(&out).unwrap();
    assert_eq!(
        rollout["shadow_gate"],
        serde_json::json!({"min_agreement": 1.0, "min_comparisons": 1000, "max_error_rate": 0.01,
            "max_timeout_rate": 0.05, "min_copies": 200}),
        "the thresholds not given keep their defaults"
    );

    // A file's gate, with a flag over one of its thresholds.
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("rollout.json");
    std::fs::write(
        &file,
        r#"{"name": "fraud-2", "variants": [{"name": "stable", "weight": 100}],
            "shadow_gate": {"min_comparisons": 300, "max_error_rate": 0.2}}"#,
    )
    .unwrap();
    let (code, out, err) = run(&[
        "create",
        "--file",
        file.to_str().unwrap(),
        "--shadow-gate",
        "max_error_rate=0.02",
    ]);
    assert_eq!(code, 0, "{err}");
    let rollout: serde_json::Value = serde_json::from_str(&out).unwrap();
    assert_eq!(
        (
            &rollout["shadow_gate"]["min_comparisons"],
            &rollout["shadow_gate"]["max_error_rate"]
        ),
        (&serde_json::json!(300), &serde_json::json!(0.02))
    );

    // Bad thresholds: named by the command line or by the scorer.
    for (gate, says) in [
        (
            "max_timeout_rate=often",
            "`often` in `max_timeout_rate=often` is not a number",
        ),
        ("min_copies", "`min_copies` is not KEY=VALUE"),
        (
            "max_timeout_rate=1.5",
            "field `shadow_gate.max_timeout_rate`",
        ),
        ("min_copies=2.5", "field `shadow_gate.min_copies`"),
        ("max_latency_ms=5", "field `shadow_gate.max_latency_ms`"),
    ] {
        let (code, _, err) = run(&[
            "create",
            "fraud-3",
            "--variant",
            "stable=100",
            "--shadow-gate",
            gate,
        ]);
        assert_ne!(code, 0, "{gate}");
        assert!(err.contains(says), "{gate}: {err}");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_rollout_spec_is_applied_from_yaml() {
    let backend = Backend::sqlite();
    let scorer = start_scorer(&backend, "cli-apply").await;
    let url = scorer.url();
    let dir = tempfile::tempdir().unwrap();
    let spec = dir.path().join("fraud.yaml");
    let yaml = "\
name: fraud
variants:
  - {name: stable, weight: 99}
  - {name: canary, weight: 1}
steps:
  - weights: {stable: 99, canary: 1}
  - weights: {stable: 90, canary: 10}
    hold_seconds: 60
analysis:
  interval_seconds: 10
  checks:
    - metric: error_rate
      max: 0.02
    - metric: prediction_ks
      max: 0.15
      min_samples: 100
";
    std::fs::write(&spec, yaml).unwrap();
    let path = spec.to_str().unwrap();
    let (code, out, err) = cli(
        &url,
        Some(ADMIN_TOKEN),
        &["apply", "-f", path, "--reason", "v7"],
    );
    assert_eq!(code, 0, "{out}{err}");
    assert!(out.contains("\"result\": \"created\""), "{out}");
    let rollout = call(
        &scorer,
        hyper::Method::GET,
        "/v1/rollouts/fraud",
        None,
        None,
    )
    .await
    .json()
    .unwrap();
    assert_eq!(rollout["analysis"]["interval_seconds"], 10);
    assert_eq!(rollout["analysis"]["checks"][1]["metric"], "prediction_ks");
    assert_eq!(
        rollout["analysis"]["failure_limit"], 2,
        "defaults filled in"
    );

    // Applying it again changes nothing; another plan under the same name is refused.
    let (code, out, _) = cli(&url, Some(ADMIN_TOKEN), &["apply", "-f", path]);
    assert_eq!(code, 0, "{out}");
    assert!(out.contains("\"result\": \"unchanged\""), "{out}");
    std::fs::write(&spec, yaml.replace("max: 0.02", "max: 0.05")).unwrap();
    let (code, _, err) = cli(&url, Some(ADMIN_TOKEN), &["apply", "-f", path]);
    assert_ne!(code, 0);
    assert!(err.contains("exists with another analysis"), "{err}");

    // A bad spec is refused by the server with the field at fault.
    std::fs::write(
        &spec,
        yaml.replace("name: fraud", "name: other")
            .replace("interval_seconds: 10", "interval_seconds: 2"),
    )
    .unwrap();
    let (code, _, err) = cli(&url, Some(ADMIN_TOKEN), &["apply", "-f", path]);
    assert_ne!(code, 0);
    assert!(err.contains("analysis.interval_seconds"), "{err}");
    std::fs::write(&spec, "name: [unclosed").unwrap();
    let (code, _, err) = cli(&url, Some(ADMIN_TOKEN), &["apply", "-f", path]);
    assert_ne!(code, 0);
    assert!(err.contains("not a YAML or JSON rollout spec"), "{err}");
}
