//! A proxy-wasm HTTP filter that does nothing: every callback continues at once.
//! It measures what any wasm filter costs in Envoy (VM entry, context creation),
//! so that benchmarks can tell that apart from what the outrider filter adds.
//!
//! Its configuration is a list of words, each optional:
//!
//! - `NAME=VALUE`: set that request header and ask Envoy to pick the route again, as
//!   any filter that routes by a header must: what header routing itself costs;
//! - `keep_route`: with `NAME=VALUE`, do not ask (does Envoy re-select on its own?);
//! - `KIND*N`: make N extra host calls of one kind per request, to measure what one
//!   host call costs in Envoy's V8 (`outrider-bench hostcalls`). KIND is `time` (read
//!   the clock), `header` (read the request header `x-user-id`, which the benchmark
//!   sends: the host copies its value into the VM), `no_header` (read a header that
//!   is absent), `set_header`, `counter` (increment a counter), `histogram` (record a
//!   value), `status` (read `:status` on the response), `route` (`clear_route_cache`).

use std::rc::Rc;

use proxy_wasm::hostcalls;
use proxy_wasm::traits::{Context, HttpContext, RootContext};
use proxy_wasm::types::{Action, BufferType, ContextType, LogLevel, MapType, MetricType};

proxy_wasm::main! {{
    proxy_wasm::set_log_level(LogLevel::Warn);
    proxy_wasm::set_root_context(|_| Box::new(Passthrough::default()));
}}

/// What each request does, from the configuration.
#[derive(Default)]
struct Plan {
    /// The request header to set, if any.
    header: Option<(String, String)>,
    keep_route: bool,
    /// Extra host calls per request.
    time: u32,
    header_reads: u32,
    absent_header_reads: u32,
    header_writes: u32,
    counter: Option<(u32, u32)>,
    histogram: Option<(u32, u32)>,
    status_reads: u32,
    route_clears: u32,
}

#[derive(Default)]
struct Passthrough {
    plan: Rc<Plan>,
}

fn metric(kind: MetricType, name: &str) -> u32 {
    hostcalls::define_metric(kind, name).unwrap_or_default()
}

fn parse(config: &str) -> Plan {
    let mut plan = Plan::default();
    for word in config.split_whitespace() {
        if word == "keep_route" {
            plan.keep_route = true;
        } else if let Some((kind, n)) = word.split_once('*') {
            let n = n.parse().unwrap_or(0);
            match kind {
                "time" => plan.time = n,
                "header" => plan.header_reads = n,
                "no_header" => plan.absent_header_reads = n,
                "set_header" => plan.header_writes = n,
                "counter" => {
                    plan.counter = Some((metric(MetricType::Counter, "passthrough.calls"), n))
                }
                "histogram" => {
                    plan.histogram = Some((metric(MetricType::Histogram, "passthrough.value"), n))
                }
                "status" => plan.status_reads = n,
                "route" => plan.route_clears = n,
                _ => {}
            }
        } else if let Some((name, value)) = word.split_once('=') {
            plan.header = Some((name.trim().to_ascii_lowercase(), value.trim().to_owned()));
        }
    }
    plan
}

impl Context for Passthrough {}

impl RootContext for Passthrough {
    fn on_configure(&mut self, size: usize) -> bool {
        let config = match hostcalls::get_buffer(BufferType::PluginConfiguration, 0, size.min(1024))
        {
            Ok(Some(bytes)) => String::from_utf8_lossy(&bytes).into_owned(),
            _ => String::new(),
        };
        self.plan = Rc::new(parse(&config));
        true
    }

    fn create_http_context(&self, _context_id: u32) -> Option<Box<dyn HttpContext>> {
        Some(Box::new(Request(self.plan.clone())))
    }

    fn get_type(&self) -> Option<ContextType> {
        Some(ContextType::HttpContext)
    }
}

struct Request(Rc<Plan>);

impl Context for Request {}

impl HttpContext for Request {
    fn on_http_request_headers(&mut self, _num_headers: usize, _end_of_stream: bool) -> Action {
        let plan = &self.0;
        if let Some((name, value)) = &plan.header {
            let _ = hostcalls::set_map_value(MapType::HttpRequestHeaders, name, Some(value));
            if !plan.keep_route {
                let _ = hostcalls::call_foreign_function("clear_route_cache", None);
            }
        }
        for _ in 0..plan.time {
            let _ = hostcalls::get_current_time();
        }
        for _ in 0..plan.header_reads {
            let _ = hostcalls::get_map_value_bytes(MapType::HttpRequestHeaders, "x-user-id");
        }
        for _ in 0..plan.absent_header_reads {
            let _ = hostcalls::get_map_value_bytes(MapType::HttpRequestHeaders, "x-absent");
        }
        for _ in 0..plan.header_writes {
            let _ = hostcalls::set_map_value(MapType::HttpRequestHeaders, "x-extra", Some("1"));
        }
        if let Some((id, n)) = plan.counter {
            for _ in 0..n {
                let _ = hostcalls::increment_metric(id, 1);
            }
        }
        if let Some((id, n)) = plan.histogram {
            for i in 0..n {
                let _ = hostcalls::record_metric(id, u64::from(i));
            }
        }
        for _ in 0..plan.route_clears {
            let _ = hostcalls::call_foreign_function("clear_route_cache", None);
        }
        Action::Continue
    }

    fn on_http_response_headers(&mut self, _num_headers: usize, _end_of_stream: bool) -> Action {
        for _ in 0..self.0.status_reads {
            let _ = hostcalls::get_map_value_bytes(MapType::HttpResponseHeaders, ":status");
        }
        Action::Continue
    }
}
