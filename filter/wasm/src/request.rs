//! One HTTP stream: assign it a variant on the request, record the outcome on the
//! response.

use std::rc::Rc;

use outrider_filter_logic::Via;
use outrider_filter_logic::response::{StatusClass, grpc_error};
use proxy_wasm::traits::{Context, HttpContext};
use proxy_wasm::types::{Action, MapType};

use crate::host::{self, RequestHeaderMap};
use crate::root::{Active, Worker};

pub struct Request {
    active: Option<Rc<Active>>,
    worker: Rc<Worker>,
    /// Set once assigned; a response is only recorded for an assigned request.
    variant: Option<usize>,
    started_nanos: u64,
    grpc_error_seen: bool,
}

impl Request {
    pub fn new(active: Option<Rc<Active>>, worker: Rc<Worker>) -> Self {
        Self {
            active,
            worker,
            variant: None,
            started_nanos: 0,
            grpc_error_seen: false,
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
        }
    }
}

impl Context for Request {}

impl HttpContext for Request {
    fn on_http_request_headers(&mut self, _num_headers: usize, _end_of_stream: bool) -> Action {
        let Some(active) = &self.active else {
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
        self.variant = Some(decision.variant);
        self.started_nanos = host::now_nanos();
        Action::Continue
    }

    fn on_http_response_headers(&mut self, _num_headers: usize, end_of_stream: bool) -> Action {
        let (Some(active), Some(variant)) = (&self.active, self.variant) else {
            return Action::Continue;
        };
        let latency_ms = host::now_nanos().saturating_sub(self.started_nanos) / 1_000_000;
        let class = host::header(MapType::HttpResponseHeaders, ":status")
            .as_deref()
            .and_then(StatusClass::of_status);
        active.stats.response(variant, class, latency_ms);
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
        Action::Continue
    }

    fn on_http_response_trailers(&mut self, _num_trailers: usize) -> Action {
        self.record_grpc_status(MapType::HttpResponseTrailers);
        Action::Continue
    }
}
