-- items lab: each item's stock in every store of the chain. A product page shows its
-- availability, so an item read from the database assembles it from these rows (the
-- cost a cache hit saves), and a new item is stocked in every store when it is created.
CREATE TABLE IF NOT EXISTS item_stock (
    item_id   TEXT NOT NULL REFERENCES items (id) ON DELETE CASCADE,
    store_no  INTEGER NOT NULL,
    units     INTEGER NOT NULL CHECK (units >= 0),
    PRIMARY KEY (item_id, store_no)
);
