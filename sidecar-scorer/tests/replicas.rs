//! Two real scorer processes on one private PostgreSQL, each with its own Envoy whose
//! filter is linked to it: their telemetry merges in the database; exactly one replica
//! leads, and the other takes over within seconds when it is killed; every scheduled
//! decision is made exactly once across the failover; a change made through either
//! replica reaches the other's filters within 2 s.

mod common;

use std::collections::HashSet;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::{Duration, Instant};

use common::*;
use hyper::Method;
use outrider_harness::client::HttpClient;
use outrider_harness::fixture::RolloutUnderTest;
use outrider_harness::scorer::{Scorer, TELEMETRY_TOKEN};
use serde_json::{Value, json};

const REPLICAS: [&str; 2] = ["r1", "r2"];

/// A private PostgreSQL, a scorer replica per id of [`REPLICAS`], and an Envoy linked
/// to each replica (`envoys[i]` to `scorers[i]`), serving rollout `fraud`.
struct Pair {
    scorers: Vec<Scorer>,
    envoys: Vec<RolloutUnderTest>,
    _db: Backend,
}

/// A scorer per id of [`REPLICAS`] on `db`.
async fn replicas(db: &Backend) -> Vec<Scorer> {
    let mut scorers = Vec::new();
    for id in REPLICAS {
        scorers.push(start_scorer(db, id).await);
    }
    scorers
}

impl Pair {
    /// With rollout `fraud` at 90/10.
    async fn start(concurrency: u32) -> Self {
        Self::start_with(
            concurrency,
            json!({"name": "fraud", "variants": [
                {"name": "stable", "weight": 90}, {"name": "canary", "weight": 10}]}),
        )
        .await
    }

    /// With rollout `fraud` created from `rollout` (at 90/10 when its filters start).
    async fn start_with(concurrency: u32, rollout: Value) -> Self {
        let db = Backend::postgres().await;
        let scorers = replicas(&db).await;
        admin(&scorers[0], Method::POST, "/v1/rollouts", rollout).await;
        let mut envoys = Vec::new();
        for scorer in &scorers {
            envoys
                .push(envoy_linked(scorer, linked_config(90.0, 10.0, 500, 300), concurrency).await);
        }
        for envoy in &envoys {
            // Each filter has polled its own replica once the scorer's state is in effect.
            eventually(Duration::from_secs(10), "the first poll", || async {
                state_version(envoy).await == 1
            })
            .await;
        }
        Self {
            scorers,
            envoys,
            _db: db,
        }
    }
}

async fn state_version(envoy: &RolloutUnderTest) -> u64 {
    envoy
        .envoy
        .stat("wasmcustom.outrider.state_version.rollout=fraud")
        .await
        .unwrap()
}

/// Requests both variants' stand-ins behind `envoy` received.
fn upstream_requests(envoy: &RolloutUnderTest) -> u64 {
    envoy.standin("stable").requests() + envoy.standin("canary").requests()
}

/// Whether `/readyz` says the replica leads; `None` when it does not answer.
async fn ready_leader(scorer: &Scorer) -> Option<bool> {
    let reply = HttpClient::new()
        .get(&format!("{}/readyz", scorer.url()), &[])
        .await
        .ok()?;
    let ready: Value = reply.json().ok()?;
    Some(ready["leader"].as_bool().expect("/readyz reports `leader`"))
}

async fn leader_gauge(scorer: &Scorer) -> f64 {
    scorer_metric(scorer, "outrider_scorer_leader", &[]).await
}

/// Indexes of the replicas that lead, by `/readyz` and by the gauge, which must agree
/// (call it while leadership is settled: the two are read one after the other).
async fn leaders(scorers: &[&Scorer]) -> Vec<usize> {
    let mut out = Vec::new();
    for (i, scorer) in scorers.iter().enumerate() {
        let flag = ready_leader(scorer).await == Some(true);
        let gauge = leader_gauge(scorer).await;
        assert_eq!(
            gauge,
            f64::from(u8::from(flag)),
            "{}: /readyz says leader={flag}, the gauge {gauge}",
            REPLICAS[i]
        );
        if flag {
            out.push(i);
        }
    }
    out
}

/// Keyed GETs through one Envoy until stopped, counting failures.
struct Traffic {
    stop: Arc<AtomicBool>,
    sent: Arc<AtomicU64>,
    failed: Arc<AtomicU64>,
    task: tokio::task::JoinHandle<()>,
}

impl Traffic {
    fn start(url: &str) -> Self {
        let stop = Arc::new(AtomicBool::new(false));
        let sent = Arc::new(AtomicU64::new(0));
        let failed = Arc::new(AtomicU64::new(0));
        let task = {
            let (url, stop, sent, failed) =
                (url.to_owned(), stop.clone(), sent.clone(), failed.clone());
            tokio::spawn(async move {
                let client = HttpClient::new();
                let mut i = 0u64;
                while !stop.load(Ordering::Relaxed) {
                    i += 1;
                    let key = format!("steady-{}", i % 500);
                    if !matches!(client.get(&url, &[("x-user-id", &key)]).await, Ok(r) if r.status == 200)
                    {
                        failed.fetch_add(1, Ordering::Relaxed);
                    }
                    sent.fetch_add(1, Ordering::Relaxed);
                    tokio::time::sleep(Duration::from_millis(5)).await;
                }
            })
        };
        Self {
            stop,
            sent,
            failed,
            task,
        }
    }

    fn sent(&self) -> u64 {
        self.sent.load(Ordering::Relaxed)
    }

    /// Stops, and returns (sent, failed).
    async fn finish(self) -> (u64, u64) {
        self.stop.store(true, Ordering::Relaxed);
        self.task.await.unwrap();
        (
            self.sent.load(Ordering::Relaxed),
            self.failed.load(Ordering::Relaxed),
        )
    }
}

/// Requests one replica says it ingested (its own filters' telemetry).
async fn ingested_by(scorer: &Scorer) -> u64 {
    scorer_metric(scorer, "outrider_scorer_ingested_requests_total", &[]).await as u64
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn each_replica_ingests_its_own_filters_and_the_database_merges_them() {
    let pair = Pair::start(1).await;
    let send = |e: usize| {
        let url = pair.envoys[e].url.clone();
        async move {
            let keys: Vec<String> = (0..1_500).map(|i| format!("user-{e}-{i}")).collect();
            let replies = HttpClient::new()
                .keyed_gets(&url, "x-user-id", &keys, 8)
                .await
                .unwrap();
            assert!(replies.iter().all(|(_, r)| r.status == 200));
        }
    };
    tokio::join!(send(0), send(1));
    let own: Vec<u64> = pair.envoys.iter().map(upstream_requests).collect();
    assert_eq!(own, vec![1_500, 1_500]);
    let per_variant = |variant: &str| -> u64 {
        pair.envoys
            .iter()
            .map(|e| e.standin(variant).requests())
            .sum()
    };
    let (stable, canary) = (per_variant("stable"), per_variant("canary"));
    assert!(stable > 0 && canary > 0, "{stable} stable, {canary} canary");

    // Each replica took in exactly its own Envoy's telemetry...
    for (scorer, own) in pair.scorers.iter().zip(&own) {
        eventually(
            Duration::from_secs(15),
            "each replica ingests its own Envoy's requests",
            || async { ingested_by(scorer).await == *own },
        )
        .await;
    }
    // ...and either one reads the sum of both from the database.
    for scorer in &pair.scorers {
        eventually(
            Duration::from_secs(5),
            "the summary from either replica is the sum of both Envoys' traffic",
            || async {
                let summary = scorer_counts(scorer).await;
                requests_of(&summary, "stable") == stable
                    && requests_of(&summary, "canary") == canary
            },
        )
        .await;
    }
    let summaries = [
        scorer_counts(&pair.scorers[0]).await,
        scorer_counts(&pair.scorers[1]).await,
    ];
    assert_eq!(
        summaries[0]["variants"], summaries[1]["variants"],
        "both replicas read the same merged counts"
    );
    for variant in summaries[0]["variants"].as_array().unwrap() {
        let n = variant["requests"].as_u64().unwrap();
        assert_eq!(variant["responses"]["2xx"], n, "{variant}");
        assert_eq!(
            latency_count(variant),
            n,
            "one latency per response: {variant}"
        );
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn concurrent_batches_listing_variants_in_any_order_all_apply() {
    let db = Backend::postgres().await;
    let scorers = replicas(&db).await;
    create_rollout(&scorers[0], 90.0, 10.0).await;
    // Filters list variants in their configuration's order, which may differ; every
    // batch adds into the same rows of the current window.
    let post = |scorer: usize, task: usize| {
        let scorer = &scorers[scorer];
        async move {
            let order = if task.is_multiple_of(2) {
                ["stable", "canary"]
            } else {
                ["canary", "stable"]
            };
            for n in 0..40 {
                let now = outrider_scorer::api::now_ms();
                let variants: Vec<Value> = order
                    .iter()
                    .map(|v| {
                        let mut latency = vec![0; outrider_protocol::LATENCY_SLOTS];
                        latency[3] = 1;
                        json!({"variant": v, "requests": 1, "responses": {"2xx": 1}, "latency_ms": latency})
                    })
                    .collect();
                let batch = json!({"batch_id": format!("t{task}-{n}"), "rollout": "fraud",
                    "proxy": format!("p{task}"), "window_start_ms": now, "window_end_ms": now,
                    "variants": variants});
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
            }
        }
    };
    tokio::join!(
        post(0, 0),
        post(0, 1),
        post(1, 2),
        post(1, 3),
        post(0, 4),
        post(1, 5)
    );
    let summary = scorer_counts(&scorers[1]).await;
    assert_eq!(requests_of(&summary, "stable"), 240, "{summary}");
    assert_eq!(requests_of(&summary, "canary"), 240, "{summary}");
}

/// The step schedule of rollout `ramp`: five steps held a second each.
const RAMP: [(f64, f64); 5] = [
    (95.0, 5.0),
    (90.0, 10.0),
    (75.0, 25.0),
    (50.0, 50.0),
    (0.0, 100.0),
];

fn ramp_request() -> Value {
    json!({
        "name": "ramp",
        "variants": [{"name": "stable", "weight": 100}, {"name": "canary", "weight": 0}],
        "steps": RAMP.iter().map(|(s, c)| json!({"weights": {"stable": s, "canary": c}, "hold_seconds": 1})).collect::<Vec<_>>(),
    })
}

async fn get_json(scorer: &Scorer, path: &str) -> Value {
    let reply = call(scorer, Method::GET, path, None, None).await;
    assert_eq!(reply.status, 200, "{path}");
    reply.json().unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn one_replica_leads_and_the_other_takes_over_exactly_once_when_it_dies() {
    let mut pair = Pair::start(1).await;
    let both: Vec<&Scorer> = pair.scorers.iter().collect();
    eventually(Duration::from_secs(5), "one replica leads", || async {
        leaders(&both).await.len() == 1
    })
    .await;
    // Never two, never none, while both live.
    let watched = Instant::now();
    let mut samples = 0;
    while watched.elapsed() < Duration::from_secs(3) {
        let now = leaders(&both).await;
        assert_eq!(now.len(), 1, "replicas leading: {now:?}");
        samples += 1;
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    assert!(samples >= 10, "{samples} samples in 3 s");
    let leader = leaders(&both).await[0];
    let survivor = 1 - leader;
    let (leader_id, survivor_id) = (REPLICAS[leader], REPLICAS[survivor]);

    // A schedule that the leader starts and the survivor finishes.
    admin(
        &pair.scorers[survivor],
        Method::POST,
        "/v1/rollouts",
        ramp_request(),
    )
    .await;
    eventually(
        Duration::from_secs(10),
        "the leader takes the first step",
        || async {
            get_json(&pair.scorers[survivor], "/v1/rollouts/ramp").await["version"].as_u64()
                >= Some(2)
        },
    )
    .await;

    // Traffic through both Envoys while the leader dies.
    let traffic: Vec<Traffic> = pair.envoys.iter().map(|e| Traffic::start(&e.url)).collect();
    eventually(Duration::from_secs(5), "traffic flowing", || async {
        traffic.iter().all(|t| t.sent() > 20)
    })
    .await;
    let ingested_before = ingested_by(&pair.scorers[survivor]).await;
    pair.scorers[leader].kill9();
    let killed = Instant::now();
    let killed_ms = outrider_scorer::api::now_ms();
    let survivor_scorer = &pair.scorers[survivor];
    eventually(
        Duration::from_secs(10),
        "the survivor takes the lead",
        || async {
            tokio::time::sleep(Duration::from_millis(20)).await;
            ready_leader(survivor_scorer).await == Some(true)
        },
    )
    .await;
    let failover = killed.elapsed();
    eventually(
        Duration::from_secs(1),
        "the survivor's gauge shows it",
        || async { leader_gauge(survivor_scorer).await == 1.0 },
    )
    .await;
    eprintln!("failover: {survivor_id} leads {failover:?} after {leader_id} was killed");
    assert!(
        failover <= Duration::from_secs(3),
        "failover took {failover:?}"
    );

    // The survivor finishes the schedule.
    eventually(
        Duration::from_secs(15),
        "the schedule completes",
        || async { get_json(survivor_scorer, "/v1/rollouts/ramp").await["status"] == "promoted" },
    )
    .await;
    let mut sent_failed = Vec::new();
    for t in traffic {
        sent_failed.push(t.finish().await);
    }
    for (i, (sent, failed)) in sent_failed.iter().enumerate() {
        assert_eq!(
            *failed, 0,
            "Envoy of {}: {failed} of {sent} failed",
            REPLICAS[i]
        );
        assert_eq!(upstream_requests(&pair.envoys[i]), *sent);
    }
    // The survivor's filters kept reporting to it through the failover.
    let own = upstream_requests(&pair.envoys[survivor]);
    eventually(
        Duration::from_secs(15),
        "the survivor ingests every request of its Envoy",
        || async { ingested_by(survivor_scorer).await == own },
    )
    .await;
    assert!(
        own > ingested_before,
        "traffic continued after the failover"
    );

    // Every decision exactly once: versions 1..=6 in order, each step once, the
    // controller's changes made by both replicas, the leader's before it died.
    let history = get_json(survivor_scorer, "/v1/rollouts/ramp/events").await;
    let events = history["events"].as_array().unwrap();
    let versions: Vec<u64> = events
        .iter()
        .map(|e| e["version"].as_u64().unwrap())
        .collect();
    assert_eq!(versions, (1..=6).collect::<Vec<u64>>(), "{history:#}");
    let kinds: Vec<&str> = events.iter().map(|e| e["kind"].as_str().unwrap()).collect();
    assert_eq!(
        kinds,
        ["created", "step", "step", "step", "step", "promoted"],
        "{history:#}"
    );
    for (n, event) in events.iter().enumerate().skip(1).take(4) {
        let (stable, canary) = RAMP[n];
        assert_eq!(event["details"]["step"], n, "{event}");
        assert_eq!(
            event["details"]["weights"],
            json!({"stable": stable, "canary": canary}),
            "{event}"
        );
    }
    let mut deciders = HashSet::new();
    for event in &events[1..] {
        assert_eq!(event["actor"], "controller", "{event}");
        let replica = event["details"]["replica"]
            .as_str()
            .expect("details.replica");
        let at = event["at_ms"].as_u64().unwrap();
        if replica == leader_id {
            assert!(
                at < killed_ms,
                "{leader_id} decided after its death: {event}"
            );
        } else {
            assert_eq!(replica, survivor_id, "{event}");
        }
        deciders.insert(replica.to_owned());
    }
    assert_eq!(
        deciders,
        HashSet::from([leader_id.to_owned(), survivor_id.to_owned()]),
        "{history:#}"
    );
    let ramp = get_json(survivor_scorer, "/v1/rollouts/ramp").await;
    assert_eq!(ramp["variants"][1]["weight"], 100.0);
    assert_eq!(
        scorer_metric(
            survivor_scorer,
            "outrider_scorer_controller_steps_total",
            &[]
        )
        .await,
        decided_by(events, survivor_id) as f64
    );
}

/// An analysed canary on two replicas whose leader is killed mid-rollout (and comes
/// back, as a restarted pod does): the survivor judges the following intervals from
/// the same stored runs, every interval is judged once, every step applied once.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_analysed_canary_survives_a_leader_failover_with_every_run_and_step_once() {
    let mut pair = Pair::start_with(
        1,
        json!({"name": "fraud",
            "variants": [{"name": "stable", "weight": 90}, {"name": "canary", "weight": 10}],
            "steps": [{"weights": {"stable": 90, "canary": 10}},
                      {"weights": {"stable": 50, "canary": 50}},
                      {"weights": {"stable": 0, "canary": 100}}],
            "analysis": {"interval_seconds": 5, "min_requests": 20, "inconclusive_limit": 10,
                "checks": [{"metric": "error_rate", "max": 0.05},
                           {"metric": "latency_p99_ms", "max": 250}]}}),
    )
    .await;
    let traffic: Vec<Traffic> = pair.envoys.iter().map(|e| Traffic::start(&e.url)).collect();
    let both: Vec<&Scorer> = pair.scorers.iter().collect();
    eventually(Duration::from_secs(5), "one replica leads", || async {
        leaders(&both).await.len() == 1
    })
    .await;
    let leader = leaders(&both).await[0];
    let survivor = 1 - leader;
    let (leader_id, survivor_id) = (REPLICAS[leader], REPLICAS[survivor]);
    eventually(
        Duration::from_secs(30),
        "the leader takes the first judged step",
        || async { get_json(&pair.scorers[survivor], "/v1/rollouts/fraud").await["step"] == 1 },
    )
    .await;
    pair.scorers[leader].kill9();
    let killed_ms = outrider_scorer::api::now_ms();
    tokio::time::sleep(Duration::from_secs(3)).await;
    pair.scorers[leader].restart().await.unwrap();
    let survivor_scorer = &pair.scorers[survivor];
    eventually(Duration::from_secs(60), "the survivor promotes", || async {
        get_json(survivor_scorer, "/v1/rollouts/fraud").await["status"] == "promoted"
    })
    .await;
    for (i, t) in traffic.into_iter().enumerate() {
        let (sent, failed) = t.finish().await;
        assert_eq!(
            failed, 0,
            "Envoy of {}: {failed} of {sent} failed",
            REPLICAS[i]
        );
    }

    let history = get_json(survivor_scorer, "/v1/rollouts/fraud/events").await;
    let events = history["events"].as_array().unwrap();
    let kinds: Vec<&str> = events.iter().map(|e| e["kind"].as_str().unwrap()).collect();
    assert_eq!(
        kinds,
        ["created", "step", "step", "promoted"],
        "{history:#}"
    );
    let versions: Vec<u64> = events
        .iter()
        .map(|e| e["version"].as_u64().unwrap())
        .collect();
    assert_eq!(versions, [1, 2, 3, 4]);
    let mut deciders = HashSet::new();
    for event in &events[1..] {
        assert_eq!(event["details"]["analysis"]["outcome"], "passed", "{event}");
        let replica = event["details"]["replica"].as_str().unwrap();
        if replica == leader_id {
            assert!(event["at_ms"].as_u64().unwrap() < killed_ms, "{event}");
        }
        deciders.insert(replica.to_owned());
    }
    assert!(deciders.contains(survivor_id), "{history:#}");
    assert!(deciders.contains(leader_id), "{history:#}");

    // Runs: each interval once, back to back within a step, whoever judged it.
    let runs = get_json(survivor_scorer, "/v1/rollouts/fraud/analysis?limit=1000").await["runs"]
        .as_array()
        .unwrap()
        .clone();
    let ends: Vec<u64> = runs.iter().map(|r| r["end_ms"].as_u64().unwrap()).collect();
    let unique: HashSet<u64> = ends.iter().copied().collect();
    assert_eq!(
        unique.len(),
        ends.len(),
        "an interval judged twice: {ends:?}"
    );
    for pair in runs.windows(2) {
        if pair[0]["step"] == pair[1]["step"] {
            assert_eq!(
                pair[0]["end_ms"], pair[1]["start_ms"],
                "a gap in the runs: {pair:?}"
            );
        }
    }
    assert!(
        runs.iter().all(|r| r["outcome"] != "failed"),
        "the failover failed no run: {runs:?}"
    );
    eprintln!(
        "failover mid-canary: {} runs, steps decided by {deciders:?}",
        runs.len()
    );
}

/// Controller changes a replica recorded.
fn decided_by(events: &[Value], replica: &str) -> usize {
    events
        .iter()
        .filter(|e| e["details"]["replica"] == replica)
        .count()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_change_through_one_replica_reaches_the_others_filters_within_2s() {
    let pair = Pair::start(2).await;
    // Through r1 to r2's filters, then back through r2 to r1's.
    for (round, (through, to, (stable, canary), variant)) in [
        (0, 1, (0.0, 100.0), "canary"),
        (1, 0, (100.0, 0.0), "stable"),
    ]
    .into_iter()
    .enumerate()
    {
        set_weights(&pair.scorers[through], stable, canary).await;
        let changed = Instant::now();
        let envoy = &pair.envoys[to];
        let mut probe = 0;
        eventually(
            Duration::from_secs(2),
            &format!(
                "a change through {} reaches {}'s filters within 2 s",
                REPLICAS[through], REPLICAS[to]
            ),
            || {
                probe += 1;
                let tag = format!("{round}-{probe}");
                async move {
                    served_by(&envoy.url, &tag, 64)
                        .await
                        .iter()
                        .all(|v| v == variant)
                }
            },
        )
        .await;
        let took = changed.elapsed();
        eprintln!(
            "a change through {} reached {}'s filters in {took:?}",
            REPLICAS[through], REPLICAS[to]
        );
        // Every worker of that Envoy applies it.
        let all: HashSet<String> = served_by(&envoy.url, &format!("{round}-all"), 300)
            .await
            .into_iter()
            .collect();
        assert_eq!(all, HashSet::from([variant.to_owned()]));
        assert_eq!(state_version(envoy).await, 2 + round as u64);
    }
}
