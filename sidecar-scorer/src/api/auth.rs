//! Bearer tokens: admin (rollout changes), telemetry (filters), feedback. Each role a
//! handler accepts is an extractor ([`Admin`], [`Telemetry`], [`FeedbackOrAdmin`]), so
//! a handler that names one cannot run without the token. Tokens are compared in
//! constant time.

use axum::extract::FromRequestParts;
use axum::http::HeaderMap;
use axum::http::request::Parts;
use subtle::ConstantTimeEq;

use super::AppState;
use super::error::ApiError;
use crate::config::ServeConfig;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Role {
    Admin,
    Telemetry,
    Feedback,
}

/// The request carries the admin token.
#[derive(Debug, Clone, Copy)]
pub struct Admin;

/// The request carries the telemetry token (filters send it).
#[derive(Debug, Clone, Copy)]
pub struct Telemetry;

/// The request carries the feedback token or the admin token.
#[derive(Debug, Clone, Copy)]
pub struct FeedbackOrAdmin;

impl FromRequestParts<AppState> for Admin {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, app: &AppState) -> Result<Self, ApiError> {
        require(&parts.headers, &app.config, &[Role::Admin]).map(|_| Admin)
    }
}

impl FromRequestParts<AppState> for Telemetry {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, app: &AppState) -> Result<Self, ApiError> {
        require(&parts.headers, &app.config, &[Role::Telemetry]).map(|_| Telemetry)
    }
}

impl FromRequestParts<AppState> for FeedbackOrAdmin {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, app: &AppState) -> Result<Self, ApiError> {
        require(&parts.headers, &app.config, &[Role::Feedback, Role::Admin])
            .map(|_| FeedbackOrAdmin)
    }
}

fn matches(given: &str, expected: &str) -> bool {
    given.as_bytes().ct_eq(expected.as_bytes()).into()
}

/// The role the request's token proves, if it is one of `allowed`: 401 without a
/// valid token, 403 with a valid token for another role.
fn require(headers: &HeaderMap, config: &ServeConfig, allowed: &[Role]) -> Result<Role, ApiError> {
    let Some(value) = headers.get("authorization").and_then(|v| v.to_str().ok()) else {
        return Err(ApiError::unauthorized(
            "this endpoint needs `authorization: Bearer <token>`",
        ));
    };
    let Some(token) = value.strip_prefix("Bearer ").map(str::trim) else {
        return Err(ApiError::unauthorized(
            "the authorization header must be `Bearer <token>`",
        ));
    };
    let mut roles = vec![
        (Role::Admin, config.admin_token.as_str()),
        (Role::Telemetry, config.telemetry_token.as_str()),
    ];
    if let Some(feedback) = &config.feedback_token {
        roles.push((Role::Feedback, feedback.as_str()));
    }
    // Check every role, so the time taken does not tell which one matched.
    let proven: Vec<Role> = roles
        .iter()
        .filter(|(_, t)| matches(token, t))
        .map(|(r, _)| *r)
        .collect();
    match proven.iter().find(|r| allowed.contains(r)) {
        Some(role) => Ok(*role),
        None if proven.is_empty() => Err(ApiError::unauthorized("the bearer token is not valid")),
        None => Err(ApiError::forbidden("this token may not use this endpoint")),
    }
}
