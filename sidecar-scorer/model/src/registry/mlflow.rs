//! The MLflow backend: a tracking server's REST API (runs, the model
//! registry, and artifacts proxied by the server, which `mlflow server`
//! does by default).
//!
//! Credentials come from MLflow's own environment variables:
//! `MLFLOW_TRACKING_TOKEN` (bearer) or `MLFLOW_TRACKING_USERNAME` and
//! `MLFLOW_TRACKING_PASSWORD` (basic).

use std::time::{Duration, SystemTime, UNIX_EPOCH};

use bytes::Bytes;
use http_body_util::{BodyExt, Full};
use hyper::{Method, Request, StatusCode};
use hyper_util::client::legacy::Client;
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::rt::TokioExecutor;
use serde_json::{Value, json};

use super::{ModelVersion, Registry, RunRecord, Selector};
use crate::error::{Error, Result};

const TIMEOUT: Duration = Duration::from_secs(60);
const API: &str = "/api/2.0/mlflow";
const ARTIFACTS_API: &str = "/api/2.0/mlflow-artifacts/artifacts";

pub struct MlflowRegistry {
    base: String,
    client: Client<HttpConnector, Full<Bytes>>,
    authorization: Option<String>,
}

fn now_ms() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_millis() as i64)
}

fn query(pairs: &[(&str, &str)]) -> String {
    form_urlencoded::Serializer::new(String::new())
        .extend_pairs(pairs)
        .finish()
}

fn authorization() -> Option<String> {
    use base64::Engine;
    if let Ok(token) = std::env::var("MLFLOW_TRACKING_TOKEN") {
        return Some(format!("Bearer {token}"));
    }
    let user = std::env::var("MLFLOW_TRACKING_USERNAME").ok()?;
    let password = std::env::var("MLFLOW_TRACKING_PASSWORD").unwrap_or_default();
    let pair = format!("{user}:{password}");
    Some(format!(
        "Basic {}",
        base64::engine::general_purpose::STANDARD.encode(pair)
    ))
}

/// A model version as MLflow returns it.
fn version_of(v: &Value) -> Result<ModelVersion> {
    let text = |k: &str| v[k].as_str().unwrap_or_default().to_owned();
    let version = text("version").parse().map_err(|_| {
        Error::registry(format!(
            "MLflow returned a model version without a number: {v}"
        ))
    })?;
    Ok(ModelVersion {
        name: text("name"),
        version,
        run_id: text("run_id"),
        source: text("source"),
        aliases: v["aliases"]
            .as_array()
            .map(|a| {
                a.iter()
                    .filter_map(|s| s.as_str().map(str::to_owned))
                    .collect()
            })
            .unwrap_or_default(),
    })
}

/// The server path of an artifact URI served by the tracking server
/// (`mlflow-artifacts:/1/<run>/artifacts/model`, with or without authority).
fn artifact_path(uri: &str) -> Result<String> {
    let rest = uri.strip_prefix("mlflow-artifacts:").ok_or_else(|| {
        Error::registry(format!(
            "artifact location `{uri}` is not served by the tracking server; run `mlflow server` \
             with artifact serving (its default)"
        ))
    })?;
    let path = match rest.strip_prefix("//") {
        Some(with_authority) => with_authority.split_once('/').map_or("", |(_, p)| p),
        None => rest.trim_start_matches('/'),
    };
    Ok(path.trim_end_matches('/').to_owned())
}

impl MlflowRegistry {
    /// A client of the tracking server at `tracking_uri` (`http://host:port`).
    pub fn new(tracking_uri: &str) -> Result<Self> {
        if tracking_uri.starts_with("https://") {
            return Err(Error::invalid(
                "registry",
                "https tracking URIs are not supported yet; reach the server over http (for \
                 example through a local TLS-terminating proxy)",
            ));
        }
        let base = tracking_uri.trim_end_matches('/').to_owned();
        base.parse::<hyper::Uri>()
            .map_err(|e| Error::invalid("registry", format!("`{tracking_uri}`: {e}")))?;
        let mut connector = HttpConnector::new();
        connector.set_nodelay(true);
        connector.set_connect_timeout(Some(Duration::from_secs(10)));
        Ok(Self {
            base,
            client: Client::builder(TokioExecutor::new()).build(connector),
            authorization: authorization(),
        })
    }

    async fn send(
        &self,
        method: Method,
        path: &str,
        content_type: &str,
        body: Bytes,
    ) -> Result<(StatusCode, Bytes)> {
        let url = format!("{}{path}", self.base);
        let mut request = Request::builder().method(method.clone()).uri(&url);
        if !body.is_empty() {
            request = request.header("content-type", content_type);
        }
        if let Some(auth) = &self.authorization {
            request = request.header("authorization", auth);
        }
        let request = request.body(Full::new(body)).map_err(Error::registry)?;
        let exchange = async {
            let response = self.client.request(request).await?;
            let status = response.status();
            let body = response.into_body().collect().await?.to_bytes();
            Ok::<_, Box<dyn std::error::Error + Send + Sync>>((status, body))
        };
        tokio::time::timeout(TIMEOUT, exchange)
            .await
            .map_err(|_| {
                Error::registry(format!(
                    "MLflow at {} did not answer {method} {path} within {TIMEOUT:?}",
                    self.base
                ))
            })?
            .map_err(|e| Error::registry(format!("cannot reach MLflow at {}: {e}", self.base)))
    }

    /// One REST call; MLflow's errors become [`Error::NotFound`] or
    /// [`Error::Registry`] with its error code and message.
    async fn call(
        &self,
        method: Method,
        endpoint: &str,
        params: &[(&str, &str)],
        body: Option<Value>,
    ) -> Result<Value> {
        let mut path = format!("{API}/{endpoint}");
        if !params.is_empty() {
            path = format!("{path}?{}", query(params));
        }
        let body = body.map_or_else(Bytes::new, |b| Bytes::from(b.to_string()));
        let (status, reply) = self
            .send(method.clone(), &path, "application/json", body)
            .await?;
        let value: Value = serde_json::from_slice(&reply).unwrap_or(Value::Null);
        if status.is_success() {
            return Ok(value);
        }
        let code = value["error_code"].as_str().unwrap_or("");
        let message = value["message"]
            .as_str()
            .map(str::to_owned)
            .unwrap_or_else(|| String::from_utf8_lossy(&reply).chars().take(300).collect());
        // A missing alias is INVALID_PARAMETER_VALUE "... alias x not found".
        let missing = code == "RESOURCE_DOES_NOT_EXIST"
            || status == StatusCode::NOT_FOUND
            || (code == "INVALID_PARAMETER_VALUE" && message.ends_with("not found."));
        if missing {
            return Err(Error::NotFound(message));
        }
        Err(Error::registry(format!(
            "MLflow {method} {endpoint}: {status} {code}: {message}"
        )))
    }

    async fn experiment_id(&self, name: &str) -> Result<String> {
        match self
            .call(
                Method::GET,
                "experiments/get-by-name",
                &[("experiment_name", name)],
                None,
            )
            .await
        {
            Ok(v) => Ok(v["experiment"]["experiment_id"]
                .as_str()
                .unwrap_or_default()
                .to_owned()),
            Err(Error::NotFound(_)) => {
                let v = self
                    .call(
                        Method::POST,
                        "experiments/create",
                        &[],
                        Some(json!({"name": name})),
                    )
                    .await?;
                Ok(v["experiment_id"].as_str().unwrap_or_default().to_owned())
            }
            Err(e) => Err(e),
        }
    }

    async fn put_artifact(&self, artifact_root: &str, path: &str, bytes: Vec<u8>) -> Result<()> {
        let path = format!("{ARTIFACTS_API}/{}/{path}", artifact_path(artifact_root)?);
        let (status, reply) = self
            .send(
                Method::PUT,
                &path,
                "application/octet-stream",
                Bytes::from(bytes),
            )
            .await?;
        if !status.is_success() {
            return Err(Error::registry(format!(
                "MLflow refused artifact {path}: {status} {}",
                String::from_utf8_lossy(&reply)
                    .chars()
                    .take(300)
                    .collect::<String>()
            )));
        }
        Ok(())
    }
}

impl Registry for MlflowRegistry {
    fn location(&self) -> String {
        self.base.clone()
    }

    async fn log_run(&self, run: &RunRecord) -> Result<String> {
        let experiment_id = self.experiment_id(&run.experiment).await?;
        let tags: Vec<Value> = run
            .tags
            .iter()
            .map(|(k, v)| json!({"key": k, "value": v}))
            .collect();
        let created = self
            .call(
                Method::POST,
                "runs/create",
                &[],
                Some(json!({
                    "experiment_id": experiment_id,
                    "run_name": run.name,
                    "start_time": now_ms(),
                    "tags": tags,
                })),
            )
            .await?;
        let info = &created["run"]["info"];
        let run_id = info["run_id"].as_str().unwrap_or_default().to_owned();
        let artifact_uri = info["artifact_uri"].as_str().unwrap_or_default().to_owned();
        let stamp = now_ms();
        let params: Vec<Value> = run
            .params
            .iter()
            .map(|(k, v)| json!({"key": k, "value": v}))
            .collect();
        let metrics: Vec<Value> = run
            .metrics
            .iter()
            .filter(|(_, v)| v.is_finite())
            .map(|(k, v)| json!({"key": k, "value": v, "timestamp": stamp, "step": 0}))
            .collect();
        self.call(
            Method::POST,
            "runs/log-batch",
            &[],
            Some(json!({"run_id": run_id, "params": params, "metrics": metrics, "tags": []})),
        )
        .await?;
        for (path, bytes) in &run.artifacts {
            self.put_artifact(&artifact_uri, path, bytes.clone())
                .await?;
        }
        self.call(
            Method::POST,
            "runs/update",
            &[],
            Some(json!({"run_id": run_id, "status": "FINISHED", "end_time": now_ms()})),
        )
        .await?;
        Ok(run_id)
    }

    async fn create_version(
        &self,
        name: &str,
        run_id: &str,
        artifact_dir: &str,
    ) -> Result<ModelVersion> {
        super::uri::validate_model_name(name)?;
        match self
            .call(
                Method::POST,
                "registered-models/create",
                &[],
                Some(json!({"name": name})),
            )
            .await
        {
            Ok(_) => {}
            Err(Error::Registry(m)) if m.contains("RESOURCE_ALREADY_EXISTS") => {}
            Err(e) => return Err(e),
        }
        let run = self
            .call(Method::GET, "runs/get", &[("run_id", run_id)], None)
            .await?;
        let root = run["run"]["info"]["artifact_uri"]
            .as_str()
            .unwrap_or_default();
        let source = format!("{}/{artifact_dir}", root.trim_end_matches('/'));
        let created = self
            .call(
                Method::POST,
                "model-versions/create",
                &[],
                Some(json!({"name": name, "source": source, "run_id": run_id})),
            )
            .await?;
        let mut version = version_of(&created["model_version"])?;
        // File and SQL stores register at once; other stores may lag.
        for _ in 0..100 {
            let v = self
                .call(
                    Method::GET,
                    "model-versions/get",
                    &[("name", name), ("version", &version.version.to_string())],
                    None,
                )
                .await?;
            match v["model_version"]["status"].as_str() {
                Some("READY") | None => {
                    version = version_of(&v["model_version"])?;
                    break;
                }
                Some("FAILED_REGISTRATION") => {
                    return Err(Error::registry(format!(
                        "MLflow failed to register {}",
                        version.uri()
                    )));
                }
                _ => tokio::time::sleep(Duration::from_millis(100)).await,
            }
        }
        Ok(version)
    }

    async fn set_alias(&self, name: &str, alias: &str, version: u64) -> Result<()> {
        super::uri::validate_alias(alias)?;
        self.call(
            Method::POST,
            "registered-models/alias",
            &[],
            Some(json!({"name": name, "alias": alias, "version": version.to_string()})),
        )
        .await
        .map(|_| ())
    }

    async fn delete_alias(&self, name: &str, alias: &str) -> Result<()> {
        self.call(
            Method::DELETE,
            "registered-models/alias",
            &[],
            Some(json!({"name": name, "alias": alias})),
        )
        .await
        .map(|_| ())
    }

    async fn get_version(&self, name: &str, selector: &Selector) -> Result<ModelVersion> {
        let found = match selector {
            Selector::Alias(alias) => self
                .call(
                    Method::GET,
                    "registered-models/alias",
                    &[("name", name), ("alias", alias)],
                    None,
                )
                .await
                .map(|v| v["model_version"].clone()),
            Selector::Version(v) => self
                .call(
                    Method::GET,
                    "model-versions/get",
                    &[("name", name), ("version", &v.to_string())],
                    None,
                )
                .await
                .map(|v| v["model_version"].clone()),
            Selector::Latest => {
                return self
                    .list_versions(name)
                    .await?
                    .pop()
                    .ok_or_else(|| Error::NotFound(format!("model `{name}` has no versions")));
            }
        };
        match found {
            Ok(v) => version_of(&v),
            // MLflow's own message; say which name and selector were asked for.
            Err(Error::NotFound(m)) => Err(Error::NotFound(format!(
                "model `{name}` has no {}: {m}",
                match selector {
                    Selector::Alias(a) => format!("alias `{a}`"),
                    Selector::Version(v) => format!("version {v}"),
                    Selector::Latest => "versions".to_owned(),
                }
            ))),
            Err(e) => Err(e),
        }
    }

    async fn list_versions(&self, name: &str) -> Result<Vec<ModelVersion>> {
        super::uri::validate_model_name(name)?;
        let filter = format!("name='{name}'");
        let found = self
            .call(
                Method::GET,
                "model-versions/search",
                &[("filter", &filter), ("max_results", "10000")],
                None,
            )
            .await?;
        let mut versions = found["model_versions"]
            .as_array()
            .map(|all| all.iter().map(version_of).collect::<Result<Vec<_>>>())
            .transpose()?
            .unwrap_or_default();
        // Search results carry no aliases; the registered model lists them
        // (and its absence tells a missing model from one without versions).
        let model = self
            .call(
                Method::GET,
                "registered-models/get",
                &[("name", name)],
                None,
            )
            .await
            .map_err(|e| match e {
                Error::NotFound(_) => Error::NotFound(format!("no registered model `{name}`")),
                other => other,
            })?;
        for alias in model["registered_model"]["aliases"]
            .as_array()
            .into_iter()
            .flatten()
        {
            let (Some(a), Some(v)) = (alias["alias"].as_str(), alias["version"].as_str()) else {
                continue;
            };
            if let Some(version) = versions.iter_mut().find(|x| x.version.to_string() == v) {
                version.aliases.push(a.to_owned());
            }
        }
        for version in &mut versions {
            version.aliases.sort();
            version.aliases.dedup();
        }
        versions.sort_by_key(|v| v.version);
        Ok(versions)
    }

    async fn download(&self, version: &ModelVersion, file: &str) -> Result<Vec<u8>> {
        let uri = self
            .call(
                Method::GET,
                "model-versions/get-download-uri",
                &[
                    ("name", &version.name),
                    ("version", &version.version.to_string()),
                ],
                None,
            )
            .await?;
        let root = uri["artifact_uri"].as_str().unwrap_or(&version.source);
        let path = format!("{ARTIFACTS_API}/{}/{file}", artifact_path(root)?);
        let (status, body) = self.send(Method::GET, &path, "", Bytes::new()).await?;
        match status {
            s if s.is_success() => Ok(body.to_vec()),
            StatusCode::NOT_FOUND => Err(Error::NotFound(format!(
                "{} has no file `{file}`",
                version.uri()
            ))),
            s => Err(Error::registry(format!("MLflow artifact {path}: {s}"))),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn artifact_uris_map_to_server_paths() {
        assert_eq!(
            artifact_path("mlflow-artifacts:/1/abc/artifacts").unwrap(),
            "1/abc/artifacts"
        );
        assert_eq!(
            artifact_path("mlflow-artifacts://127.0.0.1:5000/1/abc/artifacts/model/").unwrap(),
            "1/abc/artifacts/model"
        );
        let err = artifact_path("s3://bucket/1/abc").unwrap_err().to_string();
        assert!(err.contains("not served by the tracking server"), "{err}");
    }
}
