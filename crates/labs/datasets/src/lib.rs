//! The `datasets` lab — statistics cached for an hour and never invalidated on
//! download (seed 004). The bug is in `downloads.rs`.

mod downloads;
pub mod lab;
mod openapi;
pub mod stage;
mod store;

use std::net::SocketAddr;
use std::sync::Arc;

use axum::extract::{ConnectInfo, State};
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::{Json, Router};
use prometheus_client::registry::Registry;

use downloads::Downloads;
use platform::Platform;
use platform::bugs::BugInfo;
use platform::cache::Cache;
use platform::http::{ApiError, Confirmed, PathParam};
use platform::stage::Scenario;
use store::{DatasetStore, User};

pub use downloads::{reference_fix, stats_key};
pub use lab::DatasetsLab;
pub use store::{ATTENDEES, FLAGSHIP_ID, FLAGSHIP_NAME, SEEDED_DOWNLOADS, USERS, attendee};

pub const BUGS: &[BugInfo] = &[BugInfo {
    name: "stats-cache",
    summary: "downloads never invalidate the cached statistics: the dashboard is stale for up to an hour",
    location: "crates/labs/datasets/src/downloads.rs (Downloads::record_download_buggy)",
}];

pub const SCENARIO: Scenario = Scenario {
    name: "datasets/stats-cache",
    lab: "datasets",
    bug: "stats-cache",
    title: "The CEO's dashboard disaster: a cache never invalidated",
    story: "Dataset statistics are computed from the audit log and cached for an hour under \
            dataset_stats_{id}. A download records an audit row but never deletes that key, so \
            the dashboard shows 15 downloads while the database has 35.",
    trigger: "20 downloads of the Research Analytics Dataset by 15 conference attendees",
    symptom: "GET /api/datasets/{id}/statistics/ still says 15 while the audit log has 35",
    fix: "--fixed stats-cache: delete dataset_stats_{id} after recording the download",
    check: "one more download must show on the dashboard at once",
    reset: "the seeded audit log (15 downloads), no cached statistics, the buggy download",
    rehearsal: "about 1 s",
    hints: [
        "Compare the dashboard's download count with the audit log: `GET /api/datasets/{id}/statistics/` against a COUNT of the dataset's download rows. Then follow a download request through crates/labs/datasets/src/downloads.rs.",
        "The statistics are computed once and cached for an hour under dataset_stats_{id}. Recording a download writes the audit row but leaves that cached entry alone, so the dashboard keeps the old count until the entry expires.",
        "Whoever changes the data must invalidate what was computed from it: after recording the download, delete (or refresh) that dataset's cached statistics, in the same path that wrote the audit row. One more download must then show at once.",
    ],
};

struct DatasetsApp {
    platform: Platform,
    store: DatasetStore,
    downloads: Downloads,
}

type Lab = State<Arc<DatasetsApp>>;

pub async fn seed(db: &platform::db::Db) -> anyhow::Result<()> {
    Ok(DatasetStore::new(db.clone()).seed().await?)
}

pub async fn build(platform: &Platform, _registry: &mut Registry) -> anyhow::Result<Router> {
    let store = DatasetStore::new(platform.db.clone());
    store.seed().await?;
    let cache = Cache::journaled(platform.redis.clone(), platform.db.clone(), platform.shutdown.clone()).await;
    let downloads = Downloads { store: store.clone(), cache, fix: platform.bugs.switch("stats-cache") };
    let lab = Arc::new(DatasetsApp { platform: platform.clone(), store, downloads });
    let admin = platform.admin_only(
        Router::new()
            .route("/admin/reset", post(reset))
            .route("/admin/datasets/{id}/statistics", get(database_statistics)),
    );
    // Django REST framework's URLs end in a slash; the slashless form works too.
    Ok(Router::new()
        .route("/api/datasets/", get(list))
        .route("/api/datasets", get(list))
        .route("/api/datasets/{id}/", get(detail))
        .route("/api/datasets/{id}", get(detail))
        .route("/api/datasets/{id}/download/", post(download))
        .route("/api/datasets/{id}/download", post(download))
        .route("/api/datasets/{id}/statistics/", get(statistics))
        .route("/api/datasets/{id}/statistics", get(statistics))
        .route("/health", get(health))
        .merge(admin)
        .merge(platform::openapi::route(openapi::document()))
        .with_state(lab))
}

/// `Authorization: Token <token>`, the Django REST framework convention.
async fn authenticate(lab: &DatasetsApp, headers: &HeaderMap) -> Result<User, ApiError> {
    let unauthorized = |detail: &'static str| ApiError::new(StatusCode::UNAUTHORIZED, detail);
    let value = headers.get(header::AUTHORIZATION).and_then(|v| v.to_str().ok());
    let token = match value.map(str::trim).and_then(|v| v.strip_prefix("Token ")) {
        Some(token) if !token.trim().is_empty() => token.trim(),
        _ => return Err(unauthorized("Authentication credentials were not provided.")),
    };
    lab.store.user_by_token(token).await?.ok_or_else(|| unauthorized("Invalid token."))
}

fn with_token_challenge(error: ApiError) -> Response {
    let unauthorized = error.status() == StatusCode::UNAUTHORIZED;
    let mut response = error.into_response();
    if unauthorized {
        response.headers_mut().insert(header::WWW_AUTHENTICATE, HeaderValue::from_static("Token"));
    }
    response
}

/// A dataset's id: a UUID.
#[derive(utoipa::ToSchema)]
#[schema(value_type = String, pattern = "^[0-9a-fA-F]{8}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{12}$")]
struct DatasetId(String);

fn dataset_id(raw: &str) -> Result<DatasetId, ApiError> {
    uuid::Uuid::try_parse(raw).map(|id| DatasetId(id.hyphenated().to_string())).map_err(|_| {
        ApiError::unprocessable(format!("Invalid dataset id '{raw}': expected a UUID such as {FLAGSHIP_ID}"))
    })
}

fn not_found() -> ApiError {
    ApiError::not_found("Not found.")
}

/// `GET /api/datasets/`
#[utoipa::path(
    get,
    path = "/api/datasets/",
    tag = "datasets",
    security(("user_token" = [])),
    responses(
        (status = 200, description = "The datasets this user may see", body = openapi::DatasetList),
        (status = 401, description = "No token, or not a user's token", body = platform::openapi::ErrorBody),
        (status = 503, description = "The database is unavailable", body = platform::openapi::ErrorBody),
    )
)]
async fn list(State(lab): Lab, headers: HeaderMap) -> Response {
    let result = async {
        let user = authenticate(&lab, &headers).await?;
        let datasets = lab.store.visible(&user).await?;
        Ok::<_, ApiError>(Json(openapi::DatasetList { count: datasets.len(), results: datasets }))
    };
    result.await.map_or_else(with_token_challenge, IntoResponse::into_response)
}

/// `GET /api/datasets/{id}/`
#[utoipa::path(
    get,
    path = "/api/datasets/{id}/",
    tag = "datasets",
    security(("user_token" = [])),
    params(("id" = DatasetId, Path, description = "The dataset's UUID")),
    responses(
        (status = 200, description = "The dataset (the view is audited)", body = store::Dataset),
        (status = 401, description = "No token, or not a user's token", body = platform::openapi::ErrorBody),
        (status = 404, description = "No such dataset, or not visible to this user", body = platform::openapi::ErrorBody),
        (status = 422, description = "Not a UUID", body = platform::openapi::ErrorBody),
        (status = 503, description = "The database is unavailable", body = platform::openapi::ErrorBody),
    )
)]
async fn detail(State(lab): Lab, PathParam(id): PathParam<String>, headers: HeaderMap) -> Response {
    let result = async {
        let user = authenticate(&lab, &headers).await?;
        let DatasetId(id) = dataset_id(&id)?;
        let dataset = lab.store.find_visible(&user, &id).await?.ok_or_else(not_found)?;
        lab.store.record(&user.id, "view", &id, None).await?;
        Ok::<_, ApiError>(Json(dataset))
    };
    result.await.map_or_else(with_token_challenge, IntoResponse::into_response)
}

/// `POST /api/datasets/{id}/download/`: records the download, then sends the file.
#[utoipa::path(
    post,
    path = "/api/datasets/{id}/download/",
    tag = "datasets",
    security(("user_token" = [])),
    params(("id" = DatasetId, Path, description = "The dataset's UUID")),
    responses(
        (status = 200, description = "The file; the download is in the audit log", content_type = "text/csv", body = String),
        (status = 401, description = "No token, or not a user's token", body = platform::openapi::ErrorBody),
        (status = 404, description = "No such dataset, or not visible to this user", body = platform::openapi::ErrorBody),
        (status = 422, description = "Not a UUID", body = platform::openapi::ErrorBody),
        (status = 503, description = "The database is unavailable", body = platform::openapi::ErrorBody),
    )
)]
async fn download(
    State(lab): Lab,
    PathParam(id): PathParam<String>,
    ConnectInfo(peer): ConnectInfo<SocketAddr>,
    headers: HeaderMap,
) -> Response {
    let result = async {
        let user = authenticate(&lab, &headers).await?;
        let DatasetId(id) = dataset_id(&id)?;
        let dataset = lab.store.find_visible(&user, &id).await?.ok_or_else(not_found)?;
        lab.downloads.record_download(&user, &id, Some(&peer.ip().to_string())).await?;
        tracing::info!(user = %user.username, dataset = %id, "dataset_downloaded");
        let filename = format!("{}.csv", dataset.name.to_lowercase().replace(' ', "_"));
        Ok::<_, ApiError>((
            [
                (header::CONTENT_TYPE, "text/csv; charset=utf-8".to_string()),
                (header::CONTENT_DISPOSITION, format!("attachment; filename=\"{filename}\"")),
            ],
            sample_csv(&dataset.id),
        ))
    };
    result.await.map_or_else(with_token_challenge, IntoResponse::into_response)
}

/// The file a download sends: a small CSV made from the dataset id, the same every time.
fn sample_csv(id: &str) -> String {
    let seed = id.bytes().fold(7u64, |acc, b| acc.wrapping_mul(31).wrapping_add(u64::from(b)));
    let mut csv = String::from("session_id,country,duration_seconds,pages_viewed\n");
    let countries = ["US", "DE", "IN", "BR", "JP", "NG", "FR", "CA"];
    for row in 0..20u64 {
        let x = seed.wrapping_mul(row + 1).rotate_left(17);
        csv.push_str(&format!(
            "{:08x},{},{},{}\n",
            x as u32,
            countries[(x % 8) as usize],
            30 + x % 1_800,
            1 + (x >> 8) % 40
        ));
    }
    csv
}

/// `GET /api/datasets/{id}/statistics/`: what the CEO's dashboard shows.
#[utoipa::path(
    get,
    path = "/api/datasets/{id}/statistics/",
    tag = "datasets",
    security(("user_token" = [])),
    params(("id" = DatasetId, Path, description = "The dataset's UUID")),
    responses(
        (status = 200, description = "Downloads, users, last access (cached: the planted bug)", body = store::Statistics),
        (status = 401, description = "No token, or not a user's token", body = platform::openapi::ErrorBody),
        (status = 404, description = "No such dataset, or not visible to this user", body = platform::openapi::ErrorBody),
        (status = 422, description = "Not a UUID", body = platform::openapi::ErrorBody),
        (status = 503, description = "The database is unavailable", body = platform::openapi::ErrorBody),
    )
)]
async fn statistics(State(lab): Lab, PathParam(id): PathParam<String>, headers: HeaderMap) -> Response {
    let result = async {
        let user = authenticate(&lab, &headers).await?;
        let DatasetId(id) = dataset_id(&id)?;
        lab.store.find_visible(&user, &id).await?.ok_or_else(not_found)?;
        Ok::<_, ApiError>(Json(lab.downloads.statistics(&id).await?))
    };
    result.await.map_or_else(with_token_challenge, IntoResponse::into_response)
}

/// `GET /admin/datasets/{id}/statistics`: the same numbers straight from the audit log,
/// never cached — what "the database has".
#[utoipa::path(
    get,
    path = "/admin/datasets/{id}/statistics",
    tag = "admin",
    security(("admin_token" = [])),
    params(("id" = DatasetId, Path, description = "The dataset's UUID")),
    responses(
        (status = 200, description = "The statistics straight from the audit log", body = store::Statistics),
        (status = 401, description = "Admin token missing or wrong", body = platform::openapi::ErrorBody),
        (status = 422, description = "Not a UUID", body = platform::openapi::ErrorBody),
        (status = 503, description = "The database is unavailable", body = platform::openapi::ErrorBody),
    )
)]
async fn database_statistics(State(lab): Lab, PathParam(id): PathParam<String>) -> Result<Response, ApiError> {
    let DatasetId(id) = dataset_id(&id)?;
    Ok(Json(lab.store.statistics(&id).await?).into_response())
}

#[utoipa::path(
    get,
    path = "/health",
    tag = "probes",
    responses(
        (status = 200, description = "ok, or degraded when the database does not answer", body = openapi::HealthBody),
    )
)]
async fn health(State(lab): Lab) -> Json<openapi::HealthBody> {
    let up = lab.platform.database_up().await;
    Json(openapi::HealthBody { status: if up { "ok" } else { "degraded" }, service: "datasets" })
}

/// `POST /admin/reset?confirm=yes`: the seeded audit log, no cached statistics, and the
/// bug as it was at start.
#[utoipa::path(
    post,
    path = "/admin/reset",
    tag = "admin",
    security(("admin_token" = [])),
    params(platform::http::Confirmed),
    responses(
        (status = 200, description = "Reset", body = platform::openapi::ResetBody),
        platform::openapi::ResetRefusals,
        (status = 503, description = "The reset could not complete; try again", body = platform::openapi::ErrorBody),
    )
)]
async fn reset(State(lab): Lab, _: Confirmed) -> Result<Json<platform::openapi::ResetBody>, ApiError> {
    // The database first: statistics cached from it before the clear are cleared too.
    lab.store.restore_seed().await?;
    lab.downloads.cache.clear("dataset_stats_").await.map_err(|e| {
        ApiError::unavailable(format!(
            "The audit log was reset but cached statistics could not be cleared ({e}); try again"
        ))
        .with_retry_after(1)
    })?;
    lab.platform.bugs.restore_everywhere().await;
    tracing::warn!("lab_reset");
    Ok(platform::openapi::ResetBody::success("Datasets reset to the seeded state: 15 downloads, no cached statistics."))
}
