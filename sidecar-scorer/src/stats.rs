//! `stats ab | drift | judge | power`: one JSON request in, one JSON
//! report out, shared by the CLI and the HTTP endpoints.

use outrider_stats::{InputError, ab, drift, from_json, judge};
use serde::Serialize;

/// The analyses, named as in `outrider-scorer stats <analysis>` and
/// `POST /v1/stats/<analysis>`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Analysis {
    Ab,
    Drift,
    Judge,
    Power,
}

/// Parses `body`, runs the analysis and serialises its report.
pub fn run(analysis: Analysis, body: &str) -> Result<String, InputError> {
    match analysis {
        Analysis::Ab => to_json(&ab::analyze(&from_json(body)?)?),
        Analysis::Drift => to_json(&drift::analyze(&from_json(body)?)?),
        Analysis::Judge => to_json(&judge::analyze(&from_json(body)?)?),
        Analysis::Power => to_json(&ab::power::sample_size(&from_json(body)?)?),
    }
}

fn to_json<T: Serialize>(report: &T) -> Result<String, InputError> {
    // Reports hold finite numbers or null only, so this cannot fail.
    serde_json::to_string(report)
        .map_err(|e| InputError::invalid("", format!("report not serialisable: {e}")))
}

/// `{"error": {"code", "message", "field"}}`, the error body of the API.
pub fn error_body(err: &InputError) -> String {
    serde_json::json!({ "error": err }).to_string()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn errors_name_the_field() {
        let err = run(
            Analysis::Ab,
            r#"{"metric": "binomial", "variants": [{"name": "a", "n": "x", "sum": 1}]}"#,
        )
        .unwrap_err();
        assert_eq!(err.field, "variants[0].n");
        let body: serde_json::Value = serde_json::from_str(&error_body(&err)).unwrap();
        assert_eq!(body["error"]["field"], "variants[0].n");
        assert_eq!(body["error"]["code"], "invalid_type");
    }

    #[test]
    fn unknown_fields_are_rejected() {
        let err = run(
            Analysis::Drift,
            r#"{"kind": "numeric", "reference": [1], "current": [1], "bnis": 3}"#,
        )
        .unwrap_err();
        assert!(err.message.contains("bnis"), "{}", err.message);
    }
}
