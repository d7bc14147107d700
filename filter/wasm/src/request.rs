//! One HTTP stream: assign it a variant on the request, record the outcome on the
//! response, and, for a sampled request, read its features and score as the bodies
//! stream by (never holding them back).

use std::rc::Rc;

use outrider_filter_logic::Via;
use outrider_filter_logic::response::{StatusClass, grpc_error};
use outrider_filter_logic::telemetry::{BoundedBody, features, score};
use outrider_protocol::Sample;
use proxy_wasm::traits::{Context, HttpContext};
use proxy_wasm::types::{Action, BufferType, MapType};

use crate::host::{self, RequestHeaderMap};
use crate::root::{Active, Worker};

/// A sampled request on its way: what is known so far.
struct Draft {
    sample: Sample,
    request_body: BoundedBody,
    response_body: BoundedBody,
}

pub struct Request {
    active: Option<Rc<Active>>,
    worker: Rc<Worker>,
    /// Set once assigned; a response is only recorded for an assigned request.
    variant: Option<usize>,
    started_nanos: u64,
    grpc_error_seen: bool,
    draft: Option<Box<Draft>>,
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

    /// Starts a sample if this request is drawn.
    fn maybe_sample(&mut self, active: &Active, variant: &str) {
        let Some(rule) = &active.rollout.telemetry else {
            return;
        };
        if rule.rate <= 0.0 || self.worker.random.next_point() >= rule.rate {
            return;
        }
        let sticky = &active.rollout.sticky_key;
        let user_key = host::header(MapType::HttpRequestHeaders, sticky.header_name())
            .and_then(|value| sticky.key_from(&value).map(str::to_owned));
        self.draft = Some(Box::new(Draft {
            sample: Sample {
                variant: variant.to_owned(),
                at_ms: host::now_nanos() / 1_000_000,
                request_id: host::header(MapType::HttpRequestHeaders, "x-request-id"),
                user_key,
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
}

impl Context for Request {}

impl HttpContext for Request {
    fn on_http_request_headers(&mut self, _num_headers: usize, _end_of_stream: bool) -> Action {
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
        Action::Continue
    }

    fn on_http_request_body(&mut self, body_size: usize, _end_of_stream: bool) -> Action {
        let (Some(active), Some(draft)) = (&self.active, self.draft.as_mut()) else {
            return Action::Continue;
        };
        if let Some(rule) = active
            .rollout
            .telemetry
            .as_ref()
            .filter(|r| r.reads_request_body())
            && let Some(chunk) = host::body_chunk(BufferType::HttpRequestBody, body_size)
        {
            draft.request_body.push(&chunk, rule.max_body_bytes);
        }
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
        let reads_body = active
            .rollout
            .telemetry
            .as_ref()
            .is_some_and(|r| r.reads_response_body());
        if self.draft.is_some() && (end_of_stream || !reads_body) {
            self.finish_sample();
        }
        Action::Continue
    }

    fn on_http_response_body(&mut self, body_size: usize, end_of_stream: bool) -> Action {
        let (Some(active), Some(draft)) = (&self.active, self.draft.as_mut()) else {
            return Action::Continue;
        };
        if let Some(rule) = &active.rollout.telemetry
            && let Some(chunk) = host::body_chunk(BufferType::HttpResponseBody, body_size)
        {
            draft.response_body.push(&chunk, rule.max_body_bytes);
        }
        if end_of_stream {
            self.finish_sample();
        }
        Action::Continue
    }

    fn on_http_response_trailers(&mut self, _num_trailers: usize) -> Action {
        self.record_grpc_status(MapType::HttpResponseTrailers);
        // A response with trailers ends with them, not with a last body chunk.
        if self.draft.is_some() {
            self.finish_sample();
        }
        Action::Continue
    }
}
