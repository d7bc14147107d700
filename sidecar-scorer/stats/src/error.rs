//! The one error type of the crate: bad input, named by its field path.

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

/// Parses a request document, reporting the path of the first bad field.
pub fn from_json<T: serde::de::DeserializeOwned>(text: &str) -> Result<T, InputError> {
    let mut de = serde_json::Deserializer::from_str(text);
    let value = serde_path_to_error::deserialize(&mut de).map_err(|err| {
        let path = err.path().to_string();
        let inner = err.into_inner();
        let code = match inner.classify() {
            serde_json::error::Category::Syntax | serde_json::error::Category::Eof => {
                ErrorCode::InvalidJson
            }
            _ => ErrorCode::InvalidType,
        };
        let message = strip_position(&inner.to_string());
        InputError {
            code,
            field: field_with_missing(&path, &message),
            message,
        }
    })?;
    de.end().map_err(|err| InputError {
        code: ErrorCode::InvalidJson,
        message: strip_position(&err.to_string()),
        field: String::new(),
    })?;
    Ok(value)
}

/// serde_json appends " at line L column C"; the field path says more.
fn strip_position(message: &str) -> String {
    match message.rfind(" at line ") {
        Some(at) => message[..at].to_string(),
        None => message.to_string(),
    }
}

/// A missing field is reported at its parent; name the field itself.
fn field_with_missing(path: &str, message: &str) -> String {
    let path = if path == "." { "" } else { path };
    if let Some(rest) = message.strip_prefix("missing field `")
        && let Some(name) = rest.strip_suffix('`')
    {
        return if path.is_empty() {
            name.to_string()
        } else {
            format!("{path}.{name}")
        };
    }
    path.to_string()
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
