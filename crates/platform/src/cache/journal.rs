//! The cache's journal: the Redis keys a lab could not invalidate, kept in the lab's
//! database. Memory alone forgets them when the process restarts during an outage,
//! and the next process would serve what Redis kept for a whole TTL.

use crate::db::Db;
use crate::on_pool;

#[derive(Clone)]
pub(super) struct Journal {
    db: Db,
}

/// What the journal holds: the keys, and the id of the last entry read.
pub(super) struct Entries {
    pub keys: Vec<String>,
    pub last: Option<i64>,
}

impl Journal {
    pub fn new(db: Db) -> Journal {
        Journal { db }
    }

    /// Writes `keys` (full Redis keys) down: called before the write that changed
    /// them is acknowledged, so an acknowledged write is never forgotten.
    pub async fn note(&self, keys: &[String]) -> Result<(), sqlx::Error> {
        for key in keys {
            on_pool!(self.db, |p| sqlx::query("INSERT INTO cache_pending (cache_key) VALUES ($1)")
                .bind(key)
                .execute(p)
                .await
                .map(drop))
            .map_err(|e| self.db.observe(e))?;
        }
        Ok(())
    }

    pub async fn read(&self) -> Result<Entries, sqlx::Error> {
        let rows: Vec<(i64, String)> =
            on_pool!(self.db, |p| sqlx::query_as("SELECT id, cache_key FROM cache_pending ORDER BY id")
                .fetch_all(p)
                .await)
            .map_err(|e| self.db.observe(e))?;
        let last = rows.last().map(|(id, _)| *id);
        let mut keys: Vec<String> = rows.into_iter().map(|(_, key)| key).collect();
        keys.sort_unstable();
        keys.dedup();
        Ok(Entries { keys, last })
    }

    /// Forgets the entries up to `last`, once their keys are deleted from Redis; an
    /// entry written meanwhile has a higher id and stays.
    pub async fn forget_through(&self, last: i64) -> Result<(), sqlx::Error> {
        on_pool!(self.db, |p| sqlx::query("DELETE FROM cache_pending WHERE id <= $1")
            .bind(last)
            .execute(p)
            .await
            .map(drop))
        .map_err(|e| self.db.observe(e))
    }

    pub async fn is_empty(&self) -> Result<bool, sqlx::Error> {
        let rows: i64 =
            on_pool!(self.db, |p| sqlx::query_scalar("SELECT COUNT(*) FROM cache_pending").fetch_one(p).await)
                .map_err(|e| self.db.observe(e))?;
        Ok(rows == 0)
    }
}
