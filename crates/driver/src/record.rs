//! What a run measured: HDR latency histograms (µs), status codes, errors by kind,
//! per step — merged across every request task.

use std::collections::BTreeMap;
use std::sync::Mutex;
use std::time::Duration;

use hdrhistogram::Histogram;
use serde::Serialize;

/// Latencies up to a minute at 3 significant digits.
fn histogram() -> Histogram<u64> {
    Histogram::new_with_bounds(1, 60_000_000, 3).expect("valid histogram bounds")
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub enum Outcome {
    Status(u16),
    Connect,
    Timeout,
    Other,
}

impl Outcome {
    /// Connection failures, timeouts, 4xx and 5xx are errors.
    pub fn error_kind(self) -> Option<&'static str> {
        match self {
            Outcome::Status(s) if (400..500).contains(&s) => Some("4xx"),
            Outcome::Status(s) if s >= 500 => Some("5xx"),
            Outcome::Status(_) => None,
            Outcome::Connect => Some("connect"),
            Outcome::Timeout => Some("timeout"),
            Outcome::Other => Some("other"),
        }
    }
}

struct Totals {
    latency: Histogram<u64>,
    statuses: BTreeMap<u16, u64>,
    errors: BTreeMap<&'static str, u64>,
    steps: BTreeMap<String, StepTotals>,
    requests: u64,
    dropped: u64,
}

struct StepTotals {
    latency: Histogram<u64>,
    requests: u64,
    errors: u64,
}

pub struct Recorder {
    totals: Mutex<Totals>,
}

#[derive(Debug, Clone, Serialize, PartialEq)]
pub struct Percentiles {
    pub p50: f64,
    pub p90: f64,
    pub p95: f64,
    pub p99: f64,
    pub max: f64,
}

#[derive(Debug, Clone, Serialize)]
pub struct StepReport {
    pub requests: u64,
    pub errors: u64,
    pub latency_ms: Percentiles,
}

/// The figures of a run so far: what `--out`, `/status` and the summary show.
#[derive(Debug, Clone, Serialize)]
pub struct Snapshot {
    pub profile: String,
    pub model: &'static str,
    pub elapsed_s: f64,
    pub target_rps: f64,
    pub requests: u64,
    pub errors: u64,
    pub error_rate: f64,
    pub dropped: u64,
    pub achieved_rps: f64,
    pub latency_ms: Percentiles,
    pub status_counts: BTreeMap<String, u64>,
    pub errors_by_kind: BTreeMap<String, u64>,
    pub steps: BTreeMap<String, StepReport>,
}

fn percentiles(h: &Histogram<u64>) -> Percentiles {
    let ms = |us: u64| (us as f64 / 10.0).round() / 100.0;
    if h.is_empty() {
        return Percentiles { p50: 0.0, p90: 0.0, p95: 0.0, p99: 0.0, max: 0.0 };
    }
    Percentiles {
        p50: ms(h.value_at_quantile(0.50)),
        p90: ms(h.value_at_quantile(0.90)),
        p95: ms(h.value_at_quantile(0.95)),
        p99: ms(h.value_at_quantile(0.99)),
        max: ms(h.max()),
    }
}

impl Default for Recorder {
    fn default() -> Self {
        Recorder {
            totals: Mutex::new(Totals {
                latency: histogram(),
                statuses: BTreeMap::new(),
                errors: BTreeMap::new(),
                steps: BTreeMap::new(),
                requests: 0,
                dropped: 0,
            }),
        }
    }
}

impl Recorder {
    /// One finished request. `latency` runs from the intended start in the open model.
    pub fn record(&self, step: &str, outcome: Outcome, latency: Duration) {
        let micros = (latency.as_micros() as u64).clamp(1, 60_000_000);
        let mut t = self.totals.lock().unwrap_or_else(|p| p.into_inner());
        t.requests += 1;
        t.latency.saturating_record(micros);
        if let Outcome::Status(status) = outcome {
            *t.statuses.entry(status).or_default() += 1;
        }
        let error = outcome.error_kind();
        if let Some(kind) = error {
            *t.errors.entry(kind).or_default() += 1;
        }
        if !t.steps.contains_key(step) {
            t.steps.insert(step.to_string(), StepTotals { latency: histogram(), requests: 0, errors: 0 });
        }
        let Some(entry) = t.steps.get_mut(step) else { return };
        entry.requests += 1;
        entry.errors += u64::from(error.is_some());
        entry.latency.saturating_record(micros);
    }

    /// A request that was due while the concurrency cap was reached: counted, not sent.
    pub fn drop_one(&self) {
        self.totals.lock().unwrap_or_else(|p| p.into_inner()).dropped += 1;
    }

    /// The figures so far, and a fresh start: one window of a timeline.
    pub fn take(&self, profile: &str, elapsed: Duration, target_rps: f64) -> Snapshot {
        let mut t = self.totals.lock().unwrap_or_else(|p| p.into_inner());
        let snapshot = summarize(&t, profile, "open", elapsed, target_rps);
        *t = Recorder::default().totals.into_inner().unwrap_or_else(|p| p.into_inner());
        snapshot
    }

    pub fn requests(&self) -> u64 {
        self.totals.lock().unwrap_or_else(|p| p.into_inner()).requests
    }

    pub fn snapshot(&self, profile: &str, model: &'static str, elapsed: Duration, target_rps: f64) -> Snapshot {
        let t = self.totals.lock().unwrap_or_else(|p| p.into_inner());
        summarize(&t, profile, model, elapsed, target_rps)
    }
}

fn summarize(t: &Totals, profile: &str, model: &'static str, elapsed: Duration, target_rps: f64) -> Snapshot {
    {
        let errors: u64 = t.errors.values().sum();
        let elapsed_s = elapsed.as_secs_f64();
        Snapshot {
            profile: profile.to_string(),
            model,
            elapsed_s: (elapsed_s * 100.0).round() / 100.0,
            target_rps,
            requests: t.requests,
            errors,
            error_rate: if t.requests == 0 { 0.0 } else { errors as f64 / t.requests as f64 },
            dropped: t.dropped,
            achieved_rps: if elapsed_s > 0.0 { (t.requests as f64 / elapsed_s * 100.0).round() / 100.0 } else { 0.0 },
            latency_ms: percentiles(&t.latency),
            status_counts: t.statuses.iter().map(|(s, n)| (s.to_string(), *n)).collect(),
            errors_by_kind: t.errors.iter().map(|(k, n)| (k.to_string(), *n)).collect(),
            steps: t
                .steps
                .iter()
                .map(|(name, s)| {
                    (
                        name.clone(),
                        StepReport { requests: s.requests, errors: s.errors, latency_ms: percentiles(&s.latency) },
                    )
                })
                .collect(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn percentiles_come_from_every_recorded_request() {
        let recorder = Recorder::default();
        for ms in 1..=100u64 {
            recorder.record("read", Outcome::Status(200), Duration::from_millis(ms));
        }
        recorder.record("write", Outcome::Status(503), Duration::from_millis(500));
        recorder.record("write", Outcome::Timeout, Duration::from_secs(10));
        recorder.drop_one();
        let s = recorder.snapshot("p", "open", Duration::from_secs(10), 10.0);
        assert_eq!((s.requests, s.errors, s.dropped), (102, 2, 1));
        assert!((s.latency_ms.p50 - 51.0).abs() < 1.0, "{:?}", s.latency_ms);
        assert!((s.latency_ms.max - 10_000.0).abs() < 10.0, "{:?}", s.latency_ms);
        assert_eq!(s.status_counts["200"], 100);
        assert_eq!((s.errors_by_kind["5xx"], s.errors_by_kind["timeout"]), (1, 1));
        assert_eq!((s.steps["write"].requests, s.steps["write"].errors), (2, 2));
        assert_eq!(s.achieved_rps, 10.2);
    }
}
