//! `make demo` in its shortened mode (`--quick`), end to end: the real model servers,
//! Envoy with the filter and the scorer, from training v1 to the rollback of v3. The
//! run must exit 0 and its report must hold every section, with the drift-started job,
//! the promotion of v2 and the guardrail's rollback in its timeline.
//!
//! It runs `outrider-scorer` and `outrider-model` from the folder cargo builds binaries
//! in (`cargo test --workspace` builds them there; `make test` does).

use std::path::PathBuf;
use std::process::Command;

use outrider_harness::paths;
use serde_json::Value;

#[test]
fn the_quick_demo_runs_the_lifecycle_and_writes_the_report() {
    let demo = PathBuf::from(env!("CARGO_BIN_EXE_outrider-demo"));
    let scorer = paths::workspace_binary("outrider-scorer").unwrap();
    paths::workspace_binary("outrider-model").unwrap();
    let bin_dir = scorer.parent().unwrap().to_owned();
    let out = tempfile::tempdir().unwrap();
    let run = Command::new(&demo)
        .args(["--quick", "--out"])
        .arg(out.path())
        .arg("--bin-dir")
        .arg(&bin_dir)
        .output()
        .unwrap();
    let stdout = String::from_utf8_lossy(&run.stdout);
    let stderr = String::from_utf8_lossy(&run.stderr);
    assert!(run.status.success(), "{stdout}\n{stderr}");
    let report_path = out.path().join("report.html");
    assert!(
        stdout.contains(&format!("report: {}", report_path.display())),
        "{stdout}"
    );
    let report = std::fs::read_to_string(&report_path).unwrap();
    for section in [
        "summary",
        "traffic",
        "errors",
        "latency",
        "drift",
        "performance",
        "retraining",
        "analysis",
        "timeline",
    ] {
        assert!(
            report.contains(&format!(r#"<section id="{section}">"#)),
            "no {section} section"
        );
    }
    assert!(report.contains("<svg"), "no plots");
    assert!(
        !report.contains("http://") || !report.contains("<script src"),
        "external assets"
    );

    // The figures behind the timeline: the run's own copy of the scorer's events.
    let events: Value =
        serde_json::from_slice(&std::fs::read(out.path().join("events.json")).unwrap()).unwrap();
    let events = events["events"].as_array().unwrap();
    let jobs: Value =
        serde_json::from_slice(&std::fs::read(out.path().join("jobs.json")).unwrap()).unwrap();
    let job = &jobs["jobs"][0];
    assert_eq!(job["trigger"], "drift", "{job}");
    assert_eq!(job["status"], "succeeded", "{job}");
    assert_eq!(job["version"], 2, "{job}");
    let created_by_job = events
        .iter()
        .find(|e| e["kind"] == "created" && e["actor"] == "retraining")
        .expect("the rollout the retraining job started");
    let reason = created_by_job["reason"].as_str().unwrap();
    assert!(reason.contains("registered v2"), "{reason}");
    assert!(
        report.contains(
            &reason[..reason.len().min(40)]
                .replace('&', "&amp;")
                .replace('<', "&lt;")
                .replace('>', "&gt;")
        ),
        "the timeline shows the job's rollout"
    );
    let promoted = events
        .iter()
        .find(|e| {
            e["kind"] == "promoted" && e["version"].as_u64() > created_by_job["version"].as_u64()
        })
        .expect("v2 promoted");
    assert_ne!(promoted["actor"], "demo", "{promoted}");
    // v3's first trip rolls it back: the next decision after v3's plan is the rollback.
    let v3 = events
        .iter()
        .rposition(|e| e["kind"] == "created")
        .expect("v3's plan");
    let rollback = events.get(v3 + 1).expect("a decision after v3's plan");
    assert_eq!(
        (&rollback["kind"], &rollback["actor"]),
        (&Value::from("rolled_back"), &Value::from("guardrail")),
        "{rollback}"
    );
    assert!(
        !rollback["details"]["guardrail"].is_null(),
        "the trip is the evidence: {rollback}"
    );
    assert!(report.contains(r#"<tr class="event guardrail">"#));
}
