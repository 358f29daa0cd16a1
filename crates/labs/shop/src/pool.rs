//! Checkout's own database pool, resizable at runtime: the story's "DB_MAX_CONNECTIONS
//! = 20, 5 s timeout" is applied by opening a real pool of that size and swapping it
//! in. Requests then really wait for a connection, and really give up after the
//! acquire timeout.
//!
//! The acquire timeout is the checkouts' wait, applied here, not the pool's own: a new
//! pool opens its first connection under a bound of its own (a PostgreSQL connection
//! costs a fork and a handshake, slower still on a busy machine), so a 50 ms timeout
//! meant for checkouts never fails the resize itself.

use std::path::PathBuf;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, RwLock};
use std::time::{Duration, Instant};

use serde::Serialize;

use platform::db::{Db, Pool};

/// How long opening a pool's connections may take; also the pool's own backstop wait.
/// Under the request pipeline's 30 s, so a resize that cannot open says why.
const OPEN_TIMEOUT: Duration = Duration::from_secs(20);

/// A connection checked out of the current pool, on either engine.
pub enum Conn {
    Postgres(sqlx::pool::PoolConnection<sqlx::Postgres>),
    Sqlite(sqlx::pool::PoolConnection<sqlx::Sqlite>),
}

/// Runs the same expression on whichever connection was checked out.
macro_rules! on_conn {
    ($conn:expr, |$c:ident| $body:expr) => {
        match $conn {
            $crate::pool::Conn::Postgres($c) => $body,
            $crate::pool::Conn::Sqlite($c) => $body,
        }
    };
}
pub(crate) use on_conn;

/// The pool's configuration as the API and the spans show it.
#[derive(Debug, Clone, Copy, Serialize, PartialEq, utoipa::ToSchema)]
pub struct PoolSettings {
    pub max_connections: u32,
    pub acquire_timeout_ms: u64,
}

/// No connection within the acquire timeout.
#[derive(Debug, Clone, Copy)]
pub struct Exhausted {
    pub settings: PoolSettings,
    pub waited: Duration,
    /// Checkouts this pool turned away so far, this one included.
    pub rejected: u64,
}

impl Exhausted {
    pub fn message(&self) -> String {
        format!(
            "database connection pool exhausted: no connection within {} ms (pool size {})",
            self.settings.acquire_timeout_ms, self.settings.max_connections
        )
    }
}

struct Current {
    db: Db,
    settings: PoolSettings,
}

pub struct CheckoutPool {
    current: RwLock<Arc<Current>>,
    normal: PoolSettings,
    database_url: Option<String>,
    data_dir: PathBuf,
    rejected: AtomicU64,
    /// Serializes resizes, so two admin calls cannot interleave open and swap.
    resizing: tokio::sync::Mutex<()>,
}

impl CheckoutPool {
    pub async fn open(
        database_url: Option<&str>,
        data_dir: PathBuf,
        normal: PoolSettings,
    ) -> anyhow::Result<CheckoutPool> {
        let db = open(database_url, &data_dir, normal).await?;
        Ok(CheckoutPool {
            current: RwLock::new(Arc::new(Current { db, settings: normal })),
            normal,
            database_url: database_url.map(str::to_owned),
            data_dir,
            rejected: AtomicU64::new(0),
            resizing: tokio::sync::Mutex::new(()),
        })
    }

    fn current(&self) -> Arc<Current> {
        self.current.read().unwrap_or_else(|p| p.into_inner()).clone()
    }

    pub fn settings(&self) -> PoolSettings {
        self.current().settings
    }

    pub fn normal(&self) -> PoolSettings {
        self.normal
    }

    pub fn rejected(&self) -> u64 {
        self.rejected.load(Ordering::Relaxed)
    }

    /// Connections of the current pool in use right now.
    pub fn in_use(&self) -> u32 {
        let current = self.current();
        platform::on_pool!(current.db, |p| p.size().saturating_sub(p.num_idle() as u32))
    }

    /// A connection and how long it took to get, or the measured wait before giving up.
    pub async fn acquire(&self) -> Result<(Conn, Duration, PoolSettings), Result<Exhausted, sqlx::Error>> {
        let current = self.current();
        let started = Instant::now();
        let wait = Duration::from_millis(current.settings.acquire_timeout_ms);
        let conn = tokio::time::timeout(wait, async {
            match current.db.pool() {
                Pool::Postgres(p) => p.acquire().await.map(Conn::Postgres),
                Pool::Sqlite(p) => p.acquire().await.map(Conn::Sqlite),
            }
        })
        .await
        .unwrap_or(Err(sqlx::Error::PoolTimedOut));
        let waited = started.elapsed();
        if let Err(error) = &conn {
            current.db.suspect(error);
        }
        match conn {
            Ok(conn) => Ok((conn, waited, current.settings)),
            // A database that does not answer is not an exhausted pool.
            Err(_) if current.db.is_unavailable() => Err(Err(platform::db::unavailable())),
            Err(sqlx::Error::PoolTimedOut) => {
                let rejected = self.rejected.fetch_add(1, Ordering::Relaxed) + 1;
                Err(Ok(Exhausted { settings: current.settings, waited, rejected }))
            }
            Err(other) => Err(Err(other)),
        }
    }

    /// Opens a pool of the new size and swaps it in; checkouts holding or already
    /// waiting for a connection of the old pool finish on it (closing it would fail
    /// the waiters as if the database were gone); it closes when the last lets go.
    /// Returns the previous settings.
    pub async fn resize(&self, settings: PoolSettings) -> anyhow::Result<PoolSettings> {
        let _one_at_a_time = self.resizing.lock().await;
        let db = open(self.database_url.as_deref(), &self.data_dir, settings).await?;
        let old = {
            let mut current = self.current.write().unwrap_or_else(|p| p.into_inner());
            std::mem::replace(&mut *current, Arc::new(Current { db, settings }))
        };
        Ok(old.settings)
    }

    pub async fn close(&self) {
        self.current().db.close().await;
    }
}

/// A pool of `settings.max_connections`. On PostgreSQL opening it establishes its first
/// connection within [`OPEN_TIMEOUT`], and the rest open as checkouts need them
/// (opening them all at once would take 50 of a PostgreSQL's 100 connections for the
/// normal pool alone).
///
/// On SQLite a writer waits for the database's one write lock for as long as
/// [`OPEN_TIMEOUT`], so under a rush it is the pool's acquire timeout (applied in
/// [`CheckoutPool::acquire`]) that gives out, as on PostgreSQL, and not the lock's
/// "database is locked". Every connection opens at once: one opened later, while the
/// lock is held back to back, would wait for the lock just to set itself up.
async fn open(database_url: Option<&str>, data_dir: &std::path::Path, settings: PoolSettings) -> anyhow::Result<Db> {
    let db = Db::connect(database_url, data_dir, "shop", settings.max_connections, OPEN_TIMEOUT).await?;
    if let Pool::Sqlite(pool) = db.pool() {
        let all = (0..settings.max_connections).map(|_| pool.acquire());
        let opened = futures_util::future::try_join_all(all).await?;
        drop(opened);
    }
    Ok(db)
}
