-- items lab: the durable side of the write-through cache. Timestamps are RFC 3339
-- text in UTC, as the API shows them, on both backends.
CREATE TABLE IF NOT EXISTS items (
    id           TEXT PRIMARY KEY,
    name         TEXT NOT NULL,
    description  TEXT NULL,
    price_cents  INTEGER NOT NULL CHECK (price_cents >= 0),
    created_at   TEXT NOT NULL,
    updated_at   TEXT NOT NULL
);

CREATE INDEX IF NOT EXISTS idx_items_created_at ON items (created_at DESC);
