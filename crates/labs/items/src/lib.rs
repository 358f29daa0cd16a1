//! The `items` lab — a write-through cache over the database and Redis (seed 002).
//!
//! Its first scenario is an outage, not a planted bug: Redis stops answering and the
//! API degrades gracefully — reads from the database, writes still succeed, `/health`
//! says `degraded` — then recovers by itself, without serving anything stale. Its
//! second is a planted bug: when the hot item's popular view expires, every reader
//! recomputes it at once (`items/cache-stampede`, in `popular.rs`).

pub mod lab;
mod openapi;
mod popular;
pub mod settings;
pub mod stage;
mod stage_stampede;
mod store;
mod write_through;

use std::sync::Arc;
use std::time::Duration;

use axum::extract::State;
use axum::routing::{get, post};
use axum::{Json, Router};
use prometheus_client::registry::Registry;
use serde::Deserialize;

use platform::Platform;
use platform::bugs::BugInfo;
use platform::cache::Cache;
use platform::http::{ApiError, Confirmed, JsonBody, PathParam, QueryParams};
use platform::stage::Scenario;
use store::{ItemFields, ItemStore};
use write_through::{CacheStats, WriteThrough};

pub use lab::ItemsLab;
pub use store::SEED_ITEMS;

/// The outage is a fault injected from outside (Redis stops), not a planted bug; the
/// stampede is one.
pub const BUGS: &[BugInfo] = &[BugInfo {
    name: "cache-stampede",
    summary: "when the hot item's popular view expires, every reader who misses recomputes it at once",
    location: "crates/labs/items/src/popular.rs (Popular::fill_every_miss)",
}];

pub const SCENARIO: Scenario = Scenario {
    name: "items/redis-outage",
    lab: "items",
    bug: "",
    title: "Kill Redis: graceful degradation of a write-through cache",
    story: "Items are written to the database and then to Redis, and read from Redis first. \
            When Redis stops answering, the API keeps working from the database, /health says \
            degraded, and when Redis returns the cache is used again with nothing stale in it.",
    trigger: "stop Redis (redis-cli shutdown, docker compose stop redis) or CLIENT PAUSE it",
    symptom: "/health {\"status\":\"degraded\",\"dependencies\":{\"redis\":\"down\"}}; cache_misses_total{operation=\"unavailable\"} rises",
    fix: "nothing to fix: start Redis again and the lab recovers by itself",
    check: "a created item is a cache hit on its first read, an update is read back at once; with --redis, Redis is paused and every outage promise is verified",
    reset: "the three seed items, an empty cache, zero hit/miss statistics",
    rehearsal: "about 5 s with Redis, 1 s without",
    hints: [
        "Stop Redis and watch /health and /cache/stats while you read and write items: which requests still succeed, and where does a read go when the cache does not answer? The write path is in crates/labs/items/src/write_through.rs.",
        "Nothing is broken on purpose here: the database is the truth and Redis is only a cache. The promise to verify is that an outage costs speed, never correctness — and that nothing written during it is read stale once Redis is back.",
        "No code change is needed: start Redis again and let the lab recover by itself, then prove it with `breakroom check items --redis URL`, which pauses Redis and checks every promise of the outage.",
    ],
};

pub const STAMPEDE_SCENARIO: Scenario = Scenario {
    name: "items/cache-stampede",
    lab: "items",
    bug: "cache-stampede",
    title: "The hot item expires: a cache stampede every TTL",
    story: "The product page's popular view (units sold each day, the best stores) is aggregated \
            from the item's 36,000 rows of sales history and cached for 5 seconds. When the hot \
            item's entry expires, every reader who asks in that moment misses, and each runs the \
            same aggregation: the database does the work once per reader to produce one answer, \
            and latency and queries spike every TTL.",
    trigger: "a crowd of 50 readers of GET /items/{id}/popular the moment its entry expires (demonstrate), or breakroom drive items-popular",
    symptom: "items_popular_recomputes_total rises by about one per reader at each expiry, items_popular_duplicate_recomputes_total climbs; each aggregation logs items_popular_recomputed with how many ran at once; p95 of /items/{id}/popular saw-tooths with the TTL",
    fix: "--fixed cache-stampede: one aggregation per key at a time (single flight); the readers who miss meanwhile wait for it and share its view",
    check: "a crowd of 50 readers at the moment the entry expires must cost one aggregation, all 50 getting the same view",
    reset: "the three seed items, an empty cache, zero hit/miss statistics, the bug switch",
    rehearsal: "about 16 s (three waits for the popular view's 5 s TTL)",
    hints: [
        "Send a crowd to one item's popular view right after its entry expires (`breakroom demonstrate items/cache-stampede`) and compare items_popular_recomputes_total on /metrics before and after: how many aggregations did one expiry cost? Read crates/labs/items/src/popular.rs.",
        "Every reader that misses the cache runs the aggregation itself, and nothing tells it that the readers who missed a moment earlier are already computing the same view: one expiry, fifty identical aggregations.",
        "Let only the first reader who misses a key recompute it; the readers who miss while it runs wait for that one computation and share its result (single flight, one in-flight computation per key), and the next expiry starts a new one.",
    ],
};

const MAX_NAME_CHARS: usize = 200;
const MAX_DESCRIPTION_CHARS: usize = 2_000;
const MAX_PRICE: f64 = 1_000_000_000.0;

struct ItemsApp {
    platform: Platform,
    store: ItemStore,
    items: WriteThrough,
    popular: popular::Popular,
}

type Lab = State<Arc<ItemsApp>>;

pub async fn seed(db: &platform::db::Db) -> anyhow::Result<u64> {
    Ok(ItemStore::new(db.clone()).seed().await?)
}

pub async fn build(
    platform: &Platform,
    registry: &mut Registry,
    settings: &settings::ItemsArgs,
) -> anyhow::Result<Router> {
    let store = ItemStore::new(platform.db.clone());
    store.seed().await?;
    let cache = Cache::journaled(platform.redis.clone(), platform.db.clone(), platform.shutdown.clone()).await;
    let ttl = Duration::from_secs(settings.cache_ttl_seconds.max(1));
    let popular_ttl = Duration::from_secs(settings.popular_ttl_seconds.max(1));
    let popular = popular::Popular::new(
        store.clone(),
        cache.clone(),
        popular_ttl,
        platform.bugs.switch("cache-stampede"),
        registry,
    );
    let items = WriteThrough::new(store.clone(), cache, ttl, registry);
    let lab = Arc::new(ItemsApp { platform: platform.clone(), store, items, popular });
    let admin = platform.admin_only(Router::new().route("/admin/reset", post(reset)));
    Ok(Router::new()
        .route("/items", get(list).post(create))
        .route("/items/{id}", get(read).put(replace).delete(remove))
        .route("/items/{id}/popular", get(popular_view))
        .route("/cache/stats", get(stats))
        .route("/cache/clear", post(clear))
        .route("/health", get(health))
        .merge(admin)
        .merge(platform::openapi::route(openapi::document()))
        .with_state(lab))
}

/// What a client sends to create or replace an item.
#[derive(Deserialize, utoipa::ToSchema)]
struct ItemInput {
    /// Not blank, no control characters.
    #[schema(
        min_length = 1,
        max_length = 200,
        pattern = r"^[^\u0000-\u001f\u007f-\u009f]*[^\s\u0000-\u001f\u007f-\u009f][^\u0000-\u001f\u007f-\u009f]*$",
        example = "Widget A"
    )]
    name: String,
    #[serde(default)]
    #[schema(nullable, max_length = 2000, pattern = r"^[^\u0000]*$")]
    description: Option<String>,
    #[schema(minimum = 0.0, maximum = 1000000000.0, example = 29.99)]
    price: f64,
}

impl ItemInput {
    fn parse(self) -> Result<ItemFields, ApiError> {
        if self.name.trim().is_empty() {
            return Err(ApiError::unprocessable("name must not be empty"));
        }
        if self.name.chars().count() > MAX_NAME_CHARS {
            return Err(ApiError::unprocessable(format!("name must be at most {MAX_NAME_CHARS} characters")));
        }
        if self.description.as_ref().is_some_and(|d| d.chars().count() > MAX_DESCRIPTION_CHARS) {
            return Err(ApiError::unprocessable(format!(
                "description must be at most {MAX_DESCRIPTION_CHARS} characters"
            )));
        }
        if !(0.0..=MAX_PRICE).contains(&self.price) {
            return Err(ApiError::unprocessable(format!("price must be between 0 and {MAX_PRICE}")));
        }
        if self.name.contains(char::is_control) {
            return Err(ApiError::unprocessable("name must not contain control characters"));
        }
        if self.description.as_deref().is_some_and(|d| d.contains('\0')) {
            return Err(ApiError::unprocessable("description must not contain NUL characters"));
        }
        Ok(ItemFields {
            name: self.name,
            description: self.description,
            price_cents: (self.price * 100.0).round() as i64,
        })
    }
}

/// An item's id: a hyphenated UUID.
#[derive(utoipa::ToSchema)]
#[schema(value_type = String, pattern = "^[0-9a-fA-F]{8}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{12}$")]
struct ItemId(String);

/// An item id: a UUID in its usual hyphenated form.
fn item_id(raw: &str) -> Result<ItemId, ApiError> {
    // Only the hyphenated form the API hands out (uuid would also take braces or urn:).
    let hyphenated = raw.len() == 36 && raw.bytes().filter(|b| *b == b'-').count() == 4;
    hyphenated
        .then(|| uuid::Uuid::try_parse(raw).ok())
        .flatten()
        .ok_or(())
        .map(|id| ItemId(id.hyphenated().to_string()))
        .map_err(|_| {
            ApiError::unprocessable(format!("Invalid item id '{raw}': expected a UUID such as {}", SEED_ITEMS[0].0))
        })
}

#[derive(Deserialize)]
struct ListQuery {
    limit: Option<i64>,
}

/// `GET /items?limit=10`
#[utoipa::path(
    get,
    path = "/items",
    tag = "items",
    params(("limit" = Option<i64>, Query, minimum = 1, maximum = 100, description = "How many, newest first (default 10)")),
    responses(
        (status = 200, description = "The newest items", body = openapi::ItemList),
        (status = 422, description = "limit out of range or not a number", body = platform::openapi::ErrorBody),
        (status = 503, description = "The database is unavailable", body = platform::openapi::ErrorBody),
    )
)]
async fn list(
    State(lab): Lab,
    QueryParams(query): QueryParams<ListQuery>,
) -> Result<Json<openapi::ItemList>, ApiError> {
    let limit = query.limit.unwrap_or(10);
    if !(1..=100).contains(&limit) {
        return Err(ApiError::unprocessable("limit must be between 1 and 100"));
    }
    let items = lab.items.list(limit).await?;
    Ok(Json(openapi::ItemList { count: items.len(), items }))
}

/// `POST /items`
#[utoipa::path(
    post,
    path = "/items",
    tag = "items",
    request_body = ItemInput,
    responses(
        (status = 200, description = "Created: in the database, then in the cache", body = store::Item),
        (status = 413, description = "Body over 64 KiB", body = platform::openapi::ErrorBody),
        (status = 422, description = "Not a valid item", body = platform::openapi::ErrorBody),
        (status = 503, description = "The database is unavailable", body = platform::openapi::ErrorBody),
    )
)]
async fn create(State(lab): Lab, JsonBody(body): JsonBody<ItemInput>) -> Result<Json<store::Item>, ApiError> {
    let fields = body.parse()?;
    Ok(Json(lab.items.create(&fields).await?))
}

/// `GET /items/{id}`
#[utoipa::path(
    get,
    path = "/items/{id}",
    tag = "items",
    params(("id" = ItemId, Path, description = "The item's UUID, hyphenated")),
    responses(
        (status = 200, description = "The item, from the cache or the database", body = store::Item),
        (status = 404, description = "No such item", body = platform::openapi::ErrorBody),
        (status = 422, description = "Not a UUID", body = platform::openapi::ErrorBody),
        (status = 503, description = "The database is unavailable", body = platform::openapi::ErrorBody),
    )
)]
async fn read(State(lab): Lab, PathParam(id): PathParam<String>) -> Result<Json<store::Item>, ApiError> {
    let ItemId(id) = item_id(&id)?;
    lab.items.read(&id).await?.map(Json).ok_or_else(|| ApiError::not_found("Item not found"))
}

/// `GET /items/{id}/popular`
#[utoipa::path(
    get,
    path = "/items/{id}/popular",
    tag = "items",
    params(("id" = ItemId, Path, description = "The item's UUID, hyphenated")),
    responses(
        (status = 200, description = "The item's sales, aggregated or from the cache", body = popular::Answer),
        (status = 404, description = "No such item", body = platform::openapi::ErrorBody),
        (status = 422, description = "Not a UUID", body = platform::openapi::ErrorBody),
        (status = 503, description = "The database is unavailable", body = platform::openapi::ErrorBody),
    )
)]
async fn popular_view(State(lab): Lab, PathParam(id): PathParam<String>) -> Result<Json<popular::Answer>, ApiError> {
    let ItemId(id) = item_id(&id)?;
    lab.popular.view(&id).await?.map(Json).ok_or_else(|| ApiError::not_found("Item not found"))
}

/// `PUT /items/{id}`: full replace.
#[utoipa::path(
    put,
    path = "/items/{id}",
    tag = "items",
    params(("id" = ItemId, Path, description = "The item's UUID, hyphenated")),
    request_body = ItemInput,
    responses(
        (status = 200, description = "Replaced", body = store::Item),
        (status = 404, description = "No such item", body = platform::openapi::ErrorBody),
        (status = 413, description = "Body over 64 KiB", body = platform::openapi::ErrorBody),
        (status = 422, description = "Not a UUID, or not a valid item", body = platform::openapi::ErrorBody),
        (status = 503, description = "The database is unavailable", body = platform::openapi::ErrorBody),
    )
)]
async fn replace(
    State(lab): Lab,
    PathParam(id): PathParam<String>,
    JsonBody(body): JsonBody<ItemInput>,
) -> Result<Json<store::Item>, ApiError> {
    let ItemId(id) = item_id(&id)?;
    let fields = body.parse()?;
    let replaced = lab.items.replace(&id, &fields).await?;
    lab.popular.forget(&id).await;
    replaced.map(Json).ok_or_else(|| ApiError::not_found("Item not found"))
}

/// `DELETE /items/{id}`
#[utoipa::path(
    delete,
    path = "/items/{id}",
    tag = "items",
    params(("id" = ItemId, Path, description = "The item's UUID, hyphenated")),
    responses(
        (status = 200, description = "Deleted from the database and the cache", body = openapi::Deleted),
        (status = 404, description = "No such item", body = platform::openapi::ErrorBody),
        (status = 422, description = "Not a UUID", body = platform::openapi::ErrorBody),
        (status = 503, description = "The database is unavailable", body = platform::openapi::ErrorBody),
    )
)]
async fn remove(State(lab): Lab, PathParam(id): PathParam<String>) -> Result<Json<openapi::Deleted>, ApiError> {
    let ItemId(id) = item_id(&id)?;
    let removed = lab.items.remove(&id).await?;
    lab.popular.forget(&id).await;
    if !removed {
        return Err(ApiError::not_found("Item not found"));
    }
    Ok(Json(openapi::Deleted { status: "deleted", id }))
}

/// `GET /cache/stats`
#[utoipa::path(
    get,
    path = "/cache/stats",
    tag = "items",

    responses(
        (status = 200, description = "Hits, misses and cached items", body = write_through::CacheStats),
    )
)]
async fn stats(State(lab): Lab) -> Json<CacheStats> {
    Json(lab.items.stats().await)
}

/// `POST /cache/clear`: open like the original's, since the runbook calls it as is;
/// it only costs cache misses.
#[utoipa::path(
    post,
    path = "/cache/clear",
    tag = "items",

    responses(
        (status = 200, description = "Cleared", body = openapi::Cleared),
        (status = 503, description = "The cache is unreachable; nothing was cleared", body = platform::openapi::ErrorBody),
    )
)]
async fn clear(State(lab): Lab) -> Result<Json<openapi::Cleared>, ApiError> {
    let deleted = lab.items.cache().clear(write_through::KEY_PREFIX).await.map_err(|e| {
        ApiError::unavailable(format!("Cache unavailable, nothing was cleared: {e}")).with_retry_after(1)
    })?;
    Ok(Json(openapi::Cleared { status: "cleared", keys_deleted: deleted }))
}

/// `GET /health`: always 200; `degraded` names the dependency that is down. The keys
/// are the original's: `postgres` is the database, whichever backend runs.
#[utoipa::path(
    get,
    path = "/health",
    tag = "items",

    responses(
        (status = 200, description = "ok, or degraded naming what is down", body = openapi::HealthBody),
    )
)]
async fn health(State(lab): Lab) -> Json<openapi::HealthBody> {
    let database_up = lab.platform.database_up().await;
    let cache_up = lab.items.cache().is_up();
    let word = |up: bool| if up { "ok" } else { "down" };
    // Named after what really runs: seed 002's `redis` and `postgres`, or on the
    // embedded default the in-process cache and SQLite.
    let cache = match lab.items.cache().backend_name() {
        "redis" => "redis",
        _ => "in-process cache",
    };
    let database = lab.platform.db.backend_name();
    Json(openapi::HealthBody {
        status: if database_up && cache_up { "ok" } else { "degraded" },
        service: "api",
        dependencies: openapi::Dependencies(vec![(cache, word(cache_up)), (database, word(database_up))]),
    })
}

/// `POST /admin/reset?confirm=yes`: the three seed items, an empty cache, zero stats,
/// the bug switch as the lab started.
#[utoipa::path(
    post,
    path = "/admin/reset",
    tag = "items",
    security(("admin_token" = [])),
    params(platform::http::Confirmed),
    responses(
        (status = 200, description = "Reset", body = platform::openapi::ResetBody),
        platform::openapi::ResetRefusals,
        (status = 503, description = "The cache is unreachable: nothing changed", body = platform::openapi::ErrorBody),
    )
)]
async fn reset(State(lab): Lab, _: Confirmed) -> Result<Json<platform::openapi::ResetBody>, ApiError> {
    // With the cache unreachable its old entries could not be removed and would be
    // served again once it returns: refuse, and change nothing.
    if !lab.items.cache().is_up() {
        return Err(ApiError::unavailable(
            "The cache is unreachable: reset refused (nothing changed); try again when Redis answers",
        )
        .with_retry_after(1));
    }
    // First, so a reset that fails later still puts the planted bug back.
    lab.platform.bugs.restore_everywhere().await;
    lab.store.delete_all().await?;
    lab.store.seed().await?;
    for prefix in [write_through::KEY_PREFIX, popular::KEY_PREFIX] {
        lab.items.cache().clear(prefix).await.map_err(|e| {
            ApiError::unavailable(format!("The items were reset but the cache could not be cleared ({e}); reset again"))
                .with_retry_after(1)
        })?;
    }
    lab.items.reset_stats();
    tracing::warn!("lab_reset");
    Ok(platform::openapi::ResetBody::success(
        "Lab reset: the three seed items, an empty cache, zero stats, the bug switch as the lab started.",
    ))
}
