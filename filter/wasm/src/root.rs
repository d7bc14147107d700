//! The root context: one per plugin configuration per worker. It validates the
//! configuration, defines the stats, and hands both to each request.

use std::cell::Cell;
use std::rc::Rc;

use outrider_filter_logic::Rollout;
use outrider_filter_logic::assignment::RandomPoints;
use proxy_wasm::hostcalls;
use proxy_wasm::traits::{Context, HttpContext, RootContext};
use proxy_wasm::types::{BufferType, ContextType, LogLevel};

use crate::host;
use crate::request::Request;
use crate::stats::RolloutStats;

/// Configuration documents larger than this are refused unread.
const MAX_CONFIG_BYTES: usize = 256 * 1024;

/// A configuration that passed validation, with its stats.
pub struct Active {
    pub rollout: Rollout,
    pub stats: RolloutStats,
}

/// State of one worker shared by all its requests (the VM is single-threaded).
pub struct Worker {
    pub random: RandomPoints,
    /// Cleared once the host says it has no `clear_route_cache` function.
    pub has_clear_route_cache: Cell<bool>,
}

pub struct OutriderRoot {
    active: Option<Rc<Active>>,
    worker: Rc<Worker>,
}

impl OutriderRoot {
    pub fn new() -> Self {
        Self {
            active: None,
            worker: Rc::new(Worker {
                random: RandomPoints::new(random_seed()),
                has_clear_route_cache: Cell::new(true),
            }),
        }
    }

    fn load(&self, size: usize) -> Result<Active, String> {
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
        let stats = RolloutStats::define(&rollout)?;
        Ok(Active { rollout, stats })
    }
}

/// Seed for per-request randomness: the host's WASI random source, or the clock.
fn random_seed() -> u64 {
    let mut bytes = [0u8; 8];
    match getrandom::fill(&mut bytes) {
        Ok(()) => u64::from_le_bytes(bytes),
        Err(_) => host::now_nanos(),
    }
}

impl Context for OutriderRoot {}

impl RootContext for OutriderRoot {
    fn on_configure(&mut self, size: usize) -> bool {
        match self.load(size) {
            Ok(active) => {
                let r = &active.rollout;
                let weights: Vec<String> = r
                    .variants
                    .iter()
                    .map(|v| format!("{}={}bp", v.name, v.weight_bp))
                    .collect();
                host::log(
                    LogLevel::Info,
                    &format!("rollout `{}` configured: {}", r.name, weights.join(" ")),
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
