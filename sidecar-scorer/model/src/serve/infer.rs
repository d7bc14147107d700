//! One inference, whatever the transport: inputs checked against the model
//! (names, datatypes, shapes, element counts, finite floats), the model run,
//! the requested outputs returned. REST, gRPC and both streams call
//! [`infer`].

use bytes::Bytes;
use serde_json::Value;

use crate::error::{Error, Result};
use crate::serve::model::LoadedModel;
use crate::tensor::{DataType, Elements};

/// The data of an input tensor as it arrived.
#[derive(Debug)]
pub enum Payload {
    /// A JSON `data` value (flat or nested array).
    Json(Value),
    /// Raw little-endian bytes (gRPC `raw_input_contents`, HTTP binary
    /// tensor data).
    Raw(Bytes),
    /// Already typed (gRPC typed contents).
    Typed(Elements),
}

#[derive(Debug)]
pub struct InputTensor {
    pub name: String,
    pub datatype: String,
    pub shape: Vec<i64>,
    pub payload: Payload,
}

#[derive(Debug, Clone)]
pub struct RequestedOutput {
    pub name: String,
    /// Answer this output as raw bytes (binary tensor data / raw contents).
    pub raw: bool,
}

#[derive(Debug, Default)]
pub struct InferRequest {
    pub id: Option<String>,
    pub inputs: Vec<InputTensor>,
    /// Empty: every output.
    pub outputs: Vec<RequestedOutput>,
    /// Whether outputs not named in `outputs` are answered raw.
    pub raw_by_default: bool,
}

#[derive(Debug)]
pub struct OutputTensor {
    pub name: String,
    pub datatype: DataType,
    pub shape: Vec<i64>,
    pub data: Elements,
    pub raw: bool,
}

#[derive(Debug)]
pub struct InferResponse {
    pub model_name: String,
    pub model_version: String,
    pub id: Option<String>,
    pub outputs: Vec<OutputTensor>,
}

/// Above this many input elements the model runs on the blocking pool.
pub const INLINE_ELEMENTS: usize = 65_536;

fn decode(model: &LoadedModel, input: InputTensor) -> Result<(usize, tract_onnx::prelude::Tensor)> {
    let field = input.name.as_str();
    let (index, spec) = model.input(field).ok_or_else(|| {
        Error::invalid(
            field,
            format!(
                "the model has no input `{field}`; it takes {}",
                model.describe_inputs()
            ),
        )
    })?;
    let datatype = DataType::parse(&input.datatype, field)?;
    if datatype != spec.datatype {
        return Err(Error::invalid(
            field,
            format!(
                "datatype {datatype} does not match the model's {}",
                spec.datatype
            ),
        ));
    }
    let shape: Vec<usize> = input
        .shape
        .iter()
        .map(|&d| usize::try_from(d).ok().filter(|&d| d > 0))
        .collect::<Option<_>>()
        .ok_or_else(|| {
            Error::invalid(
                field,
                format!("shape {:?} must have positive dimensions", input.shape),
            )
        })?;
    if !spec.accepts(&shape) {
        return Err(Error::invalid(
            field,
            format!(
                "shape {:?} does not fit the model's {:?} (-1: any size)",
                input.shape, spec.shape
            ),
        ));
    }
    let expected: usize = shape.iter().product();
    let elements = match input.payload {
        Payload::Json(v) => Elements::from_json(datatype, &v, field)?,
        Payload::Raw(b) => Elements::from_raw(datatype, &b, field)?,
        Payload::Typed(e) => e,
    };
    if elements.datatype() != datatype {
        return Err(Error::invalid(
            field,
            format!(
                "contents are {}, the datatype says {datatype}",
                elements.datatype()
            ),
        ));
    }
    if elements.len() != expected {
        return Err(Error::invalid(
            field,
            format!(
                "shape {:?} holds {expected} elements, the data has {}",
                input.shape,
                elements.len()
            ),
        ));
    }
    if let Some((i, x)) = elements.first_non_finite() {
        return Err(Error::invalid(
            field,
            format!("element {i} is {x}; the model takes finite numbers"),
        ));
    }
    Ok((index, elements.into_tract(&shape)?))
}

/// Checks and runs one request against `model`.
pub fn infer(model: &LoadedModel, request: InferRequest) -> Result<InferResponse> {
    let n_inputs = model.onnx.inputs.len();
    let mut slots: Vec<Option<tract_onnx::prelude::Tensor>> = (0..n_inputs).map(|_| None).collect();
    for input in request.inputs {
        let name = input.name.clone();
        let (i, tensor) = decode(model, input)?;
        if slots[i].replace(tensor).is_some() {
            return Err(Error::invalid(name, "is given twice"));
        }
    }
    let tensors = slots
        .into_iter()
        .zip(&model.onnx.inputs)
        .map(|(t, spec)| {
            t.ok_or_else(|| {
                Error::invalid(
                    spec.name.as_str(),
                    format!(
                        "input `{}` is missing; the model takes {}",
                        spec.name,
                        model.describe_inputs()
                    ),
                )
            })
        })
        .collect::<Result<Vec<_>>>()?;

    // Which outputs, in which form.
    let wanted: Vec<(usize, bool)> = if request.outputs.is_empty() {
        (0..model.onnx.outputs.len())
            .map(|i| (i, request.raw_by_default))
            .collect()
    } else {
        request
            .outputs
            .iter()
            .map(|o| {
                model
                    .onnx
                    .output_index(&o.name)
                    .map(|i| (i, o.raw))
                    .ok_or_else(|| {
                        let known: Vec<&str> =
                            model.onnx.outputs.iter().map(|s| s.name.as_str()).collect();
                        Error::invalid(
                            o.name.as_str(),
                            format!(
                                "the model has no output `{}`; its outputs: {}",
                                o.name,
                                known.join(", ")
                            ),
                        )
                    })
            })
            .collect::<Result<_>>()?
    };

    let results = model.onnx.run(tensors)?;
    let outputs = wanted
        .into_iter()
        .map(|(i, raw)| {
            let t = &results[i];
            let data = Elements::from_tract(t)?;
            Ok(OutputTensor {
                name: model.onnx.outputs[i].name.clone(),
                datatype: data.datatype(),
                shape: t.shape().iter().map(|&d| d as i64).collect(),
                data,
                raw,
            })
        })
        .collect::<Result<_>>()?;
    Ok(InferResponse {
        model_name: model.name.clone(),
        model_version: model.version.clone(),
        id: request.id,
        outputs,
    })
}

/// Total input elements a request declares (to decide where it runs).
pub fn declared_elements(request: &InferRequest) -> usize {
    request
        .inputs
        .iter()
        .map(|i| {
            i.shape
                .iter()
                .map(|&d| d.max(0) as usize)
                .product::<usize>()
        })
        .sum()
}

/// Runs [`infer`], on the blocking pool when the request is large.
pub async fn run(
    model: std::sync::Arc<LoadedModel>,
    request: InferRequest,
) -> Result<InferResponse> {
    if declared_elements(&request) > INLINE_ELEMENTS {
        tokio::task::spawn_blocking(move || infer(&model, request))
            .await
            .map_err(|e| Error::model(format!("inference task failed: {e}")))?
    } else {
        infer(&model, request)
    }
}
