//! `breakroom demonstrate|check|reset items/cache-stampede`: a crowd of readers at the
//! moment the hot item's popular view expires, and how many aggregations it cost.

use std::sync::Arc;
use std::time::{Duration, Instant};

use platform::lab::Boxed;
use platform::rehearsal::{Judged, Judgement, Rehearsal};
use platform::stage::{EXIT_FAILED, Reply, StageError, Style, Target, reset_session, run_fix};

use crate::store::SEED_ITEMS;

/// The hot item: the first seed item, Widget A.
const HOT: &str = SEED_ITEMS[0].0;
/// Readers who open the hot item's page at the same moment.
pub const CROWD: usize = 50;
/// Past the entry's expiry before the crowd arrives.
const MARGIN: Duration = Duration::from_millis(250);
/// Expiries the check waits for when other readers refill the entry before its crowd.
const ATTEMPTS: usize = 3;

fn path() -> String {
    format!("/items/{HOT}/popular")
}

/// What one crowd cost.
struct Crowd {
    /// Readers whose request ran the aggregation itself.
    misses: usize,
    /// Readers who waited for another's aggregation.
    shared: usize,
    hits: usize,
    /// Answers other than 200.
    failed: Vec<String>,
    /// Distinct views the crowd was given (by their aggregation's time).
    views: usize,
    /// Growth of `items_popular_recomputes_total` across the crowd (all readers).
    recomputes: f64,
    /// Growth of `items_popular_duplicate_recomputes_total` across it.
    duplicates: f64,
    slowest: Duration,
    /// How long the crowd waited for the entry to expire.
    waited: Duration,
}

impl Crowd {
    fn describe(&self) -> String {
        let failed = if self.failed.is_empty() { String::new() } else { format!(", {} failed", self.failed.len()) };
        format!(
            "{CROWD} readers at the expiry: {} ran the aggregation themselves, {} shared one, {} hit the cache{failed}; \
             the slowest waited {:.0} ms",
            self.misses,
            self.shared,
            self.hits,
            self.slowest.as_secs_f64() * 1000.0
        )
    }
}

/// `CROWD` requests of `path` released together, each on a connection of its own.
fn released_together(target: &Target, path: String) -> tokio::task::JoinSet<(Result<Reply, StageError>, Duration)> {
    let gate = Arc::new(tokio::sync::Barrier::new(CROWD));
    let mut readers = tokio::task::JoinSet::new();
    for _ in 0..CROWD {
        let (target, gate, path) = (target.clone(), gate.clone(), path.clone());
        readers.spawn(async move {
            gate.wait().await;
            let started = Instant::now();
            let reply = target.get(&path).await;
            (reply, started.elapsed())
        });
    }
    readers
}

/// Reads the hot item's view once (which fills it when it is not cached) and waits
/// until that entry has expired. Just before, the crowd's readers connect (a cheap
/// request each), so at the expiry they all ask at once rather than one on the
/// connection already open and the others after their handshakes.
async fn until_expired(target: &Target) -> Result<Duration, StageError> {
    let view = target.get(&path()).await?.expect_json(&format!("GET {}", path()))?;
    let wait = Duration::from_millis(view["fresh_for_ms"].as_u64().unwrap_or(0)) + MARGIN;
    let expired = tokio::time::Instant::now() + wait;
    // Connections idle for long are closed by the server: connect within the last second.
    tokio::time::sleep_until(expired - wait.min(Duration::from_secs(1))).await;
    let mut connecting = released_together(target, "/health".into());
    while let Some(joined) = connecting.join_next().await {
        joined.map_err(|e| StageError(format!("a reader of the crowd failed: {e}")))?.0?;
    }
    tokio::time::sleep_until(expired).await;
    Ok(wait)
}

/// The crowd: `CROWD` readers released at once the moment the entry has expired.
async fn crowd(target: &Target) -> Result<Crowd, StageError> {
    let waited = until_expired(target).await?;
    let counted = || async {
        let metrics = target.get("/metrics").await?.body;
        let value = |name| platform::stage::metric_value(&metrics, name).unwrap_or(0.0);
        Ok::<_, StageError>((
            value("items_popular_recomputes_total"),
            value("items_popular_duplicate_recomputes_total"),
        ))
    };
    let before = counted().await?;
    let mut readers = released_together(target, path());
    let mut outcome = Crowd {
        misses: 0,
        shared: 0,
        hits: 0,
        failed: Vec::new(),
        views: 0,
        recomputes: 0.0,
        duplicates: 0.0,
        slowest: Duration::ZERO,
        waited,
    };
    let mut views = std::collections::BTreeSet::new();
    while let Some(joined) = readers.join_next().await {
        let (reply, took) = joined.map_err(|e| StageError(format!("a reader of the crowd failed: {e}")))?;
        outcome.slowest = outcome.slowest.max(took);
        let reply = match reply {
            Ok(reply) => reply,
            Err(error) => {
                outcome.failed.push(error.0);
                continue;
            }
        };
        let body = reply.json().filter(|_| reply.is_success());
        let Some(body) = body else {
            outcome.failed.push(format!("{}: {}", reply.status, reply.detail()));
            continue;
        };
        views.insert(body["computed_at_ms"].as_u64().unwrap_or(0));
        match body["cache"].as_str() {
            Some("miss") => outcome.misses += 1,
            Some("shared") => outcome.shared += 1,
            _ => outcome.hits += 1,
        }
    }
    outcome.views = views.len();
    let after = counted().await?;
    (outcome.recomputes, outcome.duplicates) = (after.0 - before.0, after.1 - before.1);
    Ok(outcome)
}

/// The crowd at an expiry that the crowd itself found: when another reader refilled
/// the entry first, every answer is a hit, and the next expiry is tried.
async fn crowd_at_expiry(target: &Target) -> Result<Crowd, StageError> {
    for _ in 0..ATTEMPTS {
        let crowd = crowd(target).await?;
        if crowd.misses > 0 || !crowd.failed.is_empty() {
            return Ok(crowd);
        }
    }
    Err(StageError(format!(
        "{ATTEMPTS} times the crowd found the popular view already refilled: another reader keeps \
         sending traffic at the moment it expires. Stop that traffic (breakroom drive) and check again."
    )))
}

/// The check's verdict: `Ok(what passed)` or `Err(what failed)`.
async fn probe(target: &Target) -> Result<Result<String, String>, StageError> {
    let crowd = crowd_at_expiry(target).await?;
    let detail = crowd.describe();
    if !crowd.failed.is_empty() {
        return Ok(Err(format!("{detail}: {}", crowd.failed[0])));
    }
    if crowd.misses == 1 && crowd.views == 1 {
        Ok(Ok(format!("{detail}: one aggregation, one view for all")))
    } else {
        Ok(Err(format!("{detail}: {} aggregations of the same rows for one expiry", crowd.misses)))
    }
}

pub async fn demonstrate(target: &Target) -> Result<u8, StageError> {
    let style = Style::detect();
    println!("{}", style.heading("=== DEMONSTRATING THE CACHE STAMPEDE ==="));
    println!(
        "The hot item's popular view ({}) is aggregated from its sales history and cached for a few seconds.",
        path()
    );
    println!("Waiting for its cache entry to expire, then {CROWD} readers open the page at the same moment…");
    let crowd = crowd_at_expiry(target).await?;
    let total = target.metric("items_popular_recomputes_total").await?.unwrap_or(0.0);
    let duplicates = target.metric("items_popular_duplicate_recomputes_total").await?.unwrap_or(0.0);
    println!("(waited {:.1} s for the expiry)", crowd.waited.as_secs_f64());
    println!("{}", crowd.describe());
    println!("The database ran {} aggregations of the same 36,000 rows during the crowd.", crowd.recomputes);
    println!();
    println!("{}", style.heading("--- What happened ---"));
    println!(
        "items_popular_recomputes_total {total}, items_popular_duplicate_recomputes_total {duplicates} since the server started."
    );
    if crowd.misses <= 1 {
        println!(
            "{}",
            style.bad(
                "The bug did not reproduce: one aggregation served the crowd. Is this server running with --fixed cache-stampede?"
            )
        );
        return Ok(EXIT_FAILED);
    }
    println!(
        "{}",
        style.bad(&format!(
            "One expiry, {} aggregations: every reader who missed recomputed the view itself. \
             It happens again at every expiry: a saw-tooth of latency and queries under load.",
            crowd.misses
        ))
    );
    println!(
        "The bug lives in crates/labs/items/src/popular.rs (fill_every_miss). Fix: breakroom serve items --fixed cache-stampede"
    );
    platform::stage::found(platform::stage::Finding::Reproduced(format!(
        "one expiry, {} aggregations of the same view",
        crowd.misses
    )));
    Ok(0)
}

pub async fn check(target: &Target) -> Result<u8, StageError> {
    let outcome = probe(target).await?;
    Ok(platform::stage::report_check(
        outcome,
        "Read crates/labs/items/src/popular.rs (fill_every_miss). Run the fix with \
         `breakroom serve items --fixed cache-stampede` and check again.",
    ))
}

/// What a reset left: the stampede's implementation and whether the view is cached.
async fn after_reset(target: &Target, token: &str) -> Result<(String, bool), StageError> {
    let mode = target.bug_mode("cache-stampede", token).await?;
    let stats = target.get("/cache/stats").await?.expect_json("GET /cache/stats")?;
    Ok((mode, stats["cached_items"].as_u64() == Some(0) && stats["cached_popular_views"].as_u64() == Some(0)))
}

pub async fn reset(target: &Target, token: &str) -> Result<u8, StageError> {
    let reply = reset_session(target, token).await?;
    println!("{}", reply.message());
    let (mode, empty) = after_reset(target, token).await?;
    let state = format!("cache-stampede implementation: {mode}   cache empty: {empty}");
    Ok(platform::stage::report_reset(mode == "buggy" && empty, "talk", &state))
}

/// The rehearsal of `items/cache-stampede`.
pub struct Rehearse {
    target: Target,
    admin: String,
    crowd: Option<Crowd>,
}

impl Rehearse {
    pub fn new(target: Target, admin: String) -> Rehearse {
        Rehearse { target, admin, crowd: None }
    }
}

impl Rehearsal for Rehearse {
    fn prepare(&mut self) -> Boxed<'_, Result<(), StageError>> {
        Box::pin(async move {
            reset_session(&self.target, &self.admin).await?;
            Ok(())
        })
    }

    fn reproduce(&mut self) -> Judged<'_> {
        Box::pin(async move {
            let crowd = crowd_at_expiry(&self.target).await?;
            // Most of the crowd, not all of it: on a loaded machine the first readers
            // may finish before the last ones ask.
            let ok = crowd.misses * 2 >= CROWD && crowd.failed.is_empty();
            let judgement = Judgement::new(ok, crowd.describe());
            self.crowd = Some(crowd);
            Ok(judgement)
        })
    }

    fn symptom(&mut self) -> Judged<'_> {
        Box::pin(async move {
            let Some(crowd) = &self.crowd else { return Ok(Judgement::not_applicable("the trigger did not run")) };
            // ItemsCacheStampede fires on duplicate aggregations.
            Ok(Judgement::new(
                crowd.duplicates > 0.0,
                format!(
                    "items_popular_duplicate_recomputes_total +{}; {} aggregations for one expiry",
                    crowd.duplicates, crowd.recomputes
                ),
            ))
        })
    }

    fn check_fails(&mut self) -> Judged<'_> {
        Box::pin(async move { Ok(Judgement::of_check(probe(&self.target).await?, false)) })
    }

    fn fix(&mut self) -> Judged<'_> {
        Box::pin(async move {
            run_fix(&self.target, &self.admin, "cache-stampede").await?;
            Ok(Judgement::of_check(probe(&self.target).await?, true))
        })
    }

    fn reset(&mut self) -> Judged<'_> {
        Box::pin(async move {
            reset_session(&self.target, &self.admin).await?;
            let (mode, empty) = after_reset(&self.target, &self.admin).await?;
            Ok(Judgement::new(mode == "buggy" && empty, format!("cache-stampede {mode}, cache empty: {empty}")))
        })
    }

    fn recover(&mut self) -> Boxed<'_, ()> {
        Box::pin(async move {
            let _ = reset_session(&self.target, &self.admin).await;
        })
    }
}
