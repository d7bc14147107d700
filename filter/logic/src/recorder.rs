//! One place that writes each fact about a request or a shadow copy: to Envoy's stats
//! and, when a scorer is configured, to the telemetry for it. Callers say what
//! happened once; the recorder knows where it goes.

use outrider_protocol::{GuardrailTrip, Sample, SampleResult, StatusClass, TelemetryBatch};

use crate::config::Rollout;
use crate::decision::{Decision, Via};
use crate::desk::Event;
use crate::host::Host;
use crate::stats::{Counters, RolloutStats, ShadowStats};
use crate::telemetry::Aggregator;

pub struct Recorder {
    pub counters: Counters,
    stats: RolloutStats,
    /// Per shadow variant, in configuration order.
    shadows: Vec<ShadowStats>,
    /// Counts and samples for the scorer, when a scorer is configured.
    telemetry: Option<Aggregator>,
}

impl Recorder {
    /// Defines every stat of the rollout.
    pub fn define(host: &impl Host, rollout: &Rollout, now_ms: u64) -> Result<Self, String> {
        let mut counters = Counters::default();
        let stats = RolloutStats::define(host, &mut counters, rollout)?;
        let shadows = rollout
            .shadows
            .iter()
            .map(|s| ShadowStats::define(host, &mut counters, &rollout.name, &s.name))
            .collect::<Result<Vec<_>, _>>()?;
        let telemetry = rollout.scorer.as_ref().map(|_| {
            let samples = rollout
                .telemetry
                .as_ref()
                .map_or(0, |t| t.max_samples_per_batch);
            Aggregator::new(
                rollout.variants.iter().map(|v| v.name.as_str()),
                rollout.shadows.iter().map(|s| s.name.as_str()),
                samples,
                now_ms,
            )
        });
        Ok(Self {
            counters,
            stats,
            shadows,
            telemetry,
        })
    }

    pub fn request(&mut self, decision: &Decision) {
        self.stats.request(
            &mut self.counters,
            decision.variant,
            decision.via == Via::Override,
            decision.via == Via::Random,
            decision.rejected_override,
        );
        if let Some(t) = &mut self.telemetry {
            t.request(decision.variant);
        }
    }

    pub fn response(
        &mut self,
        host: &impl Host,
        variant: usize,
        class: Option<StatusClass>,
        latency_ms: u64,
    ) {
        self.stats
            .response(host, &mut self.counters, variant, class, latency_ms);
        if let Some(t) = &mut self.telemetry {
            t.response(variant, class, latency_ms);
        }
    }

    /// A response with a non-OK `grpc-status`, by its error bucket.
    pub fn grpc_error(&mut self, host: &impl Host, variant: usize, bucket: usize) {
        self.stats
            .grpc_error(host, &mut self.counters, variant, bucket);
        if let Some(t) = &mut self.telemetry {
            t.grpc_error(variant);
        }
    }

    /// A sampled request, complete (`Some`) or skipped for a body over the limit.
    pub fn sample(&mut self, sample: Option<Sample>) -> SampleResult {
        let result = match (sample, &mut self.telemetry) {
            (Some(sample), Some(t)) => t.sample(sample),
            (Some(_), None) => SampleResult::Dropped,
            (None, _) => SampleResult::Skipped,
        };
        self.stats.sample(&mut self.counters, result);
        result
    }

    /// What the shadow desk reports.
    pub fn shadow(&mut self, host: &impl Host, events: impl IntoIterator<Item = Event>) {
        for event in events {
            let counters = &mut self.counters;
            let telemetry = self.telemetry.as_mut();
            match event {
                Event::Mirrored { shadow } => {
                    if let Some(s) = self.shadows.get(shadow) {
                        s.mirrored(counters);
                    }
                    if let Some(t) = telemetry {
                        t.shadow_mirrored(shadow);
                    }
                }
                Event::Skipped { shadow, reason } => {
                    if let Some(s) = self.shadows.get(shadow) {
                        s.skipped(counters, reason);
                    }
                    if let Some(t) = telemetry {
                        t.shadow_skipped(shadow, reason);
                    }
                }
                Event::Ended {
                    shadow,
                    end,
                    latency_ms,
                } => {
                    if let Some(s) = self.shadows.get(shadow) {
                        s.ended(host, counters, end, latency_ms);
                    }
                    if let Some(t) = telemetry {
                        t.shadow_ended(shadow, end, latency_ms);
                    }
                }
                Event::Compared {
                    shadow,
                    comparison,
                    primary_latency_ms,
                } => {
                    if let Some(s) = self.shadows.get(shadow) {
                        s.compared(
                            host,
                            counters,
                            comparison.result(),
                            comparison.labels(),
                            primary_latency_ms,
                        );
                    }
                    if let Some(t) = telemetry {
                        t.shadow_compared(shadow, &comparison, primary_latency_ms);
                    }
                }
            }
        }
    }

    /// A guardrail trip this worker judged: its counter, and the next telemetry batch.
    pub fn guardrail_trip(&mut self, variant: usize, trip: &GuardrailTrip) {
        self.stats
            .guardrail_trip(&mut self.counters, variant, trip.reason);
        if let Some(t) = &mut self.telemetry {
            t.guardrail_trip(trip.clone());
        }
    }

    /// Sets the weight gauges to the weights in effect, in basis points.
    pub fn weights(&self, host: &impl Host, weights_bp: &[u32]) {
        self.stats.weights(host, weights_bp);
    }

    /// Adds the counts kept in the worker to Envoy's counters.
    pub fn flush_counters(&mut self, host: &impl Host) {
        self.counters.flush(host);
    }

    /// Everything for the scorer since the last batch, if anything happened.
    pub fn take_batch(
        &mut self,
        rollout: &str,
        proxy: &str,
        worker: u64,
        dropped_batches: u64,
        now_ms: u64,
        empty_too: bool,
    ) -> Option<TelemetryBatch> {
        self.telemetry
            .as_mut()?
            .take(rollout, proxy, worker, dropped_batches, now_ms, empty_too)
    }
}
