//! breakroom: live production-debugging labs for conference talks and workshops.
//!
//! `main.rs` parses the command line and calls into this library; the tests start the
//! real server through [`build`] and [`serve`] on ports of their own.

pub mod config;
pub mod dev;
pub mod hint;
pub mod join;
pub mod labs;
pub mod rehearse;

pub use ::driver;
pub use ::platform;
pub use platform::stage;
pub use shop::loadgen;

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};

use tokio::net::TcpListener;
use tokio_util::sync::CancellationToken;

use config::ServeConfig;
use platform::Platform;
use platform::lab::{Boxed, Service};

/// A lab, built and ready to serve: each of its services with its listener.
pub struct App {
    pub platform: Platform,
    pub services: Vec<(Service, TcpListener)>,
    /// The workshop room, when the lab was served with `--room`.
    pub room: Option<std::sync::Arc<platform::room::Room>>,
    close: Option<Boxed<'static, ()>>,
}

impl App {
    /// Where this machine reaches each service.
    pub fn urls(&self) -> Vec<(&'static str, String)> {
        self.services.iter().filter_map(|(s, l)| l.local_addr().ok().map(|a| (s.name, loopback_url(a)))).collect()
    }
}

/// `http://ADDRESS`, with a wildcard address replaced by loopback.
pub fn loopback_url(mut address: SocketAddr) -> String {
    if address.ip().is_unspecified() {
        address.set_ip(match address.ip() {
            IpAddr::V4(_) => Ipv4Addr::LOCALHOST.into(),
            IpAddr::V6(_) => Ipv6Addr::LOCALHOST.into(),
        });
    }
    format!("http://{address}")
}

/// A listener on 127.0.0.1, on a port the system picks, for each service of the
/// lab: how the tests and the rehearsals run one.
pub async fn local_listeners(config: &ServeConfig) -> std::io::Result<Vec<(&'static str, TcpListener)>> {
    let mut listeners = Vec::new();
    for spec in config.open().services() {
        listeners.push((spec.name, TcpListener::bind("127.0.0.1:0").await?));
    }
    Ok(listeners)
}

/// Connects the lab's backends, runs migrations, seeds, and assembles the router of
/// each service given a listener (by the names of the lab's services).
pub async fn build(
    config: ServeConfig,
    shutdown: CancellationToken,
    listeners: Vec<(&'static str, TcpListener)>,
) -> anyhow::Result<App> {
    let lab = config.open();
    let platform = Platform::start(config.platform, lab.bugs(), shutdown).await?;
    let local: Vec<(&'static str, String)> =
        listeners.iter().filter_map(|(name, l)| l.local_addr().ok().map(|a| (*name, loopback_url(a)))).collect();
    platform.console.configure(lab.console())?;
    let mut built = lab.build(&platform, &local).await?;
    let mut services = Vec::new();
    for (name, listener) in listeners {
        let position = built.services.iter().position(|s| s.name == name);
        let service = position.map(|i| built.services.remove(i));
        let mut service = service.ok_or_else(|| anyhow::anyhow!("the {} lab has no service '{name}'", lab.name()))?;
        if !lab.home_page() {
            let landing = platform::landing::Landing {
                lab: lab.name(),
                service: service.name,
                scenarios: lab.scenarios(),
                bugs: platform.bugs.clone(),
                siblings: local.iter().filter(|(n, _)| *n != service.name).cloned().collect(),
            };
            service.router = platform::landing::wrap(service.router, landing);
        }
        services.push((service, listener));
    }
    platform.console.start(platform.shutdown.clone());
    // The room lives on the lab's first service: one board, one join URL.
    let room = match (platform.config.room, services.first_mut()) {
        (true, Some((service, _))) => {
            let names = lab.scenarios().iter().map(|s| s.name).collect();
            let room = platform::room::Room::open(&platform, names).await?;
            service.router = room.wrap(std::mem::take(&mut service.router));
            Some(room)
        }
        _ => None,
    };
    Ok(App { platform, services, room, close: built.close })
}

/// Serves every service of `app` until `shutdown` fires: in-flight requests finish
/// and open event streams end, then the lab's own resources and the database pool
/// are closed.
pub async fn serve(app: App) -> anyhow::Result<()> {
    let shutdown = app.platform.shutdown.clone();
    let mut tasks = tokio::task::JoinSet::new();
    for (service, listener) in app.services {
        tasks.spawn(platform::http::serve(listener, service.router, shutdown.clone()));
    }
    let mut result = Ok(());
    while let Some(done) = tasks.join_next().await {
        if let Ok(Err(error)) = done {
            shutdown.cancel();
            result = Err(error.into());
        }
    }
    if let Some(close) = app.close {
        close.await;
    }
    app.platform.close().await;
    result
}
