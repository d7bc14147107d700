//! The load: telemetry batches and feedback posted in a closed loop, and proxies
//! polling the rollout state in an open loop; each measured with the CPU time of the
//! scorer and of its database over the same interval.

use std::cell::{Cell, RefCell};
use std::fmt::Write as _;
use std::time::{Duration, Instant};

use anyhow::{Context, Result, bail};
use bytes::Bytes;
use http_body_util::{BodyExt, Empty};
use hyper::Request;
use hyper_util::rt::TokioIo;
use outrider_harness::client::{HttpClient, Reply};
use outrider_harness::load::{Latency, latency_histogram};
use outrider_harness::scorer::{ADMIN_TOKEN, Scorer, TELEMETRY_TOKEN};
use outrider_protocol::{
    ClassCounts, LATENCY_SLOTS, Sample, TelemetryBatch, VariantCounts, latency_slot,
};
use serde_json::Value;

use super::proc::{cpu_between, cpu_of};
use super::{ROLLOUT, VARIANTS};

/// Requests one telemetry batch carries, over its variants.
pub const REQUESTS_PER_BATCH: u64 = 200;
const SAMPLES_PER_BATCH: usize = 4;
const FEATURES: [&str; 8] = [
    "amount",
    "merchant_risk",
    "account_age_days",
    "tx_last_hour",
    "distance_km",
    "card_present",
    "hour_of_day",
    "velocity_score",
];

fn now_ms() -> u64 {
    outrider_scorer::api::now_ms()
}

/// Unique ids for batches and events, across rounds and runs.
pub struct Ids {
    prefix: String,
    next: Cell<u64>,
    /// Telemetry batches each scorer applied, by its address.
    applied: RefCell<std::collections::HashMap<std::net::SocketAddr, u64>>,
}

impl Ids {
    pub fn new() -> Self {
        Self {
            prefix: format!("{:x}", now_ms()),
            next: Cell::new(0),
            applied: RefCell::default(),
        }
    }

    fn take(&self) -> String {
        let n = self.next.get();
        self.next.set(n + 1);
        format!("{}-{n}", self.prefix)
    }
}

/// What a closed-loop run did: `units` (batches or events) in `wall_s`, and the CPU
/// the scorer and its database used meanwhile.
pub struct Figures {
    pub units: u64,
    pub wall_s: f64,
    pub scorer_cpu_s: f64,
    pub db_cpu_s: f64,
}

impl Figures {
    pub fn rate(&self) -> f64 {
        self.units as f64 / self.wall_s
    }
}

pub async fn post(scorer: &Scorer, path: &str, token: &str, body: Bytes) -> Result<Reply> {
    post_with(&HttpClient::new(), scorer, path, token, body).await
}

async fn post_with(
    client: &HttpClient,
    scorer: &Scorer,
    path: &str,
    token: &str,
    body: Bytes,
) -> Result<Reply> {
    let auth = format!("Bearer {token}");
    client
        .request(
            hyper::Method::POST,
            &format!("{}{path}", scorer.url()),
            &[
                ("content-type", "application/json"),
                ("authorization", &auth),
            ],
            body,
        )
        .await
}

/// The CPU seconds of the scorer and of the database processes, read together.
struct Cpu {
    scorer: u32,
    db: Vec<u32>,
}

impl Cpu {
    fn read(&self) -> (f64, std::collections::HashMap<u32, f64>) {
        (
            outrider_harness::load::cpu_seconds(self.scorer).unwrap_or(0.0),
            cpu_of(&self.db),
        )
    }
}

/// Where a closed loop posts, and whose CPU it measures.
struct Target<'a> {
    scorer: &'a Scorer,
    db: &'a [u32],
    path: &'a str,
    token: &'a str,
}

/// Posts bodies from `body` on `connections` connections until `duration` has
/// passed; every answer must pass `accept`. Returns the bodies posted.
async fn closed_loop(
    target: Target<'_>,
    connections: usize,
    duration: Duration,
    body: impl Fn() -> Bytes,
    accept: impl Fn(&Reply) -> bool,
) -> Result<(u64, Figures)> {
    let Target {
        scorer,
        db,
        path,
        token,
    } = target;
    let client = HttpClient::new();
    let cpu = Cpu {
        scorer: scorer.pid(),
        db: db.to_vec(),
    };
    let posted = Cell::new(0u64);
    let (scorer_before, db_before) = cpu.read();
    let started = Instant::now();
    let workers = (0..connections).map(|_| async {
        while started.elapsed() < duration {
            let reply = post_with(&client, scorer, path, token, body()).await?;
            if !accept(&reply) {
                bail!(
                    "{path}: {} {}",
                    reply.status,
                    String::from_utf8_lossy(&reply.body)
                );
            }
            posted.set(posted.get() + 1);
        }
        anyhow::Ok(())
    });
    for result in futures::future::join_all(workers).await {
        result?;
    }
    let wall_s = started.elapsed().as_secs_f64();
    let (scorer_after, db_after) = cpu.read();
    Ok((
        posted.get(),
        Figures {
            units: 0,
            wall_s,
            scorer_cpu_s: scorer_after - scorer_before,
            db_cpu_s: cpu_between(&db_before, &db_after),
        },
    ))
}

/// A batch as one worker of a busy proxy sends it every second: three variants with
/// full latency histograms, a few sampled requests. Its id is left as `{id}`.
fn batch_template(window_end_ms: u64) -> (String, String) {
    const MARK: &str = "\u{1}batch-id\u{1}";
    let shares = [160u64, 30, 10];
    debug_assert_eq!(shares.iter().sum::<u64>(), REQUESTS_PER_BATCH);
    let variants = VARIANTS
        .iter()
        .zip(shares)
        .map(|((name, _), requests)| {
            let mut latency_ms = vec![0u64; LATENCY_SLOTS];
            let mut latency_sum_ms = 0;
            for i in 0..requests {
                let ms = 2.0 + (i % 37) as f64 * 1.7 + (i % 5) as f64 * 0.3;
                latency_ms[latency_slot(ms)] += 1;
                latency_sum_ms += ms as u64;
            }
            VariantCounts {
                variant: (*name).to_owned(),
                requests,
                responses: ClassCounts {
                    success: requests - requests / 40 - requests / 80,
                    redirect: 0,
                    client_error: requests / 40,
                    server_error: requests / 80,
                },
                grpc_errors: 0,
                latency_ms,
                latency_sum_ms,
            }
        })
        .collect();
    let samples = (0..SAMPLES_PER_BATCH)
        .map(|i| Sample {
            variant: VARIANTS[i % VARIANTS.len()].0.to_owned(),
            at_ms: window_end_ms - 100 * i as u64,
            request_id: Some(format!("req-{window_end_ms}-{i}")),
            user_key: Some(format!("user-{}", i * 7919)),
            features: FEATURES
                .iter()
                .enumerate()
                .map(|(f, name)| ((*name).to_owned(), (i * 31 + f) as f64 * 0.731))
                .collect(),
            score: Some(0.1 + i as f64 * 0.2),
        })
        .collect();
    let batch = TelemetryBatch {
        batch_id: MARK.to_owned(),
        rollout: ROLLOUT.to_owned(),
        proxy: "bench-proxy".to_owned(),
        worker: None,
        window_start_ms: window_end_ms - 1_000,
        window_end_ms,
        variants,
        samples,
        shadows: Vec::new(),
        dropped_batches: 0,
        guardrail_trips: Vec::new(),
    };
    let text = serde_json::to_string(&batch).unwrap_or_default();
    let marked = serde_json::to_string(MARK).unwrap_or_default();
    let (before, after) = text
        .split_once(marked.trim_matches('"'))
        .unwrap_or_default();
    (before.to_owned(), after.to_owned())
}

/// Telemetry batches posted (each a fresh id) for `duration`.
pub async fn telemetry(
    scorer: &Scorer,
    db: &[u32],
    ids: &Ids,
    connections: usize,
    duration: Duration,
) -> Result<Figures> {
    let (before, after) = batch_template(now_ms());
    let body = || Bytes::from(format!("{before}{}{after}", ids.take()));
    let applied = |r: &Reply| r.status == 200 && r.body.windows(9).any(|w| w == b"\"applied\"");
    let target = Target {
        scorer,
        db,
        path: "/v1/telemetry",
        token: TELEMETRY_TOKEN,
    };
    let (batches, mut figures) = closed_loop(target, connections, duration, body, applied).await?;
    *ids.applied.borrow_mut().entry(scorer.addr).or_default() += batches;
    figures.units = batches;
    Ok(figures)
}

/// Feedback posted in batches of `per_post` events for `duration`.
pub async fn feedback(
    scorer: &Scorer,
    db: &[u32],
    ids: &Ids,
    per_post: usize,
    connections: usize,
    duration: Duration,
) -> Result<Figures> {
    let now = now_ms();
    let body = || {
        let mut out = String::with_capacity(per_post * 180);
        out.push_str("{\"events\":[");
        for i in 0..per_post {
            if i > 0 {
                out.push(',');
            }
            let id = ids.take();
            let _ = write!(
                out,
                "{{\"event_id\":\"fb-{id}\",\"rollout\":\"{ROLLOUT}\",\"request_id\":\"req-{id}\",\
                 \"user_key\":\"user-{}\",\"label\":{},\"value\":{}.5,\"observed_at_ms\":{}}}",
                i % 50_000,
                u8::from(i % 97 == 0),
                i % 300,
                now - (i as u64 % 86_400) * 1_000,
            );
        }
        out.push_str("]}");
        Bytes::from(out)
    };
    let accepted = |r: &Reply| {
        r.status == 200
            && r.json()
                .is_ok_and(|v| v["accepted"].as_u64() == Some(per_post as u64))
    };
    let target = Target {
        scorer,
        db,
        path: "/v1/feedback",
        token: ADMIN_TOKEN,
    };
    let (posts, mut figures) = closed_loop(target, connections, duration, body, accepted).await?;
    figures.units = posts * per_post as u64;
    Ok(figures)
}

/// What the polling proxies saw.
pub struct PollFigures {
    pub polls: u64,
    pub not_modified: u64,
    pub seconds: f64,
    pub scorer_cpu_s: f64,
    pub db_cpu_s: f64,
    pub p50_ms: f64,
    pub p99_ms: f64,
}

impl PollFigures {
    pub fn rate(&self) -> f64 {
        self.polls as f64 / self.seconds
    }
}

type Sender = hyper::client::conn::http1::SendRequest<Empty<Bytes>>;

/// One poll: the status and the ETag to send next time.
async fn poll(sender: &mut Sender, authority: &str, etag: Option<&str>) -> Result<(u16, String)> {
    let mut request =
        Request::get(format!("/v1/rollouts/{ROLLOUT}/state")).header("host", authority);
    if let Some(etag) = etag {
        request = request.header("if-none-match", etag);
    }
    sender.ready().await?;
    let response = sender.send_request(request.body(Empty::new())?).await?;
    let status = response.status().as_u16();
    let etag = response
        .headers()
        .get("etag")
        .and_then(|v| v.to_str().ok())
        .context("no etag")?
        .to_owned();
    response.into_body().collect().await?;
    Ok((status, etag))
}

/// `proxies` proxies, each on its own keep-alive connection, each polling once a
/// second (spread evenly over the second) with the ETag of its last answer, for
/// `duration`, after one unmeasured poll each to learn the ETag.
pub async fn polls(
    scorer: &Scorer,
    db: &[u32],
    proxies: usize,
    duration: Duration,
) -> Result<PollFigures> {
    let authority = scorer.addr.to_string();
    let mut fleet = Vec::with_capacity(proxies);
    for _ in 0..proxies {
        let stream = tokio::net::TcpStream::connect(scorer.addr).await?;
        stream.set_nodelay(true)?;
        let (mut sender, connection) =
            hyper::client::conn::http1::handshake(TokioIo::new(stream)).await?;
        tokio::spawn(connection);
        let (_, etag) = poll(&mut sender, &authority, None).await?;
        fleet.push((sender, etag));
    }
    let histogram = RefCell::new(latency_histogram()?);
    let (polls, not_modified) = (Cell::new(0u64), Cell::new(0u64));
    let seconds = duration.as_secs().max(1);
    let cpu = Cpu {
        scorer: scorer.pid(),
        db: db.to_vec(),
    };
    let (scorer_before, db_before) = cpu.read();
    let started = tokio::time::Instant::now();
    let proxy_loops = fleet
        .into_iter()
        .enumerate()
        .map(|(i, (mut sender, mut etag))| {
            let (authority, histogram, polls, not_modified) =
                (&authority, &histogram, &polls, &not_modified);
            async move {
                let phase = Duration::from_secs(1).mul_f64(i as f64 / proxies as f64);
                for second in 0..seconds {
                    let at = started + phase + Duration::from_secs(second);
                    tokio::time::sleep_until(at).await;
                    let (status, next) = poll(&mut sender, authority, Some(&etag)).await?;
                    match status {
                        304 => not_modified.set(not_modified.get() + 1),
                        200 => etag = next,
                        other => bail!("state poll answered {other}"),
                    }
                    polls.set(polls.get() + 1);
                    let micros = u64::try_from(at.elapsed().as_micros()).unwrap_or(u64::MAX);
                    let _ = histogram.borrow_mut().record(micros.max(1));
                }
                anyhow::Ok(())
            }
        });
    for result in futures::future::join_all(proxy_loops).await {
        result?;
    }
    let wall = started.elapsed().as_secs_f64();
    let (scorer_after, db_after) = cpu.read();
    let latency = Latency::of(&histogram.borrow());
    Ok(PollFigures {
        polls: polls.get(),
        not_modified: not_modified.get(),
        seconds: wall,
        scorer_cpu_s: scorer_after - scorer_before,
        db_cpu_s: cpu_between(&db_before, &db_after),
        p50_ms: latency.p50_ms,
        p99_ms: latency.p99_ms,
    })
}

/// The scorer's summary counts every request of every batch it applied.
pub async fn check_counts(scorer: &Scorer, ids: &Ids) -> Result<()> {
    let batches = ids.applied.borrow().get(&scorer.addr).copied().unwrap_or(0);
    let reply = HttpClient::new()
        .get(
            &format!("{}/v1/rollouts/{ROLLOUT}/telemetry", scorer.url()),
            &[],
        )
        .await?;
    let summary: Value = reply.json()?;
    let counted: u64 = summary["variants"]
        .as_array()
        .context("no variants in the summary")?
        .iter()
        .filter_map(|v| v["requests"].as_u64())
        .sum();
    if counted != batches * REQUESTS_PER_BATCH {
        bail!(
            "the summary counts {counted} requests; {batches} batches carried {}",
            batches * REQUESTS_PER_BATCH
        );
    }
    Ok(())
}
