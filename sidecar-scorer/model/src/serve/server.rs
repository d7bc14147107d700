//! `outrider-model serve`: the REST and gRPC listeners, the first load in the
//! background (live at once, ready once loaded), an optional watch of the
//! registry (a moved alias is loaded and swapped in), and graceful shutdown.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use axum::serve::ListenerExt;
use tokio::net::TcpListener;
use tokio::sync::watch;
use tokio::task::JoinSet;
use tonic::transport::server::TcpIncoming;

use super::grpc::{GrpcService, MessageLimit};
use super::slot::ModelSlot;
use super::state::ServerState;
use crate::error::{Error, IoContext, Result};
use crate::proto::grpc_inference_service_server::GrpcInferenceServiceServer;
use crate::registry::{AnyRegistry, ModelUri};

/// Largest request body (REST) or message (gRPC) by default: 64 MiB.
pub const DEFAULT_MAX_REQUEST_BYTES: usize = 64 << 20;

#[derive(Debug, Clone)]
pub struct ServeOptions {
    pub http: SocketAddr,
    /// `None`: no gRPC listener.
    pub grpc: Option<SocketAddr>,
    pub model: ModelUri,
    /// The name clients use; by default the registered name or the file stem.
    pub name: Option<String>,
    /// How often to check the registry for a moved alias.
    pub poll: Option<Duration>,
    /// Largest REST request body and gRPC message, in bytes; a larger one is
    /// refused with `413` or `RESOURCE_EXHAUSTED`.
    pub max_request_bytes: usize,
}

pub struct Server {
    pub http_addr: SocketAddr,
    pub grpc_addr: Option<SocketAddr>,
    pub state: ServerState,
    stop: watch::Sender<bool>,
    tasks: JoinSet<()>,
}

fn served_name(options: &ServeOptions) -> String {
    if let Some(name) = &options.name {
        return name.clone();
    }
    match &options.model {
        ModelUri::Registered { name, .. } => name.clone(),
        ModelUri::File(path) => path
            .file_stem()
            .map(|s| s.to_string_lossy().into_owned())
            .unwrap_or_else(|| "model".to_owned()),
    }
}

async fn stopped(mut stop: watch::Receiver<bool>) {
    let _ = stop.wait_for(|s| *s).await;
}

impl Server {
    /// Binds the listeners and starts serving; the model loads in the
    /// background.
    pub async fn start(options: ServeOptions, registry: Arc<AnyRegistry>) -> Result<Self> {
        if let Some(name) = &options.name {
            crate::registry::uri::validate_model_name(name)?;
        }
        let slot = Arc::new(ModelSlot::new(&served_name(&options)));
        if options.max_request_bytes == 0 {
            return Err(Error::invalid("max-body-bytes", "must be at least 1"));
        }
        let state = ServerState::new(
            slot,
            registry,
            options.model.clone(),
            options.max_request_bytes,
        );
        let (stop, _) = watch::channel(false);
        let mut tasks = JoinSet::new();

        let http = TcpListener::bind(options.http).await.map_err(|e| {
            Error::invalid("http", format!("cannot listen on {}: {e}", options.http))
        })?;
        let http_addr = http.local_addr().at("http listener")?;
        let app = super::rest::router(state.clone(), options.max_request_bytes);
        let shutdown = stopped(stop.subscribe());
        tasks.spawn(async move {
            let http = http.tap_io(|tcp| {
                if let Err(e) = tcp.set_nodelay(true) {
                    tracing::debug!("cannot set TCP_NODELAY: {e}");
                }
            });
            if let Err(e) = axum::serve(http, app)
                .with_graceful_shutdown(shutdown)
                .await
            {
                tracing::error!("HTTP server failed: {e}");
            }
        });

        let grpc_addr = match options.grpc {
            Some(addr) => {
                let listener = TcpListener::bind(addr)
                    .await
                    .map_err(|e| Error::invalid("grpc", format!("cannot listen on {addr}: {e}")))?;
                let bound = listener.local_addr().at("gRPC listener")?;
                let service = MessageLimit::new(
                    GrpcInferenceServiceServer::new(GrpcService::new(state.clone()))
                        .max_decoding_message_size(options.max_request_bytes)
                        .max_encoding_message_size(options.max_request_bytes),
                    options.max_request_bytes,
                );
                let shutdown = stopped(stop.subscribe());
                tasks.spawn(async move {
                    // Nagle's algorithm would hold a reply's frames back until
                    // the client's delayed ACK (40 ms); the builder's own
                    // nodelay applies only to listeners tonic binds itself.
                    let incoming = TcpIncoming::from(listener).with_nodelay(Some(true));
                    let served = tonic::transport::Server::builder()
                        .add_service(service)
                        .serve_with_incoming_shutdown(incoming, shutdown)
                        .await;
                    if let Err(e) = served {
                        tracing::error!("gRPC server failed: {e}");
                    }
                });
                Some(bound)
            }
            None => None,
        };

        // The first load, then (for registry URIs) a watch for moved aliases.
        let loader = state.clone();
        let poll = options
            .poll
            .filter(|_| matches!(options.model, ModelUri::Registered { .. }));
        let mut stop_rx = stop.subscribe();
        tasks.spawn(async move {
            if let Err(e) = loader.reload(None, true).await {
                tracing::error!("cannot load {}: {e}", loader.source());
            }
            let Some(every) = poll else { return };
            loop {
                tokio::select! {
                    _ = tokio::time::sleep(every) => {}
                    _ = stop_rx.wait_for(|s| *s) => return,
                }
                if let Err(e) = loader.reload(None, false).await {
                    tracing::warn!("registry check of {} failed: {e}", loader.source());
                }
            }
        });

        tracing::info!(%http_addr, grpc_addr = ?grpc_addr, model = %options.model, "serving");
        Ok(Self {
            http_addr,
            grpc_addr,
            state,
            stop,
            tasks,
        })
    }

    /// Waits until a model is loaded; fails at once if the first load
    /// failed, or after `timeout`.
    pub async fn wait_ready(&self, timeout: Duration) -> Result<()> {
        let deadline = tokio::time::Instant::now() + timeout;
        while !self.state.slot.is_ready() {
            if let Some(e) = self.state.slot.last_error() {
                return Err(Error::Unavailable(format!("the model did not load: {e}")));
            }
            if tokio::time::Instant::now() > deadline {
                return Err(Error::Unavailable(format!(
                    "model not ready after {timeout:?}{}",
                    self.state
                        .slot
                        .last_error()
                        .map(|e| format!(": {e}"))
                        .unwrap_or_default()
                )));
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        Ok(())
    }

    /// Stops accepting, lets requests in flight finish, and returns.
    pub async fn shutdown(mut self) {
        let _ = self.stop.send(true);
        while self.tasks.join_next().await.is_some() {}
    }

    /// Serves until Ctrl-C or SIGTERM.
    pub async fn run_until_signal(self) -> Result<()> {
        let mut term = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate())
            .at("SIGTERM handler")?;
        tokio::select! {
            _ = tokio::signal::ctrl_c() => {}
            _ = term.recv() => {}
        }
        tracing::info!("shutting down");
        self.shutdown().await;
        Ok(())
    }
}
