//! Interoperability with the field's own tools: onnxruntime runs the exported
//! model to the same scores; scikit-learn computes the same metrics;
//! tritonclient's HTTP and gRPC clients talk to the server; and a model
//! trained in scikit-learn and converted by skl2onnx is served like ours.

mod support;

use std::path::Path;
use std::time::Duration;

use outrider_model::data::Transaction;
use outrider_model::onnx::OnnxModel;
use outrider_model::registry::ModelUri;
use outrider_model::train;
use serde_json::{Value, json};
use support::*;

/// A committed scikit-learn fixture (see interop/make_sklearn_fixture.py).
fn sklearn_fixture(name: &str) -> std::path::PathBuf {
    interop(&format!("fixtures/{name}.onnx"))
}

#[test]
fn onnxruntime_scores_the_exported_model_as_tract_does() {
    let dir = tempfile::tempdir().unwrap();
    let path = model_file(dir.path());
    let rows = rows_of(2_000, 41);
    let reference = onnxruntime_outputs(&path, "transaction", &rows);
    assert_eq!(reference["score"]["shape"], json!([2000, 1]));
    let model = OnnxModel::from_bytes(&trained().onnx).unwrap();
    let data = transactions(2_000, 41);
    let refs: Vec<&Transaction> = data.iter().collect();
    assert_close(
        &train::score(&model, &refs).unwrap(),
        &floats(&reference["score"]["data"]),
        1e-6,
    );
}

#[test]
fn training_metrics_match_scikit_learn() {
    let dir = tempfile::tempdir().unwrap();
    let data = transactions(20_000, 5);
    let report = &trained().report;
    // The held-out rows are the most recent ones.
    let test = &data[data.len() - report.test_rows as usize..];
    let model = OnnxModel::from_bytes(&trained().onnx).unwrap();
    let refs: Vec<&Transaction> = test.iter().collect();
    let scores = train::score(&model, &refs).unwrap();
    let labels: Vec<u8> = test.iter().map(|t| t.is_fraud).collect();
    let path = dir.path().join("scores.json");
    std::fs::write(
        &path,
        json!({"scores": scores, "labels": labels}).to_string(),
    )
    .unwrap();
    let sklearn = run_python("reference.py", &["metrics", path.to_str().unwrap()]);
    assert!(
        (report.test.roc_auc - sklearn["roc_auc"].as_f64().unwrap()).abs() < 1e-9,
        "{sklearn} {:?}",
        report.test
    );
    assert!(
        (report.test.pr_auc - sklearn["pr_auc"].as_f64().unwrap()).abs() < 1e-9,
        "{sklearn} {:?}",
        report.test
    );
}

fn write_rows(dir: &Path, rows: &[[f32; 10]]) -> std::path::PathBuf {
    let path = dir.join("rows.json");
    std::fs::write(&path, json!(rows).to_string()).unwrap();
    path
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn tritonclient_http_and_grpc_get_onnxruntime_scores() {
    let dir = tempfile::tempdir().unwrap();
    let path = model_file(dir.path());
    let server = serve(
        ModelUri::File(path.clone()),
        empty_registry(dir.path()),
        None,
    )
    .await;
    server.wait_ready(Duration::from_secs(60)).await.unwrap();
    let rows = rows_of(32, 43);
    let reference = floats(&onnxruntime_outputs(&path, "transaction", &rows)["score"]["data"]);
    let seen = tokio::task::spawn_blocking({
        let rows = write_rows(dir.path(), &rows);
        let server_http = server.http_addr;
        let server_grpc = server.grpc_addr;
        move || {
            let clients = TritonClients {
                http: server_http,
                grpc: server_grpc.unwrap(),
            };
            clients.run("fraud", "score", &rows)
        }
    })
    .await
    .unwrap();

    let (http, grpc) = (&seen["http"], &seen["grpc"]);
    for client in [http, grpc] {
        assert_eq!(
            (
                client["live"].as_bool(),
                client["ready"].as_bool(),
                client["model_ready"].as_bool()
            ),
            (Some(true), Some(true), Some(true))
        );
        assert_eq!(client["metadata"]["name"], "fraud");
        assert_eq!(client["metadata"]["inputs"][0]["name"], "transaction");
    }
    for scores in [
        &http["binary"],
        &http["json"],
        &http["default"],
        &grpc["infer"],
    ] {
        assert_close(&floats(scores), &reference, 1e-6);
    }
    assert_eq!(http["binary_id"], "http-1");
    assert_eq!(http["bad_shape"]["status"], "400");
    assert!(
        http["bad_shape"]["message"]
            .as_str()
            .unwrap()
            .contains("does not fit the model's [-1, 10]"),
        "{}",
        http["bad_shape"]
    );
    assert_eq!(
        grpc["bad_datatype"]["status"],
        "StatusCode.INVALID_ARGUMENT"
    );
    assert!(
        grpc["bad_datatype"]["message"]
            .as_str()
            .unwrap()
            .contains("datatype FP64 does not match")
    );

    let stream = grpc["stream"].as_array().unwrap();
    assert_eq!(stream.len(), 34);
    for (i, answer) in stream[..32].iter().enumerate() {
        assert_eq!(answer["id"], i.to_string());
        assert_close(&floats(&answer["score"]), &reference[i..i + 1], 1e-6);
    }
    assert!(
        stream[32]["error"]
            .as_str()
            .unwrap()
            .contains("does not fit"),
        "{}",
        stream[32]
    );
    assert_eq!(
        stream[33]["id"], "last",
        "the stream went on after the error"
    );
    server.shutdown().await;
}

/// Runs the Triton clients against known addresses (off the async runtime).
struct TritonClients {
    http: std::net::SocketAddr,
    grpc: std::net::SocketAddr,
}

impl TritonClients {
    fn run(&self, model: &str, output: &str, rows: &Path) -> Value {
        run_python(
            "triton_clients.py",
            &[
                "--http",
                &self.http.to_string(),
                "--grpc",
                &self.grpc.to_string(),
                "--model",
                model,
                "--input",
                "transaction",
                "--output",
                output,
                "--rows",
                rows.to_str().unwrap(),
            ],
        )
    }
}

/// Serves a scikit-learn fixture and holds every answer to onnxruntime's.
async fn serve_like_our_own(name: &str, compare_labels: bool) {
    let dir = tempfile::tempdir().unwrap();
    let fixture = sklearn_fixture(name);
    assert!(
        fixture.exists(),
        "{} missing: run `make model-fixtures`",
        fixture.display()
    );
    let server = serve(
        ModelUri::File(fixture.clone()),
        empty_registry(dir.path()),
        None,
    )
    .await;
    server.wait_ready(Duration::from_secs(60)).await.unwrap();
    let http = Http::new(server.http_addr);

    let meta = http.get(&format!("/v2/models/{name}")).await.json();
    assert_eq!(
        meta["inputs"],
        json!([{"name": "transaction", "datatype": "FP32", "shape": [-1, 10]}])
    );
    assert_eq!(
        meta["outputs"],
        json!([{"name": "label", "datatype": "INT64", "shape": [-1]},
               {"name": "probabilities", "datatype": "FP32", "shape": [-1, 2]}])
    );
    let data = transactions(256, 44);
    let rows: Vec<[f32; 10]> = data.iter().map(Transaction::features).collect();
    let reference = onnxruntime_outputs(&fixture, "transaction", &rows);
    let reply = http
        .post_json(&format!("/v2/models/{name}/infer"), &infer_body(&rows))
        .await;
    assert_eq!(
        reply.status,
        200,
        "{}",
        String::from_utf8_lossy(&reply.body)
    );
    let reply = reply.json();
    let output = |o: &str| {
        reply["outputs"]
            .as_array()
            .unwrap()
            .iter()
            .find(|x| x["name"] == o)
            .unwrap()
            .clone()
    };
    assert_eq!(output("probabilities")["shape"], json!([256, 2]));
    let probabilities = floats(&reference["probabilities"]["data"]);
    assert_close(
        &floats(&output("probabilities")["data"]),
        &probabilities,
        1e-6,
    );
    assert_eq!(output("label")["shape"], json!([256]));
    if compare_labels {
        assert_eq!(output("label")["data"], reference["label"]["data"]);
    }

    // Rows by name work too: the fixtures carry outrider's metadata, and the
    // score is the positive class's probability.
    let body: String = data[..5]
        .iter()
        .map(|t| serde_json::to_string(t).unwrap() + "\n")
        .collect();
    let reply = http
        .send(
            hyper::Method::POST,
            &format!("/v2/models/{name}/score"),
            &[],
            bytes::Bytes::from(body),
        )
        .await;
    let scores: Vec<f64> = String::from_utf8(reply.body.to_vec())
        .unwrap()
        .lines()
        .map(|l| {
            serde_json::from_str::<Value>(l).unwrap()["score"]
                .as_f64()
                .unwrap()
        })
        .collect();
    let positive: Vec<f64> = probabilities.chunks(2).map(|p| p[1]).take(5).collect();
    assert_close(&scores, &positive, 1e-6);

    // And Triton's clients get onnxruntime's probabilities.
    let rows_path = write_rows(dir.path(), &rows[..16]);
    let clients = TritonClients {
        http: server.http_addr,
        grpc: server.grpc_addr.unwrap(),
    };
    let owned = name.to_owned();
    let seen =
        tokio::task::spawn_blocking(move || clients.run(&owned, "probabilities", &rows_path))
            .await
            .unwrap();
    assert_close(&floats(&seen["http"]["binary"]), &probabilities[..32], 1e-6);
    assert_close(&floats(&seen["grpc"]["infer"]), &probabilities[..32], 1e-6);
    server.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_scikit_learn_logistic_regression_is_served_like_our_own() {
    serve_like_our_own("sklearn_logistic", true).await;
}

/// tract 0.23 takes the `label` of a binary TreeEnsembleClassifier as the
/// argmax of the single class-1 score column, before it expands the
/// probabilities, so its labels are all 0; the probabilities (the score) are
/// right. See docs/model.md.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_scikit_learn_random_forest_is_served_like_our_own() {
    serve_like_our_own("sklearn_forest", false).await;
}
