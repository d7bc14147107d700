//! Path and query parameters as extractors whose refusals are [`ApiError`]s, so a bad
//! query string gets the same `{"error": {"code", "message", "field"}}` as a bad body:
//! a value of the wrong type, an unknown or a repeated parameter is 400
//! `invalid_type` naming the parameter.

use axum::extract::path::ErrorKind;
use axum::extract::rejection::PathRejection;
use axum::extract::{FromRequestParts, Path};
use axum::http::request::Parts;
use serde::de::DeserializeOwned;

use super::error::ApiError;

/// The query string parsed into `T` (a struct of optional fields, usually with
/// `deny_unknown_fields`). No query string is the same as an empty one.
#[derive(Debug)]
pub struct Query<T>(pub T);

impl<T: DeserializeOwned, S: Send + Sync> FromRequestParts<S> for Query<T> {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, _: &S) -> Result<Self, ApiError> {
        parse_query(parts.uri.query().unwrap_or_default()).map(Query)
    }
}

/// Parses a query string (without its `?`) into `T`; an error names the parameter.
pub fn parse_query<T: DeserializeOwned>(query: &str) -> Result<T, ApiError> {
    let pairs = form_urlencoded::parse(query.as_bytes());
    serde_path_to_error::deserialize(serde_urlencoded::Deserializer::new(pairs)).map_err(|e| {
        let path = e.path().to_string();
        let message = e.into_inner().to_string();
        query_error(query, &path, &message)
    })
}

fn query_error(query: &str, path: &str, message: &str) -> ApiError {
    // serde names unknown, repeated and missing parameters in backquotes, as fields.
    for (prefix, problem) in [
        ("unknown field `", "unknown query parameter"),
        ("duplicate field `", "repeated query parameter"),
        ("missing field `", "missing query parameter"),
    ] {
        if let Some(rest) = message.strip_prefix(prefix)
            && let Some((name, tail)) = rest.split_once('`')
        {
            return ApiError::malformed(
                "invalid_type",
                Some(name.to_owned()),
                format!("{problem} `{name}`{tail}"),
            );
        }
    }
    let field = (!path.is_empty() && path != ".").then(|| path.to_owned());
    let value = field.as_deref().and_then(|name| {
        form_urlencoded::parse(query.as_bytes())
            .find(|(key, _)| key == name)
            .map(|(_, value)| value.into_owned())
    });
    let message = match (&field, value) {
        (Some(name), Some(value)) if value.is_empty() => {
            format!("`{name}` is empty; give a value or leave the parameter out")
        }
        (Some(name), Some(value)) => format!("`{value}` is not a valid `{name}`: {message}"),
        _ => message.to_owned(),
    };
    ApiError::malformed("invalid_type", field, message)
}

/// The path parameters parsed into `T`, as [`axum::extract::Path`] does.
#[derive(Debug)]
pub struct PathParams<T>(pub T);

impl<T: DeserializeOwned + Send, S: Send + Sync> FromRequestParts<S> for PathParams<T> {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, state: &S) -> Result<Self, ApiError> {
        match Path::<T>::from_request_parts(parts, state).await {
            Ok(Path(value)) => Ok(PathParams(value)),
            Err(rejection) => Err(path_error(&rejection)),
        }
    }
}

/// A segment that does not decode names nothing that exists (404), as a name that
/// breaks the naming rules does; a segment that does not parse as its type is 400
/// `invalid_type`; the rest are mistakes of the routes (500).
fn path_error(rejection: &PathRejection) -> ApiError {
    let PathRejection::FailedToDeserializePathParams(failed) = rejection else {
        return ApiError::internal(rejection.body_text());
    };
    match failed.kind() {
        ErrorKind::InvalidUtf8InPathParam { key } => ApiError::not_found(format!(
            "nothing here: the `{key}` in this path is not UTF-8 once percent-decoded"
        )),
        ErrorKind::ParseErrorAtKey {
            key,
            value,
            expected_type,
        } => ApiError::malformed(
            "invalid_type",
            Some(key.clone()),
            format!("`{value}` is not a valid `{key}`: expected {expected_type}"),
        ),
        ErrorKind::DeserializeError {
            key,
            value,
            message,
        } => ApiError::malformed(
            "invalid_type",
            Some(key.clone()),
            format!("`{value}` is not a valid `{key}`: {message}"),
        ),
        ErrorKind::ParseError {
            value,
            expected_type,
        } => ApiError::malformed(
            "invalid_type",
            None,
            format!("`{value}` in the path is not valid: expected {expected_type}"),
        ),
        _ => ApiError::internal(failed.body_text()),
    }
}

#[cfg(test)]
mod tests {
    use serde::Deserialize;

    use super::*;

    #[derive(Debug, Deserialize, PartialEq)]
    #[serde(deny_unknown_fields)]
    struct Window {
        #[serde(default)]
        from_ms: Option<u64>,
        #[serde(default)]
        share: Option<f64>,
    }

    fn refusal(query: &str) -> (u16, &'static str, Option<String>, String) {
        let e = parse_query::<Window>(query).unwrap_err();
        (e.status, e.code, e.field, e.message)
    }

    #[test]
    fn good_queries_parse() {
        let all = Window {
            from_ms: Some(5),
            share: Some(0.5),
        };
        assert_eq!(parse_query::<Window>("from_ms=5&share=0.5").unwrap(), all);
        assert_eq!(parse_query::<Window>("share=%30.5&from_ms=5").unwrap(), all);
        let none = Window {
            from_ms: None,
            share: None,
        };
        assert_eq!(parse_query::<Window>("").unwrap(), none);
    }

    #[test]
    fn bad_queries_name_the_parameter() {
        let field = |name: &str| Some(name.to_owned());
        assert_eq!(
            refusal("from_ms=abc"),
            (
                400,
                "invalid_type",
                field("from_ms"),
                "`abc` is not a valid `from_ms`: invalid digit found in string".into()
            )
        );
        assert_eq!(
            refusal("from_ms=1&share=half"),
            (
                400,
                "invalid_type",
                field("share"),
                "`half` is not a valid `share`: invalid float literal".into()
            )
        );
        assert_eq!(
            refusal("from_ms="),
            (
                400,
                "invalid_type",
                field("from_ms"),
                "`from_ms` is empty; give a value or leave the parameter out".into()
            )
        );
        assert_eq!(
            refusal("from_ms=1&colour=red"),
            (
                400,
                "invalid_type",
                field("colour"),
                "unknown query parameter `colour`, expected `from_ms` or `share`".into()
            )
        );
        let (status, code, name, message) = refusal("from_ms=1&from_ms=2");
        assert_eq!(
            (status, code, name),
            (400, "invalid_type", field("from_ms"))
        );
        assert!(
            message.starts_with("repeated query parameter `from_ms`"),
            "{message}"
        );
    }
}
