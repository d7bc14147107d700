//! Drives the filter as Envoy would, against the mock host: configure a root, run
//! requests through its callbacks, tick it, answer its calls.

// Tests fail loudly: their helpers may unwrap and index too.
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    clippy::indexing_slicing
)]
#![allow(dead_code)]

use outrider_filter_logic::host::{Buffer, Map};
use outrider_filter_logic::mock::{HttpCall, MockHost};
use outrider_filter_logic::{Request, Root};

pub struct Filter {
    pub host: MockHost,
    pub root: Root,
}

/// A response as the upstream sends it.
pub struct Answer<'a> {
    pub status: &'a str,
    pub headers: &'a [(&'a str, &'a str)],
    pub body: &'a [u8],
    pub trailers: &'a [(&'a str, &'a str)],
}

impl Default for Answer<'_> {
    fn default() -> Self {
        Self {
            status: "200",
            headers: &[],
            body: br#"{"outputs": [{"name": "score", "data": [0.25]}]}"#,
            trailers: &[],
        }
    }
}

impl Filter {
    pub fn new(config: &str) -> Self {
        let mut filter = Self::unconfigured();
        assert!(
            filter.configure(config),
            "refused: {:?}",
            filter.host.logs()
        );
        filter
    }

    pub fn unconfigured() -> Self {
        Self {
            host: MockHost::new(),
            root: Root::new(0x5eed),
        }
    }

    pub fn configure(&mut self, config: &str) -> bool {
        self.host
            .set_buffer(Buffer::PluginConfiguration, config.as_bytes());
        self.root.configure(&self.host, config.len())
    }

    /// Sends the request part: headers, then the body in `chunks` (if any).
    pub fn send(&self, headers: &[(&str, &str)], chunks: &[&[u8]]) -> Request {
        let mut request = self.root.request();
        self.host.set_headers(Map::RequestHeaders, headers);
        request.on_request_headers(&self.host, chunks.is_empty());
        for (i, chunk) in chunks.iter().enumerate() {
            self.host.set_buffer(Buffer::RequestBody, chunk);
            request.on_request_body(&self.host, chunk.len(), i + 1 == chunks.len());
        }
        request
    }

    /// Delivers a response to `request` after `after_ms`, and ends the stream.
    pub fn answer(&self, mut request: Request, after_ms: u64, answer: &Answer<'_>) {
        self.host.advance_ms(after_ms);
        let mut headers = vec![(":status", answer.status)];
        headers.extend_from_slice(answer.headers);
        self.host.set_headers(Map::ResponseHeaders, &headers);
        let ends_at_headers = answer.body.is_empty() && answer.trailers.is_empty();
        request.on_response_headers(&self.host, ends_at_headers);
        if !answer.body.is_empty() {
            self.host.set_buffer(Buffer::ResponseBody, answer.body);
            request.on_response_body(&self.host, answer.body.len(), answer.trailers.is_empty());
        }
        if !answer.trailers.is_empty() {
            self.host
                .set_headers(Map::ResponseTrailers, answer.trailers);
            request.on_response_trailers(&self.host);
        }
        request.on_done(&self.host);
    }

    /// One keyed request, answered at once.
    pub fn round_trip(&self, key: &str) {
        let request = self.send(
            &[(":path", "/v2/models/fraud/infer"), ("x-user-id", key)],
            &[],
        );
        self.answer(request, 1, &Answer::default());
    }

    pub fn tick(&mut self, after_ms: u64) {
        self.host.advance_ms(after_ms);
        self.root.tick(&self.host);
    }

    /// Answers an HTTP call the filter made.
    pub fn reply(
        &mut self,
        call: &HttpCall,
        status: Option<u16>,
        headers: &[(&str, &str)],
        body: &[u8],
    ) {
        let size = self.host.answer(status, headers, body);
        self.root.call_response(&self.host, call.token, size);
    }

    /// A stat as `/stats` would show it once the counters are flushed.
    pub fn stat(&self, name: &str) -> u64 {
        self.host.metric(name)
    }
}
