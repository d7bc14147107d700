//! A/B experiments end to end: Envoy with the filter in front of two stand-ins `a` and
//! `b`, every request sampled (`sample_rate` 1) with the request id the client gave it,
//! outcome labels posted to `POST /v1/feedback` by request id as the answers come
//! back, and a real scorer whose controller judges the experiment every 5 s on
//! complete telemetry. A treatment that converts twice as often is promoted and the
//! experiment concluded; a 50/50 experiment whose traffic is really split 45/55 (a
//! client forcing part of its requests into `b`) is paused on its sample ratio, with
//! the alert, until resumed.

mod common;

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use bytes::Bytes;
use common::*;
use hyper::Method;
use outrider_harness::bootstrap::{Cluster, LISTENER, Spec};
use outrider_harness::client::HttpClient;
use outrider_harness::envoy::Envoy;
use outrider_harness::paths;
use outrider_harness::scorer::{ADMIN_TOKEN, Scorer, TELEMETRY_TOKEN};
use outrider_harness::standin::{Behaviour, StandIn};
use outrider_stats::ab::holm::holm;
use outrider_stats::ab::{AbRequest, Correction, MetricKind, VariantStats, analyze};
use serde_json::{Value, json};
use tokio::sync::watch;

const ROLLOUT: &str = "checkout";
const OVERRIDE_SECRET: &str = "experiment-override-secret-0123";
/// Requests a second: about 750 exposures per 5 s interval.
const RATE: u64 = 150;

fn now_ms() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap()
        .as_millis() as u64
}

/// A uniform draw in [0, 1) from `i` (SplitMix64): the same outcomes every run.
fn uniform(i: u64, stream: u64) -> f64 {
    let mut z = i
        .wrapping_mul(0x9E37_79B9_7F4A_7C15)
        .wrapping_add(stream.wrapping_mul(0xD1B5_4A32_D192_ED03));
    z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
    z ^= z >> 31;
    (z >> 11) as f64 / (1u64 << 53) as f64
}

/// Envoy with the filter (both variants at 50%, every request sampled) in front of
/// the stand-ins `a` and `b`, linked to the scorer.
struct Mesh {
    _envoy: Envoy,
    _standins: Vec<StandIn>,
    url: String,
}

async fn mesh(scorer: &Scorer, overrides: bool) -> Mesh {
    let mut config = json!({
        "rollout": ROLLOUT,
        "salt": "experiment-test",
        "variants": [{"name": "a", "weight": 50}, {"name": "b", "weight": 50}],
        "response_header": "x-outrider-variant",
        "scorer": {"cluster": "outrider-scorer", "token": TELEMETRY_TOKEN,
                   "poll_interval_ms": 300, "flush_interval_ms": 300, "timeout_ms": 500},
        "telemetry": {"sample_rate": 1.0, "max_samples_per_batch": 1000}
    });
    if overrides {
        config["override"] = json!({"secrets": [OVERRIDE_SECRET]});
    }
    let mut standins = Vec::new();
    let mut clusters = Vec::new();
    for name in ["a", "b"] {
        let s = StandIn::start_on(
            name,
            SocketAddr::from(([127, 0, 0, 1], 0)),
            Behaviour::default(),
        )
        .await
        .unwrap();
        clusters.push(Cluster::new(name, s.addr));
        standins.push(s);
    }
    clusters.push(Cluster::new("outrider-scorer", scorer.addr));
    let spec = Spec::rollout(&paths::filter_wasm().unwrap(), &config, clusters).unwrap();
    let envoy = Envoy::start(&spec.bootstrap(), 2).await.unwrap();
    let url = format!(
        "{}/v2/models/{ROLLOUT}/infer",
        envoy.url(LISTENER).await.unwrap()
    );
    Mesh {
        _envoy: envoy,
        _standins: standins,
        url,
    }
}

/// The A/B rollout, 50/50, judged every 5 s.
async fn create(scorer: &Scorer, metrics: Value) {
    admin(
        scorer,
        Method::POST,
        "/v1/rollouts",
        json!({
            "name": ROLLOUT,
            "mode": "ab",
            "variants": [{"name": "a", "weight": 50}, {"name": "b", "weight": 50}],
            "experiment": {"interval_seconds": 5, "unit": "request", "min_exposures": 200,
                           "max_intervals": 12, "metrics": metrics},
            "reason": "checkout model b against a"
        }),
    )
    .await;
}

/// One answered request: its id, the variant that served it, and the outcome the
/// test reports for it.
#[derive(Debug, Clone)]
struct Answered {
    request_id: String,
    variant: String,
    converted: bool,
    value: f64,
}

/// A feedback post: when it was sent and when the scorer took it, and the request
/// ids it carried.
#[derive(Debug, Clone)]
struct Posted {
    sent_ms: u64,
    acked_ms: u64,
    request_ids: Vec<String>,
}

#[derive(Default)]
struct Ledger {
    answered: Vec<Answered>,
    /// Outcomes waiting to be posted.
    pending: Vec<Answered>,
    posted: Vec<Posted>,
    failed: usize,
}

/// Keyed requests at `RATE` per second, each with its own user and request id; every
/// `forced_every`-th request (if any) carries an override token for `b`. Outcomes are
/// drawn per variant (`conversion` share of requests converted, each spending 20 to
/// 60) and posted as feedback every 100 ms.
struct Shop {
    ledger: Arc<Mutex<Ledger>>,
    stop_traffic: watch::Sender<bool>,
    stop_feedback: watch::Sender<bool>,
    traffic: tokio::task::JoinHandle<()>,
    feedback: tokio::task::JoinHandle<()>,
}

impl Shop {
    fn start(
        url: String,
        scorer_url: String,
        conversion: fn(&str) -> f64,
        forced_every: Option<u64>,
    ) -> Self {
        let ledger = Arc::new(Mutex::new(Ledger::default()));
        let (stop_traffic, stopped) = watch::channel(false);
        let (stop_feedback, feedback_stopped) = watch::channel(false);
        let nonce = now_ms();
        let token = outrider_filter_logic::override_token::mint(
            OVERRIDE_SECRET.as_bytes(),
            ROLLOUT,
            "b",
            now_ms() / 1000 + 600,
        )
        .unwrap();
        let traffic = {
            let ledger = ledger.clone();
            tokio::spawn(async move {
                let clients = [HttpClient::new(), HttpClient::new()];
                let mut tick = tokio::time::interval(Duration::from_micros(1_000_000 / RATE));
                let mut requests = tokio::task::JoinSet::new();
                // Bounded whatever happens: at most two minutes of traffic.
                for i in 0..RATE * 120 {
                    if *stopped.borrow() {
                        break;
                    }
                    tick.tick().await;
                    let client = clients[(i % 2) as usize].clone();
                    let (url, ledger, token) = (url.clone(), ledger.clone(), token.clone());
                    requests.spawn(async move {
                        let request_id = format!("req-{nonce}-{i}");
                        let user = format!("shopper-{nonce}-{i}");
                        let mut headers = vec![
                            ("x-user-id", user.as_str()),
                            ("x-request-id", request_id.as_str()),
                            ("content-type", "application/json"),
                        ];
                        if forced_every.is_some_and(|n| i % n == 0) {
                            headers.push(("x-outrider-override", token.as_str()));
                        }
                        let body = json!({"inputs": [{"name": "cart", "datatype": "FP64",
                            "shape": [1, 1], "data": [i]}]});
                        let reply = client
                            .request(Method::POST, &url, &headers, Bytes::from(body.to_string()))
                            .await;
                        let mut ledger = ledger.lock().unwrap();
                        match reply {
                            Ok(r) if r.status == 200 => {
                                let variant = r.header("x-served-by").unwrap_or("").to_owned();
                                let converted = uniform(i, 1) < conversion(&variant);
                                let answered = Answered {
                                    request_id,
                                    value: if converted {
                                        20.0 + 40.0 * uniform(i, 2)
                                    } else {
                                        0.0
                                    },
                                    variant,
                                    converted,
                                };
                                ledger.answered.push(answered.clone());
                                ledger.pending.push(answered);
                            }
                            _ => ledger.failed += 1,
                        }
                    });
                }
                while requests.join_next().await.is_some() {}
            })
        };
        let feedback = {
            let (ledger, mut stopped) = (ledger.clone(), feedback_stopped);
            tokio::spawn(async move {
                let client = HttpClient::new();
                let auth = format!("Bearer {ADMIN_TOKEN}");
                loop {
                    let done = *stopped.borrow();
                    let batch: Vec<Answered> = std::mem::take(&mut ledger.lock().unwrap().pending);
                    if !batch.is_empty() {
                        let events: Vec<Value> = batch
                            .iter()
                            .map(|a| {
                                let mut e = json!({"request_id": a.request_id, "rollout": ROLLOUT,
                                    "label": if a.converted { 1 } else { 0 }});
                                if a.converted {
                                    e["value"] = json!(a.value);
                                }
                                e
                            })
                            .collect();
                        let sent_ms = now_ms();
                        let reply = client
                            .request(
                                Method::POST,
                                &format!("{scorer_url}/v1/feedback"),
                                &[
                                    ("authorization", auth.as_str()),
                                    ("content-type", "application/json"),
                                ],
                                Bytes::from(json!({"events": events}).to_string()),
                            )
                            .await
                            .unwrap();
                        assert_eq!(reply.status, 200, "{:?}", reply.json());
                        ledger.lock().unwrap().posted.push(Posted {
                            sent_ms,
                            acked_ms: now_ms(),
                            request_ids: batch.into_iter().map(|a| a.request_id).collect(),
                        });
                    }
                    if done {
                        break;
                    }
                    tokio::select! {
                        _ = tokio::time::sleep(Duration::from_millis(100)) => {}
                        _ = stopped.changed() => {}
                    }
                }
            })
        };
        Self {
            ledger,
            stop_traffic,
            stop_feedback,
            traffic,
            feedback,
        }
    }

    /// Stops the traffic, posts the outcomes left, and returns the ledger.
    async fn finish(self) -> Ledger {
        self.stop_traffic.send_replace(true);
        self.traffic.await.unwrap();
        self.stop_feedback.send_replace(true);
        self.feedback.await.unwrap();
        let mut ledger = self.ledger.lock().unwrap();
        let pending = std::mem::take(&mut ledger.pending);
        assert!(pending.is_empty(), "every outcome posted");
        std::mem::take(&mut *ledger)
    }
}

async fn get(scorer: &Scorer, path: &str) -> Value {
    let reply = call(scorer, Method::GET, path, None, None).await;
    assert_eq!(reply.status, 200, "{path}");
    reply.json().unwrap()
}

async fn rollout(scorer: &Scorer) -> Value {
    get(scorer, &format!("/v1/rollouts/{ROLLOUT}")).await
}

async fn runs(scorer: &Scorer) -> Vec<Value> {
    get(
        scorer,
        &format!("/v1/rollouts/{ROLLOUT}/experiment?limit=100"),
    )
    .await["runs"]
        .as_array()
        .unwrap()
        .clone()
}

/// Waits for the rollout to reach `status`; the seconds it took.
async fn reaches(scorer: &Scorer, status: &str, within: Duration) -> f64 {
    let started = Instant::now();
    while rollout(scorer).await["status"] != status {
        if started.elapsed() > within {
            let runs: Vec<String> = runs(scorer)
                .await
                .iter()
                .map(|r| format!("{}: {}", r["verdict"], r["reason"]))
                .collect();
            panic!(
                "not {status} after {within:?}: {}\nruns:\n{}",
                rollout(scorer).await,
                runs.join("\n")
            );
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    started.elapsed().as_secs_f64()
}

/// The last event of the rollout.
async fn last_event(scorer: &Scorer) -> Value {
    get(scorer, &format!("/v1/rollouts/{ROLLOUT}/events")).await["events"]
        .as_array()
        .unwrap()
        .last()
        .unwrap()
        .clone()
}

/// Every sample the scorer holds: request id → (variant, at_ms).
async fn samples(scorer: &Scorer) -> BTreeMap<String, (String, u64)> {
    get(
        scorer,
        &format!("/v1/rollouts/{ROLLOUT}/samples?limit=10000"),
    )
    .await["samples"]
        .as_array()
        .unwrap()
        .iter()
        .map(|s| {
            (
                s["request_id"].as_str().unwrap().to_owned(),
                (
                    s["variant"].as_str().unwrap().to_owned(),
                    s["at_ms"].as_u64().unwrap(),
                ),
            )
        })
        .collect()
}

/// The newest `OutriderSampleRatioMismatch` alert, firing or resolved.
async fn srm_alert(scorer: &Scorer) -> Option<Value> {
    get(scorer, "/v1/alerts").await["alerts"]
        .as_array()
        .unwrap()
        .iter()
        .rev()
        .find(|a| a["labels"]["alertname"] == "OutriderSampleRatioMismatch")
        .cloned()
}

fn variant<'a>(run: &'a Value, name: &str) -> &'a Value {
    run["variants"]
        .as_array()
        .unwrap()
        .iter()
        .find(|v| v["variant"] == name)
        .unwrap()
}

/// The engine's comparisons of `run`'s sums, Holm-adjusted together as a run does:
/// (metric, raw p, adjusted p).
fn reference_p_values(run: &Value, metrics: &[(&str, MetricKind)]) -> Vec<(String, f64, f64)> {
    let mut raw = Vec::new();
    for (name, kind) in metrics {
        let variants = ["a", "b"]
            .iter()
            .map(|v| {
                let s = variant(run, v);
                let (sum, sum_sq) = match kind {
                    MetricKind::Binomial => (s["conversions"].as_f64().unwrap(), None),
                    MetricKind::Continuous => {
                        (s["value_sum"].as_f64().unwrap(), s["value_sum_sq"].as_f64())
                    }
                };
                VariantStats {
                    name: (*v).to_owned(),
                    n: s["exposures"].as_u64().unwrap(),
                    sum,
                    sum_sq,
                    expected_share: None,
                }
            })
            .collect();
        let report = analyze(&AbRequest {
            metric: *kind,
            alpha: 0.05,
            control: None,
            correction: Correction::None,
            sequential: true,
            tuning: 5000.0,
            variants,
        })
        .unwrap();
        raw.push(((*name).to_owned(), report.comparisons[0].p_value));
    }
    let adjusted = holm(&raw.iter().map(|(_, p)| *p).collect::<Vec<_>>());
    raw.into_iter()
        .zip(adjusted)
        .map(|((name, p), a)| (name, p, a))
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_treatment_that_converts_more_is_promoted_and_the_experiment_concluded() {
    let backend = Backend::sqlite();
    let scorer = start_scorer(&backend, "experiment-winner").await;
    let mesh = mesh(&scorer, false).await;
    create(
        &scorer,
        json!([
            {"name": "converted", "kind": "conversion", "direction": "increase", "role": "primary"},
            {"name": "revenue", "kind": "revenue", "direction": "increase", "role": "guardrail"}
        ]),
    )
    .await;
    let shop = Shop::start(
        mesh.url.clone(),
        scorer.url(),
        |v| if v == "b" { 0.20 } else { 0.10 },
        None,
    );
    let took = reaches(&scorer, "concluded", Duration::from_secs(60)).await;
    let ledger = shop.finish().await;
    assert_eq!(ledger.failed, 0, "no request failed");

    let r = rollout(&scorer).await;
    let weights: Vec<(Value, Value)> = r["variants"]
        .as_array()
        .unwrap()
        .iter()
        .map(|v| (v["name"].clone(), v["weight"].clone()))
        .collect();
    assert_eq!(
        weights,
        [(json!("a"), json!(0.0)), (json!("b"), json!(100.0))]
    );
    let event = last_event(&scorer).await;
    assert_eq!(
        (&event["kind"], &event["actor"]),
        (&json!("concluded"), &json!("experiment"))
    );
    assert!(
        event["reason"]
            .as_str()
            .unwrap()
            .starts_with("concluded, b promoted: b wins: converted b "),
        "{}",
        event["reason"]
    );
    let run = &event["details"]["experiment"];
    assert_eq!(
        (&run["verdict"], &run["winner"]),
        (&json!("winner"), &json!("b"))
    );
    assert_eq!(run["srm"]["mismatch"], false);

    // Exposures are exactly the samples of the run's span, and every sample is a
    // request the client sent, served by the variant it says.
    let (start, end) = (
        run["start_ms"].as_u64().unwrap(),
        run["end_ms"].as_u64().unwrap(),
    );
    eventually(Duration::from_secs(10), "every request sampled", || async {
        samples(&scorer).await.len() == ledger.answered.len()
    })
    .await;
    let samples = samples(&scorer).await;
    let by_id: BTreeMap<&str, &Answered> = ledger
        .answered
        .iter()
        .map(|a| (a.request_id.as_str(), a))
        .collect();
    for (id, (v, _)) in &samples {
        assert_eq!(&by_id[id.as_str()].variant, v, "{id}");
    }
    let computed = run["computed_ms"].as_u64().unwrap();
    let acked: BTreeMap<&str, &Posted> = ledger
        .posted
        .iter()
        .flat_map(|p| p.request_ids.iter().map(move |id| (id.as_str(), p)))
        .collect();
    for name in ["a", "b"] {
        let exposed: Vec<&Answered> = samples
            .iter()
            .filter(|(_, (v, at))| v == name && (start..end).contains(at))
            .map(|(id, _)| by_id[id.as_str()])
            .collect();
        let figures = variant(run, name);
        assert_eq!(figures["exposures"], exposed.len(), "{name}");
        // Conversions the scorer surely had (their feedback taken before the run was
        // computed) and those it may have had (posted before its queries could end).
        let converted = |taken: &dyn Fn(&Posted) -> bool| -> Vec<&Answered> {
            exposed
                .iter()
                .copied()
                .filter(|a| a.converted && taken(acked[a.request_id.as_str()]))
                .collect()
        };
        let sure = converted(&|p| p.acked_ms < computed);
        let maybe = converted(&|p| p.sent_ms < computed + 2_000);
        let conversions = figures["conversions"].as_u64().unwrap() as usize;
        assert!(
            (sure.len()..=maybe.len()).contains(&conversions),
            "{name}: {conversions} conversions, expected {} to {}",
            sure.len(),
            maybe.len()
        );
        let value_sum = figures["value_sum"].as_f64().unwrap();
        let sum = |list: &[&Answered]| list.iter().map(|a| a.value).sum::<f64>();
        assert!(
            sum(&sure) - 1e-6 <= value_sum && value_sum <= sum(&maybe) + 1e-6,
            "{name}: value sum {value_sum}, expected {} to {}",
            sum(&sure),
            sum(&maybe)
        );
        eprintln!(
            "{name}: {} exposures, {conversions} converted ({:.2}%), value {value_sum:.2}",
            exposed.len(),
            100.0 * conversions as f64 / exposed.len() as f64
        );
    }

    // The verdict's figures are the statistics engine's on those sums.
    let reference = reference_p_values(
        run,
        &[
            ("converted", MetricKind::Binomial),
            ("revenue", MetricKind::Continuous),
        ],
    );
    let comparisons = run["comparisons"].as_array().unwrap();
    for (c, (metric, p, adjusted)) in comparisons.iter().zip(&reference) {
        assert_eq!(&c["metric"], metric);
        assert_eq!(c["p_value"].as_f64(), Some(*p), "{c}");
        assert_eq!(c["p_value_adjusted"].as_f64(), Some(*adjusted), "{c}");
    }
    let converted = &comparisons[0];
    assert_eq!(
        (
            &converted["variant"],
            &converted["effect"],
            &converted["test"]
        ),
        (&json!("b"), &json!("better"), &json!("sequential_binomial"))
    );
    assert!(converted["p_value_adjusted"].as_f64().unwrap() < 0.05);
    assert!(converted["ci_low"].as_f64().unwrap() > 0.0, "{converted}");
    assert!(converted["lift_low"].as_f64().unwrap() > 0.0, "{converted}");
    eprintln!(
        "concluded {took:.1} s after the start, after {} judged intervals of 5 s: converted lift {:+.1}% [{:+.1}%, {:+.1}%], p {:.3e} (Holm {:.3e}); revenue p {:.3e} (Holm {:.3e}); SRM p {:.4}",
        run["judged"],
        converted["lift"].as_f64().unwrap() * 100.0,
        converted["lift_low"].as_f64().unwrap() * 100.0,
        converted["lift_high"].as_f64().unwrap() * 100.0,
        reference[0].1,
        reference[0].2,
        reference[1].1,
        reference[1].2,
        run["srm"]["p_value"].as_f64().unwrap()
    );
    let stored = runs(&scorer).await;
    assert_eq!(
        stored.last().unwrap(),
        run,
        "the deciding run is the last stored"
    );
    assert!(
        stored[..stored.len() - 1]
            .iter()
            .all(|r| r["verdict"] == "not_judged" || r["verdict"] == "continue"),
        "{stored:?}"
    );

    let table = scorer_cli(&scorer, &["rollout", "status", ROLLOUT]);
    eprintln!("{table}");
    assert!(table.contains("rollout checkout: concluded"), "{table}");
    assert!(table.contains("winner b"), "{table}");
    assert!(table.contains("converted    primary"), "{table}");
    let alerts = get(&scorer, "/v1/alerts?firing=true").await;
    assert_eq!(
        alerts["alerts"],
        json!([]),
        "a concluded experiment is no alert"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_split_that_is_not_the_weights_pauses_the_experiment_with_an_alert() {
    let backend = Backend::sqlite();
    let scorer = start_scorer(&backend, "experiment-srm").await;
    let mesh = mesh(&scorer, true).await;
    create(
        &scorer,
        json!([{"name": "converted", "kind": "conversion", "direction": "increase", "role": "primary"}]),
    )
    .await;
    // One request in ten comes with a token forcing b: the split is 45/55, not 50/50.
    let shop = Shop::start(mesh.url.clone(), scorer.url(), |_| 0.1, Some(10));
    let took = reaches(&scorer, "paused", Duration::from_secs(60)).await;
    let ledger = shop.finish().await;
    assert_eq!(ledger.failed, 0, "no request failed");

    let event = last_event(&scorer).await;
    assert_eq!(
        (&event["kind"], &event["actor"]),
        (&json!("paused"), &json!("experiment"))
    );
    let reason = event["reason"].as_str().unwrap();
    assert!(
        reason.starts_with("paused: sample ratio mismatch: requests a="),
        "{reason}"
    );
    assert!(
        reason.contains("where the weights expect a 50.00% b 50.00%"),
        "{reason}"
    );
    let run = &event["details"]["experiment"];
    assert_eq!(run["verdict"], "sample_ratio_mismatch");
    let p = run["srm"]["p_value"].as_f64().unwrap();
    assert!(p < 0.001, "{p}");
    assert_eq!(
        run["comparisons"],
        json!([]),
        "nothing judged on a broken split"
    );

    // What SRM counted is every request of the telemetry windows in the run's span.
    let (start, end) = (
        run["start_ms"].as_u64().unwrap(),
        run["end_ms"].as_u64().unwrap(),
    );
    let summary = get(
        &scorer,
        &format!("/v1/rollouts/{ROLLOUT}/telemetry?from_ms={start}&to_ms={end}"),
    )
    .await;
    let counted: Vec<u64> = ["a", "b"]
        .iter()
        .map(|v| variant(run, v)["srm_count"].as_u64().unwrap())
        .collect();
    assert_eq!(
        counted,
        [requests_of(&summary, "a"), requests_of(&summary, "b")]
    );
    let share_b = counted[1] as f64 / (counted[0] + counted[1]) as f64;
    // 55% expected; a look that trips early sees a share further from 50%.
    assert!((0.52..0.62).contains(&share_b), "b's share {share_b}");
    // And the windows count every request the client sent, by the variant that served it.
    let served = |v: &str| ledger.answered.iter().filter(|a| a.variant == v).count() as u64;
    eventually(Duration::from_secs(10), "every request counted", || async {
        let all = get(&scorer, &format!("/v1/rollouts/{ROLLOUT}/telemetry")).await;
        (requests_of(&all, "a"), requests_of(&all, "b")) == (served("a"), served("b"))
    })
    .await;
    eprintln!(
        "paused {took:.1} s after the start: requests a={} b={} (b {:.1}%), chi-square {:.2}, SRM p {p:.3e}; sent a={} b={}",
        counted[0],
        counted[1],
        share_b * 100.0,
        run["srm"]["statistic"].as_f64().unwrap(),
        served("a"),
        served("b")
    );

    eventually(Duration::from_secs(10), "the SRM alert firing", || async {
        srm_alert(&scorer)
            .await
            .is_some_and(|a| a["status"] == "firing")
    })
    .await;
    let firing = srm_alert(&scorer).await.unwrap();
    assert_eq!(
        (&firing["labels"]["rollout"], &firing["labels"]["severity"]),
        (&json!(ROLLOUT), &json!("warning"))
    );
    assert!(
        firing["annotations"]["description"]
            .as_str()
            .unwrap()
            .starts_with(reason),
        "{firing}"
    );
    assert!(
        firing["annotations"]["runbook_url"]
            .as_str()
            .unwrap()
            .ends_with("#outridersampleratiomismatch")
    );

    // Resumed (the split fixed): the alert resolves, and the experiment starts afresh.
    admin(
        &scorer,
        Method::POST,
        &format!("/v1/rollouts/{ROLLOUT}/resume"),
        json!({"reason": "override traffic removed"}),
    )
    .await;
    eventually(
        Duration::from_secs(10),
        "the SRM alert resolved",
        || async {
            srm_alert(&scorer)
                .await
                .is_some_and(|a| a["status"] == "resolved")
        },
    )
    .await;
    assert_eq!(rollout(&scorer).await["status"], "progressing");
}
