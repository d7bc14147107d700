//! The Open Inference Protocol server end to end, in-process: REST (JSON and
//! binary tensor data), gRPC with its bidirectional stream, the NDJSON stream
//! with back-pressure, bad input of every kind, and hot swaps that drop no
//! request.

mod support;

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::{Duration, Instant};

use bytes::Bytes;
use hyper::Method;
use outrider_model::onnx::OnnxModel;
use outrider_model::proto::grpc_inference_service_client::GrpcInferenceServiceClient;
use outrider_model::proto::model_infer_request::InferInputTensor;
use outrider_model::proto::*;
use outrider_model::registry::{self, ModelUri};
use outrider_model::tensor::{DataType, Elements};
use outrider_model::train::{self, TrainConfig};
use serde_json::{Value, json};
use support::*;

const READY: Duration = Duration::from_secs(60);

/// Scores of rows by the model itself (tract, no server).
fn direct_scores(rows: &[[f32; 10]]) -> Vec<f64> {
    let model = OnnxModel::from_bytes(&trained().onnx).unwrap();
    let flat: Vec<f32> = rows.iter().flatten().copied().collect();
    let input = tract_tensor(&flat, rows.len());
    let out = model.run(vec![input]).unwrap();
    outrider_model::tensor::slice_of::<f32>(&out[0])
        .unwrap()
        .iter()
        .map(|&x| f64::from(x))
        .collect()
}

fn tract_tensor(flat: &[f32], n: usize) -> tract_onnx::prelude::Tensor {
    tract_onnx::prelude::Tensor::from_shape(&[n, 10], flat).unwrap()
}

fn grpc_request(rows: &[[f32; 10]], raw: bool) -> ModelInferRequest {
    let flat: Vec<f32> = rows.iter().flatten().copied().collect();
    let mut input = InferInputTensor {
        name: "transaction".into(),
        datatype: "FP32".into(),
        shape: vec![rows.len() as i64, 10],
        ..Default::default()
    };
    let mut request = ModelInferRequest {
        model_name: "fraud".into(),
        id: "g".into(),
        ..Default::default()
    };
    if raw {
        request.raw_input_contents = vec![Elements::F32(flat).to_raw()];
    } else {
        input.contents = Some(InferTensorContents {
            fp32_contents: flat,
            ..Default::default()
        });
    }
    request.inputs = vec![input];
    request
}

fn grpc_scores(response: &ModelInferResponse) -> Vec<f64> {
    let out = &response.outputs[0];
    assert_eq!(out.name, "score");
    assert_eq!(out.datatype, "FP32");
    let values = match response.raw_output_contents.first() {
        Some(raw) => match Elements::from_raw(DataType::F32, raw, "score").unwrap() {
            Elements::F32(v) => v,
            other => panic!("{other:?}"),
        },
        None => out.contents.as_ref().unwrap().fp32_contents.clone(),
    };
    values.into_iter().map(f64::from).collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn rest_speaks_the_open_inference_protocol() {
    let dir = tempfile::tempdir().unwrap();
    let server = serve_trained(dir.path()).await;
    let http = Http::new(server.http_addr);

    assert_eq!(
        http.get("/v2/health/live").await.json(),
        json!({"live": true})
    );
    assert_eq!(
        http.get("/v2/health/ready").await.json(),
        json!({"ready": true})
    );
    let meta = http.get("/v2").await.json();
    assert_eq!(meta["name"], "outrider");
    assert!(
        meta["extensions"]
            .as_array()
            .unwrap()
            .contains(&json!("binary_tensor_data"))
    );
    assert_eq!(
        http.get("/v2/models/fraud").await.json(),
        json!({
            "name": "fraud", "versions": ["1"], "platform": "onnx_tract",
            "inputs": [{"name": "transaction", "datatype": "FP32", "shape": [-1, 10]}],
            "outputs": [{"name": "score", "datatype": "FP32", "shape": [-1, 1]}],
        })
    );
    assert_eq!(http.get("/v2/models/fraud/ready").await.status, 200);
    assert_eq!(
        http.get("/v2/models/fraud/versions/1/ready").await.status,
        200
    );
    assert_eq!(
        http.get("/v2/models/fraud/versions/2/ready").await.status,
        404
    );

    // One row, then a batch of 64: the model's own scores.
    let rows = rows_of(64, 77);
    let expected = direct_scores(&rows);
    let one = http
        .post_json("/v2/models/fraud/infer", &infer_body(&rows[..1]))
        .await;
    assert_eq!(one.status, 200);
    assert_eq!(one.headers["content-type"], "application/json");
    let one = one.json();
    assert_eq!(
        (
            one["id"].as_str(),
            one["model_name"].as_str(),
            one["model_version"].as_str()
        ),
        (Some("test"), Some("fraud"), Some("1"))
    );
    assert_eq!(one["outputs"][0]["shape"], json!([1, 1]));
    assert_close(&scores_of(&one), &expected[..1], 1e-6);
    let batch = http
        .post_json("/v2/models/fraud/versions/1/infer", &infer_body(&rows))
        .await
        .json();
    assert_eq!(batch["outputs"][0]["shape"], json!([64, 1]));
    // Same engine, same batch: the very same FP32 scores.
    let as_f32 = |v: &[f64]| v.iter().map(|&x| x as f32).collect::<Vec<_>>();
    assert_eq!(as_f32(&scores_of(&batch)), as_f32(&expected));

    // Nested data and a requested output.
    let nested: Vec<Vec<f32>> = rows[..2].iter().map(|r| r.to_vec()).collect();
    let body = json!({"inputs": [{"name": "transaction", "shape": [2, 10], "datatype": "FP32", "data": nested}],
                      "outputs": [{"name": "score"}]});
    assert_close(
        &scores_of(&http.post_json("/v2/models/fraud/infer", &body).await.json()),
        &expected[..2],
        1e-6,
    );

    // The binary tensor data extension, both ways.
    let raw = Elements::F32(rows.iter().flatten().copied().collect()).to_raw();
    let header = json!({"inputs": [{"name": "transaction", "shape": [64, 10], "datatype": "FP32",
                                     "parameters": {"binary_data_size": raw.len()}}],
                        "outputs": [{"name": "score", "parameters": {"binary_data": true}}]})
    .to_string();
    let mut body = header.clone().into_bytes();
    body.extend_from_slice(&raw);
    let reply = http
        .send(
            Method::POST,
            "/v2/models/fraud/infer",
            &[("inference-header-content-length", header.len().to_string())],
            Bytes::from(body),
        )
        .await;
    assert_eq!(reply.status, 200);
    assert_eq!(reply.headers["content-type"], "application/octet-stream");
    let n: usize = reply.headers["inference-header-content-length"]
        .to_str()
        .unwrap()
        .parse()
        .unwrap();
    let head: Value = serde_json::from_slice(&reply.body[..n]).unwrap();
    assert_eq!(head["outputs"][0]["parameters"]["binary_data_size"], 64 * 4);
    let Elements::F32(values) =
        Elements::from_raw(DataType::F32, &reply.body[n..], "score").unwrap()
    else {
        panic!("not FP32")
    };
    assert_eq!(
        values.iter().map(|&x| f64::from(x)).collect::<Vec<_>>(),
        expected
    );
    server.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn grpc_speaks_the_protocol_and_streams_in_order() {
    let dir = tempfile::tempdir().unwrap();
    let server = serve_trained(dir.path()).await;
    let mut client =
        GrpcInferenceServiceClient::connect(format!("http://{}", server.grpc_addr.unwrap()))
            .await
            .unwrap();

    assert!(
        client
            .server_live(ServerLiveRequest {})
            .await
            .unwrap()
            .into_inner()
            .live
    );
    assert!(
        client
            .server_ready(ServerReadyRequest {})
            .await
            .unwrap()
            .into_inner()
            .ready
    );
    let ready = ModelReadyRequest {
        name: "fraud".into(),
        version: String::new(),
    };
    assert!(client.model_ready(ready).await.unwrap().into_inner().ready);
    let meta = client
        .model_metadata(ModelMetadataRequest {
            name: "fraud".into(),
            version: "1".into(),
        })
        .await
        .unwrap()
        .into_inner();
    assert_eq!(
        (
            meta.inputs[0].name.as_str(),
            meta.inputs[0].shape.as_slice()
        ),
        ("transaction", &[-1, 10][..])
    );
    assert_eq!(meta.outputs[0].datatype, "FP32");
    let server_meta = client
        .server_metadata(ServerMetadataRequest {})
        .await
        .unwrap()
        .into_inner();
    assert_eq!(server_meta.name, "outrider");

    let rows = rows_of(64, 78);
    let expected = direct_scores(&rows);
    for raw in [false, true] {
        let response = client
            .model_infer(grpc_request(&rows, raw))
            .await
            .unwrap()
            .into_inner();
        assert_eq!(
            (response.id.as_str(), response.model_version.as_str()),
            ("g", "1")
        );
        assert_eq!(response.outputs[0].shape, vec![64, 1]);
        // Raw in, raw out; typed in, typed out.
        assert_eq!(response.raw_output_contents.is_empty(), !raw);
        assert_eq!(grpc_scores(&response), expected);
    }

    // The bidirectional stream: 40 requests, the 10th one bad, answered in order.
    let (tx, rx) = tokio::sync::mpsc::channel(8);
    let mut answers = client
        .model_stream_infer(tokio_stream::wrappers::ReceiverStream::new(rx))
        .await
        .unwrap()
        .into_inner();
    let sender = tokio::spawn(async move {
        for i in 0..40 {
            let mut request = grpc_request(&rows[i..i + 1], i % 2 == 0);
            request.id = format!("s{i}");
            if i == 10 {
                request.inputs[0].shape = vec![1, 9];
            }
            tx.send(request).await.unwrap();
        }
    });
    for i in 0..40 {
        let answer = answers
            .message()
            .await
            .unwrap()
            .expect("one answer per request");
        if i == 10 {
            assert!(
                answer.error_message.contains("shape [1, 9] does not fit"),
                "{}",
                answer.error_message
            );
            assert!(answer.infer_response.is_none());
        } else {
            assert_eq!(answer.error_message, "");
            let response = answer.infer_response.unwrap();
            assert_eq!(response.id, format!("s{i}"));
            assert_close(&grpc_scores(&response), &expected[i..i + 1], 1e-6);
        }
    }
    sender.await.unwrap();
    server.shutdown().await;
}

/// (request body, expected status, expected message part)
fn bad_rest_requests() -> Vec<(Value, u16, &'static str)> {
    let row: Vec<f32> = rows_of(1, 3)[0].to_vec();
    let input = |shape: Value, datatype: &str, data: Value| json!({"inputs": [{"name": "transaction", "shape": shape, "datatype": datatype, "data": data}]});
    vec![
        (
            input(json!([1, 9]), "FP32", json!(&row[..9])),
            400,
            "transaction: shape [1, 9] does not fit the model's [-1, 10] (-1: any size)",
        ),
        (
            input(json!([1, 10]), "FP64", json!(row)),
            400,
            "transaction: datatype FP64 does not match the model's FP32",
        ),
        (
            input(json!([2, 10]), "FP32", json!(row)),
            400,
            "transaction: shape [2, 10] holds 20 elements, the data has 10",
        ),
        (
            input(json!([1, 10]), "FP17", json!(row)),
            400,
            "transaction: unknown datatype `FP17`",
        ),
        (
            input(json!([1, 10]), "FP32", json!(vec!["a"; 10])),
            400,
            "transaction: element 0 is the string \"a\", expected a number",
        ),
        (
            input(json!([0, 10]), "FP32", json!([])),
            400,
            "must have positive dimensions",
        ),
        (
            json!({"inputs": []}),
            400,
            "transaction: input `transaction` is missing; the model takes `transaction` (FP32 [-1, 10])",
        ),
        (
            json!({"inputs": [{"name": "tx", "shape": [1, 10], "datatype": "FP32", "data": row}]}),
            400,
            "tx: the model has no input `tx`",
        ),
        (
            json!({"inputs": [{"name": "transaction", "shape": [1, 10], "datatype": "FP32", "data": row}],
                "outputs": [{"name": "label"}]}),
            400,
            "label: the model has no output `label`; its outputs: score",
        ),
        (json!({"inputs": "x"}), 400, "inputs: invalid type"),
    ]
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bad_input_gets_a_protocol_error_and_the_server_keeps_serving() {
    let dir = tempfile::tempdir().unwrap();
    let server = serve_trained(dir.path()).await;
    let http = Http::new(server.http_addr);
    let good = infer_body(&rows_of(1, 4));
    let still_serving = |reply: support::Reply| {
        assert_eq!(
            reply.status,
            200,
            "{}",
            String::from_utf8_lossy(&reply.body)
        );
    };

    for (body, status, message) in bad_rest_requests() {
        let reply = http.post_json("/v2/models/fraud/infer", &body).await;
        assert_eq!(reply.status, status, "{body}");
        let error = reply.json();
        // The protocol's error shape: one `error` string.
        assert_eq!(error.as_object().unwrap().len(), 1, "{error}");
        let text = error["error"].as_str().unwrap();
        assert!(
            text.contains(message),
            "{body}\n  got: {text}\n want: {message}"
        );
        still_serving(http.post_json("/v2/models/fraud/infer", &good).await);
    }

    // Bodies that are not JSON, NaN and infinities written by a careless
    // client (Python's json.dumps writes them), NaN in binary data: the model
    // takes finite numbers.
    let raw_text = [
        ("", "body: is empty"),
        ("{\"inputs\": [", "body: EOF while parsing"),
        (
            r#"{"inputs": [{"name": "transaction", "shape": [1, 10], "datatype": "FP32", "data": [NaN,1,1,1,1,1,1,1,1,1]}]}"#,
            "NaN and Infinity are not JSON numbers",
        ),
        (
            r#"{"inputs": [{"name": "transaction", "shape": [1, 10], "datatype": "FP32", "data": [1,1,1,1,1,1,1,1,Infinity,1]}]}"#,
            "inputs[0].data[8]: `Infinity` is not a JSON number (NaN and Infinity are not \
             JSON numbers); the model takes finite numbers",
        ),
        (
            r#"{"inputs": [{"name": "transaction", "shape": [1, 10], "datatype": "FP32", "data": [1,1,-Infinity,1,1,1,1,1,1,1]}]}"#,
            "inputs[0].data[2]: `-Infinity` is not a JSON number (NaN and Infinity are not \
             JSON numbers); the model takes finite numbers",
        ),
    ];
    for (body, message) in raw_text {
        let reply = http
            .send(
                Method::POST,
                "/v2/models/fraud/infer",
                &[],
                Bytes::from(body),
            )
            .await;
        assert_eq!(reply.status, 400);
        let text = reply.json()["error"].as_str().unwrap().to_owned();
        assert!(text.contains(message), "{text}");
        still_serving(http.post_json("/v2/models/fraud/infer", &good).await);
    }
    let mut nan_row = rows_of(1, 5)[0];
    nan_row[3] = f32::NAN;
    let raw = Elements::F32(nan_row.to_vec()).to_raw();
    let header = json!({"inputs": [{"name": "transaction", "shape": [1, 10], "datatype": "FP32",
                                     "parameters": {"binary_data_size": 40}}]})
    .to_string();
    let mut body = header.clone().into_bytes();
    body.extend_from_slice(&raw);
    let reply = http
        .send(
            Method::POST,
            "/v2/models/fraud/infer",
            &[("inference-header-content-length", header.len().to_string())],
            Bytes::from(body),
        )
        .await;
    assert_eq!(reply.status, 400);
    assert_eq!(
        reply.json()["error"],
        "transaction: element 3 is NaN; the model takes finite numbers"
    );
    still_serving(http.post_json("/v2/models/fraud/infer", &good).await);

    // Unknown models and versions: 404.
    let reply = http.post_json("/v2/models/nope/infer", &good).await;
    assert_eq!(
        (reply.status, reply.json()["error"].as_str().unwrap()),
        (404, "unknown model `nope`; this server serves `fraud`")
    );
    let reply = http
        .post_json("/v2/models/fraud/versions/7/infer", &good)
        .await;
    assert_eq!(reply.status, 404);
    assert!(
        reply.json()["error"]
            .as_str()
            .unwrap()
            .contains("has no version 7")
    );

    // The same over gRPC: INVALID_ARGUMENT and NOT_FOUND with the same words.
    let mut client =
        GrpcInferenceServiceClient::connect(format!("http://{}", server.grpc_addr.unwrap()))
            .await
            .unwrap();
    let rows = rows_of(1, 6);
    let mut cases: Vec<(ModelInferRequest, tonic::Code, &str)> = Vec::new();
    let mut wrong_shape = grpc_request(&rows, false);
    wrong_shape.inputs[0].shape = vec![1, 5];
    cases.push((
        wrong_shape,
        tonic::Code::InvalidArgument,
        "shape [1, 5] does not fit",
    ));
    let mut wrong_type = grpc_request(&rows, true);
    wrong_type.inputs[0].datatype = "INT64".into();
    wrong_type.raw_input_contents = vec![Elements::I64(vec![1; 10]).to_raw()];
    cases.push((
        wrong_type,
        tonic::Code::InvalidArgument,
        "datatype INT64 does not match the model's FP32",
    ));
    let mut nan = grpc_request(&[nan_row], true);
    nan.id = "nan".into();
    cases.push((nan, tonic::Code::InvalidArgument, "element 3 is NaN"));
    let mut infinite_row = rows_of(1, 7)[0];
    infinite_row[8] = f32::INFINITY;
    cases.push((
        grpc_request(&[infinite_row], false),
        tonic::Code::InvalidArgument,
        "transaction: element 8 is inf; the model takes finite numbers",
    ));
    let mut typed_wrong = grpc_request(&rows, false);
    typed_wrong.inputs[0].datatype = "FP64".into();
    cases.push((
        typed_wrong,
        tonic::Code::InvalidArgument,
        "datatype FP64 does not match the model's FP32",
    ));
    let mut too_few = grpc_request(&rows, false);
    too_few.inputs[0].shape = vec![2, 10];
    cases.push((
        too_few,
        tonic::Code::InvalidArgument,
        "shape [2, 10] holds 20 elements, the data has 10",
    ));
    let mut missing = grpc_request(&rows, false);
    missing.inputs.clear();
    cases.push((
        missing,
        tonic::Code::InvalidArgument,
        "input `transaction` is missing",
    ));
    let mut short_raw = grpc_request(&rows, true);
    short_raw.raw_input_contents[0].truncate(38);
    cases.push((
        short_raw,
        tonic::Code::InvalidArgument,
        "38 raw bytes are not a whole number of FP32 elements",
    ));
    let mut unknown = grpc_request(&rows, false);
    unknown.model_name = "nope".into();
    cases.push((unknown, tonic::Code::NotFound, "unknown model `nope`"));
    for (request, code, message) in cases {
        let status = client.model_infer(request).await.unwrap_err();
        assert_eq!(status.code(), code, "{}", status.message());
        assert!(
            status.message().contains(message),
            "{} !~ {message}",
            status.message()
        );
        let ok = client.model_infer(grpc_request(&rows, false)).await;
        assert!(ok.is_ok(), "the server keeps serving");
    }
    server.shutdown().await;
}

/// An inference body of exactly `size` bytes: a good request padded with spaces.
fn padded_infer_body(rows: &[[f32; 10]], size: usize) -> Vec<u8> {
    let mut body = infer_body(rows).to_string().into_bytes();
    assert!(body.len() <= size, "{} > {size}", body.len());
    body.resize(size, b' ');
    body
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_request_over_the_size_limit_gets_the_protocol_error_and_the_server_keeps_serving() {
    const LIMIT: usize = 2048;
    let dir = tempfile::tempdir().unwrap();
    let server = serve_trained_with_limit(dir.path(), LIMIT).await;
    let rows = rows_of(1, 8);
    let expected = direct_scores(&rows);
    let json_type = [("content-type", "application/json".to_owned())];

    // At the limit: served.
    let reply = Http::new(server.http_addr)
        .send(
            Method::POST,
            "/v2/models/fraud/infer",
            &json_type,
            Bytes::from(padded_infer_body(&rows, LIMIT)),
        )
        .await;
    assert_eq!(
        reply.status,
        200,
        "{}",
        String::from_utf8_lossy(&reply.body)
    );
    assert_close(&scores_of(&reply.json()), &expected, 1e-6);

    // One byte over, on inference and on load: 413 with the protocol's error
    // shape; then a good request on a new connection is served.
    for path in ["/v2/models/fraud/infer", "/v2/repository/models/fraud/load"] {
        let reply = Http::new(server.http_addr)
            .send(
                Method::POST,
                path,
                &json_type,
                Bytes::from(padded_infer_body(&rows, LIMIT + 1)),
            )
            .await;
        assert_eq!(reply.status, 413, "{path}");
        assert_eq!(reply.headers["content-type"], "application/json", "{path}");
        assert_eq!(
            reply.json(),
            json!({"error": "body: 2049 bytes is over this server's limit of 2048 bytes \
                             (`outrider-model serve --max-body-bytes`)"}),
            "{path}"
        );
        let reply = Http::new(server.http_addr)
            .post_json("/v2/models/fraud/infer", &infer_body(&rows))
            .await;
        assert_eq!(
            reply.status,
            200,
            "{}",
            String::from_utf8_lossy(&reply.body)
        );
        assert_close(&scores_of(&reply.json()), &expected, 1e-6);
    }

    // gRPC: a message over the limit is RESOURCE_EXHAUSTED, unary or streamed.
    let grpc_url = format!("http://{}", server.grpc_addr.unwrap());
    let big_rows = rows_of(60, 9);
    let big = grpc_request(&big_rows, false);
    let size = prost::Message::encoded_len(&big);
    assert!(size > LIMIT, "{size}");
    let mut client = GrpcInferenceServiceClient::connect(grpc_url.clone())
        .await
        .unwrap();
    let status = client.model_infer(big.clone()).await.unwrap_err();
    assert_eq!(status.code(), tonic::Code::ResourceExhausted);
    assert_eq!(
        status.message(),
        format!(
            "message: {size} bytes is over this server's limit of 2048 bytes \
             (`outrider-model serve --max-body-bytes`)"
        )
    );
    let mut client = GrpcInferenceServiceClient::connect(grpc_url.clone())
        .await
        .unwrap();
    let answer = client
        .model_infer(grpc_request(&rows, false))
        .await
        .unwrap()
        .into_inner();
    assert_close(&grpc_scores(&answer), &expected, 1e-6);

    let stream = futures::stream::iter([grpc_request(&rows, false), big]);
    let mut answers = client
        .model_stream_infer(stream)
        .await
        .unwrap()
        .into_inner();
    let first = answers.message().await.unwrap().unwrap();
    assert_eq!(first.error_message, "");
    assert_close(
        &grpc_scores(&first.infer_response.unwrap()),
        &expected,
        1e-6,
    );
    let status = answers.message().await.unwrap_err();
    assert_eq!(status.code(), tonic::Code::ResourceExhausted);
    assert!(
        status
            .message()
            .starts_with(&format!("message: {size} bytes is over")),
        "{}",
        status.message()
    );
    let answer = client
        .model_infer(grpc_request(&rows, true))
        .await
        .unwrap()
        .into_inner();
    assert_close(&grpc_scores(&answer), &expected, 1e-6);
    server.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_corrupt_model_or_a_dangling_uri_is_refused_while_the_current_model_serves() {
    let dir = tempfile::tempdir().unwrap();
    let good = model_file(dir.path());
    let corrupt = dir.path().join("corrupt.onnx");
    std::fs::write(&corrupt, &trained().onnx[..trained().onnx.len() / 3]).unwrap();
    let garbage = dir.path().join("garbage.onnx");
    std::fs::write(&garbage, b"this is not a model").unwrap();

    let server = serve(ModelUri::File(good), empty_registry(dir.path()), None).await;
    server.wait_ready(READY).await.unwrap();
    let http = Http::new(server.http_addr);
    let load = |uri: &str| json!({"parameters": {"uri": uri}});
    for (uri, status, message) in [
        (corrupt.to_str().unwrap(), 400, "not an ONNX model"),
        (garbage.to_str().unwrap(), 400, "not an ONNX model"),
        (
            "models:/fraud@champion",
            404,
            "models:/fraud@champion does not resolve: no registered model `fraud`",
        ),
        ("models:/fraud", 400, "name a version"),
        (
            "/nowhere/model.onnx",
            404,
            "/nowhere/model.onnx: no such model file",
        ),
    ] {
        let reply = http
            .post_json("/v2/repository/models/fraud/load", &load(uri))
            .await;
        assert_eq!(
            reply.status,
            status,
            "{uri}: {}",
            String::from_utf8_lossy(&reply.body)
        );
        let text = reply.json()["error"].as_str().unwrap().to_owned();
        assert!(text.contains(message), "{uri}: {text}");
        // The current model still answers.
        let ok = http
            .post_json("/v2/models/fraud/infer", &infer_body(&rows_of(2, 1)))
            .await;
        assert_eq!(ok.status, 200);
        assert_eq!(http.get("/v2/health/ready").await.status, 200);
    }
    server.shutdown().await;

    // A server whose first model is corrupt: live, not ready, and it says why.
    let server = serve(ModelUri::File(corrupt), empty_registry(dir.path()), None).await;
    let http = Http::new(server.http_addr);
    let deadline = Instant::now() + READY;
    while server.state.slot.last_error().is_none() {
        assert!(Instant::now() < deadline, "the load never failed");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    assert_eq!(http.get("/v2/health/live").await.status, 200);
    assert_eq!(
        http.get("/v2/health/ready").await.json(),
        json!({"ready": false})
    );
    assert_eq!(http.get("/v2/models/corrupt/ready").await.status, 503);
    let reply = http
        .post_json("/v2/models/corrupt/infer", &infer_body(&rows_of(1, 1)))
        .await;
    assert_eq!(reply.status, 503);
    let text = reply.json()["error"].as_str().unwrap().to_owned();
    assert!(
        text.starts_with("model `corrupt` is not loaded yet (last load failed: model: "),
        "{text}"
    );
    let mut client =
        GrpcInferenceServiceClient::connect(format!("http://{}", server.grpc_addr.unwrap()))
            .await
            .unwrap();
    assert!(
        !client
            .server_ready(ServerReadyRequest {})
            .await
            .unwrap()
            .into_inner()
            .ready
    );
    let mut request = grpc_request(&rows_of(1, 1), false);
    request.model_name = "corrupt".into();
    assert_eq!(
        client.model_infer(request).await.unwrap_err().code(),
        tonic::Code::Unavailable
    );
    server.shutdown().await;
}

/// Replies go out at once: with Nagle's algorithm on the server's sockets, a
/// gRPC reply waits for the client's delayed ACK (40 ms) behind the flow
/// control frames that a batch-sized request makes the server send.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn batched_grpc_and_rest_replies_are_not_held_back() {
    let dir = tempfile::tempdir().unwrap();
    let server = serve_trained(dir.path()).await;
    let rows = rows_of(64, 11);
    let mut client =
        GrpcInferenceServiceClient::connect(format!("http://{}", server.grpc_addr.unwrap()))
            .await
            .unwrap();
    let http = Http::new(server.http_addr);
    let body = infer_body(&rows);
    // Warm up both connections.
    client.model_infer(grpc_request(&rows, true)).await.unwrap();
    assert_eq!(
        http.post_json("/v2/models/fraud/infer", &body).await.status,
        200
    );
    const CALLS: u32 = 30;
    let start = Instant::now();
    for _ in 0..CALLS {
        client.model_infer(grpc_request(&rows, true)).await.unwrap();
    }
    let grpc = start.elapsed();
    let start = Instant::now();
    for _ in 0..CALLS {
        assert_eq!(
            http.post_json("/v2/models/fraud/infer", &body).await.status,
            200
        );
    }
    let rest = start.elapsed();
    // Held back, 30 calls would take at least 1.2 s.
    let limit = Duration::from_millis(600);
    assert!(grpc < limit, "{CALLS} gRPC batch-64 calls took {grpc:?}");
    assert!(rest < limit, "{CALLS} REST batch-64 calls took {rest:?}");
    server.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_server_started_on_a_dangling_uri_says_why_and_serves_once_it_resolves() {
    let dir = tempfile::tempdir().unwrap();
    let champion: ModelUri = "models:/fraud@champion".parse().unwrap();
    let server = serve(
        champion,
        empty_registry(dir.path()),
        Some(Duration::from_millis(100)),
    )
    .await;
    let error = server.wait_ready(READY).await.unwrap_err().to_string();
    assert!(
        error.contains("models:/fraud@champion does not resolve: no registered model `fraud`"),
        "{error}"
    );
    let http = Http::new(server.http_addr);
    assert_eq!(http.get("/v2/health/live").await.status, 200);
    assert_eq!(
        http.get("/v2/health/ready").await.json(),
        json!({"ready": false})
    );
    let reply = http
        .post_json("/v2/models/fraud/infer", &infer_body(&rows_of(1, 1)))
        .await;
    assert_eq!(reply.status, 503);
    let text = reply.json()["error"].as_str().unwrap().to_owned();
    assert!(text.contains("does not resolve"), "{text}");
    let mut client =
        GrpcInferenceServiceClient::connect(format!("http://{}", server.grpc_addr.unwrap()))
            .await
            .unwrap();
    let status = client
        .model_infer(grpc_request(&rows_of(1, 1), false))
        .await
        .unwrap_err();
    assert_eq!(
        status.code(),
        tonic::Code::Unavailable,
        "{}",
        status.message()
    );
    assert!(
        status.message().contains("does not resolve"),
        "{}",
        status.message()
    );

    // The alias appears: the registry watch loads it and the server serves.
    let registry = empty_registry(dir.path());
    let v1 = registry::publish(&registry, trained(), "fraud")
        .await
        .unwrap();
    registry::promote(&registry, "fraud", v1.version)
        .await
        .unwrap();
    let deadline = Instant::now() + READY;
    while !server.state.slot.is_ready() {
        assert!(
            Instant::now() < deadline,
            "the promoted version never loaded"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let reply = http
        .post_json("/v2/models/fraud/infer", &infer_body(&rows_of(1, 1)))
        .await;
    assert_eq!(
        reply.status,
        200,
        "{}",
        String::from_utf8_lossy(&reply.body)
    );
    assert_eq!(reply.json()["model_version"], "1");
    assert!(
        client
            .model_infer(grpc_request(&rows_of(1, 1), false))
            .await
            .is_ok()
    );
    server.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_promoted_version_is_swapped_in_without_dropping_a_request() {
    let dir = tempfile::tempdir().unwrap();
    let registry = empty_registry(dir.path());
    let v1 = registry::publish(&registry, trained(), "fraud")
        .await
        .unwrap();
    registry::promote(&registry, "fraud", v1.version)
        .await
        .unwrap();
    let other = train::train(&transactions(8_000, 9), &TrainConfig::default()).unwrap();
    let v2 = registry::publish(&registry, &other, "fraud").await.unwrap();
    assert_eq!((v1.version, v2.version), (1, 2));

    let champion: ModelUri = "models:/fraud@champion".parse().unwrap();
    let server = serve(
        champion,
        empty_registry(dir.path()),
        Some(Duration::from_millis(100)),
    )
    .await;
    server.wait_ready(READY).await.unwrap();
    let http = Http::new(server.http_addr);
    let grpc_addr = format!("http://{}", server.grpc_addr.unwrap());

    let stop = Arc::new(AtomicBool::new(false));
    let failures = Arc::new(AtomicU64::new(0));
    let mut clients = Vec::new();
    for k in 0..4 {
        let (stop, failures, http, grpc_addr) = (
            stop.clone(),
            failures.clone(),
            http.clone(),
            grpc_addr.clone(),
        );
        clients.push(tokio::spawn(async move {
            let rows = rows_of(8, 100 + k);
            let mut grpc = GrpcInferenceServiceClient::connect(grpc_addr)
                .await
                .unwrap();
            let mut versions = Vec::new();
            while !stop.load(Ordering::Relaxed) {
                let version = if k % 2 == 0 {
                    let reply = http
                        .post_json("/v2/models/fraud/infer", &infer_body(&rows))
                        .await;
                    (reply.status == 200)
                        .then(|| reply.json()["model_version"].as_str().unwrap().to_owned())
                } else {
                    grpc.model_infer(grpc_request(&rows, k == 1))
                        .await
                        .ok()
                        .map(|r| r.into_inner().model_version)
                };
                match version {
                    Some(v) => versions.push(v),
                    None => {
                        failures.fetch_add(1, Ordering::Relaxed);
                    }
                }
            }
            versions
        }));
    }
    tokio::time::sleep(Duration::from_millis(300)).await;
    registry::promote(&registry, "fraud", 2).await.unwrap();
    let deadline = Instant::now() + Duration::from_secs(20);
    while server.state.slot.current().unwrap().version != "2" {
        assert!(
            Instant::now() < deadline,
            "the promoted version was never loaded"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    tokio::time::sleep(Duration::from_millis(300)).await;
    stop.store(true, Ordering::Relaxed);
    for client in clients {
        let versions = client.await.unwrap();
        assert!(versions.len() > 10, "{}", versions.len());
        // Each client saw version 1, then version 2, and never went back.
        let first_two = versions
            .iter()
            .position(|v| v == "2")
            .expect("version 2 served");
        assert!(first_two > 0, "version 1 served first");
        assert!(versions[first_two..].iter().all(|v| v == "2"));
    }
    assert_eq!(
        failures.load(Ordering::Relaxed),
        0,
        "no request failed during the swap"
    );
    assert_eq!(
        http.get("/v2/models/fraud").await.json()["versions"],
        json!(["2"])
    );
    server.shutdown().await;
}
