//! The root context: one per plugin configuration per worker, around the filter's
//! [`outrider_filter_logic::Root`].

use outrider_filter_logic::Root;
use proxy_wasm::traits::{Context, HttpContext, RootContext};
use proxy_wasm::types::ContextType;

use crate::host::ProxyHost;
use crate::request::Stream;

pub struct OutriderRoot(Root);

impl OutriderRoot {
    pub fn new(seed: u64) -> Self {
        Self(Root::new(seed))
    }
}

impl Context for OutriderRoot {
    fn on_http_call_response(
        &mut self,
        token_id: u32,
        _num_headers: usize,
        body_size: usize,
        _num_trailers: usize,
    ) {
        self.0.call_response(&ProxyHost, token_id, body_size);
    }

    fn on_done(&mut self) -> bool {
        self.0.done(&ProxyHost);
        true
    }
}

impl RootContext for OutriderRoot {
    fn on_configure(&mut self, size: usize) -> bool {
        self.0.configure(&ProxyHost, size)
    }

    fn on_tick(&mut self) {
        self.0.tick(&ProxyHost);
    }

    fn create_http_context(&self, _context_id: u32) -> Option<Box<dyn HttpContext>> {
        // Always a context: the SDK panics on None. Without a configuration it passes
        // requests through untouched.
        Some(Box::new(Stream(self.0.request())))
    }

    fn get_type(&self) -> Option<ContextType> {
        Some(ContextType::HttpContext)
    }
}
