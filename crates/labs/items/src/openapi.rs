//! The items lab's OpenAPI document: `GET /openapi.json`.

use serde::Serialize;
use utoipa::{OpenApi, ToSchema};

use platform::openapi::{AdminAuth, ErrorBody, ResetBody};

/// An item's id: a hyphenated UUID.
#[derive(ToSchema)]
#[schema(value_type = String, pattern = "^[0-9a-fA-F]{8}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{12}$")]
#[allow(dead_code)]
pub struct ItemId(String);

/// What a client sends to create or replace an item.
#[derive(ToSchema)]
#[allow(dead_code)]
pub struct ItemInput {
    /// Not blank, no NUL characters.
    #[schema(min_length = 1, max_length = 200, pattern = r"^[^\u0000]*\S[^\u0000]*$", example = "Widget A")]
    name: String,
    #[schema(nullable, max_length = 2000, pattern = r"^[^\u0000]*$")]
    description: Option<String>,
    #[schema(minimum = 0.0, maximum = 1000000000.0, example = 29.99)]
    price: f64,
}

/// An item as stored and cached.
#[derive(Serialize, ToSchema)]
pub struct ItemBody {
    id: String,
    name: String,
    #[schema(nullable)]
    description: Option<String>,
    price: f64,
    created_at: String,
    updated_at: String,
}

/// `GET /items`.
#[derive(Serialize, ToSchema)]
pub struct ItemList {
    count: i64,
    items: Vec<ItemBody>,
}

/// `DELETE /items/{id}`.
#[derive(Serialize, ToSchema)]
pub struct Deleted {
    status: String,
    id: String,
}

/// `POST /cache/clear`.
#[derive(Serialize, ToSchema)]
pub struct Cleared {
    status: String,
    keys_deleted: i64,
}

/// `GET /health`: always 200; `degraded` names the dependency that is down.
#[derive(Serialize, ToSchema)]
pub struct HealthBody {
    status: String,
    service: String,
    dependencies: Dependencies,
}

/// Each dependency that runs, by name (`redis` and `postgres`, or `in-process cache`
/// and `sqlite` on the embedded default): `ok` or `down`.
#[derive(Serialize, ToSchema)]
pub struct Dependencies(std::collections::BTreeMap<String, String>);

#[derive(OpenApi)]
#[openapi(
    info(
        title = "breakroom — items lab",
        description = "A write-through cache over the database and Redis that survives a Redis outage."
    ),
    paths(
        super::list,
        super::create,
        super::read,
        super::replace,
        super::remove,
        super::stats,
        super::clear,
        super::health,
        super::reset
    ),
    components(schemas(
        ErrorBody,
        ItemId,
        ItemInput,
        ItemBody,
        ItemList,
        Deleted,
        Cleared,
        HealthBody,
        Dependencies,
        ResetBody,
        super::write_through::CacheStats
    )),
    modifiers(&AdminAuth)
)]
pub struct ItemsApi;

pub fn document() -> utoipa::openapi::OpenApi {
    platform::openapi::document(ItemsApi::openapi())
}
