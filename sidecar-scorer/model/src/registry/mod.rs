//! The model registry: training runs (parameters, metrics, artifacts),
//! registered model versions and their aliases (`challenger` for a new
//! version, `champion` for the one in production). Two backends: an embedded
//! one in a local folder (the default) and an MLflow tracking server.

pub mod embedded;
pub mod mlflow;
pub mod uri;

use std::collections::BTreeMap;
use std::future::Future;
use std::path::PathBuf;

use serde::{Deserialize, Serialize};

use crate::error::{Error, Result};
use crate::profile::ModelProfile;
use crate::train::Trained;
pub use uri::{ModelUri, Selector};

/// Alias of a freshly trained version.
pub const CHALLENGER: &str = "challenger";
/// Alias of the version in production.
pub const CHAMPION: &str = "champion";

/// Where a version's files sit among its run's artifacts.
pub const MODEL_DIR: &str = "model";
pub const MODEL_FILE: &str = "model.onnx";
pub const PROFILE_FILE: &str = "profile.json";
pub const REPORT_FILE: &str = "report.json";

/// A run to log.
#[derive(Debug, Clone, Default)]
pub struct RunRecord {
    pub experiment: String,
    pub name: String,
    pub params: BTreeMap<String, String>,
    pub metrics: Vec<(String, f64)>,
    pub tags: BTreeMap<String, String>,
    /// Files by their path under the run's artifacts (`model/model.onnx`).
    pub artifacts: Vec<(String, Vec<u8>)>,
}

/// A registered version of a model.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ModelVersion {
    pub name: String,
    pub version: u64,
    pub run_id: String,
    /// Where its files are, in the backend's terms.
    pub source: String,
    #[serde(default)]
    pub aliases: Vec<String>,
}

impl ModelVersion {
    pub fn uri(&self) -> String {
        format!("models:/{}/{}", self.name, self.version)
    }
}

/// A version with its files.
#[derive(Debug, Clone)]
pub struct ModelFiles {
    pub version: ModelVersion,
    pub onnx: Vec<u8>,
    pub profile: Option<ModelProfile>,
}

/// What every backend does. Methods return `Send` futures so servers can
/// call them from spawned tasks.
pub trait Registry: Send + Sync {
    /// Where the registry is, for logs.
    fn location(&self) -> String;

    /// Logs a finished run and returns its id.
    fn log_run(&self, run: &RunRecord) -> impl Future<Output = Result<String>> + Send;

    /// Registers the model files under `artifact_dir` of run `run_id` as a new
    /// version of `name` (creating the model if needed).
    fn create_version(
        &self,
        name: &str,
        run_id: &str,
        artifact_dir: &str,
    ) -> impl Future<Output = Result<ModelVersion>> + Send;

    /// Points `alias` at `version` (moving it from any other version).
    fn set_alias(
        &self,
        name: &str,
        alias: &str,
        version: u64,
    ) -> impl Future<Output = Result<()>> + Send;

    fn delete_alias(&self, name: &str, alias: &str) -> impl Future<Output = Result<()>> + Send;

    /// The version a selector names; [`Error::NotFound`] if none.
    fn get_version(
        &self,
        name: &str,
        selector: &Selector,
    ) -> impl Future<Output = Result<ModelVersion>> + Send;

    /// Every version of a model, oldest first.
    fn list_versions(&self, name: &str) -> impl Future<Output = Result<Vec<ModelVersion>>> + Send;

    /// One file of a version (`model.onnx`, `profile.json`).
    fn download(
        &self,
        version: &ModelVersion,
        file: &str,
    ) -> impl Future<Output = Result<Vec<u8>>> + Send;
}

/// A registry chosen at run time: a folder (embedded) or an `http(s)://`
/// MLflow tracking URI.
pub enum AnyRegistry {
    Embedded(embedded::EmbeddedRegistry),
    Mlflow(Box<mlflow::MlflowRegistry>),
}

impl AnyRegistry {
    pub fn open(location: &str) -> Result<Self> {
        if location.starts_with("http://") || location.starts_with("https://") {
            Ok(Self::Mlflow(Box::new(mlflow::MlflowRegistry::new(
                location,
            )?)))
        } else {
            let dir = location.strip_prefix("file:").unwrap_or(location);
            Ok(Self::Embedded(embedded::EmbeddedRegistry::open(
                PathBuf::from(dir),
            )?))
        }
    }
}

macro_rules! delegate {
    ($self:ident, $r:ident => $call:expr) => {
        match $self {
            AnyRegistry::Embedded($r) => $call,
            AnyRegistry::Mlflow($r) => $call,
        }
    };
}

impl Registry for AnyRegistry {
    fn location(&self) -> String {
        delegate!(self, r => r.location())
    }
    async fn log_run(&self, run: &RunRecord) -> Result<String> {
        delegate!(self, r => r.log_run(run).await)
    }
    async fn create_version(&self, name: &str, run_id: &str, dir: &str) -> Result<ModelVersion> {
        delegate!(self, r => r.create_version(name, run_id, dir).await)
    }
    async fn set_alias(&self, name: &str, alias: &str, version: u64) -> Result<()> {
        delegate!(self, r => r.set_alias(name, alias, version).await)
    }
    async fn delete_alias(&self, name: &str, alias: &str) -> Result<()> {
        delegate!(self, r => r.delete_alias(name, alias).await)
    }
    async fn get_version(&self, name: &str, selector: &Selector) -> Result<ModelVersion> {
        delegate!(self, r => r.get_version(name, selector).await)
    }
    async fn list_versions(&self, name: &str) -> Result<Vec<ModelVersion>> {
        delegate!(self, r => r.list_versions(name).await)
    }
    async fn download(&self, version: &ModelVersion, file: &str) -> Result<Vec<u8>> {
        delegate!(self, r => r.download(version, file).await)
    }
}

/// Logs a training run with its model, profile and report, registers the
/// model as a new version and gives it the `challenger` alias.
pub async fn publish<R: Registry>(
    registry: &R,
    trained: &Trained,
    experiment: &str,
) -> Result<ModelVersion> {
    let name = &trained.profile.model;
    let report = &trained.report;
    let mut tags = BTreeMap::from([("outrider.model".to_owned(), name.clone())]);
    tags.insert(
        "outrider.producer".to_owned(),
        format!("outrider {}", env!("CARGO_PKG_VERSION")),
    );
    let report_json = serde_json::to_string_pretty(report)
        .map_err(|e| Error::invalid("report", e.to_string()))?;
    let run = RunRecord {
        experiment: experiment.to_owned(),
        name: format!("train-{name}"),
        params: report.params.clone(),
        metrics: report.metric_values(),
        tags,
        artifacts: vec![
            (format!("{MODEL_DIR}/{MODEL_FILE}"), trained.onnx.clone()),
            (
                format!("{MODEL_DIR}/{PROFILE_FILE}"),
                trained.profile.to_json()?.into_bytes(),
            ),
            (
                format!("{MODEL_DIR}/{REPORT_FILE}"),
                report_json.into_bytes(),
            ),
        ],
    };
    let run_id = registry.log_run(&run).await?;
    let mut version = registry.create_version(name, &run_id, MODEL_DIR).await?;
    registry
        .set_alias(name, CHALLENGER, version.version)
        .await?;
    version.aliases.push(CHALLENGER.to_owned());
    Ok(version)
}

/// Makes `version` the champion; the challenger alias leaves it if it was there.
pub async fn promote<R: Registry>(registry: &R, name: &str, version: u64) -> Result<ModelVersion> {
    let current = registry
        .get_version(name, &Selector::Version(version))
        .await?;
    registry.set_alias(name, CHAMPION, version).await?;
    if current.aliases.iter().any(|a| a == CHALLENGER) {
        registry.delete_alias(name, CHALLENGER).await?;
    }
    registry
        .get_version(name, &Selector::Version(version))
        .await
}

/// The version a `models:/` URI names; when there is none, the error quotes the URI.
pub async fn registered_version<R: Registry>(
    registry: &R,
    uri: &ModelUri,
    name: &str,
    selector: &Selector,
) -> Result<ModelVersion> {
    registry
        .get_version(name, selector)
        .await
        .map_err(|e| match e {
            Error::NotFound(why) => Error::NotFound(format!("{uri} does not resolve: {why}")),
            other => other,
        })
}

/// Resolves a model URI to its files (a registered version, or a local file).
pub async fn resolve<R: Registry>(registry: &R, uri: &ModelUri) -> Result<ModelFiles> {
    match uri {
        ModelUri::File(path) => {
            let onnx = std::fs::read(path).map_err(|e| match e.kind() {
                std::io::ErrorKind::NotFound => {
                    Error::NotFound(format!("{}: no such model file", path.display()))
                }
                _ => Error::io(path, e),
            })?;
            // A profile beside the model file, if there is one.
            let profile = path
                .parent()
                .map(|dir| dir.join(PROFILE_FILE))
                .and_then(|p| std::fs::read_to_string(p).ok())
                .map(|text| ModelProfile::from_json(&text))
                .transpose()?;
            let name = path
                .file_stem()
                .map(|s| s.to_string_lossy().into_owned())
                .unwrap_or_else(|| "model".to_owned());
            Ok(ModelFiles {
                version: ModelVersion {
                    name,
                    version: 1,
                    run_id: String::new(),
                    source: path.display().to_string(),
                    aliases: Vec::new(),
                },
                onnx,
                profile,
            })
        }
        ModelUri::Registered { name, selector } => {
            let version = registered_version(registry, uri, name, selector).await?;
            fetch(registry, version).await
        }
    }
}

/// Downloads a version's model and (if logged) its profile.
pub async fn fetch<R: Registry>(registry: &R, version: ModelVersion) -> Result<ModelFiles> {
    let onnx = registry.download(&version, MODEL_FILE).await?;
    let profile = match registry.download(&version, PROFILE_FILE).await {
        Ok(bytes) => Some(ModelProfile::from_json(&String::from_utf8_lossy(&bytes))?),
        Err(Error::NotFound(_)) => None,
        Err(e) => return Err(e),
    };
    Ok(ModelFiles {
        version,
        onnx,
        profile,
    })
}
