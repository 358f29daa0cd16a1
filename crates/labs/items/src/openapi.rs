//! The items lab's OpenAPI document: `GET /openapi.json`.

use serde::Serialize;
use utoipa::{OpenApi, ToSchema};

use platform::openapi::{AdminAuth, ErrorBody, ResetBody};

use super::store::Item;

/// `GET /items`.
#[derive(Serialize, ToSchema)]
pub struct ItemList {
    pub count: usize,
    pub items: Vec<Item>,
}

/// `DELETE /items/{id}`.
#[derive(Serialize, ToSchema)]
pub struct Deleted {
    pub status: &'static str,
    pub id: String,
}

/// `POST /cache/clear`.
#[derive(Serialize, ToSchema)]
pub struct Cleared {
    pub status: &'static str,
    pub keys_deleted: u64,
}

/// `GET /health`: always 200; `degraded` names the dependency that is down.
#[derive(Serialize, ToSchema)]
pub struct HealthBody {
    pub status: &'static str,
    pub service: &'static str,
    pub dependencies: Dependencies,
}

/// Each dependency that runs, by name (`redis` and `postgres`, or `in-process cache`
/// and `sqlite` on the embedded default): `ok` or `down`. The cache comes first, as
/// in seed 002.
#[derive(ToSchema)]
#[schema(value_type = std::collections::BTreeMap<String, String>)]
pub struct Dependencies(pub Vec<(&'static str, &'static str)>);

impl Serialize for Dependencies {
    fn serialize<S: serde::Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.collect_map(self.0.iter().copied())
    }
}

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
        super::popular_view,
        super::replace,
        super::remove,
        super::stats,
        super::clear,
        super::health,
        super::reset
    ),
    components(schemas(
        ErrorBody,
        super::ItemId,
        super::ItemInput,
        Item,
        super::store::Availability,
        super::store::StoreSales,
        super::popular::Answer,
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
