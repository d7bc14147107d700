//! Every query that `monitoring/` ships, against live metrics: a private Prometheus
//! that loads `monitoring/prometheus/rules/` and scrapes a real Envoy with the filter
//! (job `envoy`, as in `monitoring/prometheus/prometheus.yaml`) and a real scorer (job
//! `outrider-scorer`), under keyed traffic to the fraud model: a 50/50 canary that is
//! progressing, a guardrail on it, a shadow that gets every request, every request
//! sampled with its features, and outcome labels posted, so the model monitor's
//! gauges exist.
//!
//! - each recording rule's expression returns series carrying the labels its level
//!   names (`rollout_variant:` → `rollout` and `variant`), and so does the series it
//!   recorded;
//! - each alert's expression (empty when all is well) names only metrics that are
//!   exported, with the labels it matches on, and groups or joins only by labels that
//!   its metrics carry (or that it makes with `label_replace`);
//! - each dashboard query returns series with the labels its legend shows, and each
//!   variable's `label_values` finds its label.
//!
//! A failure names the file, the rule or panel, and the metric or label missing.

mod common;

use std::collections::BTreeSet;
use std::time::{Duration, Instant};

use bytes::Bytes;
use common::monitored::{Monitored, monitored, sample_every_request};
use common::*;
use hyper::Method;
use outrider_harness::bootstrap::{Cluster, LISTENER, Spec};
use outrider_harness::client::HttpClient;
use outrider_harness::envoy::Envoy;
use outrider_harness::paths::{self, repo_root};
use outrider_harness::prometheus::{Prometheus, PrometheusSpec, Target};
use outrider_harness::scorer::{ADMIN_TOKEN, Scorer};
use outrider_model::data::{GeneratorConfig, generate};
use outrider_model::serve::Server;
use serde_json::{Value, json};

const MONITOR: &str = r#"
[monitor]
min_samples = 100
[monitor.window]
by = "time"
width = 5
[monitor.performance]
label_delay_seconds = 1
labelled_window_seconds = 600
min_positives = 15
"#;

const RATE: u64 = 50;

// --- PromQL, as far as these checks need it -----------------------------------------

/// A vector selector in an expression: its metric and the labels its matchers name.
#[derive(Debug, Clone, PartialEq)]
struct Selector {
    metric: String,
    labels: Vec<String>,
    /// The selector as written, matchers included.
    text: String,
}

/// What an expression selects, the labels it groups or joins by (`by`, `without`,
/// `on`, `ignoring`, `group_left`, `group_right`), and those it makes (`label_replace`).
#[derive(Debug, Default, PartialEq)]
struct Uses {
    selectors: Vec<Selector>,
    grouping: BTreeSet<String>,
    made: BTreeSet<String>,
}

#[derive(Debug, Clone, PartialEq)]
enum Token {
    Ident(String),
    Str(String),
    Matchers(Vec<String>, String),
    Punct(char),
}

const AGGREGATIONS: [&str; 12] = [
    "sum",
    "min",
    "max",
    "avg",
    "group",
    "stddev",
    "stdvar",
    "count",
    "count_values",
    "bottomk",
    "topk",
    "quantile",
];
const GROUPING: [&str; 6] = [
    "by",
    "without",
    "on",
    "ignoring",
    "group_left",
    "group_right",
];
const KEYWORDS: [&str; 6] = ["and", "or", "unless", "bool", "offset", "atan2"];

fn tokens(expr: &str) -> Vec<Token> {
    let chars: Vec<char> = expr.chars().collect();
    let mut out = Vec::new();
    let mut i = 0;
    let string = |i: &mut usize| -> String {
        let quote = chars[*i];
        let mut s = String::new();
        *i += 1;
        while *i < chars.len() && chars[*i] != quote {
            if chars[*i] == '\\' {
                *i += 1;
            }
            s.push(chars[*i]);
            *i += 1;
        }
        *i += 1;
        s
    };
    while i < chars.len() {
        let c = chars[i];
        if c.is_whitespace() {
            i += 1;
        } else if c == '#' {
            while i < chars.len() && chars[i] != '\n' {
                i += 1;
            }
        } else if c == '"' || c == '\'' || c == '`' {
            out.push(Token::Str(string(&mut i)));
        } else if c == '[' {
            while i < chars.len() && chars[i] != ']' {
                i += 1;
            }
            i += 1;
        } else if c == '{' {
            let start = i;
            let mut names = Vec::new();
            i += 1;
            loop {
                while i < chars.len() && (chars[i].is_whitespace() || chars[i] == ',') {
                    i += 1;
                }
                if i >= chars.len() || chars[i] == '}' {
                    break;
                }
                let name: String = chars[i..]
                    .iter()
                    .take_while(|c| c.is_alphanumeric() || **c == '_')
                    .collect();
                i += name.len();
                while i < chars.len() && "=!~ ".contains(chars[i]) {
                    i += 1;
                }
                string(&mut i);
                names.push(name);
            }
            i += 1;
            out.push(Token::Matchers(
                names,
                chars[start..i.min(chars.len())].iter().collect(),
            ));
        } else if c.is_ascii_digit()
            || (c == '.' && chars.get(i + 1).is_some_and(char::is_ascii_digit))
        {
            while i < chars.len() && (chars[i].is_ascii_alphanumeric() || chars[i] == '.') {
                i += 1;
            }
        } else if c.is_alphabetic() || c == '_' || c == ':' {
            let ident: String = chars[i..]
                .iter()
                .take_while(|c| c.is_alphanumeric() || **c == '_' || **c == ':')
                .collect();
            i += ident.len();
            out.push(Token::Ident(ident));
        } else {
            out.push(Token::Punct(c));
            i += 1;
        }
    }
    out
}

fn uses(expr: &str) -> Uses {
    let t = tokens(expr);
    let mut u = Uses::default();
    let mut i = 0;
    while i < t.len() {
        if let Token::Ident(name) = &t[i] {
            let next = t.get(i + 1);
            if GROUPING.contains(&name.as_str()) {
                if next == Some(&Token::Punct('(')) {
                    i += 2;
                    while let Some(Token::Ident(label)) = t.get(i) {
                        u.grouping.insert(label.clone());
                        i += 1;
                        if t.get(i) == Some(&Token::Punct(',')) {
                            i += 1;
                        }
                    }
                }
            } else if name == "label_replace" {
                if let Some(Token::Str(made)) = t[i..].iter().find(|t| matches!(t, Token::Str(_))) {
                    u.made.insert(made.clone());
                }
            } else if next == Some(&Token::Punct('('))
                || AGGREGATIONS.contains(&name.as_str())
                || KEYWORDS.contains(&name.as_str())
            {
                // A function, an aggregation or an operator.
            } else {
                let (labels, text) = match next {
                    Some(Token::Matchers(labels, text)) => {
                        (labels.clone(), format!("{name}{text}"))
                    }
                    _ => (Vec::new(), name.clone()),
                };
                u.selectors.push(Selector {
                    metric: name.clone(),
                    labels,
                    text,
                });
            }
        }
        i += 1;
    }
    u
}

#[test]
fn selectors_grouping_and_made_labels_are_found() {
    let u = uses(
        r#"max by (rollout, by) (label_replace(m1{status="x",actor=~"a|b"}, "by", "$1", "actor", "(.*)")) == 1
           and on (job) (sum without (le) (rate(m2_bucket[5m])) > 0.5) unless m3:rec:rate5m"#,
    );
    let metrics: Vec<&str> = u.selectors.iter().map(|s| s.metric.as_str()).collect();
    assert_eq!(metrics, ["m1", "m2_bucket", "m3:rec:rate5m"]);
    assert_eq!(u.selectors[0].labels, ["status", "actor"]);
    assert_eq!(u.selectors[0].text, r#"m1{status="x",actor=~"a|b"}"#);
    assert_eq!(
        u.grouping,
        ["by", "job", "le", "rollout"].map(String::from).into()
    );
    assert_eq!(u.made, ["by".to_owned()].into());
}

// --- The live setup ----------------------------------------------------------------

struct Live {
    prometheus: Prometheus,
    scorer: Scorer,
    _envoy: Envoy,
    _server: Server,
    _dir: tempfile::TempDir,
}

async fn live() -> Live {
    let Monitored {
        scorer,
        server,
        dir,
    } = monitored("queries", MONITOR).await;
    let clusters = vec![
        Cluster::new("stable", server.http_addr),
        Cluster::new("canary", server.http_addr),
        Cluster::new("shadow", server.http_addr),
        Cluster::new("outrider-scorer", scorer.addr),
    ];
    let mut config = linked_config(50.0, 50.0, 300, 300);
    sample_every_request(&mut config);
    // Limits a healthy model never reaches: the trip counters exist, at 0.
    config["guardrail"] = json!({"window_ms": 10000, "min_requests": 20,
        "max_5xx_share": 0.5, "max_grpc_error_share": 0.5, "max_p99_ms": 10000});
    config["shadows"] = json!([{"name": "shadow", "cluster": "shadow", "share": 100,
        "timeout_ms": 5000, "prediction": {"pointer": "/outputs/0/data/0", "threshold": 0.5}}]);
    let spec = Spec::rollout(&paths::filter_wasm().unwrap(), &config, clusters).unwrap();
    let envoy = Envoy::start(&spec.bootstrap(), 2).await.unwrap();
    // A canary at 50%, holding its first step for an hour: progressing throughout.
    admin(
        &scorer,
        Method::POST,
        "/v1/rollouts",
        json!({"name": "fraud", "variants": [
            {"name": "stable", "weight": 50, "model": "models:/fraud/1"},
            {"name": "canary", "weight": 50, "model": "models:/fraud/1"}],
            "steps": [{"weights": {"stable": 50, "canary": 50}, "hold_seconds": 3600},
                      {"weights": {"stable": 0, "canary": 100}, "hold_seconds": 3600}]}),
    )
    .await;
    // A retraining policy that nothing here triggers: the model's job gauge exists.
    admin(
        &scorer,
        Method::PUT,
        "/v1/models/fraud/retraining",
        json!({"triggers": {"drift": {"verdicts": ["dataset_drift"]}}}),
    )
    .await;
    let rules = repo_root().join("monitoring/prometheus/rules");
    let prometheus = Prometheus::start(PrometheusSpec {
        targets: vec![
            Target::envoy("envoy", envoy.admin_addr()),
            Target::scorer("outrider-scorer", scorer.addr),
        ],
        rule_files: vec![rules.join("recording.yaml"), rules.join("alerts.yaml")],
        port: None,
    })
    .await
    .unwrap();
    for job in ["envoy", "outrider-scorer"] {
        prometheus
            .wait_scraped(job, Duration::from_secs(15))
            .await
            .unwrap();
    }

    // Keyed traffic, each request with its id, for a few of the monitor's windows.
    let url = format!(
        "{}/v2/models/fraud/infer",
        envoy.url(LISTENER).await.unwrap()
    );
    let rows = generate(&GeneratorConfig {
        rows: 5_000,
        seed: 5,
        fraud_rate: 0.05,
        ..GeneratorConfig::default()
    })
    .unwrap();
    let client = HttpClient::new();
    let mut tick = tokio::time::interval(Duration::from_micros(1_000_000 / RATE));
    let mut requests = tokio::task::JoinSet::new();
    let mut labels = Vec::new();
    let until = Instant::now() + Duration::from_secs(25);
    for (i, row) in rows.iter().enumerate() {
        if Instant::now() > until {
            break;
        }
        tick.tick().await;
        let data: Vec<Value> = row.features().iter().map(|v| json!(v)).collect();
        let body = json!({"inputs": [{"name": "transaction", "datatype": "FP32",
            "shape": [1, data.len()], "data": data}]});
        let id = format!("q-{i}");
        labels.push(json!({"request_id": id, "label": i32::from(row.fraud())}));
        let (client, url, key) = (
            client.clone(),
            url.clone(),
            format!("card-{}", row.customer_id),
        );
        requests.spawn(async move {
            client
                .request(
                    Method::POST,
                    &url,
                    &[
                        ("x-user-id", &key),
                        ("x-request-id", &id),
                        ("content-type", "application/json"),
                    ],
                    Bytes::from(body.to_string()),
                )
                .await
                .map(|r| r.status)
        });
    }
    while let Some(status) = requests.join_next().await {
        assert_eq!(status.unwrap().unwrap(), 200, "a request failed");
    }
    let reply = call(
        &scorer,
        Method::POST,
        "/v1/feedback",
        Some(ADMIN_TOKEN),
        Some(json!({"events": labels})),
    )
    .await;
    assert!(
        reply.status < 300,
        "{}",
        String::from_utf8_lossy(&reply.body)
    );
    // The monitor's gauges, estimated and realised performance included, are in
    // /metrics, and Prometheus has them.
    for metric in [
        "outrider_scorer_feature_drift",
        "outrider_scorer_estimated_performance",
        "outrider_scorer_realised_performance",
        "outrider_scorer_shadow_gate",
        "outrider_scorer_finding",
        "outrider_scorer_retrain_latest_failed",
    ] {
        let deadline = Instant::now() + Duration::from_secs(60);
        loop {
            let got = prometheus.query(metric).await.unwrap();
            if !got.is_empty() {
                break;
            }
            assert!(
                Instant::now() < deadline,
                "{metric} not in Prometheus after 60 s\n{}",
                scorer.log()
            );
            tokio::time::sleep(Duration::from_millis(500)).await;
        }
    }
    Live {
        prometheus,
        scorer,
        _envoy: envoy,
        _server: server,
        _dir: dir,
    }
}

// --- The checks --------------------------------------------------------------------

fn yaml(relative: &str) -> Value {
    let text = std::fs::read_to_string(repo_root().join(relative)).unwrap();
    serde_saphyr::from_str(&text).unwrap_or_else(|e| panic!("{relative}: {e}"))
}

/// The rules of a rule file, each with its group.
fn rules(relative: &str) -> Vec<Value> {
    yaml(relative)["groups"]
        .as_array()
        .unwrap()
        .iter()
        .flat_map(|g| g["rules"].as_array().unwrap().clone())
        .collect()
}

/// The label names that the series of `promql` carry; an empty set when it has none.
async fn label_names(p: &Prometheus, promql: &str) -> Option<BTreeSet<String>> {
    let series = p.query(promql).await.unwrap();
    if series.is_empty() {
        return None;
    }
    Some(
        series
            .iter()
            .flat_map(|s| s.labels.keys().cloned())
            .collect(),
    )
}

/// Series of `promql` that lack one of `labels` (each problem in a line).
async fn expect_series(
    p: &Prometheus,
    what: &str,
    promql: &str,
    labels: &[String],
    problems: &mut Vec<String>,
) {
    let series = match p.query(promql).await {
        Ok(s) => s,
        Err(e) => {
            problems.push(format!("{what}: {e}"));
            return;
        }
    };
    if series.is_empty() {
        problems.push(format!("{what}: `{promql}` returned no series"));
        return;
    }
    for label in labels {
        if let Some(s) = series
            .iter()
            .find(|s| s.labels.get(label).is_none_or(String::is_empty))
        {
            problems.push(format!(
                "{what}: a series of `{promql}` has no label {label}: {:?}",
                s.labels
            ));
        }
    }
}

/// An alert expression: every selector's metric is exported and carries the labels its
/// matchers name; every grouping label is carried by one of its metrics or made.
async fn check_expression(p: &Prometheus, what: &str, expr: &str, problems: &mut Vec<String>) {
    let u = uses(expr);
    assert!(
        !u.selectors.is_empty(),
        "{what}: no selector found in {expr}"
    );
    let mut carried = u.made.clone();
    for s in &u.selectors {
        let Some(names) = label_names(p, &s.metric).await else {
            problems.push(format!(
                "{what}: metric {} (in `{}`): nothing exports it",
                s.metric, s.text
            ));
            continue;
        };
        for label in &s.labels {
            if !names.contains(label) {
                problems.push(format!(
                    "{what}: label {label} of metric {} (in `{}`): no series carries it",
                    s.metric, s.text
                ));
            }
        }
        carried.extend(names);
    }
    for label in &u.grouping {
        if !carried.contains(label) {
            problems.push(format!(
                "{what}: label {label} (grouped or joined on): none of {:?} carries it",
                u.selectors.iter().map(|s| &s.metric).collect::<Vec<_>>()
            ));
        }
    }
}

/// A dashboard query with its variables given values that select everything.
fn substitute(expr: &str) -> String {
    expr.replace("$__rate_interval", "1m")
        .replace("$__interval", "1m")
        .replace("$__range", "5m")
        .replace("$rollout", ".+")
        .replace("$variant", ".+")
        .replace("$model", ".+")
}

/// The labels a legend shows, `{{name}}`.
fn legend_labels(legend: &str) -> Vec<String> {
    legend
        .split("{{")
        .skip(1)
        .filter_map(|s| s.split("}}").next())
        .map(|s| s.trim().to_owned())
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_shipped_query_finds_its_metrics_and_labels_in_live_data() {
    let live = live().await;
    let p = &live.prometheus;
    let mut problems = Vec::new();

    let recording = "monitoring/prometheus/rules/recording.yaml";
    for rule in rules(recording) {
        let record = rule["record"].as_str().unwrap();
        let level = record.split(':').next().unwrap();
        let labels: Vec<String> = level.split('_').map(str::to_owned).collect();
        let expr = rule["expr"].as_str().unwrap();
        let what = format!("{recording}: {record}");
        expect_series(p, &what, expr, &labels, &mut problems).await;
        expect_series(
            p,
            &format!("{what} (as recorded)"),
            record,
            &labels,
            &mut problems,
        )
        .await;
    }

    let alerts = "monitoring/prometheus/rules/alerts.yaml";
    for rule in rules(alerts) {
        let name = rule["alert"].as_str().unwrap();
        let expr = rule["expr"].as_str().unwrap();
        // The expression itself is valid PromQL on this Prometheus.
        if let Err(e) = p.query(expr).await {
            problems.push(format!("{alerts}: {name}: {e}"));
        }
        check_expression(p, &format!("{alerts}: {name}"), expr, &mut problems).await;
    }

    let dashboard = "monitoring/grafana/outrider.json";
    let d: Value =
        serde_json::from_str(&std::fs::read_to_string(repo_root().join(dashboard)).unwrap())
            .unwrap();
    let mut queries = 0;
    for panel in d["panels"].as_array().unwrap() {
        for target in panel["targets"].as_array().into_iter().flatten() {
            let expr = substitute(target["expr"].as_str().unwrap());
            let legend = target["legendFormat"].as_str().unwrap_or("");
            let what = format!(
                "{dashboard}: panel {:?}, query {}",
                panel["title"].as_str().unwrap_or(""),
                target["refId"]
            );
            expect_series(p, &what, &expr, &legend_labels(legend), &mut problems).await;
            queries += 1;
        }
    }
    for var in d["templating"]["list"].as_array().unwrap() {
        let Some(q) = var["query"]["query"].as_str() else {
            continue;
        };
        let inner = q
            .strip_prefix("label_values(")
            .and_then(|s| s.strip_suffix(')'))
            .unwrap_or_else(|| panic!("variable {}: {q}", var["name"]));
        let (selector, label) = inner.rsplit_once(',').unwrap();
        let what = format!("{dashboard}: variable {}", var["name"]);
        expect_series(
            p,
            &what,
            &substitute(selector),
            &[label.trim().to_owned()],
            &mut problems,
        )
        .await;
    }
    assert!(queries >= 10, "{queries} dashboard queries");
    assert!(
        problems.is_empty(),
        "{} problems:\n{}\n--- scorer log (tail) ---\n{}",
        problems.len(),
        problems.join("\n"),
        live.scorer
            .log()
            .lines()
            .rev()
            .take(20)
            .collect::<Vec<_>>()
            .join("\n")
    );
}
