//! The datasets lab's OpenAPI document: `GET /openapi.json`. The API is Django REST
//! framework's: URLs end in a slash (the slashless form answers the same), and users
//! authenticate with `Authorization: Token <token>`.

use serde::Serialize;
use utoipa::openapi::security::{ApiKey, ApiKeyValue, SecurityScheme};
use utoipa::{Modify, OpenApi, ToSchema};

use super::listing::Listed;
use super::store::{Dataset, Statistics};
use platform::openapi::{AdminAuth, ErrorBody, ResetBody};

/// `Authorization: Token <token>` (seeded: alice-token, bob-token, attendee01-token …).
struct UserToken;

impl Modify for UserToken {
    fn modify(&self, openapi: &mut utoipa::openapi::OpenApi) {
        let components = openapi.components.get_or_insert_with(Default::default);
        let header = ApiKeyValue::with_description("Authorization", "Token <token>, e.g. Token alice-token");
        components.add_security_scheme("user_token", SecurityScheme::ApiKey(ApiKey::Header(header)));
    }
}

/// `GET /api/datasets/`.
#[derive(Serialize, ToSchema)]
pub struct DatasetList {
    /// Datasets the user may see, on every page.
    pub count: i64,
    pub results: Vec<Listed>,
}

/// `POST /admin/datasets/import`.
#[derive(Serialize, ToSchema)]
pub struct ImportBody {
    pub imported: u32,
    /// Datasets there are now.
    pub datasets: i64,
}

/// `GET /health`.
#[derive(Serialize, ToSchema)]
pub struct HealthBody {
    pub status: &'static str,
    pub service: &'static str,
}

#[derive(OpenApi)]
#[openapi(
    info(
        title = "breakroom — datasets lab",
        description = "Research datasets whose dashboard statistics are cached and never invalidated on download."
    ),
    paths(super::list, super::detail, super::download, super::statistics, super::database_statistics, super::health, super::reset, super::import),
    components(schemas(ErrorBody, super::DatasetId, Dataset, Listed, DatasetList, Statistics, HealthBody, ResetBody, ImportBody)),
    modifiers(&AdminAuth, &UserToken)
)]
pub struct DatasetsApi;

pub fn document() -> utoipa::openapi::OpenApi {
    let mut doc = platform::openapi::document(DatasetsApi::openapi());
    with_slashless_aliases(&mut doc);
    doc
}

/// The API answers `/api/datasets/1/` (DRF's form) and `/api/datasets/1` alike: each
/// path with a trailing slash gets its twin without one, with operation ids of its own.
fn with_slashless_aliases(doc: &mut utoipa::openapi::OpenApi) {
    let aliases: Vec<(String, utoipa::openapi::PathItem)> = doc
        .paths
        .paths
        .iter()
        .filter(|(path, _)| path.starts_with("/api/") && path.ends_with('/'))
        .map(|(path, item)| {
            let mut item = item.clone();
            for operation in [&mut item.get, &mut item.post].into_iter().flatten() {
                operation.operation_id = operation.operation_id.take().map(|id| format!("{id}_without_slash"));
            }
            (path.trim_end_matches('/').to_string(), item)
        })
        .collect();
    doc.paths.paths.extend(aliases);
}
