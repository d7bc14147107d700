//! The stats of one configured rollout, defined once per configuration. gRPC error
//! counters are defined the first time a code is seen, so only codes that happen
//! show up in `/stats`.

use std::cell::Cell;

use outrider_filter_logic::metric_names as names;
use outrider_filter_logic::override_token::Rejection;
use outrider_filter_logic::response::{GRPC_CODES, StatusClass, grpc_label};
use outrider_filter_logic::{Rollout, Via};
use proxy_wasm::types::MetricType;

use crate::host;

pub struct VariantStats {
    requests: u32,
    responses: [u32; StatusClass::ALL.len()],
    latency_ms: u32,
    overrides: u32,
    /// Index 0 (OK) is never used; 1..=16 and "other" are defined on first use.
    grpc_errors: [Cell<Option<u32>>; GRPC_CODES + 1],
}

pub struct RolloutStats {
    variants: Vec<VariantStats>,
    unkeyed: u32,
    rejected: [u32; Rejection::ALL.len()],
}

impl RolloutStats {
    /// Defines every stat of `rollout` and sets the weight gauges.
    pub fn define(rollout: &Rollout) -> Result<Self, String> {
        use MetricType::{Counter, Gauge, Histogram};
        let r = rollout.name.as_str();
        let mut variants = Vec::with_capacity(rollout.variants.len());
        for v in &rollout.variants {
            let name = v.name.as_str();
            let mut responses = [0u32; StatusClass::ALL.len()];
            for (slot, class) in responses.iter_mut().zip(StatusClass::ALL) {
                *slot = host::define_metric(Counter, &names::responses(r, name, class))?;
            }
            let weight = host::define_metric(Gauge, &names::weight(r, name))?;
            host::record(weight, u64::from(v.weight_bp));
            variants.push(VariantStats {
                requests: host::define_metric(Counter, &names::requests(r, name))?,
                responses,
                latency_ms: host::define_metric(Histogram, &names::upstream_latency(r, name))?,
                overrides: host::define_metric(Counter, &names::overrides_honoured(r, name))?,
                grpc_errors: Default::default(),
            });
        }
        let mut rejected = [0u32; Rejection::ALL.len()];
        for (slot, rejection) in rejected.iter_mut().zip(Rejection::ALL) {
            *slot =
                host::define_metric(Counter, &names::overrides_rejected(r, rejection.reason()))?;
        }
        Ok(Self {
            variants,
            unkeyed: host::define_metric(Counter, &names::unkeyed_requests(r))?,
            rejected,
        })
    }

    pub fn request(&self, variant: usize, via: Via, rejected: Option<Rejection>) {
        if let Some(v) = self.variants.get(variant) {
            host::increment(v.requests);
            if via == Via::Override {
                host::increment(v.overrides);
            }
        }
        if via == Via::Random {
            host::increment(self.unkeyed);
        }
        if let Some(id) = rejected.and_then(|r| self.rejected.get(r.index())) {
            host::increment(*id);
        }
    }

    pub fn response(&self, variant: usize, class: Option<StatusClass>, latency_ms: u64) {
        let Some(v) = self.variants.get(variant) else {
            return;
        };
        host::record(v.latency_ms, latency_ms);
        if let Some(id) = class.and_then(|c| v.responses.get(c.index())) {
            host::increment(*id);
        }
    }

    pub fn grpc_error(&self, rollout: &Rollout, variant: usize, bucket: usize) {
        let (Some(v), Some(spec)) = (self.variants.get(variant), rollout.variants.get(variant))
        else {
            return;
        };
        let Some(slot) = v.grpc_errors.get(bucket) else {
            return;
        };
        let id = match slot.get() {
            Some(id) => id,
            None => {
                let name = names::grpc_errors(&rollout.name, &spec.name, &grpc_label(bucket));
                match host::define_metric(MetricType::Counter, &name) {
                    Ok(id) => {
                        slot.set(Some(id));
                        id
                    }
                    Err(_) => return,
                }
            }
        };
        host::increment(id);
    }
}
