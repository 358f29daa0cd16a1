//! The cache's unit tests.

use super::*;

#[test]
fn glob_characters_in_prefixes_are_literal() {
    assert_eq!(glob_escape("item:"), "item:");
    assert_eq!(glob_escape("a*b?[c]\\"), "a\\*b\\?\\[c\\]\\\\");
}

#[test]
fn in_process_entries_live_for_the_ttl_they_were_set_with() {
    use moka::Expiry;
    let entry = Entry { value: "v".into(), ttl: Duration::from_secs(300) };
    let now = std::time::Instant::now();
    assert_eq!(EntryTtl.expire_after_create(&"k".to_string(), &entry, now), Some(Duration::from_secs(300)));
    let updated = Entry { ttl: Duration::from_secs(5), ..entry };
    let left = Some(Duration::from_secs(200));
    assert_eq!(EntryTtl.expire_after_update(&"k".to_string(), &updated, now, left), Some(Duration::from_secs(5)));
}

#[tokio::test]
async fn in_process_keys_are_counted_and_cleared_by_prefix() {
    let cache = Cache::new(None, CancellationToken::new());
    for key in ["item:1", "item:2", "other"] {
        cache.set(key, key, Duration::from_secs(60)).await.unwrap();
    }
    assert_eq!(cache.get("item:1").await.unwrap().as_deref(), Some("item:1"));
    assert_eq!(cache.count("item:").await.unwrap(), 2);
    assert_eq!(cache.clear("item:").await.unwrap(), 2);
    assert_eq!(cache.get("item:2").await.unwrap(), None);
    assert_eq!(cache.get("other").await.unwrap().as_deref(), Some("other"));
    assert_eq!(cache.delete(&["other", "missing"]).await.unwrap(), 1);
}

#[tokio::test]
async fn an_older_version_arriving_late_never_replaces_a_newer_one() {
    let cache = Cache::new(None, CancellationToken::new());
    let ttl = Duration::from_secs(60);
    // Two writes committed as versions 1 and 2; their cache writes land 2, then 1.
    assert!(cache.set_newer("item:1", r#"{"price":5}"#, 2, ttl).await.unwrap());
    assert!(!cache.set_newer("item:1", r#"{"price":1}"#, 1, ttl).await.unwrap());
    assert!(!cache.set_newer("item:1", r#"{"price":5}"#, 2, ttl).await.unwrap(), "the same version: kept");
    assert_eq!(cache.get("item:1").await.unwrap().as_deref(), Some(r#"{"_v":2,"price":5}"#));
    assert!(cache.set_newer("item:1", r#"{"price":7}"#, 3, ttl).await.unwrap());
    assert_eq!(cache.get("item:1").await.unwrap().as_deref(), Some(r#"{"_v":3,"price":7}"#));
    // A value stored without a version (an older build's) is replaced.
    cache.set("item:2", r#"{"price":1}"#, ttl).await.unwrap();
    assert!(cache.set_newer("item:2", "{}", 0, ttl).await.unwrap());
    assert_eq!(cache.get("item:2").await.unwrap().as_deref(), Some(r#"{"_v":0}"#));
}

#[test]
fn the_version_is_read_back_from_the_stored_value() {
    assert_eq!(stored_version(r#"{"_v":42,"id":"x"}"#), Some(42));
    assert_eq!(stored_version(r#"{"_v":-1}"#), Some(-1));
    assert_eq!(stored_version(r#"{"id":"x"}"#), None);
    assert_eq!(stored_version("plain"), None);
}
