//! Live counts: what `/votes` and the results page show.
//!
//! With Redis they live in one hash shared by every replica (one `HINCRBY` per choice
//! of a batch); without it, in the process. Either way `votes` in the database is the
//! truth: every process rebuilds the hash from `SELECT choice, COUNT(*)` when it starts
//! (Redis may hold another database's counts), and the hash carries an `_init` marker:
//! a hash without it (Redis flushed or restarted) is rebuilt, never shown as zeros. An
//! increment that failed while Redis was unreachable marks the counts stale, and they
//! are rebuilt once Redis answers again. Until then Redis is known to be down and is
//! not asked at all: a probe pings it every 250 ms (and rebuilds the hash when it
//! answers), and votes and reads go to the database alone, so a vote during an outage
//! waits for no Redis timeout.
//!
//! Readers do not ask Redis: each process keeps a mirror of the hash in memory. Every
//! batch this process counts reads the hash back in the same round trip (so a vote is
//! in this process's mirror before it is acknowledged), and the live feed re-reads it
//! when another replica announces a vote on the pub/sub channel and every couple of
//! seconds regardless. A reset announced by another replica drops the mirror at once.
//! A mirror that may be wrong (an outage, a flush seen by a write) is dropped, and the
//! next reader goes to Redis or, failing that, to the database; an answer that arrives
//! after a newer update or a drop is not kept. So within a process a client reads its
//! own votes; another replica's votes show after the pub/sub hop and one read
//! (milliseconds), or within the feed's refresh (2 s) while pub/sub is down.
//!
//! Within a process, writing votes and rewriting the counts exclude each other (the
//! write lock): a batch is committed and counted as one step, and a rebuild, a
//! reconciliation or a reset reads `votes` and rewrites the counts as one step, so
//! none of them can overwrite an increment or count a vote twice. Across replicas a
//! vote of another process can still land inside a rebuild's window; every rebuild and
//! reset therefore schedules one more reconciliation a second later.

use std::sync::atomic::{AtomicBool, AtomicI64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use super::ballot::{Choice, Tally};
use super::store::VoteStore;
use platform::cache::Redis;

/// How long after a rebuild or reset the counts are checked against the database again.
const RECONCILE_AFTER: Duration = Duration::from_secs(1);
/// How often a Redis known to be down is asked whether it answers again.
const DOWN_PROBE_INTERVAL: Duration = Duration::from_millis(250);

pub struct LiveCounts {
    backend: Backend,
    store: VoteStore,
    reconcile_at: Mutex<Option<Instant>>,
    writes: Arc<tokio::sync::Mutex<()>>,
}

enum Backend {
    Memory(MemoryCounts),
    Redis(Arc<RedisCounts>),
}

pub struct MemoryCounts {
    counts: [AtomicI64; 5],
}

pub struct RedisCounts {
    redis: Redis,
    store: VoteStore,
    writes: Arc<tokio::sync::Mutex<()>>,
    key: String,
    channel: String,
    /// This process's name in the reset announcements it publishes, so that it does
    /// not act on its own: its reset already cleared its cache, and the echo arriving
    /// a moment later would clear the entries of the votes cast since.
    replica: String,
    /// An increment was lost while Redis was unreachable.
    stale: AtomicBool,
    /// A command failed and the probe has not yet seen Redis answer: skip it.
    down: AtomicBool,
    /// The hash as this process last read or wrote it.
    mirror: Mutex<Mirror>,
}

/// The mirror of the hash (None when it must be read again) and two counters that keep
/// a late answer from replacing a newer one: `changes` moves on every update,
/// `forgets` whenever the mirror is dropped.
#[derive(Default)]
struct Mirror {
    tally: Option<Tally>,
    changes: u64,
    forgets: u64,
}

/// Published on the channel when a replica resets the session, followed by its name:
/// `reset <replica>`.
const RESET_MESSAGE: &str = "reset";
const VOTE_MESSAGE: &str = "vote";
const INIT_FIELD: &str = "_init";

impl LiveCounts {
    /// Loads the counts from the database: into the process, or into the shared hash
    /// (a Redis that is down now is rebuilt on the first read after it answers).
    pub async fn start(store: &VoteStore, redis: Option<&Redis>) -> Result<LiveCounts, sqlx::Error> {
        let writes = Arc::new(tokio::sync::Mutex::new(()));
        let backend = match redis {
            None => {
                let tally = store.tally().await?;
                Backend::Memory(MemoryCounts { counts: tally.0.map(AtomicI64::new) })
            }
            Some(redis) => {
                let counts = Arc::new(RedisCounts {
                    redis: redis.clone(),
                    store: store.clone(),
                    writes: writes.clone(),
                    key: redis.key("vote:counts"),
                    channel: redis.key("vote:events"),
                    replica: format!("{:016x}", rand::random::<u64>()),
                    stale: AtomicBool::new(false),
                    down: Default::default(),
                    mirror: Mutex::default(),
                });
                // The hash may count another database's votes (the database was recreated
                // or restored while Redis kept its counts): a starting process sets it
                // from `votes`, which is the truth.
                if let Err(error) = counts.rebuild().await {
                    // (A Redis that failed is marked down by the rebuild itself.)
                    counts.stale.store(true, Ordering::Relaxed);
                    tracing::warn!(%error, "live counts not rebuilt from the database at start; the first read that can rebuilds them");
                }
                Backend::Redis(counts)
            }
        };
        let live = LiveCounts { backend, store: store.clone(), reconcile_at: Mutex::new(None), writes };
        if matches!(live.backend, Backend::Redis(_)) {
            // Other replicas' votes may have landed between the count and the rewrite.
            live.schedule_reconcile();
        }
        Ok(live)
    }

    fn schedule_reconcile(&self) {
        *self.reconcile_at.lock().unwrap_or_else(|p| p.into_inner()) = Some(Instant::now() + RECONCILE_AFTER);
    }

    fn reconcile_is_due(&self) -> bool {
        matches!(*self.reconcile_at.lock().unwrap_or_else(|p| p.into_inner()), Some(when) if when <= Instant::now())
    }

    fn reconcile_due(&self) -> bool {
        let mut at = self.reconcile_at.lock().unwrap_or_else(|p| p.into_inner());
        match *at {
            Some(when) if when <= Instant::now() => {
                *at = None;
                true
            }
            _ => false,
        }
    }

    /// Held while a batch of votes is committed and counted (see the module comment).
    pub async fn write_lock(&self) -> tokio::sync::MutexGuard<'_, ()> {
        self.writes.lock().await
    }

    /// Counts from the database, replacing the live ones.
    async fn reconcile(&self) -> anyhow::Result<Tally> {
        let _writes = self.writes.lock().await;
        let tally = self.store.tally().await?;
        match &self.backend {
            Backend::Memory(m) => m.set(tally),
            Backend::Redis(r) => r.overwrite(tally).await?,
        }
        Ok(tally)
    }

    /// After a Redis reconnect the hash may be an old one (a restart from a snapshot):
    /// the next read rebuilds it.
    pub fn mark_stale(&self) {
        if let Backend::Redis(r) = &self.backend {
            r.stale.store(true, Ordering::Relaxed);
            r.forget();
        }
    }

    /// Another replica reset the session: the mirror is out of date now, not at the
    /// next refresh.
    pub fn forget_mirror(&self) {
        if let Backend::Redis(r) = &self.backend {
            r.forget();
        }
    }

    /// Counts votes that are already committed to the database: one Redis round trip
    /// for a whole batch.
    pub async fn record(&self, delta: Tally) {
        match &self.backend {
            Backend::Memory(m) => {
                for (count, added) in m.counts.iter().zip(delta.0) {
                    count.fetch_add(added, Ordering::Relaxed);
                }
            }
            Backend::Redis(r) => {
                if r.is_down() || r.stale.load(Ordering::Relaxed) {
                    // Counted in the database. The hash misses votes (or may): it is rebuilt
                    // by the down-probe when Redis answers (or by the next read), and adding
                    // to it meanwhile would only put a wrong count into the mirror.
                    r.stale.store(true, Ordering::Relaxed);
                    r.forget();
                    return;
                }
                let mut pipe = redis::pipe();
                for choice in Choice::ALL.into_iter().filter(|c| delta.get(*c) > 0) {
                    pipe.hincr(&r.key, choice.key(), delta.get(choice)).ignore();
                }
                pipe.publish(&r.channel, VOTE_MESSAGE).ignore();
                pipe.add_command(r.hmget());
                let mut conn = r.redis.conn();
                let (_, forgets) = r.marks();
                match pipe.query_async::<(Vec<Option<i64>>,)>(&mut conn).await {
                    Ok((fields,)) => match RedisCounts::parse(&fields) {
                        Some(tally) => r.remember_written(forgets, tally),
                        None => {
                            // Flushed since the last read: the increments made a hash without
                            // the earlier votes.
                            tracing::warn!(key = %r.key, "live counts were missing in redis (flushed or restarted); rebuilding from the votes table");
                            r.stale.store(true, Ordering::Relaxed);
                            r.forget();
                        }
                    },
                    Err(error) => {
                        r.went_down();
                        tracing::warn!(%error, "live count not updated in redis; it will be rebuilt from the database");
                    }
                }
            }
        }
    }

    /// The current counts, from memory when the mirror of Redis is good. If Redis
    /// cannot answer, the database does.
    pub async fn snapshot(&self) -> Result<Tally, sqlx::Error> {
        if let Backend::Redis(r) = &self.backend
            && let Some(tally) = r.remembered()
            && !self.reconcile_is_due()
        {
            return Ok(tally);
        }
        self.refresh().await
    }

    /// The current counts read again from where they live (the feed calls this when
    /// something changed, so other replicas' votes reach this process's mirror).
    pub async fn refresh(&self) -> Result<Tally, sqlx::Error> {
        if self.reconcile_due()
            && let Ok(tally) = self.reconcile().await
        {
            return Ok(tally);
        }
        match &self.backend {
            Backend::Memory(m) => Ok(m.get()),
            Backend::Redis(r) => match r.read().await {
                Ok((tally, rebuilt)) => {
                    if rebuilt {
                        self.schedule_reconcile();
                    }
                    Ok(tally)
                }
                Err(error) => {
                    tracing::debug!(%error, "redis unreachable; counting votes in the database");
                    r.store.tally().await
                }
            },
        }
    }

    /// Zeroes every count (the votes are already deleted) and tells the other replicas.
    /// Deletes every vote and zeroes the counts, as one step; returns the votes deleted.
    pub async fn reset(&self) -> anyhow::Result<u64> {
        let _writes = self.writes.lock().await;
        let deleted = self.store.clear_votes().await?;
        match &self.backend {
            Backend::Memory(m) => m.set(Tally::default()),
            Backend::Redis(r) => {
                // Redis down: the votes are gone and the hash may still count them. It is
                // rebuilt from the (empty) table once Redis answers, and until then every
                // reader counts the table; the reset itself is complete.
                match r.overwrite(Tally::default()).await {
                    Ok(()) => {
                        let mut conn = r.redis.conn();
                        let published = redis::cmd("PUBLISH")
                            .arg(&r.channel)
                            .arg(reset_message(&r.replica))
                            .query_async::<i64>(&mut conn)
                            .await;
                        if let Err(error) = published {
                            tracing::warn!(%error, "reset not announced to the other replicas; their feeds catch up within their refresh");
                        }
                    }
                    Err(error) => {
                        r.stale.store(true, Ordering::Relaxed);
                        r.forget();
                        tracing::warn!(%error, "live counts reset in the database only; the hash is rebuilt once redis answers");
                    }
                }
            }
        }
        // Votes of other replicas in flight during the reset are settled against the database.
        self.schedule_reconcile();
        Ok(deleted)
    }

    /// Whether a message on the channel is another replica's reset (this one's own
    /// comes back too, and must not clear what was recorded since).
    pub fn is_reset_by_another(&self, message: &str) -> bool {
        match &self.backend {
            Backend::Memory(_) => false,
            Backend::Redis(r) => reset_by_another(message, &r.replica),
        }
    }

    /// The channel replicas announce changes on, when counts live in Redis.
    pub fn channel(&self) -> Option<&str> {
        match &self.backend {
            Backend::Memory(_) => None,
            Backend::Redis(r) => Some(&r.channel),
        }
    }
}

fn reset_message(replica: &str) -> String {
    format!("{RESET_MESSAGE} {replica}")
}

fn reset_by_another(message: &str, replica: &str) -> bool {
    match message.split_once(' ') {
        Some((RESET_MESSAGE, sender)) => sender != replica,
        // A replica of an older build announces a bare "reset".
        None => message == RESET_MESSAGE,
        Some(_) => false,
    }
}

impl MemoryCounts {
    fn get(&self) -> Tally {
        Tally(std::array::from_fn(|i| self.counts[i].load(Ordering::Relaxed)))
    }

    fn set(&self, tally: Tally) {
        for (count, value) in self.counts.iter().zip(tally.0) {
            count.store(value, Ordering::Relaxed);
        }
    }
}

impl RedisCounts {
    fn mirror(&self) -> std::sync::MutexGuard<'_, Mirror> {
        self.mirror.lock().unwrap_or_else(|p| p.into_inner())
    }

    fn remembered(&self) -> Option<Tally> {
        self.mirror().tally
    }

    /// (changes, forgets) now, to hand back with an answer that comes later.
    fn marks(&self) -> (u64, u64) {
        let mirror = self.mirror();
        (mirror.changes, mirror.forgets)
    }

    /// A read's answer, kept only if nothing updated the mirror since the read began.
    fn remember_read(&self, changes: u64, tally: Tally) {
        let mut mirror = self.mirror();
        if mirror.changes == changes {
            mirror.tally = Some(tally);
            mirror.changes += 1;
        }
    }

    /// A write's answer (it includes every earlier write), kept unless the mirror was
    /// dropped since the write began.
    fn remember_written(&self, forgets: u64, tally: Tally) {
        let mut mirror = self.mirror();
        if mirror.forgets == forgets {
            mirror.tally = Some(tally);
            mirror.changes += 1;
        }
    }

    fn is_down(&self) -> bool {
        self.down.load(Ordering::Acquire)
    }

    /// A command failed: the hash must be rebuilt, and Redis is skipped until a probe
    /// sees it answer; then the probe rebuilds the hash itself, so other replicas (which
    /// read the hash) do not wait for a reader of this one.
    fn went_down(self: &Arc<Self>) {
        self.stale.store(true, Ordering::Relaxed);
        self.forget();
        if self.down.swap(true, Ordering::AcqRel) {
            return; // a probe already runs
        }
        let counts = Arc::downgrade(self);
        tokio::spawn(async move {
            let mut ticks = tokio::time::interval(DOWN_PROBE_INTERVAL);
            ticks.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
            ticks.tick().await;
            loop {
                ticks.tick().await;
                let Some(counts) = counts.upgrade() else { return }; // the lab is gone
                if counts.redis.ping().await.is_ok() {
                    counts.down.store(false, Ordering::Release);
                    if counts.stale.swap(false, Ordering::Relaxed) && counts.rebuild().await.is_err() {
                        counts.stale.store(true, Ordering::Relaxed); // the next read tries again
                    }
                    return;
                }
            }
        });
    }

    fn forget(&self) {
        let mut mirror = self.mirror();
        mirror.tally = None;
        mirror.changes += 1;
        mirror.forgets += 1;
    }

    /// `HMGET` of the marker and every choice.
    fn hmget(&self) -> redis::Cmd {
        let mut cmd = redis::cmd("HMGET");
        cmd.arg(&self.key).arg(INIT_FIELD).arg(&Choice::ALL.map(Choice::key)[..]);
        cmd
    }

    /// The counts from an `HMGET` answer; None when the marker is missing.
    fn parse(fields: &[Option<i64>]) -> Option<Tally> {
        fields.first().copied().flatten()?;
        Some(Tally(std::array::from_fn(|i| fields.get(i + 1).copied().flatten().unwrap_or(0))))
    }

    /// The counts, and whether they had to be rebuilt from the database.
    async fn read(self: &Arc<Self>) -> anyhow::Result<(Tally, bool)> {
        if self.is_down() {
            anyhow::bail!("redis is down (a probe checks every {DOWN_PROBE_INTERVAL:?})");
        }
        if self.stale.swap(false, Ordering::Relaxed) {
            tracing::info!(
                "live counts may be stale after a redis outage or reconnect; rebuilding from the votes table"
            );
            return self.rebuild().await.map(|t| (t, true)).inspect_err(|_| self.stale.store(true, Ordering::Relaxed));
        }
        let (changes, _) = self.marks();
        let mut conn = self.redis.conn();
        let fields: Vec<Option<i64>> = self.hmget().query_async(&mut conn).await.inspect_err(|_| self.went_down())?;
        match Self::parse(&fields) {
            Some(tally) => {
                self.remember_read(changes, tally);
                Ok((tally, false))
            }
            None => {
                tracing::warn!(key = %self.key, "live counts missing in redis (flushed or restarted); rebuilding from the votes table");
                self.rebuild().await.map(|t| (t, true))
            }
        }
    }

    /// Rewrites the hash from the votes table, between batches.
    async fn rebuild(self: &Arc<Self>) -> anyhow::Result<Tally> {
        let _writes = self.writes.lock().await;
        let tally = self.store.tally().await?;
        self.overwrite(tally).await?;
        Ok(tally)
    }

    /// Sets the hash (and the mirror) to `tally`; the caller holds the write lock.
    async fn overwrite(self: &Arc<Self>, tally: Tally) -> anyhow::Result<()> {
        if self.is_down() {
            self.stale.store(true, Ordering::Relaxed);
            self.forget();
            anyhow::bail!("redis is down; the live counts are rebuilt once it answers");
        }
        self.forget();
        let (_, forgets) = self.marks();
        let mut fields: Vec<(&str, i64)> = vec![(INIT_FIELD, 1)];
        fields.extend(Choice::ALL.map(|c| (c.key(), tally.get(c))));
        let mut conn = self.redis.conn();
        if let Err(error) = redis::cmd("HSET").arg(&self.key).arg(&fields[..]).query_async::<i64>(&mut conn).await {
            self.went_down();
            return Err(error.into());
        }
        self.remember_written(forgets, tally);
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_replica_acts_on_the_resets_of_others_but_not_on_its_own_echo() {
        let mine = reset_message("aaaa");
        assert!(!reset_by_another(&mine, "aaaa"), "its own reset, echoed by Redis");
        assert!(reset_by_another(&mine, "bbbb"), "another replica's reset");
        assert!(reset_by_another("reset", "bbbb"), "an older build's bare reset");
        assert!(!reset_by_another(VOTE_MESSAGE, "aaaa"));
        assert!(!reset_by_another("vote aaaa", "bbbb"));
    }
}
