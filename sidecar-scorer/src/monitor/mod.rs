//! Model monitoring: every model version a rollout variant names is watched on that
//! variant's samples. Windows of the samples are judged against the version's
//! reference profile from the registry (drift per feature, prediction drift, the
//! dataset verdict, missing values, CBPE's estimate of precision and recall), and the
//! labelled samples give the realised precision, recall and PR AUC.
//!
//! - [`settings`]: the `[monitor]` settings;
//! - [`watched`]: which versions are watched, on which variants;
//! - [`judge`]: one window against the reference (pure);
//! - [`findings`]: the hysteresis that turns window verdicts into findings, and the
//!   events that record findings raised and cleared (pure);
//! - [`realised`]: realised performance on the labelled window (pure);
//! - [`runner`]: the leader's loop: reads samples, joins labels, judges due windows
//!   once, stores them and their events.
//!
//! [`Monitor`] is what the rest of the scorer holds: the registry link, the cached
//! profiles, and the in-process feed of [`findings::ModelEvent`]s.

pub mod findings;
pub mod judge;
pub mod realised;
pub mod runner;
pub mod settings;
pub mod watched;

use std::collections::HashMap;
use std::sync::Arc;

use outrider_model::profile::ModelProfile;
use outrider_model::registry::{AnyRegistry, PROFILE_FILE, Registry, Selector};
use tokio::sync::{Mutex, broadcast};

use findings::ModelEvent;
use settings::MonitorSettings;

/// How long a failed profile fetch is remembered before asking again.
const RETRY_MS: u64 = 30_000;

/// The monitor's link to the registry and what it learned from it.
pub struct Monitor {
    pub settings: MonitorSettings,
    registry: Result<AnyRegistry, String>,
    profiles: Mutex<HashMap<(String, u64), Fetched>>,
    events: broadcast::Sender<ModelEvent>,
}

/// A profile, or why it could not be had and when.
enum Fetched {
    Ok(Arc<ModelProfile>),
    Failed(String, u64),
}

impl Monitor {
    /// A monitor on the registry at `location` (a folder or an MLflow URI); without
    /// one, or when it cannot be opened, monitoring is off and [`Monitor::off`] says
    /// why.
    pub fn new(location: Option<&str>, settings: MonitorSettings) -> Self {
        let registry = match location {
            None => Err("model monitoring is off: the scorer runs without --registry".to_owned()),
            Some(l) => AnyRegistry::open(l).map_err(|e| {
                format!("model monitoring is off: the registry `{l}` cannot be opened: {e}")
            }),
        };
        Self {
            settings,
            registry,
            profiles: Mutex::default(),
            events: broadcast::channel(1024).0,
        }
    }

    /// Why monitoring is off; `None` while it runs.
    pub fn off(&self) -> Option<&str> {
        self.registry.as_ref().err().map(String::as_str)
    }

    /// The registry's location, when there is one.
    pub fn registry(&self) -> Option<String> {
        self.registry.as_ref().ok().map(Registry::location)
    }

    /// Findings raised and cleared from now on, as the leader of this process stores
    /// them. A retraining policy that must not miss any reads
    /// [`crate::store::Store::model_events`] from its last id instead (every replica,
    /// across restarts).
    pub fn subscribe(&self) -> broadcast::Receiver<ModelEvent> {
        self.events.subscribe()
    }

    pub(crate) fn publish(&self, events: &[ModelEvent]) {
        for e in events {
            // Nobody listening is fine.
            let _ = self.events.send(e.clone());
        }
    }

    /// A version's reference profile, fetched once from the registry; a failure is
    /// remembered for 30 s, then asked again.
    pub async fn profile(
        &self,
        name: &str,
        version: u64,
        now_ms: u64,
    ) -> Result<Arc<ModelProfile>, String> {
        let registry = self.registry.as_ref().map_err(Clone::clone)?;
        let key = (name.to_owned(), version);
        let mut profiles = self.profiles.lock().await;
        match profiles.get(&key) {
            Some(Fetched::Ok(p)) => return Ok(p.clone()),
            Some(Fetched::Failed(why, at)) if now_ms < at + RETRY_MS => return Err(why.clone()),
            _ => {}
        }
        let answer = fetch_profile(registry, name, version).await;
        match &answer {
            Ok(p) => {
                tracing::info!(
                    model = name,
                    version,
                    features = p.features.len(),
                    "reference profile loaded"
                );
                profiles.insert(key, Fetched::Ok(p.clone()));
            }
            Err(why) => {
                tracing::warn!(model = name, version, error = %why, "no reference profile");
                profiles.insert(key, Fetched::Failed(why.clone(), now_ms));
            }
        }
        answer
    }

    /// A profile already fetched, without asking the registry.
    pub async fn cached_profile(
        &self,
        name: &str,
        version: u64,
    ) -> Option<Result<Arc<ModelProfile>, String>> {
        match self
            .profiles
            .lock()
            .await
            .get(&(name.to_owned(), version))?
        {
            Fetched::Ok(p) => Some(Ok(p.clone())),
            Fetched::Failed(why, _) => Some(Err(why.clone())),
        }
    }
}

async fn fetch_profile(
    registry: &AnyRegistry,
    name: &str,
    version: u64,
) -> Result<Arc<ModelProfile>, String> {
    let v = registry
        .get_version(name, &Selector::Version(version))
        .await
        .map_err(|e| format!("models:/{name}/{version}: {e}"))?;
    let bytes = registry
        .download(&v, PROFILE_FILE)
        .await
        .map_err(|e| format!("models:/{name}/{version} has no readable {PROFILE_FILE}: {e}"))?;
    let profile = ModelProfile::from_json(&String::from_utf8_lossy(&bytes))
        .map_err(|e| format!("models:/{name}/{version}: {PROFILE_FILE} is not a profile: {e}"))?;
    Ok(Arc::new(profile))
}
