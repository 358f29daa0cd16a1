//! Checkout's pool, as its admin API shows and changes it.

use axum::Json;
use axum::extract::State;
use serde::Deserialize;
use serde_json::Value;

use super::super::bad_request;
use super::super::openapi::{PoolReport, Resized};
use super::super::pool::PoolSettings;
use super::{Checkout, Lab, pool_report};
use platform::http::{ApiError, Confirmed, JsonBody};

/// `GET /admin/pool`
#[utoipa::path(
    get,
    path = "/admin/pool",
    tag = "admin",
    security(("admin_token" = [])),
    responses(
        (status = 200, description = "The pool's settings and use", body = PoolReport),
        (status = 401, description = "Admin token missing or wrong", body = super::super::openapi::ShopError),
    )
)]
pub(super) async fn pool_status(State(lab): Lab) -> Json<PoolReport> {
    Json(pool_report(&lab.pool))
}

/// `POST /admin/pool`.
#[derive(Deserialize, utoipa::ToSchema)]
#[schema(as = PoolInput)]
pub struct ResizeBody {
    #[schema(value_type = i64, required = true, minimum = 1, maximum = 200, example = 20)]
    max_connections: Option<Value>,
    #[schema(value_type = Option<i64>, minimum = 50, maximum = 60000, nullable, example = 5000)]
    acquire_timeout_ms: Option<Value>,
}

/// `POST /admin/pool {"max_connections": 20, "acquire_timeout_ms": 5000}`
#[utoipa::path(
    post,
    path = "/admin/pool",
    tag = "admin",
    security(("admin_token" = [])),
    request_body = ResizeBody,
    responses(
        (status = 200, description = "Checkout runs on a new pool of this size", body = Resized),
        (status = 400, description = "A size or wait out of range", body = super::super::openapi::ShopError),
        (status = 401, description = "Admin token missing or wrong", body = super::super::openapi::ShopError),
        (status = 413, description = "Body over 64 KiB", body = super::super::openapi::ShopError),
        (status = 422, description = "Not a JSON object", body = super::super::openapi::ShopError),
        (status = 503, description = "The new pool could not be opened", body = super::super::openapi::ShopError),
    )
)]
pub(super) async fn resize(State(lab): Lab, JsonBody(body): JsonBody<ResizeBody>) -> Result<Json<Resized>, ApiError> {
    let size = body
        .max_connections
        .as_ref()
        .and_then(super::super::json_integer)
        .filter(|n| (1..=200).contains(n))
        .ok_or_else(|| bad_request("max_connections required: an integer from 1 to 200"))? as u32;
    let timeout = super::super::optional_integer(
        body.acquire_timeout_ms.as_ref(),
        50..=60_000,
        5_000,
        "acquire_timeout_ms must be an integer from 50 to 60000",
    )?;
    apply(&lab, PoolSettings { max_connections: size, acquire_timeout_ms: timeout as u64 }).await
}

async fn apply(lab: &Checkout, settings: PoolSettings) -> Result<Json<Resized>, ApiError> {
    let previous = lab.pool.resize(settings).await.map_err(|e| {
        ApiError::unavailable(format!("could not open a pool of {}: {e:#}", settings.max_connections)).as_error_field()
    })?;
    lab.metrics.pool_size.set(i64::from(settings.max_connections));
    tracing::warn!(
        max_connections = settings.max_connections,
        acquire_timeout_ms = settings.acquire_timeout_ms,
        previous_max_connections = previous.max_connections,
        "checkout_pool_resized"
    );
    Ok(Json(Resized { status: "resized", pool: settings, previous }))
}

/// `POST /admin/reset?confirm=yes`: checkout's normal pool.
#[utoipa::path(
    post,
    path = "/admin/reset",
    tag = "admin",
    security(("admin_token" = [])),
    params(platform::http::Confirmed),
    responses(
        (status = 200, description = "Checkout's normal pool and the retries it started with", body = Resized),
        platform::openapi::ResetRefusals,
        (status = 503, description = "The pool could not be opened", body = super::super::openapi::ShopError),
    )
)]
pub(super) async fn reset(State(lab): Lab, _: Confirmed) -> Result<Json<Resized>, ApiError> {
    // First, so a reset that fails later still puts the planted retries back.
    lab.platform.bugs.restore_everywhere().await;
    let normal = lab.pool.normal();
    apply(&lab, normal).await
}
