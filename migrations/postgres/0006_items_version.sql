-- items lab: a version per row, incremented by every UPDATE under the row's lock, so
-- the write-through cache keeps the newest committed row whatever order concurrent
-- writers' cache writes arrive in (crates/labs/items/src/write_through.rs).
ALTER TABLE items ADD COLUMN IF NOT EXISTS version BIGINT NOT NULL DEFAULT 0;
