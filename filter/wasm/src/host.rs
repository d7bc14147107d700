//! Envoy as the filter's host: each method is one proxy-wasm host call with its result
//! handled. The SDK's `Context` helpers unwrap host results (and `get_map_value`
//! unwraps UTF-8), so this filter calls `proxy_wasm::hostcalls` only.

use std::time::{Duration, UNIX_EPOCH};

use outrider_filter_logic::host::{Buffer, Host, LogLevel, Map, MetricKind};
use proxy_wasm::hostcalls;
use proxy_wasm::types::{self, BufferType, MapType, MetricType};

/// The host: Envoy, through the proxy-wasm ABI.
#[derive(Debug, Clone, Copy, Default)]
pub struct ProxyHost;

fn map_type(map: Map) -> MapType {
    match map {
        Map::RequestHeaders => MapType::HttpRequestHeaders,
        Map::RequestTrailers => MapType::HttpRequestTrailers,
        Map::ResponseHeaders => MapType::HttpResponseHeaders,
        Map::ResponseTrailers => MapType::HttpResponseTrailers,
        Map::CallResponseHeaders => MapType::HttpCallResponseHeaders,
    }
}

fn buffer_type(buffer: Buffer) -> BufferType {
    match buffer {
        Buffer::RequestBody => BufferType::HttpRequestBody,
        Buffer::ResponseBody => BufferType::HttpResponseBody,
        Buffer::CallResponseBody => BufferType::HttpCallResponseBody,
        Buffer::PluginConfiguration => BufferType::PluginConfiguration,
    }
}

/// Bytes from the host as text; clients may send bytes that are not UTF-8.
fn text(bytes: Vec<u8>) -> String {
    // No copy in the usual case of valid UTF-8.
    String::from_utf8(bytes).unwrap_or_else(|e| String::from_utf8_lossy(e.as_bytes()).into_owned())
}

impl Host for ProxyHost {
    fn log(&self, level: LogLevel, message: &str) {
        let level = match level {
            LogLevel::Debug => types::LogLevel::Debug,
            LogLevel::Info => types::LogLevel::Info,
            LogLevel::Warn => types::LogLevel::Warn,
            LogLevel::Error => types::LogLevel::Error,
            LogLevel::Critical => types::LogLevel::Critical,
        };
        // Nothing sensible is left to do if logging itself fails.
        let _ = hostcalls::log(level, message);
    }

    fn now_nanos(&self) -> u64 {
        hostcalls::get_current_time()
            .ok()
            .and_then(|t| t.duration_since(UNIX_EPOCH).ok())
            .map_or(0, |d| u64::try_from(d.as_nanos()).unwrap_or(u64::MAX))
    }

    fn header(&self, map: Map, name: &str) -> Option<String> {
        match hostcalls::get_map_value_bytes(map_type(map), name) {
            Ok(Some(bytes)) => Some(text(bytes)),
            _ => None,
        }
    }

    fn headers(&self, map: Map) -> Vec<(String, String)> {
        hostcalls::get_map_bytes(map_type(map))
            .unwrap_or_default()
            .into_iter()
            .map(|(name, value)| (name, text(value)))
            .collect()
    }

    fn set_header(&self, map: Map, name: &str, value: &str) {
        // Only called from the callback that owns `map`, where the host accepts it.
        let _ = hostcalls::set_map_value(map_type(map), name, Some(value));
    }

    fn remove_header(&self, map: Map, name: &str) {
        let _ = hostcalls::remove_map_value(map_type(map), name);
    }

    fn buffer(&self, buffer: Buffer, size: usize) -> Option<Vec<u8>> {
        match hostcalls::get_buffer(buffer_type(buffer), 0, size) {
            Ok(Some(bytes)) => Some(bytes),
            Ok(None) => Some(Vec::new()),
            Err(_) => None,
        }
    }

    fn shared_get(&self, key: &str) -> (Option<Vec<u8>>, Option<u32>) {
        hostcalls::get_shared_data(key).unwrap_or((None, None))
    }

    fn shared_set(&self, key: &str, value: &[u8], cas: Option<u32>) -> bool {
        hostcalls::set_shared_data(key, Some(value), cas).is_ok()
    }

    fn http_call(
        &self,
        cluster: &str,
        headers: &[(&str, &str)],
        body: Option<&[u8]>,
        timeout: Duration,
    ) -> Option<u32> {
        hostcalls::dispatch_http_call(cluster, headers.to_vec(), body, vec![], timeout).ok()
    }

    fn define_metric(&self, kind: MetricKind, name: &str) -> Result<u32, String> {
        let kind = match kind {
            MetricKind::Counter => MetricType::Counter,
            MetricKind::Gauge => MetricType::Gauge,
            MetricKind::Histogram => MetricType::Histogram,
        };
        hostcalls::define_metric(kind, name)
            .map_err(|status| format!("cannot define stat `{name}`: {status:?}"))
    }

    /// Stat updates are best effort: a failed one must not affect the request, and
    /// there is nowhere better to report it.
    fn increment(&self, metric: u32, by: u64) {
        let _ = hostcalls::increment_metric(metric, i64::try_from(by).unwrap_or(i64::MAX));
    }

    fn record(&self, metric: u32, value: u64) {
        let _ = hostcalls::record_metric(metric, value);
    }

    fn set_tick(&self, period: Duration) -> bool {
        hostcalls::set_tick_period(period).is_ok()
    }

    fn node_id(&self) -> Option<String> {
        match hostcalls::get_property(vec!["node", "id"]) {
            Ok(Some(bytes)) if !bytes.is_empty() => String::from_utf8(bytes).ok(),
            _ => None,
        }
    }

    fn env(&self, name: &str) -> Option<String> {
        std::env::var(name).ok()
    }
}
