//! Live counts: what `/votes` and the results page show.
//!
//! With Redis they live in one hash shared by every replica (one `HINCRBY` per vote,
//! one `HMGET` per read); without it, in the process. Either way `votes` in the
//! database is the truth: the hash carries an `_init` marker, and a hash without it
//! (Redis flushed or restarted) is rebuilt from `SELECT choice, COUNT(*)`, never
//! shown as zeros. An increment that failed while Redis was unreachable marks the
//! counts stale, and the first read after Redis answers again rebuilds them.
//!
//! Known window: a vote committed after a rebuild's SELECT but incremented before its
//! HSET is overwritten; the next rebuild (or reset) corrects it.

use std::sync::atomic::{AtomicBool, AtomicI64, Ordering};

use super::ballot::{Choice, Tally};
use super::store::VoteStore;
use crate::platform::cache::Redis;

pub enum LiveCounts {
    Memory(MemoryCounts),
    Redis(Box<RedisCounts>),
}

pub struct MemoryCounts {
    counts: [AtomicI64; 5],
}

pub struct RedisCounts {
    redis: Redis,
    store: VoteStore,
    key: String,
    channel: String,
    /// An increment was lost while Redis was unreachable.
    stale: AtomicBool,
}

/// Published on the channel when a replica resets the session.
pub const RESET_MESSAGE: &str = "reset";
const VOTE_MESSAGE: &str = "vote";
const INIT_FIELD: &str = "_init";

impl LiveCounts {
    /// Loads the counts from the database (in-process) or makes sure the shared hash
    /// is initialised (Redis; a Redis that is down now is retried on the next read).
    pub async fn start(store: &VoteStore, redis: Option<&Redis>) -> Result<LiveCounts, sqlx::Error> {
        match redis {
            None => {
                let tally = store.tally().await?;
                Ok(LiveCounts::Memory(MemoryCounts { counts: tally.0.map(AtomicI64::new) }))
            }
            Some(redis) => {
                let counts = Box::new(RedisCounts {
                    redis: redis.clone(),
                    store: store.clone(),
                    key: redis.key("vote:counts"),
                    channel: redis.key("vote:events"),
                    stale: AtomicBool::new(false),
                });
                if let Err(error) = counts.read().await {
                    tracing::warn!(%error, "redis unreachable at start; live counts come from the database until it answers");
                }
                Ok(LiveCounts::Redis(counts))
            }
        }
    }

    /// Counts a vote that is already committed to the database.
    pub async fn record(&self, choice: Choice) {
        match self {
            LiveCounts::Memory(m) => {
                m.counts[choice.index()].fetch_add(1, Ordering::Relaxed);
            }
            LiveCounts::Redis(r) => {
                let mut conn = r.redis.conn();
                let result = redis::pipe()
                    .hincr(&r.key, choice.key(), 1)
                    .publish(&r.channel, VOTE_MESSAGE)
                    .query_async::<(i64, i64)>(&mut conn)
                    .await;
                if let Err(error) = result {
                    r.stale.store(true, Ordering::Relaxed);
                    tracing::warn!(%error, "live count not updated in redis; it will be rebuilt from the database");
                }
            }
        }
    }

    /// The current counts. If Redis cannot answer, the database does.
    pub async fn snapshot(&self) -> Result<Tally, sqlx::Error> {
        match self {
            LiveCounts::Memory(m) => Ok(Tally(std::array::from_fn(|i| m.counts[i].load(Ordering::Relaxed)))),
            LiveCounts::Redis(r) => match r.read().await {
                Ok(tally) => Ok(tally),
                Err(error) => {
                    tracing::debug!(%error, "redis unreachable; counting votes in the database");
                    r.store.tally().await
                }
            },
        }
    }

    /// Zeroes every count (the votes are already deleted) and tells the other replicas.
    pub async fn reset(&self) -> anyhow::Result<()> {
        match self {
            LiveCounts::Memory(m) => {
                for count in &m.counts {
                    count.store(0, Ordering::Relaxed);
                }
                Ok(())
            }
            LiveCounts::Redis(r) => {
                r.overwrite(Tally::default()).await?;
                let mut conn = r.redis.conn();
                redis::cmd("PUBLISH").arg(&r.channel).arg(RESET_MESSAGE).query_async::<i64>(&mut conn).await?;
                Ok(())
            }
        }
    }

    /// The channel replicas announce changes on, when counts live in Redis.
    pub fn channel(&self) -> Option<&str> {
        match self {
            LiveCounts::Memory(_) => None,
            LiveCounts::Redis(r) => Some(&r.channel),
        }
    }
}

impl RedisCounts {
    async fn read(&self) -> anyhow::Result<Tally> {
        if self.stale.swap(false, Ordering::Relaxed) {
            return self.rebuild().await.inspect_err(|_| self.stale.store(true, Ordering::Relaxed));
        }
        let mut conn = self.redis.conn();
        let fields: Vec<Option<i64>> = redis::cmd("HMGET")
            .arg(&self.key)
            .arg(INIT_FIELD)
            .arg(&Choice::ALL.map(Choice::key)[..])
            .query_async(&mut conn)
            .await?;
        if fields.first().copied().flatten().is_none() {
            tracing::warn!(key = %self.key, "live counts missing in redis (flushed or restarted); rebuilding from the votes table");
            return self.rebuild().await;
        }
        Ok(Tally(std::array::from_fn(|i| fields.get(i + 1).copied().flatten().unwrap_or(0))))
    }

    async fn rebuild(&self) -> anyhow::Result<Tally> {
        let tally = self.store.tally().await?;
        self.overwrite(tally).await?;
        Ok(tally)
    }

    async fn overwrite(&self, tally: Tally) -> redis::RedisResult<()> {
        let mut fields: Vec<(&str, i64)> = vec![(INIT_FIELD, 1)];
        fields.extend(Choice::ALL.map(|c| (c.key(), tally.get(c))));
        let mut conn = self.redis.conn();
        redis::cmd("HSET").arg(&self.key).arg(&fields[..]).query_async::<i64>(&mut conn).await.map(drop)
    }
}
