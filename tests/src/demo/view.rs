//! What the demo reads every second (the scorer's API and Envoy's stats), and the live
//! terminal view of it.

use std::collections::BTreeMap;
use std::fmt::Write as _;

use anyhow::Result;
use hyper::Method;
use outrider_harness::admin_stats::RolloutFigures;
use serde::Serialize;
use serde_json::Value;

use super::setup::{Mesh, call};
use super::traffic::Counters;

/// One variant's figures at one moment, from Envoy's stats.
#[derive(Debug, Clone, Default, Serialize)]
pub struct VariantPoint {
    /// The weight the scorer's rollout gives it (percent).
    pub weight: f64,
    /// Cumulative requests and 5xx answers (Envoy's counters).
    pub requests: u64,
    pub errors_5xx: u64,
    /// p99 latency over Envoy's last stats flush (ms).
    pub p99_ms: Option<f64>,
    /// Shadow copies answered so far.
    pub shadow_copies: u64,
}

/// One reading of the whole system.
#[derive(Debug, Clone, Default, Serialize)]
pub struct Point {
    pub t: f64,
    pub phase: String,
    pub status: String,
    pub plan: u64,
    pub step: Option<u64>,
    pub variants: BTreeMap<String, VariantPoint>,
    /// The newest judged window's share of drifted features, per model version.
    pub drift_share: BTreeMap<u64, f64>,
    pub job: Option<String>,
    pub firing: Vec<String>,
    pub sent: u64,
    pub labels: u64,
}

pub async fn read(mesh: &Mesh, t: f64, phase: &str, counters: &Counters) -> Result<(Point, Value)> {
    use std::sync::atomic::Ordering::Relaxed;
    let rollout = call(&mesh.scorer, Method::GET, "/v1/rollouts/fraud", None).await?;
    let stats: Value = serde_json::from_str(
        &mesh
            .envoy
            .admin_get("/stats?format=json&filter=outrider")
            .await?,
    )?;
    let figures = RolloutFigures::from_admin_json(&stats, "fraud");
    let drift = call(
        &mesh.scorer,
        Method::GET,
        "/v1/models/fraud/drift?limit=1",
        None,
    )
    .await?;
    let jobs = call(
        &mesh.scorer,
        Method::GET,
        "/v1/models/fraud/jobs?limit=5",
        None,
    )
    .await?;
    let alerts = call(&mesh.scorer, Method::GET, "/v1/alerts?firing=true", None).await?;
    let mut point = Point {
        t,
        phase: phase.to_owned(),
        status: rollout["status"].as_str().unwrap_or("?").to_owned(),
        plan: rollout["version"].as_u64().unwrap_or(0),
        step: rollout["step"].as_u64(),
        sent: counters.sent.load(Relaxed),
        labels: counters.labels_posted.load(Relaxed),
        ..Point::default()
    };
    for v in rollout["variants"].as_array().into_iter().flatten() {
        if let Some(name) = v["name"].as_str() {
            point.variants.entry(name.to_owned()).or_default().weight =
                v["weight"].as_f64().unwrap_or(0.0);
        }
    }
    for (name, f) in &figures.variants {
        let p = point.variants.entry(name.clone()).or_default();
        p.requests = f.requests;
        p.errors_5xx = f.classes[3];
        p.p99_ms = f.interval_p99_ms.filter(|v| v.is_finite());
    }
    for stat in stats["stats"].as_array().into_iter().flatten() {
        let (Some(name), Some(value)) = (stat["name"].as_str(), stat["value"].as_u64()) else {
            continue;
        };
        if name.contains("outrider.shadow_mirrored_total")
            && let Some(variant) = name.split('.').find_map(|s| s.strip_prefix("variant="))
        {
            point
                .variants
                .entry(variant.to_owned())
                .or_default()
                .shadow_copies += value;
        }
    }
    for v in drift["versions"].as_array().into_iter().flatten() {
        if let (Some(version), Some(share)) = (
            v["version"].as_u64(),
            v["latest"]["dataset"]["share"].as_f64(),
        ) {
            point.drift_share.insert(version, share);
        }
    }
    point.job = jobs["jobs"].as_array().and_then(|j| j.last()).map(|j| {
        format!(
            "job {} {} ({}){}",
            j["id"],
            j["status"].as_str().unwrap_or("?"),
            j["trigger"].as_str().unwrap_or("?"),
            j["version"]
                .as_u64()
                .map(|v| format!(" -> v{v}"))
                .unwrap_or_default()
        )
    });
    point.firing = alerts["alerts"]
        .as_array()
        .into_iter()
        .flatten()
        .filter_map(|a| {
            let l = &a["labels"];
            let name = l["alertname"].as_str()?;
            let subject = l["feature"]
                .as_str()
                .or(l["metric"].as_str())
                .or(l["variant"].as_str());
            Some(match subject {
                Some(s) => format!("{name}({s})"),
                None => name.to_owned(),
            })
        })
        .collect();
    Ok((point, rollout))
}

/// The live view of the newest reading, with the rates since the one before.
pub fn render(
    now: &Point,
    before: Option<&Point>,
    progress: &str,
    latest_events: &[String],
) -> String {
    let mut out = String::new();
    let step = now.step.map_or("-".to_owned(), |s| format!("{}", s + 1));
    let _ = writeln!(
        out,
        "outrider demo  t={:>4.0}s  phase: {}\nrollout fraud  plan {}  status {}  step {}",
        now.t, now.phase, now.plan, now.status, step
    );
    let _ = writeln!(
        out,
        "\n{:<8} {:>7} {:>8} {:>6} {:>9} {:>8} {:>8}",
        "variant", "weight", "req/s", "5xx/s", "requests", "p99 ms", "shadow"
    );
    let dt = before.map_or(1.0, |b| (now.t - b.t).max(0.1));
    for (name, v) in &now.variants {
        let prev = before.and_then(|b| b.variants.get(name));
        let rate =
            |now: u64, prev: Option<u64>| (now.saturating_sub(prev.unwrap_or(now))) as f64 / dt;
        let _ = writeln!(
            out,
            "{:<8} {:>6.1}% {:>8.1} {:>6.1} {:>9} {:>8} {:>8}",
            name,
            v.weight,
            rate(v.requests, prev.map(|p| p.requests)),
            rate(v.errors_5xx, prev.map(|p| p.errors_5xx)),
            v.requests,
            v.p99_ms.map_or("-".to_owned(), |p| format!("{p:.1}")),
            v.shadow_copies
        );
    }
    let drift: Vec<String> = now
        .drift_share
        .iter()
        .map(|(v, s)| format!("v{v} {:.0}%", s * 100.0))
        .collect();
    let _ = writeln!(
        out,
        "\ndrifted features (latest window): {}\nretraining: {}\nfiring: {}\nsent {} requests, {} labels posted",
        if drift.is_empty() {
            "-".to_owned()
        } else {
            drift.join(", ")
        },
        now.job.as_deref().unwrap_or("none yet"),
        if now.firing.is_empty() {
            "none".to_owned()
        } else {
            now.firing.join(", ")
        },
        now.sent,
        now.labels
    );
    let _ = writeln!(out, "\nlatest decisions:");
    for e in latest_events {
        let _ = writeln!(out, "  {e}");
    }
    let _ = writeln!(out, "\n{progress}");
    out
}
