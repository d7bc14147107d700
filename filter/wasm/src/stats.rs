//! The stats of one configured rollout, defined once per configuration. gRPC error
//! counters are defined the first time a code is seen, so only codes that happen
//! show up in `/stats`.

use std::cell::Cell;

use outrider_filter_logic::metric_names as names;
use outrider_filter_logic::override_token::Rejection;
use outrider_filter_logic::response::{GRPC_CODES, StatusClass, grpc_label};
use outrider_filter_logic::shadow::Comparison;
use outrider_filter_logic::telemetry::ShadowEnd;
use outrider_filter_logic::{Rollout, Via};
use outrider_protocol::{ClosedSet, ShadowSkip};
use proxy_wasm::types::MetricType;

use crate::host;

pub struct VariantStats {
    requests: u32,
    weight: u32,
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
    samples: [u32; SAMPLE_RESULTS.len()],
}

const SAMPLE_RESULTS: [&str; 3] = ["taken", "dropped", "skipped"];

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
                *slot = host::define_metric(Counter, &names::responses(r, name, *class))?;
            }
            let weight = host::define_metric(Gauge, &names::weight(r, name))?;
            host::record(weight, u64::from(v.weight_bp));
            variants.push(VariantStats {
                requests: host::define_metric(Counter, &names::requests(r, name))?,
                weight,
                responses,
                latency_ms: host::define_metric(Histogram, &names::upstream_latency(r, name))?,
                overrides: host::define_metric(Counter, &names::overrides_honoured(r, name))?,
                grpc_errors: Default::default(),
            });
        }
        let mut rejected = [0u32; Rejection::ALL.len()];
        for (slot, rejection) in rejected.iter_mut().zip(Rejection::ALL) {
            *slot = host::define_metric(Counter, &names::overrides_rejected(r, rejection.name()))?;
        }
        let mut samples = [0u32; SAMPLE_RESULTS.len()];
        for (slot, result) in samples.iter_mut().zip(SAMPLE_RESULTS) {
            *slot = host::define_metric(Counter, &names::samples(r, result))?;
        }
        Ok(Self {
            variants,
            unkeyed: host::define_metric(Counter, &names::unkeyed_requests(r))?,
            rejected,
            samples,
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

    /// A sampled request: `taken`, `dropped` or `skipped`.
    pub fn sample(&self, result: &str) {
        if let Some(id) = index_of(&SAMPLE_RESULTS, result).and_then(|i| self.samples.get(i)) {
            host::increment(*id);
        }
    }

    /// Sets the weight gauges to the weights in effect.
    pub fn weights(&self, rollout: &Rollout) {
        for (v, spec) in self.variants.iter().zip(&rollout.variants) {
            host::record(v.weight, u64::from(spec.weight_bp));
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

const POLL_RESULTS: [&str; 3] = ["ok", "not_modified", "failed"];
const BATCH_RESULTS: [&str; 4] = ["sent", "failed", "rejected", "dropped"];

fn index_of(all: &[&str], result: &str) -> Option<usize> {
    all.iter().position(|r| *r == result)
}

/// Stats of the link to the scorer.
pub struct LinkStats {
    polls: [u32; POLL_RESULTS.len()],
    rejected: u32,
    version: u32,
    age: u32,
    batches: [u32; BATCH_RESULTS.len()],
}

impl LinkStats {
    pub fn define(rollout: &str) -> Result<Self, String> {
        use MetricType::{Counter, Gauge};
        let mut polls = [0u32; POLL_RESULTS.len()];
        for (slot, result) in polls.iter_mut().zip(POLL_RESULTS) {
            *slot = host::define_metric(Counter, &names::scorer_polls(rollout, result))?;
        }
        let mut batches = [0u32; BATCH_RESULTS.len()];
        for (slot, result) in batches.iter_mut().zip(BATCH_RESULTS) {
            *slot = host::define_metric(Counter, &names::telemetry_batches(rollout, result))?;
        }
        Ok(Self {
            polls,
            rejected: host::define_metric(Counter, &names::states_rejected(rollout))?,
            version: host::define_metric(Gauge, &names::state_version(rollout))?,
            age: host::define_metric(Gauge, &names::state_age(rollout))?,
            batches,
        })
    }

    pub fn poll(&self, result: &str) {
        if let Some(id) = index_of(&POLL_RESULTS, result).and_then(|i| self.polls.get(i)) {
            host::increment(*id);
        }
    }

    pub fn rejected(&self) {
        host::increment(self.rejected);
    }

    pub fn version(&self, version: u64) {
        host::record(self.version, version);
    }

    pub fn age(&self, ms: u64) {
        host::record(self.age, ms);
    }

    pub fn batches(&self, result: &str, n: u64) {
        if let Some(id) = index_of(&BATCH_RESULTS, result).and_then(|i| self.batches.get(i)) {
            host::add(*id, n);
        }
    }
}

const SHADOW_RESULTS: [&str; 3] = ["completed", "error", "timeout"];
const COMPARISON_RESULTS: [&str; 4] = [
    "agree",
    "disagree",
    "no_prediction_primary",
    "no_prediction_shadow",
];
const LABEL_PAIRS: [&str; 4] = ["0_0", "0_1", "1_0", "1_1"];

/// Stats of one shadow variant.
pub struct ShadowStats {
    mirrored: u32,
    responses: [u32; SHADOW_RESULTS.len()],
    skipped: [u32; ShadowSkip::ALL.len()],
    comparisons: [u32; COMPARISON_RESULTS.len()],
    labels: [u32; LABEL_PAIRS.len()],
    score_diff: u32,
    latency: u32,
    primary_latency: u32,
}

fn define_all<const N: usize, T: std::fmt::Display>(
    names: impl IntoIterator<Item = T>,
    name: impl Fn(&str) -> String,
) -> Result<[u32; N], String> {
    let mut ids = [0u32; N];
    for (slot, n) in ids.iter_mut().zip(names) {
        *slot = host::define_metric(MetricType::Counter, &name(&n.to_string()))?;
    }
    Ok(ids)
}

fn increment_named(ids: &[u32], names: &[&str], name: &str) {
    if let Some(id) = index_of(names, name).and_then(|i| ids.get(i)) {
        host::increment(*id);
    }
}

impl ShadowStats {
    pub fn define(rollout: &str, shadow: &str) -> Result<Self, String> {
        use MetricType::{Counter, Histogram};
        Ok(Self {
            mirrored: host::define_metric(Counter, &names::shadow_mirrored(rollout, shadow))?,
            responses: define_all(SHADOW_RESULTS, |r| {
                names::shadow_responses(rollout, shadow, r)
            })?,
            skipped: define_all(ShadowSkip::ALL, |r| {
                names::shadow_skipped(rollout, shadow, r)
            })?,
            comparisons: define_all(COMPARISON_RESULTS, |r| {
                names::shadow_comparisons(rollout, shadow, r)
            })?,
            labels: define_all(LABEL_PAIRS, |l| names::shadow_labels(rollout, shadow, l))?,
            score_diff: host::define_metric(Histogram, &names::shadow_score_diff(rollout, shadow))?,
            latency: host::define_metric(Histogram, &names::shadow_latency(rollout, shadow))?,
            primary_latency: host::define_metric(
                Histogram,
                &names::shadow_primary_latency(rollout, shadow),
            )?,
        })
    }

    pub fn mirrored(&self) {
        host::increment(self.mirrored);
    }

    pub fn skipped(&self, reason: ShadowSkip) {
        if let Some(id) = self.skipped.get(reason.index()) {
            host::increment(*id);
        }
    }

    pub fn ended(&self, end: ShadowEnd, latency_ms: u64) {
        let result = match end {
            ShadowEnd::Completed => "completed",
            ShadowEnd::Error => "error",
            ShadowEnd::Timeout => "timeout",
        };
        increment_named(&self.responses, &SHADOW_RESULTS, result);
        if end != ShadowEnd::Timeout {
            host::record(self.latency, latency_ms);
        }
    }

    pub fn compared(&self, comparison: &Comparison, primary_latency_ms: u64) {
        match comparison {
            Comparison::Compared {
                primary_label,
                shadow_label,
                diff,
                ..
            } => {
                let result = if primary_label == shadow_label {
                    "agree"
                } else {
                    "disagree"
                };
                increment_named(&self.comparisons, &COMPARISON_RESULTS, result);
                let pair = usize::from(*primary_label) * 2 + usize::from(*shadow_label);
                if let Some(id) = self.labels.get(pair) {
                    host::increment(*id);
                }
                host::record(self.score_diff, (diff * 1000.0).round() as u64);
                host::record(self.primary_latency, primary_latency_ms);
            }
            Comparison::NoPrimaryPrediction => increment_named(
                &self.comparisons,
                &COMPARISON_RESULTS,
                "no_prediction_primary",
            ),
            Comparison::NoShadowPrediction => increment_named(
                &self.comparisons,
                &COMPARISON_RESULTS,
                "no_prediction_shadow",
            ),
        }
    }
}
