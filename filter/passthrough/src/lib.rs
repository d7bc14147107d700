//! A proxy-wasm HTTP filter that does nothing: every callback continues at once.
//! It measures what any wasm filter costs in Envoy (VM entry, context creation),
//! so that benchmarks can tell that apart from what the outrider filter adds.
//!
//! Configured with `name=value`, it also sets that request header and asks Envoy to
//! pick the route again, as any filter that routes by a header must: the benchmark's
//! measure of what header routing itself costs in Envoy.

use std::rc::Rc;

use proxy_wasm::hostcalls;
use proxy_wasm::traits::{Context, HttpContext, RootContext};
use proxy_wasm::types::{Action, BufferType, ContextType, LogLevel, MapType};

proxy_wasm::main! {{
    proxy_wasm::set_log_level(LogLevel::Warn);
    proxy_wasm::set_root_context(|_| Box::new(Passthrough::default()));
}}

/// The request header to set, if any.
type Header = Option<Rc<(String, String)>>;

#[derive(Default)]
struct Passthrough {
    header: Header,
}

impl Context for Passthrough {}

impl RootContext for Passthrough {
    fn on_configure(&mut self, size: usize) -> bool {
        let config = match hostcalls::get_buffer(BufferType::PluginConfiguration, 0, size.min(1024))
        {
            Ok(Some(bytes)) => String::from_utf8_lossy(&bytes).into_owned(),
            _ => String::new(),
        };
        self.header = config.trim().split_once('=').map(|(name, value)| {
            Rc::new((name.trim().to_ascii_lowercase(), value.trim().to_owned()))
        });
        true
    }

    fn create_http_context(&self, _context_id: u32) -> Option<Box<dyn HttpContext>> {
        Some(Box::new(Request(self.header.clone())))
    }

    fn get_type(&self) -> Option<ContextType> {
        Some(ContextType::HttpContext)
    }
}

struct Request(Header);

impl Context for Request {}

impl HttpContext for Request {
    fn on_http_request_headers(&mut self, _num_headers: usize, _end_of_stream: bool) -> Action {
        if let Some(header) = &self.0 {
            let _ =
                hostcalls::set_map_value(MapType::HttpRequestHeaders, &header.0, Some(&header.1));
            let _ = hostcalls::call_foreign_function("clear_route_cache", None);
        }
        Action::Continue
    }
}
