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
use serde_json::json;
use tokio::time::Instant;

use driver::ShopUrls;
use driver::engine::{self, Model, Run};
use driver::profile;
use driver::record::Snapshot;
use driver::shape::{Phase, Shape};
use platform::stage::{StageError, Target};

/// The timeline's length in the seed, in minutes.
pub const TIMELINE_MINUTES: f64 = 30.0;
/// Journeys per minute at the peak when the catalog cannot be measured. By default the
/// peak is sized to the database at hand ([`Shop::auto_peak_rpm`]): the seed's 120 is
/// too gentle to make a 2-core database queue on its scans.
pub const FALLBACK_PEAK_RPM: f64 = 300.0;
/// Full scans a journey causes once the indexes are gone (later mix): a catalog
/// listing each, plus checkout's restock reservation for the 30% who buy.
const SCANS_PER_JOURNEY: f64 = 1.3;
/// The share of the measured scan capacity the peak asks for once the indexes are gone:
/// enough for queues (p95 past 2 s), not so much that the catalog never catches up.
const TARGET_UTILIZATION: f64 = 0.7;
/// The ramp starts at a quarter of the peak (the seed's 30 → 120).
const RAMP_START_SHARE: f64 = 0.25;
/// Minutes of the 30-minute timeline at which things happen.
const PEAK_MINUTE: f64 = 10.0;
const DROP_MINUTE: f64 = 15.0;
const SHRINK_MINUTE: f64 = 20.0;
const ALERT_MINUTE: f64 = 22.0;
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
}

/// What the timeline is doing: `GET /admin/demo-status` (`idle` before any run).
#[derive(Debug, Clone, Serialize, utoipa::ToSchema)]
pub struct DemoStatus {
    pub running: bool,
    pub elapsed_minutes: f64,
    pub elapsed_seconds: f64,
    pub current_rpm: f64,
    pub phase: String,
    pub requests_sent: u64,
    pub errors: u64,
    pub current_error_rate: f64,
    pub checkouts_attempted: u64,
    pub checkouts_failed: u64,
    pub start_timestamp: Option<u64>,
    pub start_time_iso: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub speedup: Option<f64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub peak_rpm: Option<f64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub duration_minutes: Option<f64>,
}

impl DemoStatus {
    /// No timeline has run yet.
    pub fn idle() -> DemoStatus {
        DemoStatus {
            running: false,
            elapsed_minutes: 0.0,
            elapsed_seconds: 0.0,
            current_rpm: 0.0,
            phase: "idle".into(),
            requests_sent: 0,
            errors: 0,
            current_error_rate: 0.0,
            checkouts_attempted: 0,
            checkouts_failed: 0,
            start_timestamp: None,
            start_time_iso: None,
            speedup: None,
            peak_rpm: None,
            duration_minutes: None,
        }
    }
}

/// What a timeline run is set to.
#[derive(Debug, Clone, Serialize)]
pub struct Settings {
    pub speedup: f64,
    pub peak_rpm: f64,
    pub duration_minutes: f64,
    pub pool_size: u32,
    pub pool_timeout_ms: u64,
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

/// The shop's services and the admin token their fault actions need.
#[derive(Clone)]
pub struct Shop {
    pub urls: ShopUrls,
    pub catalog: Arc<Target>,
    pub cart: Arc<Target>,
    pub checkout: Arc<Target>,
    pub token: String,
}

/// DDL on a big table waits for the scans in flight: admin calls get long.
const ADMIN_TIMEOUT: Duration = Duration::from_secs(300);

impl Shop {
    pub fn new(urls: &ShopUrls, token: String) -> Result<Shop, StageError> {
        let urls = urls.trimmed();
        for url in [&urls.catalog_url, &urls.cart_url, &urls.checkout_url] {
            if !url.starts_with("http://") && !url.starts_with("https://") {
                return Err(StageError(format!("'{url}': a shop service's URL starts with http:// or https://")));
            }
        }
        Ok(Shop {
            catalog: Arc::new(Target::with_timeout(&urls.catalog_url, "shop", ADMIN_TIMEOUT)?),
            cart: Arc::new(Target::with_timeout(&urls.cart_url, "shop", ADMIN_TIMEOUT)?),
            checkout: Arc::new(Target::with_timeout(&urls.checkout_url, "shop", ADMIN_TIMEOUT)?),
            urls,
            token,
        })
    }

    pub async fn drop_indexes(&self) -> Result<String, StageError> {
        let reply = platform::stage::admin_call(&self.catalog, "/admin/indexes/drop", &self.token, None).await?;
        let dropped = reply.json().map(|v| v["dropped"].to_string()).unwrap_or_default();
        Ok(format!("DROP INDEX {dropped}"))
    }

    pub async fn shrink_pool(&self, size: u32, timeout_ms: u64) -> Result<String, StageError> {
        let body = json!({ "max_connections": size, "acquire_timeout_ms": timeout_ms });
        platform::stage::admin_call(&self.checkout, "/admin/pool", &self.token, Some(body)).await?;
        Ok(format!("checkout pool: {size} connections, {timeout_ms} ms acquire timeout"))
    }

    /// Indexes restored and checkout's normal pool: every step is tried, the first
    /// failure is returned.
    pub async fn restore(&self) -> Result<String, StageError> {
        let indexes = platform::stage::admin_call(&self.catalog, "/admin/indexes/restore", &self.token, None).await;
        let pool = platform::stage::admin_call(&self.checkout, "/admin/reset?confirm=yes", &self.token, None).await;
        let created = indexes?.json().map(|v| v["created"].to_string()).unwrap_or_default();
        let pool = pool?.json().map(|v| v["pool"]["max_connections"].to_string()).unwrap_or_default();
        Ok(format!("indexes restored (created {created}), checkout pool back to {pool} connections"))
    }

    /// Products in the catalog, from its health.
    pub async fn products(&self) -> Result<u64, StageError> {
        let reply = self.catalog.get("/health").await?;
        Ok(reply.json().and_then(|v| v["products"].as_u64()).unwrap_or(0))
    }

    /// A peak that loads the database's scan capacity to about two thirds once the
    /// indexes are gone, from the catalog's own measurement; and how it was found.
    pub async fn auto_peak_rpm(&self) -> Result<(f64, String), StageError> {
        let reply = self.catalog.get_admin("/admin/scan-cost", &self.token).await?;
        if !reply.is_success() {
            return Err(StageError(format!("measuring the catalog's scan cost: {} {}", reply.status, reply.detail())));
        }
        let cost = reply.json().unwrap_or_default();
        let per_second = cost["scans_per_second"].as_f64().unwrap_or(0.0);
        if per_second <= 0.0 {
            return Ok((FALLBACK_PEAK_RPM, "the scan cost could not be measured".into()));
        }
        let rpm = (TARGET_UTILIZATION * per_second / SCANS_PER_JOURNEY * 60.0).clamp(30.0, 20_000.0).round();
        Ok((
            rpm,
            format!(
                "a full scan of {} products takes {} ms here and {:.1} run per second side by side",
                cost["products"], cost["scan_ms"], per_second
            ),
        ))
    }

    /// The doorbusters' average price: what a failed checkout costs.
    pub async fn order_value(&self) -> f64 {
        let mut prices = Vec::new();
        for id in 1..=profile::DOORBUSTERS {
            if let Ok(reply) = self.catalog.get(&format!("/products/{id}")).await
                && let Some(price) = reply.json().and_then(|v| v["price"].as_f64())
            {
                prices.push(price);
            }
        }
        if prices.is_empty() { 0.0 } else { prices.iter().sum::<f64>() / prices.len() as f64 }
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
}

/// Shared state of a run, for `GET /admin/demo-status`.
#[derive(Debug, Clone, Default)]
struct Progress {
    phase: &'static str,
    last_error_rate: f64,
    checkouts_attempted: u64,
    checkouts_failed: u64,
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
}

impl Timeline {
    /// Prepares a run (reads the catalog's size and the order value); traffic starts with [`Timeline::run`].
    pub async fn prepare(settings: Settings, shop: Shop) -> Result<Arc<Timeline>, StageError> {
        settings.validate()?;
        let products = shop.products().await?;
        let order_value = shop.order_value().await;
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
        }
    }

    fn snapshot(&self) -> Snapshot {
        let target = *self.run.target_rps.lock().unwrap_or_else(|p| p.into_inner());
        self.run.recorder.snapshot("blackfriday", "open", self.run.elapsed(), target)
    }

    /// Runs the timeline to its end (or until stopped), then cleans up. Every event
    /// goes to `observer` as it happens; returns the whole run's figures.
    pub async fn run(self: &Arc<Self>, observer: &mut (dyn FnMut(Event) + Send)) -> Snapshot {
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
        let start = self.started.max(Instant::now());
        for minute in 0..total {
            if minute == drop {
                observer(Event::Milestone(format!(
                    "Minute {minute}: degradation starting — dropping the catalog indexes"
                )));
                self.run.later_mix.store(true, Ordering::Relaxed);
                match self.shop.drop_indexes().await {
                    Ok(done) => observer(Event::Milestone(done)),
                    Err(error) => observer(Event::Trouble(format!("Could not drop the indexes: {error}"))),
                }
            }
            if minute == shrink {
                observer(Event::Milestone(format!(
                    "Minute {minute}: pool exhaustion beginning — cutting checkout's pool to {} connections",
                    settings.pool_size
                )));
                match self.shop.shrink_pool(settings.pool_size, settings.pool_timeout_ms).await {
                    Ok(done) => observer(Event::Milestone(done)),
                    Err(error) => observer(Event::Trouble(format!("Could not resize checkout's pool: {error}"))),
                }
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
            let holds = report.checkout_error_rate > ALERT_ERROR_RATE && report.checkout_p95_ms > ALERT_P95_MS;
            observer(Event::Minute(report.clone()));
            if minute + 1 == alert {
                observer(Event::AlertCondition {
                    holds,
                    detail: format!(
                        "checkout errors {:.1}% (alert > {:.0}%), checkout p95 {:.0} ms (alert > {:.0} ms)",
                        report.checkout_error_rate * 100.0,
                        ALERT_ERROR_RATE * 100.0,
                        report.checkout_p95_ms,
                        ALERT_P95_MS
                    ),
                });
            }
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
mod tests {
    use super::*;

    fn settings(speedup: f64, duration: f64) -> Settings {
        Settings { speedup, peak_rpm: 120.0, duration_minutes: duration, pool_size: 20, pool_timeout_ms: 5000 }
    }

    #[test]
    fn the_phases_follow_the_seed() {
        let phases: Vec<&str> =
            [0.0, 9.9, 10.0, 15.0, 19.9, 20.0, 22.0, 25.0, 29.9, 30.0].into_iter().map(phase_at_minute).collect();
        assert_eq!(
            phases,
            [
                "ramp_up",
                "ramp_up",
                "peak",
                "degradation",
                "degradation",
                "critical",
                "critical",
                "peak_failure",
                "peak_failure",
                "completed"
            ]
        );
        // A 60-minute timeline keeps the shape: degradation from its minute 30.
        assert_eq!(settings(1.0, 60.0).phase(31.0), "degradation");
    }

    #[test]
    fn speedup_compresses_time_not_rates() {
        let s = settings(10.0, 30.0);
        let shape = s.shape();
        assert_eq!(shape.total(), Duration::from_secs(180), "30 minutes → 3 at 10×");
        assert!((shape.rate_at(0.0) * 60.0 - 30.0).abs() < 1e-9, "starts at 30 journeys a minute");
        assert!((shape.rate_at(60.0) * 60.0 - 120.0).abs() < 1e-9, "peak from minute 10 (60 s at 10×)");
        assert!(settings(0.0, 30.0).validate().is_err());
        assert!(settings(10.0, 0.5).validate().is_err());
    }
}
