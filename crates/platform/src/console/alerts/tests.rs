//! Rule files and the alert state machine.

use super::super::promtool::MemorySource;
use super::*;

fn rule(extra: &str) -> Rule {
    let yaml = format!(
        "groups:\n  - name: g\n    rules:\n      - alert: Down\n        expr: up == 0\n{extra}        labels:\n          \
         severity: critical\n        annotations:\n          summary: \"{{{{ $labels.instance }}}} is down ({{{{ $value }}}})\"\n"
    );
    let mut rules = parse_rules(&yaml).unwrap();
    assert_eq!(rules.len(), 1);
    rules.remove(0)
}

/// `up` of one instance at 1 s intervals.
fn up(values: &str) -> MemorySource {
    let mut source = MemorySource::default();
    source.add(r#"up{instance="a"}"#, values, 1000).unwrap();
    source
}

/// The alert's state after evaluating every second from 0 to `until_s`.
fn state_at(rule: &Rule, source: &MemorySource, until_s: i64) -> Option<AlertState> {
    let mut state = RuleState::new(rule.clone());
    for at in 0..=until_s {
        state.evaluate(source, at * 1000).unwrap();
    }
    let alerts = state.alerts();
    assert!(alerts.len() <= 1);
    alerts.first().map(|alert| alert.state)
}

#[test]
fn pending_until_for_has_elapsed_then_firing() {
    let rule = rule("        for: 10s\n");
    assert_eq!(rule.for_ms, 10_000);
    let source = up("1x4 0x30");
    assert_eq!(state_at(&rule, &source, 4), None);
    assert_eq!(state_at(&rule, &source, 5), Some(AlertState::Pending), "active from 5 s");
    assert_eq!(state_at(&rule, &source, 14), Some(AlertState::Pending));
    assert_eq!(state_at(&rule, &source, 15), Some(AlertState::Firing), "for elapsed at 15 s");

    let mut state = RuleState::new(rule);
    for at in 0..=20 {
        state.evaluate(&source, at * 1000).unwrap();
    }
    let alert = &state.alerts()[0];
    let expected_labels: BTreeMap<String, String> =
        [("alertname", "Down"), ("instance", "a"), ("severity", "critical")].map(|(k, v)| (k.into(), v.into())).into();
    assert_eq!(alert.labels, expected_labels, "series labels without __name__, rule labels, alertname");
    assert_eq!(alert.annotations["summary"], "a is down (0)");
    assert_eq!((alert.active_since_ms, alert.fired_since_ms), (5000, Some(15_000)));
}

#[test]
fn without_for_fires_at_once_and_a_pending_alert_that_stops_is_gone() {
    assert_eq!(state_at(&rule(""), &up("1 0"), 1), Some(AlertState::Firing));
    let rule = rule("        for: 10s\n");
    assert_eq!(state_at(&rule, &up("0x5 1x5"), 6), None);
}

#[test]
fn keep_firing_for_counts_from_the_first_evaluation_without_the_alert() {
    let rule = rule("        keep_firing_for: 5s\n");
    // Down at 0-2 s, up from 3 s: kept at 3..7 s (less than 5 s after 3 s), gone at 8 s.
    let source = up("0x2 1x10");
    assert_eq!(state_at(&rule, &source, 7), Some(AlertState::Firing));
    assert_eq!(state_at(&rule, &source, 8), None);
    // Without keep_firing_for, a resolved alert is dropped at once.
    assert_eq!(state_at(&self::rule(""), &source, 3), None);
}

#[test]
fn rule_file_errors_name_the_group_and_rule() {
    let recording = "groups:\n  - name: g\n    rules:\n      - record: job:up:sum\n        expr: sum(up)\n";
    let error = parse_rules(recording).unwrap_err();
    assert!(error.contains("group `g`, rule `job:up:sum`: recording rules are not supported"), "{error}");
    let bad = "groups:\n  - name: g\n    rules:\n      - alert: A\n        expr: up offset 5m\n";
    let error = parse_rules(bad).unwrap_err();
    assert!(error.contains("group `g`, rule `A`") && error.contains("`offset`"), "{error}");
    let template = "groups:\n  - name: g\n    rules:\n      - alert: A\n        expr: up\n        annotations:\n          \
                    s: \"{{ $value | humanize }}\"\n";
    assert!(parse_rules(template).unwrap_err().contains("annotation `s`"));
    assert!(
        parse_rules("groups:\n  - name: g\n    rules:\n      - alert: A\n        expr: up\n        fr: 1m\n").is_err()
    );
}

#[test]
fn an_evaluation_error_leaves_the_state_unchanged() {
    // From 1 s a second series joins `up` that is the same alert once __name__ is dropped.
    let mut source = up("0x10");
    source.add_points(r#"other{instance="a"}"#, &[(1000, 0.0)]).unwrap();
    let rule = Rule { expr: promql::parse(r#"{__name__=~"up|other"} == 0"#).unwrap(), ..rule("        for: 10s\n") };
    let mut state = RuleState::new(rule);
    state.evaluate(&source, 0).unwrap();
    let before = state.alerts();
    assert_eq!(before.len(), 1);
    let error = state.evaluate(&source, 1000).unwrap_err();
    assert!(error.0.contains("same labelset"), "{error}");
    assert_eq!(state.last_error(), Some(error.0.as_str()));
    assert_eq!(state.alerts(), before);
}
