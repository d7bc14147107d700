//! The Open Inference Protocol over HTTP (axum): health, server and model
//! metadata, readiness, inference (JSON or binary tensor data), the NDJSON
//! scoring stream, and a model reload (Triton's repository load endpoint).

use axum::extract::{DefaultBodyLimit, FromRequest, Path, Request, State};
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::{Json, Router};
use bytes::Bytes;
use serde_json::{Value, json};

use super::infer;
use super::rest_codec::{self, HEADER_LENGTH};
use super::state::ServerState;
use crate::error::Error;
use crate::registry::ModelUri;

/// The protocol extensions this server speaks.
pub const EXTENSIONS: [&str; 3] = ["binary_tensor_data", "model_repository", "ndjson_scoring"];
/// The `platform` of served models.
pub const PLATFORM: &str = "onnx_tract";

/// The REST routes. `max_request_bytes` bounds the body of an inference or a
/// load request (the NDJSON stream is read line by line, each line up to
/// [`super::ndjson::MAX_LINE`]).
pub fn router(state: ServerState, max_request_bytes: usize) -> Router {
    Router::new()
        .route("/v2", get(server_metadata))
        .route("/v2/health/live", get(live))
        .route("/v2/health/ready", get(ready))
        .route("/v2/models/{name}", get(model_metadata))
        .route(
            "/v2/models/{name}/versions/{version}",
            get(model_version_metadata),
        )
        .route("/v2/models/{name}/ready", get(model_ready))
        .route(
            "/v2/models/{name}/versions/{version}/ready",
            get(model_version_ready),
        )
        .route("/v2/models/{name}/infer", post(infer))
        .route(
            "/v2/models/{name}/versions/{version}/infer",
            post(infer_version),
        )
        .route("/v2/models/{name}/score", post(super::ndjson::score))
        .route("/v2/repository/models/{name}/load", post(load))
        .layer(DefaultBodyLimit::max(max_request_bytes))
        .with_state(state)
}

/// A whole request body, within the server's limit. A larger one is refused
/// with `413` and the protocol's error shape, like every other error.
pub struct LimitedBody(pub Bytes);

impl FromRequest<ServerState> for LimitedBody {
    type Rejection = Response;

    async fn from_request(req: Request, state: &ServerState) -> Result<Self, Response> {
        let declared = req
            .headers()
            .get(header::CONTENT_LENGTH)
            .and_then(|v| v.to_str().ok()?.trim().parse::<u64>().ok());
        match Bytes::from_request(req, state).await {
            Ok(body) => Ok(Self(body)),
            Err(rejection) if rejection.status() == StatusCode::PAYLOAD_TOO_LARGE => Err(
                error_response(&Error::too_large("body", declared, state.max_request_bytes)),
            ),
            Err(rejection) => Err(error_response(&Error::invalid(
                "body",
                format!("cannot be read: {}", rejection.body_text()),
            ))),
        }
    }
}

/// An error as the protocol has it: `{"error": "<message>"}`.
pub fn error_response(e: &Error) -> Response {
    let status = match e {
        Error::Invalid { .. } => StatusCode::BAD_REQUEST,
        Error::NotFound(_) => StatusCode::NOT_FOUND,
        Error::Unavailable(_) => StatusCode::SERVICE_UNAVAILABLE,
        Error::TooLarge { .. } => StatusCode::PAYLOAD_TOO_LARGE,
        _ => StatusCode::INTERNAL_SERVER_ERROR,
    };
    (status, Json(json!({ "error": e.to_string() }))).into_response()
}

async fn server_metadata() -> Json<Value> {
    Json(json!({
        "name": "outrider",
        "version": env!("CARGO_PKG_VERSION"),
        "extensions": EXTENSIONS,
    }))
}

async fn live() -> Json<Value> {
    Json(json!({ "live": true }))
}

async fn ready(State(state): State<ServerState>) -> Response {
    readiness(state.slot.is_ready())
}

fn readiness(ready: bool) -> Response {
    let status = if ready {
        StatusCode::OK
    } else {
        StatusCode::SERVICE_UNAVAILABLE
    };
    (status, Json(json!({ "ready": ready }))).into_response()
}

fn metadata(state: &ServerState, name: &str, version: Option<&str>) -> Response {
    match state.slot.get(name, version) {
        Ok(m) => {
            let tensors = |specs: &[crate::onnx::TensorSpec]| -> Vec<Value> {
                specs
                    .iter()
                    .map(|s| json!({"name": s.name, "datatype": s.datatype.name(), "shape": s.shape}))
                    .collect()
            };
            Json(json!({
                "name": m.name,
                "versions": [m.version],
                "platform": PLATFORM,
                "inputs": tensors(&m.onnx.inputs),
                "outputs": tensors(&m.onnx.outputs),
            }))
            .into_response()
        }
        Err(e) => error_response(&e),
    }
}

async fn model_metadata(State(state): State<ServerState>, Path(name): Path<String>) -> Response {
    metadata(&state, &name, None)
}

async fn model_version_metadata(
    State(state): State<ServerState>,
    Path((name, version)): Path<(String, String)>,
) -> Response {
    metadata(&state, &name, Some(&version))
}

fn model_readiness(state: &ServerState, name: &str, version: Option<&str>) -> Response {
    match state.slot.get(name, version) {
        Ok(_) => readiness(true),
        Err(Error::Unavailable(_)) => readiness(false),
        Err(e) => error_response(&e),
    }
}

async fn model_ready(State(state): State<ServerState>, Path(name): Path<String>) -> Response {
    model_readiness(&state, &name, None)
}

async fn model_version_ready(
    State(state): State<ServerState>,
    Path((name, version)): Path<(String, String)>,
) -> Response {
    model_readiness(&state, &name, Some(&version))
}

async fn infer(
    State(state): State<ServerState>,
    Path(name): Path<String>,
    headers: HeaderMap,
    LimitedBody(body): LimitedBody,
) -> Response {
    run_infer(&state, &name, None, &headers, body).await
}

async fn infer_version(
    State(state): State<ServerState>,
    Path((name, version)): Path<(String, String)>,
    headers: HeaderMap,
    LimitedBody(body): LimitedBody,
) -> Response {
    run_infer(&state, &name, Some(&version), &headers, body).await
}

async fn run_infer(
    state: &ServerState,
    name: &str,
    version: Option<&str>,
    headers: &HeaderMap,
    body: Bytes,
) -> Response {
    let result = async {
        let model = state.slot.get(name, version)?;
        let header_length = match headers.get(HEADER_LENGTH) {
            Some(v) => Some(
                v.to_str()
                    .ok()
                    .and_then(|s| s.trim().parse::<usize>().ok())
                    .ok_or_else(|| Error::invalid(HEADER_LENGTH, "must be a byte count"))?,
            ),
            None => None,
        };
        let request = rest_codec::parse_request(body, header_length)?;
        infer::run(model, request).await
    }
    .await;
    match result {
        Ok(response) => {
            let encoded = rest_codec::encode_response(&response);
            let mut reply = encoded.body.into_response();
            let headers = reply.headers_mut();
            match encoded.header_length {
                Some(n) => {
                    headers.insert(
                        header::CONTENT_TYPE,
                        HeaderValue::from_static("application/octet-stream"),
                    );
                    headers.insert(HEADER_LENGTH, HeaderValue::from(n));
                }
                None => {
                    headers.insert(
                        header::CONTENT_TYPE,
                        HeaderValue::from_static("application/json"),
                    );
                }
            }
            reply
        }
        Err(e) => error_response(&e),
    }
}

/// `POST /v2/repository/models/{name}/load`: loads the model again from its
/// source (an alias may have moved), or from `parameters.uri` when given.
/// On failure the current model keeps serving.
async fn load(
    State(state): State<ServerState>,
    Path(name): Path<String>,
    LimitedBody(body): LimitedBody,
) -> Response {
    let result = async {
        if name != state.slot.name {
            return Err(Error::NotFound(format!(
                "unknown model `{name}`; this server serves `{}`",
                state.slot.name
            )));
        }
        let uri = if body.iter().all(u8::is_ascii_whitespace) {
            None
        } else {
            let v: Value =
                serde_json::from_slice(&body).map_err(|e| Error::invalid("body", e.to_string()))?;
            match &v["parameters"]["uri"] {
                Value::Null => None,
                Value::String(s) => Some(s.parse::<ModelUri>()?),
                _ => {
                    return Err(Error::invalid(
                        "parameters.uri",
                        "must be a model URI string",
                    ));
                }
            }
        };
        let loaded = state.reload(uri, true).await?;
        Ok::<_, Error>(
            json!({"name": loaded.name, "version": loaded.version, "source": loaded.source}),
        )
    }
    .await;
    match result {
        Ok(v) => Json(v).into_response(),
        Err(e) => error_response(&e),
    }
}
