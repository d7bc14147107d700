//! Sends alerts: on the replica that holds the decision lock, every few seconds, the
//! alerts of every rollout ([`crate::alerts`]) are compared with those firing before.
//! A new one is stored and sent to the webhooks; one that cleared is stored resolved,
//! sent to the webhooks, and to Alertmanager with its end. Alertmanager gets every
//! firing alert again every [`RESEND_MS`], with an end ahead of it, as Prometheus does,
//! so an alert resolves by itself if the scorer stops sending. A replica that takes
//! the lead reads what was firing from the store, so no resolution is lost to a
//! failover. On the same tick every replica sets its rollout gauges in `/metrics`.

use std::collections::BTreeMap;
use std::sync::atomic::Ordering;
use std::time::Duration;

use tokio::sync::watch;

use crate::alerts::{
    Alert, Facts, ModelFacts, active, active_for_model, for_alertmanager, webhook_body,
};
use crate::api::{AppState, now_ms};
use crate::metrics::NotifyLabels;
use crate::monitor::findings::{Finding, FindingKey, FindingKind};
use crate::monitor::judge::WindowReport;
use crate::monitor::realised::RealisedPerformance;
use crate::retrain::Job;
use crate::rollout::{Event, Rollout};
use crate::shadow_report::{ShadowReport, reports};
use crate::store::{StoreError, StoredAlert};

const TICK: Duration = Duration::from_secs(2);
/// How often a firing alert is sent to Alertmanager again.
pub const RESEND_MS: u64 = 30_000;
/// How far ahead the end of a firing alert is set.
const ENDS_AHEAD_MS: u64 = 4 * RESEND_MS;

/// An alert firing, and what is still owed for it.
struct Firing {
    alert: Alert,
    sent_to_alertmanager_ms: u64,
    /// Webhooks that have not taken its firing yet.
    webhooks_owed: Vec<String>,
}

pub async fn run(app: AppState, mut shutdown: watch::Receiver<bool>) {
    let http = match reqwest::Client::builder()
        .timeout(Duration::from_secs(2))
        .build()
    {
        Ok(c) => c,
        Err(e) => {
            tracing::error!(error = %e, "no HTTP client for alerts");
            return;
        }
    };
    let mut tick = tokio::time::interval(TICK);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    let mut firing: Option<BTreeMap<String, Firing>> = None;
    // Resolutions whose webhooks failed, tried again each tick.
    let mut owed: Vec<(String, serde_json::Value)> = Vec::new();
    loop {
        tokio::select! {
            _ = tick.tick() => {}
            _ = shutdown.changed() => break,
        }
        let snapshot = match snapshot(&app).await {
            Ok(s) => s,
            Err(e) => {
                tracing::warn!(error = %e, "cannot read the rollouts and models");
                continue;
            }
        };
        // Every replica shows the rollouts' state in its /metrics.
        if let Err(e) = observe(&app, &snapshot).await {
            tracing::warn!(error = %e, "cannot read rollouts for the metrics");
        }
        if !app.leading.load(Ordering::Relaxed) {
            firing = None;
            continue;
        }
        let state = match firing.as_mut() {
            Some(s) => s,
            None => match load_firing(&app).await {
                Ok(s) => firing.insert(s),
                Err(e) => {
                    tracing::warn!(error = %e, "cannot read the alerts that were firing");
                    continue;
                }
            },
        };
        if let Err(e) = evaluate(&app, &http, &snapshot, state, &mut owed).await {
            tracing::warn!(error = %e, "alerts could not be evaluated");
        }
        let mut still = Vec::new();
        for (url, body) in owed.drain(..) {
            if !post(&app, &http, "webhook", &url, &body).await {
                still.push((url, body));
            }
        }
        owed = still;
    }
}

/// What one tick reads from the store: the metrics of every replica and the alerts of
/// the leader are made from the same reading.
struct Snapshot {
    /// Each rollout with its latest event and its shadows' reports.
    rollouts: Vec<(Rollout, Option<Event>, Vec<ShadowReport>)>,
    /// Each model with a retraining policy, and its newest job.
    jobs: Vec<(String, Option<Job>)>,
    /// The latest window of each watched version.
    windows: Vec<WindowReport>,
    /// Each version's labelled window.
    realised: Vec<RealisedPerformance>,
}

async fn snapshot(app: &AppState) -> Result<Snapshot, StoreError> {
    let mut rollouts = Vec::new();
    for rollout in app.store.rollouts().await? {
        let last_event = app.store.last_event(&rollout.name).await?;
        let windows = app
            .store
            .shadow_windows(&rollout.name, 0, u64::MAX / 2)
            .await?;
        let shadows = reports(&windows, &rollout.shadow_gate);
        rollouts.push((rollout, last_event, shadows));
    }
    let mut jobs = Vec::new();
    for (model, _) in app.store.policies().await? {
        let newest = app.store.jobs(&model, 1).await?.pop().map(|s| s.job);
        jobs.push((model, newest));
    }
    Ok(Snapshot {
        rollouts,
        jobs,
        windows: app.store.latest_drift_windows().await?,
        realised: app.store.realised().await?,
    })
}

async fn observe(app: &AppState, now: &Snapshot) -> Result<(), StoreError> {
    app.metrics
        .model
        .monitoring
        .set(i64::from(app.monitor.off().is_none()));
    // The findings as the alerts see them: after each version's latest window, and on
    // its labelled window.
    type Judged = (Vec<FindingKey>, Vec<Finding>);
    let mut findings: BTreeMap<(String, u64), Judged> = BTreeMap::new();
    let key = |kind, subject: &str| FindingKey {
        kind,
        subject: subject.to_owned(),
    };
    for window in &now.windows {
        app.metrics.observe_model(window);
        let (candidates, held) = findings
            .entry((window.model.clone(), window.version))
            .or_default();
        for f in &window.features {
            candidates.push(key(FindingKind::FeatureDrift, &f.name));
            candidates.push(key(FindingKind::FeatureMissing, &f.name));
        }
        candidates.push(key(FindingKind::FeatureMissing, &window.prediction.name));
        candidates.push(key(FindingKind::PredictionDrift, ""));
        candidates.push(key(FindingKind::DatasetDrift, ""));
        if window.performance.is_some() {
            candidates.push(key(FindingKind::EstimatedPerformanceDrop, "precision"));
            candidates.push(key(FindingKind::EstimatedPerformanceDrop, "recall"));
        }
        held.extend(window.findings.iter().cloned());
    }
    for performance in &now.realised {
        app.metrics.observe_realised(performance);
        let (candidates, held) = findings
            .entry((performance.model.clone(), performance.version))
            .or_default();
        candidates.push(key(FindingKind::RealisedPerformanceDrop, "precision"));
        candidates.push(key(FindingKind::RealisedPerformanceDrop, "recall"));
        held.extend(performance.findings.iter().cloned());
    }
    for ((model, version), (candidates, held)) in &findings {
        app.metrics
            .observe_findings(model, *version, candidates, held);
    }
    for (rollout, last_event, shadows) in &now.rollouts {
        let last = match rollout.analysis {
            Some(_) => app.store.runs(&rollout.name, 1).await?.pop(),
            None => None,
        };
        app.metrics.observe(rollout, last.as_ref());
        app.metrics
            .observe_alert_facts(rollout, last_event.as_ref(), shadows);
    }
    for (model, newest) in &now.jobs {
        app.metrics.observe_latest_job(model, newest.as_ref());
    }
    Ok(())
}

async fn load_firing(app: &AppState) -> Result<BTreeMap<String, Firing>, StoreError> {
    Ok(app
        .store
        .alerts(0, true)
        .await?
        .into_iter()
        .map(|s| {
            let alert = Alert {
                labels: s.labels,
                annotations: s.annotations,
                starts_ms: s.starts_ms,
            };
            (
                s.fingerprint,
                Firing {
                    alert,
                    sent_to_alertmanager_ms: 0,
                    webhooks_owed: Vec::new(),
                },
            )
        })
        .collect())
}

/// Every alert that holds now, over every rollout.
fn current(app: &AppState, now: &Snapshot) -> BTreeMap<String, Alert> {
    let mut out = BTreeMap::new();
    for (rollout, last_event, shadows) in &now.rollouts {
        let facts = Facts {
            rollout,
            last_event: last_event.as_ref(),
            shadows,
        };
        for alert in active(&facts, &app.config.runbook_url) {
            out.insert(alert.fingerprint(), alert);
        }
    }
    for (_, newest) in &now.jobs {
        for alert in crate::alerts::job_alerts(newest.as_ref(), &app.config.runbook_url) {
            out.insert(alert.fingerprint(), alert);
        }
    }
    // The monitor's findings: after each version's latest window, and on its
    // labelled window.
    let mut findings: BTreeMap<(&str, u64), Vec<Finding>> = BTreeMap::new();
    for w in &now.windows {
        findings
            .entry((&w.model, w.version))
            .or_default()
            .extend(w.findings.iter().cloned());
    }
    for p in &now.realised {
        findings
            .entry((&p.model, p.version))
            .or_default()
            .extend(p.findings.iter().cloned());
    }
    for ((model, version), findings) in &findings {
        let facts = ModelFacts {
            model,
            version: *version,
            findings,
        };
        for alert in active_for_model(&facts, &app.config.runbook_url) {
            out.insert(alert.fingerprint(), alert);
        }
    }
    out
}

fn stored(fingerprint: &str, alert: &Alert, ends_ms: Option<u64>) -> StoredAlert {
    StoredAlert {
        fingerprint: fingerprint.to_owned(),
        status: if ends_ms.is_some() {
            "resolved"
        } else {
            "firing"
        }
        .to_owned(),
        starts_ms: alert.starts_ms,
        ends_ms,
        labels: alert.labels.clone(),
        annotations: alert.annotations.clone(),
    }
}

fn generator_url(app: &AppState, alert: &Alert) -> String {
    if let Some(job) = alert.labels.get("job") {
        return format!("{}/v1/jobs/{job}", app.config.external_url);
    }
    if let Some(model) = alert.labels.get("model") {
        return format!("{}/v1/models/{model}/drift", app.config.external_url);
    }
    let rollout = alert.labels.get("rollout").map_or("", String::as_str);
    format!("{}/v1/rollouts/{rollout}/events", app.config.external_url)
}

async fn evaluate(
    app: &AppState,
    http: &reqwest::Client,
    snapshot: &Snapshot,
    firing: &mut BTreeMap<String, Firing>,
    owed: &mut Vec<(String, serde_json::Value)>,
) -> Result<(), StoreError> {
    let now = now_ms();
    let holds = current(app, snapshot);
    let external = app.config.external_url.clone();
    // Cleared: resolved everywhere.
    let cleared: Vec<String> = firing
        .keys()
        .filter(|f| !holds.contains_key(*f))
        .cloned()
        .collect();
    for fingerprint in cleared {
        let Some(gone) = firing.remove(&fingerprint) else {
            continue;
        };
        let alert = gone.alert;
        app.store
            .put_alert(&stored(&fingerprint, &alert, Some(now)))
            .await?;
        tracing::info!(alert = alert.name(), rollout = ?alert.labels.get("rollout"), "alert resolved");
        let generator = generator_url(app, &alert);
        let body = serde_json::Value::Array(vec![for_alertmanager(&alert, now, &generator)]);
        for url in &app.config.alertmanager_urls {
            post(
                app,
                http,
                "alertmanager",
                &format!("{url}/api/v2/alerts"),
                &body,
            )
            .await;
        }
        let hook = webhook_body(&alert, Some(now), &generator, &external);
        for url in &app.config.alert_webhook_urls {
            if !post(app, http, "webhook", url, &hook).await {
                owed.push((url.clone(), hook.clone()));
            }
        }
    }
    // New: stored, and owed to every webhook.
    for (fingerprint, alert) in holds {
        if firing.contains_key(&fingerprint) {
            continue;
        }
        app.store
            .put_alert(&stored(&fingerprint, &alert, None))
            .await?;
        tracing::warn!(alert = alert.name(), rollout = ?alert.labels.get("rollout"), summary = ?alert.annotations.get("summary"), "alert firing");
        firing.insert(
            fingerprint,
            Firing {
                alert,
                sent_to_alertmanager_ms: 0,
                webhooks_owed: app.config.alert_webhook_urls.clone(),
            },
        );
    }
    // Firing: to Alertmanager again when due, to webhooks still owed.
    for f in firing.values_mut() {
        let generator = generator_url(app, &f.alert);
        if now >= f.sent_to_alertmanager_ms + RESEND_MS && !app.config.alertmanager_urls.is_empty()
        {
            let body = serde_json::Value::Array(vec![for_alertmanager(
                &f.alert,
                now + ENDS_AHEAD_MS,
                &generator,
            )]);
            let mut all = true;
            for url in &app.config.alertmanager_urls {
                all &= post(
                    app,
                    http,
                    "alertmanager",
                    &format!("{url}/api/v2/alerts"),
                    &body,
                )
                .await;
            }
            if all {
                f.sent_to_alertmanager_ms = now;
            }
        }
        if !f.webhooks_owed.is_empty() {
            let hook = webhook_body(&f.alert, None, &generator, &external);
            let mut still = Vec::new();
            for url in f.webhooks_owed.drain(..) {
                if !post(app, http, "webhook", &url, &hook).await {
                    still.push(url);
                }
            }
            f.webhooks_owed = still;
        }
    }
    Ok(())
}

/// Posts JSON; true on a 2xx. Failures are logged and counted, never fatal.
async fn post(
    app: &AppState,
    http: &reqwest::Client,
    sink: &'static str,
    url: &str,
    body: &serde_json::Value,
) -> bool {
    let ok = match http.post(url).json(body).send().await {
        Ok(r) if r.status().is_success() => true,
        Ok(r) => {
            tracing::warn!(%url, status = %r.status(), "alert not taken");
            false
        }
        Err(e) => {
            tracing::warn!(%url, error = %e, "alert not sent");
            false
        }
    };
    app.metrics
        .alert_notifications
        .get_or_create(&NotifyLabels {
            sink: sink.to_owned(),
            result: if ok { "sent" } else { "failed" }.to_owned(),
        })
        .inc();
    ok
}
