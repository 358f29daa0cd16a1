//! The write-through cache in front of the items table.
//!
//! Writes go to the database first — it is the truth — and then to the cache under
//! `item:{id}` with a TTL, so the next read is a hit. Reads try the cache first and
//! repopulate it from the database on a miss. A cache failure never fails a request:
//! it costs at most one Redis timeout, after which the platform cache skips Redis
//! until it answers again and invalidates what changed meanwhile (see
//! `platform::cache::Cache`), so no stale value is served after an outage.

use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::histogram::{Histogram, exponential_buckets};
use prometheus_client::registry::Registry;
use tracing::Instrument;

use super::store::{Item, ItemFields, ItemStore};
use platform::cache::Cache;

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct OperationLabels {
    operation: &'static str,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct DbLabels {
    operation: &'static str,
    status: &'static str,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct TargetLabels {
    target: &'static str,
}

pub struct WriteThrough {
    store: ItemStore,
    cache: Cache,
    ttl: Duration,
    hits: AtomicU64,
    misses: AtomicU64,
    hits_total: Counter,
    misses_total: Family<OperationLabels, Counter>,
    db_operations: Family<DbLabels, Counter>,
    write_seconds: Family<TargetLabels, Histogram>,
}

/// `GET /cache/stats`
#[derive(Debug, serde::Serialize, utoipa::ToSchema)]
pub struct CacheStats {
    pub cached_items: u64,
    /// Popular views in the cache (`GET /items/{id}/popular`).
    pub cached_popular_views: u64,
    pub total_hits: u64,
    pub total_misses: u64,
    pub hit_rate: f64,
    pub cache: &'static str,
}

pub const KEY_PREFIX: &str = "item:";

fn key(id: &str) -> String {
    format!("{KEY_PREFIX}{id}")
}

impl WriteThrough {
    pub fn new(store: ItemStore, cache: Cache, ttl: Duration, registry: &mut Registry) -> Self {
        let this = WriteThrough {
            store,
            cache,
            ttl,
            hits: AtomicU64::new(0),
            misses: AtomicU64::new(0),
            hits_total: Counter::default(),
            misses_total: Family::default(),
            db_operations: Family::default(),
            write_seconds: Family::new_with_constructor(|| Histogram::new(exponential_buckets(0.0005, 2.0, 14))),
        };
        this.cache.register_metrics(registry);
        registry.register("cache_hits", "Item reads answered from the cache", this.hits_total.clone());
        registry.register(
            "cache_misses",
            "Item reads the cache could not answer (operation: get = key absent, unavailable = cache down)",
            this.misses_total.clone(),
        );
        registry.register("db_operations", "Database operations by kind and outcome", this.db_operations.clone());
        registry.register(
            "write_operation_seconds",
            "Time spent writing an item, by target (redis, postgres, total)",
            this.write_seconds.clone(),
        );
        this
    }

    pub fn cache(&self) -> &Cache {
        &self.cache
    }

    fn db_result<T>(&self, operation: &'static str, result: Result<T, sqlx::Error>) -> Result<T, sqlx::Error> {
        let status = if result.is_ok() { "success" } else { "error" };
        self.db_operations.get_or_create(&DbLabels { operation, status }).inc();
        result
    }

    fn observe_write(&self, target: &'static str, started: Instant) {
        self.write_seconds.get_or_create(&TargetLabels { target }).observe(started.elapsed().as_secs_f64());
    }

    pub async fn create(&self, fields: &ItemFields) -> Result<Item, sqlx::Error> {
        let total = Instant::now();
        let span = tracing::info_span!(
            "postgres_insert",
            db.system = self.store.system(),
            db.operation = "INSERT",
            item.id = tracing::field::Empty,
            db.rows_affected = 1
        );
        let started = Instant::now();
        let result = self.store.insert(fields).instrument(span.clone()).await;
        let item = self.db_result("insert", result)?;
        span.record("item.id", item.id.as_str());
        self.observe_write("postgres", started);
        self.put_in_cache(&item).await;
        self.observe_write("total", total);
        Ok(item)
    }

    pub async fn replace(&self, id: &str, fields: &ItemFields) -> Result<Option<Item>, sqlx::Error> {
        let total = Instant::now();
        let span = tracing::info_span!(
            "postgres_update",
            db.system = self.store.system(),
            db.operation = "UPDATE",
            item.id = id,
            db.rows_affected = tracing::field::Empty
        );
        let started = Instant::now();
        let result = self.store.update(id, fields).instrument(span.clone()).await;
        let updated = self.db_result("update", result)?;
        span.record("db.rows_affected", i64::from(updated.is_some()));
        self.observe_write("postgres", started);
        if let Some(item) = &updated {
            self.put_in_cache(item).await;
        }
        self.observe_write("total", total);
        Ok(updated)
    }

    /// True when the item existed.
    pub async fn remove(&self, id: &str) -> Result<bool, sqlx::Error> {
        let span = tracing::info_span!(
            "postgres_delete",
            db.system = self.store.system(),
            db.operation = "DELETE",
            item.id = id,
            db.rows_affected = tracing::field::Empty
        );
        let result = self.store.delete(id).instrument(span.clone()).await;
        let deleted = self.db_result("delete", result)?;
        span.record("db.rows_affected", deleted as i64);
        let key = key(id);
        let span = tracing::info_span!("redis_del", db.system = "redis", db.operation = "DEL", cache.key = %key);
        if let Err(error) = self.cache.delete(&[&key]).instrument(span).await {
            tracing::warn!(%error, key, "cache delete skipped; the key is invalidated when the cache recovers");
        }
        Ok(deleted > 0)
    }

    /// A write, or a fill after a miss: the cache gets the row unless it holds a newer
    /// version of it already — concurrent PUTs' cache writes may arrive in any order, a
    /// fill may carry a row read before a write; the version the database gave the row
    /// decides, never the order of arrival ([`Cache::set_newer`]).
    async fn put_in_cache(&self, item: &Item) {
        let key = key(&item.id);
        let span = tracing::info_span!(
            "redis_set",
            db.system = "redis",
            db.operation = "SET",
            cache.key = %key,
            cache.ttl_seconds = self.ttl.as_secs(),
            item.id = %item.id
        );
        let started = Instant::now();
        let json = serde_json::to_string(item).expect("an item serializes");
        if let Err(error) = self.cache.set_newer(&key, &json, item.version, self.ttl).instrument(span).await {
            tracing::warn!(%error, key, "cache write skipped; the database has the item");
        }
        self.observe_write("redis", started);
    }

    /// Cache first; on a miss the database, then the cache is repopulated.
    pub async fn read(&self, id: &str) -> Result<Option<Item>, sqlx::Error> {
        let key = key(id);
        let span = tracing::info_span!(
            "redis_get",
            db.system = "redis",
            db.operation = "GET",
            cache.key = %key,
            cache.hit = tracing::field::Empty
        );
        let cached = self.cache.get(&key).instrument(span.clone()).await;
        let miss_kind = match cached {
            Ok(Some(json)) => match serde_json::from_str::<Item>(&json) {
                Ok(item) => {
                    span.record("cache.hit", true);
                    self.hits.fetch_add(1, Ordering::Relaxed);
                    self.hits_total.inc();
                    return Ok(Some(item));
                }
                Err(_) => "get", // an unreadable entry is a miss and gets overwritten
            },
            Ok(None) => "get",
            Err(_) => "unavailable",
        };
        span.record("cache.hit", false);
        self.misses.fetch_add(1, Ordering::Relaxed);
        self.misses_total.get_or_create(&OperationLabels { operation: miss_kind }).inc();

        let span = tracing::info_span!(
            "postgres_select",
            db.system = self.store.system(),
            db.operation = "SELECT",
            item.id = id,
            db.rows_affected = tracing::field::Empty
        );
        let result = self.store.get(id).instrument(span.clone()).await;
        let item = self.db_result("select", result)?;
        span.record("db.rows_affected", i64::from(item.is_some()));
        if let Some(item) = &item {
            // A PUT that raced this read may have stored a newer version: it stays.
            self.put_in_cache(item).await;
        }
        Ok(item)
    }

    /// Newest first, straight from the database: lists are never cached.
    pub async fn list(&self, limit: i64) -> Result<Vec<Item>, sqlx::Error> {
        let span = tracing::info_span!(
            "postgres_select_all",
            db.system = self.store.system(),
            db.operation = "SELECT",
            db.rows_affected = tracing::field::Empty
        );
        let result = self.store.list(limit).instrument(span.clone()).await;
        let items = self.db_result("select_all", result)?;
        span.record("db.rows_affected", items.len() as i64);
        Ok(items)
    }

    pub async fn stats(&self) -> CacheStats {
        let (hits, misses) = (self.hits.load(Ordering::Relaxed), self.misses.load(Ordering::Relaxed));
        let cached_items = self.cache.count(KEY_PREFIX).await;
        let cached_popular_views = self.cache.count(crate::popular::KEY_PREFIX).await.unwrap_or(0);
        let hit_rate =
            if hits + misses == 0 { 0.0 } else { (hits as f64 * 10_000.0 / (hits + misses) as f64).round() / 100.0 };
        CacheStats {
            cached_items: *cached_items.as_ref().unwrap_or(&0),
            cached_popular_views,
            total_hits: hits,
            total_misses: misses,
            hit_rate,
            cache: if cached_items.is_ok() { "ok" } else { "down" },
        }
    }

    pub fn reset_stats(&self) {
        self.hits.store(0, Ordering::Relaxed);
        self.misses.store(0, Ordering::Relaxed);
    }
}
