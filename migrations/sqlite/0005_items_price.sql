-- items lab: seed 002's inspect query (`SELECT id, name, price FROM items`) runs
-- unchanged. The truth stays in price_cents (exact integers); price is derived from it
-- on read, so the two can never disagree.
ALTER TABLE items ADD COLUMN price REAL GENERATED ALWAYS AS (price_cents / 100.0) VIRTUAL;
