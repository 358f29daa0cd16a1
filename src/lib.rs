//! breakroom: live production-debugging labs for conference talks and workshops.
//!
//! `main.rs` parses the command line and calls into this library; the tests start the
//! real server through [`build`] and [`serve`] on a port of their own.

pub mod config;
pub mod dev;
pub mod labs;
pub mod rehearse;

pub use ::driver;
pub use ::platform;
pub use platform::stage;
pub use shop::loadgen;

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
    let platform = Platform::start(config.platform(), lab.bugs(), shutdown).await?;
    let mut registry = Registry::default();
    let lab_router = labs::build(lab, &platform, &mut registry, &config).await?;
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

/// The shop's services, each on its own listener, ready to serve.
pub struct ShopServer {
    pub platform: Platform,
    pub services: Vec<(config::ShopService, TcpListener, axum::Router)>,
    shop: labs::shop::Services,
}

/// Builds the shop's services on the given listeners (one per service this process
/// runs). Checkout calls the catalog and the cart on this process's listeners when
/// it runs them, else at `--catalog-url` / `--cart-url`.
pub async fn build_shop(
    config: ServeConfig,
    shutdown: CancellationToken,
    listeners: Vec<(config::ShopService, TcpListener)>,
) -> anyhow::Result<ShopServer> {
    use config::ShopService;
    let local = |wanted: ShopService| {
        listeners.iter().find(|(s, _)| *s == wanted).and_then(|(_, l)| l.local_addr().ok()).map(|mut a| {
            if a.ip().is_unspecified() {
                a.set_ip(match a.ip() {
                    std::net::IpAddr::V4(_) => std::net::Ipv4Addr::LOCALHOST.into(),
                    std::net::IpAddr::V6(_) => std::net::Ipv6Addr::LOCALHOST.into(),
                });
            }
            format!("http://{a}")
        })
    };
    let peers = labs::shop::Peers {
        catalog: local(ShopService::Catalog)
            .or_else(|| config.shop.catalog_url.clone())
            .unwrap_or_else(|| format!("http://127.0.0.1:{}", config.shop.catalog_port))
            .trim_end_matches('/')
            .to_string(),
        cart: local(ShopService::Cart)
            .or_else(|| config.shop.cart_url.clone())
            .unwrap_or_else(|| format!("http://127.0.0.1:{}", config.shop.cart_port))
            .trim_end_matches('/')
            .to_string(),
    };
    let platform = Platform::start(config.platform(), labs::shop::BUGS, shutdown).await?;
    let mut shop = labs::shop::build(&platform, &config.shop, config.shop_data.products, peers).await?;
    let mut services = Vec::new();
    for (service, listener) in listeners {
        let position = shop.routers.iter().position(|(s, _)| *s == service);
        let router = position.map(|i| shop.routers.remove(i).1);
        let router = router.ok_or_else(|| anyhow::anyhow!("no {service:?} service was built"))?;
        services.push((service, listener, router));
    }
    Ok(ShopServer { platform, services, shop })
}

/// Serves every service of the shop until shutdown, then closes its pools and
/// flushes its traces.
pub async fn serve_shop(server: ShopServer) -> anyhow::Result<()> {
    let shutdown = server.platform.shutdown.clone();
    let mut tasks = tokio::task::JoinSet::new();
    for (_, listener, router) in server.services {
        tasks.spawn(platform::http::serve(listener, router, shutdown.clone()));
    }
    let mut result = Ok(());
    while let Some(done) = tasks.join_next().await {
        if let Ok(Err(error)) = done {
            shutdown.cancel();
            result = Err(error.into());
        }
    }
    server.shop.close().await;
    server.platform.close().await;
    result
}
