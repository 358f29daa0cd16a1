//! The shop's tables: the catalog, the carts, the orders; the two catalog indexes
//! the story drops and restores, and what the planner says about each query shape.
//!
//! Every statement is written once for both engines. The only DDL is the fixed text of
//! [`INDEXES`]: an allow-list, never built from input.

use std::collections::HashMap;
use std::sync::Mutex;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use serde::Serialize;

use platform::clock;
use platform::db::Db;
use platform::on_pool;

pub const CATEGORIES: [&str; 5] = ["electronics", "furniture", "appliances", "sports", "kitchen"];

/// Black Friday's doorbusters: the first products, deeply stocked, that most checkouts buy.
pub const DOORBUSTERS: i64 = 20;
const DOORBUSTER_STOCK: i32 = 1_000_000;

/// Below this stock a product is on the restock list that checkout reserves with each
/// order; one product in a thousand is generated below it.
pub const REORDER_LEVEL: i32 = 5;

/// Orders generated with the catalog carry this user prefix; `reset` keeps only them.
pub const HISTORY_USER_PREFIX: &str = "history-";

/// A product as the catalog lists it.
#[derive(Debug, Clone, Serialize, serde::Deserialize, sqlx::FromRow, utoipa::ToSchema)]
#[schema(as = ProductBody)]
pub struct Product {
    pub id: i64,
    pub name: String,
    pub category: String,
    pub price: f64,
    pub description: String,
    pub image_url: String,
    pub stock_quantity: i32,
}

/// One product in a cart.
#[derive(Debug, Clone, Serialize, sqlx::FromRow, utoipa::ToSchema)]
pub struct CartLine {
    pub product_id: i64,
    pub name: String,
    pub price: f64,
    pub quantity: i32,
}

/// A best seller and how much of it was ordered.
#[derive(Debug, Clone, Serialize, sqlx::FromRow, utoipa::ToSchema)]
pub struct Popular {
    pub product_id: i64,
    pub name: String,
    pub category: String,
    pub price: f64,
    pub orders: i64,
    pub units_sold: i64,
}

/// The query shapes whose plans the spans report.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, utoipa::ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum QueryShape {
    /// `GET /products`: one category in a price band, cheapest first.
    CatalogByCategory,
    /// Checkout's restock list: products under the reorder level.
    RestockCheck,
}

impl QueryShape {
    pub fn as_str(self) -> &'static str {
        match self {
            QueryShape::CatalogByCategory => "catalog_by_category",
            QueryShape::RestockCheck => "restock_check",
        }
    }

    /// The index this shape is written for.
    pub fn index(self) -> &'static str {
        match self {
            QueryShape::CatalogByCategory => "idx_products_category",
            QueryShape::RestockCheck => "idx_products_stock_quantity",
        }
    }

    fn explain(self, postgres: bool) -> &'static str {
        match (self, postgres) {
            (QueryShape::CatalogByCategory, true) => {
                "EXPLAIN SELECT id, name, category, price, description, image_url, stock_quantity FROM products \
                 WHERE category = 'electronics' AND price BETWEEN 100 AND 200 AND stock_quantity > 0 \
                 ORDER BY price LIMIT 50"
            }
            (QueryShape::CatalogByCategory, false) => {
                "EXPLAIN QUERY PLAN SELECT id, name, category, price, description, image_url, stock_quantity \
                 FROM products WHERE category = 'electronics' AND price BETWEEN 100 AND 200 AND stock_quantity > 0 \
                 ORDER BY price LIMIT 50"
            }
            (QueryShape::RestockCheck, true) => "EXPLAIN SELECT COUNT(*) FROM products WHERE stock_quantity < 5",
            (QueryShape::RestockCheck, false) => {
                "EXPLAIN QUERY PLAN SELECT COUNT(*) FROM products WHERE stock_quantity < 5"
            }
        }
    }
}

/// One of the two indexes the story drops: its fixed DDL. On PostgreSQL it runs
/// `CONCURRENTLY`: a plain DROP INDEX queues for an exclusive lock behind checkouts
/// whose transactions wait on the catalog, while every catalog query queues behind it —
/// a stall across services that no database deadlock detector sees.
pub struct IndexDef {
    pub name: &'static str,
    drop: [&'static str; 2],
    create: [&'static str; 2],
}

pub const INDEXES: [IndexDef; 2] = [
    IndexDef {
        name: "idx_products_category",
        drop: ["DROP INDEX CONCURRENTLY IF EXISTS idx_products_category", "DROP INDEX IF EXISTS idx_products_category"],
        create: [
            "CREATE INDEX CONCURRENTLY IF NOT EXISTS idx_products_category ON products (category, price)",
            "CREATE INDEX IF NOT EXISTS idx_products_category ON products (category, price)",
        ],
    },
    IndexDef {
        name: "idx_products_stock_quantity",
        drop: [
            "DROP INDEX CONCURRENTLY IF EXISTS idx_products_stock_quantity",
            "DROP INDEX IF EXISTS idx_products_stock_quantity",
        ],
        create: [
            "CREATE INDEX CONCURRENTLY IF NOT EXISTS idx_products_stock_quantity ON products (stock_quantity)",
            "CREATE INDEX IF NOT EXISTS idx_products_stock_quantity ON products (stock_quantity)",
        ],
    },
];

impl IndexDef {
    fn ddl(&self, statements: [&'static str; 2], postgres: bool) -> &'static str {
        if postgres { statements[0] } else { statements[1] }
    }
}

/// What the planner does with a query shape, as the spans report it.
#[derive(Debug, Clone, Serialize, utoipa::ToSchema)]
pub struct Plan {
    pub shape: QueryShape,
    pub full_table_scan: bool,
    /// The index the plan uses, if any.
    pub index_used: Option<String>,
    /// The shape's index when the plan scans the table because that index is absent.
    pub missing_index: Option<&'static str>,
    /// Rows the plan reads: the planner's estimate on PostgreSQL; on SQLite, which gives
    /// no estimate, the table's size for a scan and `None` for an index search.
    pub rows_scanned: Option<i64>,
    /// The plan's own words (PostgreSQL's EXPLAIN lines, SQLite's QUERY PLAN details).
    pub detail: Vec<String>,
}

impl Plan {
    /// A plan that could not be read: nothing claimed.
    pub fn unknown(shape: QueryShape) -> Plan {
        Plan {
            shape,
            full_table_scan: false,
            index_used: None,
            missing_index: None,
            rows_scanned: None,
            detail: Vec::new(),
        }
    }
}

/// Plans are re-read when the indexes change through the lab, and at least every few
/// seconds, so an index dropped by hand (psql) shows up too.
const PLAN_MAX_AGE: Duration = Duration::from_secs(5);

#[derive(Clone)]
pub struct ShopStore {
    db: Db,
    plans: std::sync::Arc<PlanCache>,
}

#[derive(Default)]
struct PlanCache {
    generation: AtomicU64,
    plans: Mutex<HashMap<QueryShape, (u64, Instant, Plan)>>,
    /// One refresh at a time: the others go on with the plan they have.
    refreshing: tokio::sync::Mutex<()>,
}

impl ShopStore {
    pub fn new(db: Db) -> Self {
        ShopStore { db, plans: Default::default() }
    }

    pub fn db(&self) -> &Db {
        &self.db
    }

    /// Generates `products` products and an order history when the catalog is empty;
    /// returns how many products were generated (0 when there already were some).
    pub async fn seed(&self, products: u64) -> Result<u64, sqlx::Error> {
        let existing: i64 =
            on_pool!(self.db, |p| sqlx::query_scalar("SELECT COUNT(*) FROM (SELECT id FROM products LIMIT 1) t")
                .fetch_one(p)
                .await)?;
        if existing > 0 || products == 0 {
            return Ok(0);
        }
        let products = products.min(50_000_000) as i64;
        // Generated by the database itself: one statement, no rows over the wire.
        on_pool!(self.db, |p| sqlx::query(
            "WITH RECURSIVE g(n) AS (SELECT CAST(1 AS BIGINT) UNION ALL SELECT n + 1 FROM g WHERE n < $1) \
             INSERT INTO products (id, name, category, price, stock_quantity, description, image_url) \
             SELECT n, \
               (CASE n % 7 WHEN 0 THEN 'Classic' WHEN 1 THEN 'Pro' WHEN 2 THEN 'Compact' WHEN 3 THEN 'Deluxe' \
                 WHEN 4 THEN 'Eco' WHEN 5 THEN 'Ultra' ELSE 'Smart' END) || ' ' || \
               (CASE n % 5 WHEN 0 THEN 'Headphones' WHEN 1 THEN 'Desk' WHEN 2 THEN 'Blender' \
                 WHEN 3 THEN 'Running Shoes' ELSE 'Knife Set' END) || ' ' || n, \
               (CASE n % 5 WHEN 0 THEN 'electronics' WHEN 1 THEN 'furniture' WHEN 2 THEN 'appliances' \
                 WHEN 3 THEN 'sports' ELSE 'kitchen' END), \
               5 + ((n * 7919) % 199500) / 100.0, \
               CASE WHEN n % 1000 = 0 THEN n % 5 ELSE 5 + (n * 31) % 500 END, \
               'Item ' || n || ' of the Black Friday catalog: sturdy, well reviewed, ships in two days.', \
               'https://images.breakroom.invalid/products/' || n || '.jpg' \
             FROM g"
        )
        .bind(products)
        .execute(p)
        .await
        .map(drop))?;
        on_pool!(self.db, |p| sqlx::query(
            "UPDATE products SET stock_quantity = $1, name = 'Doorbuster ' || name WHERE id <= $2"
        )
        .bind(DOORBUSTER_STOCK)
        .bind(DOORBUSTERS)
        .execute(p)
        .await
        .map(drop))?;
        self.seed_history(products).await?;
        self.analyze().await?;
        Ok(products as u64)
    }

    /// One order for every twenty products, a third of them for the doorbusters.
    async fn seed_history(&self, products: i64) -> Result<(), sqlx::Error> {
        let orders = (products / 20).max(1);
        let date = clock::now();
        on_pool!(self.db, |p| sqlx::query(
            "WITH RECURSIVE g(n) AS (SELECT CAST(1 AS BIGINT) UNION ALL SELECT n + 1 FROM g WHERE n < $1) \
             INSERT INTO orders (user_id, product_id, quantity, total, order_date) \
             SELECT $2 || (n % 5000), t.product_id, t.quantity, t.quantity * pr.price, $3 \
             FROM (SELECT n, \
                     CASE WHEN n % 3 = 0 THEN 1 + n % $4 ELSE 1 + (n * 7907) % $5 END AS product_id, \
                     CAST(1 + n % 3 AS INTEGER) AS quantity \
                   FROM g) t \
             JOIN products pr ON pr.id = t.product_id"
        )
        .bind(orders)
        .bind(HISTORY_USER_PREFIX)
        .bind(&date)
        .bind(DOORBUSTERS)
        .bind(products)
        .execute(p)
        .await
        .map(drop))
    }

    async fn analyze(&self) -> Result<(), sqlx::Error> {
        self.db.execute("ANALYZE").await.map(drop)
    }

    /// What one catalog query costs here when no index may serve it — the planner told
    /// not to use one (SQLite: `NOT INDEXED`; PostgreSQL: index scans off for the
    /// transaction): the median of three runs one after another, and how many such
    /// queries a second eight at once achieve.
    pub async fn scan_cost(&self) -> Result<(f64, f64), sqlx::Error> {
        let scan = || async {
            let started = Instant::now();
            match self.db.pool() {
                platform::db::Pool::Postgres(p) => {
                    let mut tx = p.begin().await?;
                    for off in [
                        "SET LOCAL enable_indexscan = off",
                        "SET LOCAL enable_bitmapscan = off",
                        "SET LOCAL enable_indexonlyscan = off",
                    ] {
                        sqlx::query(off).execute(&mut *tx).await?;
                    }
                    sqlx::query_as::<_, Product>(
                        "SELECT id, name, category, price, description, image_url, stock_quantity FROM products \
                         WHERE category = 'electronics' AND price BETWEEN 100 AND 200 AND stock_quantity > 0 \
                         ORDER BY price LIMIT 50",
                    )
                    .fetch_all(&mut *tx)
                    .await?;
                    tx.rollback().await?;
                }
                platform::db::Pool::Sqlite(p) => {
                    sqlx::query_as::<_, Product>(
                        "SELECT id, name, category, price, description, image_url, stock_quantity \
                         FROM products NOT INDEXED \
                         WHERE category = 'electronics' AND price BETWEEN 100 AND 200 AND stock_quantity > 0 \
                         ORDER BY price LIMIT 50",
                    )
                    .fetch_all(p)
                    .await?;
                }
            }
            Ok::<_, sqlx::Error>(started.elapsed().as_secs_f64())
        };
        let mut single = vec![scan().await?, scan().await?, scan().await?];
        single.sort_by(f64::total_cmp);
        let started = Instant::now();
        let parallel = futures_util::future::join_all((0..8).map(|_| scan())).await;
        for result in parallel {
            result?;
        }
        let per_second = 8.0 / started.elapsed().as_secs_f64().max(1e-6);
        Ok((single[1] * 1000.0, per_second))
    }

    pub async fn product_count(&self) -> Result<i64, sqlx::Error> {
        on_pool!(self.db, |p| sqlx::query_scalar("SELECT COALESCE(MAX(id), 0) FROM products").fetch_one(p).await)
    }

    pub async fn products_in(
        &self,
        category: &str,
        price_min: f64,
        price_max: f64,
    ) -> Result<Vec<Product>, sqlx::Error> {
        on_pool!(self.db, |p| sqlx::query_as::<_, Product>(
            "SELECT id, name, category, price, description, image_url, stock_quantity FROM products \
             WHERE category = $1 AND price BETWEEN $2 AND $3 AND stock_quantity > 0 ORDER BY price LIMIT 50"
        )
        .bind(category)
        .bind(price_min)
        .bind(price_max)
        .fetch_all(p)
        .await)
    }

    pub async fn product(&self, id: i64) -> Result<Option<Product>, sqlx::Error> {
        on_pool!(self.db, |p| sqlx::query_as::<_, Product>(
            "SELECT id, name, category, price, description, image_url, stock_quantity FROM products WHERE id = $1"
        )
        .bind(id)
        .fetch_optional(p)
        .await)
    }

    /// Products whose name contains `needle` (a LIKE pattern, already escaped).
    pub async fn search(&self, pattern: &str) -> Result<Vec<Product>, sqlx::Error> {
        on_pool!(self.db, |p| sqlx::query_as::<_, Product>(
            "SELECT id, name, category, price, description, image_url, stock_quantity FROM products \
             WHERE name LIKE $1 ESCAPE '\\' ORDER BY id LIMIT 20"
        )
        .bind(pattern)
        .fetch_all(p)
        .await)
    }

    /// The best sellers with their order history.
    pub async fn popular_with_history(&self) -> Result<Vec<Popular>, sqlx::Error> {
        on_pool!(self.db, |p| sqlx::query_as::<_, Popular>(
            "SELECT p.id AS product_id, p.name, p.category, p.price, COUNT(o.id) AS orders, \
               CAST(COALESCE(SUM(o.quantity), 0) AS BIGINT) AS units_sold \
             FROM orders o JOIN products p ON p.id = o.product_id \
             GROUP BY p.id, p.name, p.category, p.price ORDER BY orders DESC, p.id LIMIT 10"
        )
        .fetch_all(p)
        .await)
    }

    pub async fn add_to_cart(&self, cart_id: &str, product_id: i64, quantity: i32) -> Result<bool, sqlx::Error> {
        let exists: Option<i64> = on_pool!(self.db, |p| sqlx::query_scalar("SELECT id FROM products WHERE id = $1")
            .bind(product_id)
            .fetch_optional(p)
            .await)?;
        if exists.is_none() {
            return Ok(false);
        }
        on_pool!(self.db, |p| sqlx::query(
            "INSERT INTO cart_items (cart_id, product_id, quantity, added_at) VALUES ($1, $2, $3, $4) \
             ON CONFLICT (cart_id, product_id) DO UPDATE SET quantity = cart_items.quantity + excluded.quantity"
        )
        .bind(cart_id)
        .bind(product_id)
        .bind(quantity)
        .bind(clock::now())
        .execute(p)
        .await
        .map(drop))?;
        Ok(true)
    }

    pub async fn cart(&self, cart_id: &str) -> Result<Vec<CartLine>, sqlx::Error> {
        on_pool!(self.db, |p| sqlx::query_as::<_, CartLine>(
            "SELECT c.product_id, p.name, p.price, c.quantity FROM cart_items c \
             JOIN products p ON p.id = c.product_id WHERE c.cart_id = $1 ORDER BY c.added_at, c.product_id"
        )
        .bind(cart_id)
        .fetch_all(p)
        .await)
    }

    pub async fn clear_carts(&self) -> Result<u64, sqlx::Error> {
        self.db.execute("DELETE FROM cart_items").await
    }

    pub async fn popular_products(&self) -> Result<Vec<Popular>, sqlx::Error> {
        self.popular_with_history().await
    }

    /// Which of [`INDEXES`] exist now.
    pub async fn indexes_present(&self) -> Result<Vec<(&'static str, bool)>, sqlx::Error> {
        // PostgreSQL: only valid indexes count (a failed CREATE INDEX CONCURRENTLY leaves
        // an invalid one behind that the planner never uses).
        let names: Vec<String> = on_pool!(self.db, |p| sqlx::query_scalar(if self.db.is_postgres() {
            "SELECT c.relname::text FROM pg_index i JOIN pg_class c ON c.oid = i.indexrelid \
             JOIN pg_class t ON t.oid = i.indrelid WHERE t.relname = 'products' AND i.indisvalid"
        } else {
            "SELECT name FROM sqlite_master WHERE type = 'index' AND tbl_name = 'products'"
        })
        .fetch_all(p)
        .await)?;
        Ok(INDEXES.iter().map(|i| (i.name, names.iter().any(|n| n == i.name))).collect())
    }

    /// `DROP INDEX` for both story indexes; returns the ones that existed.
    pub async fn drop_indexes(&self) -> Result<Vec<&'static str>, sqlx::Error> {
        let before = self.indexes_present().await?;
        let postgres = self.db.is_postgres();
        for index in &INDEXES {
            self.db.execute(index.ddl(index.drop, postgres)).await?;
        }
        self.plans.generation.fetch_add(1, Ordering::AcqRel);
        Ok(before.into_iter().filter(|(_, present)| *present).map(|(name, _)| name).collect())
    }

    /// `CREATE INDEX` for both; returns the ones that were missing.
    pub async fn restore_indexes(&self) -> Result<Vec<&'static str>, sqlx::Error> {
        let before = self.indexes_present().await?;
        let postgres = self.db.is_postgres();
        for (index, (_, present)) in INDEXES.iter().zip(&before) {
            // An invalid leftover of the same name would make CREATE … IF NOT EXISTS a no-op.
            if postgres && !present {
                self.db.execute(index.ddl(index.drop, postgres)).await?;
            }
            self.db.execute(index.ddl(index.create, postgres)).await?;
        }
        self.plans.generation.fetch_add(1, Ordering::AcqRel);
        Ok(before.into_iter().filter(|(_, present)| !*present).map(|(name, _)| name).collect())
    }

    /// Puts back what the audience's traffic changed: stock of the orders it placed,
    /// those orders, the carts. The generated catalog and history stay. One
    /// transaction, so a failure restores nothing twice; the prefix is compared exactly
    /// (`substr`, not LIKE, which ignores case on SQLite).
    pub async fn reset_data(&self) -> Result<u64, sqlx::Error> {
        on_pool!(self.db, |p| {
            async {
                let mut tx = p.begin().await?;
                sqlx::query(
                    "UPDATE products SET stock_quantity = stock_quantity + \
                       (SELECT COALESCE(SUM(o.quantity), 0) FROM orders o \
                        WHERE o.product_id = products.id AND substr(o.user_id, 1, 8) <> $1) \
                     WHERE id IN (SELECT product_id FROM orders WHERE substr(user_id, 1, 8) <> $1)",
                )
                .bind(HISTORY_USER_PREFIX)
                .execute(&mut *tx)
                .await?;
                let deleted = sqlx::query("DELETE FROM orders WHERE substr(user_id, 1, 8) <> $1")
                    .bind(HISTORY_USER_PREFIX)
                    .execute(&mut *tx)
                    .await?
                    .rows_affected();
                sqlx::query("DELETE FROM cart_items").execute(&mut *tx).await?;
                tx.commit().await?;
                Ok::<_, sqlx::Error>(deleted)
            }
            .await
        })
    }

    /// The plan of `shape`, from the cache unless the indexes changed or it is old.
    pub async fn plan(&self, shape: QueryShape) -> Result<Plan, sqlx::Error> {
        let generation = self.plans.generation.load(Ordering::Acquire);
        let cached = {
            let plans = self.plans.plans.lock().unwrap_or_else(|p| p.into_inner());
            match plans.get(&shape) {
                Some((seen, at, plan)) if *seen == generation && at.elapsed() < PLAN_MAX_AGE => return Ok(plan.clone()),
                // Old but from the same indexes: good enough while another request refreshes it.
                Some((seen, _, plan)) if *seen == generation => Some(plan.clone()),
                _ => None,
            }
        };
        let _refresh = match (self.plans.refreshing.try_lock(), cached) {
            (Ok(guard), _) => guard,
            (Err(_), Some(plan)) => return Ok(plan),
            (Err(_), None) => self.plans.refreshing.lock().await,
        };
        let plan = self.explain(shape).await?;
        let mut plans = self.plans.plans.lock().unwrap_or_else(|p| p.into_inner());
        plans.insert(shape, (generation, Instant::now(), plan.clone()));
        Ok(plan)
    }

    async fn explain(&self, shape: QueryShape) -> Result<Plan, sqlx::Error> {
        let postgres = self.db.is_postgres();
        let detail: Vec<String> = match self.db.pool() {
            platform::db::Pool::Postgres(p) => {
                // Not cached: a prepared EXPLAIN would describe the schema it was prepared on.
                sqlx::query_scalar(shape.explain(true)).persistent(false).fetch_all(p).await?
            }
            platform::db::Pool::Sqlite(p) => {
                use sqlx::Row;
                // EXPLAIN reads no table, so SQLite would answer from the schema this
                // connection loaded earlier: a read first makes it notice a dropped index.
                let mut conn = p.acquire().await?;
                sqlx::query("SELECT COUNT(*) FROM sqlite_master").execute(&mut *conn).await?;
                let rows = sqlx::query(shape.explain(false)).persistent(false).fetch_all(&mut *conn).await?;
                rows.iter().map(|r| r.try_get::<String, _>("detail").unwrap_or_default()).collect()
            }
        };
        let scan_line = detail.iter().find(|l| {
            if postgres { l.contains("Seq Scan on products") } else { l.trim_start().starts_with("SCAN products") }
        });
        let full_table_scan = scan_line.is_some();
        let index_used = INDEXES.iter().find(|i| detail.iter().any(|l| l.contains(i.name))).map(|i| i.name.to_string());
        let present = self.indexes_present().await?;
        let index_absent = present.iter().any(|(name, here)| *name == shape.index() && !here);
        let rows_scanned = if postgres {
            if full_table_scan {
                Some(
                    on_pool!(self.db, |p| sqlx::query_scalar::<_, i64>(
                        "SELECT CAST(reltuples AS BIGINT) FROM pg_class WHERE relname = 'products'"
                    )
                    .fetch_one(p)
                    .await)?
                    .max(0),
                )
            } else {
                detail.iter().find(|l| l.contains("Index")).and_then(|l| planner_rows(l))
            }
        } else if full_table_scan {
            Some(self.product_count().await?)
        } else {
            None
        };
        Ok(Plan {
            shape,
            full_table_scan,
            index_used,
            missing_index: (full_table_scan && index_absent).then_some(shape.index()),
            rows_scanned,
            detail,
        })
    }
}

/// `rows=123` out of a PostgreSQL EXPLAIN line.
fn planner_rows(line: &str) -> Option<i64> {
    let start = line.find("rows=")? + 5;
    line[start..].split(|c: char| !c.is_ascii_digit()).next()?.parse().ok()
}

/// `needle` as a LIKE pattern matching it anywhere, its wildcards escaped.
pub fn contains_pattern(needle: &str) -> String {
    let escaped = needle.replace('\\', "\\\\").replace('%', "\\%").replace('_', "\\_");
    format!("%{escaped}%")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn planner_rows_come_from_the_explain_line() {
        let line = "  ->  Index Scan using idx_products_category on products  (cost=0.42..8.44 rows=37 width=96)";
        assert_eq!(planner_rows(line), Some(37));
        assert_eq!(planner_rows("Seq Scan on products"), None);
    }

    #[test]
    fn like_wildcards_are_escaped() {
        assert_eq!(contains_pattern("50%_off"), "%50\\%\\_off%");
    }
}
