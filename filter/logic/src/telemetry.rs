//! Telemetry for the scorer, gathered per worker: counts per variant and per shadow
//! since the last flush, and a bounded set of sampled requests, taken as one batch at
//! each flush ([`crate::outbox`] keeps the batches until the scorer has them).

use outrider_protocol::{
    GuardrailTrip, LATENCY_SLOTS, SCORE_DIFF_SLOTS, Sample, SampleResult, ShadowCounts, ShadowEnd,
    ShadowSkip, StatusClass, TelemetryBatch, VariantCounts, latency_slot, score_diff_slot,
};

use crate::guardrail::MAX_TRIPS;

use crate::shadow::Comparison;

fn fresh_shadow(name: &str) -> ShadowCounts {
    ShadowCounts {
        variant: name.to_owned(),
        score_diff: vec![0; SCORE_DIFF_SLOTS],
        shadow_latency_ms: vec![0; LATENCY_SLOTS],
        primary_latency_ms: vec![0; LATENCY_SLOTS],
        ..ShadowCounts::default()
    }
}

fn bump(histogram: &mut [u64], slot: usize) {
    if let Some(count) = histogram.get_mut(slot) {
        *count += 1;
    }
}

/// Counts and samples since the last flush.
#[derive(Debug)]
pub struct Aggregator {
    counts: Vec<VariantCounts>,
    shadows: Vec<ShadowCounts>,
    samples: Vec<Sample>,
    max_samples: usize,
    dropped_samples: u64,
    /// Guardrail trips this worker judged, at most [`MAX_TRIPS`] a batch.
    trips: Vec<GuardrailTrip>,
    window_start_ms: u64,
    seq: u64,
    touched: bool,
}

impl Aggregator {
    pub fn new<'a>(
        variants: impl IntoIterator<Item = &'a str>,
        shadows: impl IntoIterator<Item = &'a str>,
        max_samples: usize,
        now_ms: u64,
    ) -> Self {
        Self {
            counts: variants
                .into_iter()
                .map(|name| VariantCounts {
                    variant: name.to_owned(),
                    latency_ms: vec![0; LATENCY_SLOTS],
                    ..VariantCounts::default()
                })
                .collect(),
            shadows: shadows.into_iter().map(fresh_shadow).collect(),
            samples: Vec::new(),
            max_samples,
            dropped_samples: 0,
            trips: Vec::new(),
            window_start_ms: now_ms,
            seq: 0,
            touched: false,
        }
    }

    pub fn request(&mut self, variant: usize) {
        if let Some(c) = self.counts.get_mut(variant) {
            c.requests += 1;
            self.touched = true;
        }
    }

    pub fn response(&mut self, variant: usize, class: Option<StatusClass>, latency_ms: u64) {
        let Some(c) = self.counts.get_mut(variant) else {
            return;
        };
        if let Some(class) = class {
            c.responses.count(class);
        }
        if let Some(slot) = c.latency_ms.get_mut(latency_slot(latency_ms as f64)) {
            *slot += 1;
        }
        c.latency_sum_ms += latency_ms;
        self.touched = true;
    }

    pub fn grpc_error(&mut self, variant: usize) {
        if let Some(c) = self.counts.get_mut(variant) {
            c.grpc_errors += 1;
            self.touched = true;
        }
    }

    /// Keeps a sample unless this batch already has its share.
    pub fn sample(&mut self, sample: Sample) -> SampleResult {
        if self.samples.len() < self.max_samples {
            self.samples.push(sample);
            self.touched = true;
            SampleResult::Taken
        } else {
            self.dropped_samples += 1;
            SampleResult::Dropped
        }
    }

    pub fn shadow_mirrored(&mut self, shadow: usize) {
        if let Some(s) = self.shadows.get_mut(shadow) {
            s.mirrored += 1;
            self.touched = true;
        }
    }

    pub fn shadow_skipped(&mut self, shadow: usize, reason: ShadowSkip) {
        if let Some(s) = self.shadows.get_mut(shadow) {
            *s.skipped.entry(reason).or_default() += 1;
            self.touched = true;
        }
    }

    pub fn shadow_ended(&mut self, shadow: usize, end: ShadowEnd, latency_ms: u64) {
        let Some(s) = self.shadows.get_mut(shadow) else {
            return;
        };
        match end {
            ShadowEnd::Completed => s.completed += 1,
            ShadowEnd::Error => s.errors += 1,
            ShadowEnd::Timeout => s.timeouts += 1,
        }
        if end != ShadowEnd::Timeout {
            bump(&mut s.shadow_latency_ms, latency_slot(latency_ms as f64));
        }
        self.touched = true;
    }

    pub fn shadow_compared(
        &mut self,
        shadow: usize,
        comparison: &Comparison,
        primary_latency_ms: u64,
    ) {
        let Some(s) = self.shadows.get_mut(shadow) else {
            return;
        };
        match comparison {
            Comparison::Compared {
                primary_label,
                shadow_label,
                diff,
                latency_delta_ms,
            } => {
                s.compared += 1;
                if let Some(row) = s.confusion.get_mut(usize::from(*primary_label))
                    && let Some(cell) = row.get_mut(usize::from(*shadow_label))
                {
                    *cell += 1;
                }
                bump(&mut s.score_diff, score_diff_slot(*diff));
                bump(
                    &mut s.primary_latency_ms,
                    latency_slot(primary_latency_ms as f64),
                );
                s.latency_delta_sum_ms += latency_delta_ms;
            }
            Comparison::NoPrimaryPrediction => s.no_prediction_primary += 1,
            Comparison::NoShadowPrediction => s.no_prediction_shadow += 1,
        }
        self.touched = true;
    }

    /// A guardrail trip, for the next batch.
    pub fn guardrail_trip(&mut self, trip: GuardrailTrip) {
        if self.trips.len() < MAX_TRIPS {
            self.trips.push(trip);
            self.touched = true;
        }
    }

    pub fn dropped_samples(&self) -> u64 {
        self.dropped_samples
    }

    /// Everything since the last batch as a batch, and a fresh start. When nothing
    /// happened there is a batch only if `empty_too` (it tells the scorer that this
    /// worker's telemetry is complete up to now); otherwise the next batch covers the
    /// time since the last one. Batch ids are `<proxy>-<worker>-<sequence>`.
    pub fn take(
        &mut self,
        rollout: &str,
        proxy: &str,
        worker: u64,
        dropped_batches: u64,
        now_ms: u64,
        empty_too: bool,
    ) -> Option<TelemetryBatch> {
        if !self.touched && !empty_too {
            return None;
        }
        self.seq += 1;
        let fresh: Vec<VariantCounts> = self
            .counts
            .iter()
            .map(|c| VariantCounts {
                variant: c.variant.clone(),
                latency_ms: vec![0; LATENCY_SLOTS],
                ..VariantCounts::default()
            })
            .collect();
        let counts = std::mem::replace(&mut self.counts, fresh);
        let fresh_shadows: Vec<ShadowCounts> = self
            .shadows
            .iter()
            .map(|s| fresh_shadow(&s.variant))
            .collect();
        let shadows = std::mem::replace(&mut self.shadows, fresh_shadows);
        let batch = TelemetryBatch {
            batch_id: format!("{proxy}-{worker:016x}-{}", self.seq),
            rollout: rollout.to_owned(),
            proxy: proxy.to_owned(),
            worker: Some(format!("{worker:016x}")),
            window_start_ms: self.window_start_ms,
            window_end_ms: now_ms.max(self.window_start_ms),
            // A response can land in the batch after its request's, so a variant is
            // idle only when it has neither.
            variants: counts
                .into_iter()
                .filter(|c| {
                    c.requests > 0 || c.grpc_errors > 0 || c.latency_ms.iter().any(|n| *n > 0)
                })
                .collect(),
            samples: std::mem::take(&mut self.samples),
            dropped_batches,
            shadows: shadows
                .into_iter()
                .filter(|s| *s != fresh_shadow(&s.variant))
                .collect(),
            guardrail_trips: std::mem::take(&mut self.trips),
        };
        self.window_start_ms = now_ms;
        self.touched = false;
        Some(batch)
    }
}

#[cfg(test)]
mod tests {
    use std::collections::BTreeMap;

    use outrider_protocol::ClassCounts;

    use super::*;

    fn aggregator() -> Aggregator {
        Aggregator::new(["stable", "canary"], ["v3"], 2, 1_000)
    }

    #[test]
    fn counts_flow_into_one_batch_and_start_again() {
        let mut a = aggregator();
        assert!(
            a.take("fraud", "p", 1, 0, 1_500, false).is_none(),
            "nothing happened yet"
        );
        a.request(1);
        a.request(1);
        a.response(1, Some(StatusClass::Success), 4);
        a.response(1, Some(StatusClass::ServerError), 20_000);
        a.grpc_error(1);
        a.request(7); // not a variant: ignored
        let batch = a.take("fraud", "p", 1, 3, 2_000, false).unwrap();
        assert_eq!(batch.batch_id, "p-0000000000000001-1");
        assert_eq!(batch.worker.as_deref(), Some("0000000000000001"));
        assert_eq!(
            (
                batch.window_start_ms,
                batch.window_end_ms,
                batch.dropped_batches
            ),
            (1_000, 2_000, 3),
            "the batch covers the quiet time before it"
        );
        assert_eq!(batch.variants.len(), 1, "idle variants are left out");
        let canary = &batch.variants[0];
        assert_eq!(
            (canary.variant.as_str(), canary.requests, canary.grpc_errors),
            ("canary", 2, 1)
        );
        assert_eq!(
            canary.responses,
            ClassCounts {
                success: 1,
                server_error: 1,
                ..ClassCounts::default()
            }
        );
        assert_eq!(canary.latency_ms[4], 1);
        assert_eq!(canary.latency_ms[LATENCY_SLOTS - 1], 1);
        assert_eq!(canary.latency_sum_ms, 20_004);
        a.request(0);
        let next = a.take("fraud", "p", 1, 3, 3_000, false).unwrap();
        assert_eq!(next.batch_id, "p-0000000000000001-2");
        assert_eq!(
            (next.variants[0].variant.as_str(), next.variants[0].requests),
            ("stable", 1)
        );
        assert_eq!(next.window_start_ms, 2_000);
    }

    #[test]
    fn quiet_time_is_covered_by_the_next_batch_or_an_empty_one() {
        let mut a = aggregator();
        assert!(a.take("fraud", "p", 1, 0, 2_000, false).is_none());
        a.request(0);
        let batch = a.take("fraud", "p", 1, 0, 3_000, false).unwrap();
        assert_eq!(
            (batch.window_start_ms, batch.window_end_ms),
            (1_000, 3_000),
            "the quiet second is in the batch that follows it"
        );
        let empty = a.take("fraud", "p", 1, 0, 4_000, true).unwrap();
        assert_eq!(
            (
                empty.window_start_ms,
                empty.window_end_ms,
                empty.variants.len()
            ),
            (3_000, 4_000, 0)
        );
        assert_eq!(empty.batch_id, "p-0000000000000001-2");
    }

    #[test]
    fn shadow_tallies() {
        let mut a = aggregator();
        a.shadow_mirrored(0);
        a.shadow_mirrored(0);
        a.shadow_skipped(0, ShadowSkip::InFlightCap);
        a.shadow_ended(0, ShadowEnd::Completed, 12);
        a.shadow_ended(0, ShadowEnd::Timeout, 5_000);
        let agree = Comparison::Compared {
            primary_label: true,
            shadow_label: true,
            diff: 0.004,
            latency_delta_ms: 3,
        };
        let disagree = Comparison::Compared {
            primary_label: true,
            shadow_label: false,
            diff: 0.3,
            latency_delta_ms: -5,
        };
        a.shadow_compared(0, &agree, 9);
        a.shadow_compared(0, &disagree, 9);
        a.shadow_compared(0, &Comparison::NoShadowPrediction, 9);
        a.shadow_mirrored(5); // not a shadow
        let batch = a.take("fraud", "p", 1, 0, 2, false).unwrap();
        assert!(batch.variants.is_empty());
        let s = &batch.shadows[0];
        assert_eq!(
            (
                s.mirrored,
                s.completed,
                s.timeouts,
                s.compared,
                s.no_prediction_shadow
            ),
            (2, 1, 1, 2, 1)
        );
        assert_eq!(s.skipped.get(&ShadowSkip::InFlightCap), Some(&1));
        assert_eq!(s.confusion, [[0, 0], [1, 1]]);
        assert_eq!(s.score_diff[2], 1);
        assert_eq!(s.latency_delta_sum_ms, -2);
        assert_eq!(
            s.shadow_latency_ms.iter().sum::<u64>(),
            1,
            "a timeout has no latency"
        );
        assert_eq!(s.primary_latency_ms.iter().sum::<u64>(), 2);
        assert!(a.take("fraud", "p", 1, 0, 3, false).is_none());
    }

    #[test]
    fn samples_are_bounded_per_batch() {
        let mut a = aggregator();
        for i in 0..5 {
            a.sample(Sample {
                variant: "stable".into(),
                at_ms: i,
                request_id: None,
                user_key: None,
                features: BTreeMap::new(),
                score: None,
            });
        }
        assert_eq!(
            a.take("fraud", "p", 1, 0, 2, false).unwrap().samples.len(),
            2
        );
        assert_eq!(a.dropped_samples(), 3);
    }
}
