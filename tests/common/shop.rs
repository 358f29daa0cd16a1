//! `spawn_shop()`: the shop's three services on ports of their own, on either backend.

use std::sync::Arc;
use std::time::Duration;

use breakroom::config::ServeConfig;
use breakroom::labs::LabName;
use serde_json::Value;
use sqlx::Connection;
use tokio_util::sync::CancellationToken;

use super::{ADMIN_TOKEN, Backend, Resources};

pub struct TestShop {
    pub catalog: String,
    pub cart: String,
    pub checkout: String,
    pub payment: String,
    pub client: reqwest::Client,
    pub backend: Backend,
    shutdown: CancellationToken,
    server: Option<tokio::task::JoinHandle<anyhow::Result<()>>>,
    resources: Arc<Resources>,
}

/// A shop with `products` generated products; `adjust` may change any setting.
pub async fn spawn_shop(backend: Backend, products: u64, adjust: impl FnOnce(&mut ServeConfig)) -> TestShop {
    let data_dir = tempfile::tempdir().expect("temporary data directory");
    let mut config = ServeConfig::embedded(LabName::Shop, data_dir.path().to_path_buf());
    config.platform.admin_token = Some(ADMIN_TOKEN.into());
    config.settings.shop_data.products = products;
    let mut resources = Resources { data_dir, database: None, database_url: None, redis_prefix: None };
    if backend == Backend::Services {
        super::use_services(&mut config, &mut resources).await;
    }
    adjust(&mut config);
    let listeners = breakroom::local_listeners(&config).await.unwrap();
    let shutdown = CancellationToken::new();
    let server = breakroom::build(config, shutdown.clone(), listeners).await.expect("the shop starts");
    let url = |name: &str| server.urls().into_iter().find(|(n, _)| *n == name).map(|(_, url)| url).unwrap();
    let (catalog, cart, checkout, payment) = (url("product-catalog"), url("cart"), url("checkout"), url("payment"));
    let server = tokio::spawn(breakroom::serve(server));
    let client = breakroom::platform::http::client().timeout(Duration::from_secs(30)).build().unwrap();
    TestShop {
        catalog,
        cart,
        checkout,
        payment,
        client,
        backend,
        shutdown,
        server: Some(server),
        resources: Arc::new(resources),
    }
}

/// A lock held by the test on the shop's database, as a long transaction would hold it.
pub enum HeldLock {
    Postgres(sqlx::PgConnection),
    Sqlite(sqlx::SqliteConnection),
}

impl HeldLock {
    pub async fn release(self) {
        match self {
            HeldLock::Postgres(mut c) => drop(sqlx::query("ROLLBACK").execute(&mut c).await),
            HeldLock::Sqlite(mut c) => drop(sqlx::query("ROLLBACK").execute(&mut c).await),
        }
    }
}

impl TestShop {
    pub fn data_dir(&self) -> &std::path::Path {
        self.resources.data_dir.path()
    }

    pub fn database_url(&self) -> Option<&str> {
        self.resources.database_url.as_deref()
    }

    pub async fn get(&self, base: &str, path: &str) -> (u16, Value) {
        let response = self.client.get(format!("{base}{path}")).send().await.expect("GET reaches the shop");
        let status = response.status().as_u16();
        (status, response.json().await.unwrap_or(Value::Null))
    }

    pub async fn post(&self, base: &str, path: &str, body: &Value) -> (u16, Value) {
        let response =
            self.client.post(format!("{base}{path}")).json(body).send().await.expect("POST reaches the shop");
        let status = response.status().as_u16();
        (status, response.json().await.unwrap_or(Value::Null))
    }

    pub async fn admin(&self, base: &str, path: &str, body: Option<&Value>) -> (u16, Value) {
        let mut request = self.client.post(format!("{base}{path}")).bearer_auth(ADMIN_TOKEN);
        if let Some(body) = body {
            request = request.json(body);
        }
        let response = request.send().await.expect("POST reaches the shop");
        let status = response.status().as_u16();
        (status, response.json().await.unwrap_or(Value::Null))
    }

    pub async fn admin_get(&self, base: &str, path: &str) -> (u16, Value) {
        let response = self
            .client
            .get(format!("{base}{path}"))
            .bearer_auth(ADMIN_TOKEN)
            .send()
            .await
            .expect("GET reaches the shop");
        let status = response.status().as_u16();
        (status, response.json().await.unwrap_or(Value::Null))
    }

    pub async fn metrics(&self, base: &str) -> String {
        self.client.get(format!("{base}/metrics")).send().await.unwrap().text().await.unwrap()
    }

    /// Holds product 1 (PostgreSQL: its row lock) or the database's write lock (SQLite)
    /// until released: checkouts of product 1 wait behind it holding their connections.
    pub async fn hold_lock(&self) -> HeldLock {
        match self.database_url() {
            Some(url) => {
                let mut conn = sqlx::PgConnection::connect(url).await.unwrap();
                sqlx::query("BEGIN").execute(&mut conn).await.unwrap();
                sqlx::query("SELECT id FROM products WHERE id = 1 FOR UPDATE").execute(&mut conn).await.unwrap();
                HeldLock::Postgres(conn)
            }
            None => {
                let path = self.data_dir().join("shop.db");
                let mut conn = sqlx::SqliteConnection::connect(&format!("sqlite://{}", path.display())).await.unwrap();
                sqlx::query("BEGIN IMMEDIATE").execute(&mut conn).await.unwrap();
                HeldLock::Sqlite(conn)
            }
        }
    }

    /// One number straight from the shop's database.
    pub async fn sql_count(&self, sql: &'static str) -> i64 {
        match self.database_url() {
            Some(url) => {
                let mut conn = sqlx::PgConnection::connect(url).await.unwrap();
                sqlx::query_scalar::<_, i64>(sql).fetch_one(&mut conn).await.unwrap()
            }
            None => {
                let path = self.data_dir().join("shop.db");
                let mut conn = sqlx::SqliteConnection::connect(&format!("sqlite://{}", path.display())).await.unwrap();
                sqlx::query_scalar::<_, i64>(sql).fetch_one(&mut conn).await.unwrap()
            }
        }
    }

    pub async fn stop(&mut self) {
        self.shutdown.cancel();
        if let Some(server) = self.server.take() {
            let _ = tokio::time::timeout(Duration::from_secs(10), server).await;
        }
    }
}

impl Drop for TestShop {
    fn drop(&mut self) {
        self.shutdown.cancel();
    }
}

impl TestShop {
    /// Where the four services answer, as the stage commands take them.
    pub fn urls(&self) -> breakroom::driver::ShopUrls {
        breakroom::driver::ShopUrls {
            catalog_url: self.catalog.clone(),
            cart_url: self.cart.clone(),
            checkout_url: self.checkout.clone(),
            payment_url: self.payment.clone(),
        }
    }
}

/// `breakroom serve loadgen` in this process, driving `shop`; its admin token is
/// `loadgen-token` (from loopback it needs none).
pub async fn start_loadgen(shop: &TestShop) -> String {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let url = format!("http://{}", listener.local_addr().unwrap());
    let config = breakroom::loadgen::LoadgenConfig {
        urls: shop.urls(),
        admin: breakroom::platform::http::AdminToken::new("loadgen-token"),
        shop_token: Some(super::ADMIN_TOKEN.into()),
        data_dir: shop.data_dir().to_path_buf(),
    };
    tokio::spawn(breakroom::loadgen::serve(listener, config, CancellationToken::new()));
    url
}
