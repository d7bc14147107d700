//! `make demo`: the whole life of the fraud model on one machine, live.
//!
//! 1. v1 is trained and registered as champion; a model server follows
//!    `models:/fraud@champion` (variant `stable`) and another `@challenger` (`canary`),
//!    behind Envoy and the outrider filter; the scorer watches the traffic.
//! 2. Keyed transactions flow at a steady rate; their labels follow a few seconds later.
//! 3. Covariate drift (larger amounts, a merchant category never seen) raises the
//!    dataset drift finding; the retraining policy trains v2 on the labelled window,
//!    registers it as challenger (the canary server swaps to it), and starts a rollout:
//!    a shadow stage, then canary steps judged by the analysis, then promotion (v2
//!    becomes champion and the stable server swaps to it).
//! 4. A broken v3 is canaried; the filter's guardrail takes it to 0% and the scorer
//!    rolls the rollout back.
//!
//! Every figure of the view and the report is read from the scorer's API and Envoy's
//! stats during the run.

pub mod report;
pub mod setup;
pub mod traffic;
pub mod view;

use std::io::{IsTerminal, Write};
use std::path::PathBuf;
use std::time::{Duration, Instant};

use anyhow::{Result, bail};
use hyper::Method;
use outrider_harness::scorer::ADMIN_TOKEN;
use serde_json::Value;

use setup::call;
use view::Point;

/// What the command line sets.
#[derive(Debug, Clone)]
pub struct Settings {
    pub rate: u64,
    pub calm_seconds: u64,
    pub tail_seconds: u64,
    pub train_rows: usize,
    pub fraud_rate: f64,
    pub amount_scale: f64,
    pub new_category_share: f64,
    pub label_delay_seconds: u64,
    pub shadow_copies: u64,
    pub max_seconds: u64,
    pub bin_dir: PathBuf,
    pub out: PathBuf,
}

/// What the run collected, for the report.
pub struct Run {
    pub settings: Settings,
    pub points: Vec<Point>,
    /// (seconds since the start, phase) at each change of phase.
    pub phases: Vec<(f64, String)>,
    pub events: Value,
    pub drift: Value,
    pub performance: Value,
    pub jobs: Value,
    pub job_detail: Option<Value>,
    pub started_ms: u64,
    pub outcome: Result<(), String>,
    pub v1_report: Value,
    pub trained_in: f64,
    pub facts: Vec<String>,
    /// Seconds from the start of setup to the first reading.
    pub setup_seconds: f64,
}

fn now_ms() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_millis() as u64)
}

pub async fn run(settings: Settings) -> Result<PathBuf> {
    std::fs::create_dir_all(&settings.out)?;
    let tty = std::io::stdout().is_terminal();
    let say = |line: &str| println!("[setup] {line}");
    let started = Instant::now();
    let started_ms = now_ms();
    let mesh = setup::start(&settings, &settings.out, say).await?;
    let (calm, drifted) = traffic::rows(&settings)?;
    let live = traffic::Traffic::start(
        mesh.url.clone(),
        format!("{}/v1/feedback", mesh.scorer.url()),
        ADMIN_TOKEN.to_owned(),
        &settings,
        calm,
        drifted,
    );
    say(&format!(
        "live: {} req/s through Envoy (admin {}), scorer {}; the view follows",
        settings.rate,
        mesh.envoy.admin_url(),
        mesh.scorer.url()
    ));

    let mut run = Run {
        settings: settings.clone(),
        points: Vec::new(),
        phases: Vec::new(),
        events: Value::Null,
        drift: Value::Null,
        performance: Value::Null,
        jobs: Value::Null,
        job_detail: None,
        started_ms,
        outcome: Ok(()),
        v1_report: mesh.v1_report.clone(),
        trained_in: mesh.trained_in,
        facts: Vec::new(),
        setup_seconds: started.elapsed().as_secs_f64(),
    };
    let loop_started = Instant::now();
    let mut phase = "calm".to_owned();
    let mut phase_since = Instant::now();
    run.phases.push((0.0, phase.clone()));
    let mut v2_plan = None;
    let mut v3_plan = None;
    let mut done_at: Option<Instant> = None;
    let mut tick = tokio::time::interval(Duration::from_secs(1));
    let outcome: Result<()> = loop {
        tick.tick().await;
        let t = loop_started.elapsed().as_secs_f64();
        let (point, rollout) = match view::read(&mesh, t, &phase, &live.counters).await {
            Ok(read) => read,
            Err(e) => break Err(e),
        };
        let events = call(&mesh.scorer, Method::GET, "/v1/rollouts/fraud/events", None)
            .await
            .unwrap_or(Value::Null);
        let latest: Vec<String> = events["events"]
            .as_array()
            .map(|all| {
                all.iter()
                    .skip(all.len().saturating_sub(4))
                    .map(|e| {
                        format!(
                            "plan {} {:<12} by {:<10} {}",
                            e["version"],
                            e["kind"].as_str().unwrap_or(""),
                            e["actor"].as_str().unwrap_or(""),
                            e["reason"]
                                .as_str()
                                .unwrap_or("")
                                .chars()
                                .take(100)
                                .collect::<String>()
                        )
                    })
                    .collect()
            })
            .unwrap_or_default();

        // The phases move on what the scorer reports.
        let mut next: Option<&str> = None;
        match phase.as_str() {
            "calm" if phase_since.elapsed() >= Duration::from_secs(settings.calm_seconds) => {
                live.drifted
                    .store(true, std::sync::atomic::Ordering::Relaxed);
                run.facts.push(format!(
                    "covariate drift injected at t={t:.0}s: amounts x{}, {:.0}% at a merchant category never seen",
                    settings.amount_scale,
                    settings.new_category_share * 100.0
                ));
                next = Some("drift");
            }
            "drift" if point.job.is_some() => next = Some("retraining"),
            "retraining" => {
                if point.job.as_deref().is_some_and(|j| j.contains("failed")) {
                    break Err(anyhow::anyhow!(
                        "the retraining job failed: {:?}",
                        point.job
                    ));
                }
                if point.plan > 1 && point.status != "promoted" {
                    v2_plan = Some(point.plan);
                    next = Some(if point.status == "shadowing" {
                        "shadow"
                    } else {
                        "canary"
                    });
                }
            }
            "shadow" if point.status == "progressing" => next = Some("canary"),
            "shadow" | "canary"
                if v2_plan.is_some_and(|p| point.plan >= p) && point.status == "promoted" =>
            {
                next = Some("v2 promoted")
            }
            "shadow" | "canary" if ["rolled_back", "aborted"].contains(&point.status.as_str()) => {
                break Err(anyhow::anyhow!(
                    "the v2 rollout ended {}: {}",
                    point.status,
                    latest.last().cloned().unwrap_or_default()
                ));
            }
            "v2 promoted" if phase_since.elapsed() >= Duration::from_secs(5) => {
                match setup::admin(
                    &mesh.scorer,
                    Method::POST,
                    "/v1/rollouts",
                    setup::v3_rollout(),
                )
                .await
                {
                    Ok(created) => {
                        v3_plan = created["version"]
                            .as_u64()
                            .or(created["rollout"]["version"].as_u64())
                            .or(Some(point.plan + 1))
                    }
                    Err(e) => break Err(e),
                }
                next = Some("v3 canary");
            }
            "v3 canary"
                if v3_plan.is_some_and(|p| point.plan >= p) && point.status == "rolled_back" =>
            {
                next = Some("v3 rolled back")
            }
            "v3 canary"
                if v3_plan.is_some_and(|p| point.plan >= p) && point.status == "promoted" =>
            {
                break Err(anyhow::anyhow!("the broken v3 was promoted"));
            }
            "v3 rolled back"
                if phase_since.elapsed() >= Duration::from_secs(settings.tail_seconds) =>
            {
                done_at = Some(Instant::now());
            }
            _ => {}
        }
        let progress = format!(
            "[{}] {:.0}s of at most {}s; phases: calm > drift > retraining > shadow > canary > v2 promoted > v3 canary > v3 rolled back",
            phase, t, settings.max_seconds
        );
        let screen = view::render(&point, run.points.last(), &progress, &latest);
        if tty {
            print!("\x1b[2J\x1b[H{screen}");
        } else {
            println!(
                "t={:>4.0}s {:<14} plan {} {} step {} weights {} | {} | drift {} | firing {}",
                t,
                phase,
                point.plan,
                point.status,
                point.step.map_or("-".to_owned(), |s| (s + 1).to_string()),
                point
                    .variants
                    .iter()
                    .map(|(n, v)| format!("{n}={}", v.weight))
                    .collect::<Vec<_>>()
                    .join(" "),
                point.job.as_deref().unwrap_or("no job"),
                point
                    .drift_share
                    .iter()
                    .map(|(v, s)| format!("v{v}:{:.0}%", s * 100.0))
                    .collect::<Vec<_>>()
                    .join(" "),
                point.firing.len()
            );
        }
        std::io::stdout().flush()?;
        let _ = rollout;
        run.points.push(point);
        if let Some(next) = next {
            phase = next.to_owned();
            phase_since = Instant::now();
            run.phases.push((t, phase.clone()));
            if !tty {
                println!("---- phase: {phase} (t={t:.0}s)");
            }
        }
        if done_at.is_some() {
            break Ok(());
        }
        if started.elapsed() > Duration::from_secs(settings.max_seconds) {
            break Err(anyhow::anyhow!(
                "phase `{phase}` did not end within {} s",
                settings.max_seconds
            ));
        }
    };
    let counters = live.counters.clone();
    live.stop().await;

    // What the report draws from, read once at the end.
    let get = |path: &'static str| {
        let scorer = &mesh.scorer;
        async move {
            call(scorer, Method::GET, path, None)
                .await
                .unwrap_or(Value::Null)
        }
    };
    run.events = get("/v1/rollouts/fraud/events?limit=1000").await;
    run.drift = get("/v1/models/fraud/drift?limit=500").await;
    run.performance = get("/v1/models/fraud/performance?limit=500").await;
    run.jobs = get("/v1/models/fraud/jobs?limit=20").await;
    if let Some(id) = run.jobs["jobs"]
        .as_array()
        .and_then(|j| j.first())
        .and_then(|j| j["id"].as_u64())
    {
        run.job_detail = call(&mesh.scorer, Method::GET, &format!("/v1/jobs/{id}"), None)
            .await
            .ok()
            .map(|j| j["job"].clone());
    }
    run.outcome = outcome.as_ref().map(|_| ()).map_err(|e| format!("{e:#}"));
    for (name, value) in [
        ("events.json", &run.events),
        ("drift.json", &run.drift),
        ("performance.json", &run.performance),
        ("jobs.json", &run.jobs),
    ] {
        std::fs::write(settings.out.join(name), serde_json::to_vec_pretty(value)?)?;
    }
    std::fs::write(
        settings.out.join("points.json"),
        serde_json::to_vec_pretty(&run.points)?,
    )?;
    std::fs::write(settings.out.join("scorer.log"), mesh.scorer.log())?;
    std::fs::write(settings.out.join("envoy.log"), mesh.envoy.log())?;
    let report_path = settings.out.join("report.html");
    std::fs::write(&report_path, report::html(&run))?;
    println!(
        "\nsent {} requests ({} failed at the client), {} labels posted; the stand-in for v3 answered {} requests",
        counters.sent.load(std::sync::atomic::Ordering::Relaxed),
        counters.failed.load(std::sync::atomic::Ordering::Relaxed),
        counters
            .labels_posted
            .load(std::sync::atomic::Ordering::Relaxed),
        mesh.broken.requests()
    );
    if let Err(e) = outcome {
        let log = mesh.scorer.log();
        let tail: Vec<&str> = log.lines().rev().take(30).collect();
        eprintln!(
            "--- the scorer's log (last lines) ---\n{}",
            tail.into_iter().rev().collect::<Vec<_>>().join("\n")
        );
        println!("report (of the incomplete run): {}", report_path.display());
        bail!(e);
    }
    Ok(report_path)
}
