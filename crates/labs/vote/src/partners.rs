//! The partner lookup — THE PLANTED BUG OF `vote/connection-leak` LIVES IN THIS FILE.
//!
//! The story: a flyer still carries last year's partner code, and a bot tries codes at
//! random. The lookup takes its database connection out of the pool by hand and puts it
//! back at the end (`check_out` / `check_in`, as the service this lab is modelled on did
//! with its pool's `getconn` / `putconn`). Its early return for an unknown code skips
//! the check-in: that connection stays checked out, the pool counts it in use, and
//! nothing will ever give it back. After as many bad codes as the pool has connections
//! (10 by default, `--db-max-connections`), every request that needs the database waits
//! the pool's 5 s and answers 503 — votes with a referral and without one — while
//! `/health` stays green.
//!
//! Both implementations sit side by side below. `find_checked_out_by_hand` is the buggy
//! one that runs by default; `find_scoped` is the fix (`--fixed connection-leak`).
//! Running the fix stands for deploying it: the process that leaked is replaced, so the
//! connections it held go back to the pool (as they do on a reset).

use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, Weak};

use sqlx::pool::PoolConnection;
use sqlx::{Postgres, Sqlite};

use super::store::{FIND_PARTNER_SQL, Partner, VoteStore};
use platform::bugs::BugSwitch;
use platform::db::{Db, Pool};

/// A connection taken from the pool by hand.
enum Connection {
    Postgres(PoolConnection<Postgres>),
    Sqlite(PoolConnection<Sqlite>),
}

/// A checked-out connection; when the last handle goes, it is back in the pool.
type Held = Arc<tokio::sync::Mutex<Connection>>;

/// Connections checked out by hand and not checked in yet, by ticket.
type CheckedOut = Mutex<HashMap<u64, Held>>;

pub struct PartnerLookup {
    fix: BugSwitch,
    db: Db,
    store: VoteStore,
    checked_out: Arc<CheckedOut>,
    next_ticket: AtomicU64,
}

impl PartnerLookup {
    /// Also follows the bug switch: once the fix runs, what the buggy build leaked is
    /// given back, as the restart that deploys a fix would.
    pub fn new(fix: BugSwitch, db: Db, store: VoteStore) -> PartnerLookup {
        let checked_out: Arc<CheckedOut> = Arc::default();
        let mut changes = fix.changes();
        let held = Arc::downgrade(&checked_out);
        tokio::spawn(async move {
            while changes.changed().await.is_ok() && held.strong_count() > 0 {
                if *changes.borrow_and_update() {
                    give_back(&held);
                }
            }
        });
        PartnerLookup { fix, db, store, checked_out, next_ticket: AtomicU64::new(1) }
    }

    /// The partner a referral code belongs to, with whichever implementation is on.
    /// In a client span of its own (the console's trace of a referral vote).
    pub async fn find(&self, code: &str) -> Result<Option<Partner>, sqlx::Error> {
        use tracing::Instrument as _;
        let span = tracing::info_span!(
            "SELECT referral_partners",
            otel.kind = "client",
            db.system = self.db.system(),
            db.operation = "SELECT",
            db.statement = FIND_PARTNER_SQL,
            db.rows_affected = tracing::field::Empty,
            otel.status_code = tracing::field::Empty,
        );
        let lookup = async {
            if self.fix.is_fixed() { self.find_scoped(code).await } else { self.find_checked_out_by_hand(code).await }
        };
        let found = lookup.instrument(span.clone()).await;
        match &found {
            Ok(partner) => span.record("db.rows_affected", i64::from(partner.is_some())),
            Err(_) => span.record("otel.status_code", "ERROR"),
        };
        found
    }

    /// 🐛 BUGGY (default): the connection is checked out by hand, and one path forgets
    /// to check it back in.
    async fn find_checked_out_by_hand(&self, code: &str) -> Result<Option<Partner>, sqlx::Error> {
        let (ticket, connection) = self.check_out().await?;
        let partner = match self.query(&connection, code).await {
            Ok(Some(partner)) => partner,
            // BUG: an unknown code returns early, before check_in: the connection stays
            // checked out for as long as the process runs.
            Ok(None) => return Ok(None),
            Err(error) => {
                self.check_in(ticket);
                return Err(error);
            }
        };
        self.check_in(ticket);
        Ok(Some(partner))
    }

    /// ✅ FIXED: the pool lends the connection for the query alone; it goes back when
    /// the query's scope ends, on every path.
    async fn find_scoped(&self, code: &str) -> Result<Option<Partner>, sqlx::Error> {
        self.store.find_partner(code).await
    }

    /// Takes a connection from the pool and files it under a new ticket.
    /// In a span that says how long the pool made it wait and how many connections
    /// were already held by hand (`db.connection.pool.*`).
    async fn check_out(&self) -> Result<(u64, Held), sqlx::Error> {
        use tracing::Instrument as _;
        let span = tracing::info_span!(
            "db.pool.acquire",
            db.connection.pool.checked_out_by_hand = lock(&self.checked_out).len() as i64,
            db.connection.pool.wait_time_ms = tracing::field::Empty,
            db.connection.pool.exhausted = tracing::field::Empty,
            otel.status_code = tracing::field::Empty,
        );
        let started = std::time::Instant::now();
        let acquired = async {
            match self.db.pool() {
                Pool::Postgres(pool) => pool.acquire().await.map(Connection::Postgres),
                Pool::Sqlite(pool) => pool.acquire().await.map(Connection::Sqlite),
            }
        }
        .instrument(span.clone())
        .await;
        span.record("db.connection.pool.wait_time_ms", started.elapsed().as_secs_f64() * 1000.0);
        let exhausted = matches!(acquired, Err(sqlx::Error::PoolTimedOut));
        span.record("db.connection.pool.exhausted", exhausted);
        if acquired.is_err() {
            span.record("otel.status_code", "ERROR");
        }
        let connection = acquired.map_err(|e| self.db.observe(e))?;
        let ticket = self.next_ticket.fetch_add(1, Ordering::Relaxed);
        let held = Arc::new(tokio::sync::Mutex::new(connection));
        lock(&self.checked_out).insert(ticket, held.clone());
        if self.fix.is_fixed() {
            // The fix arrived while this connection was on its way: what it gave back
            // did not include this one.
            self.check_in(ticket);
        }
        Ok((ticket, held))
    }

    /// Gives a ticket's connection back to the pool.
    fn check_in(&self, ticket: u64) {
        lock(&self.checked_out).remove(&ticket);
    }

    /// The lookup, on a checked-out connection.
    async fn query(&self, connection: &Held, code: &str) -> Result<Option<Partner>, sqlx::Error> {
        let mut connection = connection.lock().await;
        let found = match &mut *connection {
            Connection::Postgres(c) => {
                sqlx::query_as::<_, Partner>(FIND_PARTNER_SQL).bind(code).fetch_optional(&mut **c).await
            }
            Connection::Sqlite(c) => {
                sqlx::query_as::<_, Partner>(FIND_PARTNER_SQL).bind(code).fetch_optional(&mut **c).await
            }
        };
        found.map_err(|e| self.db.observe(e))
    }

    /// Gives back every connection still checked out, as a restart would; returns how
    /// many there were.
    pub fn give_back(&self) -> usize {
        give_back(&Arc::downgrade(&self.checked_out))
    }

    pub fn mode(&self) -> &'static str {
        self.fix.mode()
    }
}

fn lock(checked_out: &CheckedOut) -> std::sync::MutexGuard<'_, HashMap<u64, Held>> {
    checked_out.lock().unwrap_or_else(|poisoned| poisoned.into_inner())
}

fn give_back(checked_out: &Weak<CheckedOut>) -> usize {
    let Some(checked_out) = checked_out.upgrade() else { return 0 };
    let drained: Vec<_> = lock(&checked_out).drain().collect();
    if !drained.is_empty() {
        tracing::warn!(connections = drained.len(), "leaked_connections_returned");
    }
    drained.len()
}
