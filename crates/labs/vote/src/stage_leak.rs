//! `breakroom demonstrate|check|reset vote/connection-leak`: last year's partner code
//! drains the database pool, one connection per vote.

use std::time::{Duration, Instant};

use serde_json::json;

use platform::lab::Boxed;
use platform::rehearsal::{Judged, Judgement, Rehearsal};
use platform::stage::{EXIT_FAILED, Reply, StageError, Style, Target, reset_session, run_fix};

/// Last year's partner code, still printed on a flyer: no partner has it.
pub const STALE_CODE: &str = "conf-partner-2025";

/// Votes without a referral the check sends after the unknown codes.
const CHECK_VOTES: usize = 3;

/// What to do when the referral cache of `vote/referral` refuses the codes first.
const CACHE_FIRST: &str = "The referral cache (the vote/referral bug) is exhausted and answers before the partner \
     lookup is reached, so this scenario cannot be shown. Serve the lab with `--fixed referral` for this scenario, \
     or run `breakroom reset vote/connection-leak` first.";

/// `(checked out, pool size)` as `/metrics` reports them.
async fn pool(target: &Target) -> Result<(usize, usize), StageError> {
    let reply = target.get("/metrics").await?;
    let value = |name| platform::stage::metric_value(&reply.body, name).map(|v| v as usize);
    match (value("db_pool_checked_out"), value("db_pool_size")) {
        (Some(out), Some(size)) => Ok((out, size)),
        _ => Err(StageError(format!("{} has no db_pool_checked_out and db_pool_size", target.url("/metrics")))),
    }
}

async fn stale_code_vote(target: &Target) -> Result<Reply, StageError> {
    target.post_json("/vote", &json!({ "choice": "ai", "referral": STALE_CODE })).await
}

async fn plain_vote(target: &Target) -> Result<(Reply, Duration), StageError> {
    let started = Instant::now();
    let reply = target.post_json("/vote", &json!({ "choice": "restart", "referral": null })).await?;
    Ok((reply, started.elapsed()))
}

fn cache_answered(reply: &Reply) -> bool {
    reply.status == 503 && reply.detail().contains("referral cache exhausted")
}

/// `STATUS detail`
fn line(reply: &Reply) -> String {
    format!("{} {}", reply.status, reply.detail())
}

/// Sends the unknown codes the pool has room for, then one vote without a referral,
/// and explains what the room just saw.
pub async fn demonstrate(target: &Target, interval: Duration) -> Result<u8, StageError> {
    let style = Style::detect();
    println!("{}", style.heading("=== DEMONSTRATING THE LEAK ==="));
    let (out, size) = pool(target).await?;
    println!("The pool lends {size} database connections; {out} are checked out now.");
    let bad = size.saturating_sub(out);
    if bad == 0 {
        println!("The pool is drained already. For a clean demo: breakroom reset vote/connection-leak");
    } else {
        println!("Sending {bad} votes with last year's partner code '{STALE_CODE}':");
    }
    for i in 1..=bad {
        let reply = stale_code_vote(target).await?;
        if cache_answered(&reply) {
            println!("{}", style.bad(CACHE_FIRST));
            return Ok(EXIT_FAILED);
        }
        let (out, _) = pool(target).await?;
        println!("Bad code {i}: {}   db_pool_checked_out {out}/{size}", line(&reply));
        if i < bad && !interval.is_zero() {
            // Stage pacing: the room watches the gauge climb. Not part of the symptom.
            tokio::time::sleep(interval).await;
        }
    }
    println!();
    println!("Now one vote without any referral code:");
    let (reply, took) = plain_vote(target).await?;
    let answer = format!("{}   after {:.1} s", line(&reply), took.as_secs_f64());
    println!("{}", if reply.is_success() { style.good(&answer) } else { style.bad(&answer) });

    println!();
    println!("{}", style.heading("--- What happened ---"));
    let health = target.get("/health").await?;
    let (out, size) = pool(target).await?;
    let timeouts = target.metric("db_pool_timeout_total").await?.unwrap_or(0.0);
    println!("db_pool_checked_out = {out} of db_pool_size = {size}   db_pool_timeout_total = {timeouts}");
    println!(
        "/health still answers {} {} — the pod looks healthy while no vote can reach the database.",
        health.status, health.body
    );
    if reply.is_success() {
        println!(
            "{}",
            style.bad("The bug did not reproduce: the vote was stored. Is this server running with --fixed connection-leak? (see /version)")
        );
        return Ok(EXIT_FAILED);
    }
    println!(
        "Every bad code kept its connection. The bug lives in crates/labs/vote/src/partners.rs \
         (find_checked_out_by_hand). Fix: breakroom serve vote --fixed connection-leak"
    );
    platform::stage::found(platform::stage::Finding::Reproduced(format!(
        "every bad partner code kept its connection; the next vote answered {}",
        reply.status
    )));
    Ok(0)
}

/// The check's verdict: `Ok(what passed)` or `Err(what failed)`.
async fn probe(target: &Target) -> Result<Result<String, String>, StageError> {
    let (_, size) = pool(target).await?;
    for i in 1..=size {
        let reply = stale_code_vote(target).await?;
        if cache_answered(&reply) {
            return Err(StageError(CACHE_FIRST.into()));
        }
        if reply.status != 400 {
            return Ok(Err(format!("unknown code {i} of {size} answered {}", line(&reply))));
        }
    }
    for i in 1..=CHECK_VOTES {
        let (reply, took) = plain_vote(target).await?;
        if !reply.is_success() {
            return Ok(Err(format!(
                "vote {i} of {CHECK_VOTES} after {size} unknown codes answered {} after {:.1} s",
                line(&reply),
                took.as_secs_f64()
            )));
        }
    }
    let (out, size) = pool(target).await?;
    if out >= size {
        return Ok(Err(format!("all {size} database connections are still checked out")));
    }
    Ok(Ok(format!(
        "{size} unknown codes answered 400, then {CHECK_VOTES} votes were stored; {out} of {size} connections in use"
    )))
}

/// The votes after as many unknown codes as the pool holds must succeed.
pub async fn check(target: &Target) -> Result<u8, StageError> {
    let outcome = probe(target).await?;
    Ok(platform::stage::report_check(
        outcome,
        "An unknown code keeps its connection: read crates/labs/vote/src/partners.rs \
         (find_checked_out_by_hand). Run the fix with `breakroom serve vote --fixed connection-leak`, \
         then `breakroom reset vote/connection-leak` and check again.",
    ))
}

/// What a reset left: `(votes, checked out, pool size, the leak's implementation)`.
async fn after_reset(target: &Target) -> Result<(i64, usize, usize, String), StageError> {
    let votes = target.get("/votes").await?.json().unwrap_or_default();
    let total = votes.as_object().map(|m| m.values().filter_map(|c| c["count"].as_i64()).sum()).unwrap_or(-1);
    let (out, size) = pool(target).await?;
    let version = target.get("/version").await?.json().unwrap_or_default();
    let mode = version["connection_leak"].as_str().unwrap_or("unknown").to_owned();
    Ok((total, out, size, mode))
}

/// Everything back to the pre-talk state, the held connections included, then proof.
pub async fn reset(target: &Target, token: &str) -> Result<u8, StageError> {
    let reply = reset_session(target, token).await?;
    println!("{}", reply.message());
    let (total, out, size, mode) = after_reset(target).await?;
    let state =
        format!("votes: {total}   connections checked out: {out} of {size}   connection-leak implementation: {mode}");
    Ok(platform::stage::report_reset(total == 0 && out < size, "talk", &state))
}

/// The rehearsal of `vote/connection-leak`, with the referral cache's bug out of the
/// way (fixed in `prepare`, back with the reset).
pub struct Rehearse {
    target: Target,
    admin: String,
    timeouts_before: f64,
}

impl Rehearse {
    pub fn new(target: Target, admin: String) -> Rehearse {
        Rehearse { target, admin, timeouts_before: 0.0 }
    }
}

impl Rehearsal for Rehearse {
    fn prepare(&mut self) -> Boxed<'_, Result<(), StageError>> {
        Box::pin(async move {
            reset_session(&self.target, &self.admin).await?;
            run_fix(&self.target, &self.admin, "referral").await?;
            self.timeouts_before = self.target.metric("db_pool_timeout_total").await?.unwrap_or(0.0);
            Ok(())
        })
    }

    fn reproduce(&mut self) -> Judged<'_> {
        Box::pin(async move {
            let (_, size) = pool(&self.target).await?;
            let mut statuses = Vec::with_capacity(size);
            for _ in 0..size {
                statuses.push(stale_code_vote(&self.target).await?.status);
            }
            let (vote, took) = plain_vote(&self.target).await?;
            let drained = vote.status == 503 && vote.detail().contains("pool is exhausted");
            Ok(Judgement::new(
                statuses.iter().all(|s| *s == 400) && drained,
                format!(
                    "{size} unknown codes: {}; then a plain vote: {} after {:.1} s",
                    statuses.iter().map(u16::to_string).collect::<Vec<_>>().join(","),
                    line(&vote),
                    took.as_secs_f64()
                ),
            ))
        })
    }

    fn symptom(&mut self) -> Judged<'_> {
        Box::pin(async move {
            let (out, size) = pool(&self.target).await?;
            let timeouts = self.target.metric("db_pool_timeout_total").await?.unwrap_or(0.0) - self.timeouts_before;
            let health = self.target.get("/health").await?;
            // VoteDatabaseConnectionsLeaked: the whole pool checked out, and waits timing out.
            Ok(Judgement::new(
                out >= size && timeouts > 0.0 && health.status == 200,
                format!(
                    "db_pool_checked_out {out} of {size}, db_pool_timeout_total +{timeouts}; /health {}",
                    health.status
                ),
            ))
        })
    }

    fn check_fails(&mut self) -> Judged<'_> {
        Box::pin(async move { Ok(Judgement::of_check(probe(&self.target).await?, false)) })
    }

    fn fix(&mut self) -> Judged<'_> {
        Box::pin(async move {
            run_fix(&self.target, &self.admin, "connection-leak").await?;
            Ok(Judgement::of_check(probe(&self.target).await?, true))
        })
    }

    fn reset(&mut self) -> Judged<'_> {
        Box::pin(async move {
            reset_session(&self.target, &self.admin).await?;
            let (total, out, size, mode) = after_reset(&self.target).await?;
            Ok(Judgement::new(
                total == 0 && out < size && mode == "buggy",
                format!("votes {total}, connections checked out {out} of {size}, connection-leak {mode}"),
            ))
        })
    }

    fn recover(&mut self) -> Boxed<'_, ()> {
        Box::pin(async move {
            let _ = reset_session(&self.target, &self.admin).await;
        })
    }
}
