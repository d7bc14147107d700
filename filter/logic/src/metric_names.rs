//! Stat names. Labels are carried in the name as `.label=value` segments; the bootstrap's
//! `stats_config.stats_tags` (see [`STATS_TAGS`]) turns each into a Prometheus label, so
//! `outrider.rq_total.rollout=fraud.variant=canary` is exported as
//! `outrider_rq_total{rollout="fraud",variant="canary"}`. Envoy prefixes stats that a
//! wasm filter defines with `wasmcustom.` in `/stats`; `/stats/prometheus` strips it.

use outrider_protocol::{ClosedSet, StatusClass};

/// `(tag name, regex)` pairs for `stats_config.stats_tags`, in the order Envoy must
/// apply them. The first group of each regex is cut from the name, the second is the
/// label value.
pub const STATS_TAGS: [(&str, &str); 7] = [
    ("rollout", r"^wasmcustom\.outrider\..*(\.rollout=([^.]+))"),
    ("variant", r"^wasmcustom\.outrider\..*(\.variant=([^.]+))"),
    ("class", r"^wasmcustom\.outrider\..*(\.class=([^.]+))"),
    (
        "grpc_status",
        r"^wasmcustom\.outrider\..*(\.grpc_status=([^.]+))",
    ),
    ("reason", r"^wasmcustom\.outrider\..*(\.reason=([^.]+))"),
    ("result", r"^wasmcustom\.outrider\..*(\.result=([^.]+))"),
    ("labels", r"^wasmcustom\.outrider\..*(\.labels=([^.]+))"),
];

/// Requests assigned to a variant (counter).
pub fn requests(rollout: &str, variant: &str) -> String {
    format!("outrider.rq_total.rollout={rollout}.variant={variant}")
}

/// Responses of a variant by status class (counter).
pub fn responses(rollout: &str, variant: &str, class: StatusClass) -> String {
    format!(
        "outrider.rs_total.rollout={rollout}.variant={variant}.class={}",
        class.name()
    )
}

/// Responses of a variant with a non-OK `grpc-status` (counter).
pub fn grpc_errors(rollout: &str, variant: &str, grpc_status: &str) -> String {
    format!(
        "outrider.grpc_error_total.rollout={rollout}.variant={variant}.grpc_status={grpc_status}"
    )
}

/// Time from the request's headers to the response's headers, in ms (histogram).
pub fn upstream_latency(rollout: &str, variant: &str) -> String {
    format!("outrider.upstream_rq_time.rollout={rollout}.variant={variant}")
}

/// Overrides that forced this variant (counter).
pub fn overrides_honoured(rollout: &str, variant: &str) -> String {
    format!("outrider.override_honoured_total.rollout={rollout}.variant={variant}")
}

/// Overrides ignored, by reason (counter).
pub fn overrides_rejected(rollout: &str, reason: &str) -> String {
    format!("outrider.override_rejected_total.rollout={rollout}.reason={reason}")
}

/// Requests without a sticky key, assigned at random (counter).
pub fn unkeyed_requests(rollout: &str) -> String {
    format!("outrider.rq_unkeyed_total.rollout={rollout}")
}

/// The configured weight of a variant, in basis points (gauge; 10,000 is 100%).
pub fn weight(rollout: &str, variant: &str) -> String {
    format!("outrider.weight_basis_points.rollout={rollout}.variant={variant}")
}

/// Guardrail trips of a variant, by reason: `5xx_share`, `grpc_error_share`,
/// `p99_latency`; counted by the worker that judged it (counter).
pub fn guardrail_trips(rollout: &str, variant: &str, reason: &str) -> String {
    format!("outrider.guardrail_trips_total.rollout={rollout}.variant={variant}.reason={reason}")
}

/// Polls of the scorer by this Envoy's polling worker, by result: `ok` (a state),
/// `not_modified`, `failed` (counter).
pub fn scorer_polls(rollout: &str, result: &str) -> String {
    format!("outrider.scorer_poll_total.rollout={rollout}.result={result}")
}

/// States from the scorer that this filter could not apply (counter).
pub fn states_rejected(rollout: &str) -> String {
    format!("outrider.state_rejected_total.rollout={rollout}")
}

/// Version of the rollout state in effect; 0 for the configured weights (gauge).
pub fn state_version(rollout: &str) -> String {
    format!("outrider.state_version.rollout={rollout}")
}

/// Milliseconds since the scorer last answered a poll (or since the configuration
/// was loaded, if it never did): how stale the weights may be (gauge).
pub fn state_age(rollout: &str) -> String {
    format!("outrider.state_age_ms.rollout={rollout}")
}

/// Telemetry batches by result: `sent`, `failed` (kept to retry), `rejected` (the
/// scorer refused them for good), `dropped` (the outbox was full) (counter).
pub fn telemetry_batches(rollout: &str, result: &str) -> String {
    format!("outrider.telemetry_batch_total.rollout={rollout}.result={result}")
}

/// Telemetry batches the workers of this Envoy hold for the scorer (gauge).
pub fn telemetry_pending(rollout: &str) -> String {
    format!("outrider.telemetry_pending_batches.rollout={rollout}")
}

/// Age in ms of the oldest batch held for the scorer, 0 when none is (gauge).
pub fn telemetry_oldest_pending(rollout: &str) -> String {
    format!("outrider.telemetry_oldest_pending_ms.rollout={rollout}")
}

/// Sampled requests by result: `taken`, `dropped` (the batch had its share),
/// `skipped` (a body over the limit) (counter).
pub fn samples(rollout: &str, result: &str) -> String {
    format!("outrider.sample_total.rollout={rollout}.result={result}")
}

/// Requests copied to a shadow variant (counter).
pub fn shadow_mirrored(rollout: &str, shadow: &str) -> String {
    format!("outrider.shadow_mirrored_total.rollout={rollout}.variant={shadow}")
}

/// Shadow calls by how they ended: `completed` (2xx), `error`, `timeout` (counter).
pub fn shadow_responses(rollout: &str, shadow: &str, result: &str) -> String {
    format!("outrider.shadow_response_total.rollout={rollout}.variant={shadow}.result={result}")
}

/// Requests not copied, or copies not compared, by reason: `body_too_large`,
/// `in_flight_cap`, `primary_incomplete`, `dispatch_failed` (counter).
pub fn shadow_skipped(rollout: &str, shadow: &str, reason: &str) -> String {
    format!("outrider.shadow_skipped_total.rollout={rollout}.variant={shadow}.reason={reason}")
}

/// Comparisons by result: `agree`, `disagree` (labels), `no_prediction_primary`,
/// `no_prediction_shadow` (counter).
pub fn shadow_comparisons(rollout: &str, shadow: &str, result: &str) -> String {
    format!("outrider.shadow_comparison_total.rollout={rollout}.variant={shadow}.result={result}")
}

/// Label pairs `<primary>_<shadow>` (`0_0`, `0_1`, `1_0`, `1_1`): the confusion
/// matrix (counter).
pub fn shadow_labels(rollout: &str, shadow: &str, labels: &str) -> String {
    format!("outrider.shadow_labels_total.rollout={rollout}.variant={shadow}.labels={labels}")
}

/// |primary score − shadow score| in thousandths (histogram).
pub fn shadow_score_diff(rollout: &str, shadow: &str) -> String {
    format!("outrider.shadow_score_diff_milli.rollout={rollout}.variant={shadow}")
}

/// Latency of the shadow's answers, ms (histogram).
pub fn shadow_latency(rollout: &str, shadow: &str) -> String {
    format!("outrider.shadow_latency_ms.rollout={rollout}.variant={shadow}")
}

/// Latency of the primary on the requests compared with this shadow, ms (histogram).
pub fn shadow_primary_latency(rollout: &str, shadow: &str) -> String {
    format!("outrider.shadow_primary_latency_ms.rollout={rollout}.variant={shadow}")
}

#[cfg(test)]
mod tests {
    use super::*;

    /// What Envoy's tag extraction does with these names, in plain Rust: every label
    /// segment is cut and the base name that is left is the Prometheus metric name.
    fn extract(name: &str) -> (String, Vec<(String, String)>) {
        let mut base = name.to_owned();
        let mut labels = Vec::new();
        for (tag, _) in STATS_TAGS {
            let marker = format!(".{tag}=");
            if let Some(start) = base.find(&marker) {
                let rest = &base[start + marker.len()..];
                let value: String = rest.chars().take_while(|c| *c != '.').collect();
                base.replace_range(start..start + marker.len() + value.len(), "");
                labels.push((tag.to_owned(), value));
            }
        }
        (base, labels)
    }

    #[test]
    fn names_split_into_a_base_and_labels() {
        let full = format!(
            "wasmcustom.{}",
            responses("fraud", "canary", StatusClass::ServerError)
        );
        let (base, labels) = extract(&full);
        assert_eq!(base, "wasmcustom.outrider.rs_total");
        assert_eq!(
            labels,
            vec![
                ("rollout".into(), "fraud".into()),
                ("variant".into(), "canary".into()),
                ("class".into(), "5xx".into())
            ]
        );
        let (base, labels) = extract(&format!("wasmcustom.{}", grpc_errors("r", "v", "14")));
        assert_eq!(base, "wasmcustom.outrider.grpc_error_total");
        assert_eq!(labels.len(), 3);
        let (base, _) = extract(&format!(
            "wasmcustom.{}",
            overrides_rejected("r", "expired")
        ));
        assert_eq!(base, "wasmcustom.outrider.override_rejected_total");
        let (base, labels) = extract(&format!(
            "wasmcustom.{}",
            guardrail_trips("fraud", "canary", "5xx_share")
        ));
        assert_eq!(base, "wasmcustom.outrider.guardrail_trips_total");
        assert_eq!(
            labels,
            vec![
                ("rollout".into(), "fraud".into()),
                ("variant".into(), "canary".into()),
                ("reason".into(), "5xx_share".into())
            ]
        );
    }

    #[test]
    fn every_name_starts_with_the_namespace_the_regexes_expect() {
        for name in [
            requests("r", "v"),
            upstream_latency("r", "v"),
            overrides_honoured("r", "v"),
            unkeyed_requests("r"),
            weight("r", "v"),
        ] {
            assert!(name.starts_with("outrider."), "{name}");
            assert!(name.contains(".rollout=r"), "{name}");
        }
    }
}
