//! Load for benchmarks: closed-loop bursts (for CPU per request and throughput) and
//! open-loop traffic at a fixed rate (for latency), plus a process's CPU time.

use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use anyhow::{Context, Result, bail};
use bytes::Bytes;
use futures::StreamExt;
use hdrhistogram::Histogram;
use hyper::Method;
use serde_json::json;

use crate::client::HttpClient;

/// CPU time (user + system, all threads) a process has used, from `/proc/<pid>/stat`.
pub fn cpu_seconds(pid: u32) -> Result<f64> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat"))?;
    // Fields after the command name, which is in parentheses and may hold spaces.
    let rest = stat.rsplit_once(')').context("malformed /proc stat")?.1;
    let fields: Vec<&str> = rest.split_whitespace().collect();
    // utime and stime are fields 14 and 15 of the line, 12 and 13 after the name.
    let ticks: u64 = fields.get(11).context("utime")?.parse::<u64>()?
        + fields.get(12).context("stime")?.parse::<u64>()?;
    // SAFETY: sysconf has no preconditions.
    let per_second = unsafe { libc::sysconf(libc::_SC_CLK_TCK) };
    if per_second <= 0 {
        bail!("cannot read the clock tick rate");
    }
    Ok(ticks as f64 / per_second as f64)
}

/// Pins the calling thread (and the threads and processes it starts later) to one
/// CPU, so that on a small machine the load generator and Envoy do not share a core.
pub fn pin_to_cpu(cpu: usize) -> std::io::Result<()> {
    // SAFETY: the set is a plain bitmask initialised by CPU_ZERO before use.
    unsafe {
        let mut set: libc::cpu_set_t = std::mem::zeroed();
        libc::CPU_ZERO(&mut set);
        libc::CPU_SET(cpu, &mut set);
        if libc::sched_setaffinity(0, std::mem::size_of::<libc::cpu_set_t>(), &set) != 0 {
            return Err(std::io::Error::last_os_error());
        }
    }
    Ok(())
}

/// Sends `requests` GETs, `concurrency` at a time, each with its own `x-user-id`.
/// Returns the wall time; fails if any request did not get a 2xx.
pub async fn closed_loop(
    client: &HttpClient,
    url: &str,
    requests: usize,
    concurrency: usize,
    body: Option<&Bytes>,
) -> Result<Duration> {
    let started = Instant::now();
    let failures = futures::stream::iter(0..requests)
        .map(|i| async move {
            let key = format!("user-{i}");
            send(client, url, &key, body).await.map(|r| r.status < 300)
        })
        .buffer_unordered(concurrency)
        .filter(|ok| std::future::ready(!matches!(ok, Ok(true))))
        .count()
        .await;
    if failures > 0 {
        bail!("{failures} of {requests} requests to {url} failed");
    }
    Ok(started.elapsed())
}

/// One keyed request: a GET, or a POST of `body`.
async fn send(
    client: &HttpClient,
    url: &str,
    key: &str,
    body: Option<&Bytes>,
) -> Result<crate::client::Reply> {
    match body {
        Some(body) => {
            let headers = [("x-user-id", key), ("content-type", "application/json")];
            client
                .request(hyper::Method::POST, url, &headers, body.clone())
                .await
        }
        None => client.get(url, &[("x-user-id", key)]).await,
    }
}

/// Latency at a fixed request rate.
#[derive(Debug, Clone, Copy)]
pub struct Latency {
    pub p50_ms: f64,
    pub p99_ms: f64,
}

impl Latency {
    /// Quantiles of a histogram of microseconds.
    pub fn of(histogram: &Histogram<u64>) -> Self {
        Self {
            p50_ms: histogram.value_at_quantile(0.50) as f64 / 1000.0,
            p99_ms: histogram.value_at_quantile(0.99) as f64 / 1000.0,
        }
    }
}

/// What a fixed-rate run observed: latencies in microseconds, and failures.
pub struct OpenLoop {
    pub micros: Histogram<u64>,
    pub errors: u64,
}

/// An empty histogram of microseconds (1 µs to 60 s, 3 significant digits).
pub fn latency_histogram() -> Result<Histogram<u64>> {
    Ok(Histogram::new_with_bounds(1, 60_000_000, 3)?)
}

/// Sends GETs at `rate` per second for `duration`, open loop: each request leaves at
/// its scheduled time whatever the others are doing, and its latency counts from that
/// time, so a stall shows up in the figures instead of slowing the load down.
pub async fn open_loop(
    client: &HttpClient,
    url: &str,
    rate: u32,
    duration: Duration,
    body: Option<&Bytes>,
) -> Result<OpenLoop> {
    let histogram = Arc::new(Mutex::new(latency_histogram()?));
    let errors = Arc::new(AtomicU64::new(0));
    let total = (f64::from(rate) * duration.as_secs_f64()) as u64;
    let interval = Duration::from_secs_f64(1.0 / f64::from(rate.max(1)));
    let started = tokio::time::Instant::now();
    let mut tasks = tokio::task::JoinSet::new();
    for i in 0..total {
        let at = started + interval.mul_f64(i as f64);
        tokio::time::sleep_until(at).await;
        let (client, url, histogram, errors, body) = (
            client.clone(),
            url.to_owned(),
            histogram.clone(),
            errors.clone(),
            body.cloned(),
        );
        tasks.spawn(async move {
            let key = format!("user-{i}");
            match send(&client, &url, &key, body.as_ref()).await {
                Ok(reply) if reply.status < 300 => {
                    let micros = u64::try_from(at.elapsed().as_micros()).unwrap_or(u64::MAX);
                    if let Ok(mut h) = histogram.lock() {
                        let _ = h.record(micros.max(1));
                    }
                }
                _ => {
                    errors.fetch_add(1, Ordering::Relaxed);
                }
            }
        });
    }
    while tasks.join_next().await.is_some() {}
    let micros = histogram
        .lock()
        .map_err(|_| anyhow::anyhow!("histogram lock poisoned"))?
        .clone();
    Ok(OpenLoop {
        micros,
        errors: errors.load(Ordering::Relaxed),
    })
}

/// The median of some figures (the mean of the middle two for an even count).
pub fn median(values: &[f64]) -> f64 {
    let mut sorted = values.to_vec();
    sorted.sort_by(f64::total_cmp);
    match sorted.len() {
        0 => f64::NAN,
        n if n % 2 == 1 => sorted[n / 2],
        n => (sorted[n / 2 - 1] + sorted[n / 2]) / 2.0,
    }
}

/// One request: when it left, its status (0: no answer), who served it.
pub struct Outcome {
    pub sent: Instant,
    pub status: u16,
    pub served_by: String,
}

/// Keyed inference requests (`POST`, OIP JSON) at a fixed rate until stopped, each a
/// new user (`x-user-id`), on two clients so both of a two-worker Envoy serve. Each
/// carries an id and a score skewed low, as a fraud model's are, which Echo
/// stand-ins answer with.
pub struct Traffic {
    outcomes: Arc<Mutex<Vec<Outcome>>>,
    stop: Arc<AtomicBool>,
    task: tokio::task::JoinHandle<()>,
}

impl Traffic {
    pub fn start(url: String, rate: u64) -> Self {
        let outcomes = Arc::new(Mutex::new(Vec::new()));
        let stop = Arc::new(AtomicBool::new(false));
        let task = {
            let (outcomes, stop) = (outcomes.clone(), stop.clone());
            tokio::spawn(async move {
                // Two clients, two sets of connections, so both Envoy workers serve.
                let clients = [HttpClient::new(), HttpClient::new()];
                let mut tick = tokio::time::interval(Duration::from_micros(1_000_000 / rate));
                let mut requests = tokio::task::JoinSet::new();
                let mut i = 0u64;
                while !stop.load(Ordering::Relaxed) {
                    tick.tick().await;
                    i += 1;
                    let client = clients[(i % 2) as usize].clone();
                    let (url, outcomes) = (url.clone(), outcomes.clone());
                    requests.spawn(async move {
                        let sent = Instant::now();
                        let x = ((i * 37) % 100) as f64 / 100.0;
                        let body = json!({"inputs": [{"name": "tx", "datatype": "FP64",
                            "shape": [1, 2], "data": [i, x * x * 0.6]}]});
                        let key = format!("traffic-user-{i}");
                        let reply = client
                            .request(
                                Method::POST,
                                &url,
                                &[("x-user-id", &key), ("content-type", "application/json")],
                                Bytes::from(body.to_string()),
                            )
                            .await;
                        let outcome = match reply {
                            Ok(r) => Outcome {
                                sent,
                                status: r.status,
                                served_by: r.header("x-served-by").unwrap_or("").to_owned(),
                            },
                            Err(_) => Outcome {
                                sent,
                                status: 0,
                                served_by: String::new(),
                            },
                        };
                        if let Ok(mut o) = outcomes.lock() {
                            o.push(outcome);
                        }
                    });
                }
                while requests.join_next().await.is_some() {}
            })
        };
        Self {
            outcomes,
            stop,
            task,
        }
    }

    pub async fn finish(self) -> Vec<Outcome> {
        self.stop.store(true, Ordering::Relaxed);
        let _ = self.task.await;
        self.outcomes
            .lock()
            .map(|mut o| std::mem::take(&mut *o))
            .unwrap_or_default()
    }
}

impl Outcome {
    /// A 5xx, or no answer at all.
    pub fn is_bad(&self) -> bool {
        self.status == 0 || self.status >= 500
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn medians() {
        assert_eq!(median(&[3.0, 1.0, 2.0]), 2.0);
        assert_eq!(median(&[4.0, 1.0, 3.0, 2.0]), 2.5);
        assert!(median(&[]).is_nan());
    }

    #[test]
    fn cpu_time_of_this_process_grows() {
        let pid = std::process::id();
        let before = cpu_seconds(pid).unwrap();
        let mut x = 0u64;
        let started = Instant::now();
        while started.elapsed() < Duration::from_millis(200) {
            x = x.wrapping_mul(31).wrapping_add(7);
        }
        std::hint::black_box(x);
        assert!(cpu_seconds(pid).unwrap() > before);
    }
}
