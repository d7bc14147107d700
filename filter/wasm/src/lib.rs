//! The outrider proxy-wasm filter. Everything it decides and every state machine it
//! runs live in `outrider-filter-logic`, over the `Host` trait; this crate is the glue:
//! Envoy as that host ([`host`]) and the proxy-wasm callbacks ([`root`], [`request`]).

mod host;
mod request;
mod root;

use outrider_filter_logic::Host;
use outrider_filter_logic::host::LogLevel;

proxy_wasm::main! {{
    proxy_wasm::set_log_level(proxy_wasm::types::LogLevel::Info);
    // A panic traps the VM; leave a trace of why in Envoy's log first.
    std::panic::set_hook(Box::new(|info| host::ProxyHost.log(LogLevel::Critical, &format!("panic: {info}"))));
    proxy_wasm::set_root_context(|_| Box::new(root::OutriderRoot::new(random_seed())));
}}

/// Seed for per-request randomness and this worker's id: the host's WASI random
/// source, or the clock.
fn random_seed() -> u64 {
    let mut bytes = [0u8; 8];
    match getrandom::fill(&mut bytes) {
        Ok(()) => u64::from_le_bytes(bytes),
        Err(_) => host::ProxyHost.now_nanos(),
    }
}
