//! A host for tests: headers, buffers, shared data with compare-and-swap, a clock,
//! HTTP calls that the test answers, stats that the test reads back, and a count of
//! every host call made (what one request costs in host calls, without Envoy).

use std::cell::RefCell;
use std::collections::{BTreeMap, HashMap};
use std::time::Duration;

use crate::host::{Buffer, Host, LogLevel, Map, MetricKind};

/// An HTTP call the filter started.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct HttpCall {
    pub token: u32,
    pub cluster: String,
    pub headers: Vec<(String, String)>,
    pub body: Option<Vec<u8>>,
    pub timeout: Duration,
}

impl HttpCall {
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(n, _)| n == name)
            .map(|(_, v)| v.as_str())
    }
}

#[derive(Debug, Clone)]
struct Metric {
    kind: MetricKind,
    name: String,
    value: u64,
    recorded: Vec<u64>,
}

#[derive(Debug, Default)]
struct State {
    now_nanos: u64,
    maps: HashMap<Map, Vec<(String, String)>>,
    buffers: HashMap<Buffer, Vec<u8>>,
    shared: HashMap<String, (Vec<u8>, u32)>,
    next_cas: u32,
    calls: Vec<HttpCall>,
    next_token: u32,
    refuse_calls: bool,
    metrics: Vec<Metric>,
    logs: Vec<(LogLevel, String)>,
    tick: Option<Duration>,
    env: HashMap<String, String>,
    node_id: Option<String>,
    counts: BTreeMap<&'static str, u64>,
}

#[derive(Debug, Default)]
pub struct MockHost {
    state: RefCell<State>,
}

impl MockHost {
    pub fn new() -> Self {
        let host = Self::default();
        host.set_time_ms(1_800_000_000_000);
        host
    }

    fn with<T>(&self, f: impl FnOnce(&mut State) -> T) -> T {
        f(&mut self.state.borrow_mut())
    }

    fn count(&self, call: &'static str) {
        self.with(|s| *s.counts.entry(call).or_default() += 1);
    }

    pub fn set_time_ms(&self, ms: u64) {
        self.with(|s| s.now_nanos = ms * 1_000_000);
    }

    pub fn advance_ms(&self, ms: u64) {
        self.with(|s| s.now_nanos += ms * 1_000_000);
    }

    pub fn now(&self) -> u64 {
        self.with(|s| s.now_nanos / 1_000_000)
    }

    /// Replaces a header map.
    pub fn set_headers(&self, map: Map, headers: &[(&str, &str)]) {
        let owned = headers
            .iter()
            .map(|(n, v)| ((*n).to_owned(), (*v).to_owned()))
            .collect();
        self.with(|s| s.maps.insert(map, owned));
    }

    /// A header as the filter left it.
    pub fn get_header(&self, map: Map, name: &str) -> Option<String> {
        self.with(|s| {
            s.maps
                .get(&map)
                .and_then(|m| m.iter().find(|(n, _)| n == name))
                .map(|(_, v)| v.clone())
        })
    }

    pub fn set_buffer(&self, buffer: Buffer, bytes: &[u8]) {
        self.with(|s| s.buffers.insert(buffer, bytes.to_vec()));
    }

    pub fn set_env(&self, name: &str, value: &str) {
        self.with(|s| s.env.insert(name.to_owned(), value.to_owned()));
    }

    pub fn set_node_id(&self, id: &str) {
        self.with(|s| s.node_id = Some(id.to_owned()));
    }

    /// From now on the host refuses to start HTTP calls (or starts them again).
    pub fn refuse_calls(&self, refuse: bool) {
        self.with(|s| s.refuse_calls = refuse);
    }

    /// The HTTP calls started since the last time they were taken.
    pub fn take_calls(&self) -> Vec<HttpCall> {
        self.with(|s| std::mem::take(&mut s.calls))
    }

    /// Makes the answer to a call the one being delivered: its `:status` (none for a
    /// call that never reached an upstream), other headers, and body. Returns the body
    /// size to pass to the root's `on_http_call_response`.
    pub fn answer(&self, status: Option<u16>, headers: &[(&str, &str)], body: &[u8]) -> usize {
        let mut map: Vec<(String, String)> = status
            .map(|s| (":status".to_owned(), s.to_string()))
            .into_iter()
            .collect();
        map.extend(
            headers
                .iter()
                .map(|(n, v)| ((*n).to_owned(), (*v).to_owned())),
        );
        self.with(|s| {
            s.maps.insert(Map::CallResponseHeaders, map);
            s.buffers.insert(Buffer::CallResponseBody, body.to_vec());
        });
        body.len()
    }

    pub fn shared(&self, key: &str) -> Option<Vec<u8>> {
        self.with(|s| s.shared.get(key).map(|(v, _)| v.clone()))
    }

    /// A counter's total (0 if never defined), or a gauge's value.
    pub fn metric(&self, name: &str) -> u64 {
        self.with(|s| {
            s.metrics
                .iter()
                .find(|m| m.name == name)
                .map_or(0, |m| m.value)
        })
    }

    /// Whether a stat of that name was defined.
    pub fn defined(&self, name: &str) -> bool {
        self.with(|s| s.metrics.iter().any(|m| m.name == name))
    }

    /// Values recorded in a histogram, in order.
    pub fn histogram(&self, name: &str) -> Vec<u64> {
        self.with(|s| {
            s.metrics
                .iter()
                .find(|m| m.name == name)
                .map(|m| m.recorded.clone())
                .unwrap_or_default()
        })
    }

    /// Names of the defined stats whose name contains `part`, with their values.
    pub fn metrics_matching(&self, part: &str) -> Vec<(String, u64)> {
        self.with(|s| {
            s.metrics
                .iter()
                .filter(|m| m.name.contains(part))
                .map(|m| (m.name.clone(), m.value))
                .collect()
        })
    }

    pub fn logs(&self) -> Vec<(LogLevel, String)> {
        self.with(|s| s.logs.clone())
    }

    pub fn tick_period(&self) -> Option<Duration> {
        self.with(|s| s.tick)
    }

    /// Host calls made since the last reset, by method.
    pub fn host_calls(&self) -> BTreeMap<&'static str, u64> {
        self.with(|s| s.counts.clone())
    }

    /// All host calls made since the last reset.
    pub fn host_call_total(&self) -> u64 {
        self.with(|s| s.counts.values().sum())
    }

    pub fn reset_host_calls(&self) {
        self.with(|s| s.counts.clear());
    }
}

impl Host for MockHost {
    fn log(&self, level: LogLevel, message: &str) {
        self.count("log");
        self.with(|s| s.logs.push((level, message.to_owned())));
    }

    fn now_nanos(&self) -> u64 {
        self.count("now");
        self.with(|s| s.now_nanos)
    }

    fn header(&self, map: Map, name: &str) -> Option<String> {
        self.count("header");
        self.get_header(map, name)
    }

    fn headers(&self, map: Map) -> Vec<(String, String)> {
        self.count("headers");
        self.with(|s| s.maps.get(&map).cloned().unwrap_or_default())
    }

    fn set_header(&self, map: Map, name: &str, value: &str) {
        self.count("set_header");
        self.with(|s| {
            let m = s.maps.entry(map).or_default();
            m.retain(|(n, _)| n != name);
            m.push((name.to_owned(), value.to_owned()));
        });
    }

    fn remove_header(&self, map: Map, name: &str) {
        self.count("remove_header");
        self.with(|s| {
            if let Some(m) = s.maps.get_mut(&map) {
                m.retain(|(n, _)| n != name);
            }
        });
    }

    fn buffer(&self, buffer: Buffer, size: usize) -> Option<Vec<u8>> {
        self.count("buffer");
        self.with(|s| {
            let bytes = s.buffers.get(&buffer)?;
            Some(bytes.get(..size.min(bytes.len()))?.to_vec())
        })
    }

    fn shared_get(&self, key: &str) -> (Option<Vec<u8>>, Option<u32>) {
        self.count("shared_get");
        self.with(|s| match s.shared.get(key) {
            Some((value, cas)) => (Some(value.clone()), Some(*cas)),
            None => (None, None),
        })
    }

    fn shared_set(&self, key: &str, value: &[u8], cas: Option<u32>) -> bool {
        self.count("shared_set");
        self.with(|s| {
            let current = s.shared.get(key).map(|(_, c)| *c);
            // As in Envoy: a token only has to match when the key exists.
            if let (Some(given), Some(current)) = (cas, current)
                && given != current
            {
                return false;
            }
            s.next_cas += 1;
            let token = s.next_cas;
            s.shared.insert(key.to_owned(), (value.to_vec(), token));
            true
        })
    }

    fn http_call(
        &self,
        cluster: &str,
        headers: &[(&str, &str)],
        body: Option<&[u8]>,
        timeout: Duration,
    ) -> Option<u32> {
        self.count("http_call");
        self.with(|s| {
            if s.refuse_calls {
                return None;
            }
            s.next_token += 1;
            let token = s.next_token;
            s.calls.push(HttpCall {
                token,
                cluster: cluster.to_owned(),
                headers: headers
                    .iter()
                    .map(|(n, v)| ((*n).to_owned(), (*v).to_owned()))
                    .collect(),
                body: body.map(<[u8]>::to_vec),
                timeout,
            });
            Some(token)
        })
    }

    fn define_metric(&self, kind: MetricKind, name: &str) -> Result<u32, String> {
        self.count("define_metric");
        self.with(|s| {
            if let Some(i) = s.metrics.iter().position(|m| m.name == name) {
                return u32::try_from(i).map_err(|e| e.to_string());
            }
            s.metrics.push(Metric {
                kind,
                name: name.to_owned(),
                value: 0,
                recorded: Vec::new(),
            });
            u32::try_from(s.metrics.len() - 1).map_err(|e| e.to_string())
        })
    }

    fn increment(&self, metric: u32, by: u64) {
        self.count("increment");
        self.with(|s| {
            if let Some(m) = s.metrics.get_mut(metric as usize) {
                assert_eq!(m.kind, MetricKind::Counter, "{} is not a counter", m.name);
                m.value += by;
            }
        });
    }

    fn record(&self, metric: u32, value: u64) {
        self.count("record");
        self.with(|s| {
            if let Some(m) = s.metrics.get_mut(metric as usize) {
                assert_ne!(m.kind, MetricKind::Counter, "{} is a counter", m.name);
                m.value = value;
                m.recorded.push(value);
            }
        });
    }

    fn set_tick(&self, period: Duration) -> bool {
        self.count("set_tick");
        self.with(|s| s.tick = Some(period));
        true
    }

    fn node_id(&self) -> Option<String> {
        self.count("node_id");
        self.with(|s| s.node_id.clone())
    }

    fn env(&self, name: &str) -> Option<String> {
        self.with(|s| s.env.get(name).cloned())
    }
}
