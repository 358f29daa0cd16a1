//! The shop's OpenAPI documents, one per service (each serves its own at
//! `/openapi.json`). Errors of the shop's own handlers say `{"error": …}`, as the
//! original services did; the platform's rejections (unknown path, wrong method,
//! a body that is not JSON) say `{"detail": …}`.

use serde::Serialize;
use utoipa::{OpenApi, ToSchema};

use platform::openapi::{AdminAuth, ResetBody};

/// An error: `{"error": …}` from the shop's handlers, `{"detail": …}` from the platform.
#[derive(Serialize, ToSchema)]
#[schema(min_properties = 1)]
pub struct ShopError {
    error: Option<String>,
    detail: Option<String>,
}

/// A product as the catalog lists it.
#[derive(Serialize, ToSchema)]
pub struct ProductBody {
    id: i64,
    name: String,
    category: String,
    price: f64,
    description: String,
    image_url: String,
    stock_quantity: i64,
}

/// `GET /products`, `GET /products/popular-with-history`.
#[derive(Serialize, ToSchema)]
pub struct ProductList {
    products: Vec<serde_json::Value>,
}

/// `GET /products/search`.
#[derive(Serialize, ToSchema)]
pub struct SearchResult {
    query: String,
    products: Vec<serde_json::Value>,
}

/// The shop's categories.
#[derive(ToSchema)]
#[schema(rename_all = "lowercase")]
#[allow(dead_code)]
pub enum Category {
    Electronics,
    Furniture,
    Appliances,
    Sports,
    Kitchen,
}

/// A cart or user id: letters, digits, `-` and `_`.
#[derive(ToSchema)]
#[schema(value_type = String, min_length = 1, max_length = 64, pattern = "^[A-Za-z0-9_-]{1,64}$")]
#[allow(dead_code)]
pub struct ShopId(String);

/// `POST /cart/{cart_id}/add`.
#[derive(ToSchema)]
#[allow(dead_code)]
pub struct AddInput {
    #[schema(minimum = 1, maximum = 9007199254740991_i64, example = 42)]
    product_id: i64,
    #[schema(minimum = 1, maximum = 100, nullable, example = 1)]
    quantity: Option<i64>,
}

/// A cart and what it adds up to.
#[derive(Serialize, ToSchema)]
pub struct CartBody {
    cart_id: String,
    items: Vec<serde_json::Value>,
    item_count: i64,
    total: f64,
}

/// `POST /orders/create`.
#[derive(ToSchema)]
#[allow(dead_code)]
pub struct OrderInput {
    /// Letters, digits, `-` and `_`, not starting with `history-` (the generated order
    /// history's users); or an integer, taken as its digits.
    #[schema(schema_with = user_id_schema)]
    user_id: String,
    #[schema(minimum = 1, maximum = 9007199254740991_i64, example = 42)]
    product_id: i64,
    #[schema(minimum = 1, maximum = 100, nullable, example = 1)]
    quantity: Option<i64>,
}

fn user_id_schema() -> utoipa::openapi::schema::Schema {
    use utoipa::openapi::schema::{ObjectBuilder, OneOfBuilder, SchemaType, Type};
    let text = ObjectBuilder::new()
        .schema_type(SchemaType::new(Type::String))
        .min_length(Some(1))
        .max_length(Some(64))
        .pattern(Some("^[A-Za-z0-9_-]{1,64}$"))
        .examples(["u1"]);
    let limit = super::MAX_JSON_INTEGER as f64;
    let number =
        ObjectBuilder::new().schema_type(SchemaType::new(Type::Integer)).minimum(Some(-limit)).maximum(Some(limit));
    utoipa::openapi::schema::Schema::OneOf(OneOfBuilder::new().item(text).item(number).build())
}

/// A placed order.
#[derive(Serialize, ToSchema)]
pub struct OrderBody {
    success: bool,
    order_id: i64,
    user_id: String,
    product_id: i64,
    quantity: i64,
    total: f64,
    order_date: String,
}

/// `POST /admin/pool`.
#[derive(ToSchema)]
#[allow(dead_code)]
pub struct PoolInput {
    #[schema(minimum = 1, maximum = 200, example = 20)]
    max_connections: i64,
    #[schema(minimum = 50, maximum = 60000, nullable, example = 5000)]
    acquire_timeout_ms: Option<i64>,
}

/// A service's `/health`: `ok`, or `degraded` when its database does not answer.
#[derive(Serialize, ToSchema)]
pub struct ServiceHealth {
    status: String,
    service: String,
    database: String,
}

/// An admin action's answer: what it did, as JSON.
#[derive(Serialize, ToSchema)]
pub struct AdminBody {
    status: Option<String>,
}

/// Any JSON object.
#[derive(Serialize, ToSchema)]
pub struct Report {}

#[derive(OpenApi)]
#[openapi(
    info(
        title = "breakroom — shop lab: product-catalog",
        description = "Browsing, search and best sellers; the admin actions drop and restore the catalog's indexes."
    ),
    paths(
        super::catalog::products,
        super::catalog::search,
        super::catalog::popular_with_history,
        super::catalog::product,
        super::catalog::health,
        super::catalog::indexes,
        super::catalog::scan_cost,
        super::catalog::drop_indexes,
        super::catalog::restore_indexes,
        super::catalog::reset
    ),
    components(schemas(ShopError, ProductBody, ProductList, SearchResult, Category, Report, AdminBody, ResetBody)),
    modifiers(&AdminAuth)
)]
struct CatalogApi;

#[derive(OpenApi)]
#[openapi(
    info(title = "breakroom — shop lab: cart", description = "Carts: add a product, read a cart."),
    paths(super::cart::show, super::cart::add, super::cart::health, super::cart::reset),
    components(schemas(ShopError, ShopId, AddInput, CartBody, ServiceHealth, AdminBody)),
    modifiers(&AdminAuth)
)]
struct CartApi;

#[derive(OpenApi)]
#[openapi(
    info(
        title = "breakroom — shop lab: checkout",
        description = "Orders: one transaction on checkout's own connection pool, asking the catalog and the cart over HTTP."
    ),
    paths(
        super::checkout::create,
        super::checkout::popular,
        super::checkout::health,
        super::checkout::pool_status,
        super::checkout::resize,
        super::checkout::reset
    ),
    components(schemas(ShopError, OrderInput, OrderBody, ProductList, PoolInput, Report, AdminBody)),
    modifiers(&AdminAuth)
)]
struct CheckoutApi;

pub fn catalog() -> utoipa::openapi::OpenApi {
    platform::openapi::document(CatalogApi::openapi())
}

pub fn cart() -> utoipa::openapi::OpenApi {
    platform::openapi::document(CartApi::openapi())
}

pub fn checkout() -> utoipa::openapi::OpenApi {
    platform::openapi::document(CheckoutApi::openapi())
}
