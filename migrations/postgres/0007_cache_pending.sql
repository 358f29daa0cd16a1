-- The cache's journal: Redis keys a lab could not invalidate (Redis did not answer),
-- written down before the write that changed them is acknowledged, and deleted from
-- Redis before the cache is used again, also by a process started after the outage
-- began (crates/platform/src/cache.rs).
CREATE TABLE IF NOT EXISTS cache_pending (
    id BIGSERIAL PRIMARY KEY,
    cache_key TEXT NOT NULL
);
