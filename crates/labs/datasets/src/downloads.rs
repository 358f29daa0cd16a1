//! Downloads and the dashboard statistics — THE PLANTED BUG OF THE DATASETS LAB IS IN
//! `record_download` BELOW.
//!
//! The story (seed 004): computing a dataset's statistics means aggregating its audit
//! log, so `statistics` caches the result under `dataset_stats_{id}` for an hour. But
//! a download only appends an audit row: nothing deletes the cached statistics. During
//! a board meeting the CEO's dashboard shows 15 downloads of the flagship dataset while
//! the database has 35 — the conference's downloads are invisible for up to an hour.
//!
//! Both implementations of the download sit side by side: `record_download_buggy`
//! runs by default, `record_download_fixed` with `--fixed stats-cache`.
//! `breakroom explain datasets` prints the fixed one from this very file.

use std::collections::HashMap;
use std::sync::Mutex;
use std::sync::atomic::AtomicU64;
use std::time::{Duration, SystemTime};

use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::registry::Registry;

use super::store::{DatasetStore, Statistics, User};
use platform::bugs::BugSwitch;
use platform::cache::Cache;

/// How long statistics stay cached: an hour, like the original.
pub const STATS_TTL: Duration = Duration::from_secs(3600);

/// The cache key of a dataset's statistics. Attendees can look at it with
/// `redis-cli GET dataset_stats_<id>`; the fix must delete exactly this key.
pub fn stats_key(dataset_id: &str) -> String {
    format!("dataset_stats_{dataset_id}")
}

pub struct Downloads {
    pub store: DatasetStore,
    pub cache: Cache,
    pub fix: BugSwitch,
    pub freshness: Freshness,
}

/// How stale the statistics the dashboard was last given are, as the console graphs
/// them: when this process computed each dataset's cached statistics and how many
/// downloads it recorded since. (Another replica's computations and downloads are its
/// own: each process reports what it saw.)
#[derive(Default)]
pub struct Freshness {
    computed: Mutex<HashMap<String, (SystemTime, u64)>>,
    /// Seconds since the statistics last answered were computed.
    age: Gauge<f64, AtomicU64>,
    /// Downloads recorded since the statistics last answered were computed: what the
    /// dashboard does not show. Stays 0 once downloads invalidate the cache.
    unseen: Gauge,
}

/// Datasets whose computations are remembered; past it the oldest memory is dropped
/// (ids come from requests, though only existing datasets get this far).
const REMEMBERED: usize = 10_000;

impl Freshness {
    pub fn new(registry: &mut Registry) -> Freshness {
        let freshness = Freshness::default();
        registry.register(
            "datasets_statistics_age_seconds",
            "Seconds since the statistics last answered were computed",
            freshness.age.clone(),
        );
        registry.register(
            "datasets_statistics_unseen_downloads",
            "Downloads recorded since the statistics last answered were computed (this process's)",
            freshness.unseen.clone(),
        );
        freshness
    }

    fn computed(&self, dataset_id: &str) {
        let mut computed = self.computed.lock().unwrap_or_else(|p| p.into_inner());
        if computed.len() >= REMEMBERED && !computed.contains_key(dataset_id) {
            computed.clear();
        }
        computed.insert(dataset_id.to_string(), (SystemTime::now(), 0));
        self.age.set(0.0);
        self.unseen.set(0);
    }

    fn served_cached(&self, dataset_id: &str) {
        let computed = self.computed.lock().unwrap_or_else(|p| p.into_inner());
        if let Some((at, unseen)) = computed.get(dataset_id) {
            self.age.set(at.elapsed().unwrap_or_default().as_secs_f64());
            self.unseen.set(*unseen as i64);
        }
    }

    fn downloaded(&self, dataset_id: &str) {
        let mut computed = self.computed.lock().unwrap_or_else(|p| p.into_inner());
        if let Some((_, unseen)) = computed.get_mut(dataset_id) {
            *unseen += 1;
        }
    }

    /// Forgets every computation (a reset cleared the cached statistics).
    pub fn forget(&self) {
        self.computed.lock().unwrap_or_else(|p| p.into_inner()).clear();
        self.age.set(0.0);
        self.unseen.set(0);
    }
}

impl Downloads {
    /// `GET /api/datasets/{id}/statistics/`: cached for an hour.
    pub async fn statistics(&self, dataset_id: &str) -> Result<Statistics, sqlx::Error> {
        let key = stats_key(dataset_id);
        if let Ok(Some(cached)) = self.cache.get(&key).await
            && let Ok(stats) = serde_json::from_str::<Statistics>(&cached)
        {
            self.freshness.served_cached(dataset_id);
            return Ok(stats);
        }
        let stats = self.store.statistics(dataset_id).await?;
        self.freshness.computed(dataset_id);
        let json = serde_json::to_string(&stats).expect("statistics serialize");
        if let Err(error) = self.cache.set(&key, &json, STATS_TTL).await {
            tracing::warn!(%error, key, "statistics not cached");
        }
        Ok(stats)
    }

    /// `POST /api/datasets/{id}/download/`: records the download for `user`.
    pub async fn record_download(&self, user: &User, dataset_id: &str, ip: Option<&str>) -> Result<(), sqlx::Error> {
        if self.fix.is_fixed() {
            self.record_download_fixed(user, dataset_id, ip).await?;
        } else {
            self.record_download_buggy(user, dataset_id, ip).await?;
        }
        self.freshness.downloaded(dataset_id);
        Ok(())
    }

    /// 🐛 BUGGY (default): the audit row is written, the cached statistics are not
    /// touched, so the dashboard keeps showing the old count for up to an hour.
    async fn record_download_buggy(&self, user: &User, dataset_id: &str, ip: Option<&str>) -> Result<(), sqlx::Error> {
        self.store.record(&user.id, "download", dataset_id, ip).await?;
        // BUG: nothing invalidates `dataset_stats_{dataset_id}` here.
        Ok(())
    }

    // reference-fix: begin
    /// ✅ FIXED: after recording the download, delete the cached statistics under the
    /// exact key `statistics` uses, and update `last_accessed`. The next read
    /// recomputes from the audit log and caches the fresh numbers.
    async fn record_download_fixed(&self, user: &User, dataset_id: &str, ip: Option<&str>) -> Result<(), sqlx::Error> {
        self.store.record(&user.id, "download", dataset_id, ip).await?;
        self.store.touch(dataset_id).await?;
        let key = stats_key(dataset_id);
        if let Err(error) = self.cache.delete(&[&key]).await {
            // The platform cache remembers the key and deletes it when Redis answers again.
            tracing::warn!(%error, key, "statistics invalidation deferred until the cache recovers");
        }
        Ok(())
    }
    // reference-fix: end
}

/// The fixed download, as compiled into this binary: the lines between the markers
/// of this file.
pub fn reference_fix() -> &'static str {
    let source = include_str!("downloads.rs");
    let begin = source.find("    // reference-fix: begin\n").map(|i| i + "    // reference-fix: begin\n".len());
    let end = source.find("    // reference-fix: end");
    match (begin, end) {
        (Some(begin), Some(end)) if begin < end => &source[begin..end],
        _ => "(the reference fix markers are missing from crates/labs/datasets/src/downloads.rs)",
    }
}

#[cfg(test)]
mod tests {
    #[test]
    fn the_reference_fix_is_the_fixed_function() {
        let fix = super::reference_fix();
        assert!(fix.contains("async fn record_download_fixed"), "{fix}");
        assert!(fix.contains("self.cache.delete(&[&key])"), "{fix}");
        assert!(!fix.contains("reference-fix"), "markers are not part of the snippet");
        assert!(!fix.contains("record_download_buggy"));
    }

    #[test]
    fn the_cache_key_is_the_originals() {
        assert_eq!(super::stats_key("abc"), "dataset_stats_abc");
    }
}
