//! The filter's stats in Envoy: defined once per configuration, updated per request.
//!
//! Counters are kept in the worker and added to Envoy's counters on the root's tick
//! ([`Counters::flush`]), so a request pays no host call for them; `/stats` lags by at
//! most [`COUNTER_FLUSH_MS`] plus one tick. Histograms and gauges go to Envoy at once.
//! gRPC error counters are defined the first time a code is seen, so only codes that
//! happen show up in `/stats`.

use outrider_protocol::{
    BatchResult, ClosedSet, ComparisonResult, GuardrailReason, LabelPair, OverrideRejection,
    PollResult, SampleResult, ShadowEnd, ShadowSkip, StatusClass,
};

use crate::config::Rollout;
use crate::host::{Host, MetricKind};
use crate::metric_names as names;
use crate::response::{GRPC_CODES, grpc_label};

/// How often counts kept in the worker reach Envoy's counters.
pub const COUNTER_FLUSH_MS: u64 = 250;

/// A counter kept in the worker: its place in [`Counters`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Counter(usize);

/// Counts waiting for the next flush, and the Envoy counters they go to.
#[derive(Debug, Default)]
pub struct Counters {
    ids: Vec<u32>,
    pending: Vec<u64>,
    /// Slots with something pending, so a flush visits only those.
    dirty: Vec<usize>,
}

impl Counters {
    pub fn define(&mut self, host: &impl Host, name: &str) -> Result<Counter, String> {
        let id = host.define_metric(MetricKind::Counter, name)?;
        self.ids.push(id);
        self.pending.push(0);
        Ok(Counter(self.ids.len() - 1))
    }

    /// Defines one counter per member of a closed set, in its order.
    fn define_all<T: ClosedSet>(
        &mut self,
        host: &impl Host,
        name: impl Fn(T) -> String,
    ) -> Result<Vec<Counter>, String> {
        T::ALL
            .iter()
            .map(|m| self.define(host, &name(*m)))
            .collect()
    }

    pub fn add(&mut self, counter: Counter, n: u64) {
        if let Some(slot) = self.pending.get_mut(counter.0) {
            if *slot == 0 && n > 0 {
                self.dirty.push(counter.0);
            }
            *slot += n;
        }
    }

    pub fn increment(&mut self, counter: Counter) {
        self.add(counter, 1);
    }

    /// Adds everything pending to Envoy's counters.
    pub fn flush(&mut self, host: &impl Host) {
        for slot in self.dirty.drain(..) {
            if let (Some(n), Some(id)) = (self.pending.get_mut(slot), self.ids.get(slot)) {
                host.increment(*id, std::mem::take(n));
            }
        }
    }
}

fn nth(counters: &[Counter], i: usize) -> Option<Counter> {
    counters.get(i).copied()
}

struct VariantStats {
    requests: Counter,
    weight: u32,
    responses: Vec<Counter>,
    latency_ms: u32,
    overrides: Counter,
    /// Index 0 (OK) is never used; 1..=16 and "other" are defined on first use.
    grpc_errors: [Option<Counter>; GRPC_CODES + 1],
    /// Guardrail trips by reason, for a guarded variant (empty otherwise).
    guardrail_trips: Vec<Counter>,
}

/// Per-variant and per-rollout stats of the requests.
pub struct RolloutStats {
    rollout: String,
    variants: Vec<(String, VariantStats)>,
    unkeyed: Counter,
    rejected: Vec<Counter>,
    samples: Vec<Counter>,
}

impl RolloutStats {
    /// Defines every stat of `rollout` and sets the weight gauges.
    pub fn define(
        host: &impl Host,
        counters: &mut Counters,
        rollout: &Rollout,
    ) -> Result<Self, String> {
        let r = rollout.name.as_str();
        let mut variants = Vec::with_capacity(rollout.variants.len());
        for (i, v) in rollout.variants.iter().enumerate() {
            let name = v.name.as_str();
            let guarded = rollout
                .guardrail
                .as_ref()
                .is_some_and(|g| g.variants.contains(&i));
            let weight = host.define_metric(MetricKind::Gauge, &names::weight(r, name))?;
            host.record(weight, u64::from(v.weight_bp));
            let stats = VariantStats {
                requests: counters.define(host, &names::requests(r, name))?,
                weight,
                responses: counters
                    .define_all(host, |class: StatusClass| names::responses(r, name, class))?,
                latency_ms: host
                    .define_metric(MetricKind::Histogram, &names::upstream_latency(r, name))?,
                overrides: counters.define(host, &names::overrides_honoured(r, name))?,
                grpc_errors: Default::default(),
                guardrail_trips: if guarded {
                    counters.define_all(host, |reason: GuardrailReason| {
                        names::guardrail_trips(r, name, reason.name())
                    })?
                } else {
                    Vec::new()
                },
            };
            variants.push((v.name.clone(), stats));
        }
        Ok(Self {
            rollout: r.to_owned(),
            variants,
            unkeyed: counters.define(host, &names::unkeyed_requests(r))?,
            rejected: counters.define_all(host, |reason: OverrideRejection| {
                names::overrides_rejected(r, reason.name())
            })?,
            samples: counters.define_all(host, |result: SampleResult| {
                names::samples(r, result.name())
            })?,
        })
    }

    fn variant(&self, variant: usize) -> Option<&VariantStats> {
        self.variants.get(variant).map(|(_, v)| v)
    }

    pub fn request(
        &self,
        counters: &mut Counters,
        variant: usize,
        overridden: bool,
        unkeyed: bool,
        rejected: Option<OverrideRejection>,
    ) {
        if let Some(v) = self.variant(variant) {
            counters.increment(v.requests);
            if overridden {
                counters.increment(v.overrides);
            }
        }
        if unkeyed {
            counters.increment(self.unkeyed);
        }
        if let Some(c) = rejected.and_then(|r| nth(&self.rejected, r.index())) {
            counters.increment(c);
        }
    }

    pub fn response(
        &self,
        host: &impl Host,
        counters: &mut Counters,
        variant: usize,
        class: Option<StatusClass>,
        latency_ms: u64,
    ) {
        let Some(v) = self.variant(variant) else {
            return;
        };
        host.record(v.latency_ms, latency_ms);
        if let Some(c) = class.and_then(|c| nth(&v.responses, c.index())) {
            counters.increment(c);
        }
    }

    pub fn grpc_error(
        &mut self,
        host: &impl Host,
        counters: &mut Counters,
        variant: usize,
        bucket: usize,
    ) {
        let rollout = &self.rollout;
        let Some((name, v)) = self.variants.get_mut(variant) else {
            return;
        };
        let Some(slot) = v.grpc_errors.get_mut(bucket) else {
            return;
        };
        if slot.is_none() {
            let stat = names::grpc_errors(rollout, name, &grpc_label(bucket));
            *slot = counters.define(host, &stat).ok();
        }
        if let Some(c) = *slot {
            counters.increment(c);
        }
    }

    pub fn sample(&self, counters: &mut Counters, result: SampleResult) {
        if let Some(c) = nth(&self.samples, result.index()) {
            counters.increment(c);
        }
    }

    /// A guardrail trip this worker judged.
    pub fn guardrail_trip(&self, counters: &mut Counters, variant: usize, reason: GuardrailReason) {
        if let Some(c) = self
            .variant(variant)
            .and_then(|v| nth(&v.guardrail_trips, reason.index()))
        {
            counters.increment(c);
        }
    }

    /// Sets the weight gauges to the weights in effect, in basis points.
    pub fn weights(&self, host: &impl Host, weights_bp: &[u32]) {
        for ((_, v), bp) in self.variants.iter().zip(weights_bp) {
            host.record(v.weight, u64::from(*bp));
        }
    }
}

/// Stats of one shadow variant.
pub struct ShadowStats {
    mirrored: Counter,
    responses: Vec<Counter>,
    skipped: Vec<Counter>,
    comparisons: Vec<Counter>,
    labels: Vec<Counter>,
    score_diff: u32,
    latency: u32,
    primary_latency: u32,
}

impl ShadowStats {
    pub fn define(
        host: &impl Host,
        counters: &mut Counters,
        rollout: &str,
        shadow: &str,
    ) -> Result<Self, String> {
        use MetricKind::Histogram;
        Ok(Self {
            mirrored: counters.define(host, &names::shadow_mirrored(rollout, shadow))?,
            responses: counters.define_all(host, |end: ShadowEnd| {
                names::shadow_responses(rollout, shadow, end.name())
            })?,
            skipped: counters.define_all(host, |reason: ShadowSkip| {
                names::shadow_skipped(rollout, shadow, reason.name())
            })?,
            comparisons: counters.define_all(host, |result: ComparisonResult| {
                names::shadow_comparisons(rollout, shadow, result.name())
            })?,
            labels: counters.define_all(host, |pair: LabelPair| {
                names::shadow_labels(rollout, shadow, pair.name())
            })?,
            score_diff: host
                .define_metric(Histogram, &names::shadow_score_diff(rollout, shadow))?,
            latency: host.define_metric(Histogram, &names::shadow_latency(rollout, shadow))?,
            primary_latency: host
                .define_metric(Histogram, &names::shadow_primary_latency(rollout, shadow))?,
        })
    }

    pub fn mirrored(&self, counters: &mut Counters) {
        counters.increment(self.mirrored);
    }

    pub fn skipped(&self, counters: &mut Counters, reason: ShadowSkip) {
        if let Some(c) = nth(&self.skipped, reason.index()) {
            counters.increment(c);
        }
    }

    pub fn ended(
        &self,
        host: &impl Host,
        counters: &mut Counters,
        end: ShadowEnd,
        latency_ms: u64,
    ) {
        if let Some(c) = nth(&self.responses, end.index()) {
            counters.increment(c);
        }
        if end != ShadowEnd::Timeout {
            host.record(self.latency, latency_ms);
        }
    }

    pub fn compared(
        &self,
        host: &impl Host,
        counters: &mut Counters,
        result: ComparisonResult,
        labels: Option<(LabelPair, f64)>,
        primary_latency_ms: u64,
    ) {
        if let Some(c) = nth(&self.comparisons, result.index()) {
            counters.increment(c);
        }
        if let Some((pair, diff)) = labels {
            if let Some(c) = nth(&self.labels, pair.index()) {
                counters.increment(c);
            }
            host.record(self.score_diff, (diff * 1000.0).round() as u64);
            host.record(self.primary_latency, primary_latency_ms);
        }
    }
}

/// Stats of the link to the scorer.
pub struct LinkStats {
    polls: Vec<Counter>,
    rejected: Counter,
    version: u32,
    age: u32,
    batches: Vec<Counter>,
    pending: u32,
    oldest_pending: u32,
}

impl LinkStats {
    pub fn define(
        host: &impl Host,
        counters: &mut Counters,
        rollout: &str,
    ) -> Result<Self, String> {
        use MetricKind::Gauge;
        Ok(Self {
            polls: counters.define_all(host, |result: PollResult| {
                names::scorer_polls(rollout, result.name())
            })?,
            rejected: counters.define(host, &names::states_rejected(rollout))?,
            version: host.define_metric(Gauge, &names::state_version(rollout))?,
            age: host.define_metric(Gauge, &names::state_age(rollout))?,
            batches: counters.define_all(host, |result: BatchResult| {
                names::telemetry_batches(rollout, result.name())
            })?,
            pending: host.define_metric(Gauge, &names::telemetry_pending(rollout))?,
            oldest_pending: host.define_metric(Gauge, &names::telemetry_oldest_pending(rollout))?,
        })
    }

    pub fn poll(&self, counters: &mut Counters, result: PollResult) {
        if let Some(c) = nth(&self.polls, result.index()) {
            counters.increment(c);
        }
    }

    pub fn rejected(&self, counters: &mut Counters) {
        counters.increment(self.rejected);
    }

    pub fn version(&self, host: &impl Host, version: u64) {
        host.record(self.version, version);
    }

    pub fn age(&self, host: &impl Host, ms: u64) {
        host.record(self.age, ms);
    }

    /// The Envoy's telemetry backlog: batches held, age of the oldest.
    pub fn backlog(&self, host: &impl Host, pending: u64, oldest_age_ms: u64) {
        host.record(self.pending, pending);
        host.record(self.oldest_pending, oldest_age_ms);
    }

    pub fn batches(&self, counters: &mut Counters, result: BatchResult, n: u64) {
        if let Some(c) = nth(&self.batches, result.index()) {
            counters.add(c, n);
        }
    }
}
