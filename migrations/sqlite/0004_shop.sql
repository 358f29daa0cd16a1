-- shop lab (seed 003): the catalog, the carts and the order history. The two
-- catalog indexes are the ones the Black Friday story drops and restores; both exist
-- here (the original's second one never did).
CREATE TABLE IF NOT EXISTS products (
    id              INTEGER PRIMARY KEY,
    name            TEXT NOT NULL,
    category        TEXT NOT NULL,
    price           REAL NOT NULL CHECK (price >= 0),
    stock_quantity  INTEGER NOT NULL,
    description     TEXT NOT NULL,
    image_url       TEXT NOT NULL,
    created_at      TEXT NOT NULL DEFAULT (strftime('%Y-%m-%dT%H:%M:%fZ', 'now')),
    updated_at      TEXT NOT NULL DEFAULT (strftime('%Y-%m-%dT%H:%M:%fZ', 'now'))
);

CREATE INDEX IF NOT EXISTS idx_products_category ON products (category, price);
CREATE INDEX IF NOT EXISTS idx_products_stock_quantity ON products (stock_quantity);

CREATE TABLE IF NOT EXISTS orders (
    id          INTEGER PRIMARY KEY,
    user_id     TEXT NOT NULL,
    product_id  INTEGER NOT NULL,
    quantity    INTEGER NOT NULL CHECK (quantity > 0),
    total       REAL NOT NULL,
    order_date  TEXT NOT NULL
);

CREATE INDEX IF NOT EXISTS idx_orders_product_id ON orders (product_id);
CREATE INDEX IF NOT EXISTS idx_orders_user_id ON orders (user_id);

CREATE TABLE IF NOT EXISTS cart_items (
    cart_id     TEXT NOT NULL,
    product_id  INTEGER NOT NULL,
    quantity    INTEGER NOT NULL CHECK (quantity > 0),
    added_at    TEXT NOT NULL,
    PRIMARY KEY (cart_id, product_id)
);
