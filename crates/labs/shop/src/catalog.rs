//! The product catalog (port 8014): browsing, search, best sellers, and the admin
//! actions that drop and restore its indexes.

use std::sync::Arc;

use axum::extract::{Extension, State};
use axum::routing::{get, post};
use axum::{Json, Router};
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::registry::Registry;
use serde::Deserialize;

use super::openapi::Category;
use super::store::{CATEGORIES, QueryShape, ShopStore, contains_pattern};
use super::trace::{RequestTrace, ServiceTrace};
use super::{QueryMetrics, bad_request, db_error, plan_of, timed_query};
use platform::Platform;
use platform::http::{ApiError, Confirmed, PathParam, QueryParams};

struct Catalog {
    platform: Platform,
    store: ShopStore,
    /// The same tables through the platform's pool: `/health` stays quick while the
    /// catalog's own pool is full of scans.
    health: ShopStore,
    trace: ServiceTrace,
    queries: QueryMetrics,
    /// 1 while an index exists, 0 once dropped; refreshed on every change and scrape-free read.
    index_present: Family<Vec<(String, String)>, Gauge>,
}

type Lab = State<Arc<Catalog>>;

pub async fn router(
    platform: &Platform,
    store: ShopStore,
    trace: ServiceTrace,
    registry: &mut Registry,
) -> anyhow::Result<Router> {
    let queries = QueryMetrics::new(registry);
    let index_present = Family::<Vec<(String, String)>, Gauge>::default();
    registry.register("shop_index_present", "1 while the catalog index exists", index_present.clone());
    let quick = ShopStore::new(platform.db.clone());
    let catalog = Arc::new(Catalog { platform: platform.clone(), store, health: quick, trace, queries, index_present });
    catalog.refresh_index_gauges().await.map_err(|e| anyhow::anyhow!("reading the catalog's indexes: {e}"))?;
    let admin = platform.admin_only(
        Router::new()
            .route("/admin/indexes", get(indexes))
            .route("/admin/indexes/drop", post(drop_indexes))
            .route("/admin/indexes/restore", post(restore_indexes))
            .route("/admin/scan-cost", get(scan_cost))
            .route("/admin/reset", post(reset)),
    );
    Ok(Router::new()
        .route("/products", get(products))
        .route("/products/search", get(search))
        .route("/products/popular-with-history", get(popular_with_history))
        .route("/products/{id}", get(product))
        .route("/health", get(health))
        .merge(admin)
        .merge(platform::openapi::route(super::openapi::catalog()))
        .with_state(catalog))
}

impl Catalog {
    async fn refresh_index_gauges(&self) -> Result<Vec<(&'static str, bool)>, sqlx::Error> {
        let present = self.health.indexes_present().await?;
        for (name, here) in &present {
            self.index_present.get_or_create(&vec![("index".into(), name.to_string())]).set(i64::from(*here));
        }
        Ok(present)
    }
}

#[derive(Deserialize)]
struct ProductsQuery {
    category: Option<String>,
    price_min: Option<String>,
    price_max: Option<String>,
}

fn price(raw: &str, name: &str) -> Result<f64, ApiError> {
    match raw.trim().parse::<f64>() {
        Ok(value) if value.is_finite() && value >= 0.0 => Ok(value),
        _ => Err(bad_request(format!("{name} must be a number ≥ 0 (got '{raw}')"))),
    }
}

/// `GET /products?category=&price_min=&price_max=`
#[utoipa::path(
    get,
    path = "/products",
    tag = "catalog",
    params(
        ("category" = Category, Query, description = "One of the shop's categories"),
        ("price_min" = f64, Query, minimum = 0, description = "Lowest price"),
        ("price_max" = f64, Query, minimum = 0, description = "Highest price, not below price_min"),
    ),
    responses(
        (status = 200, description = "The category's products in the price range, cheapest first", body = super::openapi::CatalogPage),
        (status = 400, description = "A parameter missing or out of range", body = super::openapi::ShopError),
        (status = 422, description = "The query string cannot be read", body = super::openapi::ShopError),
        (status = 503, description = "The database is unavailable or the pool exhausted", body = super::openapi::ShopError),
    )
)]
async fn products(
    State(lab): Lab,
    Extension(request): Extension<RequestTrace>,
    QueryParams(query): QueryParams<ProductsQuery>,
) -> Result<Json<super::openapi::CatalogPage>, ApiError> {
    let (Some(category), Some(min), Some(max)) = (&query.category, &query.price_min, &query.price_max) else {
        return Err(bad_request("Missing required parameters: category, price_min, price_max"));
    };
    let category = Category::parse(category)
        .ok_or_else(|| {
            let wanted = category.trim().to_lowercase();
            bad_request(format!("Unknown category '{wanted}': one of {}", CATEGORIES.join(", ")))
        })?
        .key();
    let (min, max) = (price(min, "price_min")?, price(max, "price_max")?);
    if min > max {
        return Err(bad_request("price_min must not be above price_max"));
    }
    let plan = plan_of(&lab.store, QueryShape::CatalogByCategory).await?;
    let query = lab.store.products_in(category, min, max);
    let products = timed_query(&lab.trace, &request, &lab.queries, &plan, query).await.map_err(db_error)?;
    request.set([opentelemetry::KeyValue::new("catalog.results", products.len() as i64)]);
    Ok(Json(super::openapi::CatalogPage { products }))
}

#[derive(Deserialize)]
struct SearchQuery {
    q: Option<String>,
}

/// `GET /products/search?q=`
#[utoipa::path(
    get,
    path = "/products/search",
    tag = "catalog",
    params(("q" = String, Query, min_length = 1, max_length = 100, pattern = r"^[^\u0000-\u001f\u007f-\u009f]*[^\s\u0000-\u001f\u007f-\u009f][^\u0000-\u001f\u007f-\u009f]*$", description = "Text in the name or description: not blank, no control characters")),
    responses(
        (status = 200, description = "Matching products", body = super::openapi::SearchResult),
        (status = 400, description = "q missing, blank or too long", body = super::openapi::ShopError),
        (status = 422, description = "The query string cannot be read", body = super::openapi::ShopError),
        (status = 503, description = "The database is unavailable or the pool exhausted", body = super::openapi::ShopError),
    )
)]
async fn search(
    State(lab): Lab,
    QueryParams(query): QueryParams<SearchQuery>,
) -> Result<Json<super::openapi::SearchResult>, ApiError> {
    let q = query.q.unwrap_or_default();
    if q.chars().count() > 100 || q.contains(char::is_control) {
        return Err(bad_request("q must be at most 100 characters, without control characters"));
    }
    let q = q.trim();
    if q.is_empty() {
        return Err(bad_request("Missing required parameter: q"));
    }
    let products = lab.store.search(&contains_pattern(q)).await.map_err(db_error)?;
    Ok(Json(super::openapi::SearchResult { query: q.to_string(), products }))
}

/// `GET /products/popular-with-history`: best sellers joined with their order history.
#[utoipa::path(
    get,
    path = "/products/popular-with-history",
    tag = "catalog",
    responses(
        (status = 200, description = "Best sellers with their order history", body = super::openapi::Bestsellers),
        (status = 503, description = "The database is unavailable or the pool exhausted", body = super::openapi::ShopError),
    )
)]
async fn popular_with_history(State(lab): Lab) -> Result<Json<super::openapi::Bestsellers>, ApiError> {
    let products = lab.store.popular_with_history().await.map_err(db_error)?;
    Ok(Json(super::openapi::Bestsellers { products }))
}

/// `GET /products/{id}`: what checkout asks before it sells one.
#[utoipa::path(
    get,
    path = "/products/{id}",
    tag = "catalog",
    params(("id" = i64, Path, minimum = 1, maximum = 9007199254740991_i64, description = "The product's id")),
    responses(
        (status = 200, description = "The product", body = super::store::Product),
        (status = 400, description = "Not a positive integer", body = super::openapi::ShopError),
        (status = 404, description = "No such product", body = super::openapi::ShopError),
        (status = 503, description = "The database is unavailable or the pool exhausted", body = super::openapi::ShopError),
    )
)]
async fn product(State(lab): Lab, PathParam(raw): PathParam<String>) -> Result<Json<super::store::Product>, ApiError> {
    let id: i64 = raw
        .parse()
        .ok()
        .filter(|id| *id > 0)
        .ok_or_else(|| bad_request(format!("Invalid product id '{raw}': expected a positive integer")))?;
    match lab.store.product(id).await.map_err(db_error)? {
        Some(product) => Ok(Json(product)),
        None => Err(ApiError::not_found(format!("Product {id} not found")).as_error_field()),
    }
}

/// `GET /health`: the database, the indexes, the catalog's size — each read within a
/// second on the platform's pool, never behind the scans (probes call it).
#[utoipa::path(
    get,
    path = "/health",
    tag = "probes",
    responses((status = 200, description = "ok, or degraded when the database does not answer; the indexes and the catalog's size", body = super::openapi::CatalogHealth))
)]
async fn health(State(lab): Lab) -> Json<super::openapi::CatalogHealth> {
    let second = std::time::Duration::from_secs(1);
    let database_up = lab.platform.database_up().await;
    let indexes = tokio::time::timeout(second, lab.refresh_index_gauges()).await.ok().and_then(Result::ok);
    let products = tokio::time::timeout(second, lab.health.product_count()).await.ok().and_then(Result::ok);
    Json(super::openapi::CatalogHealth {
        status: if database_up { "ok" } else { "degraded" },
        service: "product-catalog",
        database: if database_up { "ok" } else { "down" },
        products,
        traces: lab.platform.config.otlp_endpoint.is_some(),
        indexes: indexes.map(|i| i.into_iter().collect()),
    })
}

/// `GET /admin/indexes`: which exist and what the planner now does with each query shape.
#[utoipa::path(
    get,
    path = "/admin/indexes",
    tag = "admin",
    security(("admin_token" = [])),
    responses(
        (status = 200, description = "Each index, present or not, and the planner's plan of each query shape", body = super::openapi::IndexReport),
        (status = 401, description = "Admin token missing or wrong", body = super::openapi::ShopError),
        (status = 503, description = "The database is unavailable", body = super::openapi::ShopError),
    )
)]
async fn indexes(State(lab): Lab) -> Result<Json<super::openapi::IndexReport>, ApiError> {
    let present = lab.refresh_index_gauges().await.map_err(db_error)?;
    let mut plans = Vec::new();
    for shape in [QueryShape::CatalogByCategory, QueryShape::RestockCheck] {
        plans.push(plan_of(&lab.store, shape).await?);
    }
    let indexes = present.into_iter().map(|(name, present)| super::openapi::IndexPresence { name, present });
    Ok(Json(super::openapi::IndexReport { indexes: indexes.collect(), plans }))
}

/// `GET /admin/scan-cost`: what a full scan of the catalog costs on this database, so
/// the timeline can size its peak to this machine.
#[utoipa::path(
    get,
    path = "/admin/scan-cost",
    tag = "admin",
    security(("admin_token" = [])),
    responses(
        (status = 200, description = "The catalog's size and what a full scan of it costs", body = super::openapi::ScanCost),
        (status = 401, description = "Admin token missing or wrong", body = super::openapi::ShopError),
        (status = 503, description = "The database is unavailable", body = super::openapi::ShopError),
    )
)]
async fn scan_cost(State(lab): Lab) -> Result<Json<super::openapi::ScanCost>, ApiError> {
    let (median_ms, per_second) = lab.store.scan_cost().await.map_err(db_error)?;
    let products = lab.store.product_count().await.map_err(db_error)?;
    Ok(Json(super::openapi::ScanCost {
        products,
        scan_ms: (median_ms * 10.0).round() / 10.0,
        scans_per_second: (per_second * 10.0).round() / 10.0,
    }))
}

/// `POST /admin/indexes/drop`: the misconfiguration, for real.
#[utoipa::path(
    post,
    path = "/admin/indexes/drop",
    tag = "admin",
    security(("admin_token" = [])),
    responses(
        (status = 200, description = "Both indexes dropped; the catalog query's new plan", body = super::openapi::Dropped),
        (status = 401, description = "Admin token missing or wrong", body = super::openapi::ShopError),
        (status = 503, description = "The database is unavailable or busy", body = super::openapi::ShopError),
    )
)]
async fn drop_indexes(State(lab): Lab) -> Result<Json<super::openapi::Dropped>, ApiError> {
    let dropped = lab.store.drop_indexes().await.map_err(db_error)?;
    lab.refresh_index_gauges().await.map_err(db_error)?;
    let plan = plan_of(&lab.store, QueryShape::CatalogByCategory).await?;
    tracing::warn!(dropped = ?dropped, full_table_scan = plan.full_table_scan, "indexes_dropped");
    Ok(Json(super::openapi::Dropped { status: "dropped", dropped, catalog_plan: plan }))
}

/// `POST /admin/indexes/restore`: `CREATE INDEX` for both.
#[utoipa::path(
    post,
    path = "/admin/indexes/restore",
    tag = "admin",
    security(("admin_token" = [])),
    responses(
        (status = 200, description = "Both indexes present; the catalog query's plan", body = super::openapi::Restored),
        (status = 401, description = "Admin token missing or wrong", body = super::openapi::ShopError),
        (status = 503, description = "The database is unavailable or busy", body = super::openapi::ShopError),
    )
)]
async fn restore_indexes(State(lab): Lab) -> Result<Json<super::openapi::Restored>, ApiError> {
    let created = lab.store.restore_indexes().await.map_err(db_error)?;
    lab.refresh_index_gauges().await.map_err(db_error)?;
    let plan = plan_of(&lab.store, QueryShape::CatalogByCategory).await?;
    tracing::warn!(created = ?created, full_table_scan = plan.full_table_scan, "indexes_restored");
    Ok(Json(super::openapi::Restored { status: "restored", created, catalog_plan: plan }))
}

/// `POST /admin/reset?confirm=yes`: indexes back, the audience's orders and carts gone, stock restored.
#[utoipa::path(
    post,
    path = "/admin/reset",
    tag = "admin",
    security(("admin_token" = [])),
    params(platform::http::Confirmed),
    responses(
        (status = 200, description = "Catalog reset", body = super::openapi::CatalogReset),
        platform::openapi::ResetRefusals,
        (status = 503, description = "The database is unavailable or busy", body = super::openapi::ShopError),
    )
)]
async fn reset(State(lab): Lab, _: Confirmed) -> Result<Json<super::openapi::CatalogReset>, ApiError> {
    let created = lab.store.restore_indexes().await.map_err(db_error)?;
    let orders = lab.store.reset_data().await.map_err(db_error)?;
    lab.refresh_index_gauges().await.map_err(db_error)?;
    tracing::warn!(orders_removed = orders, indexes_created = ?created, "lab_reset");
    Ok(Json(super::openapi::CatalogReset {
        status: "success",
        indexes_created: created,
        orders_removed: orders,
        message: "Catalog reset: both indexes present, the audience's orders removed and their stock restored, carts empty.",
    }))
}
