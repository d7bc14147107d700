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
