//! The cart (port 8013): the routes the journeys really call.

use std::sync::Arc;

use super::openapi::{CartBody, ShopId};
use super::store::{CartLine, ShopStore};
use super::trace::ServiceTrace;
use super::{bad_request, db_error};
use axum::extract::State;
use axum::routing::{get, post};
use axum::{Json, Router};
use platform::Platform;
use platform::http::{ApiError, Confirmed, JsonBody, PathParam};
use serde::Deserialize;

struct Cart {
    platform: Platform,
    store: ShopStore,
}

type Lab = State<Arc<Cart>>;

pub fn router(platform: &Platform, store: ShopStore, _trace: ServiceTrace) -> Router {
    let cart = Arc::new(Cart { platform: platform.clone(), store });
    let admin = platform.admin_only(Router::new().route("/admin/reset", post(reset)));
    Router::new()
        .route("/cart/{cart_id}", get(show))
        .route("/cart/{cart_id}/add", post(add))
        .route("/health", get(health))
        .merge(admin)
        .merge(platform::openapi::route(super::openapi::cart()))
        .with_state(cart)
}

/// Letters, digits, `-` and `_`, up to 64: what a cart or user id may be.
pub fn valid_id(raw: &str) -> bool {
    !raw.is_empty() && raw.len() <= 64 && raw.chars().all(|c| c.is_ascii_alphanumeric() || c == '-' || c == '_')
}

fn cart_id(raw: String) -> Result<ShopId, ApiError> {
    if valid_id(&raw) { Ok(ShopId(raw)) } else { Err(bad_request("cart_id: 1 to 64 letters, digits, '-' or '_'")) }
}

/// `POST /cart/{cart_id}/add`. The numbers are read by the handler, so a wrong one is
/// a 400 in the shop's own words.
#[derive(Deserialize, utoipa::ToSchema)]
#[schema(as = AddInput)]
pub struct AddBody {
    #[schema(value_type = i64, required = true, minimum = 1, maximum = 9007199254740991_i64, example = 42)]
    product_id: Option<serde_json::Value>,
    #[schema(value_type = Option<i64>, minimum = 1, maximum = 100, nullable, example = 1)]
    quantity: Option<serde_json::Value>,
}

fn cart_body(cart_id: String, lines: Vec<CartLine>) -> CartBody {
    let item_count: i64 = lines.iter().map(|l| i64::from(l.quantity)).sum();
    // A fold from +0.0: `sum()` of no f64 is -0.0, which an empty cart would show as `-0.0`.
    let total = lines.iter().fold(0.0, |total, l| total + l.price * f64::from(l.quantity));
    CartBody { cart_id, items: lines, item_count, total: (total * 100.0).round() / 100.0 }
}

/// `POST /cart/{cart_id}/add` `{"product_id": 42, "quantity": 1}`
#[utoipa::path(
    post,
    path = "/cart/{cart_id}/add",
    tag = "cart",
    params(("cart_id" = ShopId, Path, description = "The cart")),
    request_body = AddBody,
    responses(
        (status = 200, description = "The cart with the product added", body = CartBody),
        (status = 400, description = "A bad cart id, product id or quantity", body = super::openapi::ShopError),
        (status = 404, description = "No such product", body = super::openapi::ShopError),
        (status = 413, description = "Body over 64 KiB", body = super::openapi::ShopError),
        (status = 422, description = "Not a JSON object", body = super::openapi::ShopError),
        (status = 503, description = "The database is unavailable or busy", body = super::openapi::ShopError),
    )
)]
async fn add(
    State(lab): Lab,
    PathParam(raw): PathParam<String>,
    JsonBody(body): JsonBody<AddBody>,
) -> Result<Json<CartBody>, ApiError> {
    let ShopId(cart_id) = cart_id(raw)?;
    let product_id = body
        .product_id
        .as_ref()
        .and_then(super::json_integer)
        .filter(|id| *id > 0)
        .ok_or_else(|| bad_request("product_id required: a positive integer"))?;
    let quantity = super::optional_integer(body.quantity.as_ref(), 1..=100, 1, super::QUANTITY)? as i32;
    if !lab.store.add_to_cart(&cart_id, product_id, quantity).await.map_err(db_error)? {
        return Err(ApiError::not_found(format!("Product {product_id} not found")).as_error_field());
    }
    let lines = lab.store.cart(&cart_id).await.map_err(db_error)?;
    Ok(Json(cart_body(cart_id, lines)))
}

/// `GET /cart/{cart_id}`: an unknown cart is an empty one.
#[utoipa::path(
    get,
    path = "/cart/{cart_id}",
    tag = "cart",
    params(("cart_id" = ShopId, Path, description = "The cart")),
    responses(
        (status = 200, description = "The cart (empty when unknown)", body = CartBody),
        (status = 400, description = "A bad cart id", body = super::openapi::ShopError),
        (status = 503, description = "The database is unavailable or busy", body = super::openapi::ShopError),
    )
)]
async fn show(State(lab): Lab, PathParam(raw): PathParam<String>) -> Result<Json<CartBody>, ApiError> {
    let ShopId(cart_id) = cart_id(raw)?;
    let lines = lab.store.cart(&cart_id).await.map_err(db_error)?;
    Ok(Json(cart_body(cart_id, lines)))
}

/// `GET /health`
#[utoipa::path(
    get,
    path = "/health",
    tag = "probes",
    responses((status = 200, description = "ok, or degraded when the database does not answer", body = super::openapi::ServiceHealth))
)]
async fn health(State(lab): Lab) -> Json<super::openapi::ServiceHealth> {
    let up = lab.platform.database_up().await;
    let (status, database) = if up { ("ok", "ok") } else { ("degraded", "down") };
    Json(super::openapi::ServiceHealth { status, service: "cart", database })
}

/// `POST /admin/reset?confirm=yes`: every cart emptied.
#[utoipa::path(
    post,
    path = "/admin/reset",
    tag = "admin",
    security(("admin_token" = [])),
    params(platform::http::Confirmed),
    responses(
        (status = 200, description = "Every cart emptied", body = super::openapi::CartsEmptied),
        platform::openapi::ResetRefusals,
        (status = 503, description = "The database is unavailable or busy", body = super::openapi::ShopError),
    )
)]
async fn reset(State(lab): Lab, _: Confirmed) -> Result<Json<super::openapi::CartsEmptied>, ApiError> {
    let removed = lab.store.clear_carts().await.map_err(db_error)?;
    Ok(Json(super::openapi::CartsEmptied { status: "success", cart_lines_removed: removed }))
}
