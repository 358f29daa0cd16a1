//! Rates, durations and phases as a speaker types them: `50`, `50rps`, `3000rpm`,
//! `30s`, `10m`, `--phase 10m:30..120rpm`.

use std::time::Duration;

/// One stretch of the traffic timeline: the rate goes linearly from `from` to `to`
/// requests per second over `duration`.
#[derive(Debug, Clone, PartialEq)]
pub struct Phase {
    pub duration: Duration,
    pub from: f64,
    pub to: f64,
}

/// The whole timeline.
#[derive(Debug, Clone, PartialEq)]
pub struct Shape {
    pub phases: Vec<Phase>,
}

impl Shape {
    pub fn constant(rps: f64, duration: Duration) -> Shape {
        Shape { phases: vec![Phase { duration, from: rps, to: rps }] }
    }

    pub fn total(&self) -> Duration {
        self.phases.iter().map(|p| p.duration).sum()
    }

    /// The target rate `t` seconds into the timeline; 0 after its end.
    pub fn rate_at(&self, t: f64) -> f64 {
        let mut start = 0.0;
        for phase in &self.phases {
            let length = phase.duration.as_secs_f64();
            if t < start + length {
                let progress = if length > 0.0 { (t - start) / length } else { 1.0 };
                return phase.from + (phase.to - phase.from) * progress;
            }
            start += length;
        }
        0.0
    }

    /// When the next request is due after one at `t`: the time at which the integral of
    /// the rate from `t` reaches one request; None when the timeline ends first. Exact
    /// for linear ramps (trapezoids over 10 ms slices), and right at low rates too,
    /// where `t + 1/rate(t)` would jump far past a ramp's start.
    pub fn next_arrival(&self, mut t: f64) -> Option<f64> {
        let end = self.total().as_secs_f64();
        let mut need = 1.0;
        while t < end {
            let slice = 0.01f64.min(end - t);
            let average = (self.rate_at(t) + self.rate_at((t + slice).min(end - 1e-9))) / 2.0;
            let got = average * slice;
            if got >= need && average > 0.0 {
                return Some(t + need / average);
            }
            need -= got;
            t += slice;
        }
        None
    }

    /// Requests the timeline asks for between `a` and `b` seconds (the integral).
    pub fn expected_between(&self, a: f64, b: f64) -> f64 {
        const STEPS: usize = 1000;
        let dt = (b - a) / STEPS as f64;
        (0..STEPS).map(|i| self.rate_at(a + (i as f64 + 0.5) * dt) * dt).sum()
    }
}

/// `500ms`, `30s`, `10m`, `1h`, or a bare number of seconds.
pub fn parse_duration(text: &str) -> Result<Duration, String> {
    let text = text.trim();
    let (number, unit) = split_unit(text);
    let value: f64 = number.parse().map_err(|_| format!("'{text}' is not a duration (try 30s, 10m, 500ms)"))?;
    let seconds = match unit {
        "ms" => value / 1000.0,
        "" | "s" => value,
        "m" => value * 60.0,
        "h" => value * 3600.0,
        _ => return Err(format!("'{text}': unknown unit '{unit}' (use ms, s, m or h)")),
    };
    if !(seconds.is_finite() && seconds >= 0.0) {
        return Err(format!("'{text}' is not a duration"));
    }
    Ok(Duration::from_secs_f64(seconds))
}

/// A rate in requests per second: `50`, `50rps`, `50/s`, `3000rpm`, `3000/m`.
pub fn parse_rate(text: &str) -> Result<f64, String> {
    let text = text.trim();
    let (number, unit) = split_unit(text);
    let value: f64 = number.parse().map_err(|_| format!("'{text}' is not a rate (try 50, 50rps, 3000rpm or max)"))?;
    let rps = match unit {
        "" | "rps" | "/s" => value,
        "rpm" | "/m" => value / 60.0,
        _ => return Err(format!("'{text}': unknown unit '{unit}' (use rps or rpm)")),
    };
    if !(rps.is_finite() && rps >= 0.0) {
        return Err(format!("'{text}' is not a rate"));
    }
    Ok(rps)
}

/// `10m:30..120rpm` (a linear ramp) or `5m:120rpm` (constant).
pub fn parse_phase(text: &str) -> Result<Phase, String> {
    let (duration, rates) =
        text.split_once(':').ok_or_else(|| format!("'{text}' is not a phase (try 10m:30..120rpm or 5m:120rpm)"))?;
    let duration = parse_duration(duration)?;
    let (from, to) = match rates.split_once("..") {
        Some((from, to)) => {
            // A unit written once, at the end, applies to both ends: 30..120rpm.
            let (_, unit) = split_unit(to);
            let from = if split_unit(from).1.is_empty() { format!("{from}{unit}") } else { from.to_string() };
            (parse_rate(&from)?, parse_rate(to)?)
        }
        None => {
            let rate = parse_rate(rates)?;
            (rate, rate)
        }
    };
    Ok(Phase { duration, from, to })
}

fn split_unit(text: &str) -> (&str, &str) {
    let end = text.find(|c: char| !(c.is_ascii_digit() || c == '.')).unwrap_or(text.len());
    (&text[..end], text[end..].trim())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_what_a_speaker_types() {
        assert_eq!(parse_duration("30s"), Ok(Duration::from_secs(30)));
        assert_eq!(parse_duration("10m"), Ok(Duration::from_secs(600)));
        assert_eq!(parse_duration("250ms"), Ok(Duration::from_millis(250)));
        assert_eq!(parse_rate("3000rpm"), Ok(50.0));
        assert_eq!(parse_rate("50"), Ok(50.0));
        assert_eq!(parse_phase("10m:30..120rpm"), Ok(Phase { duration: Duration::from_secs(600), from: 0.5, to: 2.0 }));
        assert_eq!(parse_phase("5m:120rpm"), Ok(Phase { duration: Duration::from_secs(300), from: 2.0, to: 2.0 }));
        assert!(parse_rate("fast").is_err());
        assert!(parse_duration("10 parsecs").is_err());
        assert!(parse_phase("10m").is_err());
    }

    #[test]
    fn a_ramp_integrates_to_its_average() {
        let shape = Shape { phases: vec![parse_phase("10s:0..20rps").unwrap(), parse_phase("5s:20rps").unwrap()] };
        assert_eq!(shape.total(), Duration::from_secs(15));
        assert!((shape.rate_at(5.0) - 10.0).abs() < 1e-9);
        assert!((shape.expected_between(0.0, 10.0) - 100.0).abs() < 0.5);
        assert!((shape.expected_between(10.0, 15.0) - 100.0).abs() < 0.5);
        assert_eq!(shape.rate_at(15.0), 0.0);
        let mut arrivals = Vec::new();
        let mut t = 0.0;
        while let Some(next) = shape.next_arrival(t) {
            arrivals.push(next);
            t = next;
        }
        assert!((199..=200).contains(&arrivals.len()), "{}", arrivals.len());
        // ∫₀² 2t dt = 4: a ramp from 0 to 20/s over 10 s sends about 4 in its first 2 s,
        // where stepping by 1/rate(t) from t = 0 would send none.
        let first = arrivals.iter().filter(|&&a| a < 2.0).count();
        assert!((3..=4).contains(&first), "{first}");
    }
}
