//! Startup: open the store, build the app, bind, serve until a shutdown signal.

use crate::app::App;
use crate::clock::{Clock, SystemClock};
use crate::config::Settings;
use crate::events::{EventBus, LocalEvents};
use crate::http::{self, AppState};
use std::net::SocketAddr;
use std::sync::Arc;
use tokio::net::TcpListener;

pub struct Server {
    listener: TcpListener,
    state: AppState,
}

impl Server {
    pub async fn build(settings: Settings) -> anyhow::Result<Self> {
        Self::build_with_clock(settings, Arc::new(SystemClock)).await
    }

    pub async fn build_with_clock(settings: Settings, clock: Arc<dyn Clock>) -> anyhow::Result<Self> {
        let url = settings.database_url();
        if url.starts_with("sqlite:") && settings.database.url.is_empty() {
            std::fs::create_dir_all(&settings.server.data_dir)
                .map_err(|e| anyhow::anyhow!("cannot create data directory {}: {e}", settings.server.data_dir.display()))?;
        }
        let store = crate::store::open(&url, settings.database.max_connections).await?;
        let listener = TcpListener::bind(settings.server.listen)
            .await
            .map_err(|e| anyhow::anyhow!("cannot listen on {}: {e}", settings.server.listen))?;
        let bound = listener.local_addr()?;
        let issuer = settings.public_url(bound);
        let events: Arc<dyn EventBus> = Arc::new(LocalEvents::default());
        let app = App::new(settings, store, events, clock, issuer).await?;
        Ok(Self { listener, state: AppState { app: Arc::new(app), metrics: http::metrics_handle() } })
    }

    pub fn local_addr(&self) -> SocketAddr {
        self.listener.local_addr().unwrap_or_else(|_| SocketAddr::from(([127, 0, 0, 1], 0)))
    }

    pub fn app(&self) -> Arc<App> {
        self.state.app.clone()
    }

    /// Serves until `shutdown` completes, then finishes in-flight requests.
    pub async fn run(self, shutdown: impl std::future::Future<Output = ()> + Send + 'static) -> anyhow::Result<()> {
        let router = http::router(self.state);
        axum::serve(self.listener, router.into_make_service_with_connect_info::<SocketAddr>()).with_graceful_shutdown(shutdown).await?;
        Ok(())
    }
}

/// Ctrl-C or SIGTERM.
pub async fn shutdown_signal() {
    let ctrl_c = async {
        let _ = tokio::signal::ctrl_c().await;
    };
    #[cfg(unix)]
    let term = async {
        match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
            Ok(mut s) => {
                s.recv().await;
            }
            Err(_) => std::future::pending::<()>().await,
        }
    };
    #[cfg(not(unix))]
    let term = std::future::pending::<()>();
    tokio::select! {
        _ = ctrl_c => {},
        _ = term => {},
    }
    tracing::info!("shutting down: finishing requests in flight");
}
