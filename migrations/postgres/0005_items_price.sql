-- items lab: seed 002's inspect query (`SELECT id, name, price FROM items`) runs
-- unchanged. The truth stays in price_cents (exact integers); price is derived from it
-- by the database, so the two can never disagree.
ALTER TABLE items ADD COLUMN IF NOT EXISTS price NUMERIC(14, 2) GENERATED ALWAYS AS (price_cents / 100.0) STORED;
