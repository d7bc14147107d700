//! What filters send: `POST /v1/telemetry` takes a [`TelemetryBatch`], one per worker
//! per flush interval.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

use crate::results::{BatchOutcome, GuardrailReason, ShadowSkip, StatusClass};

/// Upper bounds (ms) of the latency buckets, in the telemetry batches and in the
/// Prometheus histogram of the filter. A value above the last bound falls in an
/// overflow bucket, so a latency histogram has `LATENCY_BUCKETS_MS.len() + 1` counts.
pub const LATENCY_BUCKETS_MS: [f64; 22] = [
    0.5, 1.0, 2.0, 3.0, 5.0, 7.5, 10.0, 15.0, 20.0, 30.0, 50.0, 75.0, 100.0, 150.0, 200.0, 300.0,
    500.0, 750.0, 1000.0, 2000.0, 5000.0, 10000.0,
];

/// Number of counts in a latency histogram (the buckets and the overflow).
pub const LATENCY_SLOTS: usize = LATENCY_BUCKETS_MS.len() + 1;

/// The bucket a latency falls in: the first whose bound is at least `ms`.
pub fn latency_slot(ms: f64) -> usize {
    LATENCY_BUCKETS_MS
        .iter()
        .position(|bound| ms <= *bound)
        .unwrap_or(LATENCY_BUCKETS_MS.len())
}

/// Upper bounds of the buckets of |primary score − shadow score|; a larger difference
/// falls in an overflow bucket.
pub const SCORE_DIFF_BUCKETS: [f64; 10] =
    [0.0001, 0.001, 0.005, 0.01, 0.02, 0.05, 0.1, 0.2, 0.5, 1.0];

/// Number of counts in a score-difference histogram (the buckets and the overflow).
pub const SCORE_DIFF_SLOTS: usize = SCORE_DIFF_BUCKETS.len() + 1;

/// The bucket a score difference falls in.
pub fn score_diff_slot(diff: f64) -> usize {
    SCORE_DIFF_BUCKETS
        .iter()
        .position(|bound| diff <= *bound)
        .unwrap_or(SCORE_DIFF_BUCKETS.len())
}

/// What one worker of one Envoy saw from `window_start_ms` to `window_end_ms`. `batch_id`
/// makes the post idempotent: the scorer applies a batch once however often it is sent.
/// A worker sends its batches in order, one at a time, and the next one starts where
/// the previous one ended; a worker with nothing to report sends an empty batch, so the
/// scorer knows how far each worker's telemetry is complete.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TelemetryBatch {
    pub batch_id: String,
    pub rollout: String,
    /// The Envoy (its node id, or a random id when it has none).
    pub proxy: String,
    /// The reporting worker of that Envoy (an id per worker and configuration). With
    /// it, the scorer keeps how far this worker's telemetry is complete.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub worker: Option<String>,
    pub window_start_ms: u64,
    pub window_end_ms: u64,
    pub variants: Vec<VariantCounts>,
    #[serde(default)]
    pub samples: Vec<Sample>,
    /// Batches this worker dropped because the scorer could not be reached and its
    /// buffer was full (a running total).
    #[serde(default)]
    pub dropped_batches: u64,
    /// Shadow variants: mirrored requests and how their answers compare.
    #[serde(default)]
    pub shadows: Vec<ShadowCounts>,
    /// Guardrail trips this worker judged since its previous batch: each took a
    /// variant to 0% on this Envoy.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub guardrail_trips: Vec<GuardrailTrip>,
}

/// A variant broke a guardrail limit in the window one worker judged, and went to 0%
/// on that worker's Envoy.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct GuardrailTrip {
    pub variant: String,
    pub reason: GuardrailReason,
    /// Requests of the variant answered within the window.
    pub requests: u64,
    /// Of those, the ones that count against the limit: 5xx responses
    /// (`5xx_share`), responses with a gRPC error (`grpc_error_share`), or responses
    /// slower than the limit (`p99_latency`).
    pub offending: u64,
    /// `offending / requests`.
    pub share: f64,
    /// The limit broken: the largest share allowed (`5xx_share`,
    /// `grpc_error_share`), or the largest p99 in ms (`p99_latency`, broken when
    /// more than 1% of the requests are slower).
    pub limit: f64,
    /// The span of the window judged, ms.
    pub window_ms: u64,
    /// When the worker tripped, ms since the epoch (the filter's clock).
    pub at_ms: u64,
    /// Version of the rollout state in effect then (0: the configured weights).
    pub state_version: u64,
}

impl GuardrailTrip {
    /// The figures in words, as the filter logs them and the scorer records them:
    /// `5xx share 0.850 (17 of 20 requests in 10000 ms) above 0.5`.
    pub fn figures(&self) -> String {
        let (requests, offending, window) = (self.requests, self.offending, self.window_ms);
        match self.reason {
            GuardrailReason::ServerErrorShare | GuardrailReason::GrpcErrorShare => {
                let what = if self.reason == GuardrailReason::ServerErrorShare {
                    "5xx share"
                } else {
                    "gRPC error share"
                };
                format!(
                    "{what} {:.3} ({offending} of {requests} requests in {window} ms) above {}",
                    self.share, self.limit
                )
            }
            GuardrailReason::P99Latency => format!(
                "p99 latency above {} ms ({offending} of {requests} requests in {window} ms, \
                 {:.1}%, took longer)",
                self.limit,
                self.share * 100.0
            ),
        }
    }
}

/// How one shadow variant did since the previous batch.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ShadowCounts {
    /// The shadow variant's name.
    pub variant: String,
    /// Requests sent to the shadow.
    pub mirrored: u64,
    /// Shadow answers with a 2xx status.
    pub completed: u64,
    /// Shadow answers with another status, or calls that failed.
    pub errors: u64,
    pub timeouts: u64,
    /// Requests not mirrored, or copies not compared, by reason.
    #[serde(default)]
    pub skipped: BTreeMap<ShadowSkip, u64>,
    /// Pairs of predictions compared.
    pub compared: u64,
    /// Answers without a readable prediction, by side.
    #[serde(default)]
    pub no_prediction_primary: u64,
    #[serde(default)]
    pub no_prediction_shadow: u64,
    /// Label pairs: `confusion[primary][shadow]`, label 1 when the score reaches the
    /// threshold.
    pub confusion: [[u64; 2]; 2],
    /// Counts per bucket of [`SCORE_DIFF_BUCKETS`], then the overflow.
    pub score_diff: Vec<u64>,
    /// Latency histograms (buckets of [`LATENCY_BUCKETS_MS`]) of the shadow, and of
    /// the primary on the same requests.
    pub shadow_latency_ms: Vec<u64>,
    pub primary_latency_ms: Vec<u64>,
    /// Sum over compared pairs of shadow latency minus primary latency.
    #[serde(default)]
    pub latency_delta_sum_ms: i64,
}

/// Per-variant counts of a batch.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct VariantCounts {
    pub variant: String,
    pub requests: u64,
    pub responses: ClassCounts,
    #[serde(default)]
    pub grpc_errors: u64,
    /// Counts per bucket of [`LATENCY_BUCKETS_MS`], then the overflow.
    pub latency_ms: Vec<u64>,
    #[serde(default)]
    pub latency_sum_ms: u64,
}

/// Responses by status class.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ClassCounts {
    #[serde(rename = "2xx", default)]
    pub success: u64,
    #[serde(rename = "3xx", default)]
    pub redirect: u64,
    #[serde(rename = "4xx", default)]
    pub client_error: u64,
    #[serde(rename = "5xx", default)]
    pub server_error: u64,
}

impl ClassCounts {
    /// Counts one response of `class`.
    pub fn count(&mut self, class: StatusClass) {
        *self.slot(class) += 1;
    }

    /// Adds every count of `other`.
    pub fn add(&mut self, other: &ClassCounts) {
        self.success += other.success;
        self.redirect += other.redirect;
        self.client_error += other.client_error;
        self.server_error += other.server_error;
    }

    fn slot(&mut self, class: StatusClass) -> &mut u64 {
        match class {
            StatusClass::Success => &mut self.success,
            StatusClass::Redirect => &mut self.redirect,
            StatusClass::ClientError => &mut self.client_error,
            StatusClass::ServerError => &mut self.server_error,
        }
    }
}

/// One sampled request: the features read from its body, the score read from its
/// response, and the keys that outcome labels (feedback) are joined on later.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Sample {
    pub variant: String,
    pub at_ms: u64,
    #[serde(default)]
    pub request_id: Option<String>,
    #[serde(default)]
    pub user_key: Option<String>,
    #[serde(default)]
    pub features: BTreeMap<String, f64>,
    #[serde(default)]
    pub score: Option<f64>,
}

/// The scorer's answer to `POST /v1/telemetry`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct TelemetryAck {
    pub batch_id: String,
    pub result: BatchOutcome,
    /// Variants the batch named that the rollout does not have (its plan changed while
    /// the batch was being filled): their entries were left out, the rest stored.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub left_out_variants: Vec<String>,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn score_diff_slots() {
        assert_eq!(score_diff_slot(0.0), 0);
        assert_eq!(score_diff_slot(0.01), 3);
        assert_eq!(score_diff_slot(1.0), SCORE_DIFF_BUCKETS.len() - 1);
        assert_eq!(score_diff_slot(3.0), SCORE_DIFF_BUCKETS.len());
    }

    #[test]
    fn latency_slots() {
        assert_eq!(latency_slot(0.0), 0);
        assert_eq!(latency_slot(0.5), 0);
        assert_eq!(latency_slot(0.6), 1);
        assert_eq!(latency_slot(10_000.0), LATENCY_BUCKETS_MS.len() - 1);
        assert_eq!(latency_slot(10_000.1), LATENCY_BUCKETS_MS.len());
        assert_eq!(LATENCY_SLOTS, 23);
    }

    #[test]
    fn a_batch_round_trips_and_names_classes_as_documented() {
        let batch = TelemetryBatch {
            batch_id: "p1-w1-7".into(),
            rollout: "fraud".into(),
            proxy: "p1".into(),
            worker: Some("w1".into()),
            window_start_ms: 1,
            window_end_ms: 2,
            variants: vec![VariantCounts {
                variant: "canary".into(),
                requests: 3,
                responses: ClassCounts {
                    success: 2,
                    server_error: 1,
                    ..ClassCounts::default()
                },
                grpc_errors: 0,
                latency_ms: vec![0; LATENCY_SLOTS],
                latency_sum_ms: 12,
            }],
            samples: vec![],
            dropped_batches: 0,
            shadows: vec![],
            guardrail_trips: vec![],
        };
        let json = serde_json::to_value(&batch).unwrap();
        assert_eq!(json["variants"][0]["responses"]["5xx"], 1);
        assert!(
            json.get("guardrail_trips").is_none(),
            "no trips, no field: scorers that predate it take the batch"
        );
        let back: TelemetryBatch = serde_json::from_value(json).unwrap();
        assert_eq!(back, batch);
    }

    fn trip(reason: GuardrailReason, offending: u64, limit: f64) -> GuardrailTrip {
        GuardrailTrip {
            variant: "canary".into(),
            reason,
            requests: 40,
            offending,
            share: offending as f64 / 40.0,
            limit,
            window_ms: 10_000,
            at_ms: 1_800_000_000_000,
            state_version: 3,
        }
    }

    #[test]
    fn a_trip_travels_in_its_batch_and_reads_as_figures() {
        let t = trip(GuardrailReason::ServerErrorShare, 34, 0.5);
        assert_eq!(
            t.figures(),
            "5xx share 0.850 (34 of 40 requests in 10000 ms) above 0.5"
        );
        assert_eq!(
            trip(GuardrailReason::GrpcErrorShare, 4, 0.05).figures(),
            "gRPC error share 0.100 (4 of 40 requests in 10000 ms) above 0.05"
        );
        assert_eq!(
            trip(GuardrailReason::P99Latency, 2, 2000.0).figures(),
            "p99 latency above 2000 ms (2 of 40 requests in 10000 ms, 5.0%, took longer)"
        );
        let json = serde_json::to_value(&t).unwrap();
        assert_eq!(json["reason"], "5xx_share");
        let batch = serde_json::json!({"batch_id": "b", "rollout": "fraud", "proxy": "p",
            "window_start_ms": 1, "window_end_ms": 2, "variants": [], "guardrail_trips": [json]});
        let back: TelemetryBatch = serde_json::from_value(batch).unwrap();
        assert_eq!(back.guardrail_trips, vec![t]);
    }
}
