//! Prometheus alerting rules without Prometheus: rule files as `promtool check rules` reads
//! them, and each rule's alerts kept as Prometheus's rules/alerting.go keeps them.

mod template;

use std::collections::BTreeMap;

use serde::Deserialize;

use super::eval::{self, EvalError, Labels, Source, Value};
use super::promql::{self, Expr};
use template::Template;

/// One alerting rule of a rule file.
#[derive(Debug, Clone)]
pub struct Rule {
    pub name: String,
    pub expr_text: String,
    pub expr: Expr,
    pub for_ms: i64,
    pub keep_firing_for_ms: i64,
    /// Templates, expanded per alert.
    pub labels: BTreeMap<String, String>,
    /// Templates, expanded per alert.
    pub annotations: BTreeMap<String, String>,
    pub group: String,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RuleFile {
    groups: Vec<GroupEntry>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct GroupEntry {
    name: String,
    /// The group's evaluation interval; accepted and checked, the caller decides when to
    /// evaluate.
    interval: Option<String>,
    #[serde(default)]
    rules: Vec<RuleEntry>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RuleEntry {
    alert: Option<String>,
    record: Option<String>,
    expr: String,
    #[serde(rename = "for")]
    for_: Option<String>,
    keep_firing_for: Option<String>,
    #[serde(default)]
    labels: BTreeMap<String, String>,
    #[serde(default)]
    annotations: BTreeMap<String, String>,
}

/// Parses a Prometheus rule file. Every expression and template is checked now, so that
/// evaluation can only fail on the data; the error names the group and the rule.
pub fn parse_rules(yaml: &str) -> Result<Vec<Rule>, String> {
    let file: RuleFile = serde_norway::from_str(yaml).map_err(|e| format!("not a rule file: {e}"))?;
    let mut rules = Vec::new();
    let mut group_names = Vec::new();
    for group in file.groups {
        if group.name.is_empty() {
            return Err("a group has no name".to_string());
        }
        if group_names.contains(&group.name) {
            return Err(format!("group `{}` is repeated in the same file", group.name));
        }
        group_names.push(group.name.clone());
        if let Some(interval) = &group.interval {
            promql::parse_duration(interval).map_err(|e| format!("group `{}`: interval: {e}", group.name))?;
        }
        for (index, entry) in group.rules.into_iter().enumerate() {
            let which = entry.alert.clone().or(entry.record.clone()).unwrap_or_else(|| format!("#{}", index + 1));
            let rule =
                parse_rule(entry, &group.name).map_err(|e| format!("group `{}`, rule `{which}`: {e}", group.name))?;
            rules.push(rule);
        }
    }
    Ok(rules)
}

fn parse_rule(entry: RuleEntry, group: &str) -> Result<Rule, String> {
    if entry.record.is_some() {
        return Err("recording rules are not supported".to_string());
    }
    let name = entry.alert.ok_or("a rule needs `alert` (or `record`)")?;
    if name.is_empty() {
        return Err("the alert name is empty".to_string());
    }
    // Label and annotation names as Prometheus's rulefmt checks them.
    let valid_name = |s: &str| {
        !s.is_empty()
            && s != "__name__"
            && s.chars().enumerate().all(|(i, c)| c == '_' || c.is_ascii_alphabetic() || (i > 0 && c.is_ascii_digit()))
    };
    let expr = promql::parse(&entry.expr).map_err(|e| format!("expr: {e}"))?;
    let duration = |field: &str, value: Option<String>| match value {
        None => Ok(0),
        Some(text) => promql::parse_duration(&text).map_err(|e| format!("{field}: {e}")),
    };
    for (kind, templates) in [("label", &entry.labels), ("annotation", &entry.annotations)] {
        for (key, text) in templates {
            if !valid_name(key) {
                return Err(format!("`{key}` is not a valid {kind} name"));
            }
            Template::parse(text).map_err(|e| format!("{kind} `{key}`: {e}"))?;
        }
    }
    Ok(Rule {
        name,
        expr_text: entry.expr,
        expr,
        for_ms: duration("for", entry.for_)?,
        keep_firing_for_ms: duration("keep_firing_for", entry.keep_firing_for)?,
        labels: entry.labels,
        annotations: entry.annotations,
        group: group.to_string(),
    })
}

/// Where an active alert is in its life.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum AlertState {
    /// The condition holds, not yet for the rule's `for`.
    Pending,
    Firing,
}

/// One active alert of a rule.
#[derive(Debug, Clone, PartialEq)]
pub struct Alert {
    /// The series' labels without `__name__`, the rule's labels (which win), `alertname`.
    pub labels: BTreeMap<String, String>,
    /// Expanded at the latest evaluation whose result held this alert.
    pub annotations: BTreeMap<String, String>,
    pub state: AlertState,
    pub active_since_ms: i64,
    pub fired_since_ms: Option<i64>,
    /// The sample value at the latest evaluation whose result held this alert.
    pub value: f64,
}

#[derive(Debug, Clone)]
struct Active {
    alert: Alert,
    /// The first evaluation, since the alert last was in the result, at which it was not:
    /// `keep_firing_for` counts from there, as in alerting.go.
    keep_firing_since_ms: Option<i64>,
}

/// A rule and its active alerts, carried from one evaluation to the next.
#[derive(Debug, Clone)]
pub struct RuleState {
    rule: Rule,
    /// The rule's templates, parsed once; `parse_rules` has already refused bad ones, and
    /// a hand-made `Rule`'s bad template expands to its error, as in Prometheus.
    labels: Vec<(String, Result<Template, String>)>,
    annotations: Vec<(String, Result<Template, String>)>,
    active: BTreeMap<Labels, Active>,
    last_error: Option<String>,
}

impl RuleState {
    pub fn new(rule: Rule) -> RuleState {
        let compile = |templates: &BTreeMap<String, String>| {
            templates.iter().map(|(name, text)| (name.clone(), Template::parse(text))).collect()
        };
        RuleState {
            labels: compile(&rule.labels),
            annotations: compile(&rule.annotations),
            rule,
            active: BTreeMap::new(),
            last_error: None,
        }
    }

    pub fn rule(&self) -> &Rule {
        &self.rule
    }

    /// Evaluates once at `at_ms`, updating the active alerts as Prometheus's
    /// rules/alerting.go does (pending until `for` elapsed, firing, keep_firing_for keeps a
    /// firing alert after its condition stops, resolved alerts dropped). Returns the error,
    /// if any (state then unchanged).
    pub fn evaluate(&mut self, source: &dyn Source, at_ms: i64) -> Result<(), EvalError> {
        let result = self.current_alerts(source, at_ms);
        self.last_error = result.as_ref().err().map(ToString::to_string);
        let current = result?;
        for (labels, alert) in &current {
            match self.active.get_mut(labels) {
                Some(active) => {
                    active.alert.value = alert.value;
                    active.alert.annotations = alert.annotations.clone();
                }
                None => {
                    self.active.insert(labels.clone(), Active { alert: alert.clone(), keep_firing_since_ms: None });
                }
            }
        }
        let (hold, keep_for) = (self.rule.for_ms, self.rule.keep_firing_for_ms);
        self.active.retain(|labels, active| {
            if current.contains_key(labels) {
                active.keep_firing_since_ms = None;
            } else {
                let firing = active.alert.state == AlertState::Firing;
                let since = *active.keep_firing_since_ms.get_or_insert(at_ms);
                if !(firing && keep_for > 0 && at_ms - since < keep_for) {
                    return false;
                }
            }
            if active.alert.state == AlertState::Pending && at_ms - active.alert.active_since_ms >= hold {
                active.alert.state = AlertState::Firing;
                active.alert.fired_since_ms = Some(at_ms);
            }
            true
        });
        Ok(())
    }

    /// The alerts the rule's result makes at `at_ms`, as new pending alerts by labels.
    fn current_alerts(&self, source: &dyn Source, at_ms: i64) -> Result<BTreeMap<Labels, Alert>, EvalError> {
        let samples = match eval::evaluate(&self.rule.expr, source, at_ms)? {
            // A scalar result is one alert without series labels, as in Prometheus.
            Value::Scalar(value) => vec![(Labels::new(), value)],
            Value::Vector(samples) => samples,
        };
        let mut alerts = BTreeMap::new();
        for (series, value) in samples {
            let mut labels = series.clone();
            labels.remove("__name__");
            for (name, template) in &self.labels {
                let text = expand(template, &series, value);
                // An empty value means no label, as everywhere in Prometheus.
                if text.is_empty() {
                    labels.remove(name);
                } else {
                    labels.insert(name.clone(), text);
                }
            }
            labels.insert("alertname".to_string(), self.rule.name.clone());
            let annotations = self
                .annotations
                .iter()
                .map(|(name, template)| (name.clone(), expand(template, &series, value)))
                .collect();
            let alert = Alert {
                labels: labels.clone(),
                annotations,
                state: AlertState::Pending,
                active_since_ms: at_ms,
                fired_since_ms: None,
                value,
            };
            if alerts.insert(labels, alert).is_some() {
                return Err(EvalError(
                    "vector contains metrics with the same labelset after applying alert labels".into(),
                ));
            }
        }
        Ok(alerts)
    }

    /// The active alerts, pending or firing, sorted by labels.
    pub fn alerts(&self) -> Vec<Alert> {
        self.active.values().map(|active| active.alert.clone()).collect()
    }

    /// The error of the latest evaluation, if it failed.
    pub fn last_error(&self) -> Option<&str> {
        self.last_error.as_deref()
    }
}

fn expand(template: &Result<Template, String>, labels: &Labels, value: f64) -> String {
    match template {
        Ok(template) => template.expand(labels, value),
        Err(error) => format!("<error expanding template: {error}>"),
    }
}

#[cfg(test)]
mod tests;
