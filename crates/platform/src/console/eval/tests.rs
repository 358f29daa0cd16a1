//! The evaluator against numbers worked out by hand from Prometheus's algorithms.

use super::super::promql::parse;
use super::super::promtool::MemorySource;
use super::*;

/// A source holding `(series, values)` at a 1 s interval, or with explicit points.
fn source(series: &[(&str, &str)]) -> MemorySource {
    let mut source = MemorySource::default();
    for (name, values) in series {
        source.add(name, values, 1000).unwrap();
    }
    source
}

fn points(series: &str, points: &[(i64, f64)]) -> MemorySource {
    let mut source = MemorySource::default();
    source.add_points(series, points).unwrap();
    source
}

fn query(source: &MemorySource, text: &str, at_ms: i64) -> Vec<(Labels, f64)> {
    match evaluate(&parse(text).unwrap(), source, at_ms).unwrap() {
        Value::Vector(samples) => samples,
        Value::Scalar(v) => panic!("{text} gave scalar {v}"),
    }
}

fn only(source: &MemorySource, text: &str, at_ms: i64) -> f64 {
    let result = query(source, text, at_ms);
    assert_eq!(result.len(), 1, "{text}: {result:?}");
    result[0].1
}

fn labels(pairs: &[(&str, &str)]) -> Labels {
    pairs.iter().map(|(k, v)| (k.to_string(), v.to_string())).collect()
}

fn close(a: f64, b: f64) -> bool {
    (a - b).abs() < 1e-9
}

#[test]
fn rate_extrapolates_half_an_interval_when_the_window_edges_are_far() {
    // Samples at 20, 30, 40 s in the window [0, 60 s]: increase 20 over 20 s sampled,
    // average interval 10 s. Both edges are 20 s away (> 1.1 × 10 s), so each side is
    // extrapolated by 5 s only: 20 × 30/20 = 30; rate = 30 / 60 = 0.5. (The zero point,
    // 20 × 100/20 = 100 s back, is further than the window's start.)
    let source = points("x", &[(20_000, 100.0), (30_000, 110.0), (40_000, 120.0)]);
    assert!(close(only(&source, "increase(x[1m])", 60_000), 30.0));
    assert!(close(only(&source, "rate(x[1m])", 60_000), 0.5));
    // Edges near: window [10 s, 70 s] over 15, 30, 45, 60 s: extrapolated all the way,
    // 30 × 60/45 = 40.
    let source = points("x", &[(15_000, 10.0), (30_000, 20.0), (45_000, 30.0), (60_000, 40.0)]);
    assert!(close(only(&source, "increase(x[1m])", 70_000), 40.0));
}

#[test]
fn increase_stops_at_the_counters_zero_point() {
    // Samples 2, 12, 22 at 20, 30, 40 s, window [-15 s, 45 s]: the counter would reach 0
    // 20 × 2/20 = 2 s before its first sample, nearer than the window's start (35 s), so
    // the start is extrapolated by 2 s and the end by its 5 s: 20 × 27/20 = 27.
    let source = points("x", &[(20_000, 2.0), (30_000, 12.0), (40_000, 22.0)]);
    assert!(close(only(&source, "increase(x[1m])", 45_000), 27.0));
}

#[test]
fn increase_handles_a_counter_reset() {
    // 5, 10, 2, 7 at 0, 10, 20, 30 s: the reset adds the 10 before it, 7 - 5 + 10 = 12.
    // Window [-30 s, 30 s]: the zero point (30 × 5/12 = 12.5 s) is beyond 1.1 × 10 s, so
    // the start gets half an interval, the end nothing: 12 × 35/30 = 14.
    let source = points("x", &[(0, 5.0), (10_000, 10.0), (20_000, 2.0), (30_000, 7.0)]);
    assert!(close(only(&source, "increase(x[1m])", 30_000), 14.0));
    let one_sample = points("x", &[(0, 5.0)]);
    assert!(query(&one_sample, "rate(x[1m])", 30_000).is_empty(), "no rate from one sample");
}

#[test]
fn histogram_quantile_interpolates_within_a_bucket() {
    let source = source(&[
        (r#"h_bucket{job="a", le="0.1"}"#, "10"),
        (r#"h_bucket{job="a", le="0.5"}"#, "30"),
        (r#"h_bucket{job="a", le="1"}"#, "40"),
        (r#"h_bucket{job="a", le="+Inf"}"#, "40"),
        (r#"h_bucket{job="b", le="1"}"#, "5"),
    ]);
    // Rank 20 falls in (0.1, 0.5] holding 20 of them, 10 below: 0.1 + 0.4 × 10/20.
    let result = query(&source, "histogram_quantile(0.5, h_bucket)", 0);
    assert_eq!(result.len(), 2);
    assert_eq!(result[0].0, labels(&[("job", "a")]), "le and __name__ dropped");
    assert!(close(result[0].1, 0.3));
    assert!(result[1].1.is_nan(), "no +Inf bucket, no quantile");
    // Rank 2 in the lowest bucket, interpolated from 0; rank 39.6 in (0.5, 1].
    assert!(close(query(&source, "histogram_quantile(0.05, h_bucket)", 0)[0].1, 0.02));
    assert!(close(query(&source, "histogram_quantile(0.99, h_bucket)", 0)[0].1, 0.98));
    // Falling counts are raised to the maximum below them: le=2 counts as 10, not 4, so
    // rank 15 lies in (2, 4] holding 10, 5 into it: 2 + 2 × 5/10 (unfixed: 3.375).
    let broken = self::source(&[
        (r#"h{le="1"}"#, "10"),
        (r#"h{le="2"}"#, "4"),
        (r#"h{le="4"}"#, "20"),
        (r#"h{le="+Inf"}"#, "20"),
    ]);
    assert!(close(only(&broken, "histogram_quantile(0.75, h)", 0), 3.0));
}

#[test]
fn and_on_nothing_matches_any_sample_on_the_right() {
    let source = source(&[(r#"a{x="1"}"#, "1"), (r#"b{y="2"}"#, "2")]);
    let result = query(&source, "a and on() b", 0);
    assert_eq!(result, [(labels(&[("__name__", "a"), ("x", "1")]), 1.0)]);
    assert!(query(&source, "a and b", 0).is_empty(), "different labels do not match");
    assert!(query(&source, "a and on() missing", 0).is_empty());
    assert_eq!(query(&source, "a unless on() missing", 0).len(), 1);
    assert_eq!(query(&source, "a or b", 0).len(), 2);
}

#[test]
fn comparisons_filter_and_bool_gives_zero_or_one() {
    let source = source(&[(r#"x{i="1"}"#, "3"), (r#"x{i="2"}"#, "7"), (r#"y{i="1"}"#, "3"), (r#"y{i="2"}"#, "9")]);
    assert_eq!(query(&source, "x > 5", 0), [(labels(&[("__name__", "x"), ("i", "2")]), 7.0)]);
    assert_eq!(query(&source, "5 < x", 0), [(labels(&[("__name__", "x"), ("i", "2")]), 7.0)]);
    assert_eq!(
        query(&source, "x > bool 5", 0),
        [(labels(&[("i", "1")]), 0.0), (labels(&[("i", "2")]), 1.0)],
        "bool keeps every sample and drops the name"
    );
    // Vector against vector: the left side's labels (name kept) and value.
    assert_eq!(query(&source, "x >= y", 0), [(labels(&[("__name__", "x"), ("i", "1")]), 3.0)]);
    assert_eq!(query(&source, "y - x", 0), [(labels(&[("i", "1")]), 0.0), (labels(&[("i", "2")]), 2.0)]);
    assert_eq!(query(&source, "y / on(i) x", 0)[1], (labels(&[("i", "2")]), 9.0 / 7.0));
    assert!(matches!(evaluate(&parse("1 < bool 2").unwrap(), &source, 0), Ok(Value::Scalar(v)) if v == 1.0));
    assert!(matches!(evaluate(&parse("2 * 3 + 1").unwrap(), &source, 0), Ok(Value::Scalar(v)) if v == 7.0));
}

#[test]
fn duplicate_matches_on_the_right_are_an_error() {
    let source = source(&[(r#"x{i="1"}"#, "1"), (r#"y{i="1", j="a"}"#, "1"), (r#"y{i="1", j="b"}"#, "1")]);
    let error = evaluate(&parse("x + on(i) y").unwrap(), &source, 0).unwrap_err();
    assert!(error.0.contains("duplicate series"), "{error}");
}

#[test]
fn sum_by_keeps_only_the_listed_labels() {
    let source = source(&[
        (r#"r{job="a", instance="1"}"#, "1"),
        (r#"r{job="a", instance="2"}"#, "2"),
        (r#"r{job="b", instance="1"}"#, "4"),
    ]);
    let by_job = [(labels(&[("job", "a")]), 3.0), (labels(&[("job", "b")]), 4.0)];
    assert_eq!(query(&source, "sum by (job) (r)", 0), by_job);
    assert_eq!(query(&source, "sum(r) by (job)", 0), by_job);
    assert_eq!(query(&source, "sum without (instance) (r)", 0), by_job);
    assert_eq!(query(&source, "sum(r)", 0), [(Labels::new(), 7.0)]);
    assert_eq!(query(&source, "count by (instance) (r)", 0)[0], (labels(&[("instance", "1")]), 2.0));
    // Prometheus's incremental mean, 1 → 1 + 2/2 - 1/2 → 1.5 + 4/3 - 1.5/3, rounds
    // differently from 7/3 in the last bit.
    assert!(close(query(&source, "avg(r)", 0)[0].1, 7.0 / 3.0));
    assert_eq!(query(&source, "max by (job) (r)", 0)[0].1, 2.0);
    assert_eq!(query(&source, "min(r)", 0)[0].1, 1.0);
    assert!(query(&source, "sum(missing)", 0).is_empty(), "no series, no sum");
}

#[test]
fn regex_matchers_are_anchored() {
    let source = source(&[
        (r#"http_requests_total{status="500"}"#, "1"),
        (r#"http_requests_total{status="503"}"#, "2"),
        (r#"http_requests_total{status="200"}"#, "4"),
        (r#"http_requests_total{status="1500"}"#, "8"),
    ]);
    assert_eq!(only(&source, r#"sum(http_requests_total{status=~"5.."})"#, 0), 3.0);
    assert_eq!(only(&source, r#"sum(http_requests_total{status!~"5.."})"#, 0), 12.0);
    assert_eq!(only(&source, r#"sum({__name__="http_requests_total", status!="200"})"#, 0), 11.0);
}

#[test]
fn over_time_functions_and_lookback() {
    let source = source(&[("g", "4 2 6 8")]);
    assert_eq!(only(&source, "min_over_time(g[2s])", 3000), 2.0);
    assert_eq!(only(&source, "max_over_time(g[2s])", 2000), 6.0);
    assert_eq!(only(&source, "avg_over_time(g[1m])", 3000), 5.0);
    assert_eq!(only(&source, "g", 3000 + LOOKBACK_MS), 8.0, "the lookback is closed, as in Prometheus 2.x");
    assert!(query(&source, "g", 3001 + LOOKBACK_MS).is_empty(), "stale after five minutes");
    assert_eq!(query(&source, "-g", 0), [(Labels::new(), -4.0)]);
}
