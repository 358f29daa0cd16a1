//! `breakroom rehearse` proves every scenario, on both backends, and the scenario
//! docs cannot drift from the registry.

mod common;

use common::{PrivateRedis, breakroom, breakroom_with_env};

fn assert_all_rehearsed(code: i32, out: &str, outage_needs_redis: bool) {
    assert_eq!(code, 0, "{out}");
    assert!(out.contains("Every scenario rehearsed: ready for the talk."), "{out}");
    for scenario in [
        "vote/referral",
        "vote/connection-leak",
        "items/redis-outage",
        "items/cache-stampede",
        "datasets/stats-cache",
        "datasets/n-plus-one",
        "shop/black-friday",
        "shop/retry-storm",
    ] {
        assert!(out.contains(scenario), "{scenario} in\n{out}");
    }
    assert!(!out.contains('✗'), "{out}");
    assert!(out.contains("✓ vote/referral          reproduced   statuses 200×10 503×5"), "{out}");
    assert!(out.contains("✓ datasets/stats-cache   reproduced   dashboard 15, database 35"), "{out}");
    assert!(out.contains("✓ vote/connection-leak   symptom      db_pool_checked_out 10 of 10"), "{out}");
    assert!(
        out.contains(
            "✓ datasets/n-plus-one    reproduced   3 rows: 8 queries; after 1000 uploads, 1000 rows: 2002 queries"
        ),
        "{out}"
    );
    assert!(
        out.contains(
            "✓ items/cache-stampede   fixed        50 readers at the expiry: 1 ran the aggregation themselves"
        ),
        "{out}"
    );
    assert!(out.contains("✓ shop/retry-storm       fixed        checkout recovered after the peak"), "{out}");
    assert!(out.contains("✓ shop/retry-storm       reset        retry-storm buggy, payment processor normal"), "{out}");
    assert_eq!(out.contains("needs REDIS_URL"), outage_needs_redis, "{out}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_scenario_rehearses_on_the_embedded_default() {
    // Alone: the shop's timeline measures what the machine can place, and the other
    // rehearsal beside it would change that halfway.
    let _turn = common::TURNS.write().await;
    let (code, out) = breakroom(&["rehearse"]).await;
    assert_all_rehearsed(code, &out, true);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_scenario_rehearses_on_postgres_and_redis() {
    let _turn = common::TURNS.write().await;
    // A Redis of its own: the outage rehearsal pauses Redis, which would stall the
    // other tests sharing the machine's Redis.
    let redis = PrivateRedis::start();
    let (name, url) = common::create_database().await;
    let (code, out) = breakroom_with_env(&["rehearse"], &[("DATABASE_URL", &url), ("REDIS_URL", &redis.url())]).await;
    common::drop_database(&name).await;
    assert_all_rehearsed(code, &out, false);
    assert!(out.contains("✓ items/redis-outage     fixed        Redis back"), "{out}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn one_scenario_can_be_rehearsed_and_unknown_ones_are_named() {
    let _turn = common::TURNS.read().await;
    let (code, out) = breakroom(&["rehearse", "vote/referral"]).await;
    assert_eq!(code, 0, "{out}");
    assert!(!out.contains("datasets/stats-cache"), "{out}");
    let (code, out) = breakroom(&["rehearse", "--url", "http://127.0.0.1:9"]).await;
    assert_eq!(code, 2, "{out}");
    assert!(out.contains("name the scenario"), "{out}");
    let (code, out) = breakroom(&["rehearse", "vote/nope"]).await;
    assert_eq!(code, 2, "{out}");
    assert!(out.contains("unknown scenario 'vote/nope'") && out.contains("datasets/stats-cache"), "{out}");
}

/// Against a deployed lab, only read-only steps run unless --allow-reset.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_deployed_lab_is_rehearsed_without_changes_unless_allowed() {
    let _turn = common::TURNS.read().await;
    let app = common::spawn_app(common::Backend::Embedded, |_| {}).await;
    let (code, out) = breakroom(&["rehearse", "vote/referral", "--url", &app.url]).await;
    assert_eq!(code, 0, "{out}");
    assert!(out.contains("pass --allow-reset"), "{out}");
    assert_eq!(app.vote("ai", Some("conf-partner-2026")).await.0, 200, "nothing was consumed");
    assert_eq!(app.count_of("ai").await, 1);

    let (code, out) =
        breakroom(&["rehearse", "vote/referral", "--url", &app.url, "--allow-reset", "--token", common::ADMIN_TOKEN])
            .await;
    assert_eq!(code, 0, "{out}");
    assert!(out.contains("✓ vote/referral          fixed"), "{out}");
    assert_eq!(app.count_of("ai").await, 0, "left in its pre-talk state");
    let version: serde_json::Value = app.get("/version").await.json().await.unwrap();
    assert_eq!(version["referral"], "buggy");
}

/// A scenario that stops reproducing fails the rehearsal: here the lab runs fixed, so
/// the bug does not reproduce and its check never fails.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_scenario_that_does_not_reproduce_fails_the_rehearsal() {
    let _turn = common::TURNS.read().await;
    let app = common::spawn_app(common::Backend::Embedded, |c| c.platform.fixed = vec!["referral".into()]).await;
    // A reset restores the start mode, which is fixed here.
    let (code, out) =
        breakroom(&["rehearse", "vote/referral", "--url", &app.url, "--allow-reset", "--token", common::ADMIN_TOKEN])
            .await;
    assert_eq!(code, 1, "{out}");
    assert!(out.contains("✗ vote/referral          reproduced") && out.contains("REHEARSAL FAILED"), "{out}");
}

#[tokio::test]
async fn the_scenario_docs_are_generated_from_the_registry() {
    let _turn = common::TURNS.read().await;
    let committed = std::fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/docs/scenarios.md")).unwrap();
    assert_eq!(
        committed,
        breakroom::rehearse::markdown(),
        "docs/scenarios.md is stale: run `cargo run -- scenarios --markdown > docs/scenarios.md`"
    );
    let (code, out) = breakroom(&["scenarios"]).await;
    assert_eq!(code, 0);
    assert!(out.contains("vote/referral") && out.contains("rehearsal:"), "{out}");
}
