//! What the filter asks of its host. Envoy implements it in `filter/wasm` (each method
//! one proxy-wasm host call, its result handled); tests implement it with
//! [`crate::mock::MockHost`], which also counts the calls.
//!
//! Every method is infallible from the caller's side: a host call that fails gives
//! `None`, `false` or nothing, and the filter carries on without it. Nothing here may
//! stop a request.

use std::time::Duration;

/// The header maps the filter reads and writes.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Map {
    RequestHeaders,
    RequestTrailers,
    ResponseHeaders,
    ResponseTrailers,
    /// Headers of the answer to an HTTP call, while it is being delivered.
    CallResponseHeaders,
}

/// The buffers the filter reads.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Buffer {
    /// The chunk of the request body passing through now.
    RequestBody,
    /// The chunk of the response body passing through now.
    ResponseBody,
    /// The body of the answer to an HTTP call, while it is being delivered.
    CallResponseBody,
    /// The plugin's configuration document, while it is being configured.
    PluginConfiguration,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum MetricKind {
    Counter,
    Gauge,
    Histogram,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum LogLevel {
    Debug,
    Info,
    Warn,
    Error,
    Critical,
}

pub trait Host {
    fn log(&self, level: LogLevel, message: &str);

    /// Wall-clock time in nanoseconds since the Unix epoch (0 if the host cannot say).
    fn now_nanos(&self) -> u64;

    /// A header value, decoded lossily (clients may send bytes that are not UTF-8).
    fn header(&self, map: Map, name: &str) -> Option<String>;

    /// Every header of a map, in order.
    fn headers(&self, map: Map) -> Vec<(String, String)>;

    /// Sets a header. Envoy selects the route again when a request header changes,
    /// so setting the routing header is all a filter needs to route by it.
    fn set_header(&self, map: Map, name: &str, value: &str);

    fn remove_header(&self, map: Map, name: &str);

    /// The first `size` bytes of a buffer; `None` if the host cannot give them.
    fn buffer(&self, buffer: Buffer, size: usize) -> Option<Vec<u8>>;

    /// A value in the VM's shared data (shared by every worker of this Envoy) and its
    /// compare-and-swap token.
    fn shared_get(&self, key: &str) -> (Option<Vec<u8>>, Option<u32>);

    /// Writes shared data; with `cas`, only if nobody wrote it since that token.
    fn shared_set(&self, key: &str, value: &[u8], cas: Option<u32>) -> bool;

    /// Starts an HTTP call through an Envoy cluster; its answer arrives at the root
    /// context with the returned token. `None` if the host would not start it.
    fn http_call(
        &self,
        cluster: &str,
        headers: &[(&str, &str)],
        body: Option<&[u8]>,
        timeout: Duration,
    ) -> Option<u32>;

    fn define_metric(&self, kind: MetricKind, name: &str) -> Result<u32, String>;

    /// Adds to a counter.
    fn increment(&self, metric: u32, by: u64);

    /// Sets a gauge, or records a value in a histogram.
    fn record(&self, metric: u32, value: u64);

    fn set_tick(&self, period: Duration) -> bool;

    /// Envoy's node id, which names this proxy to the scorer.
    fn node_id(&self) -> Option<String>;

    /// An environment variable of the VM.
    fn env(&self, name: &str) -> Option<String>;
}

/// Milliseconds since the epoch, from the host's clock.
pub fn now_ms(host: &impl Host) -> u64 {
    host.now_nanos() / 1_000_000
}
