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

/// A rollout's state as filters get it.
#[derive(Debug)]
pub struct CachedState {
    pub etag: String,
    pub body: String,
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
    })
}

impl StateCache {
    pub async fn get(
        &self,
        store: &dyn Store,
        name: &str,
    ) -> StoreResult<Option<Arc<CachedState>>> {
        if let Ok(entries) = self.entries.read()
            && let Some((at, value)) = entries.get(name)
            && at.elapsed() < TIME_TO_LIVE
        {
            return Ok(value.clone());
        }
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
