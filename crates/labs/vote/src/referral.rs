//! Referral validation — THE PLANTED BUG OF THE VOTE LAB LIVES IN THIS FILE.
//!
//! The story (seeds 000 and 001): votes that arrive through the partner QR code carry
//! `"referral": "conf-partner-2026"`. Someone added a "cache" in front of the referral
//! lookup. It appends an entry on every validation, before the database is even asked,
//! and nothing ever removes one. In production that is slow memory growth until the
//! pod is OOM-killed; here the list has a small capacity (10 by default) so the room
//! sees it fail within a minute: vote 11 with a referral answers 503, and so does every
//! referral vote after it, while votes without a referral and `/health` stay green.
//!
//! Both implementations sit side by side below. `validate_with_cache` is the buggy one
//! that runs by default; `validate_in_database` is the fix (`--fixed referral`).
//! The list belongs to the running lab, so it is per process like the original's
//! module-level list: three replicas fail after ~30 referral votes in all, unevenly.

use std::sync::Mutex;
use std::time::SystemTime;

use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::registry::Registry;

use super::partners::PartnerLookup;
use super::store::Partner;
use platform::bugs::BugSwitch;

#[derive(Debug)]
pub enum ReferralError {
    /// No partner has this code.
    Invalid,
    /// The buggy cache is past its capacity; `entries` is how many it holds now.
    CacheExhausted {
        entries: usize,
    },
    Database(sqlx::Error),
}

impl From<sqlx::Error> for ReferralError {
    fn from(error: sqlx::Error) -> Self {
        ReferralError::Database(error)
    }
}

/// One remembered validation — never read again, never removed.
#[derive(Debug)]
#[allow(dead_code)] // Kept only to occupy memory, exactly like the original's dicts.
struct CacheEntry {
    code: String,
    timestamp: SystemTime,
    validated: bool,
}

pub struct ReferralValidator {
    fix: BugSwitch,
    capacity: usize,
    // 🐛 Grows by one entry on every referral validation and is never evicted.
    cache: Mutex<Vec<CacheEntry>>,
    entries: Gauge,
    exhausted: Counter,
}

impl ReferralValidator {
    pub fn new(fix: BugSwitch, capacity: usize, registry: &mut Registry) -> Self {
        let validator = ReferralValidator {
            fix,
            capacity,
            cache: Mutex::new(Vec::new()),
            entries: Gauge::default(),
            exhausted: Counter::default(),
        };
        registry.register(
            "referral_cache_entries",
            "Entries in the referral validation cache",
            validator.entries.clone(),
        );
        let capacity_gauge = Gauge::<i64>::default();
        capacity_gauge.set(capacity as i64);
        registry.register(
            "referral_cache_capacity",
            "Entries the referral cache holds before it is exhausted",
            capacity_gauge,
        );
        registry.register(
            "referral_cache_exhausted",
            "Referral validations refused because the referral cache was exhausted",
            validator.exhausted.clone(),
        );
        validator
    }

    /// Checks a referral code with whichever implementation is switched on.
    /// In a span of its own (the console's trace of a vote): `referral.cache.entries`
    /// and `referral.cache.exhausted` say what the cache held when it answered.
    pub async fn validate(&self, partners: &PartnerLookup, code: &str) -> Result<Partner, ReferralError> {
        use tracing::Instrument as _;
        let span = tracing::info_span!(
            "referral.validate",
            referral.fixed = self.fix.is_fixed(),
            referral.cache.capacity = self.capacity as i64,
            referral.cache.entries = tracing::field::Empty,
            referral.cache.exhausted = tracing::field::Empty,
            otel.status_code = tracing::field::Empty,
        );
        let validation = async {
            if self.fix.is_fixed() {
                self.validate_in_database(partners, code).await
            } else {
                self.validate_with_cache(partners, code).await
            }
        };
        validation.instrument(span).await
    }

    /// 🐛 BUGGY (default): an unbounded cache in front of the lookup.
    async fn validate_with_cache(&self, partners: &PartnerLookup, code: &str) -> Result<Partner, ReferralError> {
        let entries = {
            // A std mutex: the critical section is a push, never held across an await.
            let mut cache = self.cache.lock().unwrap_or_else(|poisoned| poisoned.into_inner());
            // BUG: an entry is added on EVERY request — valid or not, seen before or
            // not — and nothing ever removes one.
            cache.push(CacheEntry { code: code.to_owned(), timestamp: SystemTime::now(), validated: true });
            cache.len()
        };
        self.entries.set(entries as i64);
        let span = tracing::Span::current();
        span.record("referral.cache.entries", entries as i64);
        span.record("referral.cache.exhausted", entries > self.capacity);
        // In production the process would run out of memory after many thousands of
        // entries; the capacity makes that failure arrive after ten.
        if entries > self.capacity {
            self.exhausted.inc();
            span.record("otel.status_code", "ERROR");
            tracing::error!(
                entries,
                capacity = self.capacity,
                location = "crates/labs/vote/src/referral.rs",
                "referral_cache_exhausted"
            );
            return Err(ReferralError::CacheExhausted { entries });
        }
        self.validate_in_database(partners, code).await
    }

    /// ✅ FIXED: no cache at all — ask the database, whose unique index on
    /// `referral_partners.code` makes this a single index lookup.
    /// (The lookup is the `vote/connection-leak` scenario's: see `partners.rs`.)
    async fn validate_in_database(&self, partners: &PartnerLookup, code: &str) -> Result<Partner, ReferralError> {
        partners.find(code).await?.ok_or(ReferralError::Invalid)
    }

    /// Forgets every cached entry, as a restart of the process would.
    pub fn clear(&self) {
        self.cache.lock().unwrap_or_else(|poisoned| poisoned.into_inner()).clear();
        self.entries.set(0);
    }

    pub fn entries(&self) -> usize {
        self.cache.lock().unwrap_or_else(|poisoned| poisoned.into_inner()).len()
    }

    pub fn capacity(&self) -> usize {
        self.capacity
    }

    pub fn mode(&self) -> &'static str {
        self.fix.mode()
    }
}
