//! What filters poll, kept in memory for a moment: a thousand proxies polling every
//! second cost a database read per rollout per quarter second, not one per poll.
//! Changes made through this replica are cached at once; changes through another
//! replica arrive within the time to live.

use std::collections::HashMap;
use std::sync::{Arc, RwLock};
use std::time::{Duration, Instant};

use crate::rollout::Rollout;
use crate::store::{Store, StoreResult};

const TIME_TO_LIVE: Duration = Duration::from_millis(250);

/// A rollout's state as filters get it, and the variants of its plan for
/// checking telemetry.
#[derive(Debug)]
pub struct CachedState {
    pub etag: String,
    pub body: String,
    pub variants: Vec<String>,
}

/// When an entry was read, and what it was (`None`: no such rollout).
type Entry = (Instant, Option<Arc<CachedState>>);

#[derive(Default)]
pub struct StateCache {
    entries: RwLock<HashMap<String, Entry>>,
}

fn cached(rollout: &Rollout) -> Arc<CachedState> {
    Arc::new(CachedState {
        etag: format!("\"{}-{}\"", rollout.name, rollout.version),
        body: serde_json::to_string(&rollout.state()).unwrap_or_default(),
        variants: rollout.variants.iter().map(|v| v.name.clone()).collect(),
    })
}

impl StateCache {
    pub async fn get(
        &self,
        store: &dyn Store,
        name: &str,
    ) -> StoreResult<Option<Arc<CachedState>>> {
        match self.fresh(name) {
            Some(value) => Ok(value),
            None => self.load(store, name).await,
        }
    }

    /// Like [`Self::get`], but an absence is looked up again: telemetry for a
    /// rollout just created through another replica must not be refused.
    pub async fn get_existing(
        &self,
        store: &dyn Store,
        name: &str,
    ) -> StoreResult<Option<Arc<CachedState>>> {
        match self.fresh(name) {
            Some(Some(state)) => Ok(Some(state)),
            _ => self.load(store, name).await,
        }
    }

    /// The cached entry, if it is young enough.
    fn fresh(&self, name: &str) -> Option<Option<Arc<CachedState>>> {
        let entries = self.entries.read().ok()?;
        let (at, value) = entries.get(name)?;
        (at.elapsed() < TIME_TO_LIVE).then(|| value.clone())
    }

    async fn load(&self, store: &dyn Store, name: &str) -> StoreResult<Option<Arc<CachedState>>> {
        let value = store.rollout(name).await?.map(|r| cached(&r));
        if let Ok(mut entries) = self.entries.write() {
            entries.insert(name.to_owned(), (Instant::now(), value.clone()));
        }
        Ok(value)
    }

    /// Records a rollout this replica just changed.
    pub fn put(&self, rollout: &Rollout) {
        if let Ok(mut entries) = self.entries.write() {
            entries.insert(
                rollout.name.clone(),
                (Instant::now(), Some(cached(rollout))),
            );
        }
    }
}
