//! A refused configuration: which field, and what is wrong with it.

use std::fmt;

use outrider_protocol::FieldError;
use outrider_protocol::json::{JsonError, JsonProblem};

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ConfigError {
    /// Path of the field, e.g. `variants[1].weight`; empty for the document itself.
    pub field: String,
    pub problem: String,
}

impl ConfigError {
    pub fn new(field: impl Into<String>, problem: impl Into<String>) -> Self {
        Self {
            field: field.into(),
            problem: problem.into(),
        }
    }
}

impl fmt::Display for ConfigError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.field.is_empty() {
            write!(f, "invalid configuration: {}", self.problem)
        } else {
            write!(
                f,
                "invalid configuration: field `{}`: {}",
                self.field, self.problem
            )
        }
    }
}

impl std::error::Error for ConfigError {}

impl From<FieldError> for ConfigError {
    fn from(e: FieldError) -> Self {
        Self::new(e.field, e.problem)
    }
}

impl From<JsonError> for ConfigError {
    fn from(e: JsonError) -> Self {
        match e.problem {
            // Where the parser stopped is all a syntax error can point at.
            JsonProblem::Syntax => Self::new(
                "",
                format!("{} at line {} column {}", e.message, e.line, e.column),
            ),
            JsonProblem::TrailingData => Self::new(
                "",
                format!(
                    "trailing data after the document: {} at line {} column {}",
                    e.message, e.line, e.column
                ),
            ),
            JsonProblem::Shape => Self::new(e.field, e.message),
        }
    }
}
