//! The fraud model through the mesh: the real Envoy with the outrider filter
//! (the committed `envoy/model-mesh.yaml`) in front of two versions of the
//! model, each served by the model server over REST and gRPC. The filter
//! splits both protocols by the sticky key (an HTTP header, or gRPC metadata),
//! counts gRPC errors by status per variant, and keeps a gRPC stream on one
//! variant for its whole life.

mod common;

use std::collections::HashMap;
use std::sync::{Arc, OnceLock};
use std::time::Duration;

use outrider_harness::bootstrap::LISTENER;
use outrider_harness::client::HttpClient;
use outrider_harness::envoy::{Envoy, Launch};
use outrider_harness::fixture::{expected_variant, with_ports};
use outrider_harness::paths;
use outrider_model::data::{GeneratorConfig, generate};
use outrider_model::proto::grpc_inference_service_client::GrpcInferenceServiceClient;
use outrider_model::proto::model_infer_request::InferInputTensor;
use outrider_model::proto::{InferTensorContents, ModelInferRequest};
use outrider_model::registry::{self, AnyRegistry};
use outrider_model::serve::{ServeOptions, Server};
use outrider_model::train::{self, TrainConfig, Trained};
use serde_json::{Value, json};
use tempfile::TempDir;
use tonic::transport::Channel;

use common::embedded_filter_config;

/// Two model versions, trained once per test binary.
fn versions() -> &'static [Trained; 2] {
    static TRAINED: OnceLock<[Trained; 2]> = OnceLock::new();
    TRAINED.get_or_init(|| {
        [1, 2].map(|seed| {
            let rows = generate(&GeneratorConfig {
                rows: 8_000,
                seed,
                ..GeneratorConfig::default()
            })
            .unwrap();
            train::train(&rows, &TrainConfig::default()).unwrap()
        })
    })
}

struct Mesh {
    envoy: Envoy,
    /// Base URL of Envoy's listener (REST and gRPC).
    url: String,
    config: Value,
    servers: Vec<Server>,
    _dir: TempDir,
}

/// The variant a key lands on, and the model version that variant serves.
fn version_of(variant: &str) -> &'static str {
    match variant {
        "stable" => "1",
        "canary" => "2",
        other => panic!("unknown variant {other}"),
    }
}

impl Mesh {
    /// Registers two versions (1 champion, 2 challenger), serves each, and
    /// starts Envoy with `envoy/model-mesh.yaml` in front of them.
    async fn start() -> Self {
        let dir = tempfile::tempdir().unwrap();
        let location = dir.path().join("registry");
        let registry = AnyRegistry::open(location.to_str().unwrap()).unwrap();
        for trained in versions() {
            registry::publish(&registry, trained, "fraud")
                .await
                .unwrap();
        }
        registry::promote(&registry, "fraud", 1).await.unwrap();
        let registry = Arc::new(registry);
        let mut servers = Vec::new();
        for alias in ["champion", "challenger"] {
            let options = ServeOptions {
                http: "127.0.0.1:0".parse().unwrap(),
                grpc: Some("127.0.0.1:0".parse().unwrap()),
                model: format!("models:/fraud@{alias}").parse().unwrap(),
                name: None,
                poll: None,
                max_request_bytes: 1 << 20,
            };
            let server = Server::start(options, registry.clone()).await.unwrap();
            server.wait_ready(Duration::from_secs(30)).await.unwrap();
            servers.push(server);
        }
        let bootstrap = paths::envoy_configs().join("model-mesh.yaml");
        let port = |s: &Server, grpc: bool| {
            if grpc {
                s.grpc_addr.unwrap().port()
            } else {
                s.http_addr.port()
            }
        };
        let ports = [
            (9901, 0),
            (10000, 0),
            (18081, port(&servers[0], false)),
            (18091, port(&servers[0], true)),
            (18082, port(&servers[1], false)),
            (18092, port(&servers[1], true)),
        ];
        let path = with_ports(&bootstrap, &ports, dir.path()).unwrap();
        // The filter the harness was pointed at (OUTRIDER_WASM_DIR), not only
        // the default path the committed file names.
        let text = std::fs::read_to_string(&path).unwrap();
        let named = "filename: target/filter/outrider_filter.wasm";
        assert!(
            text.contains(named),
            "{} names no {named}",
            bootstrap.display()
        );
        let wasm = paths::filter_wasm().unwrap();
        std::fs::write(
            &path,
            text.replace(named, &format!("filename: {}", wasm.display())),
        )
        .unwrap();
        let envoy = Envoy::start_file(&path, &Launch::workers(2)).await.unwrap();
        let url = envoy.url(LISTENER).await.unwrap();
        Self {
            envoy,
            url,
            config: embedded_filter_config(&bootstrap),
            servers,
            _dir: dir,
        }
    }

    fn expected(&self, key: &str) -> String {
        expected_variant(&self.config, key).unwrap()
    }

    /// `n` keys that land on `variant`.
    fn keys_for(&self, variant: &str, n: usize) -> Vec<String> {
        (0..)
            .map(|i| format!("{variant}-user-{i}"))
            .filter(|k| self.expected(k) == variant)
            .take(n)
            .collect()
    }

    async fn grpc(&self) -> GrpcInferenceServiceClient<Channel> {
        GrpcInferenceServiceClient::connect(self.url.clone())
            .await
            .unwrap()
    }

    async fn metrics(&self) -> outrider_harness::prom::Metrics {
        self.envoy.prometheus().await.unwrap()
    }
}

fn row(i: usize) -> Vec<f32> {
    vec![
        40.0 + i as f32,
        2.0,
        14.0,
        5.0,
        1.0,
        300.0,
        1.0,
        0.0,
        800.0,
        45.0,
    ]
}

fn infer_request(i: usize) -> ModelInferRequest {
    ModelInferRequest {
        model_name: "fraud".into(),
        id: i.to_string(),
        inputs: vec![InferInputTensor {
            name: "transaction".into(),
            datatype: "FP32".into(),
            shape: vec![1, 10],
            contents: Some(InferTensorContents {
                fp32_contents: row(i),
                ..Default::default()
            }),
            ..Default::default()
        }],
        ..Default::default()
    }
}

/// A gRPC request carrying the sticky key as metadata.
fn keyed<T>(message: T, key: Option<&str>) -> tonic::Request<T> {
    let mut request = tonic::Request::new(message);
    if let Some(key) = key {
        request
            .metadata_mut()
            .insert("x-user-id", key.parse().unwrap());
    }
    request
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn rest_and_grpc_are_split_by_the_sticky_key() {
    let mesh = Mesh::start().await;
    let http = HttpClient::new();
    let mut served: HashMap<String, f64> = HashMap::new();

    for i in 0..120 {
        let key = format!("rest-user-{i}");
        let body = json!({"inputs": [{"name": "transaction", "shape": [1, 10], "datatype": "FP32", "data": row(i)}]});
        let reply = http
            .request(
                hyper::Method::POST,
                &format!("{}/v2/models/fraud/infer", mesh.url),
                &[("x-user-id", &key), ("content-type", "application/json")],
                body.to_string().into(),
            )
            .await
            .unwrap();
        assert_eq!(
            reply.status,
            200,
            "{}",
            String::from_utf8_lossy(&reply.body)
        );
        let variant = mesh.expected(&key);
        assert_eq!(reply.header("x-outrider-variant"), Some(variant.as_str()));
        assert_eq!(
            reply.json().unwrap()["model_version"],
            version_of(&variant),
            "{key}"
        );
        *served.entry(variant).or_default() += 1.0;
    }

    let mut grpc = mesh.grpc().await;
    for i in 0..120 {
        let key = format!("grpc-user-{i}");
        let response = grpc
            .model_infer(keyed(infer_request(i), Some(&key)))
            .await
            .unwrap();
        let variant = mesh.expected(&key);
        let header = response
            .metadata()
            .get("x-outrider-variant")
            .expect("the filter names the variant in the response headers")
            .to_str()
            .unwrap()
            .to_owned();
        assert_eq!(header, variant, "{key}");
        assert_eq!(
            response.into_inner().model_version,
            version_of(&variant),
            "{key}"
        );
        *served.entry(variant).or_default() += 1.0;
    }

    let metrics = mesh.metrics().await;
    for variant in ["stable", "canary"] {
        let count = served.get(variant).copied().unwrap_or(0.0);
        assert!(count > 60.0, "{variant}: {count} of 240");
        let labels = [("rollout", "fraud"), ("variant", variant)];
        assert_eq!(
            metrics.value("outrider_rq_total", &labels),
            Some(count),
            "{variant}"
        );
    }
    drop(mesh.servers);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn grpc_errors_are_counted_by_status_per_variant() {
    let mesh = Mesh::start().await;
    let mut grpc = mesh.grpc().await;
    let stable = mesh.keys_for("stable", 1).remove(0);
    let canary = mesh.keys_for("canary", 1).remove(0);
    // (key, how the request is broken, how many, the status it must get)
    let plan: [(&str, &str, usize, tonic::Code); 4] = [
        (&stable, "shape", 3, tonic::Code::InvalidArgument),
        (&canary, "shape", 4, tonic::Code::InvalidArgument),
        (&canary, "model", 2, tonic::Code::NotFound),
        (&stable, "none", 5, tonic::Code::Ok),
    ];
    for (key, broken, n, code) in plan {
        for i in 0..n {
            let mut request = infer_request(i);
            match broken {
                "shape" => request.inputs[0].shape = vec![1, 9],
                "model" => request.model_name = "nope".into(),
                _ => {}
            }
            let result = grpc.model_infer(keyed(request, Some(key))).await;
            assert_eq!(
                result.err().map_or(tonic::Code::Ok, |s| s.code()),
                code,
                "{key} {broken}"
            );
        }
    }
    let metrics = mesh.metrics().await;
    let errors = |variant: &str, status: &str| {
        metrics
            .value(
                "outrider_grpc_error_total",
                &[
                    ("rollout", "fraud"),
                    ("variant", variant),
                    ("grpc_status", status),
                ],
            )
            .unwrap_or(0.0)
    };
    assert_eq!(errors("stable", "3"), 3.0, "INVALID_ARGUMENT on stable");
    assert_eq!(errors("canary", "3"), 4.0, "INVALID_ARGUMENT on canary");
    assert_eq!(errors("canary", "5"), 2.0, "NOT_FOUND on canary");
    assert_eq!(errors("stable", "5"), 0.0);
    assert_eq!(
        metrics.sum("outrider_grpc_error_total", &[("rollout", "fraud")]),
        9.0
    );
    drop(mesh.servers);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_grpc_stream_stays_on_one_variant_for_its_whole_life() {
    let mesh = Mesh::start().await;
    let before = mesh
        .metrics()
        .await
        .sum("outrider_rq_total", &[("rollout", "fraud")]);
    let stable = mesh.keys_for("stable", 1).remove(0);
    let canary = mesh.keys_for("canary", 1).remove(0);
    // Streams without a key are assigned at random, once per stream.
    let mut keys: Vec<Option<String>> = vec![Some(stable), Some(canary)];
    // 20 keyless streams all on one variant would happen once in 500,000 runs.
    keys.extend((0..20).map(|_| None));

    let mut versions_by_stream = Vec::new();
    for key in &keys {
        let mut grpc = mesh.grpc().await;
        let (tx, rx) = tokio::sync::mpsc::channel(4);
        let response = grpc
            .model_stream_infer(keyed(
                tokio_stream::wrappers::ReceiverStream::new(rx),
                key.as_deref(),
            ))
            .await
            .unwrap();
        let header = response
            .metadata()
            .get("x-outrider-variant")
            .expect("the filter names the variant in the response headers")
            .to_str()
            .unwrap()
            .to_owned();
        let mut answers = response.into_inner();
        let mut versions = Vec::new();
        for i in 0..25 {
            tx.send(infer_request(i)).await.unwrap();
            let answer = answers
                .message()
                .await
                .unwrap()
                .expect("an answer per request");
            assert_eq!(answer.error_message, "");
            versions.push(answer.infer_response.unwrap().model_version);
            tokio::time::sleep(Duration::from_millis(2)).await;
        }
        drop(tx);
        assert!(
            answers.message().await.unwrap().is_none(),
            "the stream ends with its requests"
        );
        let first = versions[0].clone();
        assert!(
            versions.iter().all(|v| *v == first),
            "one stream, one variant: {versions:?}"
        );
        assert_eq!(
            version_of(&header),
            first,
            "the variant header names the serving variant"
        );
        if let Some(key) = key {
            assert_eq!(first, version_of(&mesh.expected(key)), "{key}");
        }
        versions_by_stream.push(first);
    }
    let keyless = &versions_by_stream[2..];
    assert!(
        keyless.iter().any(|v| v == "1") && keyless.iter().any(|v| v == "2"),
        "keyless streams land on both variants: {keyless:?}"
    );
    // Each stream is one request to the filter, however many messages it carried.
    let after = mesh
        .metrics()
        .await
        .sum("outrider_rq_total", &[("rollout", "fraud")]);
    assert_eq!(after - before, keys.len() as f64);
    drop(mesh.servers);
}

#[test]
fn the_committed_mesh_config_validates() {
    let path = paths::envoy_configs().join("model-mesh.yaml");
    let output = Envoy::validate(&path, &[]).unwrap();
    assert!(output.contains("OK"), "{output}");
}
