//! Request bodies: read up to the configured limit (413 beyond), parsed with the path
//! of the first bad field in the error (400), nothing applied unless all of it is good.

use axum::body::Body;
use axum::http::HeaderMap;
use serde::de::DeserializeOwned;

use super::error::ApiError;

/// Reads the whole body, refusing it if it is larger than `limit` or not JSON.
pub async fn read(headers: &HeaderMap, body: Body, limit: usize) -> Result<String, ApiError> {
    if let Some(content_type) = headers.get("content-type").and_then(|v| v.to_str().ok())
        && !content_type.trim_start().starts_with("application/json")
    {
        return Err(ApiError::unsupported_media_type(format!(
            "send JSON (content-type: application/json), not {content_type}"
        )));
    }
    let declared = headers
        .get("content-length")
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.parse::<usize>().ok());
    if declared.is_some_and(|n| n > limit) {
        return Err(ApiError::too_large(limit));
    }
    let bytes = axum::body::to_bytes(body, limit)
        .await
        .map_err(|_| ApiError::too_large(limit))?;
    String::from_utf8(bytes.to_vec())
        .map_err(|_| ApiError::malformed("invalid_json", None, "the body is not UTF-8"))
}

/// Reads and parses a JSON body into `T`.
pub async fn json<T: DeserializeOwned>(
    headers: &HeaderMap,
    body: Body,
    limit: usize,
) -> Result<T, ApiError> {
    let text = read(headers, body, limit).await?;
    parse(&text)
}

pub fn parse<T: DeserializeOwned>(text: &str) -> Result<T, ApiError> {
    if text.trim().is_empty() {
        return Err(ApiError::malformed(
            "invalid_json",
            None,
            "the body is empty; send a JSON document",
        ));
    }
    // The plain parser first: tracking the path costs a fifth more on large batches,
    // and is only needed to name the field of an error (the same parse fails again).
    serde_json::from_str(text).or_else(|_| outrider_stats::from_json(text).map_err(ApiError::from))
}
