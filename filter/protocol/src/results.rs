//! Results and reasons: what the filter counts in its stats and telemetry, and what
//! the scorer stores and reports, each spelled once.

use crate::closed_set;

closed_set! {
    /// Final response status classes, counted per variant. 1xx responses are interim
    /// and never final in Envoy's filter chain, so they have no class.
    pub enum StatusClass {
        Success => "2xx",
        Redirect => "3xx",
        ClientError => "4xx",
        ServerError => "5xx",
    }
}

impl StatusClass {
    /// The class of an HTTP `:status` value, if it is a final status.
    pub fn of_status(status: &str) -> Option<Self> {
        match status.trim().parse::<u16>().ok()? {
            200..=299 => Some(StatusClass::Success),
            300..=399 => Some(StatusClass::Redirect),
            400..=499 => Some(StatusClass::ClientError),
            500..=599 => Some(StatusClass::ServerError),
            _ => None,
        }
    }
}

closed_set! {
    /// What became of a request drawn for sampling.
    pub enum SampleResult {
        /// Sent to the scorer with the next batch.
        Taken => "taken",
        /// The batch already had its share of samples.
        Dropped => "dropped",
        /// A body went over the sampling limit, so the features or score are unknown.
        Skipped => "skipped",
    }
}

closed_set! {
    /// How a poll of the scorer for the rollout state went.
    pub enum PollResult {
        /// A state came back.
        Ok => "ok",
        /// The state had not changed (304).
        NotModified => "not_modified",
        /// No answer, or one that could not be used.
        Failed => "failed",
    }
}

closed_set! {
    /// What became of a telemetry batch on the filter's side.
    pub enum BatchResult {
        /// The scorer took it.
        Sent => "sent",
        /// A try failed; the batch stays in the outbox for the next one.
        Failed => "failed",
        /// The scorer refused it for good (a 4xx other than 408 and 429).
        Rejected => "rejected",
        /// The outbox was full, so the oldest batch gave way.
        Dropped => "dropped",
    }
}

closed_set! {
    /// What the scorer did with a telemetry batch it accepted.
    pub enum BatchOutcome {
        Applied => "applied",
        /// Its id was applied before; nothing changed.
        Duplicate => "duplicate",
    }
}

closed_set! {
    /// How a call to a shadow variant ended.
    pub enum ShadowEnd {
        /// Answered with a 2xx status.
        Completed => "completed",
        /// Answered with another status, or the call failed.
        Error => "error",
        /// No answer within the shadow's timeout.
        Timeout => "timeout",
    }
}

closed_set! {
    /// Why a request was not copied to a shadow, or its copy not compared.
    pub enum ShadowSkip {
        /// The request (or the primary's answer) was larger than the shadow takes.
        BodyTooLarge => "body_too_large",
        /// The shadow already had its maximum of copies in flight on this worker.
        InFlightCap => "in_flight_cap",
        /// The primary's stream ended before its answer was complete.
        PrimaryIncomplete => "primary_incomplete",
        /// Envoy would not start the call (e.g. an unknown cluster).
        DispatchFailed => "dispatch_failed",
    }
}

closed_set! {
    /// How a primary's and a shadow's answers to one request compare.
    pub enum ComparisonResult {
        /// Both predictions give the same label.
        Agree => "agree",
        Disagree => "disagree",
        /// The primary's answer had no readable prediction.
        NoPredictionPrimary => "no_prediction_primary",
        /// The shadow's answer had no readable prediction.
        NoPredictionShadow => "no_prediction_shadow",
    }
}

closed_set! {
    /// A pair of labels `<primary>_<shadow>`: a cell of the confusion matrix.
    pub enum LabelPair {
        NegativeNegative => "0_0",
        NegativePositive => "0_1",
        PositiveNegative => "1_0",
        PositivePositive => "1_1",
    }
}

impl LabelPair {
    pub fn of(primary: bool, shadow: bool) -> Self {
        match (primary, shadow) {
            (false, false) => LabelPair::NegativeNegative,
            (false, true) => LabelPair::NegativePositive,
            (true, false) => LabelPair::PositiveNegative,
            (true, true) => LabelPair::PositivePositive,
        }
    }
}

closed_set! {
    /// Why an override token was ignored.
    pub enum OverrideRejection {
        /// Not of the form `<variant>.<expiry>.<hex signature>`: a part missing or
        /// empty, an expiry that is not plain decimal digits, a signature that is not
        /// 64 hex digits, or a token longer than 200 bytes.
        Malformed => "malformed",
        /// Names no variant of this rollout.
        UnknownVariant => "unknown_variant",
        /// The signature matches none of the secrets for this rollout.
        BadSignature => "bad_signature",
        /// Authentic, but its expiry has passed.
        Expired => "expired",
        /// Authentic, but expires further ahead than `max_ttl_seconds`.
        TtlTooLong => "ttl_too_long",
    }
}

closed_set! {
    /// Which guardrail limit a variant broke.
    pub enum GuardrailReason {
        /// The share of 5xx responses was above `max_5xx_share`.
        ServerErrorShare => "5xx_share",
        /// The share of responses with a non-OK `grpc-status` was above
        /// `max_grpc_error_share`.
        GrpcErrorShare => "grpc_error_share",
        /// The p99 latency was above `max_p99_ms`: more than 1% of the responses took
        /// longer than that.
        P99Latency => "p99_latency",
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::ClosedSet;

    fn round_trips<
        T: ClosedSet + std::fmt::Debug + serde::Serialize + serde::de::DeserializeOwned,
    >() {
        for (i, member) in T::ALL.iter().enumerate() {
            assert_eq!(member.index(), i);
            assert_eq!(T::from_name(member.name()), Some(*member));
            let json = serde_json::to_string(member).unwrap();
            assert_eq!(json, format!("\"{}\"", member.name()));
            assert_eq!(serde_json::from_str::<T>(&json).unwrap(), *member);
        }
        let err = serde_json::from_str::<T>("\"nope\"")
            .unwrap_err()
            .to_string();
        assert!(
            err.contains("unknown") && err.contains(T::ALL[0].name()),
            "{err}"
        );
    }

    #[test]
    fn every_set_round_trips_by_name() {
        round_trips::<StatusClass>();
        round_trips::<SampleResult>();
        round_trips::<PollResult>();
        round_trips::<BatchResult>();
        round_trips::<BatchOutcome>();
        round_trips::<ShadowEnd>();
        round_trips::<ShadowSkip>();
        round_trips::<ComparisonResult>();
        round_trips::<LabelPair>();
        round_trips::<OverrideRejection>();
        round_trips::<GuardrailReason>();
    }

    #[test]
    fn status_classes() {
        assert_eq!(StatusClass::of_status("200"), Some(StatusClass::Success));
        assert_eq!(StatusClass::of_status(" 204"), Some(StatusClass::Success));
        assert_eq!(StatusClass::of_status("302"), Some(StatusClass::Redirect));
        assert_eq!(
            StatusClass::of_status("404"),
            Some(StatusClass::ClientError)
        );
        assert_eq!(
            StatusClass::of_status("503"),
            Some(StatusClass::ServerError)
        );
        for none in ["101", "600", "abc", ""] {
            assert_eq!(StatusClass::of_status(none), None, "{none}");
        }
    }

    #[test]
    fn label_pairs_index_the_confusion_matrix() {
        for (p, s) in [(false, false), (false, true), (true, false), (true, true)] {
            let pair = LabelPair::of(p, s);
            assert_eq!(pair.index(), usize::from(p) * 2 + usize::from(s));
            assert_eq!(pair.name(), format!("{}_{}", u8::from(p), u8::from(s)));
        }
    }
}
