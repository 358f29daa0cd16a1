//! breakroom: live production-debugging labs for conference talks and workshops.
//!
//! `main.rs` parses the command line and calls into this library; the tests start the
//! real server through [`build`] and [`serve`] on a port of their own.

pub mod config;
pub mod driver;
pub mod labs;
pub mod platform;
pub mod rehearse;
pub mod stage;

use prometheus_client::registry::Registry;
use tokio::net::TcpListener;
use tokio_util::sync::CancellationToken;

use config::ServeConfig;
use platform::Platform;

/// A lab, built and ready to serve.
pub struct App {
    pub router: axum::Router,
    pub platform: Platform,
}

/// Connects the lab's backends, runs migrations, seeds, and assembles its router.
pub async fn build(config: ServeConfig, shutdown: CancellationToken) -> anyhow::Result<App> {
    let lab = config.lab;
    let platform = Platform::start(config, lab.bugs(), shutdown).await?;
    let mut registry = Registry::default();
    let lab_router = labs::build(lab, &platform, &mut registry).await?;
    let router = platform.assemble(lab_router, registry);
    Ok(App { router, platform })
}

/// Serves `app` on `listener` until `shutdown` fires; in-flight requests finish and
/// open event streams end, then the database pool is closed.
pub async fn serve(app: App, listener: TcpListener) -> anyhow::Result<()> {
    let shutdown = app.platform.shutdown.clone();
    platform::http::serve(listener, app.router, shutdown).await?;
    app.platform.close().await;
    Ok(())
}
