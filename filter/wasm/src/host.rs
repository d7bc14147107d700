//! Host calls with their results handled. The SDK's `Context` helpers unwrap host
//! results (and `get_map_value` unwraps UTF-8), so this filter uses only these.

use std::time::UNIX_EPOCH;

use outrider_filter_logic::RequestHeaders;
use proxy_wasm::hostcalls;
use proxy_wasm::types::{MapType, MetricType, Status};

pub fn log(level: proxy_wasm::types::LogLevel, message: &str) {
    // Nothing sensible is left to do if logging itself fails.
    let _ = hostcalls::log(level, message);
}

/// A header value, decoded lossily: clients may send bytes that are not UTF-8.
pub fn header(map: MapType, name: &str) -> Option<String> {
    match hostcalls::get_map_value_bytes(map, name) {
        // No copy in the usual case of a valid UTF-8 value.
        Ok(Some(bytes)) => Some(
            String::from_utf8(bytes)
                .unwrap_or_else(|e| String::from_utf8_lossy(e.as_bytes()).into_owned()),
        ),
        _ => None,
    }
}

pub fn set_header(map: MapType, name: &str, value: &str) {
    // Only called from the callback that owns `map`, where the host accepts it.
    let _ = hostcalls::set_map_value(map, name, Some(value));
}

pub fn remove_header(map: MapType, name: &str) {
    let _ = hostcalls::remove_map_value(map, name);
}

/// Wall-clock time in nanoseconds since the Unix epoch (0 if the host cannot say).
pub fn now_nanos() -> u64 {
    hostcalls::get_current_time()
        .ok()
        .and_then(|t| t.duration_since(UNIX_EPOCH).ok())
        .map_or(0, |d| u64::try_from(d.as_nanos()).unwrap_or(u64::MAX))
}

pub fn define_metric(kind: MetricType, name: &str) -> Result<u32, String> {
    hostcalls::define_metric(kind, name)
        .map_err(|status| format!("cannot define stat `{name}`: {status:?}"))
}

/// Counter and histogram updates are best effort: a failed one must not affect the
/// request, and there is nowhere better to report it on the request path.
pub fn increment(metric: u32) {
    let _ = hostcalls::increment_metric(metric, 1);
}

pub fn add(metric: u32, n: u64) {
    let _ = hostcalls::increment_metric(metric, i64::try_from(n).unwrap_or(i64::MAX));
}

pub fn record(metric: u32, value: u64) {
    let _ = hostcalls::record_metric(metric, value);
}

/// Asks Envoy to pick the route again after the routing header changed. Returns
/// false when the host has no such function, so the caller stops asking.
pub fn clear_route_cache() -> bool {
    !matches!(
        hostcalls::call_foreign_function("clear_route_cache", None),
        Err(Status::NotFound)
    )
}

/// The current request's headers, for the decision logic.
pub struct RequestHeaderMap;

impl RequestHeaders for RequestHeaderMap {
    fn get(&self, name: &str) -> Option<String> {
        header(MapType::HttpRequestHeaders, name)
    }
}

/// A value in the VM's shared data (shared by every worker of this Envoy) and its
/// compare-and-swap token.
pub fn shared_get(key: &str) -> (Option<Vec<u8>>, Option<u32>) {
    hostcalls::get_shared_data(key).unwrap_or((None, None))
}

/// Writes shared data; with `cas`, only if nobody wrote it since that token.
pub fn shared_set(key: &str, value: &[u8], cas: Option<u32>) -> bool {
    hostcalls::set_shared_data(key, Some(value), cas).is_ok()
}

/// Envoy's node id, which names this proxy to the scorer.
pub fn node_id() -> Option<String> {
    match hostcalls::get_property(vec!["node", "id"]) {
        Ok(Some(bytes)) if !bytes.is_empty() => String::from_utf8(bytes).ok(),
        _ => None,
    }
}

pub fn set_tick(period: std::time::Duration) -> bool {
    hostcalls::set_tick_period(period).is_ok()
}

/// Starts an HTTP call through an Envoy cluster; its answer arrives in the root
/// context's `on_http_call_response` with the returned token.
pub fn http_call(
    cluster: &str,
    headers: Vec<(&str, &str)>,
    body: Option<&[u8]>,
    timeout: std::time::Duration,
) -> Option<u32> {
    hostcalls::dispatch_http_call(cluster, headers, body, vec![], timeout).ok()
}

/// A header of the HTTP call response being delivered.
pub fn call_response_header(name: &str) -> Option<String> {
    header(MapType::HttpCallResponseHeaders, name)
}

/// The body of the HTTP call response being delivered, if it is at most `limit` bytes.
pub fn call_response_body(size: usize, limit: usize) -> Option<Vec<u8>> {
    if size > limit {
        return None;
    }
    match hostcalls::get_buffer(proxy_wasm::types::BufferType::HttpCallResponseBody, 0, size) {
        Ok(Some(bytes)) => Some(bytes),
        Ok(None) => Some(Vec::new()),
        Err(_) => None,
    }
}

/// The chunk of a request or response body passing through now.
pub fn body_chunk(kind: proxy_wasm::types::BufferType, size: usize) -> Option<Vec<u8>> {
    match hostcalls::get_buffer(kind, 0, size) {
        Ok(Some(bytes)) => Some(bytes),
        _ => None,
    }
}
