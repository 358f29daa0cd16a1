//! The database pool: PostgreSQL when `DATABASE_URL` is set, SQLite (WAL) otherwise.
//!
//! Labs write their SQL once, in the common dialect both engines accept (`$1`
//! placeholders work in SQLite too), and run it through [`on_pool!`], which expands
//! the same code for each engine's pool.

use std::path::Path;
use std::str::FromStr;
use std::sync::Arc;
use std::time::Duration;

use anyhow::Context;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::registry::Registry;
use sqlx::ConnectOptions;
use sqlx::migrate::Migrator;
use sqlx::postgres::{PgConnectOptions, PgPool, PgPoolOptions};
use sqlx::sqlite::{SqliteConnectOptions, SqliteJournalMode, SqlitePool, SqlitePoolOptions, SqliteSynchronous};

mod breaker;
use breaker::Breaker;
pub use breaker::unavailable;

static POSTGRES_MIGRATIONS: Migrator = sqlx::migrate!("../../migrations/postgres");
static SQLITE_MIGRATIONS: Migrator = sqlx::migrate!("../../migrations/sqlite");

/// How long a request waits for a pooled connection before it fails.
const ACQUIRE_TIMEOUT: Duration = Duration::from_secs(5);
/// How often an idle lab checks that PostgreSQL still answers, and how long it waits.
const WATCH_INTERVAL: Duration = Duration::from_secs(1);
const WATCH_TIMEOUT: Duration = Duration::from_secs(1);

#[derive(Clone, Debug)]
pub enum Pool {
    Postgres(PgPool),
    Sqlite(SqlitePool),
}

/// Runs the same expression against whichever pool is configured:
/// `on_pool!(db, |pool| sqlx::query("…").execute(pool).await)`.
#[macro_export]
macro_rules! on_pool {
    ($db:expr, |$pool:ident| $body:expr) => {
        match $db.pool() {
            $crate::db::Pool::Postgres($pool) => $body,
            $crate::db::Pool::Sqlite($pool) => $body,
        }
    };
}

#[derive(Clone, Debug)]
pub struct Db {
    pool: Pool,
    gauges: Arc<PoolGauges>,
    /// PostgreSQL only: fails requests at once while the server does not answer.
    breaker: Option<Arc<Breaker>>,
}

#[derive(Debug, Default)]
struct PoolGauges {
    checked_out: Gauge,
    size: Gauge,
    timeouts: Counter,
}

impl Db {
    /// Connects (PostgreSQL) or opens (SQLite) the lab's database and runs the migrations.
    pub async fn open(
        database_url: Option<&str>,
        data_dir: &Path,
        lab: &str,
        max_connections: u32,
    ) -> anyhow::Result<Db> {
        let db = Db::connect(database_url, data_dir, lab, max_connections, ACQUIRE_TIMEOUT).await?;
        match &db.pool {
            Pool::Postgres(p) => POSTGRES_MIGRATIONS.run(p).await,
            Pool::Sqlite(p) => SQLITE_MIGRATIONS.run(p).await,
        }
        .context("running the database migrations")?;
        db.watch();
        Ok(db)
    }

    /// A trivial query every [`WATCH_INTERVAL`], so a server that stopped while the lab
    /// was idle is noticed before the next request waits for it. (Checkout's own pools
    /// go without: they are the shop's story, and a probe would take one of their
    /// connections.)
    fn watch(&self) {
        if self.breaker.is_none() {
            return;
        }
        let db = self.clone();
        tokio::spawn(async move {
            loop {
                tokio::time::sleep(WATCH_INTERVAL).await;
                if on_pool!(db, |p| p.is_closed()) {
                    return;
                }
                if let Some(breaker) = db.breaker.as_ref().filter(|b| !b.is_open()) {
                    match tokio::time::timeout(WATCH_TIMEOUT, db.ping()).await {
                        Ok(Ok(())) => {}
                        Ok(Err(error)) => breaker.suspect(&error),
                        Err(_) => breaker.suspect(&sqlx::Error::PoolTimedOut),
                    }
                }
            }
        });
    }

    /// A pool of `max_connections` on the lab's database, without running migrations:
    /// for a lab that keeps pools of its own sizes next to the platform's.
    pub async fn connect(
        database_url: Option<&str>,
        data_dir: &Path,
        lab: &str,
        max_connections: u32,
        acquire_timeout: Duration,
    ) -> anyhow::Result<Db> {
        let pool = match database_url {
            Some(url) => Pool::Postgres(connect_postgres(url, max_connections, acquire_timeout).await?),
            None => Pool::Sqlite(open_sqlite(data_dir, lab, max_connections, acquire_timeout).await?),
        };
        let breaker = match &pool {
            Pool::Postgres(p) => Some(Breaker::new(p.clone())),
            Pool::Sqlite(_) => None,
        };
        let db = Db { pool, gauges: Arc::default(), breaker };
        db.gauges.size.set(i64::from(max_connections));
        Ok(db)
    }

    pub fn pool(&self) -> &Pool {
        &self.pool
    }

    pub fn is_postgres(&self) -> bool {
        matches!(self.pool, Pool::Postgres(_))
    }

    /// The OpenTelemetry `db.system` of this database: `postgresql` or `sqlite`.
    pub fn system(&self) -> &'static str {
        if self.is_postgres() { "postgresql" } else { "sqlite" }
    }

    pub fn backend_name(&self) -> &'static str {
        match self.pool {
            Pool::Postgres(_) => "postgres",
            Pool::Sqlite(_) => "sqlite",
        }
    }

    /// `db_pool_checked_out`, `db_pool_size`, `db_pool_timeout_total`.
    pub fn register_metrics(&self, registry: &mut Registry) {
        registry.register(
            "db_pool_checked_out",
            "Database connections currently in use",
            self.gauges.checked_out.clone(),
        );
        registry.register("db_pool_size", "Database connections the pool may open", self.gauges.size.clone());
        registry.register(
            "db_pool_timeout",
            "Requests that gave up waiting for a database connection",
            self.gauges.timeouts.clone(),
        );
    }

    /// Refreshes the pool gauges; called right before every scrape.
    pub fn sample_pool(&self) {
        let (size, idle) = on_pool!(self, |p| (p.size(), p.num_idle()));
        self.gauges.checked_out.set(i64::from(size) - idle as i64);
    }

    /// Every database error a lab sees passes through here: pool timeouts are counted,
    /// and an error a stopped server causes makes the breaker check it. While it does
    /// not answer, every error is "unavailable" — a wait that ran out then is not the
    /// pool's fault and is not counted as its timeout.
    pub fn observe(&self, error: sqlx::Error) -> sqlx::Error {
        if let Some(breaker) = &self.breaker {
            if breaker.is_open() {
                return breaker::unavailable();
            }
            breaker.suspect(&error);
        }
        if matches!(error, sqlx::Error::PoolTimedOut) {
            self.gauges.timeouts.inc();
        }
        error
    }

    /// Has the breaker check `error` without counting anything: for a pool that keeps
    /// its own figures (the shop's checkout).
    pub fn suspect(&self, error: &sqlx::Error) {
        if let Some(breaker) = &self.breaker {
            breaker.suspect(error);
        }
    }

    /// Whether the database is known not to answer right now.
    pub fn is_unavailable(&self) -> bool {
        self.breaker.as_ref().is_some_and(|b| b.is_open())
    }

    /// Runs a statement without parameters; returns the rows it affected.
    pub async fn execute(&self, sql: &'static str) -> Result<u64, sqlx::Error> {
        on_pool!(self, |p| sqlx::query(sql).execute(p).await.map(|r| r.rows_affected()))
    }

    /// A cheap round trip, for readiness.
    pub async fn ping(&self) -> Result<(), sqlx::Error> {
        on_pool!(self, |p| sqlx::query("SELECT 1").execute(p).await.map(drop))
    }

    pub async fn close(&self) {
        on_pool!(self, |p| p.close().await)
    }
}

async fn connect_postgres(url: &str, max_connections: u32, acquire_timeout: Duration) -> anyhow::Result<PgPool> {
    let options = PgConnectOptions::from_str(url)
        .with_context(|| format!("DATABASE_URL is not a valid PostgreSQL URL: {}", redact(url)))?
        .log_statements(tracing::log::LevelFilter::Trace);
    PgPoolOptions::new()
        .max_connections(max_connections.max(1))
        .acquire_timeout(acquire_timeout)
        .connect_with(options)
        .await
        .with_context(|| {
            format!(
                "cannot connect to PostgreSQL at {}. Is it running and does the database exist? \
                 Unset DATABASE_URL to use the embedded SQLite database instead",
                redact(url)
            )
        })
}

async fn open_sqlite(
    data_dir: &Path,
    lab: &str,
    max_connections: u32,
    acquire_timeout: Duration,
) -> anyhow::Result<SqlitePool> {
    std::fs::create_dir_all(data_dir).with_context(|| {
        format!("cannot create the data directory {} (set --data-dir or BREAKROOM_DATA_DIR)", data_dir.display())
    })?;
    let file = data_dir.join(format!("{lab}.db"));
    let options = SqliteConnectOptions::new()
        .filename(&file)
        .create_if_missing(true)
        // WAL lets the live-results readers run while a vote is being written.
        .journal_mode(SqliteJournalMode::Wal)
        .synchronous(SqliteSynchronous::Normal)
        // A writer waits for another as long as a request may wait for a connection.
        .busy_timeout(acquire_timeout.max(ACQUIRE_TIMEOUT))
        .foreign_keys(true)
        .log_statements(tracing::log::LevelFilter::Trace);
    SqlitePoolOptions::new()
        .max_connections(max_connections.max(1))
        .acquire_timeout(acquire_timeout)
        .connect_with(options)
        .await
        .with_context(|| format!("cannot open the SQLite database {}", file.display()))
}

/// A database URL without its password, for messages.
pub fn redact(url: &str) -> String {
    match (url.find("://"), url.rfind('@')) {
        (Some(scheme), Some(at)) if at > scheme => {
            let userinfo = &url[scheme + 3..at];
            match userinfo.find(':') {
                Some(colon) => format!("{}://{}:***{}", &url[..scheme], &userinfo[..colon], &url[at..]),
                None => url.to_string(),
            }
        }
        _ => url.to_string(),
    }
}

#[cfg(test)]
mod tests {
    use super::redact;

    #[test]
    fn redact_hides_only_the_password() {
        assert_eq!(redact("postgres://app:s3cret@db:5432/vote"), "postgres://app:***@db:5432/vote");
        assert_eq!(redact("postgres://postgres@127.0.0.1/test"), "postgres://postgres@127.0.0.1/test");
        assert_eq!(redact("postgres://localhost/test"), "postgres://localhost/test");
    }
}
