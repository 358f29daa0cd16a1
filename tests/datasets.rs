//! The datasets lab, told as seed 004's workshop: every story runs on both backends.

mod common;

use breakroom::labs::LabName;
use breakroom::labs::datasets::{FLAGSHIP_ID, SEEDED_DOWNLOADS};
use common::{ADMIN_TOKEN, Backend, PrivateRedis, breakroom, spawn_lab};
use serde_json::{Value, json};

const PRIVATE_GENOMES: &str = "5f8e2c1a-9b7d-4c3e-8a6f-1d2e3f4a5b6c";

async fn spawn(backend: Backend, fixed: bool) -> common::TestApp {
    spawn_lab(LabName::Datasets, backend, |c| {
        if fixed {
            c.platform.fixed = vec!["stats-cache".into()];
        }
    })
    .await
}

async fn as_user(app: &common::TestApp, token: &str, method: reqwest::Method, path: &str) -> (u16, String) {
    let response = app
        .client
        .request(method, format!("{}{path}", app.url))
        .header("authorization", format!("Token {token}"))
        .send()
        .await
        .unwrap();
    (response.status().as_u16(), response.text().await.unwrap())
}

async fn dashboard(app: &common::TestApp) -> Value {
    let (status, body) =
        as_user(app, "alice-token", reqwest::Method::GET, &format!("/api/datasets/{FLAGSHIP_ID}/statistics/")).await;
    assert_eq!(status, 200, "{body}");
    serde_json::from_str(&body).unwrap()
}

async fn database(app: &common::TestApp) -> Value {
    let response = app
        .client
        .get(format!("{}/admin/datasets/{FLAGSHIP_ID}/statistics", app.url))
        .bearer_auth(ADMIN_TOKEN)
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 200);
    response.json().await.unwrap()
}

async fn download(app: &common::TestApp, token: &str) {
    let (status, body) =
        as_user(app, token, reqwest::Method::POST, &format!("/api/datasets/{FLAGSHIP_ID}/download/")).await;
    assert_eq!(status, 200, "{body}");
}

/// Seed 004's scenario: 15 attendees download the flagship 20 times.
async fn conference(app: &common::TestApp) {
    for i in 0..20 {
        download(app, &format!("attendee{:02}-token", i % 15 + 1)).await;
    }
}

on_both_backends!(
    requests_need_a_user_token,
    users_see_public_datasets_and_their_own,
    a_download_sends_the_file_and_is_audited,
    the_dashboard_stays_stale_in_the_buggy_build,
    the_fixed_build_keeps_the_dashboard_in_step,
    the_fix_can_be_switched_on_at_runtime,
    reset_restores_the_seeded_state,
    demonstrate_tells_the_story_and_is_idempotent,
    check_fails_on_the_buggy_build_and_passes_on_the_fixed_one,
);

async fn requests_need_a_user_token(backend: Backend) {
    let app = spawn(backend, false).await;
    let anonymous = app.get("/api/datasets/").await;
    assert_eq!(anonymous.status(), 401);
    assert_eq!(anonymous.headers()["www-authenticate"], "Token");
    assert_eq!(
        anonymous.json::<Value>().await.unwrap(),
        json!({ "detail": "Authentication credentials were not provided." })
    );
    let (status, body) = as_user(&app, "guess", reqwest::Method::GET, "/api/datasets/").await;
    assert_eq!((status, body.as_str()), (401, r#"{"detail":"Invalid token."}"#));
    let (status, _) =
        as_user(&app, "guess", reqwest::Method::POST, &format!("/api/datasets/{FLAGSHIP_ID}/download/")).await;
    assert_eq!(status, 401);
    assert_eq!(database(&app).await["total_downloads"], SEEDED_DOWNLOADS, "a refused download is not recorded");
}

async fn users_see_public_datasets_and_their_own(backend: Backend) {
    let app = spawn(backend, false).await;
    let (_, alice) = as_user(&app, "alice-token", reqwest::Method::GET, "/api/datasets/").await;
    let alice: Value = serde_json::from_str(&alice).unwrap();
    assert_eq!(alice["count"], 3);
    let (_, charlie) = as_user(&app, "charlie-token", reqwest::Method::GET, "/api/datasets").await;
    let charlie: Value = serde_json::from_str(&charlie).unwrap();
    assert_eq!(charlie["count"], 4, "charlie also sees his private dataset");

    let (status, detail) =
        as_user(&app, "alice-token", reqwest::Method::GET, &format!("/api/datasets/{FLAGSHIP_ID}/")).await;
    assert_eq!(status, 200);
    let detail: Value = serde_json::from_str(&detail).unwrap();
    assert_eq!(
        (detail["name"].as_str(), detail["owner"].as_str()),
        (Some("Research Analytics Dataset"), Some("alice"))
    );
    assert_eq!((detail["privacy"].as_str(), detail["file_type"].as_str()), (Some("public"), Some("csv")));

    let hidden = as_user(&app, "alice-token", reqwest::Method::GET, &format!("/api/datasets/{PRIVATE_GENOMES}/")).await;
    assert_eq!(hidden, (404, r#"{"detail":"Not found."}"#.to_string()));
    let unknown = "00000000-0000-4000-8000-000000000000";
    assert_eq!(
        as_user(&app, "alice-token", reqwest::Method::GET, &format!("/api/datasets/{unknown}/statistics/")).await.0,
        404
    );
    assert_eq!(
        as_user(&app, "alice-token", reqwest::Method::POST, &format!("/api/datasets/{unknown}/download/")).await.0,
        404
    );
    let (status, body) =
        as_user(&app, "alice-token", reqwest::Method::GET, "/api/datasets/not-a-uuid/statistics/").await;
    assert_eq!(status, 422);
    assert!(body.contains("expected a UUID"), "{body}");
}

async fn a_download_sends_the_file_and_is_audited(backend: Backend) {
    let app = spawn(backend, false).await;
    let response = app
        .client
        .post(format!("{}/api/datasets/{FLAGSHIP_ID}/download/", app.url))
        .header("authorization", "Token bob-token")
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 200);
    assert!(response.headers()["content-type"].to_str().unwrap().starts_with("text/csv"));
    assert!(response.headers()["content-disposition"].to_str().unwrap().contains("research_analytics_dataset.csv"));
    let csv = response.text().await.unwrap();
    assert!(csv.starts_with("session_id,country,duration_seconds,pages_viewed\n"));
    assert_eq!(csv.lines().count(), 21);
    assert_eq!(database(&app).await["total_downloads"], SEEDED_DOWNLOADS + 1);
}

async fn the_dashboard_stays_stale_in_the_buggy_build(backend: Backend) {
    let app = spawn(backend, false).await;
    assert_eq!(dashboard(&app).await, json!({ "total_downloads": 15, "unique_users": 3, "last_accessed": null }));
    conference(&app).await;
    assert_eq!(dashboard(&app).await["total_downloads"], 15, "the cached statistics were never invalidated");
    assert_eq!(dashboard(&app).await["unique_users"], 3);
    let truth = database(&app).await;
    assert_eq!((truth["total_downloads"].as_i64(), truth["unique_users"].as_i64()), (Some(35), Some(18)));
}

async fn the_fixed_build_keeps_the_dashboard_in_step(backend: Backend) {
    let app = spawn(backend, true).await;
    assert_eq!(dashboard(&app).await["total_downloads"], 15);
    conference(&app).await;
    let shown = dashboard(&app).await;
    assert_eq!((shown["total_downloads"].as_i64(), shown["unique_users"].as_i64()), (Some(35), Some(18)));
    assert!(
        shown["last_accessed"].as_str().is_some_and(|t| t.ends_with('Z')),
        "the fix also updates last_accessed: {shown}"
    );
    download(&app, "bob-token").await;
    assert_eq!(dashboard(&app).await["total_downloads"], 36);
}

async fn the_fix_can_be_switched_on_at_runtime(backend: Backend) {
    let app = spawn(backend, false).await;
    dashboard(&app).await;
    download(&app, "bob-token").await;
    assert_eq!(dashboard(&app).await["total_downloads"], 15);
    let flip = app.post_admin("/admin/bugs/stats-cache", Some(ADMIN_TOKEN), Some(&json!({ "fixed": true }))).await;
    assert_eq!(flip.status(), 200);
    download(&app, "bob-token").await;
    assert_eq!(dashboard(&app).await["total_downloads"], 17, "the fixed download invalidated the stale entry");
}

async fn reset_restores_the_seeded_state(backend: Backend) {
    let app = spawn(backend, false).await;
    dashboard(&app).await;
    conference(&app).await;
    app.post_admin("/admin/bugs/stats-cache", Some(ADMIN_TOKEN), Some(&json!({ "fixed": true }))).await;
    assert_eq!(app.post_admin("/admin/reset?confirm=yes", None, None).await.status(), 401);
    assert_eq!(app.post_admin("/admin/reset", Some(ADMIN_TOKEN), None).await.status(), 400);
    assert_eq!(app.post_admin("/admin/reset?confirm=yes", Some(ADMIN_TOKEN), None).await.status(), 200);
    assert_eq!(dashboard(&app).await, json!({ "total_downloads": 15, "unique_users": 3, "last_accessed": null }));
    download(&app, "bob-token").await;
    assert_eq!(dashboard(&app).await["total_downloads"], 15, "the buggy build is back for the next workshop");
}

async fn demonstrate_tells_the_story_and_is_idempotent(backend: Backend) {
    let app = spawn(backend, false).await;
    for run in 1..=2 {
        let (code, out) = breakroom(&["demonstrate", "datasets", "--url", &app.url, "--token", ADMIN_TOKEN]).await;
        assert_eq!(code, 0, "run {run}: {out}");
        for line in [
            "Dashboard shows: 15 downloads",
            "Database has: 35 downloads",
            "MISSING: 20 downloads not shown!",
            "ERROR RATE: 57.1% of data hidden",
            "Unique users: dashboard 3 vs database 18",
            "CEO's credibility damaged in board meeting",
            "dataset_stats_7c9e6679-7425-40de-944b-e07fc1f90ae7",
        ] {
            assert!(out.contains(line), "run {run}: {line:?} in\n{out}");
        }
    }
    assert_eq!(database(&app).await["total_downloads"], 35, "two runs, one story: the seeded state was restored first");

    // After a correct fix the same command shows the dashboard in step.
    let fixed = spawn(backend, true).await;
    let (code, out) = breakroom(&["demonstrate", "datasets", "--url", &fixed.url, "--token", ADMIN_TOKEN]).await;
    assert_eq!(code, 0, "{out}");
    assert!(out.contains("Dashboard shows: 35 downloads") && out.contains("in step with the database"), "{out}");
}

async fn check_fails_on_the_buggy_build_and_passes_on_the_fixed_one(backend: Backend) {
    let buggy = spawn(backend, false).await;
    let (code, out) = breakroom(&["check", "datasets", "--url", &buggy.url]).await;
    assert_eq!(code, 1, "{out}");
    assert!(
        out.contains("❌ FAIL! Cache is still stale!") && out.contains("Expected: 17") && out.contains("Got: 16"),
        "{out}"
    );
    assert!(out.contains("dataset_stats_"), "the hint names the key: {out}");

    let fixed = spawn(backend, true).await;
    let (code, out) = breakroom(&["check", "datasets", "--url", &fixed.url]).await;
    assert_eq!(code, 0, "{out}");
    for line in ["✅ SUCCESS! Cache invalidation is working!", "• Before download: 16", "• After download: 17"] {
        assert!(out.contains(line), "{line:?} in\n{out}");
    }
}

/// Attendees can look at the cache entry with `redis-cli GET dataset_stats_<id>`.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_statistics_are_cached_in_redis_under_the_exact_key() {
    let redis = PrivateRedis::start();
    let url = redis.url();
    let app = spawn_lab(LabName::Datasets, Backend::Services, |c| {
        c.platform.backend.redis_url = Some(url);
        c.platform.backend.redis_prefix = String::new();
    })
    .await;
    dashboard(&app).await;
    let cached = redis.get(&format!("dataset_stats_{FLAGSHIP_ID}")).expect("the key exists, unprefixed");
    let cached: Value = serde_json::from_str(&cached).unwrap();
    assert_eq!(cached["total_downloads"], 15);
    // Changing the cache entry by hand changes the dashboard: it really is the source.
    redis.set(
        &format!("dataset_stats_{FLAGSHIP_ID}"),
        r#"{"total_downloads":99,"unique_users":1,"last_accessed":null}"#,
    );
    assert_eq!(dashboard(&app).await["total_downloads"], 99);
}

#[tokio::test]
async fn explain_prints_the_compiled_reference_fix() {
    let (code, out) = breakroom(&["explain", "datasets"]).await;
    assert_eq!(code, 0, "{out}");
    assert!(out.contains("async fn record_download_fixed"), "{out}");
    assert!(out.contains("self.cache.delete(&[&key])"), "{out}");
    assert!(out.contains("version the key"), "{out}");
}

/// The contract the fuzzer (schemathesis, in .ci/run) checks the lab against.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_openapi_document_describes_the_lab() {
    let app = common::spawn_lab(breakroom::labs::LabName::Datasets, Backend::Embedded, |_| {}).await;
    let doc: Value = app.get("/openapi.json").await.json().await.unwrap();
    assert_eq!(doc["openapi"], "3.1.0");
    let download = &doc["paths"]["/api/datasets/{id}/download/"]["post"];
    assert_eq!(download["security"][0]["user_token"], serde_json::json!([]));
    assert!(download["responses"]["200"]["content"]["text/csv"].is_object(), "{download}");
    let schemes = &doc["components"]["securitySchemes"];
    assert_eq!(
        (schemes["user_token"]["in"].as_str(), schemes["user_token"]["name"].as_str()),
        (Some("header"), Some("Authorization"))
    );
    assert_eq!(schemes["admin_token"]["scheme"], "bearer");
    assert_eq!(doc["paths"]["/admin/reset"]["post"]["security"][0]["admin_token"], serde_json::json!([]));
    // The slashless twins the lab also serves are documented, each operation id unique.
    let twin = &doc["paths"]["/api/datasets/{id}/download"]["post"];
    assert_eq!(twin["responses"], download["responses"]);
    assert_ne!(twin["operationId"], download["operationId"]);
    assert!(doc["paths"]["/api/datasets"]["get"].is_object());
}

// datasets/n-plus-one: the list asks for each row's owner and downloads one at a time.

async fn list(app: &common::TestApp, token: &str, query: &str) -> (Value, f64) {
    let queries = || async { common::sample(&app.metrics().await, "datasets_list_queries_sum").unwrap_or(0.0) };
    let before = queries().await;
    let (status, body) = as_user(app, token, reqwest::Method::GET, &format!("/api/datasets/{query}")).await;
    assert_eq!(status, 200, "{body}");
    (serde_json::from_str(&body).unwrap(), queries().await - before)
}

async fn import(app: &common::TestApp, query: &str) -> reqwest::Response {
    app.post_admin(&format!("/admin/datasets/import{query}"), Some(ADMIN_TOKEN), None).await
}

async fn the_list_asks_twice_more_for_every_row(backend: Backend) {
    let app = spawn(backend, false).await;
    let (seeded, queries) = list(&app, "charlie-token", "").await;
    assert_eq!((seeded["count"].as_i64(), queries), (Some(4), 10.0), "a count, the page, 2 per row: {seeded}");
    let flagship = seeded["results"].as_array().unwrap().iter().find(|r| r["id"] == FLAGSHIP_ID).unwrap();
    assert_eq!((flagship["owner"].as_str(), flagship["downloads"].as_i64()), (Some("alice"), Some(15)));

    let imported = import(&app, "?count=1000").await;
    assert_eq!(imported.status(), 200);
    assert_eq!(imported.json::<Value>().await.unwrap(), json!({ "imported": 1000, "datasets": 1004 }));
    let (all, queries) = list(&app, "charlie-token", "").await;
    assert_eq!(all["count"], 1004);
    assert_eq!(all["results"].as_array().unwrap().len(), 1000, "a page holds 1000 rows at most");
    assert_eq!(queries, 2002.0, "the queries grew with the data");
    let (_, queries) = list(&app, "charlie-token", "?page_size=10").await;
    assert_eq!(queries, 22.0, "and with the page size");
    let upload = all["results"].as_array().unwrap().iter().find(|r| r["name"] == "Conference upload 0007").unwrap();
    assert_eq!(upload["downloads"], 3, "7 % 4 downloads");
    assert!(upload["owner"].as_str().is_some_and(|o| !o.is_empty()));
}

async fn the_joined_list_costs_two_queries_and_shows_the_same(backend: Backend) {
    let app = spawn(backend, false).await;
    assert_eq!(import(&app, "?count=300").await.status(), 200);
    let (buggy, buggy_queries) = list(&app, "bob-token", "?page=2&page_size=100").await;
    assert_eq!(buggy_queries, 202.0);
    let flip = json!({ "fixed": true });
    assert_eq!(app.post_admin("/admin/bugs/n-plus-one", Some(ADMIN_TOKEN), Some(&flip)).await.status(), 200);
    let (fixed, fixed_queries) = list(&app, "bob-token", "?page=2&page_size=100").await;
    assert_eq!(fixed_queries, 2.0, "a count and one joined page");
    assert_eq!(fixed, buggy, "the same page, owners and downloads");
    let (_, queries) = list(&app, "bob-token", "").await;
    assert_eq!(queries, 2.0, "whatever the page size");
    let metrics = app.metrics().await;
    assert_eq!(common::sample(&metrics, "datasets_list_queries_count"), Some(3.0), "{metrics}");
}

async fn bad_paging_and_imports_are_refused_and_change_nothing(backend: Backend) {
    let app = spawn(backend, false).await;
    for query in ["?page_size=0", "?page_size=1001", "?page_size=ten", "?page=0", "?page=-1", "?page=1.5"] {
        let (status, body) =
            as_user(&app, "alice-token", reqwest::Method::GET, &format!("/api/datasets/{query}")).await;
        assert_eq!(status, 400, "{query}: {body}");
        assert!(body.contains("must be a whole number"), "{query}: {body}");
    }
    let (past_the_end, _) = list(&app, "charlie-token", "?page=9&page_size=2").await;
    assert_eq!((past_the_end["count"].as_i64(), past_the_end["results"].as_array().map(Vec::len)), (Some(4), Some(0)));
    let (second, _) = list(&app, "charlie-token", "?page=2&page_size=3").await;
    assert_eq!(second["results"].as_array().map(Vec::len), Some(1), "4 rows: 3, then 1");

    for query in ["?count=0", "?count=10001", "?count=many"] {
        let response = import(&app, query).await;
        assert_eq!(response.status(), 400, "{query}");
    }
    let anonymous = app.client.post(format!("{}/admin/datasets/import", app.url)).send().await.unwrap();
    assert_eq!(anonymous.status(), 401);
    let (unchanged, _) = list(&app, "charlie-token", "").await;
    assert_eq!(unchanged["count"], 4, "nothing was imported");

    assert_eq!(import(&app, "").await.json::<Value>().await.unwrap()["datasets"], 1004, "1000 by default");
    assert_eq!(app.post_admin("/admin/reset?confirm=yes", Some(ADMIN_TOKEN), None).await.status(), 200);
    let (reset, _) = list(&app, "charlie-token", "").await;
    assert_eq!(reset["count"], 4, "the reset deletes the uploads");
}

async fn stage_commands_tell_a_list_that_asks_per_row_from_a_joined_one(backend: Backend) {
    let app = spawn(backend, false).await;
    let scenario = "datasets/n-plus-one";
    let token = ["--token", ADMIN_TOKEN];
    let (code, out) = breakroom(&[&["demonstrate", scenario, "--url", &app.url][..], &token].concat()).await;
    assert_eq!(code, 0, "{out}");
    assert!(out.contains("The list on the workshop's data: 3 rows, 8 queries"), "{out}");
    assert!(out.contains("1000 rows of 1003, 2002 queries"), "{out}");
    assert!(out.contains("crates/labs/datasets/src/listing.rs"), "{out}");

    let (code, out) = breakroom(&["check", scenario, "--url", &app.url]).await;
    assert_eq!(code, 1, "{out}");
    assert!(out.contains("FAIL: a page of 1 row cost 4 queries and a page of 1000 rows 2002"), "{out}");
    let (code, out) = breakroom(&[&["reset", scenario, "--url", &app.url][..], &token].concat()).await;
    assert_eq!(code, 0, "{out}");
    assert!(out.contains("Ready for the next workshop. uploads listed: 0   n-plus-one implementation: buggy"), "{out}");

    let fixed = spawn_lab(LabName::Datasets, backend, |c| c.platform.fixed = vec!["n-plus-one".into()]).await;
    let (code, out) = breakroom(&["check", scenario, "--url", &fixed.url]).await;
    assert_eq!(code, 0, "{out}");
    assert!(out.contains("SUCCESS: a page of 1 row cost 2 queries and a page of 3 rows 2"), "{out}");
    let (code, out) = breakroom(&[&["demonstrate", scenario, "--url", &fixed.url][..], &token].concat()).await;
    assert_eq!(code, 1, "a demonstration that fails to fail says so: {out}");
    assert!(out.contains("The bug did not reproduce"), "{out}");
}

on_both_backends!(
    the_list_asks_twice_more_for_every_row,
    the_joined_list_costs_two_queries_and_shows_the_same,
    bad_paging_and_imports_are_refused_and_change_nothing,
    stage_commands_tell_a_list_that_asks_per_row_from_a_joined_one,
);
