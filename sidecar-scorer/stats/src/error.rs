//! The one error type of the crate: bad input, named by its field path.

use outrider_protocol::json::{self, JsonProblem};
use serde::Serialize;
use std::fmt;

/// What was wrong with a request. `field` is the JSON path of the offending
/// value (`variants[1].n`), empty when the document as a whole is at fault.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct InputError {
    pub code: ErrorCode,
    pub message: String,
    pub field: String,
}

/// Machine-readable error kinds, serialised in snake case.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum ErrorCode {
    /// The body is not JSON at all (syntax error, truncated document).
    InvalidJson,
    /// A value has the wrong type or shape, or a required field is missing.
    InvalidType,
    /// A value parses but is out of its domain (negative n, NaN, empty sample...).
    InvalidValue,
}

impl InputError {
    pub fn invalid(field: impl Into<String>, message: impl Into<String>) -> Self {
        Self {
            code: ErrorCode::InvalidValue,
            message: message.into(),
            field: field.into(),
        }
    }
}

impl fmt::Display for InputError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.field.is_empty() {
            write!(f, "{}", self.message)
        } else {
            write!(f, "{}: {}", self.field, self.message)
        }
    }
}

impl std::error::Error for InputError {}

/// Parses a request document, reporting the path of the first bad field
/// (the protocol crate's parser, shared with the scorer and the model server).
pub fn from_json<T: serde::de::DeserializeOwned>(text: &str) -> Result<T, InputError> {
    json::from_str(text).map_err(InputError::from)
}

impl From<json::JsonError> for InputError {
    fn from(err: json::JsonError) -> Self {
        let code = match err.problem {
            JsonProblem::Syntax | JsonProblem::TrailingData => ErrorCode::InvalidJson,
            JsonProblem::Shape => ErrorCode::InvalidType,
        };
        Self {
            code,
            message: err.message,
            field: err.field,
        }
    }
}

/// Checks that every value of a sample is finite, naming the first bad one.
pub(crate) fn require_finite(field: &str, values: &[f64]) -> Result<(), InputError> {
    match values.iter().position(|v| !v.is_finite()) {
        Some(i) => Err(InputError::invalid(
            format!("{field}[{i}]"),
            "must be a finite number",
        )),
        None => Ok(()),
    }
}

/// Checks that a probability-like level lies strictly inside (0, 1).
pub(crate) fn require_open_unit(field: &str, value: f64) -> Result<(), InputError> {
    if value > 0.0 && value < 1.0 {
        Ok(())
    } else {
        Err(InputError::invalid(
            field,
            "must be between 0 and 1 (exclusive)",
        ))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[derive(Debug, serde::Deserialize)]
    #[serde(deny_unknown_fields)]
    #[allow(dead_code)]
    struct Outer {
        items: Vec<Inner>,
    }
    #[derive(Debug, serde::Deserialize)]
    #[serde(deny_unknown_fields)]
    #[allow(dead_code)]
    struct Inner {
        n: u64,
    }

    #[test]
    fn names_the_nested_field() {
        let err = from_json::<Outer>(r#"{"items": [{"n": 1}, {"n": -3}]}"#).unwrap_err();
        assert_eq!(err.field, "items[1].n");
        assert_eq!(err.code, ErrorCode::InvalidType);
    }

    #[test]
    fn names_a_missing_field() {
        let err = from_json::<Outer>(r#"{"items": [{}]}"#).unwrap_err();
        assert_eq!(err.field, "items[0].n");
        assert!(err.message.contains("missing field"), "{}", err.message);
    }

    #[test]
    fn syntax_errors_are_invalid_json() {
        let err = from_json::<Outer>(r#"{"items": [}"#).unwrap_err();
        assert_eq!(err.code, ErrorCode::InvalidJson);
        let err = from_json::<Outer>(r#"{"items": []} trailing"#).unwrap_err();
        assert_eq!(err.code, ErrorCode::InvalidJson);
    }
}
