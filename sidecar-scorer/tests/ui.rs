//! The dashboard at `/ui` in a real headless browser (Debian's chromium, driven over the
//! DevTools protocol by `outrider_harness::browser`), showing a canary under analysis
//! on real Envoy with the filter, stand-in models and keyed traffic: the page loads with
//! no error logged, shows the figures the API gives (status, step, version, weights,
//! analysis runs and the last run's outcome and checks, the deciding event, per-variant
//! request counts), follows a pause and a weight change made through the API within
//! 5 s, and is kept as a screenshot in `target/test-artifacts/ui-rollout.png`.

mod common;

use std::time::{Duration, Instant};

use common::canary::*;
use common::*;
use hyper::Method;
use outrider_harness::browser::{Browser, LogMessage};
use outrider_harness::load::Traffic;
use outrider_harness::paths;
use outrider_harness::scorer::Scorer;
use serde_json::{Value, json};

/// How soon the page must show a change made through the API.
const FOLLOWS_WITHIN: Duration = Duration::from_secs(5);

/// What the rollout's page shows, read from its `data-` attributes.
const DETAIL: &str = r#"(() => {
  const q = (sel) => document.querySelector(sel);
  const head = q('#rollout');
  const runs = q('[data-field=analysis-runs]');
  if (!head || !runs || document.body.dataset.state !== 'live') return null;
  const value = (sel) => { const el = q(sel); return el ? el.dataset.value : null; };
  return {
    status: head.querySelector('[data-field=status]').dataset.value,
    step: head.querySelector('[data-field=step]').dataset.value,
    version: Number(head.querySelector('[data-field=version]').dataset.value),
    weights: Object.fromEntries([...document.querySelectorAll('[data-panel=weights] [data-weight-of]')]
      .map((e) => [e.dataset.weightOf, Number(e.dataset.value)])),
    runs: Number(runs.dataset.value),
    last_outcome: value('[data-field=last-run-outcome]'),
    last_checks: [...document.querySelectorAll('[data-panel=analysis] table.checks tbody tr')]
      .map((tr) => [tr.dataset.check, tr.dataset.outcome]),
    decision: q('[data-field=decision-reason]') ? q('[data-field=decision-reason]').textContent : null,
    events: [...document.querySelectorAll('[data-panel=timeline] table.timeline > tbody > tr')].map((tr) =>
      [Number(tr.dataset.eventVersion), tr.dataset.kind, tr.dataset.actor, tr.querySelector('[data-field=reason]').textContent]),
    from_ms: Number(q('table.traffic-totals').dataset.telemetryFromMs),
    requests: Object.fromEntries([...document.querySelectorAll('table.traffic-totals tr[data-variant]')]
      .map((tr) => [tr.dataset.variant, Number(tr.querySelector('[data-field=requests]').dataset.value)])),
    charts: [...document.querySelectorAll('figure.chart')].map((f) => f.dataset.chart),
    drift: q('[data-panel=drift] [data-state]')?.dataset.state,
    performance: q('[data-panel=performance] [data-state]')?.dataset.state,
    jobs: q('[data-panel=jobs]') ? q('[data-panel=jobs]').textContent : null,
  };
})()"#;

/// The rollouts list's row of `fraud`.
const LIST_ROW: &str = r#"(() => {
  const row = document.querySelector('tr[data-rollout="fraud"]');
  if (!row || document.body.dataset.state !== 'live') return null;
  return {
    status: row.querySelector('[data-field=status]').dataset.value,
    step: row.querySelector('[data-field=step]').dataset.value,
    weights: Object.fromEntries([...row.querySelectorAll('[data-weight-of]')]
      .map((e) => [e.dataset.weightOf, Number(e.dataset.value)])),
  };
})()"#;

/// A canary at 10%, then 50% (held), each step judged every 5 s; the variants name
/// the model versions they serve.
async fn create(scorer: &Scorer) {
    admin(
        scorer,
        Method::POST,
        "/v1/rollouts",
        json!({
            "name": "fraud",
            "variants": [{"name": "stable", "weight": 90, "model": "models:/fraud/1"},
                         {"name": "canary", "weight": 10, "model": "models:/fraud/2"}],
            "steps": [
                {"weights": {"stable": 90, "canary": 10}},
                {"weights": {"stable": 50, "canary": 50}, "hold_seconds": 600},
                {"weights": {"stable": 0, "canary": 100}}
            ],
            "analysis": {
                "interval_seconds": 5,
                "min_requests": 20,
                "checks": [
                    {"metric": "error_rate", "max": 0.05},
                    {"metric": "latency_p99_ms", "max": 150},
                    {"metric": "prediction_ks", "max": 0.25, "min_samples": 20},
                    {"metric": "judge", "dry_run": true}
                ]
            },
            "reason": "fraud model v2"
        }),
    )
    .await;
}

async fn read(scorer: &Scorer, path: &str) -> Value {
    let reply = call(scorer, Method::GET, path, None, None).await;
    assert_eq!(reply.status, 200, "{path}");
    reply.json().unwrap()
}

/// The figures the page must show, from the API.
async fn expected(scorer: &Scorer) -> Value {
    let rollout = rollout(scorer).await;
    let analysis = read(scorer, "/v1/rollouts/fraud/analysis").await;
    let runs = analysis["runs"].as_array().unwrap();
    let last = runs.last();
    let weights: serde_json::Map<String, Value> = rollout["variants"]
        .as_array()
        .unwrap()
        .iter()
        .map(|v| (v["name"].as_str().unwrap().to_owned(), v["weight"].clone()))
        .collect();
    let step = match rollout["step"].as_u64() {
        Some(i) => i.to_string(),
        None => "none".into(),
    };
    let events = events(scorer).await;
    let decision = events
        .iter()
        .rev()
        .find(|e| e["actor"] == "controller" || e["actor"] == "analysis")
        .map(|e| e["reason"].clone())
        .unwrap_or(Value::Null);
    json!({
        "status": rollout["status"],
        "step": step,
        "version": rollout["version"],
        "weights": weights,
        "runs": runs.len(),
        "last_outcome": last.map_or(json!("none"), |r| r["outcome"].clone()),
        "last_checks": last.map_or(json!([]), |r| Value::Array(r["checks"].as_array().unwrap()
            .iter().map(|c| json!([c["name"], c["outcome"]])).collect())),
        "decision": decision,
        "events": events.iter().rev().map(|e| json!([e["version"], e["kind"], e["actor"], e["reason"]])).collect::<Vec<_>>(),
    })
}

/// The same JSON with every number as a float: the page reads weights as numbers that
/// JSON writes as integers (90), the API writes them as floats (90.0).
fn numbers_as_floats(value: &Value) -> Value {
    match value {
        Value::Number(n) => json!(n.as_f64().unwrap()),
        Value::Array(items) => Value::Array(items.iter().map(numbers_as_floats).collect()),
        Value::Object(map) => Value::Object(
            map.iter()
                .map(|(k, v)| (k.clone(), numbers_as_floats(v)))
                .collect(),
        ),
        other => other.clone(),
    }
}

/// The page's figures that the API also gives.
fn shown(page: &Value) -> Value {
    let mut out = json!({});
    for key in [
        "status",
        "step",
        "version",
        "weights",
        "runs",
        "last_outcome",
        "last_checks",
        "decision",
        "events",
    ] {
        out[key] = page[key].clone();
    }
    numbers_as_floats(&out)
}

/// Waits until the page shows what the API says (both change while the canary runs,
/// so each look reads the page, then the API, until they agree).
async fn page_agrees_with_api(browser: &Browser, scorer: &Scorer, within: Duration) -> Value {
    let deadline = Instant::now() + within;
    loop {
        let page = browser.eval(DETAIL).await.unwrap();
        let api = numbers_as_floats(&expected(scorer).await);
        if !page.is_null() && shown(&page) == api {
            return page;
        }
        assert!(
            Instant::now() < deadline,
            "after {within:?} the page shows\n{:#}\nwhile the API says\n{api:#}",
            shown(&page)
        );
        tokio::time::sleep(Duration::from_millis(250)).await;
    }
}

/// How long the page took to show what `expression` tests, after a change at `since`.
async fn follows(browser: &Browser, expression: &str, since: Instant) -> Duration {
    browser
        .wait_for(expression, FOLLOWS_WITHIN.saturating_sub(since.elapsed()))
        .await
        .unwrap_or_else(|e| panic!("the page did not follow the change: {e:#}"));
    since.elapsed()
}

/// A 404 of the model monitor's endpoints, which the page shows as "not available":
/// the browser logs every failed load, and this one is an answer the page expects.
fn absent_model_monitor(m: &LogMessage) -> bool {
    m.source == "network"
        && m.text.contains("404")
        && m.url.as_deref().is_some_and(|u| {
            u.ends_with("/v1/models/fraud/drift") || u.ends_with("/v1/models/fraud/performance")
        })
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_dashboard_shows_a_running_canary_as_the_api_does_and_follows_its_changes() {
    // The browser first: without it, nothing else is worth starting.
    let browser = Browser::start()
        .await
        .unwrap_or_else(|e| panic!("no headless browser: {e:#}"));
    let backend = Backend::sqlite();
    let scorer = start_scorer(&backend, "ui").await;
    let mesh = mesh(&scorer, echo(0), echo(0)).await;
    create(&scorer).await;
    let traffic = Traffic::start(mesh.url.clone(), 100);

    // The canary is stepped to 50% on a passed run, and judged again there.
    eventually(
        Duration::from_secs(40),
        "a step by the analysis",
        || async { events(&scorer).await.iter().any(|e| e["kind"] == "step") },
    )
    .await;
    eventually(Duration::from_secs(20), "two analysis runs", || async {
        runs(&scorer).await.len() >= 2
    })
    .await;

    // The list of rollouts.
    let base = scorer.url();
    browser.goto(&format!("{base}/ui")).await.unwrap();
    let row = browser
        .wait_for(LIST_ROW, Duration::from_secs(10))
        .await
        .unwrap();
    let listed = rollout(&scorer).await;
    assert_eq!(row["status"], listed["status"], "{row}");
    assert_eq!(
        row["weights"]["canary"].as_f64(),
        listed["variants"][1]["weight"].as_f64(),
        "{row}"
    );
    assert_eq!(
        row["step"],
        json!(
            listed["step"]
                .as_u64()
                .map_or("none".to_owned(), |s| s.to_string())
        ),
        "{row}"
    );
    browser
        .screenshot(&paths::repo_root().join("target/test-artifacts/ui-rollouts.png"))
        .await
        .unwrap();

    // The rollout's page, through the list's link.
    browser
        .eval(r#"document.querySelector('tr[data-rollout="fraud"] a').click()"#)
        .await
        .unwrap();
    browser
        .wait_for(
            "location.pathname === '/ui/rollouts/fraud' && !!document.querySelector('#rollout')",
            Duration::from_secs(10),
        )
        .await
        .unwrap();
    let page = page_agrees_with_api(&browser, &scorer, Duration::from_secs(10)).await;
    eprintln!("the page agrees with the API: {:#}", shown(&page));
    assert_eq!(page["status"], "progressing");
    assert_eq!(page["step"], "1", "stepped to 50% by the analysis");
    assert!(page["runs"].as_u64().unwrap() >= 2, "{page}");
    assert!(
        page["decision"]
            .as_str()
            .is_some_and(|r| r.contains("analysis: ")),
        "the step's reason, with its run: {page}"
    );
    let charts: Vec<&str> = page["charts"]
        .as_array()
        .unwrap()
        .iter()
        .filter_map(Value::as_str)
        .collect();
    for chart in [
        "weights",
        "rate",
        "5xx",
        "p99",
        "check-error_rate-canary",
        "check-latency_p99_ms-canary",
        "check-prediction_ks-canary",
    ] {
        assert!(charts.contains(&chart), "no chart {chart}: {charts:?}");
    }
    // The variants name model versions, so the monitor's endpoints answer (this scorer
    // runs without a registry, which their answers say); the jobs are read.
    assert_eq!(page["drift"], "available", "{page}");
    assert_eq!(page["performance"], "available", "{page}");
    assert!(
        page["jobs"]
            .as_str()
            .is_some_and(|t| t.contains("No retraining job yet")),
        "{page}"
    );

    // A pause through the API shows within 5 s, with who and why on the timeline.
    let paused_at = Instant::now();
    admin(
        &scorer,
        Method::POST,
        "/v1/rollouts/fraud/pause",
        json!({"actor": "ui-test", "reason": "looking at the dashboard"}),
    )
    .await;
    let took = follows(
        &browser,
        "document.querySelector('#rollout [data-field=status]')?.dataset.value === 'paused'",
        paused_at,
    )
    .await;
    eprintln!("the pause showed after {took:?}");
    let newest = browser
        .eval("[...document.querySelector('[data-panel=timeline] table.timeline > tbody > tr').children].map((td) => td.textContent)")
        .await
        .unwrap();
    assert!(
        newest.to_string().contains("ui-test")
            && newest.to_string().contains("looking at the dashboard"),
        "{newest}"
    );

    // So does a weight change.
    let set_at = Instant::now();
    admin(
        &scorer,
        Method::PUT,
        "/v1/rollouts/fraud/weights",
        json!({"weights": {"stable": 70, "canary": 30}, "actor": "ui-test", "reason": "more canary"}),
    )
    .await;
    let took = follows(
        &browser,
        "document.querySelector('[data-panel=weights] [data-weight-of=canary]')?.dataset.value === '30'",
        set_at,
    )
    .await;
    eprintln!("the weight change showed after {took:?}");
    page_agrees_with_api(&browser, &scorer, Duration::from_secs(5)).await;

    // Once the traffic stops and its telemetry is complete, the per-variant requests
    // the page shows are exactly the API's over the same span, and the clients'.
    let sent = traffic.finish().await;
    assert!(sent.iter().all(|o| o.status == 200), "no request failed");
    eventually(Duration::from_secs(10), "complete telemetry", || async {
        let t = read(&scorer, "/v1/rollouts/fraud/telemetry").await;
        t["windows"]
            .as_array()
            .unwrap()
            .iter()
            .all(|w| w["complete"] == true)
    })
    .await;
    let deadline = Instant::now() + Duration::from_secs(10);
    let (page, api) = loop {
        let page = browser.eval(DETAIL).await.unwrap();
        let from_ms = page["from_ms"].as_u64().unwrap();
        let t = read(
            &scorer,
            &format!("/v1/rollouts/fraud/telemetry?from_ms={from_ms}"),
        )
        .await;
        let api: serde_json::Map<String, Value> = t["variants"]
            .as_array()
            .unwrap()
            .iter()
            .map(|v| {
                (
                    v["variant"].as_str().unwrap().to_owned(),
                    v["requests"].clone(),
                )
            })
            .collect();
        if page["requests"] == Value::Object(api.clone()) || Instant::now() > deadline {
            break (page, api);
        }
        tokio::time::sleep(Duration::from_millis(250)).await;
    };
    assert_eq!(
        page["requests"],
        Value::Object(api.clone()),
        "requests per variant"
    );
    let total: u64 = api.values().filter_map(Value::as_u64).sum();
    assert_eq!(
        total,
        sent.len() as u64,
        "every request sent is counted once"
    );
    assert!(
        api.values().all(|n| n.as_u64().unwrap() > 0),
        "both variants served: {api:?}"
    );

    let shot = paths::repo_root().join("target/test-artifacts/ui-rollout.png");
    browser.screenshot(&shot).await.unwrap();
    eprintln!("screenshot: {}", shot.display());

    let errors: Vec<String> = browser
        .messages()
        .iter()
        .filter(|m| m.is_error() && !absent_model_monitor(m))
        .map(ToString::to_string)
        .collect();
    assert!(
        errors.is_empty(),
        "the page logged errors:\n{}",
        errors.join("\n")
    );
}
