//! One HTTP stream: assign it a variant on the request, record the outcome on the
//! response; for a sampled request, read its features and score as the bodies stream
//! by; for a mirrored one, copy it to the shadow desk and read the primary's
//! prediction for the comparison. Nothing here holds the stream back.

use std::rc::Rc;

use outrider_filter_logic::Via;
use outrider_filter_logic::response::{StatusClass, grpc_error};
use outrider_filter_logic::shadow::{Answer, SHADOW_HEADER, forwarded, read_score};
use outrider_filter_logic::telemetry::{BoundedBody, features, score};
use outrider_protocol::{Sample, ShadowSkip};
use proxy_wasm::hostcalls;
use proxy_wasm::traits::{Context, HttpContext};
use proxy_wasm::types::{Action, BufferType, MapType};

use crate::host::{self, RequestHeaderMap};
use crate::root::{Active, Worker};
use crate::shadow::{Event, Job};

/// A sampled request on its way: what is known so far.
struct Draft {
    sample: Sample,
    request_body: BoundedBody,
    response_body: BoundedBody,
}

/// Copies of this request on their way to shadows.
struct Mirror {
    /// (pair, shadow) for every shadow the request is copied to.
    pairs: Vec<(u64, usize)>,
    headers: Vec<(String, String)>,
    body: BoundedBody,
    /// The largest body any of the shadows takes.
    body_limit: usize,
    submitted: bool,
    /// The primary's answer, read for the comparisons.
    response: BoundedBody,
    response_latency_ms: Option<u64>,
    answered: bool,
}

pub struct Request {
    active: Option<Rc<Active>>,
    worker: Rc<Worker>,
    /// Set once assigned; a response is only recorded for an assigned request.
    variant: Option<usize>,
    started_nanos: u64,
    grpc_error_seen: bool,
    draft: Option<Box<Draft>>,
    mirror: Option<Box<Mirror>>,
}

impl Request {
    pub fn new(active: Option<Rc<Active>>, worker: Rc<Worker>) -> Self {
        Self {
            active,
            worker,
            variant: None,
            started_nanos: 0,
            grpc_error_seen: false,
            draft: None,
            mirror: None,
        }
    }

    fn record_grpc_status(&mut self, map: MapType) {
        let (Some(active), Some(variant)) = (&self.active, self.variant) else {
            return;
        };
        if self.grpc_error_seen {
            return;
        }
        if let Some(bucket) = host::header(map, "grpc-status")
            .as_deref()
            .and_then(grpc_error)
        {
            self.grpc_error_seen = true;
            active.stats.grpc_error(&active.rollout, variant, bucket);
            self.worker.record(|t| t.grpc_error(variant));
        }
    }

    fn sticky_key(active: &Active) -> Option<String> {
        let sticky = &active.rollout.sticky_key;
        host::header(MapType::HttpRequestHeaders, sticky.header_name())
            .and_then(|value| sticky.key_from(&value).map(str::to_owned))
    }

    /// Starts a sample if this request is drawn.
    fn maybe_sample(&mut self, active: &Active, variant: &str) {
        let Some(rule) = &active.rollout.telemetry else {
            return;
        };
        if rule.rate <= 0.0 || self.worker.random.next_point() >= rule.rate {
            return;
        }
        self.draft = Some(Box::new(Draft {
            sample: Sample {
                variant: variant.to_owned(),
                at_ms: host::now_nanos() / 1_000_000,
                request_id: host::header(MapType::HttpRequestHeaders, "x-request-id"),
                user_key: Self::sticky_key(active),
                features: Default::default(),
                score: None,
            },
            request_body: BoundedBody::default(),
            response_body: BoundedBody::default(),
        }));
    }

    /// Completes the sample once the response is over.
    fn finish_sample(&mut self) {
        let (Some(active), Some(mut draft)) = (self.active.clone(), self.draft.take()) else {
            return;
        };
        let Some(rule) = &active.rollout.telemetry else {
            return;
        };
        if rule.reads_request_body() {
            match draft.request_body.complete() {
                Some(body) => draft.sample.features = features(body, &rule.features),
                None => return active.stats.sample("skipped"),
            }
        }
        if let Some(pointer) = &rule.score {
            match draft.response_body.complete() {
                Some(body) => draft.sample.score = score(body, pointer),
                None => return active.stats.sample("skipped"),
            }
        }
        let mut kept = false;
        self.worker.record(|t| {
            let before = t.dropped_samples();
            t.sample(draft.sample);
            kept = t.dropped_samples() == before;
        });
        active.stats.sample(if kept { "taken" } else { "dropped" });
    }

    /// Decides which shadows get a copy, and reserves a place for each.
    fn maybe_mirror(&mut self, active: &Active) {
        let shadows = &active.rollout.shadows;
        if shadows.is_empty() {
            return;
        }
        let key = if shadows.iter().any(|s| s.by_key) {
            Self::sticky_key(active)
        } else {
            None
        };
        let now_ms = host::now_nanos() / 1_000_000;
        let mut pairs = Vec::new();
        let mut events = Vec::new();
        let mut body_limit = 0;
        for (i, shadow) in shadows.iter().enumerate() {
            if !shadow.mirrors(key.as_deref(), || self.worker.random.next_point()) {
                continue;
            }
            let reserved = self.worker.desk.try_borrow_mut().ok().and_then(|mut desk| {
                desk.reserve(
                    i,
                    shadow.max_in_flight,
                    shadow.prediction.threshold,
                    &shadow.prediction.pointer,
                    now_ms,
                )
            });
            match reserved {
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
        self.worker.record_shadow(&active.shadow_stats, events);
        if pairs.is_empty() {
            return;
        }
        let routing = active.rollout.routing_header.as_str();
        let headers = hostcalls::get_map_bytes(MapType::HttpRequestHeaders)
            .unwrap_or_default()
            .into_iter()
            .filter(|(name, _)| forwarded(name, routing))
            .map(|(name, value)| (name, String::from_utf8_lossy(&value).into_owned()))
            .collect();
        self.mirror = Some(Box::new(Mirror {
            pairs,
            headers,
            body: BoundedBody::default(),
            body_limit,
            submitted: false,
            response: BoundedBody::default(),
            response_latency_ms: None,
            answered: false,
        }));
    }

    /// The request is complete: hand each copy to the desk (or drop those whose
    /// shadow does not take a body this large).
    fn submit_mirror(&mut self) {
        let (Some(active), Some(mirror)) = (self.active.clone(), self.mirror.as_mut()) else {
            return;
        };
        if mirror.submitted {
            return;
        }
        mirror.submitted = true;
        let body = mirror.body.complete().map(<[u8]>::to_vec);
        let mut events = Vec::new();
        let mut kept = Vec::new();
        let Ok(mut desk) = self.worker.desk.try_borrow_mut() else {
            return;
        };
        for (pair, i) in std::mem::take(&mut mirror.pairs) {
            let Some(shadow) = active.rollout.shadows.get(i) else {
                continue;
            };
            let body = match &body {
                Some(b) if b.len() <= shadow.max_body_bytes => b.clone(),
                _ => {
                    desk.abandon(pair);
                    events.push(Event::Skipped {
                        shadow: i,
                        reason: ShadowSkip::BodyTooLarge,
                    });
                    continue;
                }
            };
            let mut headers = mirror.headers.clone();
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
                body,
                timeout_ms: shadow.timeout_ms,
                max_body_bytes: shadow.max_body_bytes,
            });
            kept.push((pair, i));
        }
        drop(desk);
        mirror.pairs = kept;
        mirror.headers = Vec::new();
        mirror.body = BoundedBody::default();
        self.worker.record_shadow(&active.shadow_stats, events);
    }

    /// The primary's answer is complete: give its prediction to every pair.
    fn answer_mirror(&mut self) {
        let (Some(active), Some(mirror)) = (self.active.clone(), self.mirror.as_mut()) else {
            return;
        };
        if mirror.answered || !mirror.submitted {
            return;
        }
        mirror.answered = true;
        let latency_ms = mirror.response_latency_ms.unwrap_or(0);
        let body = mirror.response.complete();
        let mut events = Vec::new();
        if let Ok(mut desk) = self.worker.desk.try_borrow_mut() {
            for (pair, i) in &mirror.pairs {
                let pointer = active
                    .rollout
                    .shadows
                    .get(*i)
                    .map(|s| s.prediction.primary_pointer.as_str());
                let score = body.zip(pointer).and_then(|(b, p)| read_score(b, p));
                desk.primary(*pair, Answer { score, latency_ms }, &mut events);
            }
        }
        self.worker.record_shadow(&active.shadow_stats, events);
    }
}

impl Drop for Request {
    /// A stream that ends before its response (the client went away) leaves its
    /// shadow pairs without a primary: they are given up and counted.
    fn drop(&mut self) {
        let (Some(active), Some(mirror)) = (self.active.clone(), self.mirror.take()) else {
            return;
        };
        if mirror.answered {
            return;
        }
        let mut events = Vec::new();
        if let Ok(mut desk) = self.worker.desk.try_borrow_mut() {
            for (pair, _) in &mirror.pairs {
                if mirror.submitted {
                    desk.primary_gone(*pair, &mut events);
                } else {
                    desk.abandon(*pair);
                }
            }
        }
        self.worker.record_shadow(&active.shadow_stats, events);
    }
}

impl Context for Request {}

impl HttpContext for Request {
    fn on_http_request_headers(&mut self, _num_headers: usize, end_of_stream: bool) -> Action {
        let Some(active) = self.active.clone() else {
            return Action::Continue;
        };
        let rollout = &active.rollout;
        let random = &self.worker.random;
        let decision = rollout.decide(
            &RequestHeaderMap,
            || host::now_nanos() / 1_000_000_000,
            || random.next_point(),
        );
        let Some(variant) = rollout.variants.get(decision.variant) else {
            return Action::Continue;
        };

        // Overwrites whatever the client sent: only the filter chooses the variant.
        host::set_header(
            MapType::HttpRequestHeaders,
            &rollout.routing_header,
            &variant.header_value,
        );
        if let Some(rule) = &rollout.override_rule
            && (decision.via == Via::Override || decision.rejected_override.is_some())
        {
            // The token is for the filter, not for the model server.
            host::remove_header(MapType::HttpRequestHeaders, &rule.header);
        }
        if self.worker.has_clear_route_cache.get() && !host::clear_route_cache() {
            self.worker.has_clear_route_cache.set(false);
        }

        active
            .stats
            .request(decision.variant, decision.via, decision.rejected_override);
        self.worker.record(|t| t.request(decision.variant));
        self.variant = Some(decision.variant);
        self.started_nanos = host::now_nanos();
        self.maybe_sample(&active, &variant.name);
        self.maybe_mirror(&active);
        if end_of_stream {
            self.submit_mirror();
        }
        Action::Continue
    }

    fn on_http_request_body(&mut self, body_size: usize, end_of_stream: bool) -> Action {
        let Some(active) = self.active.clone() else {
            return Action::Continue;
        };
        let sampling = self.draft.is_some()
            && active
                .rollout
                .telemetry
                .as_ref()
                .is_some_and(|r| r.reads_request_body());
        let mirroring = self.mirror.as_ref().is_some_and(|m| !m.submitted);
        if sampling || mirroring {
            let chunk =
                host::body_chunk(BufferType::HttpRequestBody, body_size).unwrap_or_default();
            if let (Some(draft), Some(rule)) =
                (self.draft.as_mut(), active.rollout.telemetry.as_ref())
                && sampling
            {
                draft.request_body.push(&chunk, rule.max_body_bytes);
            }
            if let Some(mirror) = self.mirror.as_mut().filter(|_| mirroring) {
                mirror.body.push(&chunk, mirror.body_limit);
            }
        }
        if end_of_stream {
            self.submit_mirror();
        }
        Action::Continue
    }

    fn on_http_request_trailers(&mut self, _num_trailers: usize) -> Action {
        // A request with trailers ends with them, not with a last body chunk.
        self.submit_mirror();
        Action::Continue
    }

    fn on_http_response_headers(&mut self, _num_headers: usize, end_of_stream: bool) -> Action {
        let (Some(active), Some(variant)) = (self.active.clone(), self.variant) else {
            return Action::Continue;
        };
        let latency_ms = host::now_nanos().saturating_sub(self.started_nanos) / 1_000_000;
        let class = host::header(MapType::HttpResponseHeaders, ":status")
            .as_deref()
            .and_then(StatusClass::of_status);
        active.stats.response(variant, class, latency_ms);
        self.worker
            .record(|t| t.response(variant, class, latency_ms));
        if let (Some(name), Some(spec)) = (
            &active.rollout.response_header,
            active.rollout.variants.get(variant),
        ) {
            host::set_header(MapType::HttpResponseHeaders, name, &spec.name);
        }
        // gRPC "trailers-only" responses carry the status in headers that end the
        // stream; any other response has it in trailers, if at all.
        if end_of_stream {
            self.record_grpc_status(MapType::HttpResponseHeaders);
        }
        if let Some(mirror) = self.mirror.as_mut() {
            mirror.response_latency_ms = Some(latency_ms);
        }
        let reads_body = active
            .rollout
            .telemetry
            .as_ref()
            .is_some_and(|r| r.reads_response_body());
        if self.draft.is_some() && (end_of_stream || !reads_body) {
            self.finish_sample();
        }
        if end_of_stream {
            self.answer_mirror();
        }
        Action::Continue
    }

    fn on_http_response_body(&mut self, body_size: usize, end_of_stream: bool) -> Action {
        let Some(active) = self.active.clone() else {
            return Action::Continue;
        };
        let sampling = self.draft.is_some();
        let mirroring = self.mirror.as_ref().is_some_and(|m| !m.answered);
        if sampling || mirroring {
            let chunk =
                host::body_chunk(BufferType::HttpResponseBody, body_size).unwrap_or_default();
            if let (Some(draft), Some(rule)) =
                (self.draft.as_mut(), active.rollout.telemetry.as_ref())
            {
                draft.response_body.push(&chunk, rule.max_body_bytes);
            }
            if let Some(mirror) = self.mirror.as_mut().filter(|_| mirroring) {
                mirror.response.push(&chunk, mirror.body_limit);
            }
        }
        if end_of_stream {
            self.finish_sample();
            self.answer_mirror();
        }
        Action::Continue
    }

    fn on_http_response_trailers(&mut self, _num_trailers: usize) -> Action {
        self.record_grpc_status(MapType::HttpResponseTrailers);
        // A response with trailers ends with them, not with a last body chunk.
        if self.draft.is_some() {
            self.finish_sample();
        }
        self.answer_mirror();
        Action::Continue
    }
}
