//! The items lab, told as seed 002's runbook: every story runs on both backends, and
//! the Redis outage runs against a Redis of the test's own.

mod common;

use std::time::{Duration, Instant};

use breakroom::labs::LabName;
use common::{ADMIN_TOKEN, Backend, PrivateRedis, breakroom, eventually, spawn_lab};
use serde_json::{Value, json};

const WIDGET_A: &str = "550e8400-e29b-41d4-a716-446655440001";

async fn spawn(backend: Backend) -> common::TestApp {
    spawn_lab(LabName::Items, backend, |_| {}).await
}

async fn json_of(response: reqwest::Response) -> (u16, Value) {
    let status = response.status().as_u16();
    (status, response.json().await.expect("a JSON body"))
}

async fn stats(app: &common::TestApp) -> Value {
    app.get("/cache/stats").await.json().await.unwrap()
}

on_both_backends!(
    the_seed_items_are_listed_newest_first,
    a_created_item_is_a_cache_hit_on_its_first_read,
    updates_and_deletes_are_visible_at_once,
    bad_requests_get_clear_client_errors,
    clearing_the_cache_turns_the_next_read_into_a_miss,
    health_reports_both_dependencies,
    reset_restores_the_seed_items,
    item_metrics_are_exported,
    the_seed_inspect_query_runs_unchanged,
    concurrent_writes_leave_the_cache_equal_to_the_row,
    a_miss_assembles_the_item_from_its_stock_in_every_store,
);

/// Seed 002's Part 4 compares a miss with a hit: a miss really costs what an item read
/// costs — the row and the item's stock in each of the chain's 2,000 stores, summed —
/// and a hit answers the same item from the cache.
async fn a_miss_assembles_the_item_from_its_stock_in_every_store(backend: Backend) {
    let app = spawn(backend).await;
    let (_, seeded) = json_of(app.get(&format!("/items/{WIDGET_A}")).await).await;
    assert_eq!(seeded["availability"]["stores"], 2000, "the seed items are stocked: {seeded}");
    let (status, created) =
        json_of(app.post_json("/items", &json!({ "name": "Test Item 1", "price": 1.99 })).await).await;
    assert_eq!(status, 200);
    let availability = created["availability"].clone();
    assert_eq!(availability["stores"], 2000, "a new item is stocked in every store: {created}");
    let (in_stock, units) = (availability["in_stock"].as_i64().unwrap(), availability["units"].as_i64().unwrap());
    assert!(0 < in_stock && in_stock < 2000 && units > in_stock, "{availability}");
    let id = created["id"].as_str().unwrap().to_owned();
    let rows = app
        .sql_count("SELECT COUNT(*) FROM item_stock WHERE item_id IN (SELECT id FROM items WHERE name = 'Test Item 1')")
        .await;
    assert_eq!(rows, 2000, "one stock row a store");

    app.post_json("/cache/clear", &json!({})).await;
    let misses = stats(&app).await["total_misses"].as_u64().unwrap();
    let (_, missed) = json_of(app.get(&format!("/items/{id}")).await).await;
    assert_eq!(
        stats(&app).await["total_misses"].as_u64().unwrap(),
        misses + 1,
        "the first read after a clear is a miss"
    );
    assert_eq!(missed["availability"], availability, "the miss summed the same stock");
    let (_, hit) = json_of(app.get(&format!("/items/{id}")).await).await;
    assert_eq!(hit, missed, "the hit answers what the miss assembled");

    let (_, updated) =
        json_of(app.put_json(&format!("/items/{id}"), &json!({ "name": "Renamed", "price": 2.5 })).await).await;
    assert_eq!(updated["availability"], availability, "an update keeps the item's stock");
    let (_, listed) = json_of(app.get("/items").await).await;
    assert!(listed["items"][0].get("availability").is_none(), "a list carries no availability: {listed}");
    app.delete(&format!("/items/{id}")).await;
    let rows = app.sql_count("SELECT COUNT(*) FROM item_stock WHERE item_id NOT IN (SELECT id FROM items)").await;
    assert_eq!(rows, 0, "a deleted item's stock goes with it");
}

async fn the_seed_items_are_listed_newest_first(backend: Backend) {
    let app = spawn(backend).await;
    let (status, body) = json_of(app.get("/items").await).await;
    assert_eq!(status, 200);
    assert_eq!(body["count"], 3);
    let (_, widget) = json_of(app.get(&format!("/items/{WIDGET_A}")).await).await;
    assert_eq!(widget["name"], "Widget A");
    assert_eq!(widget["price"], json!(29.99));
    assert_eq!(widget["description"], "A fantastic widget for all your needs");
    assert!(widget["created_at"].as_str().unwrap().ends_with('Z'), "ISO-8601 UTC: {widget}");

    let (_, created) = json_of(app.post_json("/items", &json!({ "name": "Demo Widget", "price": 42.99 })).await).await;
    let (_, listed) = json_of(app.get("/items?limit=10").await).await;
    assert_eq!(listed["count"], 4);
    assert_eq!(listed["items"][0]["id"], created["id"], "the runbook reads .items[0].id after a create");
    let (_, one) = json_of(app.get("/items?limit=1").await).await;
    assert_eq!(one["count"], 1);
}

async fn a_created_item_is_a_cache_hit_on_its_first_read(backend: Backend) {
    let app = spawn(backend).await;
    let body = json!({ "name": "Demo Widget", "description": "Created in demo", "price": 42.99 });
    let (status, created) = json_of(app.post_json("/items", &body).await).await;
    assert_eq!(status, 200);
    let id = created["id"].as_str().unwrap();
    assert!(uuid::Uuid::parse_str(id).is_ok(), "{id}");
    assert_eq!(
        (created["name"].clone(), created["description"].clone(), created["price"].clone()),
        (json!("Demo Widget"), json!("Created in demo"), json!(42.99))
    );
    assert_eq!(created["created_at"], created["updated_at"]);

    let (status, read) = json_of(app.get(&format!("/items/{id}")).await).await;
    assert_eq!(status, 200);
    assert_eq!(read, created);
    let stats = stats(&app).await;
    assert_eq!((stats["total_hits"].as_u64(), stats["total_misses"].as_u64()), (Some(1), Some(0)), "{stats}");
    assert_eq!(stats["hit_rate"], json!(100.0));
    assert_eq!(stats["cached_items"], 1);

    // A seed item was never written through: its first read misses, its second hits.
    app.get(&format!("/items/{WIDGET_A}")).await;
    app.get(&format!("/items/{WIDGET_A}")).await;
    let stats = self::stats(&app).await;
    assert_eq!((stats["total_hits"].as_u64(), stats["total_misses"].as_u64()), (Some(2), Some(1)), "{stats}");
    assert_eq!(stats["hit_rate"], json!(66.67));
    assert_eq!(stats["cached_items"], 2);
}

async fn updates_and_deletes_are_visible_at_once(backend: Backend) {
    let app = spawn(backend).await;
    let (_, created) =
        json_of(app.post_json("/items", &json!({ "name": "Original Name", "price": 10.00 })).await).await;
    let id = created["id"].as_str().unwrap();
    let (status, updated) =
        json_of(app.put_json(&format!("/items/{id}"), &json!({ "name": "Updated Name", "price": 99.99 })).await).await;
    assert_eq!(status, 200);
    assert_eq!((updated["name"].clone(), updated["price"].clone()), (json!("Updated Name"), json!(99.99)));
    assert_eq!(updated["description"], Value::Null, "PUT replaces the whole item");
    assert_eq!(updated["created_at"], created["created_at"]);
    let (_, read) = json_of(app.get(&format!("/items/{id}")).await).await;
    assert_eq!(read, updated, "read-your-writes through the cache");

    let (status, deleted) = json_of(app.delete(&format!("/items/{id}")).await).await;
    assert_eq!((status, deleted), (200, json!({ "status": "deleted", "id": id })));
    assert_eq!(json_of(app.get(&format!("/items/{id}")).await).await, (404, json!({ "detail": "Item not found" })));
    assert_eq!(json_of(app.delete(&format!("/items/{id}")).await).await.0, 404);
    let missing = "550e8400-e29b-41d4-a716-446655449999";
    assert_eq!(
        json_of(app.put_json(&format!("/items/{missing}"), &json!({ "name": "x", "price": 1 })).await).await.0,
        404
    );
}

async fn bad_requests_get_clear_client_errors(backend: Backend) {
    let app = spawn(backend).await;
    for (body, needle) in [
        (json!({ "price": 1.0 }), "name"),
        (json!({ "name": "", "price": 1.0 }), "name must not be empty"),
        (json!({ "name": "   ", "price": 1.0 }), "name must not be empty"),
        (json!({ "name": "x" }), "price"),
        (json!({ "name": "x", "price": -1 }), "price must be between"),
        (json!({ "name": "x", "price": "10" }), "price"),
        (json!({ "name": "x", "price": 1e300 }), "price must be between"),
        (json!({ "name": "x".repeat(201), "price": 1 }), "name must be at most"),
        (json!({ "name": "nul\u{0}", "price": 1 }), "control characters"),
        (json!({ "name": "\u{0}", "price": 1 }), "control characters"),
        (json!({ "name": "a\u{1c}", "price": 1 }), "control characters"),
        (json!({ "name": "tab\tname", "price": 1 }), "control characters"),
        (json!({ "name": "x", "description": "nul\u{0}", "price": 1 }), "NUL"),
    ] {
        let (status, error) = json_of(app.post_json("/items", &body).await).await;
        assert_eq!(status, 422, "{body}");
        assert!(error["detail"].as_str().unwrap().contains(needle), "{body}: {error}");
    }
    let (status, error) = json_of(app.get("/items/not-a-uuid").await).await;
    assert_eq!(status, 422);
    assert!(error["detail"].as_str().unwrap().contains("expected a UUID"), "{error}");
    assert_eq!(json_of(app.delete("/items/1%00").await).await.0, 422);
    assert_eq!(json_of(app.get("/items?limit=0").await).await.0, 422);
    assert_eq!(json_of(app.get("/items?limit=abc").await).await.0, 422);
    assert_eq!(json_of(app.post_raw("/items", "application/json", "{").await).await.0, 422);
    let (_, listed) = json_of(app.get("/items").await).await;
    assert_eq!(listed["count"], 3, "nothing was created");
}

async fn clearing_the_cache_turns_the_next_read_into_a_miss(backend: Backend) {
    let app = spawn(backend).await;
    for i in 0..3 {
        app.post_json("/items", &json!({ "name": format!("Item {i}"), "price": 1 })).await;
    }
    assert_eq!(stats(&app).await["cached_items"], 3);
    let (status, cleared) = json_of(app.post_json("/cache/clear", &json!({})).await).await;
    assert_eq!((status, cleared), (200, json!({ "status": "cleared", "keys_deleted": 3 })));
    assert_eq!(stats(&app).await["cached_items"], 0);
    app.get(&format!("/items/{WIDGET_A}")).await;
    assert_eq!(stats(&app).await["total_misses"], 1);
}

async fn health_reports_both_dependencies(backend: Backend) {
    let app = spawn(backend).await;
    let (status, health) = json_of(app.get("/health").await).await;
    assert_eq!(status, 200);
    // Named after what runs: seed 002's two services, or what the embedded default runs instead.
    let dependencies = match backend {
        Backend::Services => json!({ "redis": "ok", "postgres": "ok" }),
        Backend::Embedded => json!({ "in-process cache": "ok", "sqlite": "ok" }),
    };
    assert_eq!(health, json!({ "status": "ok", "service": "api", "dependencies": dependencies }));
}

/// Eight clients PUT `path` for about 2 s, each write acknowledged (200) whatever
/// happens to Redis; every write has its own price, so the row names the one that won.
fn eight_writers(app: &std::sync::Arc<common::TestApp>, path: &str, round: u32) -> tokio::task::JoinSet<()> {
    let deadline = Instant::now() + Duration::from_secs(2);
    let mut writers = tokio::task::JoinSet::new();
    for client in 0..8u32 {
        let (app, path) = (app.clone(), path.to_string());
        writers.spawn(async move {
            for i in 0..400u32 {
                if Instant::now() > deadline {
                    break;
                }
                let cents = (round * 8 + client) * 1000 + i + 100;
                let body = json!({ "name": format!("c{client}-{i}"), "price": f64::from(cents) / 100.0 });
                assert_eq!(app.put_json(&path, &body).await.status(), 200, "every write is acknowledged");
            }
        });
    }
    writers
}

/// The fault probe's D1: eight clients PUT one item at once for about 2 s; the database
/// commits in one order, their cache writes may land in another. Afterwards a read (a
/// cache hit) must show the row the database holds, in every round.
async fn concurrent_writes_leave_the_cache_equal_to_the_row(backend: Backend) {
    let app = std::sync::Arc::new(spawn(backend).await);
    let path = format!("/items/{WIDGET_A}");
    for round in 0..3u32 {
        let mut writers = eight_writers(&app, &path, round);
        while let Some(done) = writers.join_next().await {
            done.unwrap();
        }
        let row =
            app.sql_count("SELECT price_cents FROM items WHERE id = '550e8400-e29b-41d4-a716-446655440001'").await;
        let (status, read) = json_of(app.get(&path).await).await;
        assert_eq!(status, 200);
        let served = (read["price"].as_f64().unwrap() * 100.0).round() as i64;
        assert_eq!(served, row, "round {round}: the cache serves {read} while the row's price is {row} cents");
    }
}

/// Seed 002's inspect query runs unchanged: `price` beside `price_cents`, always equal.
async fn the_seed_inspect_query_runs_unchanged(backend: Backend) {
    let app = spawn(backend).await;
    let (status, _) = json_of(
        app.post_json("/items", &json!({ "name": "Demo Widget", "description": "Created in demo", "price": 42.99 }))
            .await,
    )
    .await;
    assert_eq!(status, 200);
    app.sql_execute("SELECT id, name, price FROM items LIMIT 10;").await;
    let cents = app.sql_count("SELECT CAST(ROUND(price * 100) AS BIGINT) FROM items WHERE name = 'Demo Widget'").await;
    assert_eq!(cents, 4299);
    app.put_json(&format!("/items/{WIDGET_A}"), &json!({ "name": "Widget A", "price": 12.5 })).await;
    let updated = app
        .sql_count(
            "SELECT CAST(ROUND(price * 100) AS BIGINT) FROM items WHERE id = '550e8400-e29b-41d4-a716-446655440001'",
        )
        .await;
    assert_eq!(updated, 1250, "price follows price_cents");
}

async fn reset_restores_the_seed_items(backend: Backend) {
    let app = spawn(backend).await;
    app.post_json("/items", &json!({ "name": "Extra", "price": 1 })).await;
    app.delete(&format!("/items/{WIDGET_A}")).await;
    assert_eq!(app.post_admin("/admin/reset?confirm=yes", None, None).await.status(), 401);
    let reset = app.post_admin("/admin/reset?confirm=yes", Some(ADMIN_TOKEN), None).await;
    assert_eq!(reset.status(), 200);
    let (_, listed) = json_of(app.get("/items").await).await;
    assert_eq!(listed["count"], 3);
    assert_eq!(json_of(app.get(&format!("/items/{WIDGET_A}")).await).await.0, 200);
    let stats = stats(&app).await;
    assert_eq!((stats["total_hits"].as_u64(), stats["total_misses"].as_u64()), (Some(0), Some(1)), "{stats}");
}

async fn item_metrics_are_exported(backend: Backend) {
    let app = spawn(backend).await;
    let (_, created) = json_of(app.post_json("/items", &json!({ "name": "M", "price": 1 })).await).await;
    app.get(&format!("/items/{}", created["id"].as_str().unwrap())).await;
    app.get(&format!("/items/{WIDGET_A}")).await;
    app.get("/items/550e8400-e29b-41d4-a716-446655449999").await;
    let metrics = app.metrics().await;
    for (series, value) in [
        ("cache_hits_total", 1.0),
        (r#"cache_misses_total{operation="get"}"#, 2.0),
        (r#"db_operations_total{operation="insert",status="success"}"#, 1.0),
        (r#"db_operations_total{operation="select",status="success"}"#, 2.0),
        (r#"write_operation_seconds_count{target="postgres"}"#, 1.0),
        (r#"write_operation_seconds_count{target="total"}"#, 1.0),
        (r#"http_requests_total{method="GET",endpoint="/items/{id}",status="404"}"#, 1.0),
    ] {
        assert_eq!(common::sample(&metrics, series), Some(value), "{series} in\n{metrics}");
    }
    // Redis timings: one write-through plus one repopulation after the seed item's miss.
    assert_eq!(common::sample(&metrics, r#"write_operation_seconds_count{target="redis"}"#), Some(2.0));
}

/// An items lab on PostgreSQL and a Redis of the test's own.
async fn with_private_redis(redis: &PrivateRedis) -> common::TestApp {
    let url = redis.url();
    spawn_lab(LabName::Items, Backend::Services, |c| {
        c.platform.backend.redis_url = Some(url);
        c.platform.redis_timeout = Duration::from_millis(150);
    })
    .await
}

async fn health_status(app: &common::TestApp) -> String {
    let health: Value = app.get("/health").await.json().await.unwrap();
    assert_eq!(health["dependencies"]["postgres"], "ok");
    health["status"].as_str().unwrap().to_string()
}

/// Seed 002 part 6: Redis stops; the API degrades gracefully and recovers by itself.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_stopped_redis_degrades_health_and_the_api_keeps_working() {
    let mut redis = PrivateRedis::start();
    let app = with_private_redis(&redis).await;
    assert_eq!(health_status(&app).await, "ok");

    redis.stop();
    assert!(eventually(Duration::from_secs(1), || async { health_status(&app).await == "degraded" }).await);
    let health: Value = app.get("/health").await.json().await.unwrap();
    assert_eq!(health["dependencies"], json!({ "redis": "down", "postgres": "ok" }));

    let (status, widget) = json_of(app.get(&format!("/items/{WIDGET_A}")).await).await;
    assert_eq!((status, widget["name"].clone()), (200, json!("Widget A")), "reads fall back to the database");
    let (status, created) =
        json_of(app.post_json("/items", &json!({ "name": "Created without Redis", "price": 77.77 })).await).await;
    assert_eq!(status, 200, "writes succeed: {created}");
    assert_eq!(json_of(app.get(&format!("/items/{}", created["id"].as_str().unwrap())).await).await.0, 200);
    assert_eq!(json_of(app.post_json("/cache/clear", &json!({})).await).await.0, 503);
    let (status, refused) = json_of(app.post_admin("/admin/reset?confirm=yes", Some(ADMIN_TOKEN), None).await).await;
    assert_eq!(status, 503, "a reset that could not clear the cache would leave stale entries: {refused}");
    assert_eq!(json_of(app.get("/items").await).await.1["count"], 4, "the refused reset changed nothing");
    assert_eq!(stats(&app).await["cache"], "down");
    assert_eq!(common::sample(&app.metrics().await, "cache_up"), Some(0.0), "an alert can see the outage");

    redis.restart();
    assert!(
        eventually(Duration::from_secs(3), || async { health_status(&app).await == "ok" }).await,
        "recovers without a restart"
    );
    let before = stats(&app).await["total_hits"].as_u64().unwrap();
    app.get(&format!("/items/{WIDGET_A}")).await; // miss: the new Redis is empty
    app.get(&format!("/items/{WIDGET_A}")).await;
    assert_eq!(stats(&app).await["total_hits"].as_u64().unwrap(), before + 1, "the cache is used again");
}

/// While Redis does not answer, each request pays at most about one Redis timeout.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn requests_during_an_outage_pay_a_bounded_price() {
    let redis = PrivateRedis::start();
    let app = with_private_redis(&redis).await;
    redis.pause(3_000);
    let mut slowest = Duration::ZERO;
    for i in 0..10 {
        let started = Instant::now();
        let (status, _) =
            json_of(app.post_json("/items", &json!({ "name": format!("During {i}"), "price": 1 })).await).await;
        assert_eq!(status, 200);
        assert_eq!(json_of(app.get(&format!("/items/{WIDGET_A}")).await).await.0, 200);
        slowest = slowest.max(started.elapsed());
    }
    // Not a benchmark: a generous bound that the crate's default (retries for ~9 s per
    // command) would blow through on the very first request.
    assert!(slowest < Duration::from_secs(2), "a write + read took {slowest:?} while Redis was paused");
    assert_eq!(health_status(&app).await, "degraded");
}

/// A new item "Before", written through to `redis`: its id and its Redis key.
async fn written_through(app: &common::TestApp, redis: &PrivateRedis) -> (String, String) {
    let (_, created) = json_of(app.post_json("/items", &json!({ "name": "Before", "price": 1 })).await).await;
    let id = created["id"].as_str().unwrap().to_string();
    let key = format!("{}item:{id}", app.config.platform.backend.redis_prefix);
    assert!(redis.get(&key).unwrap().contains("Before"), "written through");
    (id, key)
}

/// The original's bug: Redis paused (data intact), an item updated meanwhile, and
/// the old value served again once Redis answers. Ours invalidates on recovery.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn no_stale_read_after_an_outage() {
    let redis = PrivateRedis::start();
    let app = with_private_redis(&redis).await;
    let (id, _) = written_through(&app, &redis).await;

    redis.pause(1_500);
    assert!(eventually(Duration::from_secs(1), || async { health_status(&app).await == "degraded" }).await);
    let (status, _) =
        json_of(app.put_json(&format!("/items/{id}"), &json!({ "name": "During", "price": 2 })).await).await;
    assert_eq!(status, 200);
    let deleted = json_of(app.post_json("/items", &json!({ "name": "Doomed", "price": 3 })).await).await.1;
    let doomed = deleted["id"].as_str().unwrap().to_string();
    assert_eq!(json_of(app.delete(&format!("/items/{doomed}")).await).await.0, 200);

    assert!(eventually(Duration::from_secs(5), || async { health_status(&app).await == "ok" }).await);
    let (_, read) = json_of(app.get(&format!("/items/{id}")).await).await;
    assert_eq!(read["name"], "During", "the value Redis kept through the outage was invalidated");
    assert_eq!(json_of(app.get(&format!("/items/{doomed}")).await).await.0, 404);
}

/// The same outage, and breakroom restarted before Redis answers again: the keys to
/// invalidate were written to the database with the write, so the new process deletes
/// what Redis kept before it reads from it (in memory only, they died with the process).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn no_stale_read_after_a_restart_during_an_outage() {
    let redis = PrivateRedis::start();
    let app = with_private_redis(&redis).await;
    let (id, key) = written_through(&app, &redis).await;

    redis.pause(4_000);
    assert!(eventually(Duration::from_secs(1), || async { health_status(&app).await == "degraded" }).await);
    let (status, _) =
        json_of(app.put_json(&format!("/items/{id}"), &json!({ "name": "During", "price": 2 })).await).await;
    assert_eq!(status, 200);
    let app = app.restart().await;

    assert!(eventually(Duration::from_secs(8), || async { health_status(&app).await == "ok" }).await);
    assert!(redis.get(&key).is_none_or(|held| held.contains("During")), "Redis no longer holds the old value");
    let (_, read) = json_of(app.get(&format!("/items/{id}")).await).await;
    assert_eq!(read["name"], "During", "the value Redis kept through the outage and the restart was invalidated");
    assert_eq!(app.sql_count("SELECT COUNT(*) FROM cache_pending").await, 0, "the journal is emptied once done");
}

/// D1 with faults: eight clients PUT one item for 2 s while Redis pauses twice under
/// them, and in the middle round breakroom restarts during an outage. Every write is
/// acknowledged, and once Redis answers again a read shows the row, in every round.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn concurrent_writes_through_a_flapping_redis_and_a_restart_leave_the_cache_equal_to_the_row() {
    let redis = std::sync::Arc::new(PrivateRedis::start());
    let mut app = std::sync::Arc::new(with_private_redis(&redis).await);
    let path = format!("/items/{WIDGET_A}");
    let pause = |ms: u64| {
        let redis = redis.clone();
        tokio::task::spawn_blocking(move || redis.pause(ms))
    };
    for round in 0..3u32 {
        let mut writers = eight_writers(&app, &path, round);
        tokio::time::sleep(Duration::from_millis(300)).await;
        pause(300).await.unwrap();
        tokio::time::sleep(Duration::from_millis(600)).await;
        pause(300).await.unwrap();
        while let Some(done) = writers.join_next().await {
            done.unwrap();
        }
        if round == 1 {
            // One more write while Redis does not answer, then a restart before it does.
            pause(2_500).await.unwrap();
            assert!(eventually(Duration::from_secs(2), || async { health_status(&app).await == "degraded" }).await);
            let body = json!({ "name": "during the restart", "price": 9.99 });
            assert_eq!(app.put_json(&path, &body).await.status(), 200);
            let single = std::sync::Arc::try_unwrap(app).unwrap_or_else(|_| panic!("the writers are done"));
            app = std::sync::Arc::new(single.restart().await);
        }
        assert!(eventually(Duration::from_secs(8), || async { health_status(&app).await == "ok" }).await);
        let row =
            app.sql_count("SELECT price_cents FROM items WHERE id = '550e8400-e29b-41d4-a716-446655440001'").await;
        for read in 0..2 {
            let (status, item) = json_of(app.get(&path).await).await;
            assert_eq!(status, 200);
            let served = (item["price"].as_f64().unwrap() * 100.0).round() as i64;
            assert_eq!(
                served, row,
                "round {round}, read {read}: the cache serves {item} while the row holds {row} cents"
            );
        }
    }
}

/// breakroom starts while Redis is down (the original refused to) and comes up degraded.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn starts_degraded_while_redis_is_down_and_recovers() {
    let mut redis = PrivateRedis::start();
    redis.stop();
    let app = with_private_redis(&redis).await;
    assert!(eventually(Duration::from_secs(1), || async { health_status(&app).await == "degraded" }).await);
    assert_eq!(json_of(app.get(&format!("/items/{WIDGET_A}")).await).await.0, 200);
    redis.restart();
    assert!(eventually(Duration::from_secs(3), || async { health_status(&app).await == "ok" }).await);
}

on_both_backends!(demonstrate_walks_the_runbook, the_landing_page_says_what_the_lab_is_and_its_state);

/// `/` is a page for the speaker's browser: the lab's stories and their commands, the
/// planted bug's switch, what `/health` says, and where the contract and metrics are.
async fn the_landing_page_says_what_the_lab_is_and_its_state(backend: Backend) {
    let app = spawn(backend).await;
    let response = app.get("/").await;
    assert_eq!(response.status(), 200);
    assert!(response.headers()["content-type"].to_str().unwrap().starts_with("text/html"));
    assert!(response.headers()["content-security-policy"].to_str().unwrap().contains("default-src 'self'"));
    let page = response.text().await.unwrap();
    for expected in [
        "<title>breakroom · items</title>",
        "Kill Redis: graceful degradation",
        "breakroom demonstrate items/cache-stampede",
        "breakroom hint items/redis-outage",
        r#"<td><code>cache-stampede</code></td><td class="mode-buggy">BUGGY</td>"#,
        r#"<a href="/openapi.json">/openapi.json</a>"#,
        "docs/runbooks/items.md",
    ] {
        assert!(page.contains(expected), "{expected} in {page}");
    }
    assert!(!page.contains("<script"), "no script: the page works without JavaScript");
    assert!(!page.contains("popular.rs"), "where the bug lives is for the hints, not the room's screen");
    let flipped =
        app.post_admin("/admin/bugs/cache-stampede", Some(ADMIN_TOKEN), Some(&json!({ "fixed": true }))).await;
    assert_eq!(flipped.status(), 200);
    let page = app.get("/").await.text().await.unwrap();
    assert!(page.contains(r#"<td class="mode-fixed">FIXED</td>"#), "the switch as it is now: {page}");
    let health = app.get("/health").await.json::<Value>().await.unwrap();
    let status = health["status"].as_str().unwrap();
    assert!(page.contains(&format!("<tr><td>status</td><td>{status}</td></tr>")), "{page}");
    assert_eq!(app.client.head(format!("{}/", app.url)).send().await.unwrap().status(), 200);
    // Only GET and HEAD: the rest is still the API's JSON error.
    let post = app.post_json("/", &json!({})).await;
    assert!(post.status().is_client_error(), "{}", post.status());
    assert!(post.json::<Value>().await.unwrap()["detail"].is_string());
}

async fn demonstrate_walks_the_runbook(backend: Backend) {
    let app = spawn(backend).await;
    let (code, out) = breakroom(&["demonstrate", "items", "--url", &app.url]).await;
    assert_eq!(code, 0, "{out}");
    for expected in [
        "Part 3",
        "✓ first read is a cache HIT",
        "Write 5:",
        "Cache miss read:",
        "Part 5",
        "✓ an update is visible to the next read",
    ] {
        assert!(out.contains(expected), "{expected:?} in\n{out}");
    }
}

/// `check items --redis` pauses Redis itself and verifies every outage promise.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn check_verifies_the_outage_promises() {
    let redis = PrivateRedis::start();
    let app = with_private_redis(&redis).await;
    let (code, out) = breakroom(&["check", "items", "--url", &app.url, "--redis", &redis.url()]).await;
    assert_eq!(code, 0, "{out}");
    assert!(out.contains("✓ no stale read after recovery"), "{out}");
    assert!(out.contains("SUCCESS"), "{out}");
    assert!(!out.contains('✗'), "{out}");
}

/// With Redis not answering, nothing is written through: `check` says so and exits 1.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn check_fails_when_a_promise_is_broken() {
    let redis = PrivateRedis::start();
    let app = with_private_redis(&redis).await;
    redis.pause(8_000);
    let (code, out) = breakroom(&["check", "items", "--url", &app.url]).await;
    assert_eq!(code, 1, "{out}");
    assert!(out.contains("✗ write-through: a created item is a cache hit on its first read"), "{out}");
    assert!(out.contains("FAIL"), "{out}");
}

#[tokio::test]
async fn check_explains_an_unreachable_server() {
    let port = std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port();
    let (code, out) = breakroom(&["check", "items", "--url", &format!("http://127.0.0.1:{port}")]).await;
    assert_eq!(code, 2, "{out}");
    assert!(out.contains("Cannot reach the items lab") && out.contains("breakroom serve items"), "{out}");
}

/// The contract the fuzzer (schemathesis, in .ci/run) checks the lab against.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_openapi_document_describes_the_lab() {
    let app = spawn_lab(LabName::Items, Backend::Embedded, |_| {}).await;
    let doc: Value = app.get("/openapi.json").await.json().await.unwrap();
    assert_eq!(doc["openapi"], "3.1.0");
    for (path, method) in
        [("/items", "post"), ("/items/{id}", "put"), ("/items/{id}", "delete"), ("/cache/clear", "post")]
    {
        assert!(doc["paths"][path][method].is_object(), "{method} {path} is documented");
    }
    assert!(doc["components"]["schemas"]["ItemId"]["pattern"].as_str().unwrap().contains("[0-9a-fA-F]{12}"));
    // Only the hyphenated form is an id, as the pattern says.
    let simple = app.get("/items/550e8400e29b41d4a716446655440001").await;
    assert_eq!(simple.status(), 422);
}

/// Each lab takes its own flags: a vote flag on `serve items` is a usage error that
/// names its lab, not a setting silently ignored.
#[tokio::test]
async fn the_items_lab_refuses_the_vote_labs_flags() {
    let (code, out) = breakroom(&["serve", "items", "--referral-cache-capacity", "3"]).await;
    assert_eq!(code, 2, "{out}");
    assert!(out.contains("--referral-cache-capacity belongs to the vote lab"), "{out}");
    let (code, out) = breakroom(&["dev", "items", "--products", "10"]).await;
    assert_eq!(code, 2, "{out}");
    assert!(out.contains("--products belongs to the shop lab"), "{out}");
}

// items/cache-stampede: an expired popular view is recomputed by every reader who misses.

const POPULAR: &str = "/items/550e8400-e29b-41d4-a716-446655440001/popular";

/// The items lab with a popular view that expires after two seconds: long enough for
/// a crowd to be served from one fill on a busy machine.
async fn spawn_popular(backend: Backend, fixed: bool) -> common::TestApp {
    spawn_lab(LabName::Items, backend, |c| {
        c.settings.items.popular_ttl_seconds = 2;
        if fixed {
            c.platform.fixed = vec!["cache-stampede".into()];
        }
    })
    .await
}

/// What a crowd of readers got the moment the hot view expired.
struct Crowd {
    misses: usize,
    shared: usize,
    views: std::collections::BTreeSet<u64>,
    /// Growth of the aggregation counters across the crowd: (all, duplicates, shared).
    counted: (f64, f64, f64),
}

async fn counters(app: &common::TestApp) -> (f64, f64, f64) {
    let metrics = app.metrics().await;
    let value = |name: &str| common::sample(&metrics, name).unwrap_or(0.0);
    (
        value("items_popular_recomputes_total"),
        value("items_popular_duplicate_recomputes_total"),
        value("items_popular_shared_total"),
    )
}

/// `readers` GETs of `path` at once, each on a connection of its own.
fn together(
    app: &std::sync::Arc<common::TestApp>,
    readers: usize,
    path: &'static str,
) -> tokio::task::JoinSet<(u16, Value)> {
    let gate = std::sync::Arc::new(tokio::sync::Barrier::new(readers));
    let mut crowd = tokio::task::JoinSet::new();
    for _ in 0..readers {
        let (app, gate) = (app.clone(), gate.clone());
        crowd.spawn(async move {
            gate.wait().await;
            json_of(app.get(path).await).await
        });
    }
    crowd
}

/// The readers connect (a /health each) while the view is still cached, then read it
/// together once it has expired.
async fn crowd_at_expiry(app: &std::sync::Arc<common::TestApp>, readers: usize) -> Crowd {
    let (_, view) = json_of(app.get(POPULAR).await).await;
    let expired = tokio::time::Instant::now() + Duration::from_millis(view["fresh_for_ms"].as_u64().unwrap() + 250);
    together(app, readers, "/health").join_all().await;
    tokio::time::sleep_until(expired).await;
    let before = counters(app).await;
    let mut crowd = together(app, readers, POPULAR);
    let mut outcome = Crowd { misses: 0, shared: 0, views: Default::default(), counted: (0.0, 0.0, 0.0) };
    while let Some(answer) = crowd.join_next().await {
        let (status, body) = answer.unwrap();
        assert_eq!(status, 200, "{body}");
        outcome.views.insert(body["computed_at_ms"].as_u64().unwrap());
        match body["cache"].as_str().unwrap() {
            "miss" => outcome.misses += 1,
            "shared" => outcome.shared += 1,
            other => assert_eq!(other, "hit", "{body}"),
        }
    }
    let after = counters(app).await;
    outcome.counted = (after.0 - before.0, after.1 - before.1, after.2 - before.2);
    outcome
}

async fn the_popular_view_is_aggregated_from_the_sales_history_and_cached(backend: Backend) {
    let app = spawn_popular(backend, false).await;
    let (status, first) = json_of(app.get(POPULAR).await).await;
    assert_eq!((status, first["cache"].as_str()), (200, Some("miss")), "{first}");
    let sold =
        app.sql_count("SELECT SUM(units) FROM item_sales WHERE item_id = '550e8400-e29b-41d4-a716-446655440001'").await;
    let rows =
        app.sql_count("SELECT COUNT(*) FROM item_sales WHERE item_id = '550e8400-e29b-41d4-a716-446655440001'").await;
    assert_eq!(rows, 36_000, "90 days in 400 stores");
    assert_eq!(first["units_sold"].as_i64(), Some(sold), "{first}");
    let daily = first["daily_units"].as_array().unwrap();
    assert_eq!(daily.len(), 90);
    assert_eq!(daily.iter().map(|d| d.as_i64().unwrap()).sum::<i64>(), sold);
    let top = first["top_stores"].as_array().unwrap();
    assert_eq!(top.len(), 5);
    assert!(top.windows(2).all(|w| w[0]["sold"].as_i64() >= w[1]["sold"].as_i64()), "best first: {top:?}");
    assert_eq!(first["name"], "Widget A");

    let (_, second) = json_of(app.get(POPULAR).await).await;
    assert_eq!(second["cache"], "hit");
    assert_eq!(second["computed_at_ms"], first["computed_at_ms"], "the cached view");
    assert!(second["fresh_for_ms"].as_u64().unwrap() <= 2000);
    assert_eq!(stats(&app).await["cached_popular_views"], 1);
    tokio::time::sleep(Duration::from_millis(second["fresh_for_ms"].as_u64().unwrap() + 250)).await;
    let (_, expired) = json_of(app.get(POPULAR).await).await;
    assert_eq!(expired["cache"], "miss", "aggregated again once the TTL passed: {expired}");

    // A new item has no history yet; an unknown or malformed id is refused, nothing cached.
    let (_, created) = json_of(app.post_json("/items", &json!({ "name": "New", "price": 1.0 })).await).await;
    let (status, fresh) = json_of(app.get(&format!("/items/{}/popular", created["id"].as_str().unwrap())).await).await;
    assert_eq!(
        (status, fresh["units_sold"].as_i64(), fresh["daily_units"].as_array().map(Vec::len)),
        (200, Some(0), Some(0))
    );
    let (status, missing) = json_of(app.get("/items/00000000-0000-4000-8000-000000000000/popular").await).await;
    assert_eq!(status, 404, "{missing}");
    let (status, malformed) = json_of(app.get("/items/widget-a/popular").await).await;
    assert_eq!(status, 422, "{malformed}");
    assert!(malformed["detail"].as_str().unwrap().contains("expected a UUID"), "{malformed}");
    assert!(stats(&app).await["cached_popular_views"].as_u64() >= Some(1), "the new item's view is cached");
    // A renamed item's view is aggregated again; a deleted item's is gone with it.
    let path = format!("/items/{}", created["id"].as_str().unwrap());
    app.put_json(&path, &json!({ "name": "Renamed", "price": 1.0 })).await;
    let (_, renamed) = json_of(app.get(&format!("{path}/popular")).await).await;
    assert_eq!((renamed["name"].as_str(), renamed["cache"].as_str()), (Some("Renamed"), Some("miss")), "{renamed}");
    assert_eq!(app.delete(&path).await.status(), 200);
    let (status, deleted) = json_of(app.get(&format!("{path}/popular")).await).await;
    assert_eq!(status, 404, "{deleted}");
}

async fn every_reader_who_misses_an_expired_view_recomputes_it(backend: Backend) {
    let app = std::sync::Arc::new(spawn_popular(backend, false).await);
    let crowd = crowd_at_expiry(&app, 30).await;
    assert!(crowd.misses > 1, "a stampede: {} of 30 readers aggregated", crowd.misses);
    assert_eq!(crowd.counted.0, crowd.misses as f64, "each miss is one aggregation");
    assert!(crowd.counted.1 >= 1.0, "some began while another ran: {:?}", crowd.counted);
    assert_eq!((crowd.shared, crowd.counted.2), (0, 0.0), "nobody waits for anybody");
}

async fn the_fix_recomputes_once_and_shares_the_view(backend: Backend) {
    let app = std::sync::Arc::new(spawn_popular(backend, false).await);
    let flip = json!({ "fixed": true });
    assert_eq!(app.post_admin("/admin/bugs/cache-stampede", Some(ADMIN_TOKEN), Some(&flip)).await.status(), 200);
    for _ in 0..2 {
        let crowd = crowd_at_expiry(&app, 30).await;
        assert_eq!(crowd.misses, 1, "one aggregation for the crowd");
        assert_eq!(crowd.views.len(), 1, "one view for all: {:?}", crowd.views);
        assert_eq!(crowd.counted.0, 1.0);
        assert_eq!(crowd.counted.1, 0.0, "no duplicates");
        assert_eq!(crowd.counted.2, crowd.shared as f64);
    }
    // The reset brings the bug back and forgets the cached views.
    assert_eq!(app.post_admin("/admin/reset?confirm=yes", Some(ADMIN_TOKEN), None).await.status(), 200);
    assert_eq!(stats(&app).await["cached_popular_views"], 0);
    let bugs = app.client.get(format!("{}/admin/bugs", app.url)).bearer_auth(ADMIN_TOKEN).send().await.unwrap();
    let (_, bugs) = json_of(bugs).await;
    assert_eq!(bugs["bugs"][0]["mode"], "buggy", "{bugs}");
}

async fn stage_commands_tell_a_stampede_from_a_single_flight(backend: Backend) {
    let app = spawn_popular(backend, false).await;
    let scenario = "items/cache-stampede";
    let (code, out) = breakroom(&["demonstrate", scenario, "--url", &app.url]).await;
    assert_eq!(code, 0, "{out}");
    assert!(out.contains("One expiry,") && out.contains("crates/labs/items/src/popular.rs"), "{out}");
    let (code, out) = breakroom(&["check", scenario, "--url", &app.url]).await;
    assert_eq!(code, 1, "{out}");
    assert!(out.contains("FAIL: 50 readers at the expiry:") && out.contains("aggregations of the same rows"), "{out}");
    let token = ["--token", ADMIN_TOKEN];
    let (code, out) = breakroom(&[&["reset", scenario, "--url", &app.url][..], &token].concat()).await;
    assert_eq!(code, 0, "{out}");
    assert!(out.contains("Ready for the next talk. cache-stampede implementation: buggy   cache empty: true"), "{out}");

    let fixed = spawn_popular(backend, true).await;
    let (code, out) = breakroom(&["check", scenario, "--url", &fixed.url]).await;
    assert_eq!(code, 0, "{out}");
    assert!(out.contains("SUCCESS: 50 readers at the expiry: 1 ran the aggregation themselves"), "{out}");
    let (code, out) = breakroom(&["demonstrate", scenario, "--url", &fixed.url]).await;
    assert_eq!(code, 1, "a demonstration that fails to fail says so: {out}");
    assert!(out.contains("The bug did not reproduce"), "{out}");
}

on_both_backends!(
    the_popular_view_is_aggregated_from_the_sales_history_and_cached,
    every_reader_who_misses_an_expired_view_recomputes_it,
    the_fix_recomputes_once_and_shares_the_view,
    stage_commands_tell_a_stampede_from_a_single_flight,
);
