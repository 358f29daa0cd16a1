//! The Black Friday timeline's optional phase (`--retry-storm`): at minute 10, the peak,
//! the payment processor slows to half the checkouts the peak asks for; at minute 12 it
//! is back to twice that — room for every shopper, not for six calls each — and at 15,
//! as the indexes go, to normal. What checkout's retries make of minutes 12 to 15 is
//! the `shop/retry-storm` scenario:
//! with the planted retries the storm started in minute 11 goes on, six calls a
//! checkout and nearly every checkout failing; with the fix, checkout recovers.

use super::{Event, Settings, Timeline};
use crate::remote::Reading;

/// When the processor slows, when it is half back, when it is normal, on the 30-minute
/// story's clock.
const SLOW_MINUTE: f64 = 10.0;
const HALF_BACK_MINUTE: f64 = 12.0;
const BACK_MINUTE: f64 = 15.0;
/// The slowed processor completes this share of the checkouts the peak asks for…
const SLOW_SHARE: f64 = 0.5;
/// …and this share once half back.
const HALF_BACK_SHARE: f64 = 2.0;

/// The longest an authorization may take the slowed processor: well inside checkout's
/// 1 s timeout, so an empty queue still answers in time and only the queue makes calls
/// time out. At [`SLOW_SHARE`] it needs a peak of 4 checkouts a second or more.
const MAX_WORK_MS: f64 = 500.0;

/// The phase's minutes on this timeline (`at` scales the story's), before `drop`:
/// None when the phase is off or the timeline has no room for it.
fn minutes(settings: &Settings, at: impl Fn(f64) -> u32, drop: u32) -> Option<[u32; 3]> {
    let slow = at(SLOW_MINUTE).max(1);
    let half = at(HALF_BACK_MINUTE).max(slow + 1);
    let back = at(BACK_MINUTE).max(half + 1).min(drop);
    (settings.retry_storm && back > half).then_some([slow, half, back])
}

impl Settings {
    /// When the retry storm's phase slows the processor, brings it half back and
    /// restores it, on this timeline; None without the phase.
    pub fn storm_minutes(&self) -> Option<[u32; 3]> {
        let at = |minute: f64| self.scaled(minute).round() as u32;
        minutes(self, at, at(super::DROP_MINUTE))
    }
}

/// How long one authorization must take one worker to complete `share` of `rate`
/// checkouts a second; None when that is longer than [`MAX_WORK_MS`].
fn work_ms(share: f64, rate: f64) -> Option<u32> {
    let ms = 1000.0 / (share * rate);
    (ms.is_finite() && ms <= MAX_WORK_MS).then(|| ms.round().max(1.0) as u32)
}

impl Timeline {
    /// Slows the processor to half the checkouts of the minute since `before`; the
    /// checkouts a second it was sized on, or None when the phase could not run.
    pub(super) async fn slow_payment(
        &self,
        minute: u32,
        before: Option<Reading>,
        observer: &mut (dyn FnMut(Event) + Send),
    ) -> Option<f64> {
        let rate = match (before, self.shop.steady_reading().await.ok()) {
            (Some(before), Some(now)) => now.since(&before).attempted_rate(),
            _ => 0.0,
        };
        let Some(work) = work_ms(SLOW_SHARE, rate) else {
            observer(Event::Trouble(format!(
                "Minute {minute}: no retry storm — the peak asks for {rate:.1} checkouts a second, and the storm needs \
                 {:.0} or more against checkout's 1 s payment timeout: raise --peak-rpm",
                1000.0 / (SLOW_SHARE * MAX_WORK_MS)
            )));
            return None;
        };
        let retries = self.shop.checkout.bug_mode(crate::RETRY_BUG, &self.shop.token).await.unwrap_or_default();
        observer(Event::Milestone(format!(
            "Minute {minute}: the payment processor slows — to half the {rate:.1} checkouts a second the peak asks for \
             (checkout's retries: {retries})"
        )));
        match self.shop.slow_payment(1, work).await {
            Ok(done) => observer(Event::Milestone(done)),
            Err(error) => {
                observer(Event::Trouble(format!("Could not slow the payment processor: {error}")));
                // It may have been slowed all the same (an answer lost): the rest of the story runs on a normal one.
                let _ = self.shop.restore_payment().await;
                return None;
            }
        }
        Some(rate)
    }

    /// The processor half back: twice the checkouts of `rate`; the reading the end of
    /// the phase is judged from.
    pub(super) async fn payment_half_back(
        &self,
        minute: u32,
        rate: f64,
        observer: &mut (dyn FnMut(Event) + Send),
    ) -> Option<Reading> {
        observer(Event::Milestone(format!(
            "Minute {minute}: the payment processor is half back — room for twice the shoppers' checkouts"
        )));
        // Twice the checkouts: under the cap whenever half of them were.
        let work = work_ms(HALF_BACK_SHARE, rate).unwrap_or(1);
        match self.shop.slow_payment(1, work).await {
            Ok(done) => observer(Event::Milestone(done)),
            Err(error) => observer(Event::Trouble(format!("Could not change the payment processor: {error}"))),
        }
        self.shop.steady_reading().await.ok()
    }

    /// The processor back to normal, and what its slowdown cost since `from`.
    pub(super) async fn payment_back(
        &self,
        minute: u32,
        from: Option<Reading>,
        observer: &mut (dyn FnMut(Event) + Send),
    ) {
        let change = match (from, self.shop.steady_reading().await) {
            (Some(from), Ok(now)) => Some(now.since(&from)),
            _ => None,
        };
        let cost = match change {
            Some(c) => format!(
                ": since it was half back, {:.1} payment calls a checkout, {:.0} checkouts failed without a payment, {:.0} placed",
                c.payment_calls_per_checkout().unwrap_or(0.0),
                c.unpaid(),
                c.placed
            ),
            None => String::new(),
        };
        match self.shop.restore_payment().await {
            Ok(_) => {
                observer(Event::Milestone(format!("Minute {minute}: the payment processor is back to normal{cost}")))
            }
            Err(error) => observer(Event::Trouble(format!("Could not restore the payment processor: {error}"))),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn settings(duration: f64, retry_storm: bool) -> Settings {
        Settings {
            speedup: 30.0,
            peak_rpm: 300.0,
            duration_minutes: duration,
            pool_size: 20,
            pool_timeout_ms: 5000,
            retry_storm,
        }
    }

    #[test]
    fn the_phase_runs_from_minute_10_to_15_only_when_asked() {
        let at = |duration: f64| move |m: f64| (m * duration / 30.0).round() as u32;
        assert_eq!(minutes(&settings(30.0, true), at(30.0), 15), Some([10, 12, 15]));
        assert_eq!(minutes(&settings(30.0, false), at(30.0), 15), None);
        // A 60-minute timeline keeps the shape; the phase ends before the indexes go.
        assert_eq!(minutes(&settings(60.0, true), at(60.0), 30), Some([20, 24, 30]));
    }

    #[test]
    fn the_slowed_processor_completes_its_share_of_the_checkouts() {
        assert_eq!(work_ms(SLOW_SHARE, 4.0), Some(500), "2 a second");
        assert_eq!(work_ms(SLOW_SHARE, 100.0), Some(20), "50 a second");
        assert_eq!(work_ms(HALF_BACK_SHARE, 100.0), Some(5), "200 a second");
        // Too few checkouts: an authorization would take as long as checkout waits for it.
        assert_eq!(work_ms(SLOW_SHARE, 0.75), None, "the fallback peak's");
        assert_eq!(work_ms(SLOW_SHARE, 0.0), None, "none measured");
    }

    #[test]
    fn a_timeline_too_short_for_the_phase_has_none() {
        assert_eq!(settings(30.0, true).storm_minutes(), Some([10, 12, 15]));
        assert_eq!(settings(5.0, true).storm_minutes(), None);
    }
}
