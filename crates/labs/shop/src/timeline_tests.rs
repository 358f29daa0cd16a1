//! The timeline's schedule and shape.

use super::*;

fn settings(speedup: f64, duration: f64) -> Settings {
    Settings {
        speedup,
        peak_rpm: 120.0,
        duration_minutes: duration,
        pool_size: 20,
        pool_timeout_ms: 5000,
        retry_storm: false,
    }
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
