//! Redis, when `REDIS_URL` is set: one multiplexed connection with short timeouts,
//! and a pub/sub subscription that reconnects by itself.
//!
//! The redis crate's defaults retry a dead server for about nine seconds per command;
//! a lab must instead notice within a request and fall back, so commands get one
//! retry and a timeout of `redis_timeout` (150 ms by default).

use std::sync::Arc;
use std::time::Duration;

use anyhow::Context;
use futures_util::StreamExt;
use redis::aio::{ConnectionManager, ConnectionManagerConfig};
use tokio::sync::mpsc;
use tokio_util::sync::CancellationToken;

mod journal;
mod probe;
use crate::db::Db;
use journal::Journal;
use probe::probe;

#[derive(Clone)]
pub struct Redis {
    client: redis::Client,
    conn: ConnectionManager,
    prefix: Arc<str>,
    timeout: Duration,
}

/// What a subscription reports to its owner.
#[derive(Debug)]
pub enum Subscription {
    /// (Re)subscribed: messages published while the subscription was down are lost,
    /// so the owner should push a fresh full snapshot.
    Subscribed,
    Message(String),
}

impl Redis {
    /// Prepares the connection without waiting for Redis: a lab starts even while
    /// Redis is down and reports itself degraded until it answers.
    pub fn connect(url: &str, prefix: &str, timeout: Duration) -> anyhow::Result<Redis> {
        let client = redis::Client::open(url)
            .with_context(|| format!("REDIS_URL is not a valid Redis URL: {}", super::db::redact(url)))?;
        let config = ConnectionManagerConfig::new()
            .set_number_of_retries(1)
            .set_min_delay(Duration::from_millis(50))
            .set_max_delay(Duration::from_millis(200))
            .set_response_timeout(Some(timeout))
            .set_connection_timeout(Some(timeout));
        let conn = ConnectionManager::new_lazy_with_config(client.clone(), config)
            .context("preparing the Redis connection")?;
        Ok(Redis { client, conn, prefix: prefix.into(), timeout })
    }

    /// The full name of one of a lab's keys or channels.
    pub fn key(&self, name: &str) -> String {
        format!("{}{}", self.prefix, name)
    }

    pub fn conn(&self) -> ConnectionManager {
        self.conn.clone()
    }

    pub async fn ping(&self) -> redis::RedisResult<()> {
        let mut conn = self.conn();
        redis::cmd("PING").query_async::<String>(&mut conn).await.map(drop)
    }

    /// Subscribes to `channel` (already prefixed) until `shutdown`, reconnecting after
    /// every loss; the receiver sees `Subscribed` after each (re)subscription.
    pub fn subscribe(&self, channel: String, shutdown: CancellationToken) -> mpsc::Receiver<Subscription> {
        self.subscribe_pinging(channel, shutdown, PUBSUB_PING_INTERVAL)
    }

    /// [`subscribe`](Self::subscribe), checking the connection every `ping_every`.
    pub fn subscribe_pinging(
        &self,
        channel: String,
        shutdown: CancellationToken,
        ping_every: Duration,
    ) -> mpsc::Receiver<Subscription> {
        let (tx, rx) = mpsc::channel(256);
        let client = self.client.clone();
        let connect_timeout = self.timeout.max(Duration::from_secs(1));
        tokio::spawn(async move {
            // Wait between reconnection attempts so a dead Redis is not hammered.
            let backoff = Duration::from_millis(500);
            loop {
                let attempt = async {
                    let mut pubsub = client.get_async_pubsub().await?;
                    pubsub.subscribe(&channel).await?;
                    redis::RedisResult::Ok(pubsub)
                };
                match tokio::time::timeout(connect_timeout, attempt).await {
                    Ok(Ok(pubsub)) => {
                        if tx.send(Subscription::Subscribed).await.is_err() {
                            return;
                        }
                        // A connection can die without closing (a lost node, a partition):
                        // a ping that goes unanswered ends it, and the loop reconnects.
                        let (mut sink, mut messages) = pubsub.split();
                        let mut pings = tokio::time::interval(ping_every);
                        pings.tick().await;
                        loop {
                            tokio::select! {
                                _ = shutdown.cancelled() => return,
                                _ = pings.tick() => {
                                    // A subscribed connection answers PING with `["pong", ""]`,
                                    // not `PONG`: any answer shows it is alive.
                                    let pong = tokio::time::timeout(connect_timeout, sink.ping::<redis::Value>()).await;
                                    if !matches!(pong, Ok(Ok(_))) {
                                        break;
                                    }
                                }
                                message = messages.next() => match message {
                                    Some(message) => {
                                        let payload = message.get_payload::<String>().unwrap_or_default();
                                        if tx.send(Subscription::Message(payload)).await.is_err() {
                                            return;
                                        }
                                    }
                                    None => break,
                                },
                            }
                        }
                        tracing::warn!(channel = %channel, "redis subscription lost; reconnecting");
                    }
                    Ok(Err(error)) => tracing::debug!(%error, "redis subscription failed"),
                    Err(_) => tracing::debug!("redis subscription timed out"),
                }
                tokio::select! {
                    _ = shutdown.cancelled() => return,
                    _ = tokio::time::sleep(backoff) => {}
                }
            }
        });
        rx
    }
}

/// How often a subscription checks that its connection is alive.
const PUBSUB_PING_INTERVAL: Duration = Duration::from_secs(5);

/// How often the cache's health is probed.
const PROBE_INTERVAL: Duration = Duration::from_millis(250);
/// Keys invalidated on recovery are invalidated once more after this delay, in case a
/// write that timed out during the outage was still queued in Redis and lands late.
const SECOND_INVALIDATION_DELAY: Duration = Duration::from_millis(500);

#[derive(Debug, thiserror::Error)]
pub enum CacheError {
    #[error("the cache is unreachable; skipped until it answers again")]
    Skipped,
    #[error("the cache failed: {0}")]
    Failed(#[from] redis::RedisError),
}

/// A key-value cache with per-entry TTLs, for labs that cache in front of the database:
/// Redis when configured, in-process (moka) otherwise.
///
/// Redis outages are survived, never waited out: the first command that fails or
/// times out marks the cache down, and until a background probe sees Redis answer
/// again every operation is skipped at once. Keys written or deleted while the cache
/// was down (or in a write that failed) are remembered; on recovery they are deleted
/// from Redis *before* the cache is used again, so a value Redis kept through the
/// outage (paused, partitioned) can never be served after the database changed.
/// With a journal ([`Cache::journaled`]) they are also written to the lab's database
/// before the write is acknowledged, so a process started during the outage deletes
/// them too before it uses the cache.
#[derive(Clone)]
pub struct Cache {
    inner: Arc<CacheInner>,
}

struct CacheInner {
    store: Store,
    /// Guarded by `pending`'s lock when it changes, so a writer that sees the cache
    /// down always gets its key into `pending` before the probe declares recovery.
    up: std::sync::atomic::AtomicBool,
    pending: std::sync::Mutex<std::collections::HashSet<String>>,
    /// The same keys in the database, when the cache has a journal.
    journal: Option<Journal>,
    /// `cache_up`: 1 while the cache answers, 0 while it is skipped.
    up_gauge: prometheus_client::metrics::gauge::Gauge,
}

enum Store {
    Redis(Redis),
    Memory(moka::future::Cache<String, Entry>),
}

#[derive(Clone)]
struct Entry {
    value: Arc<str>,
    ttl: Duration,
}

/// Each in-process entry lives for the TTL it was set with, like a Redis key.
struct EntryTtl;

impl moka::Expiry<String, Entry> for EntryTtl {
    fn expire_after_create(&self, _: &String, entry: &Entry, _: std::time::Instant) -> Option<Duration> {
        Some(entry.ttl)
    }

    fn expire_after_update(
        &self,
        _: &String,
        entry: &Entry,
        _: std::time::Instant,
        _: Option<Duration>,
    ) -> Option<Duration> {
        Some(entry.ttl)
    }
}

impl Cache {
    /// Redis-backed when `redis` is given; the health probe runs until `shutdown`.
    pub fn new(redis: Option<Redis>, shutdown: CancellationToken) -> Cache {
        Cache::start(redis, None, true, shutdown)
    }

    /// [`Cache::new`] with its journal in `db`. When the journal holds keys (an earlier
    /// process could not delete them), the cache starts down: the probe deletes them
    /// from Redis before anything is read from it.
    pub async fn journaled(redis: Option<Redis>, db: Db, shutdown: CancellationToken) -> Cache {
        if redis.is_none() {
            return Cache::new(None, shutdown);
        }
        let journal = Journal::new(db);
        let clean = journal.is_empty().await.unwrap_or(false);
        if !clean {
            tracing::info!("cache_journal: keys left from an earlier outage are invalidated before the cache is used");
        }
        Cache::start(redis, Some(journal), clean, shutdown)
    }

    fn start(redis: Option<Redis>, journal: Option<Journal>, up: bool, shutdown: CancellationToken) -> Cache {
        use std::sync::atomic::AtomicBool;
        let store = match redis {
            Some(redis) => Store::Redis(redis),
            None => Store::Memory(moka::future::Cache::builder().expire_after(EntryTtl).build()),
        };
        let inner = Arc::new(CacheInner {
            store,
            up: AtomicBool::new(up),
            pending: Default::default(),
            journal,
            up_gauge: Default::default(),
        });
        inner.up_gauge.set(i64::from(up));
        if matches!(inner.store, Store::Redis(_)) {
            tokio::spawn(probe(Arc::downgrade(&inner), shutdown));
        }
        Cache { inner }
    }

    /// Exports `cache_up` (1 while the cache answers), for alerting on an outage.
    pub fn register_metrics(&self, registry: &mut prometheus_client::registry::Registry) {
        registry.register(
            "cache_up",
            "1 while the lab's cache answers, 0 while it is skipped",
            self.inner.up_gauge.clone(),
        );
    }

    pub fn backend_name(&self) -> &'static str {
        match self.inner.store {
            Store::Redis(_) => "redis",
            Store::Memory(_) => "in-process",
        }
    }

    pub fn is_up(&self) -> bool {
        self.inner.up.load(std::sync::atomic::Ordering::Acquire)
    }

    pub async fn get(&self, key: &str) -> Result<Option<String>, CacheError> {
        match &self.inner.store {
            Store::Memory(memory) => Ok(memory.get(key).await.map(|e| e.value.to_string())),
            Store::Redis(redis) => {
                if !self.is_up() {
                    return Err(CacheError::Skipped);
                }
                let mut conn = redis.conn();
                let result = redis::cmd("GET").arg(redis.key(key)).query_async(&mut conn).await;
                self.inner.outcome(result, &[])
            }
        }
    }

    pub async fn set(&self, key: &str, value: &str, ttl: Duration) -> Result<(), CacheError> {
        self.store(key, value, ttl).await
    }

    /// Stores `value`, a JSON object, as version `version` of `key` — unless the cache
    /// already holds that version or a newer one; returns whether it stored it.
    ///
    /// Why versions: two writers commit to the database in one order, but their cache
    /// writes can land in the other (each is a separate round trip after its commit),
    /// and a reader that fetched a row before a write can fill the cache after it. A
    /// plain SET lets the last *arrival* win; here the last *commit* wins, because the
    /// version comes from the row (incremented by each UPDATE under the row's lock) and
    /// the comparison and the write are one atomic step (a Lua script in Redis, the
    /// entry's compute in process). The version travels inside the stored value, as its
    /// first field (`{"_v":7,…}`), so it expires and is deleted with it, and a reader
    /// that parses the value as the object simply ignores it.
    pub async fn set_newer(&self, key: &str, value: &str, version: i64, ttl: Duration) -> Result<bool, CacheError> {
        // Callers store their own serialized objects, never a client's text.
        let fields = value.strip_prefix('{').expect("set_newer stores JSON objects");
        let separator = if fields.trim_start().starts_with('}') { "" } else { "," };
        let stored = format!("{{\"_v\":{version}{separator}{fields}");
        match &self.inner.store {
            Store::Memory(memory) => {
                use moka::ops::compute::Op;
                let entry = Entry { value: stored.as_str().into(), ttl };
                let outcome = memory
                    .entry(key.to_owned())
                    .and_compute_with(|current| async move {
                        match current.and_then(|c| stored_version(&c.into_value().value)) {
                            Some(held) if held >= version => Op::Nop,
                            _ => Op::Put(entry),
                        }
                    })
                    .await;
                Ok(!matches!(outcome, moka::ops::compute::CompResult::Unchanged(_)))
            }
            Store::Redis(redis) => {
                let outcome = match self.inner.skip_if_down(&[key]) {
                    Err(skipped) => Err(skipped),
                    Ok(()) => {
                        let mut conn = redis.conn();
                        let result = SET_NEWER
                            .key(redis.key(key))
                            .arg(&stored)
                            .arg(version)
                            .arg(ttl.as_secs().max(1))
                            .invoke_async::<i64>(&mut conn)
                            .await;
                        self.inner.outcome(result, &[key]).map(|set| set == 1)
                    }
                };
                self.inner.journal_if_failed(redis, outcome, &[key]).await
            }
        }
    }

    async fn store(&self, key: &str, value: &str, ttl: Duration) -> Result<(), CacheError> {
        let entry = Entry { value: value.into(), ttl };
        match &self.inner.store {
            Store::Memory(memory) => {
                memory.insert(key.to_owned(), entry).await;
                Ok(())
            }
            Store::Redis(redis) => {
                let outcome = match self.inner.skip_if_down(&[key]) {
                    Err(skipped) => Err(skipped),
                    Ok(()) => {
                        let mut command = redis::cmd("SET");
                        command.arg(redis.key(key)).arg(value).arg("EX").arg(ttl.as_secs().max(1));
                        let mut conn = redis.conn();
                        let result = command.query_async::<Option<String>>(&mut conn).await;
                        self.inner.outcome(result, &[key]).map(drop)
                    }
                };
                self.inner.journal_if_failed(redis, outcome, &[key]).await
            }
        }
    }

    /// Deletes keys; returns how many existed.
    pub async fn delete(&self, keys: &[&str]) -> Result<u64, CacheError> {
        if keys.is_empty() {
            return Ok(0);
        }
        match &self.inner.store {
            Store::Memory(memory) => {
                let mut deleted = 0;
                for key in keys {
                    deleted += u64::from(memory.remove(*key).await.is_some());
                }
                Ok(deleted)
            }
            Store::Redis(redis) => {
                let outcome = match self.inner.skip_if_down(keys) {
                    Err(skipped) => Err(skipped),
                    Ok(()) => {
                        let mut conn = redis.conn();
                        let full: Vec<String> = keys.iter().map(|k| redis.key(k)).collect();
                        let result = redis::cmd("DEL").arg(full).query_async(&mut conn).await;
                        self.inner.outcome(result, keys)
                    }
                };
                self.inner.journal_if_failed(redis, outcome, keys).await
            }
        }
    }

    /// Counts the keys starting with `prefix` (SCAN, never KEYS).
    pub async fn count(&self, prefix: &str) -> Result<u64, CacheError> {
        Ok(self.scan(prefix).await?.len() as u64)
    }

    /// Deletes every key starting with `prefix`; returns how many.
    pub async fn clear(&self, prefix: &str) -> Result<u64, CacheError> {
        let keys = self.scan(prefix).await?;
        let keys: Vec<&str> = keys.iter().map(String::as_str).collect();
        let mut deleted = 0;
        for chunk in keys.chunks(500) {
            deleted += self.delete(chunk).await?;
        }
        Ok(deleted)
    }

    /// The lab's (unprefixed) keys starting with `prefix`.
    async fn scan(&self, prefix: &str) -> Result<Vec<String>, CacheError> {
        match &self.inner.store {
            Store::Memory(memory) => {
                memory.run_pending_tasks().await;
                Ok(memory.iter().filter(|(k, _)| k.starts_with(prefix)).map(|(k, _)| k.to_string()).collect())
            }
            Store::Redis(redis) => {
                if !self.is_up() {
                    return Err(CacheError::Skipped);
                }
                let mut conn = redis.conn();
                let pattern = format!("{}*", redis.key(&glob_escape(prefix)));
                let strip = redis.key("").len();
                let mut cursor: u64 = 0;
                let mut keys = Vec::new();
                loop {
                    let result = redis::cmd("SCAN")
                        .arg(cursor)
                        .arg("MATCH")
                        .arg(&pattern)
                        .arg("COUNT")
                        .arg(1000)
                        .query_async::<(u64, Vec<String>)>(&mut conn)
                        .await;
                    let (next, batch) = self.inner.outcome(result, &[])?;
                    keys.extend(batch.into_iter().map(|k| k[strip..].to_string()));
                    if next == 0 {
                        return Ok(keys);
                    }
                    cursor = next;
                }
            }
        }
    }
}

impl CacheInner {
    fn is_up(&self) -> bool {
        self.up.load(std::sync::atomic::Ordering::Acquire)
    }

    /// A write while the cache is down is skipped, and its keys remembered.
    fn skip_if_down(&self, keys: &[&str]) -> Result<(), CacheError> {
        let mut pending = self.pending.lock().unwrap_or_else(|p| p.into_inner());
        if self.is_up() {
            return Ok(());
        }
        pending.extend(keys.iter().map(|k| k.to_string()));
        Err(CacheError::Skipped)
    }

    /// A write that did not reach Redis: its keys, already remembered in memory, are
    /// written to the journal too before the caller acknowledges anything.
    async fn journal_if_failed<T>(
        &self,
        redis: &Redis,
        outcome: Result<T, CacheError>,
        keys: &[&str],
    ) -> Result<T, CacheError> {
        if outcome.is_err()
            && let Some(journal) = &self.journal
        {
            let full: Vec<String> = keys.iter().map(|k| redis.key(k)).collect();
            if let Err(error) = journal.note(&full).await {
                tracing::warn!(%error, "cache_journal: keys to invalidate kept in memory only; a restart before Redis answers forgets them");
            }
        }
        outcome
    }

    /// A failed command marks the cache down and remembers the keys it was writing.
    fn outcome<T>(&self, result: redis::RedisResult<T>, written: &[&str]) -> Result<T, CacheError> {
        let error = match result {
            Ok(value) => return Ok(value),
            Err(error) => error,
        };
        let mut pending = self.pending.lock().unwrap_or_else(|p| p.into_inner());
        pending.extend(written.iter().map(|k| k.to_string()));
        if self.up.swap(false, std::sync::atomic::Ordering::AcqRel) {
            self.up_gauge.set(0);
            tracing::warn!(%error, "cache_unavailable: redis did not answer; serving from the database until it does");
        }
        Err(CacheError::Failed(error))
    }
}

/// Escapes SCAN's glob characters in a literal prefix.
fn glob_escape(prefix: &str) -> String {
    let mut escaped = String::with_capacity(prefix.len());
    for c in prefix.chars() {
        if matches!(c, '*' | '?' | '[' | ']' | '\\') {
            escaped.push('\\');
        }
        escaped.push(c);
    }
    escaped
}

/// Deletes `keys`, full Redis keys (the prefix included).
async fn invalidate(redis: &Redis, keys: &[String]) -> redis::RedisResult<()> {
    let mut conn = redis.conn();
    for chunk in keys.chunks(500) {
        redis::cmd("DEL").arg(chunk).query_async::<i64>(&mut conn).await?;
    }
    Ok(())
}

/// [`Cache::set_newer`] in Redis: compare the held version with the new one and write,
/// in one step no other client can interleave with.
static SET_NEWER: std::sync::LazyLock<redis::Script> = std::sync::LazyLock::new(|| {
    redis::Script::new(
        r#"
local held = redis.call('GET', KEYS[1])
if held then
  local version = tonumber(string.match(held, '^{"_v":(%-?%d+)'))
  if version and version >= tonumber(ARGV[2]) then return 0 end
end
redis.call('SET', KEYS[1], ARGV[1], 'EX', ARGV[3])
return 1
"#,
    )
});

/// The version [`Cache::set_newer`] stored a value with, if it did.
fn stored_version(stored: &str) -> Option<i64> {
    let rest = stored.strip_prefix("{\"_v\":")?;
    let end = rest.find(|c: char| c != '-' && !c.is_ascii_digit())?;
    rest[..end].parse().ok()
}

#[cfg(test)]
mod tests;
