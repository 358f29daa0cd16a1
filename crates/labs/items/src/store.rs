//! The items table: the durable side of the write-through cache.

use serde::{Deserialize, Serialize, Serializer};

use platform::clock;
use platform::db::Db;
use platform::on_pool;

/// The runbook's pre-loaded items, with their fixed ids.
pub const SEED_ITEMS: [(&str, &str, i64, &str); 3] = [
    ("550e8400-e29b-41d4-a716-446655440001", "Widget A", 2999, "A fantastic widget for all your needs"),
    ("550e8400-e29b-41d4-a716-446655440002", "Gadget B", 4999, "The latest gadget with amazing features"),
    ("550e8400-e29b-41d4-a716-446655440003", "Gizmo C", 1999, "A reliable gizmo that never fails"),
];

/// The stores of the chain: every item is stocked in each of them.
pub const STORES: i64 = 2_000;

/// Stocks the item `$1` in each of the `$2` stores. A recursive CTE numbers the stores
/// on both backends; the units are a spread of 0 to 12.
const STOCK_ONE_SQL: &str = "INSERT INTO item_stock (item_id, store_no, units) \
     WITH RECURSIVE stores(n) AS (SELECT 1 UNION ALL SELECT n + 1 FROM stores WHERE n < $2) \
     SELECT items.id, stores.n, (stores.n * 37 + LENGTH(items.name)) % 13 FROM items, stores \
     WHERE items.id = $1 \
     ON CONFLICT (item_id, store_no) DO NOTHING";

/// The same for every item without stock: the seed items, and databases from before
/// stock existed.
const STOCK_UNSTOCKED_SQL: &str = "INSERT INTO item_stock (item_id, store_no, units) \
     WITH RECURSIVE stores(n) AS (SELECT 1 UNION ALL SELECT n + 1 FROM stores WHERE n < $1) \
     SELECT items.id, stores.n, (stores.n * 37 + LENGTH(items.name)) % 13 FROM items, stores \
     WHERE NOT EXISTS (SELECT 1 FROM item_stock s WHERE s.item_id = items.id) \
     ON CONFLICT (item_id, store_no) DO NOTHING";

/// The days of sales history an item's popular view covers.
pub const SALES_DAYS: i64 = 90;
/// The stores that report an item's daily sales.
pub const SALES_STORES: i64 = 400;

/// A day's sales in each reporting store, for every seed item without history: 36,000
/// rows an item, so its popular view is an aggregation the database has to work for.
/// The units are a spread of 0 to 6 a store and day, some stores selling more.
const SALES_SEED_SQL: &str = "INSERT INTO item_sales (item_id, day_no, store_no, units) \
     WITH RECURSIVE days(d) AS (SELECT 0 UNION ALL SELECT d + 1 FROM days WHERE d < $2 - 1), \
     stores(n) AS (SELECT 1 UNION ALL SELECT n + 1 FROM stores WHERE n < $3) \
     SELECT items.id, days.d, stores.n, (stores.n % 11 + days.d % 5 + LENGTH(items.name)) % 7 \
     FROM items, days, stores \
     WHERE items.id = $1 AND NOT EXISTS (SELECT 1 FROM item_sales s WHERE s.item_id = items.id) \
     ON CONFLICT (item_id, day_no, store_no) DO NOTHING";

/// An item's units sold each day, oldest first.
const SALES_BY_DAY_SQL: &str = "SELECT SUM(units) FROM item_sales WHERE item_id = $1 GROUP BY day_no ORDER BY day_no";

/// The item's best-selling stores.
const TOP_STORES_SQL: &str = "SELECT CAST(store_no AS BIGINT) AS store_no, SUM(units) AS sold FROM item_sales WHERE item_id = $1 \
     GROUP BY store_no ORDER BY sold DESC, store_no LIMIT 5";

/// A store and what it sold of the item over the history.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, sqlx::FromRow, utoipa::ToSchema)]
pub struct StoreSales {
    pub store_no: i64,
    pub sold: i64,
}

/// What the popular view is computed from: the item's sales, aggregated.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Sales {
    /// Units sold each day, oldest first (days without sales left out).
    pub by_day: Vec<i64>,
    pub top_stores: Vec<StoreSales>,
}

/// An item's availability across the chain, assembled from its stock rows on every read
/// the cache does not answer.
const AVAILABILITY_SQL: &str = "SELECT COUNT(*), COALESCE(SUM(CASE WHEN units > 0 THEN 1 ELSE 0 END), 0), \
     COALESCE(SUM(units), 0) FROM item_stock WHERE item_id = $1";

/// Where an item can be bought: what a product page shows beside the price.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
pub struct Availability {
    /// Stores of the chain that carry the item.
    pub stores: i64,
    /// Of those, the ones with at least one unit on the shelf.
    pub in_stock: i64,
    /// Units across the chain.
    pub units: i64,
}

/// An item as the API shows it (and as it is cached).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, sqlx::FromRow, utoipa::ToSchema)]
#[schema(as = ItemBody)]
pub struct Item {
    pub id: String,
    pub name: String,
    #[schema(nullable)]
    pub description: Option<String>,
    #[serde(rename = "price", serialize_with = "price_from_cents", deserialize_with = "cents_from_price")]
    #[schema(value_type = f64)]
    pub price_cents: i64,
    pub created_at: String,
    pub updated_at: String,
    /// Incremented by every UPDATE under the row's lock, so it orders the row's writes
    /// as the database committed them; the cache keeps the newest (never in the API).
    #[serde(skip)]
    pub version: i64,
    /// On a single item (`GET`, `POST`, `PUT /items/{id}`), not in the list.
    #[sqlx(skip)]
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schema(nullable = false)]
    pub availability: Option<Availability>,
}

/// What a client may set: validated, price in whole cents.
#[derive(Debug, Clone)]
pub struct ItemFields {
    pub name: String,
    pub description: Option<String>,
    pub price_cents: i64,
}

fn price_from_cents<S: Serializer>(cents: &i64, serializer: S) -> Result<S::Ok, S::Error> {
    serializer.serialize_f64(*cents as f64 / 100.0)
}

fn cents_from_price<'de, D: serde::Deserializer<'de>>(deserializer: D) -> Result<i64, D::Error> {
    let price = f64::deserialize(deserializer)?;
    Ok((price * 100.0).round() as i64)
}

#[derive(Clone)]
pub struct ItemStore {
    db: Db,
}

impl ItemStore {
    pub fn new(db: Db) -> Self {
        ItemStore { db }
    }

    pub fn system(&self) -> &'static str {
        self.db.system()
    }

    /// Inserts the runbook's three items unless they exist.
    pub async fn seed(&self) -> Result<u64, sqlx::Error> {
        let now = clock::now();
        let mut inserted = 0;
        for (id, name, cents, description) in SEED_ITEMS {
            let sql = "INSERT INTO items (id, name, description, price_cents, created_at, updated_at) \
                       VALUES ($1, $2, $3, $4, $5, $5) ON CONFLICT (id) DO NOTHING";
            inserted += on_pool!(self.db, |pool| sqlx::query(sql)
                .bind(id)
                .bind(name)
                .bind(description)
                .bind(cents)
                .bind(&now)
                .execute(pool)
                .await
                .map(|r| r.rows_affected()))?;
        }
        // A reset or a start racing another: ON CONFLICT leaves the rows the other wrote.
        on_pool!(self.db, |pool| sqlx::query(STOCK_UNSTOCKED_SQL).bind(STORES).execute(pool).await.map(drop))
            .map_err(|e| self.db.observe(e))?;
        for (id, ..) in SEED_ITEMS {
            on_pool!(self.db, |pool| sqlx::query(SALES_SEED_SQL)
                .bind(id)
                .bind(SALES_DAYS)
                .bind(SALES_STORES)
                .execute(pool)
                .await
                .map(drop))
            .map_err(|e| self.db.observe(e))?;
        }
        Ok(inserted)
    }

    /// The item's name, when it exists.
    pub async fn name(&self, id: &str) -> Result<Option<String>, sqlx::Error> {
        on_pool!(self.db, |pool| sqlx::query_scalar("SELECT name FROM items WHERE id = $1")
            .bind(id)
            .fetch_optional(pool)
            .await)
        .map_err(|e| self.db.observe(e))
    }

    /// The item's sales history, aggregated twice: by day and by store.
    pub async fn sales(&self, id: &str) -> Result<Sales, sqlx::Error> {
        let by_day = on_pool!(self.db, |pool| sqlx::query_scalar(SALES_BY_DAY_SQL).bind(id).fetch_all(pool).await)
            .map_err(|e| self.db.observe(e))?;
        let top_stores = on_pool!(self.db, |pool| sqlx::query_as(TOP_STORES_SQL).bind(id).fetch_all(pool).await)
            .map_err(|e| self.db.observe(e))?;
        Ok(Sales { by_day, top_stores })
    }

    /// The item's availability, summed over its stock rows.
    async fn availability(&self, id: &str) -> Result<Availability, sqlx::Error> {
        let (stores, in_stock, units): (i64, i64, i64) =
            on_pool!(self.db, |pool| sqlx::query_as(AVAILABILITY_SQL).bind(id).fetch_one(pool).await)
                .map_err(|e| self.db.observe(e))?;
        Ok(Availability { stores, in_stock, units })
    }

    /// The item with its availability, when it exists.
    async fn assembled(&self, item: Option<Item>) -> Result<Option<Item>, sqlx::Error> {
        match item {
            None => Ok(None),
            Some(item) => self.with_availability(item).await.map(Some),
        }
    }

    async fn with_availability(&self, mut item: Item) -> Result<Item, sqlx::Error> {
        item.availability = Some(self.availability(&item.id).await?);
        Ok(item)
    }

    pub async fn insert(&self, fields: &ItemFields) -> Result<Item, sqlx::Error> {
        let now = clock::now();
        let item = Item {
            id: uuid::Uuid::new_v4().to_string(),
            name: fields.name.clone(),
            description: fields.description.clone(),
            price_cents: fields.price_cents,
            created_at: now.clone(),
            updated_at: now,
            version: 0,
            availability: None,
        };
        let sql = "INSERT INTO items (id, name, description, price_cents, created_at, updated_at) \
                   VALUES ($1, $2, $3, $4, $5, $6)";
        // A new item is stocked in every store, as a chain lists a product everywhere; in
        // the same transaction, so no read ever sees the item without its stock.
        on_pool!(self.db, |pool| async {
            let mut tx = pool.begin().await?;
            sqlx::query(sql)
                .bind(&item.id)
                .bind(&item.name)
                .bind(&item.description)
                .bind(item.price_cents)
                .bind(&item.created_at)
                .bind(&item.updated_at)
                .execute(&mut *tx)
                .await?;
            sqlx::query(STOCK_ONE_SQL).bind(&item.id).bind(STORES).execute(&mut *tx).await?;
            tx.commit().await
        }
        .await)
        .map_err(|e| self.db.observe(e))?;
        self.with_availability(item).await
    }

    pub async fn get(&self, id: &str) -> Result<Option<Item>, sqlx::Error> {
        let sql = "SELECT id, name, description, price_cents, created_at, updated_at, version FROM items WHERE id = $1";
        let item = on_pool!(self.db, |pool| sqlx::query_as::<_, Item>(sql).bind(id).fetch_optional(pool).await)
            .map_err(|e| self.db.observe(e))?;
        self.assembled(item).await
    }

    /// Newest first, without availability (a list shows none).
    pub async fn list(&self, limit: i64) -> Result<Vec<Item>, sqlx::Error> {
        let sql = "SELECT id, name, description, price_cents, created_at, updated_at, version FROM items \
                   ORDER BY created_at DESC, id DESC LIMIT $1";
        on_pool!(self.db, |pool| sqlx::query_as::<_, Item>(sql).bind(limit).fetch_all(pool).await)
            .map_err(|e| self.db.observe(e))
    }

    /// Full replace; None when there is no such item.
    pub async fn update(&self, id: &str, fields: &ItemFields) -> Result<Option<Item>, sqlx::Error> {
        let sql = "UPDATE items SET name = $2, description = $3, price_cents = $4, updated_at = $5, \
                   version = version + 1 WHERE id = $1 \
                   RETURNING id, name, description, price_cents, created_at, updated_at, version";
        let now = clock::now();
        let item = on_pool!(self.db, |pool| sqlx::query_as::<_, Item>(sql)
            .bind(id)
            .bind(&fields.name)
            .bind(&fields.description)
            .bind(fields.price_cents)
            .bind(&now)
            .fetch_optional(pool)
            .await)
        .map_err(|e| self.db.observe(e))?;
        self.assembled(item).await
    }

    /// Rows deleted: 0 or 1.
    pub async fn delete(&self, id: &str) -> Result<u64, sqlx::Error> {
        on_pool!(self.db, |pool| sqlx::query("DELETE FROM items WHERE id = $1")
            .bind(id)
            .execute(pool)
            .await
            .map(|r| r.rows_affected()))
        .map_err(|e| self.db.observe(e))
    }

    pub async fn delete_all(&self) -> Result<u64, sqlx::Error> {
        self.db.execute("DELETE FROM items").await.map_err(|e| self.db.observe(e))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn prices_are_cents_inside_and_two_decimals_outside() {
        let item = Item {
            id: "x".into(),
            name: "n".into(),
            description: None,
            price_cents: 4299,
            created_at: "t".into(),
            updated_at: "t".into(),
            version: 0,
            availability: None,
        };
        let json = serde_json::to_value(&item).unwrap();
        assert_eq!(json["price"], serde_json::json!(42.99));
        assert!(json.get("price_cents").is_none());
        let back: Item = serde_json::from_value(json).unwrap();
        assert_eq!(back, item);
    }
}
