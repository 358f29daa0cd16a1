//! The Black Friday timeline (seed 003): 30 minutes of shoppers on the shop's three
//! services, with the two real faults applied at their minutes over the admin API —
//! `DROP INDEX` at 15, checkout's pool cut at 20 — and undone at the end, whatever
//! ends the run (its last minute, an error, Ctrl-C, `stop-demo`).
//!
//! The driver reaches the shop only over HTTP. The minutes are labels and the
//! schedule of the two actions: every failure the audience sees comes from those
//! actions, never from the minute.

use std::sync::Arc;
use std::sync::Mutex;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use clap::Args;
use serde::Serialize;
use tokio::time::Instant;

use driver::ShopUrls;
use driver::engine::{self, Model, Run};
use driver::profile;
use driver::record::Snapshot;
use driver::shape::{Phase, Shape};
use platform::stage::StageError;

pub use crate::loadgen::DemoStatus;
use crate::remote::Reading;
pub use crate::remote::Shop;
use crate::rush::{Opening, PeakReport, Rush};

#[path = "timeline_storm.rs"]
mod storm;

/// The timeline's length in the seed, in minutes.
pub const TIMELINE_MINUTES: f64 = 30.0;
/// Journeys per minute at the peak when the catalog cannot be measured. By default the
/// peak is sized to the database at hand ([`Shop::auto_peak_rpm`]): the seed's 120 is
/// too gentle to make a 2-core database queue on its scans.
pub const FALLBACK_PEAK_RPM: f64 = 300.0;
/// The ramp starts at a quarter of the peak (the seed's 30 → 120).
const RAMP_START_SHARE: f64 = 0.25;
/// Minutes of the 30-minute timeline at which things happen.
const PEAK_MINUTE: f64 = 10.0;
const DROP_MINUTE: f64 = 15.0;
const SHRINK_MINUTE: f64 = 20.0;
const ALERT_MINUTE: f64 = 22.0;
const PEAK_FAILURE_MINUTE: f64 = 25.0;
/// The Flow Alert's condition: checkout error rate and p95.
pub const ALERT_ERROR_RATE: f64 = 0.20;
pub const ALERT_P95_MS: f64 = 2000.0;
/// The step whose figures are the checkout's.
pub const CHECKOUT_STEP: &str = "checkout /orders/create";
pub const CATALOG_STEP: &str = "catalog /products";

/// The phase of a minute of the 30-minute timeline.
pub fn phase_at_minute(minute: f64) -> &'static str {
    match minute {
        m if m < PEAK_MINUTE => "ramp_up",
        m if m < DROP_MINUTE => "peak",
        m if m < SHRINK_MINUTE => "degradation",
        m if m < 25.0 => "critical",
        m if m < TIMELINE_MINUTES => "peak_failure",
        _ => "completed",
    }
}

/// The timeline as `demonstrate shop`, `check shop` and the loadgen service take it.
#[derive(Debug, Clone, Args)]
pub struct TimelineArgs {
    #[command(flatten)]
    pub urls: ShopUrls,
    /// shop: compress the timeline K times (30 minutes → 3 at 10); rates stay per real minute
    #[arg(long, default_value_t = 1.0)]
    pub speedup: f64,
    /// shop: shopper journeys per minute at the peak (default: sized to the database's measured scan speed)
    #[arg(long)]
    pub peak_rpm: Option<f64>,
    /// shop: the timeline's length; its minutes scale with it
    #[arg(long, default_value_t = TIMELINE_MINUTES)]
    pub duration_minutes: f64,
    /// shop: the pool size checkout is cut to at minute 20 (the story's DB_MAX_CONNECTIONS)
    #[arg(long, default_value_t = 20)]
    pub pool_size: u32,
    /// shop: the acquire timeout that comes with it, in ms
    #[arg(long, default_value_t = 5000)]
    pub pool_timeout_ms: u64,
    /// shop demonstrate: start without waiting for Enter
    #[arg(long)]
    pub yes: bool,
    /// shop demonstrate: a Prometheus to ask whether ShopCheckoutDegraded fires
    #[arg(long)]
    pub prometheus: Option<String>,
    /// shop check: how long the burst at peak rate lasts, in seconds
    #[arg(long, default_value_t = 20)]
    pub check_seconds: u64,
    /// shop demonstrate: add the retry storm's phase — the payment processor slows at minute 10
    /// to half the checkouts the peak asks for, is half back at 12, normal at 15 (checkout's
    /// retries do the rest)
    #[arg(long)]
    pub retry_storm: bool,
    /// shop/retry-storm: how long one authorization takes the slowed payment processor, in ms
    /// (its one worker completes 1000/this a second; the peak is twice that)
    #[arg(long, default_value_t = crate::stage_retry::TALK_WORK_MS)]
    pub payment_work_ms: u32,
}

/// What a timeline run is set to.
#[derive(Debug, Clone, Serialize)]
pub struct Settings {
    pub speedup: f64,
    pub peak_rpm: f64,
    pub duration_minutes: f64,
    pub pool_size: u32,
    pub pool_timeout_ms: u64,
    /// With the retry storm's phase (minutes 10 to 15).
    pub retry_storm: bool,
}

impl Settings {
    pub fn validate(&self) -> Result<(), StageError> {
        let fail = |m: &str| Err(StageError(m.to_string()));
        if !(self.speedup.is_finite() && (0.1..=1000.0).contains(&self.speedup)) {
            return fail("--speedup must be between 0.1 and 1000");
        }
        if !(self.peak_rpm.is_finite() && (1.0..=100_000.0).contains(&self.peak_rpm)) {
            return fail("--peak-rpm must be between 1 and 100000 journeys per minute");
        }
        if !(self.duration_minutes.is_finite() && (5.0..=240.0).contains(&self.duration_minutes)) {
            return fail("--duration-minutes must be between 5 and 240 (shorter leaves no room for the faults)");
        }
        if !(1..=200).contains(&self.pool_size) || !(50..=60_000).contains(&self.pool_timeout_ms) {
            return fail("--pool-size must be 1 to 200 and --pool-timeout-ms 50 to 60000");
        }
        Ok(())
    }

    /// Real seconds per timeline minute.
    pub fn minute_seconds(&self) -> f64 {
        60.0 / self.speedup
    }

    /// The acquire timeout the pool is cut to: the story's, or — when a timeline minute
    /// is shorter (60×: 1 s) — one minute, so the clock compresses the wait too.
    pub fn acquire_timeout_ms(&self) -> u64 {
        self.pool_timeout_ms.min((self.minute_seconds() * 1000.0).round() as u64).max(50)
    }

    /// The alert's latency threshold, compressed with the acquire timeout (2 s of the
    /// story's 5 s wait: 400 ms of a 1 s one).
    pub fn alert_p95_ms(&self) -> f64 {
        ALERT_P95_MS * self.acquire_timeout_ms() as f64 / self.pool_timeout_ms as f64
    }

    /// Whether the clock compresses the pool's wait and the alert's threshold.
    pub fn compressed(&self) -> bool {
        self.acquire_timeout_ms() < self.pool_timeout_ms
    }

    /// A minute of the 30-minute story on this timeline's scale.
    fn scaled(&self, minute: f64) -> f64 {
        minute * self.duration_minutes / TIMELINE_MINUTES
    }

    /// Journeys per second over the run: the ramp, then the peak.
    pub fn shape(&self) -> Shape {
        let peak = self.peak_rpm / 60.0;
        let seconds = |minutes: f64| Duration::from_secs_f64(minutes * self.minute_seconds());
        let ramp = self.scaled(PEAK_MINUTE);
        Shape {
            phases: vec![
                Phase { duration: seconds(ramp), from: peak * RAMP_START_SHARE, to: peak },
                Phase { duration: seconds(self.duration_minutes - ramp), from: peak, to: peak },
            ],
        }
    }

    /// The phase name of minute `m` of this timeline.
    pub fn phase(&self, m: f64) -> &'static str {
        phase_at_minute(m * TIMELINE_MINUTES / self.duration_minutes)
    }
}

/// One minute of the timeline, as printed and logged.
#[derive(Debug, Clone, Serialize)]
pub struct MinuteReport {
    pub minute: u32,
    pub total_minutes: u32,
    pub phase: &'static str,
    pub rpm: f64,
    pub requests_sent: u64,
    pub errors: u64,
    pub error_rate: f64,
    pub minute_requests: u64,
    pub minute_errors: u64,
    pub checkouts: u64,
    pub checkouts_failed: u64,
    pub checkout_error_rate: f64,
    pub checkout_p95_ms: f64,
    pub catalog_p95_ms: f64,
    pub revenue_lost: f64,
    /// The doorbuster rush's buyers a minute (0 before the pool cut).
    pub rush_rpm: f64,
}

/// What the timeline tells whoever runs it.
#[derive(Debug, Clone)]
pub enum Event {
    Minute(MinuteReport),
    Milestone(String),
    /// At the alert minute: whether the alert's condition holds on the last minute's figures.
    AlertCondition {
        holds: bool,
        detail: String,
    },
    Trouble(String),
    /// At the end: the peak failure's figures (minute 25 to the end).
    Peak(PeakReport),
}

/// Shared state of a run, for `GET /admin/demo-status`.
#[derive(Debug, Clone, Default)]
struct Progress {
    phase: &'static str,
    last_error_rate: f64,
    checkouts_attempted: u64,
    checkouts_failed: u64,
    troubles: Vec<String>,
}

/// A timeline in progress.
pub struct Timeline {
    pub settings: Settings,
    shop: Shop,
    run: Arc<Run>,
    started_at: SystemTime,
    started: Instant,
    progress: Mutex<Progress>,
    running: AtomicBool,
    order_value: f64,
    products: u64,
    /// The database's full scans a second side by side, measured before the run.
    scans_per_second: Option<f64>,
    rush: Mutex<Option<Rush>>,
}

impl Timeline {
    /// Prepares a run (reads the catalog's size and the order value); traffic starts with [`Timeline::run`].
    pub async fn prepare(settings: Settings, shop: Shop) -> Result<Arc<Timeline>, StageError> {
        settings.validate()?;
        let products = shop.products().await?;
        let order_value = shop.order_value().await;
        let scans_per_second = match shop.scan_cost().await {
            Ok(cost) => cost["scans_per_second"].as_f64().filter(|s| *s > 0.0),
            Err(error) => {
                tracing::warn!(%error, "scan cost not measured; the rush is sized from checkout's reservations alone");
                None
            }
        };
        let profile =
            profile::blackfriday(&shop.urls.catalog_url, &shop.urls.cart_url, &shop.urls.checkout_url, products);
        let run = Arc::new(Run::new(profile, shop.urls.catalog_url.clone(), None, Duration::from_secs(30), Vec::new()));
        Ok(Arc::new(Timeline {
            settings,
            shop,
            run,
            started_at: SystemTime::now(),
            started: Instant::now(),
            progress: Mutex::new(Progress { phase: "ramp_up", ..Progress::default() }),
            running: AtomicBool::new(false),
            order_value,
            products,
            scans_per_second,
            rush: Mutex::new(None),
        }))
    }

    /// Ends the run early; cleanup still runs.
    pub fn stop(&self) {
        self.run.stop.cancel();
    }

    pub fn is_running(&self) -> bool {
        self.running.load(Ordering::Acquire)
    }

    pub fn start_timestamp(&self) -> u64 {
        self.started_at.duration_since(UNIX_EPOCH).map(|d| d.as_secs()).unwrap_or(0)
    }

    /// `GET /admin/demo-status`
    pub fn status(&self) -> DemoStatus {
        let elapsed = self.run.elapsed().as_secs_f64();
        let snapshot = self.snapshot();
        let progress = self.progress.lock().unwrap_or_else(|p| p.into_inner()).clone();
        let target = *self.run.target_rps.lock().unwrap_or_else(|p| p.into_inner());
        let checkouts = snapshot.steps.get(CHECKOUT_STEP);
        DemoStatus {
            running: self.is_running(),
            elapsed_minutes: ((elapsed / self.settings.minute_seconds()) * 100.0).round() / 100.0,
            elapsed_seconds: (elapsed * 10.0).round() / 10.0,
            current_rpm: (target * 600.0).round() / 10.0,
            phase: progress.phase.to_string(),
            requests_sent: snapshot.requests,
            errors: snapshot.errors,
            current_error_rate: (progress.last_error_rate * 1000.0).round() / 1000.0,
            checkouts_attempted: checkouts.map_or(0, |s| s.requests),
            checkouts_failed: checkouts.map_or(0, |s| s.errors),
            start_timestamp: Some(self.start_timestamp()),
            start_time_iso: Some(platform::clock::rfc3339(self.started_at)),
            speedup: Some(self.settings.speedup),
            peak_rpm: Some(self.settings.peak_rpm),
            duration_minutes: Some(self.settings.duration_minutes),
            troubles: progress.troubles,
        }
    }

    fn snapshot(&self) -> Snapshot {
        let target = *self.run.target_rps.lock().unwrap_or_else(|p| p.into_inner());
        self.run.recorder.snapshot("blackfriday", "open", self.run.elapsed(), target)
    }

    /// Runs the timeline to its end (or until stopped), then cleans up. Every event
    /// goes to `observer` as it happens; returns the whole run's figures.
    pub async fn run(self: &Arc<Self>, observer: &mut (dyn FnMut(Event) + Send)) -> Snapshot {
        // Troubles are kept for the status too (at most 20: the first are the telling ones).
        let observer = &mut |event: Event| {
            if let Event::Trouble(text) = &event {
                let mut progress = self.progress.lock().unwrap_or_else(|p| p.into_inner());
                if progress.troubles.len() < 20 {
                    progress.troubles.push(text.clone());
                }
            }
            observer(event)
        };
        self.running.store(true, Ordering::Release);
        let settings = &self.settings;
        tracing::info!(
            scenario = "blackfriday",
            peak_rpm = settings.peak_rpm,
            duration_minutes = settings.duration_minutes,
            speedup = settings.speedup,
            "black_friday_traffic_started"
        );
        let model = Model::Open { shape: settings.shape(), max_in_flight: 20_000 };
        let engine = tokio::spawn(engine::drive(self.run.clone(), model));
        self.walk(observer).await;
        self.run.stop.cancel();
        let rush = self.rush.lock().unwrap_or_else(|p| p.into_inner()).take();
        if let Some(rush) = rush {
            let metered = rush.finish().await;
            tracing::info!(
                placed_rate = metered.placed_rate,
                attempted_rate = metered.attempted_rate,
                adjustments = metered.adjustments,
                "doorbuster_rush_finished"
            );
        }
        let _ = engine.await;
        observer(Event::Milestone("Cleanup: stopping traffic, restoring indexes and the pool".into()));
        match self.shop.restore().await {
            Ok(done) => observer(Event::Milestone(format!("Cleanup done: {done}"))),
            Err(error) => observer(Event::Trouble(format!("Cleanup failed: {error} — run `breakroom reset shop`"))),
        }
        let snapshot = self.snapshot();
        tracing::info!(
            requests_sent = snapshot.requests,
            errors = snapshot.errors,
            error_rate = snapshot.error_rate,
            "black_friday_traffic_completed"
        );
        self.progress.lock().unwrap_or_else(|p| p.into_inner()).phase = "completed";
        self.running.store(false, Ordering::Release);
        snapshot
    }

    /// Minute by minute: the actions at their minutes, a report at the end of each.
    async fn walk(&self, observer: &mut (dyn FnMut(Event) + Send)) {
        let settings = &self.settings;
        let total = settings.duration_minutes.round().max(1.0) as u32;
        let at = |minute: f64| settings.scaled(minute).round() as u32;
        let (peak, drop, shrink) = (at(PEAK_MINUTE), at(DROP_MINUTE), at(SHRINK_MINUTE).max(at(DROP_MINUTE)));
        // Judged on a whole minute after the pool was cut, however short the timeline.
        let alert = at(ALERT_MINUTE).max(shrink + 1).min(total);
        let peak_failure = at(PEAK_FAILURE_MINUTE).max(alert).min(total.saturating_sub(1));
        let start = self.started.max(Instant::now());
        // The counts at the start stand in for those at the DROP INDEX if those cannot be read.
        let first = self.shop.steady_reading().await.ok();
        let (mut dropped, mut dropped_scans, mut peak_from) = (None, None, None);
        let storm = settings.storm_minutes();
        let (mut storm_from, mut storm_rate) = (None, None);
        for minute in 0..total {
            if let Some([slow, half, back]) = storm {
                if minute + 1 == slow {
                    storm_from = self.shop.steady_reading().await.ok();
                }
                if minute == slow {
                    storm_rate = self.slow_payment(minute, storm_from, observer).await;
                }
                if let Some(rate) = storm_rate.filter(|_| minute == half) {
                    storm_from = self.payment_half_back(minute, rate, observer).await;
                }
                if storm_rate.is_some() && minute == back {
                    self.payment_back(minute, storm_from, observer).await;
                }
            }
            if minute == drop {
                observer(Event::Milestone(format!(
                    "Minute {minute}: degradation starting — dropping the catalog indexes"
                )));
                self.run.later_mix.store(true, Ordering::Relaxed);
                dropped = self.shop.steady_reading().await.ok().or(first);
                dropped_scans = self.shop.catalog_scans().await.ok().map(|n| (Instant::now(), n));
                match self.shop.drop_indexes().await {
                    Ok(done) => observer(Event::Milestone(done)),
                    Err(error) => observer(Event::Trouble(format!("Could not drop the indexes: {error}"))),
                }
            }
            if minute == shrink {
                self.cut_the_pool(minute, dropped, self.spare_scans(dropped_scans).await, start, observer).await;
            }
            if minute == peak_failure {
                self.run.mark.take("blackfriday", self.run.elapsed(), 0.0);
                peak_from = self.shop.steady_reading().await.ok();
            }
            let due = start + Duration::from_secs_f64(f64::from(minute + 1) * settings.minute_seconds());
            tokio::select! {
                _ = self.run.stop.cancelled() => return,
                _ = tokio::time::sleep_until(due) => {}
            }
            let report = self.report(minute + 1, total);
            if minute + 1 == peak {
                observer(Event::Milestone(format!("Peak reached: {:.0} journeys a minute", settings.peak_rpm)));
            }
            observer(Event::Minute(report));
            if minute + 1 == alert {
                observer(self.alert_condition());
            }
        }
        if let Some(from) = peak_from {
            observer(Event::Peak(self.peak_report(from).await));
        }
    }

    /// The database's full scans a second beside the shoppers' listings since the DROP
    /// INDEX (`since`: when and how many the catalog had run then).
    async fn spare_scans(&self, since: Option<(Instant, f64)>) -> Option<f64> {
        let (at, before) = since?;
        let now = self.shop.catalog_scans().await.ok()?;
        let seconds = at.elapsed().as_secs_f64();
        (seconds > 0.0).then(|| self.scans_per_second.map(|total| total - (now - before) / seconds))?
    }

    /// Minute 20: checkout's pool cut, and the doorbusters open.
    async fn cut_the_pool(
        &self,
        minute: u32,
        dropped: Option<Reading>,
        spare_scans: Option<f64>,
        start: Instant,
        observer: &mut (dyn FnMut(Event) + Send),
    ) {
        let settings = &self.settings;
        let timeout_ms = settings.acquire_timeout_ms();
        observer(Event::Milestone(format!(
            "Minute {minute}: pool exhaustion beginning — cutting checkout's pool to {} connections",
            settings.pool_size
        )));
        let before = match (dropped, self.shop.steady_reading().await) {
            (Some(dropped), Ok(now)) => Ok(now.since(&dropped)),
            (None, _) => Err("its counts at the DROP INDEX could not be read".to_string()),
            (_, Err(error)) => Err(error.to_string()),
        };
        match self.shop.shrink_pool(settings.pool_size, timeout_ms).await {
            Ok(done) if settings.compressed() => observer(Event::Milestone(format!(
                "{done} (the story's {} ms, compressed with the clock)",
                settings.pool_timeout_ms
            ))),
            Ok(done) => observer(Event::Milestone(done)),
            Err(error) => {
                observer(Event::Trouble(format!("Could not resize checkout's pool: {error}")));
                return;
            }
        }
        let before = match before {
            Ok(before) => before,
            Err(error) => {
                observer(Event::Trouble(format!("Could not read checkout's /metrics ({error}): no doorbuster rush")));
                return;
            }
        };
        self.run.mark.take("blackfriday", self.run.elapsed(), 0.0);
        let end = start + Duration::from_secs_f64(settings.duration_minutes * settings.minute_seconds());
        let opening = Opening {
            products: self.products,
            pool_size: settings.pool_size,
            acquire_timeout: Duration::from_millis(timeout_ms),
            before,
            spare_scans,
            minute: Duration::from_secs_f64(settings.minute_seconds()),
            remaining: end.saturating_duration_since(Instant::now()),
        };
        let rush = Rush::start(&self.run, self.shop.clone(), opening);
        observer(Event::Milestone(format!("Minute {minute}: {}", rush.describe())));
        *self.rush.lock().unwrap_or_else(|p| p.into_inner()) = Some(rush);
    }

    fn with_rush<T>(&self, f: impl FnOnce(&Rush) -> T) -> Option<T> {
        self.rush.lock().unwrap_or_else(|p| p.into_inner()).as_ref().map(f)
    }

    /// The alert's condition on every checkout since the pool was cut.
    fn alert_condition(&self) -> Event {
        let since = self.run.mark.snapshot("blackfriday", "open", self.run.elapsed(), 0.0);
        let checkout = since.steps.get(CHECKOUT_STEP);
        let (checkouts, failed) = checkout.map_or((0, 0), |s| (s.requests, s.errors));
        let error_rate = if checkouts == 0 { 0.0 } else { failed as f64 / checkouts as f64 };
        let p95 = checkout.map_or(0.0, |s| s.latency_ms.p95);
        let threshold = self.settings.alert_p95_ms();
        let compressed = if self.settings.compressed() { " — compressed with the clock" } else { "" };
        let top_up = self.with_rush(Rush::describe_top_up).unwrap_or_default();
        Event::AlertCondition {
            holds: error_rate > ALERT_ERROR_RATE && p95 > threshold,
            detail: format!(
                "since the pool cut: checkout errors {:.1}% of {checkouts} (alert > {:.0}%), \
                 checkout p95 {p95:.0} ms (alert > {threshold:.0} ms{compressed}){top_up}",
                error_rate * 100.0,
                ALERT_ERROR_RATE * 100.0,
            ),
        }
    }

    /// The peak failure, from the timeline's figures since its minute and checkout's counters.
    async fn peak_report(&self, from: Reading) -> PeakReport {
        let since = self.run.mark.snapshot("blackfriday", "open", self.run.elapsed(), 0.0);
        let checkout = since.steps.get(CHECKOUT_STEP);
        let (checkouts, failed) = checkout.map_or((0, 0), |s| (s.requests, s.errors));
        let failures_by_reason =
            self.shop.reading().await.map(|now| now.since(&from).failures_by_reason()).unwrap_or_default();
        PeakReport {
            checkouts,
            failed,
            error_rate: if checkouts == 0 { 0.0 } else { failed as f64 / checkouts as f64 },
            p95_ms: checkout.map_or(0.0, |s| s.latency_ms.p95),
            failures_by_reason,
        }
    }

    /// The minute just ended, from the window recorder; logged as `demo_progress`.
    fn report(&self, minute: u32, total: u32) -> MinuteReport {
        let target = *self.run.target_rps.lock().unwrap_or_else(|p| p.into_inner());
        let window = self.run.window.take("blackfriday", self.run.elapsed(), target);
        let all = self.snapshot();
        let checkout = window.steps.get(CHECKOUT_STEP);
        let (checkouts, failed) = checkout.map_or((0, 0), |s| (s.requests, s.errors));
        let phase = self.settings.phase(f64::from(minute) - 0.5);
        let report = MinuteReport {
            minute,
            total_minutes: total,
            phase,
            rpm: (self.settings.shape().rate_at(self.run.elapsed().as_secs_f64().max(0.0)) * 60.0).round(),
            requests_sent: all.requests,
            errors: all.errors,
            error_rate: all.error_rate,
            minute_requests: window.requests,
            minute_errors: window.errors,
            checkouts,
            checkouts_failed: failed,
            checkout_error_rate: if checkouts == 0 { 0.0 } else { failed as f64 / checkouts as f64 },
            checkout_p95_ms: checkout.map_or(0.0, |s| s.latency_ms.p95),
            catalog_p95_ms: window.steps.get(CATALOG_STEP).map_or(0.0, |s| s.latency_ms.p95),
            revenue_lost: failed as f64 * self.order_value,
            rush_rpm: self.with_rush(|r| (r.rps() * 60.0).round()).unwrap_or(0.0),
        };
        {
            let mut progress = self.progress.lock().unwrap_or_else(|p| p.into_inner());
            progress.phase = phase;
            progress.last_error_rate =
                if window.requests == 0 { 0.0 } else { window.errors as f64 / window.requests as f64 };
            progress.checkouts_attempted += checkouts;
            progress.checkouts_failed += failed;
        }
        tracing::info!(
            minute,
            phase,
            rpm = report.rpm,
            requests_sent = report.requests_sent,
            errors = report.errors,
            error_rate = report.error_rate,
            checkout_error_rate = report.checkout_error_rate,
            checkout_p95_ms = report.checkout_p95_ms,
            catalog_p95_ms = report.catalog_p95_ms,
            "demo_progress"
        );
        report
    }
}

#[cfg(test)]
#[path = "timeline_tests.rs"]
mod tests;
