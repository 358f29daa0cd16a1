-- items lab: each item's daily sales in every store over the last 90 days. The item's
-- popular view (GET /items/{id}/popular) is aggregated from these rows whenever its
-- cache entry has expired: the recomputation a cache stampede repeats once per reader
-- (items/cache-stampede, crates/labs/items/src/popular.rs).
CREATE TABLE IF NOT EXISTS item_sales (
    item_id   TEXT NOT NULL REFERENCES items (id) ON DELETE CASCADE,
    day_no    INTEGER NOT NULL,
    store_no  INTEGER NOT NULL,
    units     INTEGER NOT NULL CHECK (units >= 0),
    PRIMARY KEY (item_id, day_no, store_no)
);
