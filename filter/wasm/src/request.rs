//! One HTTP stream: the proxy-wasm callbacks, forwarded to the filter's
//! [`outrider_filter_logic::Request`]. Every callback lets the stream continue.

use outrider_filter_logic::Request;
use proxy_wasm::traits::{Context, HttpContext};
use proxy_wasm::types::Action;

use crate::host::ProxyHost;

pub struct Stream(pub Request);

impl Drop for Stream {
    /// The SDK drops a stream's context when Envoy deletes the stream, inside a host
    /// callback, so host calls still work here.
    fn drop(&mut self) {
        self.0.on_done(&ProxyHost);
    }
}

impl Context for Stream {}

impl HttpContext for Stream {
    fn on_http_request_headers(&mut self, _num_headers: usize, end_of_stream: bool) -> Action {
        self.0.on_request_headers(&ProxyHost, end_of_stream);
        Action::Continue
    }

    fn on_http_request_body(&mut self, body_size: usize, end_of_stream: bool) -> Action {
        self.0.on_request_body(&ProxyHost, body_size, end_of_stream);
        Action::Continue
    }

    fn on_http_request_trailers(&mut self, _num_trailers: usize) -> Action {
        self.0.on_request_trailers(&ProxyHost);
        Action::Continue
    }

    fn on_http_response_headers(&mut self, _num_headers: usize, end_of_stream: bool) -> Action {
        self.0.on_response_headers(&ProxyHost, end_of_stream);
        Action::Continue
    }

    fn on_http_response_body(&mut self, body_size: usize, end_of_stream: bool) -> Action {
        self.0
            .on_response_body(&ProxyHost, body_size, end_of_stream);
        Action::Continue
    }

    fn on_http_response_trailers(&mut self, _num_trailers: usize) -> Action {
        self.0.on_response_trailers(&ProxyHost);
        Action::Continue
    }
}
