//! Parsing a JSON document into a type, with the path of the first field that does not
//! fit: the filter's configuration, the scorer's request bodies and the model server's
//! inference requests all report errors this way.

use serde::de::DeserializeOwned;
use serde_json::error::Category;

/// What kind of problem a document has.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum JsonProblem {
    /// Not JSON: a syntax error or a truncated document.
    Syntax,
    /// JSON, but a value has the wrong type or shape, or a required field is missing.
    Shape,
    /// A complete document followed by more than whitespace.
    TrailingData,
}

/// Why a document was refused.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct JsonError {
    pub problem: JsonProblem,
    /// Path of the offending field (`variants[1].weight`); for a missing field, the
    /// field itself. Empty when the problem is the document as a whole.
    pub field: String,
    /// serde's message without its position.
    pub message: String,
    /// Where in the text the parser stopped (1-based; 0 when unknown).
    pub line: usize,
    pub column: usize,
}

impl std::fmt::Display for JsonError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        if self.field.is_empty() {
            f.write_str(&self.message)
        } else {
            write!(f, "{}: {}", self.field, self.message)
        }
    }
}

impl std::error::Error for JsonError {}

/// Parses `bytes` as one JSON document of type `T`.
pub fn from_slice<T: DeserializeOwned>(bytes: &[u8]) -> Result<T, JsonError> {
    let mut de = serde_json::Deserializer::from_slice(bytes);
    let value = serde_path_to_error::deserialize(&mut de).map_err(|err| {
        let path = err.path().to_string();
        let inner = err.into_inner();
        let message = without_position(&inner.to_string());
        let problem = match inner.classify() {
            Category::Syntax | Category::Eof | Category::Io => JsonProblem::Syntax,
            Category::Data => JsonProblem::Shape,
        };
        JsonError {
            problem,
            field: field_of(&path, &message),
            line: inner.line(),
            column: inner.column(),
            message,
        }
    })?;
    de.end().map_err(|err| JsonError {
        problem: JsonProblem::TrailingData,
        field: String::new(),
        message: without_position(&err.to_string()),
        line: err.line(),
        column: err.column(),
    })?;
    Ok(value)
}

/// [`from_slice`] for text.
pub fn from_str<T: DeserializeOwned>(text: &str) -> Result<T, JsonError> {
    from_slice(text.as_bytes())
}

/// serde_json appends " at line L column C"; the field path says more.
fn without_position(message: &str) -> String {
    match message.rfind(" at line ") {
        Some(at) => message.get(..at).unwrap_or(message).to_owned(),
        None => message.to_owned(),
    }
}

/// serde names a missing field in its message, at its parent's path: point at the
/// field itself.
fn field_of(path: &str, message: &str) -> String {
    let path = if path == "." { "" } else { path };
    let missing = message
        .strip_prefix("missing field `")
        .and_then(|rest| rest.split_once('`'))
        .map(|(name, _)| name);
    match missing {
        Some(name) if path.is_empty() => name.to_owned(),
        Some(name) => format!("{path}.{name}"),
        None => path.to_owned(),
    }
}

#[cfg(test)]
mod tests {
    use serde::Deserialize;

    use super::*;

    #[derive(Debug, Deserialize)]
    #[serde(deny_unknown_fields)]
    #[allow(dead_code)]
    struct Doc {
        name: String,
        items: Vec<Item>,
    }

    #[derive(Debug, Deserialize)]
    #[serde(deny_unknown_fields)]
    #[allow(dead_code)]
    struct Item {
        weight: f64,
    }

    fn refused(text: &str) -> JsonError {
        from_str::<Doc>(text).unwrap_err()
    }

    #[test]
    fn errors_name_the_field() {
        let e = refused(r#"{"name": "a", "items": [{"weight": 1}, {"weight": "x"}]}"#);
        assert_eq!(
            (e.problem, e.field.as_str()),
            (JsonProblem::Shape, "items[1].weight")
        );
        assert!(
            e.message.starts_with("invalid type: string \"x\""),
            "{}",
            e.message
        );
        assert!(!e.message.contains("line"), "{}", e.message);
        let e = refused(r#"{"name": "a", "items": [{}]}"#);
        assert_eq!(e.field, "items[0].weight");
        assert_eq!(e.message, "missing field `weight`");
        let e = refused(r#"{"items": []}"#);
        assert_eq!(e.field, "name");
        let e = refused(r#"{"name": "a", "items": [], "extra": 1}"#);
        assert_eq!(e.field, "extra");
        assert!(e.message.starts_with("unknown field `extra`"));
    }

    #[test]
    fn syntax_and_trailing_data() {
        let e = refused("not json");
        assert_eq!(
            (e.problem, e.field.as_str(), e.line, e.column),
            (JsonProblem::Syntax, "", 1, 2)
        );
        assert!(e.message.contains("expected"), "{}", e.message);
        let e = refused("");
        assert_eq!(e.problem, JsonProblem::Syntax);
        assert!(e.message.contains("EOF"));
        let e = refused(r#"{"name": "a", "items": []} {}"#);
        assert_eq!(e.problem, JsonProblem::TrailingData);
        assert!(from_str::<Doc>(" {\"name\": \"a\", \"items\": []}\n ").is_ok());
    }
}
