//! The outrider proxy-wasm filter. Every decision lives in `outrider-filter-logic`;
//! this crate only talks to the host: it reads the configuration, reads and writes
//! headers, and records stats.

mod host;
mod request;
mod root;
mod scorer;
mod shadow;
mod stats;

use proxy_wasm::types::LogLevel;

proxy_wasm::main! {{
    proxy_wasm::set_log_level(LogLevel::Info);
    // A panic traps the VM; leave a trace of why in Envoy's log first.
    std::panic::set_hook(Box::new(|info| host::log(LogLevel::Critical, &format!("panic: {info}"))));
    proxy_wasm::set_root_context(|_| Box::new(root::OutriderRoot::new()));
}}
