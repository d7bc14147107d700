//! The embedded registry: runs and registered models in a local folder.
//!
//! ```text
//! <root>/runs/<run id>/run.json            parameters, metrics, tags, times
//! <root>/runs/<run id>/artifacts/<path>    logged files (model/model.onnx ...)
//! <root>/models/<name>.json                versions and aliases of a model
//! ```
//!
//! Writers take an exclusive lock on `<root>/.lock`; every JSON file is
//! replaced atomically (written beside, then renamed), so readers never see
//! half a file. Several processes may share one folder.

use std::collections::BTreeMap;
use std::fs::File;
use std::path::{Component, Path, PathBuf};
use std::time::{SystemTime, UNIX_EPOCH};

use serde::{Deserialize, Serialize};

use super::{ModelVersion, Registry, RunRecord, Selector};
use crate::error::{Error, IoContext, Result};

pub struct EmbeddedRegistry {
    root: PathBuf,
}

#[derive(Debug, Serialize, Deserialize)]
struct RunFile {
    run_id: String,
    experiment: String,
    name: String,
    params: BTreeMap<String, String>,
    metrics: BTreeMap<String, f64>,
    tags: BTreeMap<String, String>,
    artifacts: Vec<String>,
    end_time_ms: u128,
}

#[derive(Debug, Default, Serialize, Deserialize)]
struct ModelFile {
    name: String,
    versions: Vec<ModelVersion>,
    aliases: BTreeMap<String, u64>,
}

impl ModelFile {
    fn with_aliases(&self, mut v: ModelVersion) -> ModelVersion {
        v.aliases = self
            .aliases
            .iter()
            .filter(|(_, n)| **n == v.version)
            .map(|(a, _)| a.clone())
            .collect();
        v
    }
}

fn now_ms() -> u128 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_millis())
}

/// A relative path with no `..`: artifacts stay inside their run.
fn safe_relative(path: &str) -> Result<PathBuf> {
    let p = Path::new(path);
    if path.is_empty() || !p.components().all(|c| matches!(c, Component::Normal(_))) {
        return Err(Error::invalid(
            "artifact",
            format!("`{path}` is not a relative path inside the run"),
        ));
    }
    Ok(p.to_owned())
}

fn write_atomic(path: &Path, bytes: &[u8]) -> Result<()> {
    let dir = path.parent().unwrap_or(Path::new("."));
    std::fs::create_dir_all(dir).at(dir)?;
    let tmp = dir.join(format!(
        ".{}.tmp",
        path.file_name()
            .map(|n| n.to_string_lossy())
            .unwrap_or_default()
    ));
    std::fs::write(&tmp, bytes).at(&tmp)?;
    std::fs::rename(&tmp, path).at(path)
}

impl EmbeddedRegistry {
    /// Opens (creating if needed) a registry folder.
    pub fn open(root: PathBuf) -> Result<Self> {
        std::fs::create_dir_all(root.join("runs")).at(&root)?;
        std::fs::create_dir_all(root.join("models")).at(&root)?;
        Ok(Self { root })
    }

    fn lock(root: &Path) -> Result<File> {
        let path = root.join(".lock");
        let file = File::options()
            .create(true)
            .truncate(false)
            .write(true)
            .open(&path)
            .at(&path)?;
        file.lock().at(&path)?;
        Ok(file)
    }

    fn model_path(root: &Path, name: &str) -> Result<PathBuf> {
        super::uri::validate_model_name(name)?;
        Ok(root.join("models").join(format!("{name}.json")))
    }

    fn read_model(root: &Path, name: &str) -> Result<ModelFile> {
        let path = Self::model_path(root, name)?;
        match std::fs::read(&path) {
            Ok(bytes) => serde_json::from_slice(&bytes)
                .map_err(|e| Error::registry(format!("{}: {e}", path.display()))),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
                Err(Error::NotFound(format!("no registered model `{name}`")))
            }
            Err(e) => Err(Error::io(path, e)),
        }
    }

    fn write_model(root: &Path, model: &ModelFile) -> Result<()> {
        let bytes = serde_json::to_vec_pretty(model).map_err(Error::registry)?;
        write_atomic(&Self::model_path(root, &model.name)?, &bytes)
    }

    fn run_dir(root: &Path, run_id: &str) -> Result<PathBuf> {
        if run_id.is_empty() || !run_id.chars().all(|c| c.is_ascii_hexdigit()) {
            return Err(Error::invalid(
                "run_id",
                format!("`{run_id}` is not a run id"),
            ));
        }
        Ok(root.join("runs").join(run_id))
    }

    /// Runs `f` on the blocking pool with the registry root.
    async fn blocking<T: Send + 'static>(
        &self,
        f: impl FnOnce(&Path) -> Result<T> + Send + 'static,
    ) -> Result<T> {
        let root = self.root.clone();
        tokio::task::spawn_blocking(move || f(&root))
            .await
            .map_err(|e| Error::registry(format!("registry task failed: {e}")))?
    }
}

impl Registry for EmbeddedRegistry {
    fn location(&self) -> String {
        self.root.display().to_string()
    }

    async fn log_run(&self, run: &RunRecord) -> Result<String> {
        let run = run.clone();
        self.blocking(move |root| {
            let run_id = format!("{:032x}", rand::random::<u128>());
            let dir = Self::run_dir(root, &run_id)?;
            let mut paths = Vec::new();
            for (path, bytes) in &run.artifacts {
                let rel = safe_relative(path)?;
                write_atomic(&dir.join("artifacts").join(rel), bytes)?;
                paths.push(path.clone());
            }
            let file = RunFile {
                run_id: run_id.clone(),
                experiment: run.experiment,
                name: run.name,
                params: run.params,
                metrics: run.metrics.into_iter().collect(),
                tags: run.tags,
                artifacts: paths,
                end_time_ms: now_ms(),
            };
            let bytes = serde_json::to_vec_pretty(&file).map_err(Error::registry)?;
            write_atomic(&dir.join("run.json"), &bytes)?;
            Ok(run_id)
        })
        .await
    }

    async fn create_version(
        &self,
        name: &str,
        run_id: &str,
        artifact_dir: &str,
    ) -> Result<ModelVersion> {
        let (name, run_id, artifact_dir) =
            (name.to_owned(), run_id.to_owned(), artifact_dir.to_owned());
        self.blocking(move |root| {
            let rel = safe_relative(&artifact_dir)?;
            let artifacts = Self::run_dir(root, &run_id)?.join("artifacts").join(&rel);
            if !artifacts.is_dir() {
                return Err(Error::NotFound(format!(
                    "run {run_id} has no artifacts under `{artifact_dir}`"
                )));
            }
            let _lock = Self::lock(root)?;
            let mut model = match Self::read_model(root, &name) {
                Ok(m) => m,
                Err(Error::NotFound(_)) => ModelFile {
                    name: name.clone(),
                    ..ModelFile::default()
                },
                Err(e) => return Err(e),
            };
            let version = ModelVersion {
                name: name.clone(),
                version: model.versions.last().map_or(1, |v| v.version + 1),
                run_id: run_id.clone(),
                source: format!("runs:/{run_id}/{artifact_dir}"),
                aliases: Vec::new(),
            };
            model.versions.push(version.clone());
            Self::write_model(root, &model)?;
            Ok(version)
        })
        .await
    }

    async fn set_alias(&self, name: &str, alias: &str, version: u64) -> Result<()> {
        super::uri::validate_alias(alias)?;
        let (name, alias) = (name.to_owned(), alias.to_owned());
        self.blocking(move |root| {
            let _lock = Self::lock(root)?;
            let mut model = Self::read_model(root, &name)?;
            if !model.versions.iter().any(|v| v.version == version) {
                return Err(Error::NotFound(format!(
                    "model `{name}` has no version {version}"
                )));
            }
            model.aliases.insert(alias, version);
            Self::write_model(root, &model)
        })
        .await
    }

    async fn delete_alias(&self, name: &str, alias: &str) -> Result<()> {
        let (name, alias) = (name.to_owned(), alias.to_owned());
        self.blocking(move |root| {
            let _lock = Self::lock(root)?;
            let mut model = Self::read_model(root, &name)?;
            model.aliases.remove(&alias);
            Self::write_model(root, &model)
        })
        .await
    }

    async fn get_version(&self, name: &str, selector: &Selector) -> Result<ModelVersion> {
        let (name, selector) = (name.to_owned(), selector.clone());
        self.blocking(move |root| {
            let model = Self::read_model(root, &name)?;
            let wanted = match &selector {
                Selector::Version(v) => Some(*v),
                Selector::Latest => model.versions.last().map(|v| v.version),
                Selector::Alias(a) => model.aliases.get(a).copied(),
            };
            let found = wanted.and_then(|w| model.versions.iter().find(|v| v.version == w));
            match (found, &selector) {
                (Some(v), _) => Ok(model.with_aliases(v.clone())),
                (None, Selector::Alias(a)) => Err(Error::NotFound(format!(
                    "model `{name}` has no alias `{a}`"
                ))),
                (None, Selector::Version(v)) => Err(Error::NotFound(format!(
                    "model `{name}` has no version {v}"
                ))),
                (None, Selector::Latest) => {
                    Err(Error::NotFound(format!("model `{name}` has no versions")))
                }
            }
        })
        .await
    }

    async fn list_versions(&self, name: &str) -> Result<Vec<ModelVersion>> {
        let name = name.to_owned();
        self.blocking(move |root| {
            let model = Self::read_model(root, &name)?;
            Ok(model
                .versions
                .iter()
                .map(|v| model.with_aliases(v.clone()))
                .collect())
        })
        .await
    }

    async fn download(&self, version: &ModelVersion, file: &str) -> Result<Vec<u8>> {
        let (version, file) = (version.clone(), file.to_owned());
        self.blocking(move |root| {
            let dir = version
                .source
                .strip_prefix(&format!("runs:/{}/", version.run_id))
                .ok_or_else(|| {
                    Error::registry(format!("unexpected source `{}`", version.source))
                })?;
            let path = Self::run_dir(root, &version.run_id)?
                .join("artifacts")
                .join(safe_relative(dir)?)
                .join(safe_relative(&file)?);
            std::fs::read(&path).map_err(|e| match e.kind() {
                std::io::ErrorKind::NotFound => {
                    Error::NotFound(format!("{} has no file `{file}`", version.uri()))
                }
                _ => Error::io(&path, e),
            })
        })
        .await
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::registry::{CHALLENGER, CHAMPION, ModelUri};

    fn run(bytes: &[u8]) -> RunRecord {
        RunRecord {
            experiment: "fraud".into(),
            name: "t".into(),
            params: BTreeMap::from([("alpha".into(), "1".into())]),
            metrics: vec![("test_roc_auc".into(), 0.9)],
            artifacts: vec![("model/model.onnx".into(), bytes.to_vec())],
            ..RunRecord::default()
        }
    }

    #[tokio::test]
    async fn versions_aliases_and_uris() {
        let dir = tempfile::tempdir().unwrap();
        let reg = EmbeddedRegistry::open(dir.path().to_owned()).unwrap();
        let r1 = reg.log_run(&run(b"one")).await.unwrap();
        let v1 = reg.create_version("fraud", &r1, "model").await.unwrap();
        let r2 = reg.log_run(&run(b"two")).await.unwrap();
        let v2 = reg.create_version("fraud", &r2, "model").await.unwrap();
        assert_eq!((v1.version, v2.version), (1, 2));
        reg.set_alias("fraud", CHAMPION, 1).await.unwrap();
        reg.set_alias("fraud", CHALLENGER, 2).await.unwrap();

        let champion = reg
            .get_version("fraud", &Selector::Alias(CHAMPION.into()))
            .await
            .unwrap();
        assert_eq!(champion.version, 1);
        assert_eq!(champion.aliases, vec![CHAMPION.to_owned()]);
        assert_eq!(reg.download(&champion, "model.onnx").await.unwrap(), b"one");
        let latest = reg.get_version("fraud", &Selector::Latest).await.unwrap();
        assert_eq!(reg.download(&latest, "model.onnx").await.unwrap(), b"two");

        // Promotion moves the champion and drops the challenger alias.
        let promoted = crate::registry::promote(&reg, "fraud", 2).await.unwrap();
        assert_eq!(promoted.aliases, vec![CHAMPION.to_owned()]);
        let uri: ModelUri = "models:/fraud@champion".parse().unwrap();
        let files = crate::registry::resolve(&reg, &uri).await.unwrap();
        assert_eq!(
            (files.version.version, files.onnx.as_slice()),
            (2, &b"two"[..])
        );
        assert!(files.profile.is_none());

        let err = crate::registry::resolve(&reg, &"models:/fraud@challenger".parse().unwrap())
            .await
            .unwrap_err();
        assert!(matches!(err, Error::NotFound(_)));
        assert_eq!(
            err.to_string(),
            "models:/fraud@challenger does not resolve: model `fraud` has no alias `challenger`"
        );
        let err = reg
            .get_version("nope", &Selector::Latest)
            .await
            .unwrap_err();
        assert_eq!(err.to_string(), "no registered model `nope`");
        assert!(reg.set_alias("fraud", CHAMPION, 9).await.is_err());

        // Another handle on the same folder sees the same registry.
        let again = EmbeddedRegistry::open(dir.path().to_owned()).unwrap();
        assert_eq!(again.list_versions("fraud").await.unwrap().len(), 2);
    }

    #[tokio::test]
    async fn artifacts_stay_inside_their_run() {
        let dir = tempfile::tempdir().unwrap();
        let reg = EmbeddedRegistry::open(dir.path().to_owned()).unwrap();
        let mut bad = run(b"x");
        bad.artifacts = vec![("../escape".into(), b"x".to_vec())];
        assert!(reg.log_run(&bad).await.is_err());
        assert!(!dir.path().join("runs/escape").exists());
    }
}
