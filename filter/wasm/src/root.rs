//! The root context: one per plugin configuration per worker. It validates the
//! configuration, defines the stats, hands both to each request, and drives the link
//! to the scorer from its tick.

use std::cell::{Cell, RefCell};
use std::rc::Rc;
use std::time::Duration;

use outrider_filter_logic::Rollout;
use outrider_filter_logic::assignment::RandomPoints;
use outrider_filter_logic::shadow::{Pace, SLOW_TICK_MS};
use outrider_filter_logic::telemetry::Aggregator;
use outrider_protocol::{ShadowSkip, TelemetryBatch};
use proxy_wasm::hostcalls;
use proxy_wasm::traits::{Context, HttpContext, RootContext};
use proxy_wasm::types::{BufferType, ContextType, LogLevel};

use crate::host;
use crate::request::Request;
use crate::scorer::Link;
use crate::shadow::{Desk, Event};
use crate::stats::{LinkStats, RolloutStats, ShadowStats};

/// Configuration documents larger than this are refused unread.
const MAX_CONFIG_BYTES: usize = 256 * 1024;

/// The rollout in effect and its stats. A new state from the scorer replaces the
/// rollout; requests in flight keep the one they started with.
pub struct Active {
    pub rollout: Rollout,
    pub stats: Rc<RolloutStats>,
    /// Per shadow variant, in configuration order.
    pub shadow_stats: Rc<Vec<ShadowStats>>,
}

/// State of one worker shared by all its requests (the VM is single-threaded).
pub struct Worker {
    pub random: RandomPoints,
    /// Cleared once the host says it has no `clear_route_cache` function.
    pub has_clear_route_cache: Cell<bool>,
    /// Counts and samples for the scorer, when a scorer is configured.
    telemetry: RefCell<Option<Aggregator>>,
    /// Shadow copies waiting to be sent, in flight, and waiting to be compared.
    pub desk: RefCell<Desk>,
}

impl Worker {
    /// Records into the telemetry, if there is any. Callbacks never nest, so the
    /// borrow always succeeds; if it did not, the record would be skipped, not panic.
    pub fn record(&self, f: impl FnOnce(&mut Aggregator)) {
        if let Ok(mut telemetry) = self.telemetry.try_borrow_mut()
            && let Some(aggregator) = telemetry.as_mut()
        {
            f(aggregator);
        }
    }

    /// Counts what the shadow desk reports, in Envoy's stats and in the telemetry.
    pub fn record_shadow(&self, stats: &[ShadowStats], events: Vec<Event>) {
        for event in events {
            match event {
                Event::Mirrored { shadow } => {
                    stats
                        .get(shadow)
                        .into_iter()
                        .for_each(ShadowStats::mirrored);
                    self.record(|t| t.shadow_mirrored(shadow));
                }
                Event::Failed { shadow } => {
                    stats
                        .get(shadow)
                        .into_iter()
                        .for_each(|s| s.skipped(ShadowSkip::DispatchFailed));
                    self.record(|t| t.shadow_skipped(shadow, ShadowSkip::DispatchFailed));
                }
                Event::Skipped { shadow, reason } => {
                    stats
                        .get(shadow)
                        .into_iter()
                        .for_each(|s| s.skipped(reason));
                    self.record(|t| t.shadow_skipped(shadow, reason));
                }
                Event::Ended {
                    shadow,
                    end,
                    latency_ms,
                } => {
                    stats
                        .get(shadow)
                        .into_iter()
                        .for_each(|s| s.ended(end, latency_ms));
                    self.record(|t| t.shadow_ended(shadow, end, latency_ms));
                }
                Event::Compared {
                    shadow,
                    comparison,
                    primary_latency_ms,
                } => {
                    stats
                        .get(shadow)
                        .into_iter()
                        .for_each(|s| s.compared(&comparison, primary_latency_ms));
                    self.record(|t| t.shadow_compared(shadow, &comparison, primary_latency_ms));
                }
            }
        }
    }

    pub fn take_batch(
        &self,
        rollout: &str,
        proxy: &str,
        worker: u64,
        dropped: u64,
        now_ms: u64,
    ) -> Option<TelemetryBatch> {
        let mut telemetry = self.telemetry.try_borrow_mut().ok()?;
        telemetry
            .as_mut()?
            .take(rollout, proxy, worker, dropped, now_ms)
    }
}

pub struct OutriderRoot {
    active: Option<Rc<Active>>,
    worker: Rc<Worker>,
    link: Option<Link>,
    /// When the link is next due (the tick may be faster for shadows).
    next_link_ms: u64,
    /// The tick's period while shadows are configured.
    pace: Pace,
    worker_id: u64,
}

fn now_ms() -> u64 {
    host::now_nanos() / 1_000_000
}

impl OutriderRoot {
    pub fn new() -> Self {
        let seed = random_seed();
        Self {
            active: None,
            worker: Rc::new(Worker {
                random: RandomPoints::new(seed),
                has_clear_route_cache: Cell::new(true),
                telemetry: RefCell::new(None),
                desk: RefCell::new(Desk::default()),
            }),
            link: None,
            next_link_ms: 0,
            pace: Pace::new(),
            worker_id: seed,
        }
    }

    fn load(&mut self, size: usize) -> Result<Active, String> {
        if size > MAX_CONFIG_BYTES {
            return Err(format!(
                "invalid configuration: the document has {size} bytes, the limit is {MAX_CONFIG_BYTES}"
            ));
        }
        let document = match hostcalls::get_buffer(BufferType::PluginConfiguration, 0, size) {
            Ok(Some(bytes)) => bytes,
            Ok(None) => Vec::new(),
            Err(status) => return Err(format!("cannot read the configuration: {status:?}")),
        };
        let rollout = Rollout::from_json(&document, |name| std::env::var(name).ok())
            .map_err(|e| e.to_string())?;
        let stats = Rc::new(RolloutStats::define(&rollout)?);
        let shadow_stats = rollout
            .shadows
            .iter()
            .map(|s| ShadowStats::define(&rollout.name, &s.name))
            .collect::<Result<Vec<_>, _>>()?;
        *self.worker.desk.borrow_mut() = Desk::new(rollout.shadows.len());
        if !rollout.shadows.is_empty() {
            if !host::set_tick(Duration::from_millis(SLOW_TICK_MS)) {
                return Err("cannot set a tick period for shadow copies".to_owned());
            }
            self.pace = Pace::new();
        }
        if let Some(config) = rollout.scorer.clone() {
            let now = now_ms();
            let proxy = host::node_id().unwrap_or_else(|| format!("envoy-{:016x}", self.worker_id));
            let link = Link::new(
                config,
                &rollout.name,
                self.worker_id,
                proxy,
                LinkStats::define(&rollout.name)?,
                now,
            );
            if rollout.shadows.is_empty() && !host::set_tick(link.tick_period()) {
                return Err("cannot set a tick period for the scorer link".to_owned());
            }
            let samples = rollout
                .telemetry
                .as_ref()
                .map_or(0, |t| t.max_samples_per_batch);
            let names = rollout.variants.iter().map(|v| v.name.as_str());
            let shadows = rollout.shadows.iter().map(|s| s.name.as_str());
            *self.worker.telemetry.borrow_mut() =
                Some(Aggregator::new(names, shadows, samples, now));
            self.link = Some(link);
        }
        Ok(Active {
            rollout,
            stats,
            shadow_stats: Rc::new(shadow_stats),
        })
    }
}

/// Seed for per-request randomness and this worker's id: the host's WASI random
/// source, or the clock.
fn random_seed() -> u64 {
    let mut bytes = [0u8; 8];
    match getrandom::fill(&mut bytes) {
        Ok(()) => u64::from_le_bytes(bytes),
        Err(_) => host::now_nanos(),
    }
}

fn describe(rollout: &Rollout) -> String {
    rollout
        .variants
        .iter()
        .map(|v| format!("{}={}bp", v.name, v.weight_bp))
        .collect::<Vec<_>>()
        .join(" ")
}

impl Context for OutriderRoot {
    fn on_http_call_response(
        &mut self,
        token_id: u32,
        _num_headers: usize,
        body_size: usize,
        _num_trailers: usize,
    ) {
        let mut events = Vec::new();
        let shadow_call = self
            .worker
            .desk
            .try_borrow_mut()
            .is_ok_and(|mut desk| desk.on_response(token_id, body_size, now_ms(), &mut events));
        if shadow_call {
            if let Some(active) = &self.active {
                self.worker.record_shadow(&active.shadow_stats, events);
            }
        } else if let Some(link) = self.link.as_mut() {
            link.on_response(token_id, body_size, now_ms());
        }
    }
}

impl RootContext for OutriderRoot {
    fn on_configure(&mut self, size: usize) -> bool {
        match self.load(size) {
            Ok(active) => {
                host::log(
                    LogLevel::Info,
                    &format!(
                        "rollout `{}` configured: {}",
                        active.rollout.name,
                        describe(&active.rollout)
                    ),
                );
                self.active = Some(Rc::new(active));
                true
            }
            Err(message) => {
                // Refusing keeps whatever configuration Envoy had before.
                host::log(LogLevel::Error, &message);
                false
            }
        }
    }

    fn on_tick(&mut self) {
        let Some(active) = self.active.as_ref() else {
            return;
        };
        let now = now_ms();
        if !active.rollout.shadows.is_empty() {
            let mut events = Vec::new();
            if let Ok(mut desk) = self.worker.desk.try_borrow_mut() {
                let sent = desk.dispatch(now, &mut events);
                if let Some(ms) = self.pace.after_tick(now, sent) {
                    // Not fatal if refused: the tick just keeps its period.
                    host::set_tick(Duration::from_millis(ms));
                }
                let longest = active
                    .rollout
                    .shadows
                    .iter()
                    .map(|s| s.timeout_ms)
                    .max()
                    .unwrap_or(0);
                desk.expire(now, longest);
            }
            self.worker.record_shadow(&active.shadow_stats, events);
        }
        let Some(link) = self.link.as_mut() else {
            return;
        };
        if now < self.next_link_ms {
            return;
        }
        self.next_link_ms = now + u64::try_from(link.tick_period().as_millis()).unwrap_or(250);
        if let Some(rollout) = link.tick(now, &active.rollout, &self.worker) {
            active.stats.weights(&rollout);
            host::log(
                LogLevel::Info,
                &format!(
                    "rollout `{}` weights from the scorer: {}",
                    rollout.name,
                    describe(&rollout)
                ),
            );
            self.active = Some(Rc::new(Active {
                rollout,
                stats: active.stats.clone(),
                shadow_stats: active.shadow_stats.clone(),
            }));
        }
    }

    fn create_http_context(&self, _context_id: u32) -> Option<Box<dyn HttpContext>> {
        // Always a context: the SDK panics on None. Without a configuration it passes
        // requests through untouched.
        Some(Box::new(Request::new(
            self.active.clone(),
            self.worker.clone(),
        )))
    }

    fn get_type(&self) -> Option<ContextType> {
        Some(ContextType::HttpContext)
    }
}
