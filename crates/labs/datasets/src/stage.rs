//! `breakroom demonstrate|check|explain|reset datasets`: the workshop's three scripts,
//! run against a local or remote server through its real endpoints.

use std::time::{Duration, Instant};

use super::{ATTENDEES, FLAGSHIP_ID, SEEDED_DOWNLOADS, attendee, reference_fix, stats_key};
use platform::lab::Boxed;
use platform::rehearsal::{Judged, Judgement, Rehearsal};
use platform::stage::{EXIT_FAILED, Finding, StageError, Style, Target, admin_token, found, reset_session, run_fix};

/// The CEO reads the dashboard as alice, the flagship's owner.
const CEO_TOKEN: &str = "alice-token";
/// Downloads made by the conference attendees during the demonstration.
const CONFERENCE_DOWNLOADS: usize = 20;

struct Researcher<'a> {
    target: &'a Target,
    token: String,
}

impl Researcher<'_> {
    async fn statistics(&self) -> Result<(serde_json::Value, Duration), StageError> {
        let started = Instant::now();
        let reply =
            self.target.get_with_token(&format!("/api/datasets/{FLAGSHIP_ID}/statistics/"), &self.token).await?;
        let took = started.elapsed();
        Ok((reply.expect_json("GET statistics")?, took))
    }

    async fn download(&self) -> Result<(), StageError> {
        let reply = self.target.post_with_token(&format!("/api/datasets/{FLAGSHIP_ID}/download/"), &self.token).await?;
        if reply.is_success() {
            Ok(())
        } else {
            Err(StageError(format!("the download answered {}: {}", reply.status, reply.detail())))
        }
    }
}

fn count(stats: &serde_json::Value, field: &str) -> i64 {
    stats[field].as_i64().unwrap_or(-1)
}

/// `cache_demonstrate_problem.py`, done through the real download endpoint and idempotent.
pub async fn demonstrate(target: &Target, token: Option<&str>, data_dir: &std::path::Path) -> Result<u8, StageError> {
    let style = Style::detect();
    println!("{}", style.heading("📊 DEMONSTRATION: CEO's Dashboard Disaster"));
    let admin = admin_token(token, data_dir, "datasets")?;
    platform::stage::post_reset(target, Some(&admin), data_dir, "datasets").await?;
    println!("Restored the seeded state: {SEEDED_DOWNLOADS} downloads of the Research Analytics Dataset.");

    let ceo = Researcher { target, token: CEO_TOKEN.into() };
    let (before, _) = ceo.statistics().await?;
    println!("9:00  The CEO opens the dashboard: {} downloads.", count(&before, "total_downloads"));
    println!("9:05  The conference starts. {ATTENDEES} attendees download the dataset {CONFERENCE_DOWNLOADS} times…");
    for i in 0..CONFERENCE_DOWNLOADS {
        let (_, _, token) = attendee(i % ATTENDEES + 1);
        Researcher { target, token }.download().await?;
    }
    let (dashboard, _) = ceo.statistics().await?;
    let truth = target
        .get_admin(&format!("/admin/datasets/{FLAGSHIP_ID}/statistics"), &admin)
        .await?
        .expect_json("GET the database's statistics")?;
    let (shown, actual) = (count(&dashboard, "total_downloads"), count(&truth, "total_downloads"));
    println!("10:00 Board meeting. The CEO presents the dashboard.\n");
    println!("{}", style.heading("📊 DISCREPANCY ANALYSIS:"));
    println!("  Dashboard shows: {shown} downloads");
    println!("  Database has: {actual} downloads");
    println!(
        "  Unique users: dashboard {} vs database {}",
        count(&dashboard, "unique_users"),
        count(&truth, "unique_users")
    );
    if shown == actual {
        println!(
            "\n{}",
            style.good("✅ The dashboard is in step with the database: downloads invalidate the cached statistics.")
        );
        found(Finding::NotReproduced(format!("the dashboard shows all {actual} downloads")));
        return Ok(0);
    }
    let missing = actual - shown;
    println!("  {}", style.bad(&format!("MISSING: {missing} downloads not shown!")));
    println!("  ERROR RATE: {:.1}% of data hidden", missing as f64 * 100.0 / actual.max(1) as f64);
    println!("\n{}", style.heading("💰 BUSINESS IMPACT:"));
    println!("  • CEO's credibility damaged in board meeting");
    println!("  • Investors questioning data accuracy");
    println!("  • Conference success not reflected in metrics");
    println!("\n{}", style.heading("🔍 ROOT CAUSE:"));
    println!("  Statistics are cached for an hour under {}", stats_key(FLAGSHIP_ID));
    println!("  and recording a download never deletes that key.");
    println!("  Look at crates/labs/datasets/src/downloads.rs: statistics, then record_download.");
    found(Finding::Reproduced(format!("the dashboard shows {shown} downloads, the database has {actual}")));
    Ok(0)
}

/// `cache_test_your_fix.py`: one more download must show up at once.
pub async fn check(target: &Target) -> Result<u8, StageError> {
    let style = Style::detect();
    println!("{}", style.heading("🧪 TESTING YOUR CACHE FIX"));
    let (before, after, first_read) = one_more_download(target).await?;
    let (_, second_read) = Researcher { target, token: CEO_TOKEN.into() }.statistics().await?;
    if after == before + 1 {
        println!("{}", style.good("✅ SUCCESS! Cache invalidation is working!"));
        println!("  • Before download: {before}");
        println!("  • After download: {after}");
        println!("  • Cache properly invalidated and refreshed");
        found(Finding::Passed(format!("one more download showed at once ({before} → {after})")));
        let (slow, fast) = (first_read.as_secs_f64() * 1000.0, second_read.as_secs_f64() * 1000.0);
        println!(
            "  (for information: recomputing took {slow:.1} ms, the cached read {fast:.1} ms: the cache is {:.1}× faster)",
            slow / fast.max(0.001)
        );
        Ok(0)
    } else {
        println!("{}", style.bad("❌ FAIL! Cache is still stale!"));
        println!("  • Expected: {}", before + 1);
        println!("  • Got: {after}");
        found(Finding::Failed(format!("the cache is still stale: expected {}, got {after}", before + 1)));
        println!("  Hints:");
        println!("  • Is the cached statistics key deleted after the audit row is recorded, in record_download?");
        println!("  • Is it exactly the key statistics() uses: {} ?", stats_key(FLAGSHIP_ID));
        println!("  • Run the fixed build to compare: breakroom serve datasets --fixed stats-cache");
        Ok(EXIT_FAILED)
    }
}

const BEST_PRACTICE: &str = "\
Best practice:
  • Invalidate on every write path that changes what the cache summarises: downloads,
    uploads, deletions, permission changes — not only the one you noticed.
  • Use the exact key the reader builds (dataset_stats_{id}). One helper that builds it
    (stats_key) keeps the writer and the reader from drifting apart.
  • Or version the key (dataset_stats_{id}_v{version}) and bump the version on change:
    old entries stop being read and simply expire.
  • A TTL bounds how stale data can get; it is not an invalidation strategy.

\"There are only two hard things in Computer Science: cache invalidation and naming things.\"
";

/// `cache_fixed_version.py`: the reference fix as compiled into this binary.
pub fn explain() -> String {
    format!(
        "The reference fix (crates/labs/datasets/src/downloads.rs, as compiled into this binary):\n\n{}\n{BEST_PRACTICE}",
        reference_fix()
    )
}

pub async fn reset(target: &Target, token: Option<&str>, data_dir: &std::path::Path) -> Result<u8, StageError> {
    platform::stage::reset_lab(target, token, data_dir, "datasets").await
}

/// Downloads and reads twice: (before, after) as the dashboard shows them around the
/// second download. The first download makes `before` fresh on a fixed server even
/// when the cache still held statistics from before the fix (a Redis kept through a
/// restart, a fix switched on at runtime), so the check judges the code, not history.
async fn one_more_download(target: &Target) -> Result<(i64, i64, Duration), StageError> {
    let ceo = Researcher { target, token: CEO_TOKEN.into() };
    ceo.download().await?;
    let before = count(&ceo.statistics().await?.0, "total_downloads");
    ceo.download().await?;
    let (after, recompute) = ceo.statistics().await?;
    Ok((before, count(&after, "total_downloads"), recompute))
}

/// The rehearsal of `datasets/stats-cache`: twenty downloads the dashboard does not
/// show, a check that catches it, the fix and a reset that brings the bug back.
pub struct Rehearse {
    target: Target,
    admin: String,
    shown: i64,
    actual: i64,
}

impl Rehearse {
    pub fn new(target: Target, admin: String) -> Rehearse {
        Rehearse { target, admin, shown: 0, actual: 0 }
    }

    fn ceo(&self) -> Researcher<'_> {
        Researcher { target: &self.target, token: CEO_TOKEN.into() }
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
            let target = &self.target;
            self.ceo().statistics().await?;
            for i in 0..CONFERENCE_DOWNLOADS {
                let (_, _, token) = attendee(i % ATTENDEES + 1);
                Researcher { target, token }.download().await?;
            }
            let shown = count(&self.ceo().statistics().await?.0, "total_downloads");
            let truth = target
                .get_admin(&format!("/admin/datasets/{FLAGSHIP_ID}/statistics"), &self.admin)
                .await?
                .expect_json("database statistics")?;
            let actual = count(&truth, "total_downloads");
            (self.shown, self.actual) = (shown, actual);
            Ok(Judgement::new(shown == 15 && actual == 35, format!("dashboard {shown}, database {actual}")))
        })
    }

    fn symptom(&mut self) -> Judged<'_> {
        Box::pin(async move {
            let hidden = (self.actual - self.shown) as f64 * 100.0 / self.actual.max(1) as f64;
            Ok(Judgement::new(hidden > 50.0, format!("{hidden:.1}% of downloads hidden for up to an hour")))
        })
    }

    fn check_fails(&mut self) -> Judged<'_> {
        Box::pin(async move {
            let (before, after, _) = one_more_download(&self.target).await?;
            Ok(Judgement::new(after != before + 1, format!("before {before}, after {after}")))
        })
    }

    fn fix(&mut self) -> Judged<'_> {
        Box::pin(async move {
            run_fix(&self.target, &self.admin, "stats-cache").await?;
            let (before, after, _) = one_more_download(&self.target).await?;
            Ok(Judgement::new(after == before + 1, format!("before {before}, after {after}")))
        })
    }

    fn reset(&mut self) -> Judged<'_> {
        Box::pin(async move {
            let target = &self.target;
            reset_session(target, &self.admin).await?;
            let dashboard = count(&self.ceo().statistics().await?.0, "total_downloads");
            let (before, after, _) = one_more_download(target).await?;
            reset_session(target, &self.admin).await?;
            Ok(Judgement::new(
                dashboard == SEEDED_DOWNLOADS as i64 && after == before,
                format!("dashboard {dashboard}, and stale again after a download (the buggy build is back)"),
            ))
        })
    }

    fn recover(&mut self) -> Boxed<'_, ()> {
        Box::pin(async move {
            let _ = reset_session(&self.target, &self.admin).await;
        })
    }
}
