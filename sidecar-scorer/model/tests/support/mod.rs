//! What the model's integration tests share: a small trained model, servers
//! started in-process, the project venv's Python (onnxruntime, scikit-learn,
//! tritonclient, MLflow) and HTTP/gRPC clients. Nothing here skips: a missing
//! venv fails the test with the command that installs it.
#![allow(dead_code)]

pub mod mlflow;

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::{Arc, OnceLock};
use std::time::Duration;

use bytes::Bytes;
use http_body_util::{BodyExt, Full};
use hyper::{Method, Request};
use hyper_util::client::legacy::Client;
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::rt::TokioExecutor;
use outrider_model::data::{self, GeneratorConfig, Transaction};
use outrider_model::registry::{AnyRegistry, ModelUri};
use outrider_model::serve::{ServeOptions, Server};
use outrider_model::train::{self, TrainConfig, Trained};
use serde_json::Value;

pub fn repo_root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("../..")
        .canonicalize()
        .expect("repository root")
}

pub fn interop(file: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("interop")
        .join(file)
}

/// The project venv's Python; fails (never skips) when `make setup` has not run.
pub fn python() -> PathBuf {
    let python = repo_root().join(".venv/bin/python");
    assert!(
        python.exists(),
        "{} not found: run `make setup` (it installs onnxruntime, tritonclient and MLflow)",
        python.display()
    );
    python
}

/// Runs a Python script of `interop/` and parses the JSON it prints.
pub fn run_python(script: &str, args: &[&str]) -> Value {
    let output = Command::new(python())
        .arg(interop(script))
        .args(args)
        .output()
        .expect("python runs");
    assert!(
        output.status.success(),
        "{script} {args:?} failed:\n{}",
        String::from_utf8_lossy(&output.stderr)
    );
    serde_json::from_slice(&output.stdout).unwrap_or_else(|e| {
        panic!(
            "{script} printed no JSON ({e}): {}",
            String::from_utf8_lossy(&output.stdout)
        )
    })
}

/// Transactions of the fixed test seed.
pub fn transactions(rows: usize, seed: u64) -> Vec<Transaction> {
    data::generate(&GeneratorConfig {
        rows,
        seed,
        ..GeneratorConfig::default()
    })
    .expect("valid generator config")
}

/// One model trained per test binary on 20,000 rows.
pub fn trained() -> &'static Trained {
    static TRAINED: OnceLock<Trained> = OnceLock::new();
    TRAINED.get_or_init(|| {
        train::train(&transactions(20_000, 5), &TrainConfig::default()).expect("training")
    })
}

/// The trained model written as `<dir>/fraud.onnx` (with its profile beside).
pub fn model_file(dir: &Path) -> PathBuf {
    let path = dir.join("fraud.onnx");
    std::fs::write(&path, &trained().onnx).unwrap();
    std::fs::write(
        dir.join("profile.json"),
        trained().profile.to_json().unwrap(),
    )
    .unwrap();
    path
}

/// Starts a server on free loopback ports for `model`.
pub async fn serve(model: ModelUri, registry: AnyRegistry, poll: Option<Duration>) -> Server {
    serve_with_limit(model, registry, poll, 64 << 20).await
}

/// [`serve`] with a request size limit.
pub async fn serve_with_limit(
    model: ModelUri,
    registry: AnyRegistry,
    poll: Option<Duration>,
    max_request_bytes: usize,
) -> Server {
    let options = ServeOptions {
        http: "127.0.0.1:0".parse().unwrap(),
        grpc: Some("127.0.0.1:0".parse().unwrap()),
        model,
        name: None,
        poll,
        max_request_bytes,
    };
    Server::start(options, Arc::new(registry))
        .await
        .expect("server starts")
}

/// The trained model from a file in `dir`, served and ready.
pub async fn serve_trained(dir: &Path) -> Server {
    serve_trained_with_limit(dir, 64 << 20).await
}

/// [`serve_trained`] with a request size limit.
pub async fn serve_trained_with_limit(dir: &Path, max_request_bytes: usize) -> Server {
    let model = ModelUri::File(model_file(dir));
    let server = serve_with_limit(model, empty_registry(dir), None, max_request_bytes).await;
    server.wait_ready(Duration::from_secs(60)).await.unwrap();
    server
}

/// A registry folder that nothing was registered in.
pub fn empty_registry(dir: &Path) -> AnyRegistry {
    AnyRegistry::open(dir.join("registry").to_str().unwrap()).unwrap()
}

/// A test row's features.
pub fn rows_of(n: usize, seed: u64) -> Vec<[f32; 10]> {
    transactions(n, seed)
        .iter()
        .map(Transaction::features)
        .collect()
}

pub struct Reply {
    pub status: u16,
    pub headers: hyper::HeaderMap,
    pub body: Bytes,
}

impl Reply {
    pub fn json(&self) -> Value {
        serde_json::from_slice(&self.body)
            .unwrap_or_else(|e| panic!("not JSON ({e}): {}", String::from_utf8_lossy(&self.body)))
    }
}

#[derive(Clone)]
pub struct Http {
    client: Client<HttpConnector, Full<Bytes>>,
    pub base: String,
}

impl Http {
    pub fn new(addr: SocketAddr) -> Self {
        Self {
            client: Client::builder(TokioExecutor::new()).build(HttpConnector::new()),
            base: format!("http://{addr}"),
        }
    }

    pub async fn send(
        &self,
        method: Method,
        path: &str,
        headers: &[(&str, String)],
        body: Bytes,
    ) -> Reply {
        let mut request = Request::builder()
            .method(method)
            .uri(format!("{}{path}", self.base));
        for (k, v) in headers {
            request = request.header(*k, v);
        }
        let response = self
            .client
            .request(request.body(Full::new(body)).unwrap())
            .await
            .expect("request");
        let status = response.status().as_u16();
        let headers = response.headers().clone();
        let body = response.into_body().collect().await.unwrap().to_bytes();
        Reply {
            status,
            headers,
            body,
        }
    }

    /// A GET that reports a refused connection as `None`.
    pub async fn try_get(&self, path: &str) -> Option<Reply> {
        let request = Request::builder()
            .uri(format!("{}{path}", self.base))
            .body(Full::new(Bytes::new()))
            .unwrap();
        let response = self.client.request(request).await.ok()?;
        let status = response.status().as_u16();
        let headers = response.headers().clone();
        let body = response.into_body().collect().await.ok()?.to_bytes();
        Some(Reply {
            status,
            headers,
            body,
        })
    }

    pub async fn get(&self, path: &str) -> Reply {
        self.send(Method::GET, path, &[], Bytes::new()).await
    }

    pub async fn post_json(&self, path: &str, body: &Value) -> Reply {
        self.send(
            Method::POST,
            path,
            &[("content-type", "application/json".into())],
            Bytes::from(body.to_string()),
        )
        .await
    }
}

/// An OIP request body for rows of the fraud model.
pub fn infer_body(rows: &[[f32; 10]]) -> Value {
    let data: Vec<f32> = rows.iter().flatten().copied().collect();
    serde_json::json!({
        "id": "test",
        "inputs": [{"name": "transaction", "shape": [rows.len(), 10], "datatype": "FP32", "data": data}]
    })
}

/// Scores of the `score` output of a REST response.
pub fn scores_of(reply: &Value) -> Vec<f64> {
    let output = reply["outputs"]
        .as_array()
        .and_then(|o| o.iter().find(|o| o["name"] == "score"))
        .unwrap_or_else(|| panic!("no score output in {reply}"));
    output["data"]
        .as_array()
        .unwrap()
        .iter()
        .map(|v| v.as_f64().unwrap())
        .collect()
}

/// The same rows scored by onnxruntime (through Python).
pub fn onnxruntime_outputs(model: &Path, input: &str, rows: &[[f32; 10]]) -> Value {
    let dir = tempfile::tempdir().unwrap();
    let inputs = dir.path().join("inputs.json");
    let data: Vec<f32> = rows.iter().flatten().copied().collect();
    let doc =
        serde_json::json!({input: {"datatype": "FP32", "shape": [rows.len(), 10], "data": data}});
    std::fs::write(&inputs, doc.to_string()).unwrap();
    run_python(
        "reference.py",
        &[
            "onnxruntime",
            model.to_str().unwrap(),
            inputs.to_str().unwrap(),
        ],
    )
}

pub fn floats(v: &Value) -> Vec<f64> {
    v.as_array()
        .unwrap()
        .iter()
        .map(|x| x.as_f64().unwrap())
        .collect()
}

/// Asserts two score vectors agree to `tolerance`.
pub fn assert_close(ours: &[f64], reference: &[f64], tolerance: f64) {
    assert_eq!(ours.len(), reference.len());
    let worst = ours
        .iter()
        .zip(reference)
        .map(|(a, b)| (a - b).abs())
        .fold(0.0, f64::max);
    assert!(
        worst <= tolerance,
        "largest difference {worst:e} > {tolerance:e}"
    );
}
