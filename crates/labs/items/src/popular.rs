//! An item's popular view — THE PLANTED BUG OF `items/cache-stampede` LIVES IN THIS FILE.
//!
//! The story: the product page shows what sells — the item's units each day of the last
//! 90 and its best stores — aggregated from the sales history (36,000 rows a seed item,
//! `item_sales`). The aggregation costs the database tens of milliseconds, so the view
//! is cached under `popular:{id}` for a short TTL (5 s by default,
//! `--popular-ttl-seconds`). When the hot item's entry expires, every reader who asks in
//! the next moment misses at once, and each runs the same aggregation: the database
//! does the work fifty times to produce one answer, latency and database queries spike
//! every TTL (a saw-tooth under `breakroom drive items-popular`), and under enough
//! readers the pool runs out.
//!
//! Both implementations sit side by side below. `fill_every_miss` is the buggy one that
//! runs by default; `fill_once` is the fix (`--fixed cache-stampede`): one
//! recomputation per key at a time (single flight), the readers who miss meanwhile
//! wait for it and share its answer. One flight per process: with several replicas,
//! each recomputes a key at most once per expiry.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::histogram::{Histogram, exponential_buckets};
use prometheus_client::registry::Registry;
use serde::{Deserialize, Serialize};
use tokio::sync::OnceCell;
use tracing::Instrument;

use super::store::{ItemStore, StoreSales};
use platform::bugs::BugSwitch;
use platform::cache::Cache;

pub const KEY_PREFIX: &str = "popular:";

fn key(id: &str) -> String {
    format!("{KEY_PREFIX}{id}")
}

/// `GET /items/{id}/popular`: what the product page shows of the item's sales.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
pub struct View {
    pub item_id: String,
    pub name: String,
    /// Units sold over the whole history.
    pub units_sold: i64,
    /// Units sold each day, oldest first.
    pub daily_units: Vec<i64>,
    /// The five stores that sold the most.
    pub top_stores: Vec<StoreSales>,
    /// When the aggregation ran (RFC 3339).
    pub computed_at: String,
    /// The same, in milliseconds since the epoch: how fresh the view is.
    pub computed_at_ms: u64,
}

/// What a reader gets: the view, and how it came to be.
#[derive(Debug, Clone, Serialize, utoipa::ToSchema)]
pub struct Answer {
    #[serde(flatten)]
    pub view: View,
    /// `hit` (from the cache), `miss` (this request ran the aggregation) or `shared`
    /// (it waited for another request's aggregation).
    pub cache: &'static str,
    /// How long the cached view has left: when it expires, the next readers miss.
    pub fresh_for_ms: u64,
}

/// What one aggregation gave, shared by the readers of a flight: its failure too, so the
/// readers who waited fail with it at once rather than each trying again in turn.
type Outcome = Result<Option<View>, Arc<sqlx::Error>>;
type Flight = Arc<OnceCell<Outcome>>;

/// A shared failure as each reader's own: a database that timed out or is unreachable
/// stays a 503 the client may retry.
fn shared_error(error: &sqlx::Error) -> sqlx::Error {
    match error {
        sqlx::Error::PoolTimedOut => sqlx::Error::PoolTimedOut,
        sqlx::Error::PoolClosed => sqlx::Error::PoolClosed,
        other => sqlx::Error::Protocol(format!("the aggregation this request waited for failed: {other}")),
    }
}

pub struct Popular {
    store: ItemStore,
    cache: Cache,
    ttl: Duration,
    fix: BugSwitch,
    /// Aggregations running now, by key, whichever implementation runs them.
    running: Mutex<HashMap<String, u32>>,
    /// The fix's flights: one aggregation per key at a time.
    flights: Mutex<HashMap<String, Flight>>,
    recomputes: Counter,
    duplicates: Counter,
    shared: Counter,
    in_flight: Gauge,
    recompute_seconds: Histogram,
}

fn millis_since_epoch() -> u64 {
    SystemTime::now().duration_since(UNIX_EPOCH).map_or(0, |d| d.as_millis() as u64)
}

fn lock<T>(mutex: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    mutex.lock().unwrap_or_else(|poisoned| poisoned.into_inner())
}

/// One aggregation under way: counted in `running` until dropped.
struct Running<'a> {
    popular: &'a Popular,
    key: String,
}

impl Drop for Running<'_> {
    fn drop(&mut self) {
        let mut running = lock(&self.popular.running);
        if let Some(n) = running.get_mut(&self.key) {
            *n -= 1;
            if *n == 0 {
                running.remove(&self.key);
            }
        }
        self.popular.in_flight.dec();
    }
}

impl Popular {
    pub fn new(store: ItemStore, cache: Cache, ttl: Duration, fix: BugSwitch, registry: &mut Registry) -> Popular {
        let this = Popular {
            store,
            cache,
            ttl,
            fix,
            running: Mutex::default(),
            flights: Mutex::default(),
            recomputes: Counter::default(),
            duplicates: Counter::default(),
            shared: Counter::default(),
            in_flight: Gauge::default(),
            recompute_seconds: Histogram::new(exponential_buckets(0.002, 2.0, 12)),
        };
        registry.register(
            "items_popular_recomputes",
            "Aggregations of an item's popular view from its sales history (each one a cache fill)",
            this.recomputes.clone(),
        );
        registry.register(
            "items_popular_duplicate_recomputes",
            "Aggregations that began while another for the same item was still running: a cache stampede",
            this.duplicates.clone(),
        );
        registry.register(
            "items_popular_shared",
            "Readers who missed and waited for another reader's aggregation instead of running their own",
            this.shared.clone(),
        );
        registry.register(
            "items_popular_recomputes_in_flight",
            "Aggregations of popular views running now",
            this.in_flight.clone(),
        );
        registry.register(
            "items_popular_recompute_seconds",
            "Time one aggregation of a popular view took",
            this.recompute_seconds.clone(),
        );
        this
    }

    /// The item's popular view (None: no such item): the cache first, then on a miss
    /// whichever implementation is on.
    pub async fn view(&self, id: &str) -> Result<Option<Answer>, sqlx::Error> {
        if let Some(view) = self.cached(&key(id)).await {
            return Ok(Some(self.answer(view, "hit")));
        }
        let (view, how) =
            if self.fix.is_fixed() { self.fill_once(id).await? } else { self.fill_every_miss(id).await? };
        Ok(view.map(|view| self.answer(view, how)))
    }

    /// Drops the item's cached view: after the item changed or was deleted, the next
    /// reader aggregates it again (or gets the 404). A view aggregated while the item
    /// was being changed may still land after this and live out its TTL.
    pub async fn forget(&self, id: &str) {
        let key = key(id);
        if let Err(error) = self.cache.delete(&[&key]).await {
            tracing::warn!(%error, key, "cache delete skipped; the key is invalidated when the cache recovers");
        }
    }

    fn answer(&self, view: View, cache: &'static str) -> Answer {
        let age = millis_since_epoch().saturating_sub(view.computed_at_ms);
        let fresh_for_ms = (self.ttl.as_millis() as u64).saturating_sub(age);
        Answer { view, cache, fresh_for_ms }
    }

    /// 🐛 BUGGY (default): every reader that misses runs the aggregation itself.
    async fn fill_every_miss(&self, id: &str) -> Result<(Option<View>, &'static str), sqlx::Error> {
        // BUG: nothing tells this reader that the readers who missed a moment ago are
        // already aggregating the same rows: when a hot entry expires, each of them
        // recomputes it, and the database does the same work once per reader.
        Ok((self.recompute(id).await?, "miss"))
    }

    /// ✅ FIXED: one aggregation per key at a time; whoever misses while it runs waits
    /// for it and shares its view.
    async fn fill_once(&self, id: &str) -> Result<(Option<View>, &'static str), sqlx::Error> {
        let key = key(id);
        let flight = {
            let mut flights = lock(&self.flights);
            let flight = flights.entry(key.clone()).or_default();
            if flight.initialized() {
                // A finished flight is never reused: its view may be older than the TTL.
                *flight = Flight::default();
            }
            flight.clone()
        };
        let mut how = "shared";
        let outcome = flight
            .get_or_init(|| async {
                // The flight before this one may have filled the cache after this
                // reader missed it: then that view is the answer.
                if let Some(view) = self.cached(&key).await {
                    how = "hit";
                    return Ok(Some(view));
                }
                how = "miss";
                self.recompute(id).await.map_err(Arc::new)
            })
            .await
            .clone();
        if how == "shared" {
            self.shared.inc();
        } else {
            // The view is in the cache now: the next reader hits it, or starts a new flight.
            let mut flights = lock(&self.flights);
            if flights.get(&key).is_some_and(|f| Arc::ptr_eq(f, &flight)) {
                flights.remove(&key);
            }
        }
        let view = outcome.map_err(|e| shared_error(&e))?;
        Ok((view, how))
    }

    /// The cached view, when the cache holds a readable one.
    async fn cached(&self, key: &str) -> Option<View> {
        let span = tracing::info_span!("redis_get", db.system = "redis", db.operation = "GET", cache.key = %key);
        let json = self.cache.get(key).instrument(span).await.ok()??;
        serde_json::from_str(&json).ok()
    }

    /// Aggregates the item's sales and caches the view for the TTL.
    async fn recompute(&self, id: &str) -> Result<Option<View>, sqlx::Error> {
        let key = key(id);
        let concurrent = {
            let mut running = lock(&self.running);
            let n = running.entry(key.clone()).or_default();
            *n += 1;
            *n
        };
        self.in_flight.inc();
        let _running = Running { popular: self, key: key.clone() };
        let started = Instant::now();
        let span = tracing::info_span!(
            "popular_recompute",
            db.system = self.store.system(),
            db.operation = "SELECT",
            item.id = id,
            cache.key = %key,
            popular.concurrent = concurrent
        );
        let computed = async {
            let Some(name) = self.store.name(id).await? else { return Ok(None) };
            if concurrent > 1 {
                // Only an item that exists is aggregated: concurrent 404s are no stampede.
                self.duplicates.inc();
            }
            let sales = self.store.sales(id).await?;
            Ok::<_, sqlx::Error>(Some((name, sales)))
        }
        .instrument(span)
        .await;
        let Some((name, sales)) = computed? else { return Ok(None) };
        self.recomputes.inc();
        self.recompute_seconds.observe(started.elapsed().as_secs_f64());
        let view = View {
            item_id: id.to_string(),
            name,
            units_sold: sales.by_day.iter().sum(),
            daily_units: sales.by_day,
            top_stores: sales.top_stores,
            computed_at: platform::clock::now(),
            computed_at_ms: millis_since_epoch(),
        };
        tracing::info!(
            key,
            concurrent,
            elapsed_ms = started.elapsed().as_millis() as u64,
            implementation = self.fix.mode(),
            "items_popular_recomputed"
        );
        let json = serde_json::to_string(&view).expect("a view serializes");
        let span = tracing::info_span!("redis_set", db.system = "redis", db.operation = "SET", cache.key = %key);
        if let Err(error) = self.cache.set(&key, &json, self.ttl).instrument(span).await {
            tracing::warn!(%error, key, "cache write skipped; the next reader aggregates again");
        }
        Ok(Some(view))
    }
}
