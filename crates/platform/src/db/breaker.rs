//! A PostgreSQL that stopped answering is reported at once, as what it is.
//!
//! sqlx retries a refused connection until the pool's acquire timeout and then reports
//! `PoolTimedOut`: with the server down, every request waited 5 s and was told the
//! pool was exhausted, and the pool-timeout metric rose — the wrong cause, in labs
//! whose stories are about pool exhaustion. Here, an error of the kind a stopped server
//! causes (a connection broken mid-query, a refused connect, a pool wait that ran
//! out) makes the breaker check the server itself, with a connection of its own. If
//! that fails too, the breaker opens: the pool's connect options are swapped for ones
//! whose connect fails at once (a socket directory that does not exist), so every
//! acquire — the ones already waiting included, as sqlx re-reads the options on each
//! retry — fails in microseconds with an I/O error, answered as "database
//! unavailable". Every [`RETRY`] the breaker connects again; when it can, the real
//! options are put back and the pool opens connections as before.

use std::sync::Arc;
use std::sync::Mutex;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use sqlx::ConnectOptions;
use sqlx::postgres::{PgConnectOptions, PgPool};

/// How long the breaker's own connection attempt may take.
const PROBE_TIMEOUT: Duration = Duration::from_secs(1);
/// How often an open breaker tries the server again.
const RETRY: Duration = Duration::from_millis(500);
/// After the server was found answering, suspicions are not checked again this soon: an
/// exhausted pool times out request after request, and each check is a connection of
/// its own — a stream of them would load the very database the story is exhausting.
const QUIET_AFTER_ANSWER: Duration = Duration::from_secs(1);
/// Where connects go while the breaker is open: no such directory, so no such socket.
const NOWHERE: &str = "/nonexistent/breakroom: the database did not answer";

#[derive(Debug)]
pub(super) struct Breaker {
    pool: PgPool,
    real: PgConnectOptions,
    open: AtomicBool,
    checking: AtomicBool,
    /// When the last check found the server answering.
    answered: Mutex<Option<Instant>>,
}

impl Breaker {
    pub fn new(pool: PgPool) -> Arc<Breaker> {
        let real = (*pool.connect_options()).clone();
        Arc::new(Breaker {
            pool,
            real,
            open: AtomicBool::new(false),
            checking: AtomicBool::new(false),
            answered: Mutex::new(None),
        })
    }

    pub fn is_open(&self) -> bool {
        self.open.load(Ordering::Acquire)
    }

    /// `error` is of a kind a stopped server causes: check the server (one check at a time).
    pub fn suspect(self: &Arc<Self>, error: &sqlx::Error) {
        if !matches!(error, sqlx::Error::PoolTimedOut | sqlx::Error::Io(_) | sqlx::Error::Protocol(_)) {
            return;
        }
        let answered = *self.answered.lock().unwrap_or_else(|p| p.into_inner());
        if answered.is_some_and(|at| at.elapsed() < QUIET_AFTER_ANSWER) {
            return;
        }
        if self.is_open() || self.checking.swap(true, Ordering::AcqRel) {
            return;
        }
        let breaker = self.clone();
        tokio::spawn(async move {
            breaker.watch().await;
            breaker.checking.store(false, Ordering::Release);
        });
    }

    async fn watch(&self) {
        if self.reachable().await {
            *self.answered.lock().unwrap_or_else(|p| p.into_inner()) = Some(Instant::now());
            return; // busy or briefly cut, not gone
        }
        self.pool.set_connect_options(self.real.clone().socket(NOWHERE));
        self.open.store(true, Ordering::Release);
        tracing::error!("database_unavailable: PostgreSQL does not answer; requests fail at once until it does");
        while !self.pool.is_closed() {
            tokio::time::sleep(RETRY).await;
            if self.reachable().await {
                self.pool.set_connect_options(self.real.clone());
                self.open.store(false, Ordering::Release);
                tracing::info!("database_recovered: PostgreSQL answers again");
                return;
            }
        }
    }

    /// A connection of the breaker's own: whether the server answers at all (one that
    /// answers with an error, "too many clients" say, is there).
    async fn reachable(&self) -> bool {
        match tokio::time::timeout(PROBE_TIMEOUT, self.real.connect()).await {
            Ok(Ok(connection)) => {
                let _ = sqlx::Connection::close(connection).await;
                true
            }
            Ok(Err(sqlx::Error::Database(_))) => true,
            _ => false,
        }
    }
}

/// What a request is told while the breaker is open.
pub fn unavailable() -> sqlx::Error {
    sqlx::Error::Io(std::io::Error::new(std::io::ErrorKind::NotConnected, "the database did not answer"))
}
