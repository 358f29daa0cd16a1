//! `breakroom demonstrate|check|reset datasets/n-plus-one`: the list before and after
//! the conference's thousand uploads, and what each request cost the database.

use std::time::{Duration, Instant};

use platform::lab::Boxed;
use platform::rehearsal::{Judged, Judgement, Rehearsal};
use platform::stage::{EXIT_FAILED, StageError, Style, Target, admin_call, reset_session, run_fix};

/// Who reads the list: any workshop user.
const READER_TOKEN: &str = "bob-token";
/// The conference's uploads.
const UPLOADS: u32 = 1_000;
/// The ids of uploaded datasets start with this.
const UPLOAD_PREFIX: &str = "cccccccc-";

/// One list request and what it cost.
struct Listed {
    rows: usize,
    count: i64,
    uploads: usize,
    queries: f64,
    took: Duration,
}

/// `GET /api/datasets/` (with `page_size` when given); the queries are the growth of
/// `datasets_list_queries_sum` across it.
async fn list(target: &Target, page_size: Option<u32>) -> Result<Listed, StageError> {
    let before = target.metric("datasets_list_queries_sum").await?.unwrap_or(0.0);
    let path = match page_size {
        Some(n) => format!("/api/datasets/?page_size={n}"),
        None => "/api/datasets/".to_string(),
    };
    let started = Instant::now();
    let reply = target.get_with_token(&path, READER_TOKEN).await?;
    let took = started.elapsed();
    let body = reply.expect_json("GET /api/datasets/")?;
    let after = target.metric("datasets_list_queries_sum").await?.unwrap_or(0.0);
    let results = body["results"].as_array().cloned().unwrap_or_default();
    let uploads = results.iter().filter(|r| r["id"].as_str().is_some_and(|id| id.starts_with(UPLOAD_PREFIX))).count();
    Ok(Listed {
        rows: results.len(),
        count: body["count"].as_i64().unwrap_or(-1),
        uploads,
        queries: after - before,
        took,
    })
}

fn ms(took: Duration) -> String {
    format!("{:.0} ms", took.as_secs_f64() * 1000.0)
}

async fn import(target: &Target, token: &str) -> Result<i64, StageError> {
    let reply = admin_call(target, &format!("/admin/datasets/import?count={UPLOADS}"), token, None).await?;
    Ok(reply.json().and_then(|v| v["datasets"].as_i64()).unwrap_or(-1))
}

/// The seeded list, the uploads, the same list again: the queries follow the rows.
pub async fn demonstrate(target: &Target, token: &str) -> Result<u8, StageError> {
    let style = Style::detect();
    println!("{}", style.heading("=== DEMONSTRATING THE N+1 QUERIES ==="));
    reset_session(target, token).await?;
    let before = list(target, None).await?;
    println!("The list on the workshop's data: {} rows, {} queries, {}.", before.rows, before.queries, ms(before.took));
    let datasets = import(target, token).await?;
    println!(
        "The conference uploads {UPLOADS} datasets (POST /admin/datasets/import?count={UPLOADS}): {datasets} now."
    );
    let after = list(target, None).await?;
    println!(
        "The same list, the same single reader: {} rows of {}, {} queries, {}.",
        after.rows,
        after.count,
        after.queries,
        ms(after.took)
    );
    println!();
    println!("{}", style.heading("--- What happened ---"));
    let requests = target.metric("datasets_list_queries_count").await?.unwrap_or(0.0);
    let sum = target.metric("datasets_list_queries_sum").await?.unwrap_or(0.0);
    println!("datasets_list_queries: {sum} queries in {requests} list requests since the server started.");
    if after.queries < 2.0 * after.rows as f64 {
        println!(
            "{}",
            style.bad("The bug did not reproduce: the queries did not grow with the rows. Is this server running with --fixed n-plus-one?")
        );
        return Ok(EXIT_FAILED);
    }
    println!(
        "{}",
        style.bad(&format!(
            "Queries per request grew from {} to {} with the data, not the load: two more for every row.",
            before.queries, after.queries
        ))
    );
    println!(
        "The bug lives in crates/labs/datasets/src/listing.rs (page_row_by_row). Fix: breakroom serve datasets --fixed n-plus-one"
    );
    platform::stage::found(platform::stage::Finding::Reproduced(format!(
        "queries per list request grew from {} to {} with the rows",
        before.queries, after.queries
    )));
    Ok(0)
}

/// The check's verdict: `Ok(what passed)` or `Err(what failed)`.
async fn probe(target: &Target) -> Result<Result<String, String>, StageError> {
    let one = list(target, Some(1)).await?;
    let all = list(target, None).await?;
    if all.rows < 2 {
        return Err(StageError(format!("the list shows {} datasets: the check needs two or more", all.rows)));
    }
    if all.queries <= one.queries {
        Ok(Ok(format!("a page of 1 row cost {} queries and a page of {} rows {}", one.queries, all.rows, all.queries)))
    } else {
        Ok(Err(format!(
            "a page of 1 row cost {} queries and a page of {} rows {}: the queries grow with the rows",
            one.queries, all.rows, all.queries
        )))
    }
}

/// A page of every row must cost no more queries than a page of one.
pub async fn check(target: &Target) -> Result<u8, StageError> {
    let outcome = probe(target).await?;
    Ok(platform::stage::report_check(
        outcome,
        "Read crates/labs/datasets/src/listing.rs (page_row_by_row). Run the fix with \
         `breakroom serve datasets --fixed n-plus-one` and check again.",
    ))
}

/// What a reset left: `(uploads still listed, the list's implementation)`.
async fn after_reset(target: &Target, token: &str) -> Result<(usize, String), StageError> {
    let listed = list(target, None).await?;
    Ok((listed.uploads, target.bug_mode("n-plus-one", token).await?))
}

/// The seeded state back, the uploads gone, then proof.
pub async fn reset(target: &Target, token: &str) -> Result<u8, StageError> {
    let reply = reset_session(target, token).await?;
    println!("{}", reply.message());
    let (uploads, mode) = after_reset(target, token).await?;
    let state = format!("uploads listed: {uploads}   n-plus-one implementation: {mode}");
    Ok(platform::stage::report_reset(uploads == 0, "workshop", &state))
}

/// The rehearsal of `datasets/n-plus-one`.
pub struct Rehearse {
    target: Target,
    admin: String,
    before: Option<Listed>,
    after: Option<Listed>,
}

impl Rehearse {
    pub fn new(target: Target, admin: String) -> Rehearse {
        Rehearse { target, admin, before: None, after: None }
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
            let before = list(&self.target, None).await?;
            import(&self.target, &self.admin).await?;
            let after = list(&self.target, None).await?;
            let detail = format!(
                "{} rows: {} queries; after {UPLOADS} uploads, {} rows: {} queries",
                before.rows, before.queries, after.rows, after.queries
            );
            let grew = after.rows > before.rows && after.queries >= 2.0 * after.rows as f64;
            self.before = Some(before);
            self.after = Some(after);
            Ok(Judgement::new(grew, detail))
        })
    }

    fn symptom(&mut self) -> Judged<'_> {
        Box::pin(async move {
            let sum = self.target.metric("datasets_list_queries_sum").await?.unwrap_or(0.0);
            let count = self.target.metric("datasets_list_queries_count").await?.unwrap_or(0.0);
            let mean = if count > 0.0 { sum / count } else { 0.0 };
            let (Some(before), Some(after)) = (&self.before, &self.after) else {
                return Ok(Judgement::not_applicable("the trigger did not run"));
            };
            // DatasetsListQueriesPerRequestHigh fires on more than 20 queries a request.
            Ok(Judgement::new(
                mean > 20.0,
                format!(
                    "{mean:.0} queries a list request on average (datasets_list_queries); the list took {} after the uploads, {} before",
                    ms(after.took),
                    ms(before.took)
                ),
            ))
        })
    }

    fn check_fails(&mut self) -> Judged<'_> {
        Box::pin(async move { Ok(Judgement::of_check(probe(&self.target).await?, false)) })
    }

    fn fix(&mut self) -> Judged<'_> {
        Box::pin(async move {
            run_fix(&self.target, &self.admin, "n-plus-one").await?;
            Ok(Judgement::of_check(probe(&self.target).await?, true))
        })
    }

    fn reset(&mut self) -> Judged<'_> {
        Box::pin(async move {
            reset_session(&self.target, &self.admin).await?;
            let (uploads, mode) = after_reset(&self.target, &self.admin).await?;
            Ok(Judgement::new(uploads == 0 && mode == "buggy", format!("uploads listed {uploads}, n-plus-one {mode}")))
        })
    }

    fn recover(&mut self) -> Boxed<'_, ()> {
        Box::pin(async move {
            let _ = reset_session(&self.target, &self.admin).await;
        })
    }
}
