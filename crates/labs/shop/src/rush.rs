//! The doorbuster rush: the Black Friday peak's buyers at checkout once the pool is cut.
//!
//! Checkouts wait for each other's restock reservation (PostgreSQL's `FOR UPDATE` on
//! the low-stock rows, SQLite's one write lock), so checkout places at most about one
//! checkout per mean reservation, whatever its pool. The shoppers alone ask for a
//! fraction of that, so a cut pool never runs dry by itself. The rush is the story's
//! crowd: at the cut a crowd twice what the pool can hold and place within one acquire
//! timeout arrives at once, then a stream of buyers which, with the shoppers' own
//! checkouts (measured as they come, not as they came before the cut), asks for
//! [`RUSH_DEMAND`] times what checkout places. With more asking than can be placed, buyers queue for a connection
//! and those who wait longer than the acquire timeout are turned away: the failed
//! share settles at 1 − 1/[`RUSH_DEMAND`], about the story's 35%.
//!
//! What checkout can place is measured, not assumed: first from the reservation's own
//! histogram since the indexes were dropped; then, while the crowd's first buyers can
//! still time out, from what checkout places as the crowd queues (the service rate
//! itself, where the estimate before the cut only bounds it: a machine shared with
//! other work can free its cores at the cut) — when that is more, more buyers make up
//! the difference and the stream starts from it; then — while the pool turns buyers away —
//! from the rate at which checkout really places orders, read from its `/metrics` a few
//! times a timeline minute (see `next_rate`). The stream is resized toward that; nothing is staged, every
//! failure is a real acquire timeout.

use std::sync::{Arc, Mutex};
use std::time::Duration;

use serde::Serialize;
use tokio::task::JoinHandle;

use driver::engine::{self, Model, Run};
use driver::profile;
use driver::shape::{Phase, Shape};

use crate::remote::{Change, Reading, Shop};

/// How much more the buyers ask for than checkout can place.
pub const RUSH_DEMAND: f64 = 1.55;
/// The highest rate the rush sends, buyers a second: a bound on the load it can make.
const MAX_RUSH_RPS: f64 = 400.0;
/// The stream never stops entirely: the doors stay open.
const MIN_RUSH_RPS: f64 = 0.2;
/// The crowd, in what the pool holds and places within one acquire timeout. (Three was
/// too many: in CI's rehearsal the payment calls of so many buyers at once timed out
/// and the planted retries buried the processor.)
const CROWD_TIMES: f64 = 2.0;
/// A placed rate this much over the estimate tops the crowd up (less is noise).
const TOP_UP_OVER: f64 = 1.2;
/// Checkouts answered in a window before its rates are trusted.
const MIN_ANSWERED: f64 = 6.0;

/// What the rush starts from, measured at the cut.
#[derive(Debug, Clone, Copy)]
pub struct Opening {
    pub products: u64,
    pub pool_size: u32,
    /// The acquire timeout the cut pool has.
    pub acquire_timeout: Duration,
    /// Checkout's counts from the DROP INDEX to the cut.
    pub before: Change,
    /// Full scans a second the database has left beside the shoppers' listings: the
    /// catalog's side-by-side measurement before the run, less the listings' scans from
    /// the DROP INDEX to the cut. Each checkout's restock reservation is one more scan,
    /// so checkout cannot place more than this however short its reservations were
    /// while nothing queued.
    pub spare_scans: Option<f64>,
    /// A timeline minute, in real time.
    pub minute: Duration,
    /// Until the timeline's end.
    pub remaining: Duration,
}

impl Opening {
    /// Checkouts a second checkout can place: one per mean reservation, or (none placed
    /// yet) twice what it placed; no more than the database's spare scans; bounded by
    /// [`MAX_RUSH_RPS`].
    pub fn capacity(&self) -> f64 {
        let measured = match self.before.mean_reservation() {
            Some(mean) if mean > 0.0 => 1.0 / mean,
            _ => 2.0 * self.before.placed_rate(),
        };
        let spare = self.spare_scans.unwrap_or(f64::INFINITY);
        measured.min(spare).clamp(1.0, MAX_RUSH_RPS)
    }

    /// The crowd at the doors: [`CROWD_TIMES`] what the pool holds and places within one timeout.
    pub fn crowd(&self) -> u64 {
        self.crowd_for(self.capacity())
    }

    /// The crowd for a checkout that places `capacity` a second.
    fn crowd_for(&self, capacity: f64) -> u64 {
        let placed_in_timeout = capacity * self.acquire_timeout.as_secs_f64();
        (CROWD_TIMES * (f64::from(self.pool_size) + placed_in_timeout)).ceil() as u64
    }

    /// What checkout placed while the crowd queued (`queued`: its counts from the cut
    /// to now), when that is more than the crowd was sized for: that capacity, and the
    /// buyers that make the crowd (`sent` so far) the size it calls for, twice the first
    /// crowd at the most. None while too few were placed to tell, or when the estimate held.
    fn top_up(&self, queued: &Change, sent: u64) -> Option<(f64, u64)> {
        if queued.seconds <= 0.0 || queued.placed < MIN_ANSWERED {
            return None;
        }
        let capacity = queued.placed_rate().min(MAX_RUSH_RPS);
        let extra = self.crowd_for(capacity).min(2 * self.crowd()).saturating_sub(sent);
        (capacity > TOP_UP_OVER * self.capacity() && extra > 0).then_some((capacity, extra))
    }

    /// The first stream: the demand on what can be placed, less what the shoppers ask.
    pub fn stream(&self) -> f64 {
        next_rate(0.0, self.capacity(), self.before.attempted_rate(), 1.0)
    }

    /// The crowd arrives within half a timeout (at most half a second).
    fn crowd_seconds(&self) -> f64 {
        (self.acquire_timeout.as_secs_f64() / 2.0).min(0.5)
    }

    /// How often the meter reads checkout: four times a timeline minute, 0.25 to 5 s.
    fn tick(&self) -> Duration {
        (self.minute / 4).clamp(Duration::from_millis(250), Duration::from_secs(5))
    }

    /// The window a placed rate is measured over: a timeline minute, at least 3 s.
    fn window(&self) -> Duration {
        self.minute.max(Duration::from_secs(3))
    }
}

/// The meter's last word.
#[derive(Debug, Clone, Copy, Default, Serialize)]
pub struct Metered {
    /// Checkouts placed a second over the last window.
    pub placed_rate: f64,
    /// Checkouts answered a second over it (placed, turned away, failed).
    pub attempted_rate: f64,
    /// Times the stream was resized.
    pub adjustments: u64,
    /// Buyers sent after the crowd, once checkout was seen placing more than estimated,
    /// and the most it placed a second while the crowd queued.
    pub topped_up: u64,
    pub queued_capacity: f64,
}

/// A rush in progress.
pub struct Rush {
    run: Arc<Run>,
    engine: JoinHandle<()>,
    meter: JoinHandle<()>,
    metered: Arc<Mutex<Metered>>,
    pub opening: Opening,
}

impl Rush {
    /// Starts the crowd and the stream on `alongside`'s figures, and the meter.
    pub fn start(alongside: &Run, shop: Shop, opening: Opening) -> Rush {
        let profile = profile::doorbuster_rush(&shop.urls.checkout_url, opening.products);
        let run = Arc::new(alongside.alongside(profile.clone()));
        // The second crowd's buyers, should checkout place more than estimated: they
        // count in the same figures, and stop with the rush.
        let second = Arc::new(run.alongside(profile));
        let crowd_seconds = opening.crowd_seconds();
        let crowd = Phase {
            duration: Duration::from_secs_f64(crowd_seconds),
            from: opening.crowd() as f64 / crowd_seconds,
            to: opening.crowd() as f64 / crowd_seconds,
        };
        let rest = opening.remaining.saturating_sub(crowd.duration);
        let stream = Phase { duration: rest, from: opening.stream(), to: opening.stream() };
        let model = Model::Open { shape: Shape { phases: vec![crowd, stream] }, max_in_flight: 20_000 };
        let engine = tokio::spawn(engine::drive(run.clone(), model));
        let metered = Arc::new(Mutex::new(Metered::default()));
        let meter = tokio::spawn(meter(run.clone(), second, shop, opening, metered.clone()));
        tracing::info!(
            crowd = opening.crowd(),
            stream_rps = opening.stream(),
            capacity_rps = opening.capacity(),
            "doorbuster_rush_started"
        );
        Rush { run, engine, meter, metered, opening }
    }

    /// Buyers a second the stream sends now.
    pub fn rps(&self) -> f64 {
        *self.run.target_rps.lock().unwrap_or_else(|p| p.into_inner())
    }

    pub fn metered(&self) -> Metered {
        *self.metered.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// What the rush is, in a line.
    pub fn describe(&self) -> String {
        let o = &self.opening;
        let spare = match o.spare_scans {
            Some(spare) => format!(", each one of the database's {:.1} spare scans a second", spare.max(0.0)),
            None => String::new(),
        };
        format!(
            "the doorbusters open: a crowd of {} buyers at once, then {:.1} a second \
             ({RUSH_DEMAND}× the {:.1} checkouts a second checkout can place: one restock reservation at a time{spare})",
            o.crowd(),
            o.stream(),
            o.capacity()
        )
    }

    /// The second crowd, in a clause of a sentence; empty when there was none.
    pub fn describe_top_up(&self) -> String {
        let m = self.metered();
        if m.topped_up == 0 {
            return String::new();
        }
        format!(
            "; then {} more buyers, as checkout placed up to {:.1} a second while the crowd queued, not {:.1}",
            m.topped_up,
            m.queued_capacity,
            self.opening.capacity()
        )
    }

    /// Stops the rush and waits for it (its journeys end where they are).
    pub async fn finish(self) -> Metered {
        self.run.stop.cancel();
        let _ = self.engine.await;
        self.meter.abort();
        let _ = self.meter.await;
        *self.metered.lock().unwrap_or_else(|p| p.into_inner())
    }
}

/// The stream's next rate: a step of `gain` toward [`RUSH_DEMAND`] times the rate checkout
/// places at, less the shoppers' own checkouts. Steered by what is placed — the service
/// rate, steady while a queue stands — and not by what is answered: answers trail the
/// arrivals by a checkout's latency, seconds at the peak, which is longer than a
/// compressed timeline's window, and steering on them overshoots one run and
/// undershoots the next.
fn next_rate(rps: f64, placed_rate: f64, shoppers_rate: f64, gain: f64) -> f64 {
    let target = RUSH_DEMAND * placed_rate - shoppers_rate;
    (rps + gain * (target - rps)).clamp(MIN_RUSH_RPS, MAX_RUSH_RPS)
}

/// The shoppers' own checkouts a second over a window: every checkout answered, less
/// the rush's buyers answered in it. Measured now, not taken from before the cut: with
/// the catalog scanning, the shoppers reach checkout more slowly than they did then,
/// and subtracting their earlier rate would shrink the stream until nothing queued.
fn shoppers_rate(change: &Change, rush_answered: u64) -> f64 {
    if change.seconds <= 0.0 {
        return 0.0;
    }
    (change.attempted_rate() - rush_answered as f64 / change.seconds).max(0.0)
}

/// Resizes the stream toward [`RUSH_DEMAND`] times what checkout places, from checkout's
/// counters over a sliding window; first, once the crowd has queued for a tick, sends
/// the second crowd if checkout places more than the first was sized for.
async fn meter(run: Arc<Run>, second: Arc<Run>, shop: Shop, opening: Opening, metered: Arc<Mutex<Metered>>) {
    let (tick, window) = (opening.tick(), opening.window());
    let Some(mut rps) = top_up(&run, &second, &shop, &opening, &metered).await else { return };
    // Waiting for the last crowd to be answered before measuring (not part of any
    // symptom: its failures are real acquire timeouts, and would skew the first window).
    tokio::select! {
        _ = run.stop.cancelled() => return,
        _ = tokio::time::sleep(opening.acquire_timeout) => {}
    }
    // Two full corrections per window, spread over its ticks: the peak failure's
    // minutes are only a few windows long.
    let gain = (2.0 * tick.as_secs_f64() / window.as_secs_f64()).min(0.5);
    // Checkout's counters, and how many of the rush's own buyers had been answered then.
    let mut readings: Vec<(Reading, u64)> = Vec::new();
    let mut interval = tokio::time::interval(tick);
    loop {
        tokio::select! {
            _ = run.stop.cancelled() => return,
            _ = interval.tick() => {}
        }
        let Ok(now) = shop.reading().await else { continue };
        let answered = run.answered() + second.answered();
        readings.push((now, answered));
        // Keep the newest reading at least a window old, and all after it.
        while readings.len() > 2 && now.at.saturating_duration_since(readings[1].0.at) >= window {
            readings.remove(0);
        }
        let (first, first_answered) = &readings[0];
        let change = now.since(first);
        if change.seconds < window.as_secs_f64() * 0.5 || change.placed + change.failed_total() < MIN_ANSWERED {
            continue;
        }
        let shoppers = shoppers_rate(&change, answered.saturating_sub(*first_answered));
        rps = next_rate(rps, change.placed_rate(), shoppers, gain);
        *run.rate_override.lock().unwrap_or_else(|p| p.into_inner()) = Some(rps);
        let mut m = metered.lock().unwrap_or_else(|p| p.into_inner());
        m.placed_rate = change.placed_rate();
        m.attempted_rate = change.attempted_rate();
        m.adjustments += 1;
        tracing::debug!(
            rps,
            shoppers,
            placed_rate = m.placed_rate,
            attempted_rate = m.attempted_rate,
            pool_exhausted = change.pool_exhausted(),
            "doorbuster_rush_resized"
        );
    }
}

/// While the crowd's first buyers can still time out, once a tick: what checkout has
/// placed since the cut, and the buyers that make the crowd the size that calls for, if
/// that is more than were sent; the stream is resized to match. The stream's rate once
/// the last buyers sent are in; None if the rush was stopped.
async fn top_up(run: &Run, second: &Arc<Run>, shop: &Shop, opening: &Opening, metered: &Mutex<Metered>) -> Option<f64> {
    let crowd_seconds = Duration::from_secs_f64(opening.crowd_seconds());
    let at_cut = shop.reading().await.ok();
    let until = tokio::time::Instant::now() + crowd_seconds + opening.acquire_timeout;
    let (mut rps, mut sent, mut last) = (opening.stream(), opening.crowd(), at_cut);
    let mut interval = tokio::time::interval_at(tokio::time::Instant::now() + crowd_seconds, opening.tick());
    loop {
        tokio::select! {
            _ = run.stop.cancelled() => return None,
            _ = interval.tick() => {}
        }
        if tokio::time::Instant::now() + crowd_seconds > until {
            return Some(rps);
        }
        let Ok(now) = shop.reading().await else { continue };
        // Since the cut, and since the last tick: the new pool opens its connections in
        // the first, so the latest tick can show the service rate sooner.
        let (since_cut, since_last) = (at_cut.map(|r| now.since(&r)), last.map(|r| now.since(&r)));
        last = Some(now);
        let best = [since_cut, since_last].into_iter().flatten().filter_map(|c| opening.top_up(&c, sent));
        let Some((capacity, extra)) = best.max_by(|a, b| a.1.cmp(&b.1)) else { continue };
        let rate = extra as f64 / crowd_seconds.as_secs_f64();
        let crowd = Phase { duration: crowd_seconds, from: rate, to: rate };
        let model = Model::Open { shape: Shape { phases: vec![crowd] }, max_in_flight: 20_000 };
        tokio::spawn(engine::drive(second.clone(), model));
        sent += extra;
        rps = rps.max(next_rate(0.0, capacity, opening.before.attempted_rate(), 1.0));
        *run.rate_override.lock().unwrap_or_else(|p| p.into_inner()) = Some(rps);
        let mut m = metered.lock().unwrap_or_else(|p| p.into_inner());
        m.topped_up += extra;
        m.queued_capacity = m.queued_capacity.max(capacity);
        tracing::info!(extra, capacity_rps = capacity, stream_rps = rps, "doorbuster_rush_topped_up");
    }
}

/// The peak failure (minutes 25 to 30): the checkouts the timeline and the rush sent,
/// and why checkout says the failed ones failed.
#[derive(Debug, Clone, Serialize)]
pub struct PeakReport {
    pub checkouts: u64,
    pub failed: u64,
    pub error_rate: f64,
    pub p95_ms: f64,
    /// From checkout's own counters, most first.
    pub failures_by_reason: Vec<(&'static str, u64)>,
}

/// The seed's "peak failure": about 35% of checkouts fail; judged between these.
pub const PEAK_FAILURE_BAND: std::ops::RangeInclusive<f64> = 0.20..=0.60;
/// The share of the failures that must be the pool's for the story to be told.
pub const POOL_SHARE_OF_FAILURES: f64 = 0.8;

impl PeakReport {
    fn pool_exhausted(&self) -> u64 {
        self.failures_by_reason.iter().find(|(r, _)| *r == "pool_exhausted").map_or(0, |(_, n)| *n)
    }

    /// Whether the failures were the pool's (acquire timeouts), as the story says.
    pub fn pool_caused(&self) -> bool {
        let all: u64 = self.failures_by_reason.iter().map(|(_, n)| n).sum();
        all > 0 && self.pool_exhausted() as f64 >= POOL_SHARE_OF_FAILURES * all as f64
    }

    pub fn in_band(&self) -> bool {
        PEAK_FAILURE_BAND.contains(&self.error_rate)
    }

    pub fn describe(&self) -> String {
        let reasons: Vec<String> = self.failures_by_reason.iter().map(|(r, n)| format!("{n} {r}")).collect();
        format!(
            "{} checkouts, {} failed ({:.1}%), p95 {:.0} ms; checkout counts {}",
            self.checkouts,
            self.failed,
            self.error_rate * 100.0,
            self.p95_ms,
            if reasons.is_empty() { "no failures".into() } else { reasons.join(", ") }
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn opening(placed: f64, reservations: f64, reservation_seconds: f64, timeout_ms: u64) -> Opening {
        Opening {
            products: 1000,
            pool_size: 20,
            acquire_timeout: Duration::from_millis(timeout_ms),
            before: Change {
                seconds: 10.0,
                placed,
                failed: [0.0; 6],
                reservation_seconds,
                reservations,
                payment_calls: 0.0,
                payment_retries: 0.0,
            },
            spare_scans: None,
            minute: Duration::from_secs(1),
            remaining: Duration::from_secs(10),
        }
    }

    #[test]
    fn the_rush_is_sized_from_the_reservation_checkout_holds() {
        // 20 placed in 10 s, each holding the reservation 100 ms: 10 a second can be placed.
        let o = opening(20.0, 20.0, 2.0, 1000);
        assert!((o.capacity() - 10.0).abs() < 1e-9);
        assert_eq!(o.crowd(), 60, "twice the 20 the pool holds and the 10 placed within the 1 s timeout");
        assert!((o.stream() - (15.5 - 2.0)).abs() < 1e-9, "1.55 × 10, less the shoppers' 2 a second");
        // Nothing placed with a reservation yet: twice the placed rate, at least one a second.
        assert!((opening(0.0, 0.0, 0.0, 5000).capacity() - 1.0).abs() < 1e-9);
        assert!((opening(30.0, 0.0, 0.0, 5000).capacity() - 6.0).abs() < 1e-9);
        assert_eq!(opening(20.0, 20.0, 2.0, 5000).tick(), Duration::from_millis(250));
        // Short reservations while nothing queued, but a database with 4 scans a second
        // to spare: each checkout's restock check is one of them.
        let busy = Opening { spare_scans: Some(4.0), ..opening(20.0, 20.0, 0.2, 1000) };
        assert!((busy.capacity() - 4.0).abs() < 1e-9, "{}", busy.capacity());
        assert!((Opening { spare_scans: Some(-3.0), ..busy }.capacity() - 1.0).abs() < 1e-9, "at least one");
    }

    #[test]
    fn a_second_crowd_makes_up_for_a_capacity_the_estimate_missed() {
        // Estimated 4 a second (the database's spare scans), crowd 2 × (20 + 4) = 48.
        let o = Opening { spare_scans: Some(4.0), ..opening(20.0, 20.0, 0.2, 1000) };
        assert_eq!(o.crowd(), 48);
        let queued = |seconds: f64, placed: f64| {
            let mut change = o.before;
            (change.seconds, change.placed) = (seconds, placed);
            change
        };
        // Placed 10 a second while the crowd queued: the crowd 2 × (20 + 10) calls for 12 more.
        assert_eq!(o.top_up(&queued(1.0, 10.0), 48), Some((10.0, 12)));
        assert_eq!(o.top_up(&queued(2.0, 24.0), 60), Some((12.0, 4)), "then 4 more than the 60 sent");
        assert_eq!(o.top_up(&queued(1.0, 10.0), 60), None, "no more once they are sent");
        assert_eq!(o.top_up(&queued(1.0, 100.0), 48), Some((100.0, 48)), "twice the first crowd at most");
        assert_eq!(o.top_up(&queued(1.0, 4.0), 48), None, "too few placed to tell");
        assert_eq!(o.top_up(&queued(2.0, 9.0), 48), None, "within the estimate's noise");
        assert_eq!(o.top_up(&queued(0.0, 0.0), 48), None);
    }

    #[test]
    fn the_stream_steps_toward_the_demand_on_what_is_placed() {
        // 10 placed a second, shoppers asking 2: the stream heads for 15.5 − 2 = 13.5.
        assert!((next_rate(20.0, 10.0, 2.0, 0.5) - 16.75).abs() < 1e-9);
        assert!((next_rate(13.5, 10.0, 2.0, 0.3) - 13.5).abs() < 1e-9, "at the target it stays");
        let mut rps = 40.0;
        for _ in 0..20 {
            rps = next_rate(rps, 10.0, 2.0, 0.33);
        }
        assert!((rps - 13.5).abs() < 0.01, "it settles on the target: {rps}");
        assert_eq!(next_rate(1.0, 0.0, 5.0, 0.5), MIN_RUSH_RPS, "the doors stay open");
    }

    /// A window of a checkout that places at most `capacity` a second, asked by shoppers
    /// at `shoppers` and the rush at `rush`: what its counters and the rush's say.
    fn window(capacity: f64, shoppers: f64, rush: f64) -> (Change, u64) {
        let seconds = 100.0;
        let asked = shoppers + rush;
        let placed = asked.min(capacity);
        let mut failed = [0.0; 6];
        failed[0] = (asked - placed) * seconds;
        let change = Change {
            seconds,
            placed: placed * seconds,
            failed,
            reservation_seconds: 0.0,
            reservations: 0.0,
            payment_calls: 0.0,
            payment_retries: 0.0,
        };
        (change, (rush * seconds).round() as u64)
    }

    #[test]
    fn the_demand_stays_above_capacity_when_the_shoppers_slow_down() {
        // Before the cut the shoppers asked 8 a second; behind the scanning catalog they
        // now reach checkout at 2. Checkout places 10: the buyers must still ask 15.5.
        let (capacity, shoppers_before, shoppers_now) = (10.0, 8.0, 2.0);
        let mut rps = next_rate(0.0, capacity, shoppers_before, 1.0);
        for _ in 0..40 {
            let (change, rush_answered) = window(capacity, shoppers_now, rps);
            assert!((shoppers_rate(&change, rush_answered) - shoppers_now).abs() < 0.01);
            rps = next_rate(rps, change.placed_rate(), shoppers_rate(&change, rush_answered), 0.33);
        }
        let asked = shoppers_now + rps;
        assert!((asked - RUSH_DEMAND * capacity).abs() < 0.05, "{asked} asked of {capacity} placed");
        let (change, _) = window(capacity, shoppers_now, rps);
        let failed_share = change.failed_total() / (change.placed + change.failed_total());
        assert!((0.30..0.40).contains(&failed_share), "about a third turned away: {failed_share}");
    }
}
