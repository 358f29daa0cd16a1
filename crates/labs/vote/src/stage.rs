//! `breakroom demonstrate|check|reset vote`: seed 000's loops, typed on stage.

use std::time::Duration;

use serde_json::json;

use super::store::KNOWN_PARTNER_CODE;
use platform::lab::Boxed;
use platform::rehearsal::{Judged, Judgement, Rehearsal};
use platform::stage::{
    EXIT_FAILED, Finding, Reply, StageError, Style, Target, admin_token, found, ranges, reset_session, run_fix,
};

/// Seed 000 sends fifteen referral votes: ten fill the cache, five show the failure.
pub const REFERRAL_VOTES: usize = 15;

/// Seed 000's loop; prints each reply like the seed when given a style.
async fn referral_votes(target: &Target, interval: Duration, style: Option<&Style>) -> Result<Vec<Reply>, StageError> {
    let body = json!({ "choice": "ai", "referral": KNOWN_PARTNER_CODE });
    let mut replies = Vec::with_capacity(REFERRAL_VOTES);
    for i in 1..=REFERRAL_VOTES {
        let reply = target.post_json("/vote", &body).await?;
        if let Some(style) = style {
            println!("Request {i}:");
            if reply.is_success() {
                println!("{}", style.good(&reply.body));
            } else {
                println!("{}", style.bad(&format!("{} {}", reply.status, reply.body)));
            }
        }
        replies.push(reply);
        if i < REFERRAL_VOTES && !interval.is_zero() {
            // Stage pacing, like seed 000's `sleep 0.5`: the room reads each answer.
            // Not part of the symptom, which comes from the cache alone.
            tokio::time::sleep(interval).await;
        }
    }
    Ok(replies)
}

fn failed_numbers(replies: &[Reply]) -> Vec<usize> {
    replies.iter().enumerate().filter(|(_, r)| !r.is_success()).map(|(i, _)| i + 1).collect()
}

/// Runs the 15 referral votes and explains what the room just saw.
pub async fn demonstrate(target: &Target, interval: Duration) -> Result<u8, StageError> {
    let style = Style::detect();
    println!("{}", style.heading("=== DEMONSTRATING THE BUG ==="));
    let replies = referral_votes(target, interval, Some(&style)).await?;
    let failed = failed_numbers(&replies);
    let ok = REFERRAL_VOTES - failed.len();
    let exhausted =
        replies.iter().filter(|r| r.status == 503 && r.detail().contains("referral cache exhausted")).count();

    println!();
    println!("{}", style.heading("--- What happened ---"));
    println!("{ok} of {REFERRAL_VOTES} referral votes succeeded.");
    if !failed.is_empty() {
        println!("Requests {} failed; {exhausted} of them with 503 \"referral cache exhausted\".", ranges(&failed));
    }
    let health = target.get("/health").await?;
    println!(
        "/health still answers {} {} — the pod looks healthy while referral votes fail.",
        health.status, health.body
    );
    let counter = target.metric("referral_cache_exhausted_total").await?.unwrap_or(0.0);
    let entries = target.metric("referral_cache_entries").await?.unwrap_or(0.0);
    println!("referral_cache_exhausted_total = {counter}   referral_cache_entries = {entries}");

    if exhausted == 0 {
        println!(
            "{}",
            style.bad("The bug did not reproduce: no vote hit the exhausted referral cache. Is this server running with --fixed referral? (see /version)")
        );
        return Ok(EXIT_FAILED);
    }
    if ok == 0 {
        println!("The cache was already full before this run. For a clean demo: breakroom reset vote");
    }
    println!(
        "The bug lives in crates/labs/vote/src/referral.rs (validate_with_cache). Fix: breakroom serve vote --fixed referral"
    );
    found(Finding::Reproduced(format!(
        "{exhausted} referral votes hit the exhausted referral cache ({entries} entries) while /health said ok"
    )));
    Ok(0)
}

/// Seed 000 STEP 5: the same 15 votes must all succeed.
pub async fn check(target: &Target, interval: Duration) -> Result<u8, StageError> {
    let style = Style::detect();
    println!("{}", style.heading("=== TESTING THE FIX ==="));
    let replies = referral_votes(target, interval, Some(&style)).await?;
    println!();
    let failed = failed_numbers(&replies);
    let Some(&first) = failed.first() else {
        println!(
            "{}",
            style.good(&format!("SUCCESS: all {REFERRAL_VOTES} referral votes were accepted. The fix works."))
        );
        found(Finding::Passed(format!("all {REFERRAL_VOTES} referral votes were accepted")));
        return Ok(0);
    };
    let reply = &replies[first - 1];
    println!(
        "{}",
        style.bad(&format!("FAIL: request {first} of {REFERRAL_VOTES} answered {} {}", reply.status, reply.body))
    );
    println!("{} of {REFERRAL_VOTES} referral votes failed (requests {}).", failed.len(), ranges(&failed));
    found(Finding::Failed(format!(
        "request {first} of {REFERRAL_VOTES} answered {}; {} failed",
        reply.status,
        failed.len()
    )));
    println!(
        "The bug lives in crates/labs/vote/src/referral.rs: validate_with_cache appends to a list that is never cleared. \
         Run the fix with `breakroom serve vote --fixed referral`, then `breakroom reset vote` and check again."
    );
    Ok(EXIT_FAILED)
}

/// Everything back to the pre-talk state, then proof that it is.
pub async fn reset(target: &Target, token: Option<&str>, data_dir: &std::path::Path) -> Result<u8, StageError> {
    let style = Style::detect();
    let token = admin_token(token, data_dir, "vote")?;
    let reply = target.post_admin("/admin/reset?confirm=yes", &token).await?;
    if reply.status == 401 {
        return Err(StageError(format!("The server refused the admin token: {}", reply.detail())));
    }
    if !reply.is_success() {
        return Err(StageError(format!("Reset failed with {}: {}", reply.status, reply.detail())));
    }
    println!("{}", detail_or_message(&reply));
    let votes = target.get("/votes").await?;
    let total: i64 = votes
        .json()
        .and_then(|v| v.as_object().map(|m| m.values().filter_map(|c| c["count"].as_i64()).sum()))
        .unwrap_or(-1);
    let entries = target.metric("referral_cache_entries").await?.unwrap_or(-1.0);
    let mode = target.get("/version").await?.json().and_then(|v| v["referral"].as_str().map(str::to_owned));
    let clean = total == 0 && entries == 0.0;
    let line = format!(
        "votes: {total}   referral cache entries: {entries}   referral implementation: {}",
        mode.as_deref().unwrap_or("unknown")
    );
    if clean {
        println!("{}", style.good(&format!("Ready for the next talk. {line}")));
        Ok(0)
    } else {
        println!("{}", style.bad(&format!("Reset did not leave a clean state: {line}")));
        Ok(EXIT_FAILED)
    }
}

/// A reset's `message`, or the refusal's `detail`.
fn detail_or_message(reply: &Reply) -> String {
    reply
        .json()
        .and_then(|v| v.get("message").and_then(|m| m.as_str()).map(str::to_owned))
        .unwrap_or_else(|| reply.detail())
}

/// The rehearsal of `vote/referral`: the bug reproduces, shows, the check catches it,
/// the fix passes the check, and a reset brings back the pre-talk state.
pub struct Rehearse {
    target: Target,
    admin: String,
    exhausted_before: f64,
}

impl Rehearse {
    pub fn new(target: Target, admin: String) -> Rehearse {
        Rehearse { target, admin, exhausted_before: 0.0 }
    }
}

impl Rehearsal for Rehearse {
    fn prepare(&mut self) -> Boxed<'_, Result<(), StageError>> {
        Box::pin(async move {
            reset_session(&self.target, &self.admin).await?;
            self.exhausted_before = self.target.metric("referral_cache_exhausted_total").await?.unwrap_or(0.0);
            Ok(())
        })
    }

    fn reproduce(&mut self) -> Judged<'_> {
        Box::pin(async move {
            let replies = referral_votes(&self.target, Duration::ZERO, None).await?;
            let statuses: Vec<u16> = replies.iter().map(|r| r.status).collect();
            let exhausted =
                replies[10..].iter().all(|r| r.status == 503 && r.detail().contains("referral cache exhausted"));
            let reproduced = statuses[..10].iter().all(|s| *s == 200) && exhausted;
            Ok(Judgement::new(reproduced, format!("statuses {}", compact(&statuses))))
        })
    }

    fn symptom(&mut self) -> Judged<'_> {
        Box::pin(async move {
            let now = self.target.metric("referral_cache_exhausted_total").await?.unwrap_or(0.0);
            let moved = now - self.exhausted_before;
            let health = self.target.get("/health").await?;
            // ReferralCacheExhausted fires on increase(referral_cache_exhausted_total[1m]) > 0.
            Ok(Judgement::new(
                moved > 0.0 && health.status == 200,
                format!(
                    "referral_cache_exhausted_total +{moved}, so ReferralCacheExhausted's expression holds; /health {}",
                    health.status
                ),
            ))
        })
    }

    fn check_fails(&mut self) -> Judged<'_> {
        Box::pin(async move {
            let check = referral_votes(&self.target, Duration::ZERO, None).await?;
            let failing = check.iter().filter(|r| !r.is_success()).count();
            Ok(Judgement::new(failing > 0, format!("{failing} of {REFERRAL_VOTES} referral votes refused")))
        })
    }

    fn fix(&mut self) -> Judged<'_> {
        Box::pin(async move {
            run_fix(&self.target, &self.admin, "referral").await?;
            let check = referral_votes(&self.target, Duration::ZERO, None).await?;
            let passed = check.iter().filter(|r| r.is_success()).count();
            Ok(Judgement::new(
                passed == REFERRAL_VOTES,
                format!("{passed} of {REFERRAL_VOTES} referral votes accepted"),
            ))
        })
    }

    fn reset(&mut self) -> Judged<'_> {
        Box::pin(async move {
            let target = &self.target;
            reset_session(target, &self.admin).await?;
            let votes = target.get("/votes").await?.json().unwrap_or_default();
            let total: i64 =
                votes.as_object().map(|m| m.values().filter_map(|c| c["count"].as_i64()).sum()).unwrap_or(-1);
            let entries = target.metric("referral_cache_entries").await?.unwrap_or(-1.0);
            let mode = target.get("/version").await?.json().map(|v| v["referral"].clone()).unwrap_or_default();
            Ok(Judgement::new(
                total == 0 && entries == 0.0 && mode == "buggy",
                format!("votes {total}, cache entries {entries}, referral {mode}"),
            ))
        })
    }

    fn recover(&mut self) -> Boxed<'_, ()> {
        Box::pin(async move {
            let _ = reset_session(&self.target, &self.admin).await;
        })
    }
}

/// `200×10 503×5`
fn compact(statuses: &[u16]) -> String {
    let mut parts: Vec<(u16, usize)> = Vec::new();
    for &status in statuses {
        match parts.last_mut() {
            Some((last, n)) if *last == status => *n += 1,
            _ => parts.push((status, 1)),
        }
    }
    parts.iter().map(|(s, n)| format!("{s}×{n}")).collect::<Vec<_>>().join(" ")
}
