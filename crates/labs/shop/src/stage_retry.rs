//! `breakroom demonstrate|check|reset shop/retry-storm`: a slowed payment processor, a
//! peak of checkouts at twice what it completes, then a calm — and whether checkout
//! recovers in the calm or keeps the processor buried under its own retries.

use std::sync::Arc;
use std::time::Duration;

use serde_json::Value;
use tokio::time::Instant;

use driver::engine::{self, Model, Run};
use driver::profile;
use driver::shape::{Phase, Shape};
use platform::lab::Boxed;
use platform::rehearsal::{Judged, Judgement, Rehearsal};
use platform::stage::{EXIT_FAILED, StageCommand, StageError, Style, metric_value, run_fix};

use crate::RETRY_BUG;
use crate::remote::Shop;

/// The processor's speed at the talk setting: one authorization takes 20 ms…
pub const TALK_WORK_MS: u32 = 20;
/// …on one worker: 50 authorizations a second at most.
const TALK_WORKERS: u32 = 1;
/// Before the peak, a few checkouts at this share of the processor's nominal speed, to
/// measure what it really completes on this machine now…
const WARM_LOAD: f64 = 0.3;
const WARM: Duration = Duration::from_secs(1);
/// …then the peak: twice that, for 2 s — long enough for the queue to pass checkout's
/// 1 s timeout, so calls start to time out…
const PEAK_LOAD: f64 = 2.0;
const PEAK: Duration = Duration::from_secs(2);
/// …and the calm after it: 40% of it, for 10 s. Room for the fixed retries to drain
/// what the peak queued, too little for six calls a checkout.
const CALM_LOAD: f64 = 0.4;
const CALM: Duration = Duration::from_secs(10);
/// …judged on its last 3 s.
const JUDGED: Duration = Duration::from_secs(3);
/// The check passes when this share of the calm's checkouts succeed…
const SUCCESS: f64 = 0.95;
/// …with at most this many payment calls each.
const MAX_CALLS_PER_CHECKOUT: f64 = 1.3;
/// How often the load follows what the processor completes (see `steer`).
const STEER_EVERY: Duration = Duration::from_millis(250);
/// A checkout the driver gives up on.
const CHECKOUT_TIMEOUT: Duration = Duration::from_secs(10);

pub async fn run(command: StageCommand, shop: &Shop, work_ms: u32) -> Result<u8, StageError> {
    if !(1..=1000).contains(&work_ms) {
        return Err(StageError("--payment-work-ms must be from 1 to 1000".into()));
    }
    match command {
        StageCommand::Demonstrate => demonstrate(shop, work_ms).await,
        StageCommand::Check => check(shop, work_ms).await,
        StageCommand::Reset => reset(shop).await,
    }
}

/// Checkout's and the processor's counters at one moment.
#[derive(Debug, Clone, Copy, Default)]
struct Counters {
    placed: f64,
    unpaid: f64,
    failed: f64,
    first_calls: f64,
    retries: f64,
    abandoned: f64,
    queued: f64,
}

impl Counters {
    async fn read(shop: &Shop) -> Result<Counters, StageError> {
        let checkout = shop.checkout.get("/metrics").await?.body;
        let payment = shop.payment.get("/metrics").await?.body;
        let c = |name: &str| metric_value(&checkout, name).unwrap_or(0.0);
        let p = |name: &str| metric_value(&payment, name).unwrap_or(0.0);
        let failed: f64 = checkout
            .lines()
            .filter(|l| l.starts_with("shop_checkouts_total{outcome=\"failed\""))
            .filter_map(|l| l.rsplit_once(' ')?.1.parse::<f64>().ok())
            .sum();
        Ok(Counters {
            placed: c("shop_checkouts_total{outcome=\"success\"}"),
            unpaid: c("shop_checkouts_total{outcome=\"failed\",reason=\"payment_unavailable\"}"),
            failed,
            first_calls: c("shop_payment_calls_total{attempt=\"first\"}"),
            retries: c("shop_payment_calls_total{attempt=\"retry\"}"),
            abandoned: p("shop_payment_abandoned_total"),
            queued: p("shop_payment_queue_depth"),
        })
    }

    fn since(&self, before: &Counters) -> Counters {
        Counters {
            placed: self.placed - before.placed,
            unpaid: self.unpaid - before.unpaid,
            failed: self.failed - before.failed,
            first_calls: self.first_calls - before.first_calls,
            retries: self.retries - before.retries,
            abandoned: self.abandoned - before.abandoned,
            queued: self.queued,
        }
    }

    fn checkouts(&self) -> f64 {
        self.placed + self.failed
    }

    fn success(&self) -> f64 {
        if self.checkouts() > 0.0 { self.placed / self.checkouts() } else { 0.0 }
    }

    fn calls_per_checkout(&self) -> f64 {
        let calls = self.first_calls + self.retries;
        if self.first_calls > 0.0 { calls / self.first_calls } else { 0.0 }
    }
}

/// What one peak and calm did.
struct Storm {
    capacity: f64,
    /// From the peak's start to the judged window.
    before: Counters,
    /// The calm's last seconds.
    judged: Counters,
}

impl Storm {
    fn describe(&self) -> String {
        let j = &self.judged;
        format!(
            "in the calm's last {} s: {:.0} of {:.0} checkouts placed ({:.0}%), {:.1} payment calls a checkout \
             ({:.0} retries), {:.0} authorizations done for callers who had left, {:.0} still queued at the processor",
            JUDGED.as_secs(),
            j.placed,
            j.checkouts(),
            j.success() * 100.0,
            j.calls_per_checkout(),
            j.retries,
            j.abandoned,
            j.queued
        )
    }

    fn passed(&self) -> bool {
        let j = &self.judged;
        j.checkouts() > 0.0 && j.success() >= SUCCESS && j.calls_per_checkout() <= MAX_CALLS_PER_CHECKOUT
    }

    fn verdict(&self) -> Result<String, String> {
        if self.passed() {
            Ok(format!("checkout recovered after the peak — {}", self.describe()))
        } else {
            Err(format!("checkout did not recover after the peak — {}", self.describe()))
        }
    }
}

/// Drives `shape` of doorbuster checkouts; the run, and the engine driving it.
fn checkouts(shop: &Shop, shape: Shape) -> (Arc<Run>, tokio::task::JoinHandle<()>) {
    let profile = profile::doorbuster_rush(&shop.urls.checkout_url, 1);
    let run = Arc::new(Run::new(profile, shop.urls.checkout_url.clone(), None, CHECKOUT_TIMEOUT, Vec::new()));
    let engine = tokio::spawn(engine::drive(run.clone(), Model::Open { shape, max_in_flight: 5_000 }));
    (run, engine)
}

/// What the slowed processor completes a second on this machine now, from the time its
/// latest authorizations took (about `work_ms` each when nothing else wants the CPU).
async fn capacity_now(shop: &Shop, work_ms: u32) -> Result<f64, StageError> {
    let health = shop.payment.get("/health").await?.expect_json("GET /health on the payment processor")?;
    let took = health["payment"]["measured_work_ms"].as_f64().filter(|ms| *ms > 0.0).unwrap_or(f64::from(work_ms));
    Ok(f64::from(TALK_WORKERS) * 1000.0 / took.max(1.0))
}

/// What the slowed processor completes a second: a few checkouts, then what they took.
async fn measured_capacity(shop: &Shop, work_ms: u32) -> Result<f64, StageError> {
    let nominal = f64::from(TALK_WORKERS) * 1000.0 / f64::from(work_ms);
    let (_, engine) = checkouts(shop, Shape::constant(WARM_LOAD * nominal, WARM));
    let _ = engine.await;
    capacity_now(shop, work_ms).await
}

/// Keeps the checkouts at their share of what the processor completes as the machine's
/// other work comes and goes: the peak at [`PEAK_LOAD`] times it, the calm at
/// [`CALM_LOAD`] — below what it completes, whatever else runs here.
async fn steer(run: Arc<Run>, shop: Shop, work_ms: u32, start: Instant) {
    let mut tick = tokio::time::interval(STEER_EVERY);
    loop {
        tokio::select! {
            _ = run.stop.cancelled() => return,
            _ = tick.tick() => {}
        }
        let Ok(capacity) = capacity_now(&shop, work_ms).await else { continue };
        let load = if start.elapsed() < PEAK { PEAK_LOAD } else { CALM_LOAD };
        *run.rate_override.lock().unwrap_or_else(|p| p.into_inner()) = Some(load * capacity);
    }
}

/// The processor slowed, its queue empty; then the peak and the calm, measured.
async fn storm(shop: &Shop, work_ms: u32) -> Result<Storm, StageError> {
    shop.restore_payment().await?;
    shop.slow_payment(TALK_WORKERS, work_ms).await?;
    let capacity = measured_capacity(shop, work_ms).await?;
    let shape = Shape {
        phases: vec![
            Phase { duration: PEAK, from: PEAK_LOAD * capacity, to: PEAK_LOAD * capacity },
            Phase { duration: CALM, from: CALM_LOAD * capacity, to: CALM_LOAD * capacity },
        ],
    };
    let initial = Counters::read(shop).await?;
    let start = Instant::now();
    let (run, engine) = checkouts(shop, shape);
    let steering = tokio::spawn(steer(run.clone(), shop.clone(), work_ms, start));
    // The driver's own clock: the judged window is the calm's end, whatever it answers.
    tokio::time::sleep_until(start + PEAK + CALM - JUDGED).await;
    let from = Counters::read(shop).await;
    tokio::time::sleep_until(start + PEAK + CALM).await;
    let to = Counters::read(shop).await;
    run.stop.cancel();
    let _ = engine.await;
    let _ = steering.await;
    let (from, to) = (from?, to?);
    Ok(Storm { capacity, before: from.since(&initial), judged: to.since(&from) })
}

async fn demonstrate(shop: &Shop, work_ms: u32) -> Result<u8, StageError> {
    let style = Style::detect();
    println!("{}", style.heading("=== DEMONSTRATING THE RETRY STORM ==="));
    let mode = shop.checkout.bug_mode(RETRY_BUG, &shop.token).await?;
    println!("Checkout's payment retries: {mode}.");
    println!(
        "The payment processor slows to {TALK_WORKERS} worker at {work_ms} ms an authorization; then {:.0} s of checkouts at \
         {PEAK_LOAD}× what it completes, and {:.0} s of calm at {:.0}%…",
        PEAK.as_secs_f64(),
        CALM.as_secs_f64(),
        CALM_LOAD * 100.0
    );
    let storm = storm(shop, work_ms).await?;
    println!("(the processor completes {:.0} authorizations a second here now)", storm.capacity);
    let b = &storm.before;
    println!(
        "The peak and the calm's start: {:.0} checkouts placed, {:.0} failed ({:.0} without a payment), {:.1} payment calls a checkout.",
        b.placed,
        b.failed,
        b.unpaid,
        b.calls_per_checkout()
    );
    println!("{}", storm.describe());
    println!();
    println!("{}", style.heading("--- What happened ---"));
    if storm.passed() {
        println!(
            "{}",
            style.bad(&format!(
                "The bug did not reproduce: checkout recovered once the peak was over. Is this server running with \
                 --fixed {RETRY_BUG}?"
            ))
        );
        return Ok(EXIT_FAILED);
    }
    println!(
        "{}",
        style.bad(&format!(
            "The peak is over and the shoppers ask for {:.0} checkouts a second, {:.0}% of what the processor completes — \
             yet checkouts still fail: every timed-out call was sent again at once, the processor still scores the calls \
             nobody waits for, and its queue only grows.",
            CALM_LOAD * storm.capacity,
            CALM_LOAD * 100.0
        ))
    );
    println!(
        "See it: shop_payment_calls_total and shop_payment_call_failures_total on checkout's /metrics; \
         shop_payment_abandoned_total and shop_payment_queue_depth on the processor's ({}/metrics).",
        shop.urls.payment_url
    );
    println!(
        "The bug lives in crates/labs/shop/src/checkout/pay.rs (retry_immediately). Fix: breakroom serve shop --fixed {RETRY_BUG}"
    );
    platform::stage::found(platform::stage::Finding::Reproduced(
        "after the peak, at 40% of the processor's capacity, checkouts still failed".into(),
    ));
    println!(
        "The processor stays slowed and buried so the room can look: `breakroom reset shop/retry-storm` puts it back \
         (`breakroom check shop/retry-storm` does too, after its measurement)."
    );
    Ok(0)
}

async fn check(shop: &Shop, work_ms: u32) -> Result<u8, StageError> {
    let storm = storm(shop, work_ms).await;
    // The check leaves the lab usable: the normal processor, nothing queued.
    let restored = shop.restore_payment().await;
    let storm = storm?;
    restored?;
    Ok(platform::stage::report_check(
        storm.verdict(),
        "Read crates/labs/shop/src/checkout/pay.rs (retry_immediately). Run the fix with \
         `breakroom serve shop --fixed retry-storm` and check again.",
    ))
}

/// What a reset left: the retries' implementation and the processor's state.
async fn after_reset(shop: &Shop, reset: &Value) -> Result<(String, bool), StageError> {
    let mode = shop.checkout.bug_mode(RETRY_BUG, &shop.token).await?;
    let payment = &reset["payment"];
    let normal = payment["settings"] == payment["normal"] && payment["queued"].as_u64() == Some(0);
    Ok((mode, normal))
}

async fn reset(shop: &Shop) -> Result<u8, StageError> {
    platform::stage::reset_session(&shop.checkout, &shop.token).await?;
    let payment = shop.restore_payment().await?;
    let (mode, normal) = after_reset(shop, &payment).await?;
    let state = format!("retry-storm implementation: {mode}   payment processor normal, queue empty: {normal}");
    Ok(platform::stage::report_reset(mode == "buggy" && normal, "talk", &state))
}

/// The rehearsal of `shop/retry-storm`.
pub struct Rehearse {
    shop: Shop,
    work_ms: u32,
    storm: Option<Storm>,
}

impl Rehearse {
    pub fn new(shop: Shop, work_ms: u32) -> Rehearse {
        Rehearse { shop, work_ms, storm: None }
    }
}

impl Rehearsal for Rehearse {
    fn prepare(&mut self) -> Boxed<'_, Result<(), StageError>> {
        Box::pin(async move {
            platform::stage::reset_session(&self.shop.checkout, &self.shop.token).await?;
            self.shop.restore_payment().await?;
            Ok(())
        })
    }

    fn reproduce(&mut self) -> Judged<'_> {
        Box::pin(async move {
            let storm = storm(&self.shop, self.work_ms).await?;
            // Most of the calm's checkouts fail although it asks for less than the processor completes.
            let ok = storm.judged.checkouts() > 0.0 && storm.judged.success() < 0.5;
            let judgement = Judgement::new(ok, storm.describe());
            self.storm = Some(storm);
            Ok(judgement)
        })
    }

    fn symptom(&mut self) -> Judged<'_> {
        Box::pin(async move {
            let Some(storm) = &self.storm else { return Ok(Judgement::not_applicable("the trigger did not run")) };
            // ShopRetryStorm fires on calls a checkout; the processor works for callers who left.
            let j = &storm.judged;
            Ok(Judgement::new(
                j.calls_per_checkout() >= 2.0 && j.abandoned > 0.0,
                format!(
                    "{:.1} payment calls a checkout, shop_payment_abandoned_total +{:.0} in the calm's last {} s",
                    j.calls_per_checkout(),
                    j.abandoned,
                    JUDGED.as_secs()
                ),
            ))
        })
    }

    fn check_fails(&mut self) -> Judged<'_> {
        Box::pin(async move { Ok(Judgement::of_check(storm(&self.shop, self.work_ms).await?.verdict(), false)) })
    }

    fn fix(&mut self) -> Judged<'_> {
        Box::pin(async move {
            run_fix(&self.shop.checkout, &self.shop.token, RETRY_BUG).await?;
            Ok(Judgement::of_check(storm(&self.shop, self.work_ms).await?.verdict(), true))
        })
    }

    fn reset(&mut self) -> Judged<'_> {
        Box::pin(async move {
            platform::stage::reset_session(&self.shop.checkout, &self.shop.token).await?;
            let payment = self.shop.restore_payment().await?;
            let (mode, normal) = after_reset(&self.shop, &payment).await?;
            Ok(Judgement::new(
                mode == "buggy" && normal,
                format!("retry-storm {mode}, payment processor normal and its queue empty: {normal}"),
            ))
        })
    }

    fn recover(&mut self) -> Boxed<'_, ()> {
        Box::pin(async move {
            let _ = platform::stage::reset_session(&self.shop.checkout, &self.shop.token).await;
            let _ = self.shop.restore_payment().await;
        })
    }
}
