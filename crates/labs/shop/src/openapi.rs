//! The shop's OpenAPI documents, one per service (each serves its own at
//! `/openapi.json`), and the bodies its handlers answer with: the schemas are derived
//! on the types the handlers return. Errors of the shop's own handlers say
//! `{"error": …}`, as the original services did; the platform's rejections (unknown
//! path, wrong method, a body that is not JSON) say `{"detail": …}`.

use std::collections::BTreeMap;

use serde::Serialize;
use utoipa::{OpenApi, ToSchema};

use platform::openapi::AdminAuth;

use super::pool::PoolSettings;
use super::store::{CATEGORIES, CartLine, Plan, Popular, Product, QueryShape};

/// An error: `{"error": …}` from the shop's handlers, `{"detail": …}` from the
/// platform (both made by `platform::http::ApiError`).
#[derive(Serialize, ToSchema)]
#[schema(min_properties = 1)]
pub struct ShopError {
    error: Option<String>,
    detail: Option<String>,
}

/// The shop's categories.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ToSchema)]
#[schema(rename_all = "lowercase")]
pub enum Category {
    Electronics,
    Furniture,
    Appliances,
    Sports,
    Kitchen,
}

impl Category {
    const ALL: [Category; 5] =
        [Category::Electronics, Category::Furniture, Category::Appliances, Category::Sports, Category::Kitchen];

    /// Its name in the catalog (`electronics`, …), as the products are stored.
    pub fn key(self) -> &'static str {
        CATEGORIES[self as usize]
    }

    /// A category by its name, any case, spaces around ignored.
    pub fn parse(raw: &str) -> Option<Category> {
        let wanted = raw.trim().to_lowercase();
        Category::ALL.into_iter().find(|c| c.key() == wanted)
    }
}

/// A cart or user id: letters, digits, `-` and `_`.
#[derive(ToSchema)]
#[schema(value_type = String, min_length = 1, max_length = 64, pattern = "^[A-Za-z0-9_-]{1,64}$")]
pub struct ShopId(pub String);

/// `GET /products`.
#[derive(Serialize, ToSchema)]
#[schema(as = ProductList)]
pub struct CatalogPage {
    pub products: Vec<Product>,
}

/// `GET /products/popular-with-history`, `GET /orders/popular-products`.
#[derive(Serialize, ToSchema)]
pub struct Bestsellers {
    pub products: Vec<Popular>,
}

/// `GET /products/search`.
#[derive(Serialize, ToSchema)]
pub struct SearchResult {
    pub query: String,
    pub products: Vec<Product>,
}

/// A cart and what it adds up to.
#[derive(Serialize, ToSchema)]
pub struct CartBody {
    pub cart_id: String,
    pub items: Vec<CartLine>,
    pub item_count: i64,
    pub total: f64,
}

/// A placed order.
#[derive(Serialize, ToSchema)]
pub struct OrderBody {
    pub success: bool,
    pub order_id: i64,
    pub user_id: String,
    pub product_id: i64,
    pub quantity: i32,
    pub total: f64,
    pub order_date: String,
}

/// The cart's `/health`: `ok`, or `degraded` when its database does not answer.
#[derive(Serialize, ToSchema)]
pub struct ServiceHealth {
    pub status: &'static str,
    pub service: &'static str,
    pub database: &'static str,
}

/// The catalog's `/health`: the database, the catalog's size, whether traces are
/// exported, and each index present or not (unknown when they could not be read).
#[derive(Serialize, ToSchema)]
pub struct CatalogHealth {
    pub status: &'static str,
    pub service: &'static str,
    pub database: &'static str,
    pub products: Option<i64>,
    pub traces: bool,
    pub indexes: Option<BTreeMap<&'static str, bool>>,
}

/// Checkout's `/health`: the database and its pool.
#[derive(Serialize, ToSchema)]
pub struct CheckoutHealth {
    pub status: &'static str,
    pub service: &'static str,
    pub database: &'static str,
    pub pool: PoolReport,
}

/// Checkout's pool: its settings, its use, and the settings it returns to on reset.
#[derive(Serialize, ToSchema)]
pub struct PoolReport {
    pub max_connections: u32,
    pub acquire_timeout_ms: u64,
    pub in_use: u32,
    pub rejected: u64,
    pub normal: PoolSettings,
}

/// `POST /admin/pool` and checkout's reset.
#[derive(Serialize, ToSchema)]
pub struct Resized {
    pub status: &'static str,
    pub pool: PoolSettings,
    pub previous: PoolSettings,
}

/// `GET /admin/indexes`.
#[derive(Serialize, ToSchema)]
pub struct IndexReport {
    pub indexes: Vec<IndexPresence>,
    pub plans: Vec<Plan>,
}

/// One index, present or dropped.
#[derive(Serialize, ToSchema)]
pub struct IndexPresence {
    pub name: &'static str,
    pub present: bool,
}

/// `GET /admin/scan-cost`.
#[derive(Serialize, ToSchema)]
pub struct ScanCost {
    pub products: i64,
    pub scan_ms: f64,
    pub scans_per_second: f64,
}

/// `POST /admin/indexes/drop`.
#[derive(Serialize, ToSchema)]
pub struct Dropped {
    pub status: &'static str,
    pub dropped: Vec<&'static str>,
    pub catalog_plan: Plan,
}

/// `POST /admin/indexes/restore`.
#[derive(Serialize, ToSchema)]
pub struct Restored {
    pub status: &'static str,
    pub created: Vec<&'static str>,
    pub catalog_plan: Plan,
}

/// The catalog's reset.
#[derive(Serialize, ToSchema)]
pub struct CatalogReset {
    pub status: &'static str,
    pub indexes_created: Vec<&'static str>,
    pub orders_removed: u64,
    pub message: &'static str,
}

/// The cart's reset.
#[derive(Serialize, ToSchema)]
pub struct CartsEmptied {
    pub status: &'static str,
    pub cart_lines_removed: u64,
}

/// A user id as checkout takes it: an id, or an integer taken as its digits.
pub fn user_id_schema() -> utoipa::openapi::schema::Schema {
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
    components(schemas(
        ShopError, Product, CatalogPage, Bestsellers, SearchResult, Category, CatalogHealth, IndexReport, IndexPresence,
        Plan, QueryShape, ScanCost, Dropped, Restored, CatalogReset
    )),
    modifiers(&AdminAuth)
)]
struct CatalogApi;

#[derive(OpenApi)]
#[openapi(
    info(title = "breakroom — shop lab: cart", description = "Carts: add a product, read a cart."),
    paths(super::cart::show, super::cart::add, super::cart::health, super::cart::reset),
    components(schemas(ShopError, ShopId, super::cart::AddBody, CartBody, CartLine, ServiceHealth, CartsEmptied)),
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
        super::checkout::admin::pool_status,
        super::checkout::admin::resize,
        super::checkout::admin::reset
    ),
    components(schemas(
        ShopError, super::checkout::CreateBody, OrderBody, Bestsellers, Popular, super::checkout::admin::ResizeBody, CheckoutHealth,
        PoolReport, PoolSettings, Resized
    )),
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

#[derive(OpenApi)]
#[openapi(
    info(
        title = "breakroom — shop lab: payment",
        description = "The payment processor: authorizations scored by a few workers, in arrival order."
    ),
    paths(
        super::payment::authorize,
        super::payment::health,
        super::payment::settings,
        super::payment::change,
        super::payment::reset
    ),
    components(schemas(
        ShopError, super::payment::AuthorizeBody, super::payment::Authorized, super::payment::PaymentHealth,
        super::payment::PaymentReport, super::payment::PaymentSettings, super::payment::ChangeBody, super::payment::Changed
    )),
    modifiers(&AdminAuth)
)]
struct PaymentApi;

pub fn payment() -> utoipa::openapi::OpenApi {
    platform::openapi::document(PaymentApi::openapi())
}
