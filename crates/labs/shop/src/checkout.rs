//! Checkout (port 8016): asks the catalog and the cart over HTTP (with `traceparent`),
//! then places the order in one transaction on its own pool: take the stock, read the
//! restock list, insert the order. With the indexes gone the restock read is a full
//! scan that keeps the connection — and the product's row lock — for its whole
//! length; with the pool cut to 20 and a 5 s acquire timeout, the rest wait and fail.

pub(crate) mod admin;
pub mod pay;

use std::sync::Arc;
use std::time::Duration;

use axum::extract::{Extension, State};
use axum::http::StatusCode;
use axum::routing::{get, post};
use axum::{Json, Router};
use opentelemetry::KeyValue;
use opentelemetry::trace::{SpanKind, TraceContextExt};
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::histogram::Histogram;
use prometheus_client::registry::Registry;
use serde::Deserialize;
use serde_json::Value;

use super::cart::valid_id;
use super::pool::{CheckoutPool, Conn, Exhausted, PoolSettings, on_conn};
use super::store::{HISTORY_USER_PREFIX, Plan, Product, QueryShape, ShopStore};
use super::trace::{RequestTrace, ServiceTrace, inject};
use super::{Peers, QueryMetrics, RETRY_BUG, bad_request, db_error, timed_query};
use platform::Platform;
use platform::clock;
use platform::http::{ApiError, JsonBody};

/// The histogram of how long placed checkouts held the restock reservation: one at a
/// time hold it, so its mean bounds how many checkouts a second the shop can place.
pub const RESERVATION_METRIC: &str = "shop_checkout_reservation_seconds";

/// How long checkout waits for the catalog or the cart.
const PEER_TIMEOUT: Duration = Duration::from_secs(10);

struct Checkout {
    platform: Platform,
    store: ShopStore,
    pool: Arc<CheckoutPool>,
    peers: Peers,
    client: reqwest::Client,
    trace: ServiceTrace,
    queries: QueryMetrics,
    metrics: CheckoutMetrics,
    payments: pay::Payments,
}

#[derive(Clone)]
struct CheckoutMetrics {
    checkouts: Family<Vec<(String, String)>, Counter>,
    exhausted: Counter,
    pool_size: Gauge,
    pool_wait: Histogram,
    reservation: Histogram,
}

type Lab = State<Arc<Checkout>>;

pub fn router(
    platform: &Platform,
    store: ShopStore,
    pool: Arc<CheckoutPool>,
    peers: Peers,
    trace: ServiceTrace,
    registry: &mut Registry,
) -> Router {
    let payments = pay::Payments::new(peers.payment.clone(), platform.bugs.switch(RETRY_BUG), registry);
    let queries = QueryMetrics::new(registry);
    let metrics = CheckoutMetrics {
        checkouts: Family::default(),
        exhausted: Counter::default(),
        pool_size: Gauge::default(),
        pool_wait: Histogram::new([0.001, 0.01, 0.1, 0.5, 1.0, 2.0, 5.0, 10.0, 30.0]),
        reservation: Histogram::new([0.001, 0.005, 0.01, 0.05, 0.1, 0.5, 1.0, 5.0]),
    };
    registry.register(
        "shop_checkouts",
        "Checkouts by outcome (success, failed) and failure reason",
        metrics.checkouts.clone(),
    );
    registry.register(
        "shop_db_pool_exhausted",
        "Checkouts that found no database connection within the acquire timeout",
        metrics.exhausted.clone(),
    );
    registry.register("shop_db_pool_size", "Connections checkout's pool may open", metrics.pool_size.clone());
    registry.register(
        "shop_db_pool_wait_seconds",
        "How long checkouts waited for a database connection",
        metrics.pool_wait.clone(),
    );
    registry.register(
        RESERVATION_METRIC,
        "How long a placed checkout held the restock reservation (checkouts wait for it one after another)",
        metrics.reservation.clone(),
    );
    metrics.pool_size.set(i64::from(pool.settings().max_connections));
    let client = platform::http::client().timeout(PEER_TIMEOUT).build().expect("an HTTP client builds");
    let checkout = Arc::new(Checkout {
        platform: platform.clone(),
        store,
        pool,
        peers,
        client,
        trace,
        queries,
        metrics,
        payments,
    });
    let admin = platform.admin_only(
        Router::new()
            .route("/admin/pool", get(admin::pool_status).post(admin::resize))
            .route("/admin/reset", post(admin::reset)),
    );
    Router::new()
        .route("/orders/create", post(create))
        .route("/orders/popular-products", get(popular))
        .route("/health", get(health))
        .merge(admin)
        .merge(platform::openapi::route(super::openapi::checkout()))
        .with_state(checkout)
}

/// `POST /orders/create`. Read by the handler, so a wrong value is a 400 in the
/// shop's own words.
#[derive(Deserialize, utoipa::ToSchema)]
#[schema(as = OrderInput)]
pub struct CreateBody {
    /// Letters, digits, `-` and `_`, not starting with `history-` (the generated order
    /// history's users); or an integer, taken as its digits.
    #[schema(schema_with = super::openapi::user_id_schema, required = true)]
    user_id: Option<Value>,
    #[schema(value_type = i64, required = true, minimum = 1, maximum = 9007199254740991_i64, example = 42)]
    product_id: Option<Value>,
    #[schema(value_type = Option<i64>, minimum = 1, maximum = 100, nullable, example = 1)]
    quantity: Option<Value>,
}

/// Why a checkout failed, as `checkout.failure_reason` and the metric label say it.
#[derive(Debug, Clone, Copy)]
enum Failure {
    PoolExhausted,
    CatalogUnavailable,
    CartUnavailable,
    OutOfStock,
    DatabaseError,
    PaymentUnavailable,
}

impl Failure {
    fn as_str(self) -> &'static str {
        match self {
            Failure::PoolExhausted => "pool_exhausted",
            Failure::CatalogUnavailable => "catalog_unavailable",
            Failure::CartUnavailable => "cart_unavailable",
            Failure::OutOfStock => "out_of_stock",
            Failure::DatabaseError => "database_error",
            Failure::PaymentUnavailable => "payment_unavailable",
        }
    }
}

impl Checkout {
    fn failed(&self, request: &RequestTrace, reason: Failure, user_id: &str, product_id: i64, total: f64) {
        request.set([
            KeyValue::new("checkout.failed", true),
            KeyValue::new("checkout.failure_reason", reason.as_str()),
            KeyValue::new("checkout.user_id", user_id.to_string()),
            KeyValue::new("checkout.total", total),
        ]);
        self.metrics
            .checkouts
            .get_or_create(&vec![("outcome".into(), "failed".into()), ("reason".into(), reason.as_str().into())])
            .inc();
        tracing::warn!(
            reason = reason.as_str(),
            user_id,
            product_id,
            total,
            trace_id = %request.trace_id(),
            "demo_checkout_failed"
        );
    }

    /// GET `url` on a peer, in a client span, with `traceparent`.
    async fn call(&self, request: &RequestTrace, name: &'static str, url: String) -> Result<(u16, Value), String> {
        let span = self.trace.child(request, name, SpanKind::Client);
        let mut headers = axum::http::HeaderMap::new();
        inject(&span, &mut headers);
        let result = async {
            let response = self.client.get(&url).headers(headers).send().await.map_err(|e| e.to_string())?;
            let status = response.status().as_u16();
            let body = response.json::<Value>().await.unwrap_or(Value::Null);
            Ok((status, body))
        }
        .await;
        if let Ok((status, _)) = &result {
            span.set([KeyValue::new("http.response.status_code", i64::from(*status))]);
        }
        span.0.span().end();
        result
    }
}

fn user_id(value: &Value) -> Result<String, ApiError> {
    let id = match value {
        // Not trimmed: " u1" would be stored as "u1" and no longer match its cart.
        Value::String(s) => s.clone(),
        Value::Number(_) => match super::json_integer(value) {
            Some(n) => n.to_string(),
            None => return Err(bad_request("user_id must be a string or an integer")),
        },
        _ => return Err(bad_request("user_id must be a string or an integer")),
    };
    if !valid_id(&id) {
        return Err(bad_request("user_id: 1 to 64 letters, digits, '-' or '_'"));
    }
    if id.starts_with(HISTORY_USER_PREFIX) {
        return Err(bad_request(format!(
            "user_id must not start with '{HISTORY_USER_PREFIX}' (kept for the generated history)"
        )));
    }
    Ok(id)
}

/// `POST /orders/create` `{"user_id": "u1", "product_id": 42, "quantity": 1}` → 201.
#[utoipa::path(
    post,
    path = "/orders/create",
    tag = "checkout",
    request_body = CreateBody,
    responses(
        (status = 201, description = "The order is placed and the stock taken", body = super::openapi::OrderBody),
        (status = 400, description = "A bad user id, product id or quantity", body = super::openapi::ShopError),
        (status = 404, description = "No such product", body = super::openapi::ShopError),
        (status = 409, description = "Out of stock", body = super::openapi::ShopError),
        (status = 413, description = "Body over 64 KiB", body = super::openapi::ShopError),
        (status = 422, description = "Not a JSON object", body = super::openapi::ShopError),
        (status = 502, description = "The catalog or the cart did not answer; see Retry-After", body = super::openapi::ShopError),
        (status = 503, description = "Checkout's connection pool is exhausted, the database busy, or the payment not authorized; see Retry-After", body = super::openapi::ShopError),
    )
)]
async fn create(
    State(lab): Lab,
    Extension(request): Extension<RequestTrace>,
    JsonBody(body): JsonBody<CreateBody>,
) -> Result<(StatusCode, Json<super::openapi::OrderBody>), ApiError> {
    let (Some(raw_user), Some(raw_product)) = (&body.user_id, &body.product_id) else {
        return Err(bad_request("user_id and product_id required"));
    };
    if raw_user.is_null() || raw_product.is_null() {
        return Err(bad_request("user_id and product_id required"));
    }
    let user_id = user_id(raw_user)?;
    let product_id = super::json_integer(raw_product)
        .filter(|id| *id > 0)
        .ok_or_else(|| bad_request("product_id must be a positive integer"))?;
    let quantity = super::optional_integer(body.quantity.as_ref(), 1..=100, 1, super::QUANTITY)? as i32;
    request.set([KeyValue::new("checkout.user_id", user_id.clone()), KeyValue::new("checkout.product_id", product_id)]);

    // 0. The payment, before a connection is taken: a slow processor never holds the pool.
    let order = serde_json::json!({ "user_id": user_id, "product_id": product_id, "quantity": quantity });
    if let Err(unpaid) = lab.payments.authorize(&lab.trace, &request, &order).await {
        lab.failed(&request, Failure::PaymentUnavailable, &user_id, product_id, 0.0);
        tracing::warn!(
            calls = unpaid.calls,
            last_failure = unpaid.last.as_str(),
            trace_id = %request.trace_id(),
            "payment_not_authorized"
        );
        let message = format!("payment not authorized after {} calls: {}", unpaid.calls, unpaid.last);
        return Err(ApiError::unavailable(message).as_error_field().with_retry_after(1));
    }

    // 1. A connection from checkout's own pool, and the order's transaction opened on
    // it at once — so the connection is held while the catalog and the cart answer.
    let mut conn = match acquire(&lab, &request).await {
        Ok(conn) => conn,
        Err(error) => {
            let reason = if error.status() == StatusCode::SERVICE_UNAVAILABLE && error.detail().contains("exhausted") {
                Failure::PoolExhausted
            } else {
                Failure::DatabaseError
            };
            lab.failed(&request, reason, &user_id, product_id, 0.0);
            return Err(error);
        }
    };
    // The planner's view is for the spans: when it cannot be read, the checkout goes on.
    let plan =
        lab.store.plan(QueryShape::RestockCheck).await.unwrap_or_else(|_| Plan::unknown(QueryShape::RestockCheck));
    let postgres = lab.store.db().is_postgres();
    let order_date = clock::now();
    let placed: Result<(i64, i64, f64), Failed> = on_conn!(&mut conn, |c| {
        async {
            // 2. Reserve the restock list, so two checkouts never reorder the same
            // product, and take the stock. Checkouts queue behind each other's
            // reservation, each holding its pooled connection while it waits. On
            // PostgreSQL the reservation comes first (`FOR UPDATE`, in id order: one lock
            // order for every checkout); on SQLite the stock update takes the database's
            // one write lock, which serializes the same way.
            let reserve = if postgres {
                "SELECT COUNT(*) FROM (SELECT id FROM products WHERE stock_quantity < 5 ORDER BY id FOR UPDATE) low"
            } else {
                "SELECT COUNT(*) FROM products WHERE stock_quantity < 5"
            };
            let read_first = if postgres {
                None
            } else {
                // On SQLite the restock list is read before the write transaction: the scan
                // holds the pooled connection (WAL readers scan side by side, as
                // PostgreSQL's do), not the one write lock. Under the lock, twenty
                // connections queued back to back behind million-row scans waited longer
                // than any busy timeout, and checkouts failed on "database is locked"
                // rather than on the pool.
                let query = sqlx::query_scalar::<_, i64>(reserve).fetch_one(&mut **c);
                Some(timed_query(&lab.trace, &request, &lab.queries, &plan, query).await.map_err(Failed::database)?)
            };
            let mut tx = sqlx::Connection::begin(&mut **c).await.map_err(Failed::database)?;
            // On SQLite the catalog and the cart are asked first: they share the database,
            // and a cart add waiting for the write lock this checkout held would hold the
            // cart's connections while this checkout waited for the cart — each waiting
            // for the other until SQLite's busy timeout. The pooled connection is held
            // all the same (the transaction is open).
            let early = if postgres { None } else { Some(lab.ask_peers(&request, product_id, &user_id).await?) };
            let restock = match read_first {
                Some(count) => count,
                None => {
                    let query = sqlx::query_scalar::<_, i64>(reserve).fetch_one(&mut *tx);
                    timed_query(&lab.trace, &request, &lab.queries, &plan, query).await.map_err(Failed::database)?
                }
            };
            // When this checkout got the reservation (PostgreSQL: the rows' locks; SQLite:
            // the write lock, at the UPDATE below): from then on the others wait.
            let reserved = postgres.then(std::time::Instant::now);
            let taken: Option<f64> = sqlx::query_scalar(
                "UPDATE products SET stock_quantity = stock_quantity - $2 \
                 WHERE id = $1 AND stock_quantity >= $2 RETURNING price",
            )
            .bind(product_id)
            .bind(quantity)
            .fetch_optional(&mut *tx)
            .await
            .map_err(Failed::database)?;
            let reserved = reserved.unwrap_or_else(std::time::Instant::now);
            let Some(price) = taken else {
                let exists: Option<i64> = sqlx::query_scalar("SELECT id FROM products WHERE id = $1")
                    .bind(product_id)
                    .fetch_optional(&mut *tx)
                    .await
                    .map_err(Failed::database)?;
                let error = match exists {
                    Some(_) => ApiError::new(StatusCode::CONFLICT, format!("Product {product_id} is out of stock")),
                    None => ApiError::not_found(format!("Product {product_id} not found")),
                };
                return Err(Failed { error: error.as_error_field(), reason: Failure::OutOfStock, total: 0.0 });
            };
            let total = ((price * f64::from(quantity)) * 100.0).round() / 100.0;
            // 4. The catalog and the cart over HTTP (PostgreSQL: inside the reservation): the order
            // confirmation shows the product as the catalog has it and the cart's size.
            // (Every millisecond they take, the locks above are held: see the runbook.)
            let (product, items) = match early {
                Some(asked) => asked,
                None => lab.ask_peers(&request, product_id, &user_id).await.map_err(|e| e.with_total(total))?,
            };
            request.set([KeyValue::new("checkout.product_name", product.name)]);
            request.set([KeyValue::new("checkout.cart_items", items)]);
            // 5. The order.
            let order_id: i64 = sqlx::query_scalar(
                "INSERT INTO orders (user_id, product_id, quantity, total, order_date) \
                 VALUES ($1, $2, $3, $4, $5) RETURNING id",
            )
            .bind(&user_id)
            .bind(product_id)
            .bind(quantity)
            .bind(total)
            .bind(&order_date)
            .fetch_one(&mut *tx)
            .await
            .map_err(|e| Failed::database(e).with_total(total))?;
            tx.commit().await.map_err(|e| Failed::database(e).with_total(total))?;
            lab.metrics.reservation.observe(reserved.elapsed().as_secs_f64());
            Ok((order_id, restock, total))
        }
        .await
    });
    drop(conn);
    match placed {
        Ok((order_id, restock, total)) => {
            request.set([
                KeyValue::new("checkout.failed", false),
                KeyValue::new("checkout.order_id", order_id),
                KeyValue::new("checkout.total", total),
                KeyValue::new("checkout.restock_queue", restock),
            ]);
            lab.metrics.checkouts.get_or_create(&vec![("outcome".into(), "success".into())]).inc();
            Ok((
                StatusCode::CREATED,
                Json(super::openapi::OrderBody {
                    success: true,
                    order_id,
                    user_id,
                    product_id,
                    quantity,
                    total,
                    order_date,
                }),
            ))
        }
        Err(failed) => {
            if failed.error.status() != StatusCode::NOT_FOUND {
                lab.failed(&request, failed.reason, &user_id, product_id, failed.total);
            }
            Err(failed.error)
        }
    }
}

/// A checkout that failed inside its transaction (rolled back when dropped).
struct Failed {
    error: ApiError,
    reason: Failure,
    total: f64,
}

impl Failed {
    fn database(error: sqlx::Error) -> Failed {
        Failed { error: db_error(error), reason: Failure::DatabaseError, total: 0.0 }
    }

    fn with_total(mut self, total: f64) -> Failed {
        self.total = total;
        self
    }

    fn peer(reason: Failure, message: String) -> Failed {
        let error = ApiError::new(StatusCode::BAD_GATEWAY, message).as_error_field().with_retry_after(1);
        Failed { error, reason, total: 0.0 }
    }
}

impl Checkout {
    /// The product from the catalog and the size of the user's cart.
    async fn ask_peers(
        &self,
        request: &RequestTrace,
        product_id: i64,
        user_id: &str,
    ) -> Result<(Product, i64), Failed> {
        let product = self.product(request, product_id).await?;
        let items = self.cart_items(request, user_id).await?;
        Ok((product, items))
    }

    /// The product as the catalog has it, over HTTP.
    async fn product(&self, request: &RequestTrace, product_id: i64) -> Result<Product, Failed> {
        let url = format!("{}/products/{product_id}", self.peers.catalog);
        match self.call(request, "GET product-catalog /products/{id}", url).await {
            Ok((200, body)) => serde_json::from_value(body).map_err(|e| {
                Failed::peer(Failure::CatalogUnavailable, format!("the catalog answered an unreadable product: {e}"))
            }),
            Ok((404, _)) => Err(Failed {
                error: ApiError::not_found(format!("Product {product_id} not found")).as_error_field(),
                reason: Failure::CatalogUnavailable,
                total: 0.0,
            }),
            Ok((status, body)) => {
                let cause = body["error"].as_str().or(body["detail"].as_str()).unwrap_or("").to_string();
                Err(Failed::peer(
                    Failure::CatalogUnavailable,
                    format!("the product catalog answered {status}: {cause}"),
                ))
            }
            Err(error) => {
                Err(Failed::peer(Failure::CatalogUnavailable, format!("the product catalog is unreachable: {error}")))
            }
        }
    }

    /// How many items the user's cart holds, over HTTP.
    async fn cart_items(&self, request: &RequestTrace, user_id: &str) -> Result<i64, Failed> {
        let url = format!("{}/cart/{user_id}", self.peers.cart);
        match self.call(request, "GET cart /cart/{cart_id}", url).await {
            Ok((200, cart)) => Ok(cart["item_count"].as_i64().unwrap_or(0)),
            Ok((status, _)) => Err(Failed::peer(Failure::CartUnavailable, format!("the cart answered {status}"))),
            Err(error) => Err(Failed::peer(Failure::CartUnavailable, format!("the cart is unreachable: {error}"))),
        }
    }
}

/// A connection, or the 503 that says the pool is exhausted and by how much.
async fn acquire(lab: &Checkout, request: &RequestTrace) -> Result<Conn, ApiError> {
    match lab.pool.acquire().await {
        Ok((conn, waited, settings)) => {
            lab.metrics.pool_wait.observe(waited.as_secs_f64());
            request.set(pool_attributes(false, settings, waited, lab.pool.rejected()));
            Ok(conn)
        }
        Err(Ok(exhausted)) => {
            lab.metrics.pool_wait.observe(exhausted.waited.as_secs_f64());
            lab.metrics.exhausted.inc();
            request.set(pool_attributes(true, exhausted.settings, exhausted.waited, exhausted.rejected));
            log_exhausted(&exhausted, request);
            Err(ApiError::unavailable(exhausted.message()).as_error_field().with_retry_after(5))
        }
        Err(Err(error)) => Err(db_error(error)),
    }
}

fn pool_attributes(exhausted: bool, settings: PoolSettings, waited: Duration, rejected: u64) -> Vec<KeyValue> {
    vec![
        KeyValue::new("db.connection.pool.exhausted", exhausted),
        KeyValue::new("db.connection.pool.size", i64::from(settings.max_connections)),
        KeyValue::new("db.connection.pool.wait_time_ms", waited.as_millis() as i64),
        KeyValue::new("db.connection.pool.rejected_count", rejected as i64),
    ]
}

fn log_exhausted(exhausted: &Exhausted, request: &RequestTrace) {
    tracing::error!(
        pool_size = exhausted.settings.max_connections,
        acquire_timeout_ms = exhausted.settings.acquire_timeout_ms,
        wait_time_ms = exhausted.waited.as_millis() as u64,
        rejected_count = exhausted.rejected,
        trace_id = %request.trace_id(),
        "demo_pool_exhaustion"
    );
}

/// `GET /orders/popular-products`: on checkout's own pool, so it starves with the rest.
#[utoipa::path(
    get,
    path = "/orders/popular-products",
    tag = "checkout",
    responses(
        (status = 200, description = "The ten most ordered products", body = super::openapi::Bestsellers),
        (status = 503, description = "Checkout's connection pool is exhausted or the database busy", body = super::openapi::ShopError),
    )
)]
async fn popular(
    State(lab): Lab,
    Extension(request): Extension<RequestTrace>,
) -> Result<Json<super::openapi::Bestsellers>, ApiError> {
    let mut conn = acquire(&lab, &request).await?;
    let rows: Vec<super::store::Popular> = on_conn!(&mut conn, |c| {
        sqlx::query_as(
            "SELECT p.id AS product_id, p.name, p.category, p.price, COUNT(o.id) AS orders, \
               CAST(COALESCE(SUM(o.quantity), 0) AS BIGINT) AS units_sold \
             FROM orders o JOIN products p ON p.id = o.product_id \
             GROUP BY p.id, p.name, p.category, p.price ORDER BY orders DESC, p.id LIMIT 10",
        )
        .fetch_all(&mut **c)
        .await
    })
    .map_err(db_error)?;
    Ok(Json(super::openapi::Bestsellers { products: rows }))
}

/// `GET /health`: the database and checkout's pool.
#[utoipa::path(
    get,
    path = "/health",
    tag = "probes",
    responses((status = 200, description = "ok, or degraded when the database does not answer; the pool's settings and use", body = super::openapi::CheckoutHealth))
)]
async fn health(State(lab): Lab) -> Json<super::openapi::CheckoutHealth> {
    let up = lab.platform.database_up().await;
    let (status, database) = if up { ("ok", "ok") } else { ("degraded", "down") };
    Json(super::openapi::CheckoutHealth { status, service: "checkout", database, pool: pool_report(&lab.pool) })
}

fn pool_report(pool: &CheckoutPool) -> super::openapi::PoolReport {
    let settings = pool.settings();
    super::openapi::PoolReport {
        max_connections: settings.max_connections,
        acquire_timeout_ms: settings.acquire_timeout_ms,
        in_use: pool.in_use(),
        rejected: pool.rejected(),
        normal: pool.normal(),
    }
}
