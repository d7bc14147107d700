//! Rollout decisions. Every replica runs this loop, but only the one that holds the
//! store's decision lock (a PostgreSQL advisory lock, or a lease row in SQLite)
//! decides. When it dies, a PostgreSQL lock frees with its session and another replica
//! takes over within a tick; a SQLite lease lasts until it expires
//! ([`crate::store::sqlite::LEASE_MS`]), unless the same replica id comes back first.

use std::sync::atomic::Ordering;
use std::time::Duration;

use tokio::sync::watch;

use crate::api::{AppState, now_ms};
use crate::store::StoreError;

const TICK: Duration = Duration::from_millis(500);

pub async fn run(app: AppState, mut shutdown: watch::Receiver<bool>) {
    let mut tick = tokio::time::interval(TICK);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tokio::select! {
            _ = tick.tick() => {}
            _ = shutdown.changed() => break,
        }
        let leading = match app.store.try_lead(&app.config.replica_id, now_ms()).await {
            Ok(leading) => leading,
            Err(e) => {
                tracing::warn!(error = %e, "cannot reach the store for the decision lock");
                false
            }
        };
        if app.leading.swap(leading, Ordering::Relaxed) != leading {
            tracing::info!(replica = %app.config.replica_id, leading, "decision lock {}", if leading { "acquired" } else { "lost" });
        }
        app.metrics.leader.set(i64::from(leading));
        if leading {
            decide(&app).await;
        }
    }
    if app.leading.swap(false, Ordering::Relaxed)
        && let Err(e) = app.store.release_lead(&app.config.replica_id).await
    {
        tracing::warn!(error = %e, "could not release the decision lock");
    }
}

/// Advances every rollout whose step has been held long enough.
async fn decide(app: &AppState) {
    let rollouts = match app.store.rollouts().await {
        Ok(r) => r,
        Err(e) => {
            tracing::warn!(error = %e, "cannot read rollouts");
            return;
        }
    };
    for current in rollouts {
        let Some((next, mut event)) = current.advance(now_ms()) else {
            continue;
        };
        event.details["replica"] = serde_json::json!(app.config.replica_id);
        match app
            .store
            .update_rollout(&next, current.version, &event)
            .await
        {
            Ok(()) => {
                app.states.put(&next);
                app.metrics.controller_steps.inc();
                tracing::info!(rollout = %next.name, version = next.version, kind = %event.kind, "controller changed rollout");
            }
            // Someone changed it meanwhile; look again next tick.
            Err(StoreError::Conflict(_)) => {}
            Err(e) => {
                tracing::warn!(rollout = %next.name, error = %e, "controller could not store a change")
            }
        }
    }
}
