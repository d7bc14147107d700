//! A proxy-wasm HTTP filter that does nothing: every callback continues at once.
//! It measures what any wasm filter costs in Envoy (VM entry, context creation),
//! so that benchmarks can tell that apart from what the outrider filter adds.

use proxy_wasm::traits::{Context, HttpContext, RootContext};
use proxy_wasm::types::{ContextType, LogLevel};

proxy_wasm::main! {{
    proxy_wasm::set_log_level(LogLevel::Warn);
    proxy_wasm::set_root_context(|_| Box::new(Passthrough));
}}

struct Passthrough;

impl Context for Passthrough {}

impl RootContext for Passthrough {
    fn create_http_context(&self, _context_id: u32) -> Option<Box<dyn HttpContext>> {
        Some(Box::new(Passthrough))
    }

    fn get_type(&self) -> Option<ContextType> {
        Some(ContextType::HttpContext)
    }
}

impl HttpContext for Passthrough {}
