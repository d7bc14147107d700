//! `outrider-scorer serve`: open the store, serve the API, run the controller, and
//! stop cleanly on SIGTERM or Ctrl-C.

use anyhow::{Context, Result};
use tokio::net::TcpListener;
use tokio::sync::watch;

use crate::api::{self, App};
use crate::config::ServeConfig;
use crate::{controller, monitor, notifier, store};

pub async fn serve(config: ServeConfig) -> Result<()> {
    for token in &config.generated_tokens {
        tracing::warn!("no {token} configured; using a random one for this run: see the next line");
        let value = if *token == "admin token" {
            &config.admin_token
        } else {
            &config.telemetry_token
        };
        tracing::warn!("{token}: {value}");
    }
    let store = store::open(&config.store)
        .await
        .with_context(|| format!("opening the store `{}`", redact(&config.store)))?;
    let listener = TcpListener::bind(config.listen)
        .await
        .with_context(|| format!("listening on {}", config.listen))?;
    let addr = listener.local_addr()?;
    let app = App::new(store, config);

    let (stop, stopped) = watch::channel(false);
    let decisions = tokio::spawn(controller::run(app.clone(), stopped.clone()));
    let alerts = tokio::spawn(notifier::run(app.clone(), stopped.clone()));
    let retraining = tokio::spawn(crate::retrain::runner::run(app.clone(), stopped.clone()));
    let monitoring = tokio::spawn(monitor::runner::run(app.clone(), stopped));
    if let Some(path) = &app.config.address_file {
        // Written whole or not at all: a reader never sees half an address.
        let tmp = path.with_extension("tmp");
        std::fs::write(&tmp, addr.to_string())?;
        std::fs::rename(&tmp, path)?;
    }
    tracing::info!(%addr, store = app.store.backend(), replica = %app.config.replica_id, "outrider scorer serving");
    axum::serve(listener, api::router(app.clone()))
        .with_graceful_shutdown(shutdown_signal())
        .await?;
    let _ = stop.send(true);
    let _ = decisions.await;
    let _ = alerts.await;
    let _ = retraining.await;
    let _ = monitoring.await;
    tracing::info!("outrider scorer stopped");
    Ok(())
}

async fn shutdown_signal() {
    let ctrl_c = tokio::signal::ctrl_c();
    let mut term = match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
        Ok(s) => s,
        Err(_) => {
            let _ = ctrl_c.await;
            return;
        }
    };
    tokio::select! {
        _ = ctrl_c => {}
        _ = term.recv() => {}
    }
}

/// A store location without its password, for logs.
fn redact(location: &str) -> String {
    match (location.find("://"), location.rfind('@')) {
        (Some(scheme), Some(at)) if at > scheme => {
            format!("{}://***@{}", &location[..scheme], &location[at + 1..])
        }
        _ => location.to_owned(),
    }
}

#[cfg(test)]
mod tests {
    #[test]
    fn passwords_stay_out_of_logs() {
        assert_eq!(
            super::redact("postgres://u:secret@db:5432/x"),
            "postgres://***@db:5432/x"
        );
        assert_eq!(super::redact("outrider.db"), "outrider.db");
    }
}
