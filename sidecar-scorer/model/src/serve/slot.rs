//! The served model and its hot swap. A new version is resolved and loaded
//! beside the current one, then swapped in atomically: requests in flight
//! finish on the version they started with, new ones get the new version, and
//! none is dropped. Until a first model is loaded the server is live but not
//! ready; a failed load leaves the current model serving.

use std::sync::{Arc, Mutex};

use arc_swap::ArcSwapOption;

use crate::error::{Error, Result};
use crate::registry::{AnyRegistry, ModelUri, fetch, registered_version, resolve};
use crate::serve::model::LoadedModel;

pub struct ModelSlot {
    /// The name clients use (fixed for the server's life).
    pub name: String,
    current: ArcSwapOption<LoadedModel>,
    last_error: Mutex<Option<String>>,
    /// One load at a time.
    loading: tokio::sync::Mutex<()>,
}

impl ModelSlot {
    pub fn new(name: &str) -> Self {
        Self {
            name: name.to_owned(),
            current: ArcSwapOption::empty(),
            last_error: Mutex::new(None),
            loading: tokio::sync::Mutex::new(()),
        }
    }

    pub fn current(&self) -> Option<Arc<LoadedModel>> {
        self.current.load_full()
    }

    pub fn is_ready(&self) -> bool {
        self.current.load().is_some()
    }

    /// The reason the last load failed, if it did.
    pub fn last_error(&self) -> Option<String> {
        self.last_error.lock().ok().and_then(|e| e.clone())
    }

    /// The model a request names (any version, or one in particular).
    pub fn get(&self, name: &str, version: Option<&str>) -> Result<Arc<LoadedModel>> {
        if name != self.name {
            return Err(Error::NotFound(format!(
                "unknown model `{name}`; this server serves `{}`",
                self.name
            )));
        }
        let model = self.current().ok_or_else(|| {
            let why = self
                .last_error()
                .map(|e| format!(" (last load failed: {e})"))
                .unwrap_or_default();
            Error::Unavailable(format!("model `{name}` is not loaded yet{why}"))
        })?;
        match version {
            Some(v) if !v.is_empty() && v != model.version => Err(Error::NotFound(format!(
                "model `{name}` has no version {v} on this server (it serves version {})",
                model.version
            ))),
            _ => Ok(model),
        }
    }

    /// Resolves `uri` and swaps the model in. Skips the load when the
    /// resolved version is already served (unless `force`).
    pub async fn load(
        &self,
        registry: &AnyRegistry,
        uri: &ModelUri,
        force: bool,
    ) -> Result<Arc<LoadedModel>> {
        let _one_at_a_time = self.loading.lock().await;
        let result = self.load_locked(registry, uri, force).await;
        if let Ok(mut last) = self.last_error.lock() {
            *last = result.as_ref().err().map(ToString::to_string);
        }
        result
    }

    async fn load_locked(
        &self,
        registry: &AnyRegistry,
        uri: &ModelUri,
        force: bool,
    ) -> Result<Arc<LoadedModel>> {
        let files = match uri {
            ModelUri::Registered { name, selector } => {
                let version = registered_version(registry, uri, name, selector).await?;
                if let Some(current) = self.current()
                    && !force
                    && current.version == version.version.to_string()
                    && current.source == uri.to_string()
                {
                    return Ok(current);
                }
                fetch(registry, version).await?
            }
            ModelUri::File(_) => resolve(registry, uri).await?,
        };
        let (name, source) = (self.name.clone(), uri.to_string());
        // Parsing and optimising takes a while for big models: off the runtime.
        let loaded =
            tokio::task::spawn_blocking(move || LoadedModel::from_files(&name, files, &source))
                .await
                .map_err(|e| Error::model(format!("loading failed: {e}")))??;
        let loaded = Arc::new(loaded);
        self.current.store(Some(loaded.clone()));
        tracing::info!(
            model = %loaded.name,
            version = %loaded.version,
            source = %loaded.source,
            "model loaded"
        );
        Ok(loaded)
    }
}
