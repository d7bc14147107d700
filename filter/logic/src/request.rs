//! One HTTP stream, from its request headers to its end. On the request headers it is
//! assigned a variant and its plan is fixed: whether it is sampled for the scorer,
//! which shadows get a copy, and so which bodies it reads and how much of them. The
//! callbacks after that only carry the plan out. Nothing here holds the stream back.

use std::rc::Rc;

use outrider_protocol::{Sample, ShadowSkip, StatusClass};

use crate::body::BoundedBody;
use crate::config::{Rollout, SampleRule};
use crate::decision::{Decision, HostRequestHeaders, Via};
use crate::desk::{Event, Job, Reservation};
use crate::host::{Buffer, Host, Map};
use crate::json_body;
use crate::response::grpc_error;
use crate::shadow::{Answer, SHADOW_HEADER, forwarded};
use crate::worker::{Active, Worker};

/// A stream the filter passes through untouched (no configuration), or one it assigned.
#[derive(Default)]
pub struct Request {
    active: Option<Rc<Active>>,
    plan: Option<Plan>,
}

/// What an assigned request does, fixed when it is assigned.
struct Plan {
    variant: usize,
    started_nanos: u64,
    sample: Option<Box<Sample>>,
    mirror: Option<Box<Mirror>>,
    /// Bytes of each body to keep (0: the body is not read).
    request_limit: usize,
    response_limit: usize,
    request_body: BoundedBody,
    response_body: BoundedBody,
    request_done: bool,
    response_done: bool,
    grpc_error_seen: bool,
    /// When the response's headers arrived, ms since the epoch.
    responded_ms: u64,
}

/// Copies of this request on their way to shadows.
struct Mirror {
    /// (pair, shadow) for every shadow the request is copied to.
    pairs: Vec<(u64, usize)>,
    headers: Vec<(String, String)>,
    /// The largest body any of the shadows takes; a larger answer of the primary has
    /// no prediction for them.
    body_limit: usize,
    submitted: bool,
    latency_ms: u64,
    answered: bool,
}

impl Request {
    pub fn new(active: Option<Rc<Active>>) -> Self {
        Self { active, plan: None }
    }

    pub fn on_request_headers(&mut self, host: &impl Host, end_of_stream: bool) {
        let Some(active) = self.active.clone() else {
            return;
        };
        let (rollout, worker) = (&active.rollout, &active.worker);
        // One clock read: the request's start, for its latency, its sample's time and
        // an override token's expiry.
        let started_nanos = host.now_nanos();
        let mut decision = rollout.decide(
            &HostRequestHeaders(host),
            || started_nanos / 1_000_000_000,
            || worker.random.next_point(),
        );
        // A variant a guardrail tripped on this Envoy gets none of these requests.
        worker.route(&mut decision);
        let Some(variant) = rollout.variants.get(decision.variant) else {
            return;
        };
        // Overwrites whatever the client sent: only the filter chooses the variant. Envoy
        // selects the route again when a request header changes (checked in Envoy
        // 1.40; `envoy/bench/e-passthrough-sets-header.yaml` measures what it costs).
        host.set_header(
            Map::RequestHeaders,
            &rollout.routing_header,
            &variant.header_value,
        );
        if let Some(rule) = &rollout.override_rule
            && (decision.via == Via::Override || decision.rejected_override.is_some())
        {
            // The token is for the filter, not for the model server.
            host.remove_header(Map::RequestHeaders, &rule.header);
        }
        worker.record(|r| r.request(&decision));
        self.plan = Some(Plan::new(host, &active, &decision, started_nanos));
        if end_of_stream {
            self.request_complete(host);
        }
    }

    pub fn on_request_body(&mut self, host: &impl Host, size: usize, end_of_stream: bool) {
        let Some(plan) = self.plan.as_mut() else {
            return;
        };
        if plan.request_limit > 0 && !plan.request_done {
            let chunk = host.buffer(Buffer::RequestBody, size).unwrap_or_default();
            plan.request_body.push(&chunk, plan.request_limit);
        }
        if end_of_stream {
            self.request_complete(host);
        }
    }

    /// A request with trailers ends with them, not with a last body chunk.
    pub fn on_request_trailers(&mut self, host: &impl Host) {
        self.request_complete(host);
    }

    pub fn on_response_headers(&mut self, host: &impl Host, end_of_stream: bool) {
        let (Some(active), Some(plan)) = (&self.active, self.plan.as_mut()) else {
            return;
        };
        let now_nanos = host.now_nanos();
        let latency_ms = now_nanos.saturating_sub(plan.started_nanos) / 1_000_000;
        plan.responded_ms = now_nanos / 1_000_000;
        let class = host
            .header(Map::ResponseHeaders, ":status")
            .as_deref()
            .and_then(StatusClass::of_status);
        let variant = plan.variant;
        active
            .worker
            .response(host, variant, class, latency_ms, plan.responded_ms);
        if let (Some(name), Some(spec)) = (
            &active.rollout.response_header,
            active.rollout.variants.get(variant),
        ) {
            host.set_header(Map::ResponseHeaders, name, &spec.name);
        }
        if let Some(mirror) = plan.mirror.as_mut() {
            mirror.latency_ms = latency_ms;
        }
        // gRPC "trailers-only" responses carry the status in headers that end the
        // stream; any other response has it in trailers, if at all.
        if end_of_stream {
            self.record_grpc_status(host, Map::ResponseHeaders);
        }
        if end_of_stream || self.plan.as_ref().is_some_and(|p| p.response_limit == 0) {
            self.response_complete(host);
        }
    }

    pub fn on_response_body(&mut self, host: &impl Host, size: usize, end_of_stream: bool) {
        let Some(plan) = self.plan.as_mut() else {
            return;
        };
        if plan.response_limit > 0 && !plan.response_done {
            let chunk = host.buffer(Buffer::ResponseBody, size).unwrap_or_default();
            plan.response_body.push(&chunk, plan.response_limit);
        }
        if end_of_stream {
            self.response_complete(host);
        }
    }

    /// A response with trailers ends with them, not with a last body chunk.
    pub fn on_response_trailers(&mut self, host: &impl Host) {
        self.record_grpc_status(host, Map::ResponseTrailers);
        self.response_complete(host);
    }

    /// The stream is over. One that ended before its response (the client went away)
    /// leaves its shadow pairs without a primary: they are given up and counted.
    pub fn on_done(&mut self, host: &impl Host) {
        let (Some(active), Some(plan)) = (&self.active, self.plan.as_mut()) else {
            return;
        };
        let Some(mirror) = plan.mirror.take().filter(|m| !m.answered) else {
            return;
        };
        active.worker.at_desk(host, |desk, events| {
            for (pair, _) in &mirror.pairs {
                if mirror.submitted {
                    desk.primary_gone(*pair, events);
                } else {
                    desk.abandon(*pair);
                }
            }
        });
    }

    fn record_grpc_status(&mut self, host: &impl Host, map: Map) {
        let (Some(active), Some(plan)) = (&self.active, self.plan.as_mut()) else {
            return;
        };
        if plan.grpc_error_seen {
            return;
        }
        if let Some(bucket) = host
            .header(map, "grpc-status")
            .as_deref()
            .and_then(grpc_error)
        {
            plan.grpc_error_seen = true;
            active
                .worker
                .grpc_error(host, plan.variant, bucket, plan.responded_ms);
        }
    }

    /// The request is complete: read the sample's features, and hand each copy to the
    /// shadow desk (or drop those whose shadow does not take a body this large).
    fn request_complete(&mut self, host: &impl Host) {
        let (Some(active), Some(plan)) = (&self.active, self.plan.as_mut()) else {
            return;
        };
        if plan.request_done {
            return;
        }
        plan.request_done = true;
        let body = std::mem::take(&mut plan.request_body);
        let rollout = &active.rollout;
        let reads_features = rollout
            .telemetry
            .as_ref()
            .filter(|rule| rule.reads_request_body());
        if let Some(rule) = reads_features.filter(|_| plan.sample.is_some()) {
            match body.within(rule.max_body_bytes) {
                Some(bytes) => {
                    if let Some(sample) = plan.sample.as_mut() {
                        sample.features = json_body::features(bytes, &rule.features);
                    }
                }
                None => plan.sample_skipped(&active.worker),
            }
        }
        if let Some(mirror) = plan.mirror.as_mut() {
            mirror.submit(host, rollout, &active.worker, &body);
        }
    }

    /// The response is complete: read the sample's score and the primary's prediction.
    fn response_complete(&mut self, host: &impl Host) {
        let (Some(active), Some(plan)) = (&self.active, self.plan.as_mut()) else {
            return;
        };
        if plan.response_done {
            return;
        }
        plan.response_done = true;
        let body = std::mem::take(&mut plan.response_body);
        if let Some(mut sample) = plan.sample.take() {
            let sample = match &active.rollout.telemetry {
                Some(SampleRule {
                    score: Some(pointer),
                    max_body_bytes,
                    ..
                }) => body.within(*max_body_bytes).map(|bytes| {
                    sample.score = json_body::score(bytes, pointer);
                    *sample
                }),
                _ => Some(*sample),
            };
            active.worker.record(|r| r.sample(sample));
        }
        if let Some(mirror) = plan.mirror.as_mut() {
            mirror.answer(host, &active.rollout, &active.worker, &body);
        }
    }
}

impl Plan {
    /// Decides what an assigned request will do: sample it, mirror it, read which bodies.
    fn new(host: &impl Host, active: &Active, decision: &Decision, started_nanos: u64) -> Self {
        let (rollout, worker) = (&active.rollout, &active.worker);
        let sample = rollout
            .telemetry
            .as_ref()
            .filter(|rule| rule.rate > 0.0 && worker.random.next_point() < rule.rate)
            .and_then(|_| rollout.variants.get(decision.variant))
            .map(|variant| {
                Box::new(Sample {
                    variant: variant.name.clone(),
                    at_ms: started_nanos / 1_000_000,
                    request_id: host.header(Map::RequestHeaders, "x-request-id"),
                    user_key: decision.sticky_key.clone(),
                    features: Default::default(),
                    score: None,
                })
            });
        let (mirror, mirror_limit) = Mirror::new(host, active, decision, started_nanos);
        let rule = rollout.telemetry.as_ref().filter(|_| sample.is_some());
        let sample_limit = |reads: bool| match rule {
            Some(rule) if reads => rule.max_body_bytes,
            _ => 0,
        };
        Self {
            variant: decision.variant,
            started_nanos,
            request_limit: sample_limit(rule.is_some_and(SampleRule::reads_request_body))
                .max(mirror_limit),
            response_limit: sample_limit(rule.is_some_and(SampleRule::reads_response_body))
                .max(mirror_limit),
            sample,
            mirror,
            request_body: BoundedBody::default(),
            response_body: BoundedBody::default(),
            request_done: false,
            response_done: false,
            grpc_error_seen: false,
            responded_ms: started_nanos / 1_000_000,
        }
    }

    /// The sample's body went over the limit: it is counted as skipped, not sent.
    fn sample_skipped(&mut self, worker: &Worker) {
        if self.sample.take().is_some() {
            worker.record(|r| r.sample(None));
        }
    }
}

impl Mirror {
    /// Decides which shadows get a copy and reserves a place for each; also returns how
    /// much of the bodies the copies need.
    fn new(
        host: &impl Host,
        active: &Active,
        decision: &Decision,
        started_nanos: u64,
    ) -> (Option<Box<Self>>, usize) {
        let (rollout, worker) = (&active.rollout, &active.worker);
        if rollout.shadows.is_empty() {
            return (None, 0);
        }
        let now_ms = started_nanos / 1_000_000;
        let key = decision.sticky_key.as_deref();
        let mut body_limit = 0;
        let pairs: Vec<(u64, usize)> = worker
            .at_desk(host, |desk, events| {
                let mut pairs = Vec::new();
                for (i, shadow) in rollout.shadows.iter().enumerate() {
                    if !shadow.mirrors(key, || worker.random.next_point()) {
                        continue;
                    }
                    let reservation = Reservation {
                        shadow: i,
                        cap: shadow.max_in_flight,
                        threshold: shadow.prediction.threshold,
                        pointer: &shadow.prediction.pointer,
                    };
                    match desk.reserve(reservation, now_ms) {
                        Some(pair) => {
                            pairs.push((pair, i));
                            body_limit = body_limit.max(shadow.max_body_bytes);
                        }
                        None => events.push(Event::Skipped {
                            shadow: i,
                            reason: ShadowSkip::InFlightCap,
                        }),
                    }
                }
                pairs
            })
            .unwrap_or_default();
        if pairs.is_empty() {
            return (None, 0);
        }
        let routing = rollout.routing_header.as_str();
        let headers = host
            .headers(Map::RequestHeaders)
            .into_iter()
            .filter(|(name, _)| forwarded(name, routing))
            .collect();
        let mirror = Self {
            pairs,
            headers,
            body_limit,
            submitted: false,
            latency_ms: 0,
            answered: false,
        };
        (Some(Box::new(mirror)), body_limit)
    }

    fn submit(&mut self, host: &impl Host, rollout: &Rollout, worker: &Worker, body: &BoundedBody) {
        if self.submitted {
            return;
        }
        self.submitted = true;
        let pairs = std::mem::take(&mut self.pairs);
        let headers = std::mem::take(&mut self.headers);
        self.pairs = worker
            .at_desk(host, |desk, events| {
                let mut kept = Vec::with_capacity(pairs.len());
                for (pair, i) in pairs {
                    let Some(shadow) = rollout.shadows.get(i) else {
                        continue;
                    };
                    let Some(body) = body.within(shadow.max_body_bytes) else {
                        desk.abandon(pair);
                        events.push(Event::Skipped {
                            shadow: i,
                            reason: ShadowSkip::BodyTooLarge,
                        });
                        continue;
                    };
                    let mut headers = headers.clone();
                    if let Some(authority) = &shadow.authority {
                        headers.retain(|(name, _)| name != ":authority");
                        headers.push((":authority".to_owned(), authority.clone()));
                    }
                    headers.push((SHADOW_HEADER.to_owned(), shadow.name.clone()));
                    desk.submit(Job {
                        pair,
                        shadow: i,
                        cluster: shadow.cluster.clone(),
                        headers,
                        body: body.to_vec(),
                        timeout_ms: shadow.timeout_ms,
                        max_body_bytes: shadow.max_body_bytes,
                    });
                    kept.push((pair, i));
                }
                kept
            })
            .unwrap_or_default();
    }

    /// The primary's answer is complete: give its prediction to every pair.
    fn answer(&mut self, host: &impl Host, rollout: &Rollout, worker: &Worker, body: &BoundedBody) {
        if self.answered || !self.submitted {
            return;
        }
        self.answered = true;
        let latency_ms = self.latency_ms;
        let body = body.within(self.body_limit);
        worker.at_desk(host, |desk, events| {
            for (pair, i) in &self.pairs {
                let pointer = rollout
                    .shadows
                    .get(*i)
                    .map(|s| s.prediction.primary_pointer.as_str());
                let score = body.zip(pointer).and_then(|(b, p)| json_body::score(b, p));
                desk.primary(*pair, Answer { score, latency_ms }, events);
            }
        });
    }
}
