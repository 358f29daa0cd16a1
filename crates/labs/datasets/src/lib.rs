//! The `datasets` lab — statistics cached for an hour and never invalidated on
//! download (seed 004; the bug is in `downloads.rs`), and a list that asks the
//! database twice more for every row it shows (`datasets/n-plus-one`, in `listing.rs`).

mod downloads;
pub mod lab;
mod listing;
mod openapi;
pub mod stage;
mod stage_list;
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
use platform::http::{ApiError, Confirmed, PathParam, QueryParams};
use platform::stage::Scenario;
use store::{DatasetStore, User};

pub use downloads::{reference_fix, stats_key};
pub use lab::DatasetsLab;
pub use store::{ATTENDEES, FLAGSHIP_ID, FLAGSHIP_NAME, SEEDED_DOWNLOADS, USERS, attendee};

pub const BUGS: &[BugInfo] = &[
    BugInfo {
        name: "stats-cache",
        summary: "downloads never invalidate the cached statistics: the dashboard is stale for up to an hour",
        location: "crates/labs/datasets/src/downloads.rs (Downloads::record_download_buggy)",
    },
    BugInfo {
        name: "n-plus-one",
        summary: "the list asks for each row's owner and downloads one query at a time: slow once there are many rows",
        location: "crates/labs/datasets/src/listing.rs (Listing::page_row_by_row)",
    },
];

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

pub const N_PLUS_ONE_SCENARIO: Scenario = Scenario {
    name: "datasets/n-plus-one",
    lab: "datasets",
    bug: "n-plus-one",
    title: "A thousand uploads later: the list that asks once per row",
    story: "The datasets list shows each dataset's owner and downloads. It reads the page of \
            datasets, then asks the database for each row's owner and each row's download count, \
            one query at a time. With the workshop's four datasets that is 10 quick queries; after \
            the conference uploaded a thousand it is 2,000 round trips a request, and the list \
            slows with the data, not with the load.",
    trigger: "GET /api/datasets/ on the seeded four, then POST /admin/datasets/import?count=1000 (the conference's uploads) and GET /api/datasets/ again",
    symptom: "datasets_list_queries (queries per list request) grows with the page: 10 for 4 rows, 2,002 for a page of 1,000; the list's latency grows with it; each request logs datasets_listed with its rows and queries",
    fix: "--fixed n-plus-one: one query joins the owner and counts the downloads, whatever the page size",
    check: "a list of one row and a list of every row must cost the same number of queries, with the right owners and download counts",
    reset: "the seeded datasets and audit log (the uploads deleted), no cached statistics, the bug switches",
    rehearsal: "about 2 s",
    hints: [
        "The list is fast on the seeded data and slow after the import, with the same traffic. Compare datasets_list_queries_sum / datasets_list_queries_count on /metrics for a small and a large page (`?page_size=`), and read crates/labs/datasets/src/listing.rs.",
        "The list reads a page of datasets and then, for every row, asks the database again for its owner and for its download count: two extra round trips per row, so the queries grow with the page size.",
        "Ask for everything the page shows in one query: join the owner and aggregate the downloads per dataset (a GROUP BY in a joined subquery), so a page costs the same number of queries however many rows it holds.",
    ],
};

struct DatasetsApp {
    platform: Platform,
    store: DatasetStore,
    downloads: Downloads,
    listing: listing::Listing,
}

type Lab = State<Arc<DatasetsApp>>;

pub async fn seed(db: &platform::db::Db) -> anyhow::Result<()> {
    Ok(DatasetStore::new(db.clone()).seed().await?)
}

pub async fn build(platform: &Platform, registry: &mut Registry) -> anyhow::Result<Router> {
    let store = DatasetStore::new(platform.db.clone());
    store.seed().await?;
    let cache = Cache::journaled(platform.redis.clone(), platform.db.clone(), platform.shutdown.clone()).await;
    let freshness = downloads::Freshness::new(registry);
    let downloads = Downloads { store: store.clone(), cache, fix: platform.bugs.switch("stats-cache"), freshness };
    let listing = listing::Listing::new(store.clone(), platform.bugs.switch("n-plus-one"), registry);
    let lab = Arc::new(DatasetsApp { platform: platform.clone(), store, downloads, listing });
    let admin = platform.admin_only(
        Router::new()
            .route("/admin/reset", post(reset))
            .route("/admin/datasets/import", post(import))
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
    params(
        ("page" = Option<u32>, Query, minimum = 1, maximum = 1000000, description = "Page number, from 1"),
        ("page_size" = Option<u32>, Query, minimum = 1, maximum = 1000, description = "Rows a page (default and most: 1000)"),
    ),
    responses(
        (status = 200, description = "The datasets this user may see, a page at a time, each with its downloads", body = openapi::DatasetList),
        (status = 400, description = "page or page_size is not a whole number in range", body = platform::openapi::ErrorBody),
        (status = 401, description = "No token, or not a user's token", body = platform::openapi::ErrorBody),
        (status = 422, description = "A query string that cannot be read (a parameter given twice)", body = platform::openapi::ErrorBody),
        (status = 503, description = "The database is unavailable", body = platform::openapi::ErrorBody),
    )
)]
async fn list(State(lab): Lab, QueryParams(query): QueryParams<ListQuery>, headers: HeaderMap) -> Response {
    let result = async {
        let user = authenticate(&lab, &headers).await?;
        let page = positive(query.page.as_deref(), "page", 1, MAX_PAGE)?;
        let page_size =
            positive(query.page_size.as_deref(), "page_size", listing::MAX_PAGE_SIZE, listing::MAX_PAGE_SIZE)?;
        let page = lab.listing.page(&user, page, page_size).await?;
        Ok::<_, ApiError>(Json(openapi::DatasetList { count: page.count, results: page.results }))
    };
    result.await.map_or_else(with_token_challenge, IntoResponse::into_response)
}

/// The last page one may ask for: far past the end of any list.
const MAX_PAGE: u32 = 1_000_000;

/// `GET /api/datasets/`'s query.
#[derive(serde::Deserialize)]
struct ListQuery {
    page: Option<String>,
    page_size: Option<String>,
}

/// A whole number from 1 to `max`; `default` when absent.
fn positive(raw: Option<&str>, name: &str, default: u32, max: u32) -> Result<u32, ApiError> {
    let Some(raw) = raw else { return Ok(default) };
    match raw.trim().parse::<u32>() {
        Ok(n) if (1..=max).contains(&n) => Ok(n),
        _ => Err(ApiError::bad_request(format!("{name} must be a whole number from 1 to {max} (got '{raw}')"))),
    }
}

/// The most uploads one import adds.
const MAX_IMPORT: u32 = 10_000;

/// `POST /admin/datasets/import?count=N`'s query.
#[derive(serde::Deserialize)]
struct ImportQuery {
    count: Option<String>,
}

/// `POST /admin/datasets/import?count=N`: the conference's uploads, N more public
/// datasets with a few downloads each (the trigger of datasets/n-plus-one).
#[utoipa::path(
    post,
    path = "/admin/datasets/import",
    tag = "admin",
    security(("admin_token" = [])),
    params(("count" = Option<u32>, Query, minimum = 1, maximum = 10000, description = "Datasets to add (default 1000)")),
    responses(
        (status = 200, description = "Imported; how many datasets there are now", body = openapi::ImportBody),
        (status = 400, description = "count is not a whole number from 1 to 10000", body = platform::openapi::ErrorBody),
        (status = 401, description = "Admin token missing or wrong", body = platform::openapi::ErrorBody),
        (status = 422, description = "A query string that cannot be read (a parameter given twice)", body = platform::openapi::ErrorBody),
        (status = 503, description = "The database is unavailable", body = platform::openapi::ErrorBody),
    )
)]
async fn import(
    State(lab): Lab,
    QueryParams(query): QueryParams<ImportQuery>,
) -> Result<Json<openapi::ImportBody>, ApiError> {
    let count = positive(query.count.as_deref(), "count", 1_000, MAX_IMPORT)?;
    let (imported, datasets) = lab.store.import_uploads(count).await?;
    tracing::warn!(imported, datasets, "datasets_imported");
    Ok(Json(openapi::ImportBody { imported, datasets }))
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
    lab.downloads.freshness.forget();
    lab.platform.bugs.restore_everywhere().await;
    tracing::warn!("lab_reset");
    Ok(platform::openapi::ResetBody::success(
        "Datasets reset to the seeded state: 15 downloads, no uploads, no cached statistics.",
    ))
}
