//! Startup: open the store, build the app, bind, serve until a shutdown signal.

use crate::clock::{Clock, SystemClock};
use crate::config::Settings;
use crate::events::{EventBus, LocalEvents, PgEvents};
use crate::http::{self, AppState};
use crate::service::App;
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
        let store = open_store(&settings, settings.database.max_connections).await?;
        let listener = TcpListener::bind(settings.server.listen)
            .await
            .map_err(|e| anyhow::anyhow!("cannot listen on {}: {e}", settings.server.listen))?;
        let bound = listener.local_addr()?;
        if settings.server.public_url.is_none() && !bound.ip().is_loopback() {
            tracing::warn!(%bound, "listening beyond loopback without server.public_url: tokens name http://{bound} as issuer and browser forms will be refused; set server.public_url");
        }
        let issuer = settings.public_url(bound);
        // One instance on SQLite: in-process events. PostgreSQL: across instances.
        let db_url = settings.database_url();
        let events: Arc<dyn EventBus> =
            if db_url.starts_with("postgres") { PgEvents::start(&db_url).await? } else { Arc::new(LocalEvents::default()) };
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
        let sweeper = tokio::spawn(sweep_forever(self.state.app.clone()));
        // Upstreams' discovery in the background: the server serves at once, even if one is down.
        let app = self.state.app.clone();
        let warm = tokio::spawn(async move { app.upstreams.warm_up(app.now()).await });
        let router = http::router(self.state);
        axum::serve(self.listener, axum::ServiceExt::into_make_service_with_connect_info::<SocketAddr>(router))
            .with_graceful_shutdown(shutdown)
            .await?;
        sweeper.abort();
        warm.abort();
        Ok(())
    }
}

/// Housekeeping every five minutes; errors are logged and retried next round.
async fn sweep_forever(app: Arc<App>) {
    let keep_dead = 30 * 86_400;
    let mut tick = tokio::time::interval(std::time::Duration::from_secs(300));
    loop {
        tick.tick().await;
        match app.store.sweep(app.now(), keep_dead).await {
            Ok(n) if n > 0 => tracing::info!(deleted = n, "housekeeping"),
            Ok(_) => {}
            Err(e) => tracing::warn!(error = %e, "housekeeping failed"),
        }
    }
}

/// Opens the configured store. For the embedded SQLite database in the data directory, the
/// directory is created owner-only and the database files are made owner-only: they hold the
/// signing keys and server secrets.
pub async fn open_store(settings: &Settings, max_connections: u32) -> anyhow::Result<crate::store::DynStore> {
    let url = settings.database_url();
    let embedded = url.starts_with("sqlite:") && settings.database.url.is_empty();
    if embedded {
        let dir = &settings.server.data_dir;
        if !dir.exists() {
            std::fs::create_dir_all(dir).map_err(|e| anyhow::anyhow!("cannot create data directory {}: {e}", dir.display()))?;
            restrict(dir, 0o700);
        }
    }
    let store = crate::store::open(&url, max_connections).await?;
    if embedded {
        for name in ["latchkey.db", "latchkey.db-wal", "latchkey.db-shm"] {
            let p = settings.server.data_dir.join(name);
            if p.exists() {
                restrict(&p, 0o600);
            }
        }
    }
    Ok(store)
}

fn restrict(path: &std::path::Path, mode: u32) {
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        if let Err(e) = std::fs::set_permissions(path, std::fs::Permissions::from_mode(mode)) {
            tracing::warn!(path = %path.display(), error = %e, "cannot restrict permissions");
        }
    }
    #[cfg(not(unix))]
    let _ = (path, mode);
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
