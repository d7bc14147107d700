//! The registry against a real MLflow server (the venv's pinned `mlflow
//! server`, SQLite backend, private port and folders): training runs with
//! parameters, metrics and artifacts, versions, `challenger` and `champion`
//! aliases, model URIs that resolve (or say why not) the same way in the
//! embedded backend, and a server that follows a promotion.

mod support;

use std::time::{Duration, Instant};

use outrider_model::Error;
use outrider_model::registry::{
    self, AnyRegistry, CHALLENGER, CHAMPION, ModelUri, Registry, Selector,
};
use outrider_model::train::{self, TrainConfig};
use serde_json::{Value, json};
use support::mlflow::MlflowServer;
use support::*;

/// Publishes two versions, promotes the first, and resolves every URI form;
/// returns what each URI resolved to (the same for every backend).
async fn exercise<R: Registry>(registry: &R, second: &train::Trained) -> Vec<(String, String)> {
    let v1 = registry::publish(registry, trained(), "fraud-tests")
        .await
        .unwrap();
    assert_eq!(
        (v1.version, v1.aliases.clone()),
        (1, vec![CHALLENGER.to_owned()])
    );
    let champion = registry::promote(registry, "fraud", 1).await.unwrap();
    assert_eq!(
        champion.aliases,
        vec![CHAMPION.to_owned()],
        "the challenger alias moved off"
    );
    let v2 = registry::publish(registry, second, "fraud-tests")
        .await
        .unwrap();
    assert_eq!(v2.version, 2);

    let mut resolved = Vec::new();
    for uri in [
        "models:/fraud@champion",
        "models:/fraud@challenger",
        "models:/fraud/1",
        "models:/fraud/latest",
    ] {
        let files = registry::resolve(registry, &uri.parse().unwrap())
            .await
            .unwrap();
        let expected = if files.version.version == 1 {
            trained()
        } else {
            second
        };
        assert_eq!(
            files.onnx, expected.onnx,
            "{uri}: the model bytes round-trip"
        );
        assert_eq!(
            files.profile.as_ref(),
            Some(&expected.profile),
            "{uri}: the profile round-trips"
        );
        let mut aliases = files.version.aliases.clone();
        aliases.sort();
        resolved.push((
            uri.to_owned(),
            format!("{} {aliases:?}", files.version.version),
        ));
    }
    for (uri, why) in [
        (
            "models:/fraud@nope",
            "models:/fraud@nope does not resolve: model `fraud` has no alias `nope`",
        ),
        (
            "models:/fraud/9",
            "models:/fraud/9 does not resolve: model `fraud` has no version 9",
        ),
        (
            "models:/ghost@champion",
            "models:/ghost@champion does not resolve: ",
        ),
    ] {
        match registry::resolve(registry, &uri.parse().unwrap()).await {
            Err(Error::NotFound(message)) => {
                assert!(message.starts_with(why), "{uri}: {message}");
                resolved.push((uri.to_owned(), "not found".to_owned()));
            }
            other => panic!("{uri}: {other:?}"),
        }
    }
    let versions = registry.list_versions("fraud").await.unwrap();
    resolved.push((
        "versions".to_owned(),
        format!(
            "{:?}",
            versions
                .iter()
                .map(|v| (v.version, v.aliases.clone()))
                .collect::<Vec<_>>()
        ),
    ));
    resolved
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn runs_versions_and_aliases_live_in_mlflow_as_in_the_embedded_registry() {
    let mlflow = MlflowServer::start().await;
    let second = train::train(&transactions(8_000, 13), &TrainConfig::default()).unwrap();
    let in_mlflow = exercise(&AnyRegistry::open(&mlflow.url).unwrap(), &second).await;
    let dir = tempfile::tempdir().unwrap();
    let embedded = exercise(&empty_registry(dir.path()), &second).await;
    assert_eq!(in_mlflow, embedded, "both backends resolve alike");
    assert_eq!(
        in_mlflow[0],
        (
            "models:/fraud@champion".to_owned(),
            "1 [\"champion\"]".to_owned()
        )
    );
    assert_eq!(
        in_mlflow[1],
        (
            "models:/fraud@challenger".to_owned(),
            "2 [\"challenger\"]".to_owned()
        )
    );

    // What MLflow itself holds: the run's parameters, metrics and artifacts.
    let http = Http::new(mlflow.url.trim_start_matches("http://").parse().unwrap());
    let version = http
        .get("/api/2.0/mlflow/model-versions/get?name=fraud&version=1")
        .await
        .json();
    let run_id = version["model_version"]["run_id"]
        .as_str()
        .unwrap()
        .to_owned();
    let run = http
        .get(&format!("/api/2.0/mlflow/runs/get?run_id={run_id}"))
        .await
        .json();
    assert_eq!(run["run"]["info"]["status"], "FINISHED");
    let params: Vec<(String, String)> = run["run"]["data"]["params"]
        .as_array()
        .unwrap()
        .iter()
        .map(|p| {
            (
                p["key"].as_str().unwrap().to_owned(),
                p["value"].as_str().unwrap().to_owned(),
            )
        })
        .collect();
    assert!(
        params.contains(&("algorithm".to_owned(), "logistic_regression".to_owned())),
        "{params:?}"
    );
    assert!(params.contains(&("split".to_owned(), "time_ordered".to_owned())));
    let metric = |key: &str| {
        run["run"]["data"]["metrics"]
            .as_array()
            .unwrap()
            .iter()
            .find(|m| m["key"] == key)
            .and_then(|m| m["value"].as_f64())
            .unwrap_or_else(|| panic!("no metric {key}"))
    };
    let report = &trained().report;
    assert_eq!(metric("test_roc_auc"), report.test.roc_auc);
    assert_eq!(metric("test_pr_auc"), report.test.pr_auc);
    assert_eq!(
        metric("test_recall_at_1pct_fpr"),
        report.test.recall_at_1pct_fpr
    );
    let listed = http
        .get(&format!(
            "/api/2.0/mlflow/artifacts/list?run_id={run_id}&path=model"
        ))
        .await
        .json();
    let mut files: Vec<(String, u64)> = listed["files"]
        .as_array()
        .unwrap()
        .iter()
        .map(|f| {
            (
                f["path"].as_str().unwrap().to_owned(),
                f["file_size"].as_u64().unwrap_or(0),
            )
        })
        .collect();
    files.sort();
    assert_eq!(
        files[0],
        ("model/model.onnx".to_owned(), trained().onnx.len() as u64)
    );
    assert_eq!(files[1].0, "model/profile.json");
    assert_eq!(files[2].0, "model/report.json");
    let aliases: Value = http
        .get("/api/2.0/mlflow/registered-models/get?name=fraud")
        .await
        .json();
    let mut aliases: Vec<(String, String)> = aliases["registered_model"]["aliases"]
        .as_array()
        .unwrap()
        .iter()
        .map(|a| {
            (
                a["alias"].as_str().unwrap().to_owned(),
                a["version"].as_str().unwrap().to_owned(),
            )
        })
        .collect();
    aliases.sort();
    assert_eq!(
        aliases,
        vec![
            ("challenger".into(), "2".into()),
            ("champion".into(), "1".into())
        ]
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_server_follows_the_champion_in_mlflow() {
    let mlflow = MlflowServer::start().await;
    let registry = AnyRegistry::open(&mlflow.url).unwrap();
    let second = train::train(&transactions(8_000, 13), &TrainConfig::default()).unwrap();
    registry::publish(&registry, trained(), "fraud")
        .await
        .unwrap();
    registry::promote(&registry, "fraud", 1).await.unwrap();
    registry::publish(&registry, &second, "fraud")
        .await
        .unwrap();

    let uri: ModelUri = "models:/fraud@champion".parse().unwrap();
    let server = serve(
        uri,
        AnyRegistry::open(&mlflow.url).unwrap(),
        Some(Duration::from_millis(200)),
    )
    .await;
    server.wait_ready(Duration::from_secs(60)).await.unwrap();
    let http = Http::new(server.http_addr);
    let body = infer_body(&rows_of(4, 2));
    let infer = || http.post_json("/v2/models/fraud/infer", &body);
    assert_eq!(infer().await.json()["model_version"], "1");

    registry::promote(&registry, "fraud", 2).await.unwrap();
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        let reply = infer().await;
        assert_eq!(reply.status, 200);
        if reply.json()["model_version"] == "2" {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "the server never took up version 2"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let champion = registry
        .get_version("fraud", &Selector::Alias(CHAMPION.into()))
        .await
        .unwrap();
    assert_eq!(champion.version, 2);

    // An alias that goes away: the server keeps serving what it has.
    registry.delete_alias("fraud", CHAMPION).await.unwrap();
    let reply = http
        .post_json("/v2/repository/models/fraud/load", &json!({}))
        .await;
    assert_eq!(reply.status, 404);
    assert!(
        reply.json()["error"]
            .as_str()
            .unwrap()
            .contains("has no alias `champion`")
    );
    assert_eq!(infer().await.json()["model_version"], "2");
    server.shutdown().await;
}
