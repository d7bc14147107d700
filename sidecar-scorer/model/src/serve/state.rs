//! What every endpoint shares: the model slot, the registry, the request size
//! limit, and where the model comes from.

use std::sync::{Arc, Mutex};

use crate::error::Result;
use crate::registry::{AnyRegistry, ModelUri};
use crate::serve::model::LoadedModel;
use crate::serve::slot::ModelSlot;

#[derive(Clone)]
pub struct ServerState {
    pub slot: Arc<ModelSlot>,
    pub registry: Arc<AnyRegistry>,
    /// Largest request body (REST) or message (gRPC), in bytes.
    pub max_request_bytes: usize,
    source: Arc<Mutex<ModelUri>>,
}

impl ServerState {
    pub fn new(
        slot: Arc<ModelSlot>,
        registry: Arc<AnyRegistry>,
        source: ModelUri,
        max_request_bytes: usize,
    ) -> Self {
        Self {
            slot,
            registry,
            max_request_bytes,
            source: Arc::new(Mutex::new(source)),
        }
    }

    /// The URI the model is (re)loaded from.
    pub fn source(&self) -> ModelUri {
        self.source
            .lock()
            .map(|s| s.clone())
            .unwrap_or_else(|p| p.into_inner().clone())
    }

    /// Loads from `uri` (or the current source) and swaps the model in; a
    /// new URI becomes the source once it has loaded.
    pub async fn reload(&self, uri: Option<ModelUri>, force: bool) -> Result<Arc<LoadedModel>> {
        let uri = uri.unwrap_or_else(|| self.source());
        let loaded = self.slot.load(&self.registry, &uri, force).await?;
        if let Ok(mut source) = self.source.lock() {
            *source = uri;
        }
        Ok(loaded)
    }
}
