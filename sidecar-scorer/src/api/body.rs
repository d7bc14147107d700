//! Request bodies as extractors: read up to `--max-body-bytes` (413 beyond), JSON by
//! their content type (415 otherwise), parsed with the path of the first bad field in
//! the error (400). They run after the token extractors, so a request without a valid
//! token is refused before its body is read.

use axum::body::Body;
use axum::extract::{FromRequest, OptionalFromRequest, Request};
use axum::http::HeaderMap;
use serde::de::DeserializeOwned;

use super::AppState;
use super::error::ApiError;

/// The whole body as text, for endpoints that look at it before parsing it.
#[derive(Debug)]
pub struct JsonText(pub String);

/// The body parsed into `T`. As `Option<JsonBody<T>>`, an empty body is `None`.
#[derive(Debug)]
pub struct JsonBody<T>(pub T);

impl FromRequest<AppState> for JsonText {
    type Rejection = ApiError;

    async fn from_request(request: Request, app: &AppState) -> Result<Self, ApiError> {
        let (parts, body) = request.into_parts();
        read(&parts.headers, body, app.config.max_body_bytes)
            .await
            .map(JsonText)
    }
}

impl<T: DeserializeOwned> FromRequest<AppState> for JsonBody<T> {
    type Rejection = ApiError;

    async fn from_request(request: Request, app: &AppState) -> Result<Self, ApiError> {
        let JsonText(text) = JsonText::from_request(request, app).await?;
        parse(&text).map(JsonBody)
    }
}

impl<T: DeserializeOwned> OptionalFromRequest<AppState> for JsonBody<T> {
    type Rejection = ApiError;

    async fn from_request(request: Request, app: &AppState) -> Result<Option<Self>, ApiError> {
        let JsonText(text) = JsonText::from_request(request, app).await?;
        if text.trim().is_empty() {
            return Ok(None);
        }
        parse(&text).map(|value| Some(JsonBody(value)))
    }
}

/// Reads the whole body, refusing it if it is larger than `limit` or not JSON.
async fn read(headers: &HeaderMap, body: Body, limit: usize) -> Result<String, ApiError> {
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

/// Parses a JSON document into `T`; an error names the field at fault.
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
