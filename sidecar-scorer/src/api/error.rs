//! The one error type of the API: `{"error": {"code", "message", "field"}}` with a 4xx
//! or 5xx status. The domain and the store have errors of their own; this is where they
//! become answers.

use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use outrider_protocol::FieldError;
use serde::Serialize;

use crate::rollout::RolloutError;
use crate::store::StoreError;

#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct ApiError {
    #[serde(skip)]
    pub status: u16,
    pub code: &'static str,
    pub message: String,
    /// Path of the offending field, e.g. `variants[1].weight`.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub field: Option<String>,
}

impl ApiError {
    fn new(status: u16, code: &'static str, message: impl Into<String>) -> Self {
        Self {
            status,
            code,
            message: message.into(),
            field: None,
        }
    }

    /// A value that parsed but is not acceptable.
    pub fn invalid(field: impl Into<String>, message: impl Into<String>) -> Self {
        let field = field.into();
        Self {
            field: (!field.is_empty()).then_some(field),
            ..Self::new(400, "invalid_value", message)
        }
    }

    /// A body that is not JSON, or not of the expected shape.
    pub fn malformed(
        code: &'static str,
        field: Option<String>,
        message: impl Into<String>,
    ) -> Self {
        Self {
            field,
            ..Self::new(400, code, message)
        }
    }

    pub fn unauthorized(message: impl Into<String>) -> Self {
        Self::new(401, "unauthorized", message)
    }

    pub fn forbidden(message: impl Into<String>) -> Self {
        Self::new(403, "forbidden", message)
    }

    pub fn not_found(message: impl Into<String>) -> Self {
        Self::new(404, "not_found", message)
    }

    pub fn method_not_allowed(message: impl Into<String>) -> Self {
        Self::new(405, "method_not_allowed", message)
    }

    pub fn conflict(message: impl Into<String>) -> Self {
        Self::new(409, "conflict", message)
    }

    pub fn too_large(limit: usize) -> Self {
        Self::new(
            413,
            "payload_too_large",
            format!("the body is larger than {limit} bytes"),
        )
    }

    pub fn unsupported_media_type(message: impl Into<String>) -> Self {
        Self::new(415, "unsupported_media_type", message)
    }

    pub fn unavailable(message: impl Into<String>) -> Self {
        Self::new(503, "unavailable", message)
    }

    pub fn internal(message: impl Into<String>) -> Self {
        Self::new(500, "internal", message)
    }

    pub fn body(&self) -> serde_json::Value {
        serde_json::json!({ "error": self })
    }
}

impl std::fmt::Display for ApiError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match &self.field {
            Some(field) => write!(f, "{} ({}): {}", self.code, field, self.message),
            None => write!(f, "{}: {}", self.code, self.message),
        }
    }
}

impl std::error::Error for ApiError {}

impl From<outrider_stats::InputError> for ApiError {
    fn from(e: outrider_stats::InputError) -> Self {
        use outrider_stats::ErrorCode;
        let code = match e.code {
            ErrorCode::InvalidJson => "invalid_json",
            ErrorCode::InvalidType => "invalid_type",
            ErrorCode::InvalidValue => "invalid_value",
        };
        Self {
            field: (!e.field.is_empty()).then_some(e.field),
            ..Self::new(400, code, e.message)
        }
    }
}

impl From<StoreError> for ApiError {
    fn from(e: StoreError) -> Self {
        match e {
            StoreError::Conflict(message) => Self::conflict(message),
            StoreError::Unavailable(message) => Self::unavailable(message),
        }
    }
}

/// A value a rule refuses: 400 `invalid_value`, naming the field.
impl From<FieldError> for ApiError {
    fn from(e: FieldError) -> Self {
        Self::invalid(e.field, e.problem)
    }
}

/// A refused value is the client's to fix (400); a change the rollout's status does
/// not allow is a conflict with its current state (409).
impl From<RolloutError> for ApiError {
    fn from(e: RolloutError) -> Self {
        match e {
            RolloutError::Invalid(e) => e.into(),
            RolloutError::NotActive { .. }
            | RolloutError::NotRunning { .. }
            | RolloutError::StillRunning { .. }
            | RolloutError::RollbackWindowClosed { .. }
            | RolloutError::NotPaused { .. }
            | RolloutError::AlreadyPromoted { .. }
            | RolloutError::AlreadyRolledBack { .. } => Self::conflict(e.to_string()),
        }
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        let status = StatusCode::from_u16(self.status).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR);
        let mut response = (status, axum::Json(self.body())).into_response();
        if self.status == 413 {
            // The rest of the body was not read: this connection cannot carry another
            // request, and the client must know before it tries.
            response
                .headers_mut()
                .insert("connection", axum::http::HeaderValue::from_static("close"));
        }
        if self.status == 401 {
            response.headers_mut().insert(
                "www-authenticate",
                axum::http::HeaderValue::from_static("Bearer"),
            );
        }
        response
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::rollout::Status;

    #[test]
    fn refused_values_are_400_with_their_field() {
        let e = ApiError::from(RolloutError::Invalid(FieldError::new(
            "variants[1].name",
            "duplicate variant `a`",
        )));
        assert_eq!(
            (e.status, e.code, e.field.as_deref(), e.message.as_str()),
            (
                400,
                "invalid_value",
                Some("variants[1].name"),
                "duplicate variant `a`"
            )
        );
        // A refusal of the request as a whole names no field.
        let e = ApiError::from(FieldError::new("", "give request_id or user_key"));
        assert_eq!((e.status, e.field), (400, None));
    }

    #[test]
    fn changes_the_status_does_not_allow_are_409() {
        let cases = [
            (
                RolloutError::NotActive {
                    rollout: "fraud".into(),
                    status: Status::Paused,
                },
                "only a progressing rollout can be paused; `fraud` is paused",
            ),
            (
                RolloutError::NotPaused {
                    rollout: "fraud".into(),
                    status: Status::RolledBack,
                },
                "only a paused rollout can be resumed; `fraud` is rolled_back",
            ),
            (
                RolloutError::AlreadyPromoted {
                    rollout: "fraud".into(),
                    variant: "canary".into(),
                },
                "`fraud` is already promoted to canary",
            ),
            (
                RolloutError::AlreadyRolledBack {
                    rollout: "fraud".into(),
                },
                "`fraud` is already rolled back",
            ),
        ];
        for (err, message) in cases {
            let e = ApiError::from(err);
            assert_eq!(
                (e.status, e.code, e.field, e.message.as_str()),
                (409, "conflict", None, message)
            );
        }
    }

    #[test]
    fn store_errors_are_409_or_503() {
        let e = ApiError::from(StoreError::Conflict("`fraud` changed meanwhile".into()));
        assert_eq!((e.status, e.code), (409, "conflict"));
        let e = ApiError::from(StoreError::Unavailable("connection refused".into()));
        assert_eq!(
            (e.status, e.code, e.message.as_str()),
            (503, "unavailable", "connection refused")
        );
    }

    #[test]
    fn answers_carry_the_headers_their_status_needs() {
        let response = ApiError::too_large(10).into_response();
        assert_eq!(response.status(), 413);
        assert_eq!(response.headers()["connection"], "close");
        let response = ApiError::unauthorized("no token").into_response();
        assert_eq!(response.status(), 401);
        assert_eq!(response.headers()["www-authenticate"], "Bearer");
        let response = ApiError::forbidden("not yours").into_response();
        assert!(response.headers().get("www-authenticate").is_none());
        assert_eq!(
            ApiError::invalid("weights", "must add up").body(),
            serde_json::json!({"error": {"code": "invalid_value", "message": "must add up", "field": "weights"}})
        );
    }
}
