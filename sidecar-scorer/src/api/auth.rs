//! Bearer tokens: admin (rollout changes), telemetry (filters), feedback. Compared in
//! constant time.

use axum::http::HeaderMap;
use subtle::ConstantTimeEq;

use super::error::ApiError;
use crate::config::ServeConfig;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Role {
    Admin,
    Telemetry,
    Feedback,
}

fn matches(given: &str, expected: &str) -> bool {
    given.as_bytes().ct_eq(expected.as_bytes()).into()
}

/// The role the request's token proves, if it is one of `allowed`: 401 without a
/// valid token, 403 with a valid token for another role.
pub fn require(
    headers: &HeaderMap,
    config: &ServeConfig,
    allowed: &[Role],
) -> Result<Role, ApiError> {
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
