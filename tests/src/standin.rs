//! Model stand-ins: small HTTP servers (HTTP/1.1 and h2c) that answer like a model
//! variant, say who they are, and count what reaches them.
//!
//! Requests can ask for a behaviour, so tests can produce every kind of response:
//! `x-test-status: 503` (HTTP status), `x-test-grpc-status: 14` (sent in trailers
//! after a 200), `x-test-grpc-trailers-only: 14` (status in headers that end the
//! stream, with no body),
//! `x-test-delay-ms: 20`, `x-test-score: 0.42` (the score in the answer). A test can
//! also turn a running stand-in into one that answers every request with an error
//! ([`StandIn::fail_with`]).

use std::collections::{BTreeSet, HashMap};
use std::convert::Infallible;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicU16, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use anyhow::Result;
use bytes::Bytes;
use http_body_util::combinators::BoxBody;
use http_body_util::{BodyExt, Full, StreamBody};
use hyper::body::{Frame, Incoming};
use hyper::header::{HeaderMap, HeaderValue};
use hyper::service::service_fn;
use hyper::{Request, Response};
use hyper_util::rt::{TokioExecutor, TokioIo};
use hyper_util::server::conn::auto;
use serde_json::json;
use tokio::net::TcpListener;
use tokio::task::JoinSet;

/// How a stand-in behaves when the request does not say otherwise: a latency drawn
/// uniformly from a range, and a share of 503 answers.
#[derive(Debug, Clone, Copy, Default)]
pub struct Behaviour {
    pub latency_ms: (u64, u64),
    pub error_rate: f64,
    pub scoring: Scoring,
    /// Answer without the `outputs` field (a model answer that cannot be read).
    pub omit_score: bool,
    /// A known share of slow answers: inputs (`{"inputs": [{"data": [id, ...]}]}`)
    /// whose `id % 100 < percent` wait `ms` longer before the answer.
    pub slow: Slow,
}

/// See [`Behaviour::slow`].
#[derive(Debug, Clone, Copy, Default)]
pub struct Slow {
    pub percent: u64,
    pub ms: u64,
}

/// Where the score of an answer comes from.
#[derive(Debug, Clone, Copy, Default)]
pub enum Scoring {
    /// `x-test-score` if the request has it, else random.
    #[default]
    Random,
    /// From the request body `{"inputs": [{"data": [id, score, ...]}]}`: the score as
    /// given, except that inputs whose `id % 100 < flip_percent` get `1 - score`. Two
    /// stand-ins that differ in `flip_percent` disagree on a known share of inputs.
    Echo { flip_percent: u64 },
}

/// What a stand-in saw.
#[derive(Debug, Default)]
pub struct Seen {
    requests: AtomicU64,
    /// Requests marked as shadow copies (`x-outrider-shadow`).
    shadow_copies: AtomicU64,
    /// Bytes of request bodies received.
    body_bytes: AtomicU64,
    /// Requests that still carried an override header (the filter should strip it).
    override_headers: AtomicU64,
    routing_values: Mutex<HashMap<String, u64>>,
    /// The names of the headers that shadow copies carried.
    shadow_header_names: Mutex<BTreeSet<String>>,
}

pub struct StandIn {
    pub name: String,
    pub addr: SocketAddr,
    seen: Arc<Seen>,
    /// When not 0, the status of every answer (see [`StandIn::fail_with`]).
    forced_status: Arc<AtomicU16>,
    server: tokio::task::JoinHandle<()>,
}

impl StandIn {
    /// Starts a stand-in on a free loopback port.
    pub async fn start(name: &str) -> Result<Self> {
        Self::start_on(
            name,
            SocketAddr::from(([127, 0, 0, 1], 0)),
            Behaviour::default(),
        )
        .await
    }

    pub async fn start_on(name: &str, addr: SocketAddr, behaviour: Behaviour) -> Result<Self> {
        let listener = TcpListener::bind(addr).await?;
        let addr = listener.local_addr()?;
        let seen = Arc::new(Seen::default());
        let forced_status = Arc::new(AtomicU16::new(0));
        let state = Arc::new(State {
            name: name.to_owned(),
            seen: seen.clone(),
            forced_status: forced_status.clone(),
            behaviour,
        });
        let server = tokio::spawn(async move {
            // Dropping the set (when the accept loop is aborted) ends every connection.
            let mut connections = JoinSet::new();
            loop {
                let Ok((stream, _)) = listener.accept().await else {
                    continue;
                };
                let _ = stream.set_nodelay(true);
                let state = state.clone();
                connections.spawn(async move {
                    let service = service_fn(move |req| {
                        let state = state.clone();
                        async move { Ok::<_, Infallible>(state.answer(req).await) }
                    });
                    let _ = auto::Builder::new(TokioExecutor::new())
                        .serve_connection(TokioIo::new(stream), service)
                        .await;
                });
                while connections.try_join_next().is_some() {}
            }
        });
        Ok(Self {
            name: name.to_owned(),
            addr,
            seen,
            forced_status,
            server,
        })
    }

    /// From now on every answer has `status` (a variant that starts failing mid-run),
    /// whatever the request asks for; 0 goes back to the usual behaviour.
    pub fn fail_with(&self, status: u16) {
        self.forced_status.store(status, Ordering::Relaxed);
    }

    pub fn requests(&self) -> u64 {
        self.seen.requests.load(Ordering::Relaxed)
    }

    pub fn shadow_copies(&self) -> u64 {
        self.seen.shadow_copies.load(Ordering::Relaxed)
    }

    pub fn body_bytes(&self) -> u64 {
        self.seen.body_bytes.load(Ordering::Relaxed)
    }

    pub fn override_headers_seen(&self) -> u64 {
        self.seen.override_headers.load(Ordering::Relaxed)
    }

    /// The names of the headers that shadow copies (`x-outrider-shadow`) carried, in
    /// any of them.
    pub fn shadow_header_names(&self) -> BTreeSet<String> {
        self.seen
            .shadow_header_names
            .lock()
            .map(|m| m.clone())
            .unwrap_or_default()
    }

    /// How many requests arrived with each value of `x-outrider-variant`.
    pub fn routing_values(&self) -> HashMap<String, u64> {
        self.seen
            .routing_values
            .lock()
            .map(|m| m.clone())
            .unwrap_or_default()
    }
}

impl Drop for StandIn {
    fn drop(&mut self) {
        self.server.abort();
    }
}

struct State {
    name: String,
    seen: Arc<Seen>,
    forced_status: Arc<AtomicU16>,
    behaviour: Behaviour,
}

type Body = BoxBody<Bytes, Infallible>;

/// The id of an input: `{"inputs": [{"data": [id, ...]}]}`.
fn input_id(input: &[u8]) -> Option<u64> {
    let body: serde_json::Value = serde_json::from_slice(input).ok()?;
    body["inputs"][0]["data"][0].as_u64()
}

/// The score [`Scoring::Echo`] gives an input.
fn echo_score(input: &[u8], flip_percent: u64) -> Option<f64> {
    let body: serde_json::Value = serde_json::from_slice(input).ok()?;
    let data = &body["inputs"][0]["data"];
    let id = data[0].as_u64()?;
    let score = data[1].as_f64()?;
    Some(if id % 100 < flip_percent {
        1.0 - score
    } else {
        score
    })
}

fn header<'a, B>(req: &'a Request<B>, name: &str) -> Option<&'a str> {
    req.headers().get(name).and_then(|v| v.to_str().ok())
}

impl State {
    async fn answer(&self, req: Request<Incoming>) -> Response<Body> {
        self.seen.requests.fetch_add(1, Ordering::Relaxed);
        if req.headers().contains_key("x-outrider-override") {
            self.seen.override_headers.fetch_add(1, Ordering::Relaxed);
        }
        if req.headers().contains_key("x-outrider-shadow") {
            self.seen.shadow_copies.fetch_add(1, Ordering::Relaxed);
            if let Ok(mut names) = self.seen.shadow_header_names.lock() {
                names.extend(req.headers().keys().map(|k| k.as_str().to_owned()));
            }
        }
        let routing = header(&req, "x-outrider-variant").unwrap_or("").to_owned();
        if let Ok(mut values) = self.seen.routing_values.lock() {
            *values.entry(routing.clone()).or_default() += 1;
        }
        let (parts, incoming) = req.into_parts();
        let req = Request::from_parts(parts, ());
        let input = incoming
            .collect()
            .await
            .map(|c| c.to_bytes())
            .unwrap_or_default();
        self.seen
            .body_bytes
            .fetch_add(input.len() as u64, Ordering::Relaxed);

        let (low, high) = self.behaviour.latency_ms;
        let delay = header(&req, "x-test-delay-ms")
            .and_then(|v| v.parse().ok())
            .unwrap_or_else(|| {
                if high > low {
                    fastrand::u64(low..=high)
                } else {
                    low
                }
            });
        let slow = self.behaviour.slow;
        let delay = delay
            + if slow.percent > 0 && input_id(&input).is_some_and(|id| id % 100 < slow.percent) {
                slow.ms
            } else {
                0
            };
        if delay > 0 {
            tokio::time::sleep(Duration::from_millis(delay)).await;
        }
        let forced = self.forced_status.load(Ordering::Relaxed);
        let status = Some(forced)
            .filter(|s| *s != 0)
            .or_else(|| header(&req, "x-test-status").and_then(|v| v.parse().ok()))
            .unwrap_or_else(|| {
                if self.behaviour.error_rate > 0.0 && fastrand::f64() < self.behaviour.error_rate {
                    503
                } else {
                    200
                }
            });

        // What a model would answer, plus who answered.
        let score = match self.behaviour.scoring {
            Scoring::Echo { flip_percent } => echo_score(&input, flip_percent),
            Scoring::Random => header(&req, "x-test-score").and_then(|v| v.parse::<f64>().ok()),
        }
        .unwrap_or_else(fastrand::f64);
        let mut answer = json!({
            "model_name": self.name,
            "served_by": self.name,
            "routing_header": routing,
            "outputs": [{"name": "score", "shape": [1], "datatype": "FP64", "data": [score]}]
        });
        if self.behaviour.omit_score {
            answer.as_object_mut().map(|a| a.remove("outputs"));
        }
        let body = answer.to_string();

        let builder = Response::builder()
            .status(status)
            .header("x-served-by", &self.name)
            .header("content-type", "application/json");
        if let Some(code) = header(&req, "x-test-grpc-trailers-only") {
            // A gRPC trailers-only response: the status in headers that end the stream.
            let response = builder
                .header("grpc-status", code)
                .body(Full::new(Bytes::new()).boxed());
            return response.unwrap_or_else(|_| Response::new(Full::new(Bytes::new()).boxed()));
        }
        let body: Body =
            match header(&req, "x-test-grpc-status").and_then(|v| HeaderValue::from_str(v).ok()) {
                Some(code) => {
                    let mut trailers = HeaderMap::new();
                    trailers.insert("grpc-status", code);
                    let frames = vec![
                        Ok::<_, Infallible>(Frame::data(Bytes::from(body))),
                        Ok(Frame::trailers(trailers)),
                    ];
                    StreamBody::new(futures::stream::iter(frames)).boxed()
                }
                None => Full::new(Bytes::from(body)).boxed(),
            };
        builder
            .body(body)
            .unwrap_or_else(|_| Response::new(Full::new(Bytes::new()).boxed()))
    }
}
