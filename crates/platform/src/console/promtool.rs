//! Test-only: runs the promtool unit tests of deploy/prometheus/tests against this
//! evaluator, so the console is proven to alert exactly when Prometheus would. Also the
//! in-memory `Source` and promtool's series notation, which the other modules' tests use.

use std::collections::{BTreeMap, BTreeSet};

use serde::Deserialize;

use super::alerts::{AlertState, RuleState, parse_rules};
use super::eval::{Labels, Source};
use super::promql::{self, Expr, MatchOp, Matcher};

/// Series in memory, each with samples ascending by time.
#[derive(Debug, Default)]
pub(super) struct MemorySource {
    series: Vec<(Labels, Vec<(i64, f64)>)>,
}

impl MemorySource {
    /// Adds a series written as promtool's `series` (`name{a="b"}`) with promtool's
    /// `values` notation, the i-th value at `i × interval_ms`.
    pub(super) fn add(&mut self, series: &str, values: &str, interval_ms: i64) -> Result<(), String> {
        let values = expand_values(values)?;
        let points: Vec<(i64, f64)> =
            values.into_iter().enumerate().map(|(i, v)| (i as i64 * interval_ms, v)).collect();
        self.add_points(series, &points)
    }

    /// Adds a series with the given `(ms, value)` points, ascending by time.
    pub(super) fn add_points(&mut self, series: &str, points: &[(i64, f64)]) -> Result<(), String> {
        self.series.push((series_labels(series)?, points.to_vec()));
        Ok(())
    }
}

impl Source for MemorySource {
    fn select(&self, matchers: &[Matcher], from_ms: i64, to_ms: i64) -> Vec<(Labels, Vec<(i64, f64)>)> {
        self.series
            .iter()
            .filter(|(labels, _)| matchers.iter().all(|m| m.matches(labels.get(&m.name).map_or("", String::as_str))))
            .map(|(labels, points)| {
                let points: Vec<(i64, f64)> =
                    points.iter().copied().filter(|(t, _)| (from_ms..=to_ms).contains(t)).collect();
                (labels.clone(), points)
            })
            .filter(|(_, points)| !points.is_empty())
            .collect()
    }
}

/// `name{a="b", c="d"}` → labels, read with the query parser's selector syntax.
fn series_labels(series: &str) -> Result<Labels, String> {
    let Expr::Vector(matchers) = promql::parse(series).map_err(|e| format!("series `{series}`: {e}"))? else {
        return Err(format!("series `{series}` is not a selector"));
    };
    matchers
        .into_iter()
        .map(|m| match m.op {
            MatchOp::Equal => Ok((m.name, m.value)),
            _ => Err(format!("series `{series}`: only `=` may give a label")),
        })
        .collect()
}

/// Expands promtool's values notation: `a` is one value, `axn` is n+1 copies of a, and
/// `a+bxn` / `a-bxn` are n+1 values from a in steps of b, accumulated as promtool does.
/// `_` (no sample) and `stale` are refused: no test uses them.
fn expand_values(text: &str) -> Result<Vec<f64>, String> {
    let number = |s: &str| s.parse::<f64>().map_err(|_| format!("bad value `{s}` in `{text}`"));
    let mut values = Vec::new();
    for item in text.split_whitespace() {
        let Some((start, count)) = item.split_once('x') else {
            values.push(number(item)?);
            continue;
        };
        let count: u64 = count.parse().map_err(|_| format!("bad repeat count in `{item}`"))?;
        // The step's sign is the first + or - after the start's first character that does
        // not belong to an exponent.
        let bytes = start.as_bytes();
        let split = (1..bytes.len()).find(|&i| matches!(bytes[i], b'+' | b'-') && !matches!(bytes[i - 1], b'e' | b'E'));
        let (mut value, step) = match split {
            Some(i) => (number(&start[..i])?, number(&start[i..])?),
            None => (number(start)?, 0.0),
        };
        for _ in 0..=count {
            values.push(value);
            value += step;
        }
    }
    Ok(values)
}

#[derive(Deserialize)]
struct TestFile {
    rule_files: Vec<String>,
    evaluation_interval: String,
    tests: Vec<TestGroup>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct TestGroup {
    interval: String,
    input_series: Vec<InputSeries>,
    #[serde(default)]
    alert_rule_test: Vec<AlertTest>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct InputSeries {
    series: String,
    values: String,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct AlertTest {
    eval_time: String,
    alertname: String,
    exp_alerts: Vec<ExpectedAlert>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct ExpectedAlert {
    #[serde(default)]
    exp_labels: BTreeMap<String, String>,
    #[serde(default)]
    exp_annotations: BTreeMap<String, String>,
}

/// An alert as promtool compares it: labels and annotations.
type Compared = (BTreeMap<String, String>, BTreeMap<String, String>);

/// Runs a promtool test file against one rule file as promtool does: per test group, all
/// rules evaluated every `evaluation_interval` from 0 up to the last `eval_time`, state
/// carried; at each `eval_time` the *firing* alerts of the named rule are compared, as a
/// set, with the expected ones (whose labels promtool completes with `alertname`).
/// Returns every disagreement.
fn run_promtool_test(test_yaml: &str, rules_yaml: &str) -> Vec<String> {
    let file: TestFile = serde_norway::from_str(test_yaml).expect("test file parses");
    assert_eq!(file.rule_files.len(), 1, "one rule file per test file");
    let step = promql::parse_duration(&file.evaluation_interval).expect("evaluation_interval");
    let rules = parse_rules(rules_yaml).expect("rule file parses");
    let mut failures = Vec::new();
    for (index, group) in file.tests.iter().enumerate() {
        let interval = promql::parse_duration(&group.interval).expect("interval");
        let mut source = MemorySource::default();
        for input in &group.input_series {
            source.add(&input.series, &input.values, interval).expect("input series");
        }
        let mut checks: Vec<(i64, &AlertTest)> = group
            .alert_rule_test
            .iter()
            .map(|test| (promql::parse_duration(&test.eval_time).expect("eval_time"), test))
            .collect();
        checks.sort_by_key(|(at, _)| *at);
        let end = checks.last().map_or(0, |(at, _)| *at);
        let mut states: Vec<RuleState> = rules.iter().cloned().map(RuleState::new).collect();
        let mut next_check = 0;
        let mut at = 0;
        while at <= end {
            for state in &mut states {
                if let Err(error) = state.evaluate(&source, at) {
                    failures.push(format!("test {index}: rule {} at {at} ms: {error}", state.rule().name));
                }
            }
            // An eval_time between two evaluations is checked against the earlier one.
            while let Some(&(time, test)) = checks.get(next_check).filter(|(time, _)| *time < at + step) {
                next_check += 1;
                let firing: BTreeSet<Compared> = states
                    .iter()
                    .filter(|state| state.rule().name == test.alertname)
                    .flat_map(RuleState::alerts)
                    .filter(|alert| alert.state == AlertState::Firing)
                    .map(|alert| (alert.labels, alert.annotations))
                    .collect();
                let expected: BTreeSet<Compared> = test
                    .exp_alerts
                    .iter()
                    .map(|exp| {
                        let mut labels = exp.exp_labels.clone();
                        labels.insert("alertname".to_string(), test.alertname.clone());
                        (labels, exp.exp_annotations.clone())
                    })
                    .collect();
                if firing != expected {
                    failures.push(format!(
                        "test {index}, {} at {time} ms:\n  expected {expected:#?}\n  got {firing:#?}",
                        test.alertname
                    ));
                }
            }
            at += step;
        }
    }
    failures
}

macro_rules! promtool_test {
    ($name:ident, $file:literal) => {
        #[test]
        fn $name() {
            let failures = run_promtool_test(
                include_str!(concat!("../../../../deploy/prometheus/tests/", $file, "_test.yml")),
                include_str!(concat!("../../../../deploy/prometheus/rules/", $file, ".yml")),
            );
            assert!(failures.is_empty(), "{}", failures.join("\n"));
        }
    };
}

promtool_test!(datasets_rules_agree_with_promtool, "datasets");
promtool_test!(items_rules_agree_with_promtool, "items");
promtool_test!(shop_rules_agree_with_promtool, "shop");
promtool_test!(vote_rules_agree_with_promtool, "vote");

/// The rule files the tests above cover, by name.
const COVERED: [(&str, &str); 4] = [
    ("datasets", include_str!("../../../../deploy/prometheus/rules/datasets.yml")),
    ("items", include_str!("../../../../deploy/prometheus/rules/items.yml")),
    ("shop", include_str!("../../../../deploy/prometheus/rules/shop.yml")),
    ("vote", include_str!("../../../../deploy/prometheus/rules/vote.yml")),
];

/// A rule file added to deploy/prometheus/rules without its agreement test here would
/// be a silent gap: every file there must be covered, and have its promtool test.
#[test]
fn every_rule_file_is_covered() {
    let root = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../../deploy/prometheus");
    let mut files: Vec<String> = std::fs::read_dir(root.join("rules"))
        .expect("deploy/prometheus/rules")
        .filter_map(|entry| entry.ok()?.file_name().to_str()?.strip_suffix(".yml").map(str::to_string))
        .collect();
    files.sort();
    let covered: Vec<&str> = COVERED.iter().map(|(name, _)| *name).collect();
    assert_eq!(files, covered, "add the new rule file to COVERED and a promtool_test! line");
    for name in covered {
        assert!(root.join("tests").join(format!("{name}_test.yml")).exists(), "{name} has a promtool test");
    }
}

#[test]
fn every_rule_file_parses() {
    for (file, yaml) in COVERED {
        let rules = parse_rules(yaml).unwrap_or_else(|e| panic!("{file}: {e}"));
        assert!(!rules.is_empty(), "{file} has rules");
    }
}

#[test]
fn unsupported_features_are_parse_errors_naming_them() {
    for (query, feature) in [
        (r#"label_replace(up, "a", "$1", "b", "(.*)")"#, "`label_replace`"),
        ("rate(x[5m] offset 1h)", "`offset`"),
        ("x @ 1700000000", "`@`"),
        ("max_over_time(rate(x[1m])[5m:1m])", "subquery"),
        ("topk(3, x)", "`topk`"),
        ("quantile(0.9, x)", "`quantile`"),
        ("a / on(x) group_left b", "`group_left`"),
        (r#""text""#, "string literal"),
        ("abs(x)", "`abs`"),
        (r#"x{a=~"(?i)b"}"#, "regex feature `(?flags)`"),
    ] {
        let error = promql::parse(query).expect_err(query).to_string();
        assert!(error.contains(feature), "{query}: {error}");
        let is_regex = feature.starts_with("regex");
        assert!(is_regex || error.contains("is not supported by the console's evaluator"), "{query}: {error}");
    }
}

#[test]
fn series_notation() {
    assert_eq!(expand_values("0x2 1 2 5x1").unwrap(), [0.0, 0.0, 0.0, 1.0, 2.0, 5.0, 5.0]);
    assert_eq!(expand_values("0+8x3").unwrap(), [0.0, 8.0, 16.0, 24.0]);
    assert_eq!(expand_values("10-2.5x2 -1 1e3").unwrap(), [10.0, 7.5, 5.0, -1.0, 1000.0]);
    assert!(expand_values("_x3").is_err() && expand_values("stale").is_err());
    let labels = series_labels(r#"up{job="vote-api", instance="vote-api-0"}"#).unwrap();
    assert_eq!(labels.get("__name__").map(String::as_str), Some("up"));
    assert_eq!(labels.len(), 3);
}
