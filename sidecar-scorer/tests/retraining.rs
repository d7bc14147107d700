//! Retraining end to end: a real scorer with an embedded registry whose champion (v1)
//! the model crate trained, labelled samples of the champion's variant ingested as the
//! filters send them (features by name, the request id) with their outcome labels,
//! and jobs that run commands for real. A job of the project's trainer exports the
//! labelled window, registers v2 as challenger, judges it against the champion and
//! starts the policy's rollout; a failing command alerts and changes nothing; a scorer
//! killed mid-job takes its command with it and marks the job failed on restart.

mod common;

use std::path::PathBuf;
use std::time::{Duration, Instant};

use common::*;
use hyper::Method;
use outrider_harness::scorer::{ADMIN_TOKEN, Scorer, ScorerSpec, TELEMETRY_TOKEN};
use outrider_model::data::schema::FEATURES;
use outrider_model::data::{GeneratorConfig, generate};
use outrider_model::registry::{self, AnyRegistry, Registry};
use outrider_model::train::{self, TrainConfig};
use serde_json::{Value, json};
use tempfile::TempDir;

/// The trainer the jobs run: built beside the test binaries.
fn model_binary() -> PathBuf {
    let exe = std::env::current_exe().unwrap();
    let path = exe
        .parent()
        .and_then(|deps| deps.parent())
        .map(|dir| dir.join("outrider-model"))
        .unwrap();
    assert!(
        path.is_file(),
        "{} is missing: build it with `cargo build -p outrider-model` (make test does)",
        path.display()
    );
    path
}

struct Setup {
    scorer: Scorer,
    registry: TempDir,
    jobs: TempDir,
    _db: Backend,
    /// Labelled samples ingested, and the frauds among them.
    labelled: (u64, u64),
}

/// A registry with v1 as champion, a scorer pointed at it, rollout `fraud` serving v1
/// (promoted, so a job may give it a new plan), and `n` labelled samples of it.
async fn setup(n: usize) -> Setup {
    let registry_dir = tempfile::tempdir().unwrap();
    let location = registry_dir.path().to_str().unwrap().to_owned();
    let registry = AnyRegistry::open(&location).unwrap();
    let rows = generate(&GeneratorConfig {
        rows: 6_000,
        seed: 1,
        ..GeneratorConfig::default()
    })
    .unwrap();
    let v1 = train::train(&rows, &TrainConfig::default()).unwrap();
    registry::publish(&registry, &v1, "fraud").await.unwrap();
    registry::promote(&registry, "fraud", 1).await.unwrap();
    let jobs = tempfile::tempdir().unwrap();
    let db = Backend::sqlite();
    let scorer = Scorer::start(ScorerSpec {
        binary: env!("CARGO_BIN_EXE_outrider-scorer").into(),
        store: db.store(),
        replica_id: "retrain".into(),
        extra_args: vec![
            "--window-seconds".into(),
            "1".into(),
            "--registry".into(),
            location,
            "--model-binary".into(),
            model_binary().display().to_string(),
            "--jobs-dir".into(),
            jobs.path().display().to_string(),
        ],
    })
    .await
    .unwrap();
    admin(
        &scorer,
        Method::POST,
        "/v1/rollouts",
        json!({"name": "fraud", "variants": [
            {"name": "stable", "weight": 100, "model": "models:/fraud/1"},
            {"name": "canary", "weight": 0}]}),
    )
    .await;
    admin(
        &scorer,
        Method::POST,
        "/v1/rollouts/fraud/promote",
        json!({"variant": "stable", "reason": "v1 serves"}),
    )
    .await;
    let labelled = ingest_labelled(&scorer, n).await;
    Setup {
        scorer,
        registry: registry_dir,
        jobs,
        _db: db,
        labelled,
    }
}

/// Live traffic's samples of `stable`, as the filter sends them, then their labels;
/// (samples, frauds).
async fn ingest_labelled(scorer: &Scorer, n: usize) -> (u64, u64) {
    let rows = generate(&GeneratorConfig {
        rows: n,
        seed: 77,
        fraud_rate: 0.05,
        ..GeneratorConfig::default()
    })
    .unwrap();
    let now = outrider_scorer::api::now_ms();
    for (b, chunk) in rows.chunks(500).enumerate() {
        let samples: Vec<Value> = chunk
            .iter()
            .map(|t| {
                let features: serde_json::Map<String, Value> = FEATURES
                    .iter()
                    .zip(t.features())
                    .map(|(name, v)| ((*name).to_owned(), json!(f64::from(v))))
                    .collect();
                json!({"variant": "stable", "at_ms": now, "request_id": format!("tx-{}", t.transaction_id),
                       "features": features})
            })
            .collect();
        let batch = json!({"batch_id": format!("retrain-{b}"), "rollout": "fraud", "proxy": "test",
            "window_start_ms": now - 1_000, "window_end_ms": now, "variants": [], "samples": samples});
        let reply = call(
            scorer,
            Method::POST,
            "/v1/telemetry",
            Some(TELEMETRY_TOKEN),
            Some(batch),
        )
        .await;
        assert_eq!(
            reply.status,
            200,
            "{}",
            String::from_utf8_lossy(&reply.body)
        );
        let events: Vec<Value> = chunk
            .iter()
            .map(|t| json!({"request_id": format!("tx-{}", t.transaction_id), "label": t.is_fraud}))
            .collect();
        let reply = call(
            scorer,
            Method::POST,
            "/v1/feedback",
            Some(ADMIN_TOKEN),
            Some(json!({"events": events})),
        )
        .await;
        assert_eq!(
            reply.status,
            200,
            "{}",
            String::from_utf8_lossy(&reply.body)
        );
    }
    let frauds = rows.iter().filter(|t| t.fraud()).count() as u64;
    (rows.len() as u64, frauds)
}

async fn job(scorer: &Scorer, id: u64) -> Value {
    call(scorer, Method::GET, &format!("/v1/jobs/{id}"), None, None)
        .await
        .json()
        .unwrap()["job"]
        .clone()
}

/// Waits for job `id` to reach `status`.
async fn job_reaches(scorer: &Scorer, id: u64, status: &str, within: Duration) -> Value {
    let started = Instant::now();
    loop {
        let j = job(scorer, id).await;
        if j["status"] == status {
            return j;
        }
        assert!(
            started.elapsed() < within,
            "job {id} not {status} after {within:?}: {j:#}"
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}

fn rollout_template() -> Value {
    json!({"name": "fraud",
        "variants": [{"name": "stable", "weight": 100}, {"name": "canary", "weight": 0}],
        "steps": [{"weights": {"stable": 90, "canary": 10}, "hold_seconds": 3600},
                  {"weights": {"canary": 100}}]})
}

async fn versions(registry: &TempDir) -> Vec<(u64, Vec<String>)> {
    let r = AnyRegistry::open(registry.path().to_str().unwrap()).unwrap();
    r.list_versions("fraud")
        .await
        .unwrap()
        .into_iter()
        .map(|v| (v.version, v.aliases))
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_job_trains_registers_and_rolls_out_the_challenger() {
    let s = setup(4_000).await;
    admin(
        &s.scorer,
        Method::PUT,
        "/v1/models/fraud/retraining",
        json!({"labelled_window_seconds": 3600,
               "gate": {"min_pr_auc_gain": -0.05, "min_labelled": 500},
               "rollout": rollout_template()}),
    )
    .await;
    let before = call(&s.scorer, Method::GET, "/v1/rollouts/fraud", None, None)
        .await
        .json()
        .unwrap()["version"]
        .as_u64()
        .unwrap();
    let queued: Value = serde_json::from_str(&scorer_cli(
        &s.scorer,
        &["retrain", "--reason", "labels are in", "start", "fraud"],
    ))
    .unwrap();
    assert_eq!(
        (&queued["status"], &queued["trigger"]),
        (&json!("queued"), &json!("manual"))
    );
    let id = queued["id"].as_u64().unwrap();
    let done = job_reaches(&s.scorer, id, "succeeded", Duration::from_secs(90)).await;
    eprintln!("job: {}", done["outcome"]);
    assert_eq!(done["version"], 2, "{done:#}");
    assert_eq!(done["exit_code"], 0);
    assert!(done["log"].as_str().unwrap().len() > 10, "{done:#}");
    // Every labelled sample was exported, and both versions judged on all of them.
    let comparison = &done["comparison"];
    assert_eq!(comparison["labelled"], s.labelled.0, "{comparison}");
    assert_eq!(comparison["positives"], s.labelled.1, "{comparison}");
    assert_eq!(comparison["champion"]["version"], 1);
    assert_eq!(comparison["passed"], true, "{comparison}");
    let exported =
        std::fs::read_to_string(s.jobs.path().join(format!("job-{id}/data.csv"))).unwrap();
    assert_eq!(
        exported.lines().count() as u64,
        s.labelled.0 + 1,
        "a header and one line per sample"
    );
    let v = versions(&s.registry).await;
    assert_eq!(v.len(), 2);
    assert!(
        v.iter()
            .any(|(n, a)| *n == 1 && a.contains(&"champion".to_owned())),
        "{v:?}"
    );
    assert!(
        v.iter()
            .any(|(n, a)| *n == 2 && a.contains(&"challenger".to_owned())),
        "{v:?}"
    );

    // The policy's rollout, planned anew on the same name: champion on the baseline,
    // challenger on the candidate, versions going on from the old plan's.
    assert!(
        done["outcome"]
            .as_str()
            .unwrap()
            .ends_with("rollout `fraud` started"),
        "{done:#}"
    );
    let rollout = call(&s.scorer, Method::GET, "/v1/rollouts/fraud", None, None)
        .await
        .json()
        .unwrap();
    assert_eq!(rollout["version"].as_u64().unwrap(), before + 1);
    assert_eq!(rollout["status"], "progressing");
    assert_eq!(rollout["variants"][0]["model"], "models:/fraud/1");
    assert_eq!(rollout["variants"][1]["model"], "models:/fraud/2");
    assert_eq!(rollout["variants"][1]["weight"], 10.0);
    let events = call(
        &s.scorer,
        Method::GET,
        "/v1/rollouts/fraud/events",
        None,
        None,
    )
    .await
    .json()
    .unwrap();
    let created = events["events"].as_array().unwrap().last().unwrap().clone();
    assert_eq!(
        (&created["kind"], &created["actor"]),
        (&json!("created"), &json!("retraining"))
    );
    assert!(
        created["reason"]
            .as_str()
            .unwrap()
            .starts_with(&format!("retraining job {id} registered v2: ")),
        "{created}"
    );
    assert_eq!(created["details"]["previous"]["status"], "promoted");
    let table = scorer_cli(&s.scorer, &["retrain", "jobs", "fraud"]);
    assert!(
        table.contains("succeeded") && table.contains("manual") && table.contains("v2"),
        "{table}"
    );

    // Promoting the challenger's variant makes v2 the registry's champion.
    admin(
        &s.scorer,
        Method::POST,
        "/v1/rollouts/fraud/promote",
        json!({"reason": "v2 holds up"}),
    )
    .await;
    let v = versions(&s.registry).await;
    assert!(
        v.iter()
            .any(|(n, a)| *n == 2 && a == &["champion".to_owned()]),
        "{v:?}"
    );
    assert!(v.iter().any(|(n, a)| *n == 1 && a.is_empty()), "{v:?}");
    assert_eq!(
        scorer_metric(
            &s.scorer,
            "outrider_scorer_registry_promotions_total",
            &[("model", "fraud"), ("result", "ok")]
        )
        .await,
        2.0,
        "v1 when the setup promoted `stable`, v2 now"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_failing_command_alerts_and_changes_nothing_that_serves() {
    let s = setup(600).await;
    admin(
        &s.scorer,
        Method::PUT,
        "/v1/models/fraud/retraining",
        json!({"command": ["sh", "-c", "echo reading $OUTRIDER_DATA; echo training blew up >&2; exit 3"],
               "rollout": rollout_template()}),
    )
    .await;
    let rollout_before = call(&s.scorer, Method::GET, "/v1/rollouts/fraud", None, None)
        .await
        .json()
        .unwrap();
    let queued = admin(
        &s.scorer,
        Method::POST,
        "/v1/models/fraud/retrain",
        json!({"reason": "try"}),
    )
    .await;
    let id = queued["id"].as_u64().unwrap();
    let failed = job_reaches(&s.scorer, id, "failed", Duration::from_secs(30)).await;
    assert_eq!(failed["exit_code"], 3);
    assert_eq!(failed["outcome"], "the command exited with status 3");
    let log = failed["log"].as_str().unwrap();
    assert!(
        log.contains("training blew up") && log.contains("data.csv"),
        "{log}"
    );
    assert_eq!(versions(&s.registry).await.len(), 1, "nothing registered");
    let rollout_after = call(&s.scorer, Method::GET, "/v1/rollouts/fraud", None, None)
        .await
        .json()
        .unwrap();
    assert_eq!(rollout_after, rollout_before, "the rollout is untouched");
    eventually(Duration::from_secs(10), "the retraining alert", || async {
        let alerts = call(&s.scorer, Method::GET, "/v1/alerts?firing=true", None, None).await;
        alerts.json().unwrap()["alerts"]
            .as_array()
            .unwrap()
            .iter()
            .any(|a| {
                a["labels"]["alertname"] == "OutriderRetrainingFailed"
                    && a["labels"]["model"] == "fraud"
                    && a["labels"]["job"].as_str() == Some(id.to_string().as_str())
            })
    })
    .await;
    // A policy-less model and a second job while one is open are refused.
    let none = call(
        &s.scorer,
        Method::POST,
        "/v1/models/other/retrain",
        Some(ADMIN_TOKEN),
        None,
    )
    .await;
    assert_eq!(none.status, 404);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_scorer_killed_mid_job_takes_the_command_with_it_and_fails_the_job() {
    let mut s = setup(200).await;
    admin(
        &s.scorer,
        Method::PUT,
        "/v1/models/fraud/retraining",
        json!({"command": ["sh", "-c", "sleep 120 & echo $! > sleep.pid; echo $$ > pid; wait"],
               "timeout_seconds": 300}),
    )
    .await;
    let queued = admin(
        &s.scorer,
        Method::POST,
        "/v1/models/fraud/retrain",
        json!({}),
    )
    .await;
    let id = queued["id"].as_u64().unwrap();
    job_reaches(&s.scorer, id, "running", Duration::from_secs(10)).await;
    let pid_file = s.jobs.path().join(format!("job-{id}/pid"));
    eventually(Duration::from_secs(5), "the command's pid", || async {
        pid_file.exists()
    })
    .await;
    let pids: Vec<u32> = ["pid", "sleep.pid"]
        .iter()
        .map(|f| {
            let text =
                std::fs::read_to_string(s.jobs.path().join(format!("job-{id}/{f}"))).unwrap();
            text.trim().parse().unwrap()
        })
        .collect();
    assert!(pids.iter().all(|p| alive(*p)), "{pids:?}");
    let second = call(
        &s.scorer,
        Method::POST,
        "/v1/models/fraud/retrain",
        Some(ADMIN_TOKEN),
        None,
    )
    .await;
    assert_eq!(second.status, 409, "one job per model at a time");

    s.scorer.kill9();
    let gone = Instant::now();
    while pids.iter().any(|p| alive(*p)) {
        assert!(
            gone.elapsed() < Duration::from_secs(5),
            "the job's processes outlived their scorer"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    eprintln!(
        "the command and its child died {:?} after their scorer",
        gone.elapsed()
    );
    s.scorer.restart().await.unwrap();
    let failed = job_reaches(&s.scorer, id, "failed", Duration::from_secs(10)).await;
    assert_eq!(failed["outcome"], "the scorer running it restarted");
    // Never run again: the next job is a new one.
    let next = admin(
        &s.scorer,
        Method::POST,
        "/v1/models/fraud/retrain",
        json!({}),
    )
    .await;
    assert!(next["id"].as_u64().unwrap() > id);
    assert_eq!(job(&s.scorer, id).await["status"], "failed");
}

/// Whether a process runs (a zombie waiting to be reaped does not).
fn alive(pid: u32) -> bool {
    std::fs::read_to_string(format!("/proc/{pid}/stat"))
        .ok()
        .and_then(|stat| {
            stat.rsplit(')')
                .next()
                .map(|rest| rest.trim_start().starts_with('Z'))
        })
        .is_some_and(|zombie| !zombie)
}
