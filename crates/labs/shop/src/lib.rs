//! The `shop` lab — Black Friday (seed 003): a product catalog, a cart, a checkout and
//! a payment processor, four services of one binary on their own ports.
//!
//! Its first scenario is a misconfiguration, injected for real: the two catalog indexes
//! are dropped (`DROP INDEX`), so catalog queries and checkout's restock check become
//! full table scans; then checkout's pool is shrunk to 20 connections with a 5 s
//! acquire timeout, so checkouts holding connections through slow scans starve the
//! others and real acquire timeouts follow. Its second is a planted bug: checkout
//! retries a failed payment at once, again and again (`checkout/pay.rs`), so a payment
//! processor slowed by the peak is buried under retries. Nothing is simulated: no
//! sleep, no dice.

mod cart;
mod catalog;
mod checkout;
pub mod lab;
pub mod loadgen;
mod openapi;
pub mod payment;
pub mod pool;
pub mod remote;
pub mod rush;
pub mod settings;
pub mod stage;
pub mod stage_retry;
pub mod store;
pub mod timeline;
pub mod trace;

use std::sync::Arc;
use std::time::{Duration, Instant};

use axum::Router;
use opentelemetry::KeyValue;
use opentelemetry::trace::{SpanKind, TraceContextExt};
use opentelemetry_sdk::trace::SdkTracerProvider;
use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::histogram::Histogram;
use prometheus_client::registry::Registry;

use platform::Platform;
use platform::bugs::BugInfo;
use platform::db::Db;
use platform::http::ApiError;
use platform::stage::Scenario;
use platform::telemetry::HttpMetrics;
use settings::{ShopArgs, ShopService};
use store::{Plan, QueryShape, ShopStore};
use trace::{RequestTrace, ServiceTrace};

/// Black Friday's faults are injected from outside; the retry storm is planted.
pub const RETRY_BUG: &str = "retry-storm";

pub const BUGS: &[BugInfo] = &[BugInfo {
    name: RETRY_BUG,
    summary: "checkout retries a failed payment call at once, up to five times, with no backoff and no budget",
    location: "crates/labs/shop/src/checkout/pay.rs (retry_immediately)",
}];

pub const SCENARIO: Scenario = Scenario {
    name: "shop/black-friday",
    lab: "shop",
    bug: "",
    title: "Black Friday: dropped indexes, then a pool too small for the slow queries",
    story: "Traffic ramps up to the Black Friday peak. At minute 15 the catalog's two indexes are \
            dropped: catalog queries and checkout's restock check become full table scans. At \
            minute 20 checkout's pool is cut to 20 connections with a 5 s acquire timeout: \
            the doorbuster rush queues for connections held through slow scans, and from about \
            minute 22 over 20% of checkouts fail while p95 passes 2 s.",
    trigger: "the Black Friday timeline (breakroom demonstrate shop --speedup 10): DROP INDEX at minute 15, pool resize at minute 20",
    symptom: "catalog spans with db.full_table_scan=true and db.missing_index; checkout 503 \
              \"database connection pool exhausted: no connection within 5000 ms (pool size 20)\"; \
              shop_db_pool_exhausted_total and ShopCheckoutDegraded fire",
    fix: "CREATE INDEX idx_products_category / idx_products_stock_quantity and size the pool for the load \
          (POST /admin/indexes/restore on the catalog, POST /admin/pool on checkout)",
    check: "a burst at the timeline's peak rate passes its SLO: p95 < 500 ms and < 1% errors",
    reset: "both indexes, checkout's normal pool, the stock the audience bought, no demo orders, empty carts",
    rehearsal: "about 90 s: the whole timeline at 30× (60 s) must fail on cue, then short bursts with the fault and with the fix",
    hints: [
        "Look at the catalog's slow spans first (db.slow_query=true, db.full_table_scan=true), then at checkout's failures and shop_db_pool_exhausted_total: two things went wrong, at minute 15 and at minute 20, and the second is made worse by the first.",
        "At minute 15 the catalog's indexes on (category, price) and on stock_quantity disappeared, so listings and checkout's restock check scan every product. At minute 20 checkout's pool shrank to 20 connections, each now held for a whole slow scan, and the rest time out waiting.",
        "Fix the cause before the symptom: put the two indexes back (the catalog's /admin/indexes/restore, or CREATE INDEX), then give checkout a pool sized for its load. A bigger pool alone only moves the queue into the database.",
    ],
};

pub const RETRY_SCENARIO: Scenario = Scenario {
    name: "shop/retry-storm",
    lab: "shop",
    bug: RETRY_BUG,
    title: "Retry storm: checkout's retries bury a slowed payment processor",
    story: "Checkout authorizes every order with the payment processor, waits 1 s per call and \
            retries a failed call at once, up to five times. The processor has a few workers and \
            a queue. Under the peak it slows, its queue passes 1 s, calls time out while the \
            processor still scores them, and every timeout sends another call: the processor \
            works only for callers who left, and checkouts keep failing after the peak is over.",
    trigger: "breakroom demonstrate shop/retry-storm: the processor slowed to 1 worker at 20 ms an authorization, \
              then a peak of twice what it completes for 2 s and a calm of 40% after it",
    symptom: "shop_payment_calls_total{attempt=\"retry\"} far above the checkouts (6 calls a checkout), \
              shop_payment_abandoned_total climbing, shop_payment_queue_depth in the hundreds; checkouts answer 503 \
              \"payment not authorized after 6 calls\" long after the peak; ShopRetryStorm fires",
    fix: "breakroom serve shop --fixed retry-storm (or POST /admin/bugs/retry-storm on checkout): at most two \
          retries, exponential backoff with full jitter, a retry budget of 10% of the calls",
    check: "after the same peak, checkouts in the calm succeed (≥ 95%) with at most 1.3 payment calls each",
    reset: "the buggy retries, the payment processor's normal settings, its queue emptied",
    rehearsal: "about 40 s: the peak and the calm three times (reproduce, check with the bug, check with the fix)",
    hints: [
        "Compare shop_payment_calls_total with shop_checkouts_total on checkout, and read the payment \
         processor's /health: how many calls does one checkout make, and who is the processor working for \
         (shop_payment_abandoned_total)?",
        "Each payment call that times out is retried at once, up to five times. The processor keeps scoring \
         the calls checkout gave up on, so the queue only grows: after the peak the load on it is six times \
         what the shoppers ask for.",
        "Retry less and later: a small maximum of retries, a backoff that doubles with randomness (full \
         jitter), and a budget so retries add at most a fixed share to the calls. Look at retry_immediately \
         in crates/labs/shop/src/checkout/pay.rs.",
    ],
};

/// A query slower than this is a slow query (`db.slow_query`), as in the original.
const SLOW_QUERY: Duration = Duration::from_millis(1000);
/// Checkout's normal acquire timeout: as long as a request may take.
const NORMAL_ACQUIRE_TIMEOUT: Duration = Duration::from_secs(25);
/// Catalog and cart share a pool of this size; waits are bounded by the request timeout.
const CATALOG_POOL: u32 = 10;

pub use lab::ShopLab;

pub fn service_name(service: ShopService) -> &'static str {
    match service {
        ShopService::Catalog => "product-catalog",
        ShopService::Cart => "cart",
        ShopService::Checkout => "checkout",
        ShopService::Payment => "payment",
        ShopService::All => "shop",
    }
}

/// Where checkout finds the other two services.
#[derive(Debug, Clone)]
pub struct Peers {
    pub catalog: String,
    pub cart: String,
    pub payment: String,
}

/// The routers of the services this process runs, ready to serve.
pub struct Services {
    pub routers: Vec<(ShopService, Router)>,
    providers: Vec<SdkTracerProvider>,
    pools: Vec<Db>,
    checkout_pool: Option<Arc<pool::CheckoutPool>>,
}

impl Services {
    /// Flushes the traces and closes the shop's own pools.
    pub async fn close(self) {
        for db in &self.pools {
            db.close().await;
        }
        if let Some(pool) = &self.checkout_pool {
            pool.close().await;
        }
        let providers = self.providers;
        let _ = tokio::task::spawn_blocking(move || {
            for provider in providers {
                let _ = provider.shutdown();
            }
        })
        .await;
    }
}

/// `breakroom seed shop`.
pub async fn seed(db: &Db, products: u64) -> anyhow::Result<u64> {
    Ok(ShopStore::new(db.clone()).seed(products).await?)
}

/// Builds the routers of `service` (all three for `All`).
pub async fn build(platform: &Platform, settings: &ShopArgs, products: u64, peers: Peers) -> anyhow::Result<Services> {
    let service = settings.service;
    let config = &platform.config;
    let backend = &config.backend;
    let demo_start = std::env::var("DEMO_START_TIMESTAMP").ok().and_then(|v| v.trim().parse::<i64>().ok());
    let wanted = |s: ShopService| if service == ShopService::All { s != ShopService::All } else { s == service };
    let mut services = Services { routers: Vec::new(), providers: Vec::new(), pools: Vec::new(), checkout_pool: None };
    let tracer = |s: ShopService| -> anyhow::Result<(SdkTracerProvider, ServiceTrace)> {
        let provider = platform::telemetry::service_tracer_provider(
            service_name(s),
            config.otlp_endpoint.as_deref(),
            config.console.recording,
        )?;
        let trace = ServiceTrace::new(service_name(s), &provider, demo_start);
        Ok((provider, trace))
    };
    let catalog_db = Db::connect(
        backend.database_url.as_deref(),
        &backend.data_dir,
        "shop",
        CATALOG_POOL.max(backend.db_max_connections),
        NORMAL_ACQUIRE_TIMEOUT,
    )
    .await?;
    services.pools.push(catalog_db.clone());
    let store = ShopStore::new(catalog_db.clone());
    if wanted(ShopService::Catalog) {
        if store.product_count().await? == 0 && products > 0 {
            tracing::info!(products, "generating the catalog (once; `breakroom seed shop` does it ahead of time)");
            let started = Instant::now();
            store.seed(products).await?;
            tracing::info!(products, seconds = started.elapsed().as_secs_f64(), "catalog generated");
        }
    }
    for s in [ShopService::Catalog, ShopService::Cart, ShopService::Checkout, ShopService::Payment] {
        if !wanted(s) {
            continue;
        }
        let (provider, trace) = tracer(s)?;
        services.providers.push(provider);
        let mut registry = Registry::default();
        let router = match s {
            ShopService::Catalog => catalog::router(platform, store.clone(), trace.clone(), &mut registry).await?,
            // The cart keeps its own (the platform's) pool: it stays quick while the catalog scans.
            ShopService::Cart => cart::router(platform, ShopStore::new(platform.db.clone()), trace.clone()),
            ShopService::Payment => payment::router(platform, &mut registry),
            _ => {
                let normal = pool::PoolSettings {
                    max_connections: settings.checkout_pool.max(1),
                    acquire_timeout_ms: NORMAL_ACQUIRE_TIMEOUT.as_millis() as u64,
                };
                let checkout_pool = Arc::new(
                    pool::CheckoutPool::open(backend.database_url.as_deref(), backend.data_dir.clone(), normal).await?,
                );
                services.checkout_pool = Some(checkout_pool.clone());
                checkout::router(platform, store.clone(), checkout_pool, peers.clone(), trace.clone(), &mut registry)
            }
        };
        let router = router.route_layer(axum::middleware::from_fn_with_state(trace, trace::server_span));
        let db = match s {
            ShopService::Catalog => Some(catalog_db.clone()),
            ShopService::Cart => Some(platform.db.clone()),
            _ => None,
        };
        let assembled = platform.assemble_service(service_name(s), router, registry, HttpMetrics::new(), db);
        services.routers.push((s, assembled));
    }
    Ok(services)
}

/// What one query cost and what its plan was, in the query's counters.
#[derive(Clone)]
pub struct QueryMetrics {
    queries: Family<QueryLabels, Counter>,
    slow: Family<ShapeLabels, Counter>,
    duration: Family<ShapeLabels, Histogram>,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct QueryLabels {
    shape: String,
    plan: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct ShapeLabels {
    shape: String,
}

impl QueryMetrics {
    pub fn new(registry: &mut Registry) -> Self {
        let metrics = QueryMetrics {
            queries: Family::default(),
            slow: Family::default(),
            duration: Family::new_with_constructor(|| {
                Histogram::new([0.005, 0.025, 0.1, 0.25, 0.5, 1.0, 2.0, 5.0, 10.0, 30.0])
            }),
        };
        registry.register(
            "shop_db_queries",
            "Queries by shape and by the planner's plan (index or full_scan)",
            metrics.queries.clone(),
        );
        registry.register("shop_slow_queries", "Queries slower than 1 s", metrics.slow.clone());
        registry.register("shop_db_query_duration_seconds", "Query time by shape", metrics.duration.clone());
        metrics
    }
}

/// Times `query`, in a client span of its own, and reports it with its plan on that
/// span and on the request's span: `db.duration_ms`, `db.slow_query`,
/// `db.full_table_scan`, `db.missing_index`, `db.rows_scanned`.
pub async fn timed_query<T>(
    trace: &ServiceTrace,
    request: &RequestTrace,
    metrics: &QueryMetrics,
    plan: &Plan,
    query: impl std::future::Future<Output = Result<T, sqlx::Error>>,
) -> Result<T, sqlx::Error> {
    let span = trace.child(request, plan.shape.as_str(), SpanKind::Client);
    let started = Instant::now();
    let result = query.await;
    let elapsed = started.elapsed();
    let slow = elapsed > SLOW_QUERY;
    let duration_ms = (elapsed.as_secs_f64() * 1000.0 * 10.0).round() / 10.0;
    let mut attributes = vec![
        KeyValue::new("db.operation.name", plan.shape.as_str()),
        KeyValue::new("db.duration_ms", duration_ms),
        KeyValue::new("db.slow_query", slow),
        KeyValue::new("db.full_table_scan", plan.full_table_scan),
        KeyValue::new("db.missing_index", plan.missing_index.unwrap_or("")),
        KeyValue::new("db.index_used", plan.index_used.clone().unwrap_or_default()),
    ];
    if let Some(rows) = plan.rows_scanned {
        attributes.push(KeyValue::new("db.rows_scanned", rows));
    }
    span.set(attributes.clone());
    request.set(attributes);
    if result.is_err() {
        span.0.span().set_status(opentelemetry::trace::Status::error("query failed"));
    }
    span.0.span().end();
    let shape = plan.shape.as_str().to_string();
    let plan_label = if plan.full_table_scan { "full_scan" } else { "index" };
    metrics.queries.get_or_create(&QueryLabels { shape: shape.clone(), plan: plan_label.into() }).inc();
    metrics.duration.get_or_create(&ShapeLabels { shape: shape.clone() }).observe(elapsed.as_secs_f64());
    if slow {
        metrics.slow.get_or_create(&ShapeLabels { shape }).inc();
        tracing::warn!(
            service = trace.service,
            query = plan.shape.as_str(),
            duration_ms,
            full_table_scan = plan.full_table_scan,
            missing_index = plan.missing_index.unwrap_or(""),
            rows_scanned = plan.rows_scanned,
            trace_id = %request.trace_id(),
            "demo_slow_query_triggered"
        );
    }
    result
}

/// A database error as the shop answers it: `{"error": …}`.
pub fn db_error(error: sqlx::Error) -> ApiError {
    ApiError::from(error).as_error_field()
}

/// What a quantity may be, as the cart and checkout say it.
const QUANTITY: &str = "quantity must be an integer from 1 to 100";

/// A 400 in the shop's own shape, `{"error": …}`, as the original services answered.
fn bad_request(message: impl Into<std::borrow::Cow<'static, str>>) -> ApiError {
    ApiError::bad_request(message).as_error_field()
}

/// An optional JSON integer in `range`: absent or null is `default`; anything else
/// outside the range, or not an integer, is a 400 saying `message`.
pub fn optional_integer(
    value: Option<&serde_json::Value>,
    range: std::ops::RangeInclusive<i64>,
    default: i64,
    message: &'static str,
) -> Result<i64, ApiError> {
    match value {
        None | Some(serde_json::Value::Null) => Ok(default),
        Some(value) => json_integer(value).filter(|n| range.contains(n)).ok_or_else(|| bad_request(message)),
    }
}

/// The largest integer a JSON body may carry here: the largest a JSON number holds
/// exactly (2^53 - 1).
pub const MAX_JSON_INTEGER: i64 = 9_007_199_254_740_991;

/// A JSON integer up to ±`MAX_JSON_INTEGER`: `5`, and `5.0` too (JSON has one number
/// type; `5.0` is the integer 5).
pub fn json_integer(value: &serde_json::Value) -> Option<i64> {
    let integer = match value.as_i64() {
        Some(integer) => integer,
        None => {
            let float = value.as_f64()?;
            if float.fract() != 0.0 || float.abs() > MAX_JSON_INTEGER as f64 {
                return None;
            }
            float as i64
        }
    };
    (-MAX_JSON_INTEGER..=MAX_JSON_INTEGER).contains(&integer).then_some(integer)
}

/// The plan of `shape`; a planner that cannot answer is a database failure.
pub async fn plan_of(store: &ShopStore, shape: QueryShape) -> Result<Plan, ApiError> {
    store.plan(shape).await.map_err(db_error)
}
