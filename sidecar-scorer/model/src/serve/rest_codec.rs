//! The REST body of an inference: JSON as the protocol defines it, and the
//! binary tensor data extension (Triton's, used by `tritonclient` by
//! default), where a JSON header of `Inference-Header-Content-Length` bytes
//! is followed by the raw bytes of the tensors that declare a
//! `binary_data_size`.

use bytes::Bytes;
use outrider_protocol::json::{self, JsonError, JsonProblem};
use serde::{Deserialize, Serialize};
use serde_json::{Map, Value};

use crate::error::{Error, Result};
use crate::serve::infer::{InferRequest, InferResponse, InputTensor, Payload, RequestedOutput};

pub const HEADER_LENGTH: &str = "inference-header-content-length";

#[derive(Deserialize)]
struct JsonRequest {
    #[serde(default)]
    id: Option<String>,
    #[serde(default)]
    parameters: Map<String, Value>,
    inputs: Vec<JsonInput>,
    #[serde(default)]
    outputs: Vec<JsonOutputRequest>,
}

#[derive(Deserialize)]
struct JsonInput {
    name: String,
    shape: Vec<i64>,
    datatype: String,
    #[serde(default)]
    parameters: Map<String, Value>,
    #[serde(default)]
    data: Option<Value>,
}

#[derive(Deserialize)]
struct JsonOutputRequest {
    name: String,
    #[serde(default)]
    parameters: Map<String, Value>,
}

fn flag(params: &Map<String, Value>, key: &str) -> bool {
    params.get(key).and_then(Value::as_bool).unwrap_or(false)
}

/// Parses a request body; `header_length` is the value of
/// `Inference-Header-Content-Length` when the binary extension is used.
pub fn parse_request(body: Bytes, header_length: Option<usize>) -> Result<InferRequest> {
    let (json, mut binary) = match header_length {
        Some(n) if n <= body.len() => (body.slice(..n), body.slice(n..)),
        Some(n) => {
            return Err(Error::invalid(
                HEADER_LENGTH,
                format!("{n} is longer than the body ({} bytes)", body.len()),
            ));
        }
        None => (body, Bytes::new()),
    };
    if json.iter().all(u8::is_ascii_whitespace) {
        return Err(Error::invalid(
            "body",
            "is empty; expected an inference request",
        ));
    }
    let parsed: JsonRequest = json::from_slice(&json).map_err(|e| request_error(&json, e))?;

    let mut inputs = Vec::with_capacity(parsed.inputs.len());
    for (i, input) in parsed.inputs.into_iter().enumerate() {
        let payload = match (input.parameters.get("binary_data_size"), input.data) {
            (Some(size), _) => {
                let size = size.as_u64().map(|s| s as usize).ok_or_else(|| {
                    Error::invalid(
                        format!("inputs[{i}].parameters.binary_data_size"),
                        "must be a byte count",
                    )
                })?;
                if size > binary.len() {
                    return Err(Error::invalid(
                        format!("inputs[{i}].parameters.binary_data_size"),
                        format!(
                            "{size} bytes, but only {} binary bytes remain in the body",
                            binary.len()
                        ),
                    ));
                }
                Payload::Raw(binary.split_to(size))
            }
            (None, Some(data)) => Payload::Json(data),
            (None, None) => {
                return Err(Error::invalid(
                    input.name.as_str(),
                    "has neither `data` nor a `binary_data_size` parameter",
                ));
            }
        };
        inputs.push(InputTensor {
            name: input.name,
            datatype: input.datatype,
            shape: input.shape,
            payload,
        });
    }
    if !binary.is_empty() {
        return Err(Error::invalid(
            "body",
            format!(
                "{} binary bytes follow the header but no input claims them",
                binary.len()
            ),
        ));
    }
    Ok(InferRequest {
        id: parsed.id,
        raw_by_default: flag(&parsed.parameters, "binary_data_output"),
        outputs: parsed
            .outputs
            .into_iter()
            .map(|o| RequestedOutput {
                raw: flag(&o.parameters, "binary_data"),
                name: o.name,
            })
            .collect(),
        inputs,
    })
}

/// The error of a request body that does not parse: the path of the field
/// when the JSON is well formed, `body` when it is not. A client that writes
/// NaN or Infinity (as Python's `json.dumps` does) is told so, with the field.
fn request_error(text: &[u8], e: JsonError) -> Error {
    if e.problem == JsonProblem::Syntax
        && let Some(token) = non_finite_at(text, e.line, e.column)
    {
        let message = "is not a JSON number (NaN and Infinity are not JSON numbers); \
                       the model takes finite numbers";
        return if e.field.is_empty() {
            Error::invalid(
                "body",
                format!(
                    "`{token}` at line {}, column {} {message}",
                    e.line, e.column
                ),
            )
        } else {
            Error::invalid(e.field, format!("`{token}` {message}"))
        };
    }
    let field = if e.problem == JsonProblem::Shape && !e.field.is_empty() {
        e.field
    } else {
        "body".to_owned()
    };
    Error::invalid(field, e.message)
}

/// The NaN or infinity literal (`NaN`, `Infinity`, `-Infinity`, `inf`, ...)
/// where the parser stopped (1-based line and column), as written.
fn non_finite_at(text: &[u8], line: usize, column: usize) -> Option<String> {
    let line_start = if line <= 1 {
        0
    } else {
        text.iter()
            .enumerate()
            .filter(|(_, b)| **b == b'\n')
            .nth(line - 2)?
            .0
            + 1
    };
    let at = (line_start + column.checked_sub(1)?).min(text.len());
    // Back to the start of the word the parser stopped in, and its sign.
    let mut start = at;
    while start > line_start && text[start - 1].is_ascii_alphabetic() {
        start -= 1;
    }
    if start > line_start && matches!(text[start - 1], b'-' | b'+') {
        start -= 1;
    }
    let word_start = start + usize::from(matches!(text.get(start), Some(b'-' | b'+')));
    let end = word_start
        + text[word_start..]
            .iter()
            .take_while(|b| b.is_ascii_alphabetic())
            .count();
    let word = std::str::from_utf8(&text[word_start..end]).ok()?;
    ["nan", "inf", "infinity"]
        .iter()
        .any(|w| word.eq_ignore_ascii_case(w))
        .then(|| String::from_utf8_lossy(&text[start..end]).into_owned())
}

#[derive(Serialize)]
struct JsonResponse<'a> {
    model_name: &'a str,
    model_version: &'a str,
    #[serde(skip_serializing_if = "Option::is_none")]
    id: Option<&'a str>,
    outputs: Vec<JsonOutput<'a>>,
}

#[derive(Serialize)]
struct JsonOutput<'a> {
    name: &'a str,
    datatype: &'static str,
    shape: &'a [i64],
    #[serde(skip_serializing_if = "Option::is_none")]
    parameters: Option<BinarySize>,
    #[serde(skip_serializing_if = "Option::is_none")]
    data: Option<&'a crate::tensor::Elements>,
}

#[derive(Serialize)]
struct BinarySize {
    binary_data_size: usize,
}

/// An encoded response: the body and, when it carries binary tensor data,
/// the length of its JSON header.
pub struct EncodedResponse {
    pub body: Vec<u8>,
    pub header_length: Option<usize>,
}

pub fn encode_response(response: &InferResponse) -> EncodedResponse {
    let raws: Vec<Option<Vec<u8>>> = response
        .outputs
        .iter()
        .map(|o| o.raw.then(|| o.data.to_raw()))
        .collect();
    let outputs = response
        .outputs
        .iter()
        .zip(&raws)
        .map(|(o, raw)| JsonOutput {
            name: &o.name,
            datatype: o.datatype.name(),
            shape: &o.shape,
            parameters: raw.as_ref().map(|r| BinarySize {
                binary_data_size: r.len(),
            }),
            data: if raw.is_some() { None } else { Some(&o.data) },
        })
        .collect();
    let header = JsonResponse {
        model_name: &response.model_name,
        model_version: &response.model_version,
        id: response.id.as_deref(),
        outputs,
    };
    // Serialising plain structs, strings and numbers cannot fail.
    let mut body = serde_json::to_vec(&header).unwrap_or_default();
    if raws.iter().all(Option::is_none) {
        return EncodedResponse {
            body,
            header_length: None,
        };
    }
    let header_length = body.len();
    for raw in raws.into_iter().flatten() {
        body.extend_from_slice(&raw);
    }
    EncodedResponse {
        body,
        header_length: Some(header_length),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::serve::infer::OutputTensor;
    use crate::tensor::{DataType, Elements};

    #[test]
    fn json_requests_parse() {
        let body = r#"{"id":"a","inputs":[{"name":"x","shape":[1,2],"datatype":"FP32","data":[1,2]}],
            "outputs":[{"name":"score"}]}"#;
        let r = parse_request(Bytes::from(body), None).unwrap();
        assert_eq!(r.id.as_deref(), Some("a"));
        assert_eq!(r.inputs[0].shape, vec![1, 2]);
        assert!(matches!(r.inputs[0].payload, Payload::Json(_)));
        assert!(!r.outputs[0].raw);
    }

    #[test]
    fn binary_requests_split_the_body() {
        let header = r#"{"inputs":[{"name":"x","shape":[2],"datatype":"FP32","parameters":{"binary_data_size":8}}],"parameters":{"binary_data_output":true}}"#;
        let mut body = header.as_bytes().to_vec();
        body.extend_from_slice(&Elements::F32(vec![1.0, 2.0]).to_raw());
        let r = parse_request(Bytes::from(body), Some(header.len())).unwrap();
        assert!(r.raw_by_default);
        match &r.inputs[0].payload {
            Payload::Raw(b) => assert_eq!(
                Elements::from_raw(DataType::F32, b, "x").unwrap(),
                Elements::F32(vec![1.0, 2.0])
            ),
            other => panic!("{other:?}"),
        }
    }

    #[test]
    fn malformed_requests_name_the_problem() {
        for (body, want) in [
            ("", "body: is empty"),
            (
                "{\"inputs\": [{\"name\": \"x\", \"shape\": [1], \"datatype\": \"FP32\", \"data\": [NaN]}]}",
                "NaN and Infinity are not JSON numbers",
            ),
            (
                "{\"inputs\": [{\"name\": \"x\", \"shape\": \"1\", \"datatype\": \"FP32\"}]}",
                "inputs[0].shape: invalid type",
            ),
            (
                "{\"inputs\": [{\"name\": \"x\", \"shape\": [1], \"datatype\": \"FP32\"}]}",
                "x: has neither `data`",
            ),
            ("{}", "missing field `inputs`"),
            (
                "1",
                "body: invalid type: integer `1`, expected struct JsonRequest",
            ),
            ("{\"inputs\": []} {}", "body: trailing characters"),
        ] {
            let err = parse_request(Bytes::from(body), None)
                .err()
                .unwrap()
                .to_string();
            assert!(err.contains(want), "{body}: {err}");
        }
    }

    #[test]
    fn nan_and_infinities_are_named_with_their_field() {
        for (body, want) in [
            (
                "{\"inputs\": [{\"name\": \"x\", \"shape\": [2], \"datatype\": \"FP32\", \"data\": [1, NaN]}]}",
                "inputs[0].data[1]: `NaN` is not a JSON number",
            ),
            (
                "{\"inputs\": [{\"name\": \"x\", \"shape\": [1], \"datatype\": \"FP32\", \"data\": [Infinity]}]}",
                "inputs[0].data[0]: `Infinity` is not a JSON number",
            ),
            (
                "{\"inputs\": [{\"name\": \"x\", \"shape\": [1], \"datatype\": \"FP32\",\n  \"data\": [-Infinity]}]}",
                "inputs[0].data[0]: `-Infinity` is not a JSON number",
            ),
            (
                "{\"inputs\": [{\"name\": \"x\", \"shape\": [1], \"datatype\": \"FP32\", \"data\": [-inf]}]}",
                "inputs[0].data[0]: `-inf` is not a JSON number",
            ),
            // Where no field holds it, the position says where it is.
            (
                "\n  NaN",
                "body: `NaN` at line 2, column 3 is not a JSON number",
            ),
        ] {
            let err = parse_request(Bytes::from(body), None)
                .err()
                .unwrap()
                .to_string();
            assert!(err.starts_with(want), "{body}: {err}");
            assert!(
                err.ends_with(
                    "(NaN and Infinity are not JSON numbers); the model takes finite numbers"
                ),
                "{body}: {err}"
            );
        }
        // Other syntax errors get no such hint, even with NaN elsewhere.
        let err = parse_request(Bytes::from("{\"id\": \"NaN\", \"inputs\": [}"), None)
            .err()
            .unwrap()
            .to_string();
        assert_eq!(err, "body: expected value");
        assert_eq!(non_finite_at(b"[1, nano]", 1, 5), None);
        assert_eq!(non_finite_at(b"[1, Infinite]", 1, 5), None);
        assert_eq!(non_finite_at(b"[1,\n Inf]", 2, 2), Some("Inf".to_owned()));
    }

    #[test]
    fn responses_mix_json_and_binary_outputs() {
        let response = InferResponse {
            model_name: "m".into(),
            model_version: "2".into(),
            id: None,
            outputs: vec![
                OutputTensor {
                    name: "a".into(),
                    datatype: DataType::F32,
                    shape: vec![1],
                    data: Elements::F32(vec![0.1]),
                    raw: false,
                },
                OutputTensor {
                    name: "b".into(),
                    datatype: DataType::I64,
                    shape: vec![1],
                    data: Elements::I64(vec![7]),
                    raw: true,
                },
            ],
        };
        let encoded = encode_response(&response);
        let n = encoded.header_length.unwrap();
        let header: Value = serde_json::from_slice(&encoded.body[..n]).unwrap();
        assert_eq!(header["outputs"][0]["data"][0], serde_json::json!(0.1));
        assert_eq!(header["outputs"][1]["parameters"]["binary_data_size"], 8);
        assert_eq!(&encoded.body[n..], &7i64.to_le_bytes());
    }
}
