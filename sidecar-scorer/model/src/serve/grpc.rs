//! The Open Inference Protocol over gRPC (tonic): `inference.GRPCInferenceService`
//! with the bidirectional `ModelStreamInfer`.

use std::convert::Infallible;
use std::pin::Pin;
use std::task::{Context, Poll};

use futures::{Stream, StreamExt};
use tokio::sync::mpsc;
use tokio_stream::wrappers::ReceiverStream;
use tonic::codegen::{BoxFuture, Service, http};
use tonic::server::NamedService;
use tonic::{Code, Request, Response, Status, Streaming};

use super::infer::{self, InferRequest, InferResponse, InputTensor, Payload, RequestedOutput};
use super::rest::{EXTENSIONS, PLATFORM};
use super::state::ServerState;
use crate::error::{Error, Result};
use crate::proto::grpc_inference_service_server::GrpcInferenceService;
use crate::proto::infer_parameter::ParameterChoice;
use crate::proto::model_infer_request::InferInputTensor;
use crate::proto::model_infer_response::InferOutputTensor;
use crate::proto::model_metadata_response::TensorMetadata;
use crate::proto::*;
use crate::tensor::{DataType, Elements};

pub struct GrpcService {
    state: ServerState,
}

impl GrpcService {
    pub fn new(state: ServerState) -> Self {
        Self { state }
    }
}

/// The status of an error: bad input is `INVALID_ARGUMENT`, an unknown model
/// `NOT_FOUND`, a model still loading `UNAVAILABLE`.
pub fn status(e: &Error) -> Status {
    let message = e.to_string();
    match e {
        Error::Invalid { .. } => Status::invalid_argument(message),
        Error::NotFound(_) => Status::not_found(message),
        Error::Unavailable(_) => Status::unavailable(message),
        Error::TooLarge { .. } => Status::resource_exhausted(message),
        _ => Status::internal(message),
    }
}

/// tonic refuses a request message over `max_decoding_message_size` with
/// `OUT_OF_RANGE` (nothing else in this service answers that code). gRPC's
/// own servers answer `RESOURCE_EXHAUSTED`, which is what clients expect:
/// this gives them that, with the limit and the flag that sets it.
fn over_limit(status: &Status, limit: usize) -> Option<Status> {
    if status.code() != Code::OutOfRange {
        return None;
    }
    // tonic says "... found N bytes, the limit is: L bytes".
    let size = status
        .message()
        .split("found ")
        .nth(1)
        .and_then(|rest| rest.split(' ').next())
        .and_then(|n| n.parse::<u64>().ok());
    Some(self::status(&Error::too_large("message", size, limit)))
}

/// The gRPC service with [`over_limit`] applied to unary calls, whose
/// decoding tonic does before any handler runs; streams apply it themselves.
#[derive(Clone)]
pub struct MessageLimit<S> {
    inner: S,
    limit: usize,
}

impl<S> MessageLimit<S> {
    pub fn new(inner: S, limit: usize) -> Self {
        Self { inner, limit }
    }
}

impl<S: NamedService> NamedService for MessageLimit<S> {
    const NAME: &'static str = S::NAME;
}

impl<S, B, R> Service<http::Request<B>> for MessageLimit<S>
where
    S: Service<http::Request<B>, Response = http::Response<R>, Error = Infallible>,
    S::Future: Send + 'static,
    R: Default + Send + 'static,
{
    type Response = http::Response<R>;
    type Error = Infallible;
    type Future = BoxFuture<Self::Response, Infallible>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Infallible>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, request: http::Request<B>) -> Self::Future {
        let limit = self.limit;
        let response = self.inner.call(request);
        Box::pin(async move {
            let response = response.await?;
            // A refused message answers at once: the status is in the headers.
            let refused = Status::from_header_map(response.headers())
                .and_then(|status| over_limit(&status, limit));
            Ok(match refused {
                Some(status) => status.into_http(),
                None => response,
            })
        })
    }
}

/// Typed contents of the datatype's field.
fn from_contents(datatype: DataType, c: InferTensorContents, field: &str) -> Result<Elements> {
    let narrow =
        |what: &str| Error::invalid(field, format!("an element is out of the range of {what}"));
    Ok(match datatype {
        DataType::Bool => Elements::Bool(c.bool_contents),
        DataType::I8 => Elements::I8(
            c.int_contents
                .into_iter()
                .map(|x| i8::try_from(x).map_err(|_| narrow("INT8")))
                .collect::<Result<_>>()?,
        ),
        DataType::I16 => Elements::I16(
            c.int_contents
                .into_iter()
                .map(|x| i16::try_from(x).map_err(|_| narrow("INT16")))
                .collect::<Result<_>>()?,
        ),
        DataType::I32 => Elements::I32(c.int_contents),
        DataType::I64 => Elements::I64(c.int64_contents),
        DataType::U8 => Elements::U8(
            c.uint_contents
                .into_iter()
                .map(|x| u8::try_from(x).map_err(|_| narrow("UINT8")))
                .collect::<Result<_>>()?,
        ),
        DataType::U16 => Elements::U16(
            c.uint_contents
                .into_iter()
                .map(|x| u16::try_from(x).map_err(|_| narrow("UINT16")))
                .collect::<Result<_>>()?,
        ),
        DataType::U32 => Elements::U32(c.uint_contents),
        DataType::U64 => Elements::U64(c.uint64_contents),
        DataType::F32 => Elements::F32(c.fp32_contents),
        DataType::F64 => Elements::F64(c.fp64_contents),
        DataType::Bytes => Elements::Bytes(c.bytes_contents),
    })
}

fn to_contents(e: Elements) -> InferTensorContents {
    let mut c = InferTensorContents::default();
    match e {
        Elements::Bool(v) => c.bool_contents = v,
        Elements::I8(v) => c.int_contents = v.into_iter().map(i32::from).collect(),
        Elements::I16(v) => c.int_contents = v.into_iter().map(i32::from).collect(),
        Elements::I32(v) => c.int_contents = v,
        Elements::I64(v) => c.int64_contents = v,
        Elements::U8(v) => c.uint_contents = v.into_iter().map(u32::from).collect(),
        Elements::U16(v) => c.uint_contents = v.into_iter().map(u32::from).collect(),
        Elements::U32(v) => c.uint_contents = v,
        Elements::U64(v) => c.uint64_contents = v,
        Elements::F32(v) => c.fp32_contents = v,
        Elements::F64(v) => c.fp64_contents = v,
        Elements::Bytes(v) => c.bytes_contents = v,
    }
    c
}

fn bool_param(p: &std::collections::HashMap<String, InferParameter>, key: &str) -> bool {
    matches!(
        p.get(key).and_then(|v| v.parameter_choice.as_ref()),
        Some(ParameterChoice::BoolParam(true))
    )
}

/// A gRPC request in the transport-neutral form. Raw inputs answer raw.
fn to_request(r: ModelInferRequest) -> Result<InferRequest> {
    let raw = !r.raw_input_contents.is_empty();
    if raw && r.raw_input_contents.len() != r.inputs.len() {
        return Err(Error::invalid(
            "raw_input_contents",
            format!(
                "has {} entries for {} inputs",
                r.raw_input_contents.len(),
                r.inputs.len()
            ),
        ));
    }
    let mut raws = r.raw_input_contents.into_iter();
    let inputs = r
        .inputs
        .into_iter()
        .map(
            |InferInputTensor {
                 name,
                 datatype,
                 shape,
                 contents,
                 ..
             }| {
                let payload = match (raws.next(), contents) {
                    (Some(bytes), None) => Payload::Raw(bytes.into()),
                    (Some(_), Some(_)) => {
                        return Err(Error::invalid(
                            name.as_str(),
                            "has both contents and raw_input_contents",
                        ));
                    }
                    (None, contents) => {
                        let dt = DataType::parse(&datatype, &name)?;
                        Payload::Typed(from_contents(dt, contents.unwrap_or_default(), &name)?)
                    }
                };
                Ok(InputTensor {
                    name,
                    datatype,
                    shape,
                    payload,
                })
            },
        )
        .collect::<Result<_>>()?;
    Ok(InferRequest {
        id: (!r.id.is_empty()).then_some(r.id),
        inputs,
        outputs: r
            .outputs
            .into_iter()
            .map(|o| RequestedOutput {
                raw: raw || bool_param(&o.parameters, "binary_data"),
                name: o.name,
            })
            .collect(),
        raw_by_default: raw,
    })
}

fn to_response(r: InferResponse) -> ModelInferResponse {
    // The protocol allows raw or typed outputs, not a mix.
    let raw = r.outputs.iter().any(|o| o.raw);
    let mut raw_output_contents = Vec::new();
    let outputs = r
        .outputs
        .into_iter()
        .map(|o| {
            let contents = if raw {
                raw_output_contents.push(o.data.to_raw());
                None
            } else {
                Some(to_contents(o.data))
            };
            InferOutputTensor {
                name: o.name,
                datatype: o.datatype.name().to_owned(),
                shape: o.shape,
                parameters: Default::default(),
                contents,
            }
        })
        .collect();
    ModelInferResponse {
        model_name: r.model_name,
        model_version: r.model_version,
        id: r.id.unwrap_or_default(),
        parameters: Default::default(),
        outputs,
        raw_output_contents,
    }
}

async fn model_infer(state: &ServerState, r: ModelInferRequest) -> Result<ModelInferResponse> {
    let model = state.slot.get(&r.model_name, Some(&r.model_version))?;
    let request = to_request(r)?;
    infer::run(model, request).await.map(to_response)
}

type ResponseStream = Pin<Box<dyn Stream<Item = Result<ModelStreamInferResponse, Status>> + Send>>;

/// Responses queued on a stream before the server stops reading requests.
const STREAM_QUEUE: usize = 16;

#[tonic::async_trait]
impl GrpcInferenceService for GrpcService {
    async fn server_live(
        &self,
        _: Request<ServerLiveRequest>,
    ) -> Result<Response<ServerLiveResponse>, Status> {
        Ok(Response::new(ServerLiveResponse { live: true }))
    }

    async fn server_ready(
        &self,
        _: Request<ServerReadyRequest>,
    ) -> Result<Response<ServerReadyResponse>, Status> {
        Ok(Response::new(ServerReadyResponse {
            ready: self.state.slot.is_ready(),
        }))
    }

    async fn model_ready(
        &self,
        r: Request<ModelReadyRequest>,
    ) -> Result<Response<ModelReadyResponse>, Status> {
        let r = r.into_inner();
        match self.state.slot.get(&r.name, Some(&r.version)) {
            Ok(_) => Ok(Response::new(ModelReadyResponse { ready: true })),
            Err(Error::Unavailable(_)) => Ok(Response::new(ModelReadyResponse { ready: false })),
            Err(e) => Err(status(&e)),
        }
    }

    async fn server_metadata(
        &self,
        _: Request<ServerMetadataRequest>,
    ) -> Result<Response<ServerMetadataResponse>, Status> {
        Ok(Response::new(ServerMetadataResponse {
            name: "outrider".to_owned(),
            version: env!("CARGO_PKG_VERSION").to_owned(),
            extensions: EXTENSIONS.iter().map(|s| (*s).to_owned()).collect(),
        }))
    }

    async fn model_metadata(
        &self,
        r: Request<ModelMetadataRequest>,
    ) -> Result<Response<ModelMetadataResponse>, Status> {
        let r = r.into_inner();
        let m = self
            .state
            .slot
            .get(&r.name, Some(&r.version))
            .map_err(|e| status(&e))?;
        let tensors = |specs: &[crate::onnx::TensorSpec]| {
            specs
                .iter()
                .map(|s| TensorMetadata {
                    name: s.name.clone(),
                    datatype: s.datatype.name().to_owned(),
                    shape: s.shape.clone(),
                })
                .collect()
        };
        Ok(Response::new(ModelMetadataResponse {
            name: m.name.clone(),
            versions: vec![m.version.clone()],
            platform: PLATFORM.to_owned(),
            inputs: tensors(&m.onnx.inputs),
            outputs: tensors(&m.onnx.outputs),
        }))
    }

    async fn model_infer(
        &self,
        r: Request<ModelInferRequest>,
    ) -> Result<Response<ModelInferResponse>, Status> {
        model_infer(&self.state, r.into_inner())
            .await
            .map(Response::new)
            .map_err(|e| status(&e))
    }

    type ModelStreamInferStream = ResponseStream;

    /// One response per request, in order; a failed request answers with
    /// `error_message` and the stream goes on.
    async fn model_stream_infer(
        &self,
        r: Request<Streaming<ModelInferRequest>>,
    ) -> Result<Response<Self::ModelStreamInferStream>, Status> {
        let mut requests = r.into_inner();
        let (tx, rx) = mpsc::channel(STREAM_QUEUE);
        let state = self.state.clone();
        tokio::spawn(async move {
            while let Some(next) = requests.next().await {
                let answer = match next {
                    Ok(request) => match model_infer(&state, request).await {
                        Ok(response) => ModelStreamInferResponse {
                            error_message: String::new(),
                            infer_response: Some(response),
                        },
                        Err(e) => ModelStreamInferResponse {
                            error_message: e.to_string(),
                            infer_response: None,
                        },
                    },
                    // A message over the limit ends the stream with the
                    // status a unary call gets; otherwise the client broke
                    // the stream and there is nothing more to answer.
                    Err(e) => {
                        if let Some(status) = over_limit(&e, state.max_request_bytes) {
                            let _ = tx.send(Err(status)).await;
                        }
                        break;
                    }
                };
                if tx.send(Ok(answer)).await.is_err() {
                    break;
                }
            }
        });
        Ok(Response::new(Box::pin(ReceiverStream::new(rx))))
    }
}
