//! The cache's health probe: down when Redis does not answer, up again only once
//! what changed meanwhile is invalidated.

use super::*;

/// Watches Redis: marks the cache down when a PING fails, and back up only after the
/// keys remembered during the outage are deleted.
pub(super) async fn probe(cache: std::sync::Weak<CacheInner>, shutdown: CancellationToken) {
    use std::sync::atomic::Ordering;
    let mut ticks = tokio::time::interval(PROBE_INTERVAL);
    ticks.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tokio::select! {
            _ = shutdown.cancelled() => return,
            _ = ticks.tick() => {}
        }
        let Some(cache) = cache.upgrade() else { return };
        let Store::Redis(redis) = &cache.store else { return };
        if redis.ping().await.is_err() {
            if cache.up.swap(false, Ordering::AcqRel) {
                cache.up_gauge.set(0);
                tracing::warn!("cache_unavailable: redis did not answer a health probe");
            }
            continue;
        }
        if cache.is_up() {
            continue;
        }
        // Redis answers again: invalidate what changed meanwhile (remembered here or,
        // by this process or an earlier one, in the journal), then use it again.
        let keys: Vec<String> = cache.pending.lock().unwrap_or_else(|p| p.into_inner()).iter().cloned().collect();
        let journaled = match &cache.journal {
            Some(journal) => match journal.read().await {
                Ok(entries) => Some(entries),
                Err(_) => continue, // the database does not answer: not yet
            },
            None => None,
        };
        let mut full: Vec<String> = keys.iter().map(|k| redis.key(k)).collect();
        full.extend(journaled.iter().flat_map(|j| j.keys.iter().cloned()));
        full.sort_unstable();
        full.dedup();
        if !full.is_empty() && invalidate(redis, &full).await.is_err() {
            continue;
        }
        if let (Some(journal), Some(last)) = (&cache.journal, journaled.and_then(|j| j.last))
            && journal.forget_through(last).await.is_err()
        {
            continue;
        }
        let mut pending = cache.pending.lock().unwrap_or_else(|p| p.into_inner());
        for key in &keys {
            pending.remove(key);
        }
        if !pending.is_empty() {
            continue; // more writes arrived while invalidating; next round
        }
        cache.up.store(true, Ordering::Release);
        cache.up_gauge.set(1);
        drop(pending);
        tracing::info!(invalidated = full.len(), "cache_recovered: redis answers again; stale keys invalidated");
        if !full.is_empty() {
            let redis = redis.clone();
            tokio::spawn(async move {
                tokio::time::sleep(SECOND_INVALIDATION_DELAY).await;
                let _ = invalidate(&redis, &full).await;
            });
        }
    }
}
