//! The datasets list — THE PLANTED BUG OF `datasets/n-plus-one` LIVES IN THIS FILE.
//!
//! The story: the list shows each dataset's owner and how often it was downloaded. The
//! first version fetched the page of datasets, then, for each row, its owner and its
//! download count: two more queries a row. With the workshop's four datasets nobody
//! noticed (10 queries, a few milliseconds). Then the conference uploaded a thousand
//! (`POST /admin/datasets/import`), and every list became 2,000 round trips: the
//! latency grows with the data, not with the load, and `datasets_list_queries` (queries
//! per list request) grows with the page size.
//!
//! Both implementations sit side by side below. `page_row_by_row` is the buggy one that
//! runs by default; `page_joined` is the fix (`--fixed n-plus-one`): one query that
//! joins the owner and aggregates the downloads, whatever the page size.

use std::time::Instant;

use prometheus_client::metrics::histogram::Histogram;
use prometheus_client::registry::Registry;
use serde::Serialize;

use super::store::{Dataset, DatasetStore, User};
use platform::bugs::BugSwitch;
use platform::on_pool;

/// Rows a page holds unless asked otherwise, and at most: the dashboard asks for all.
pub const MAX_PAGE_SIZE: u32 = 1_000;

/// One row of the list: the dataset and its downloads.
#[derive(Debug, Clone, Serialize, utoipa::ToSchema)]
pub struct Listed {
    #[serde(flatten)]
    pub dataset: Dataset,
    /// Downloads recorded in the audit log.
    pub downloads: i64,
}

/// A page of the datasets a user may see.
pub struct Page {
    /// Every dataset the user may see, on all pages.
    pub count: i64,
    pub results: Vec<Listed>,
}

/// A dataset as the buggy list reads it first: its owner still an id.
#[derive(sqlx::FromRow)]
struct Row {
    id: String,
    name: String,
    description: String,
    file_type: String,
    size_bytes: i64,
    privacy: String,
    owner_id: String,
    last_accessed: Option<String>,
    created_at: String,
}

/// A dataset as the fixed list reads it: owner and downloads joined in.
#[derive(sqlx::FromRow)]
struct JoinedRow {
    #[sqlx(flatten)]
    dataset: Dataset,
    downloads: i64,
}

const VISIBLE: &str = "(d.privacy = 'public' OR d.owner_id = $1)";

pub struct Listing {
    store: DatasetStore,
    fix: BugSwitch,
    queries: Histogram,
}

impl Listing {
    pub fn new(store: DatasetStore, fix: BugSwitch, registry: &mut Registry) -> Listing {
        let buckets = [1.0, 2.0, 3.0, 5.0, 10.0, 25.0, 50.0, 100.0, 250.0, 500.0, 1000.0, 2500.0];
        let queries = Histogram::new(buckets);
        registry.register("datasets_list_queries", "Database queries one list request made", queries.clone());
        Listing { store, fix, queries }
    }

    /// Page `page` (from 1) of `page_size` rows, with whichever implementation is on.
    pub async fn page(&self, user: &User, page: u32, page_size: u32) -> Result<Page, sqlx::Error> {
        let started = Instant::now();
        let offset = i64::from(page.saturating_sub(1)) * i64::from(page_size);
        let count = self.count(user).await?;
        let (results, queries) = if self.fix.is_fixed() {
            self.page_joined(user, i64::from(page_size), offset).await?
        } else {
            self.page_row_by_row(user, i64::from(page_size), offset).await?
        };
        let queries = queries + 1;
        self.queries.observe(queries as f64);
        tracing::info!(
            rows = results.len(),
            queries,
            elapsed_ms = started.elapsed().as_millis() as u64,
            implementation = self.fix.mode(),
            "datasets_listed"
        );
        Ok(Page { count, results })
    }

    async fn count(&self, user: &User) -> Result<i64, sqlx::Error> {
        let db = self.store.db();
        let sql = "SELECT COUNT(*) FROM datasets d WHERE (d.privacy = 'public' OR d.owner_id = $1)";
        on_pool!(db, |pool| sqlx::query_scalar(sql).bind(&user.id).fetch_one(pool).await).map_err(|e| db.observe(e))
    }

    /// 🐛 BUGGY (default): the page, then two more queries for every row on it.
    async fn page_row_by_row(&self, user: &User, limit: i64, offset: i64) -> Result<(Vec<Listed>, usize), sqlx::Error> {
        let db = self.store.db();
        let sql = format!(
            "SELECT d.id, d.name, d.description, d.file_type, d.size_bytes, d.privacy, d.owner_id, \
             d.last_accessed, d.created_at FROM datasets d WHERE {VISIBLE} ORDER BY d.name, d.id LIMIT $2 OFFSET $3"
        );
        let rows: Vec<Row> = on_pool!(db, |pool| sqlx::query_as(sqlx::AssertSqlSafe(sql.clone()))
            .bind(&user.id)
            .bind(limit)
            .bind(offset)
            .fetch_all(pool)
            .await)
        .map_err(|e| db.observe(e))?;
        let mut queries = 1;
        let mut results = Vec::with_capacity(rows.len());
        for row in rows {
            // BUG: one round trip for the owner and one for the downloads, per row.
            let owner: String =
                on_pool!(db, |pool| sqlx::query_scalar("SELECT username FROM research_users WHERE id = $1")
                    .bind(&row.owner_id)
                    .fetch_one(pool)
                    .await)
                .map_err(|e| db.observe(e))?;
            let downloads: i64 = on_pool!(db, |pool| sqlx::query_scalar(
                "SELECT COUNT(*) FROM audit_logs \
                 WHERE object_type = 'dataset' AND object_id = $1 AND action = 'download'"
            )
            .bind(&row.id)
            .fetch_one(pool)
            .await)
            .map_err(|e| db.observe(e))?;
            queries += 2;
            let dataset = Dataset {
                id: row.id,
                name: row.name,
                description: row.description,
                file_type: row.file_type,
                size_bytes: row.size_bytes,
                privacy: row.privacy,
                owner,
                last_accessed: row.last_accessed,
                created_at: row.created_at,
            };
            results.push(Listed { dataset, downloads });
        }
        Ok((results, queries))
    }

    /// ✅ FIXED: one query — the owner joined, the downloads counted per dataset.
    async fn page_joined(&self, user: &User, limit: i64, offset: i64) -> Result<(Vec<Listed>, usize), sqlx::Error> {
        let db = self.store.db();
        let sql = format!(
            "SELECT {columns}, COALESCE(c.downloads, 0) AS downloads \
             FROM datasets d JOIN research_users u ON u.id = d.owner_id \
             LEFT JOIN (SELECT object_id, COUNT(*) AS downloads FROM audit_logs \
                        WHERE object_type = 'dataset' AND action = 'download' GROUP BY object_id) c \
               ON c.object_id = d.id \
             WHERE {VISIBLE} ORDER BY d.name, d.id LIMIT $2 OFFSET $3",
            columns = super::store::DATASET_COLUMNS
        );
        let rows: Vec<JoinedRow> = on_pool!(db, |pool| sqlx::query_as(sqlx::AssertSqlSafe(sql.clone()))
            .bind(&user.id)
            .bind(limit)
            .bind(offset)
            .fetch_all(pool)
            .await)
        .map_err(|e| db.observe(e))?;
        let results = rows.into_iter().map(|r| Listed { dataset: r.dataset, downloads: r.downloads }).collect();
        Ok((results, 1))
    }
}
