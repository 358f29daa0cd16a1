//! The console's metric history: every series `/metrics` serves, sampled once a second
//! and kept for [`RETENTION_MS`], as Prometheus would have scraped it.

use std::collections::{BTreeMap, HashMap, VecDeque};

use super::eval::{Labels, Source};
use super::promql::Matcher;

/// How long samples are kept: the graphs' 15 minutes plus the widest range a rule or a
/// graph reads at their start (a minute).
pub const RETENTION_MS: i64 = 16 * 60 * 1000;
/// Series kept at most; a lab has a few hundred. Past it new series are not recorded
/// (a label fed by clients would otherwise grow the history without bound).
pub const MAX_SERIES: usize = 5000;

#[derive(Default)]
pub struct MetricStore {
    series: HashMap<Labels, VecDeque<(i64, f64)>>,
    /// Series refused once [`MAX_SERIES`] were kept.
    pub refused: u64,
}

impl MetricStore {
    /// Adds one scrape's samples at `at_ms`, each with `extra` labels (job, instance),
    /// and forgets what is older than the retention.
    pub fn add(&mut self, at_ms: i64, samples: Vec<(Labels, f64)>, extra: &[(&str, &str)]) {
        for (mut labels, value) in samples {
            for (name, value) in extra {
                labels.insert((*name).to_string(), (*value).to_string());
            }
            let full = self.series.len() >= MAX_SERIES;
            match self.series.get_mut(&labels) {
                // Samples stay in time order (the clock may step back): a late one is dropped.
                Some(samples) if samples.back().is_some_and(|(t, _)| *t >= at_ms) => {}
                Some(samples) => samples.push_back((at_ms, value)),
                None if full => self.refused += 1,
                None => {
                    self.series.insert(labels, VecDeque::from([(at_ms, value)]));
                }
            }
        }
        self.forget_before(at_ms - RETENTION_MS);
    }

    fn forget_before(&mut self, oldest_ms: i64) {
        self.series.retain(|_, samples| {
            while samples.front().is_some_and(|(t, _)| *t < oldest_ms) {
                samples.pop_front();
            }
            !samples.is_empty()
        });
    }

    /// Series and samples kept.
    pub fn len(&self) -> (usize, usize) {
        (self.series.len(), self.series.values().map(VecDeque::len).sum())
    }
}

impl Source for MetricStore {
    fn select(&self, matchers: &[Matcher], from_ms: i64, to_ms: i64) -> Vec<(Labels, Vec<(i64, f64)>)> {
        let mut found = Vec::new();
        for (labels, samples) in &self.series {
            if !matchers.iter().all(|m| m.matches(labels.get(&m.name).map_or("", String::as_str))) {
                continue;
            }
            let start = samples.partition_point(|(t, _)| *t < from_ms);
            let end = samples.partition_point(|(t, _)| *t <= to_ms);
            if start < end {
                found.push((labels.clone(), samples.range(start..end).copied().collect()));
            }
        }
        found
    }
}

/// The samples of a Prometheus or OpenMetrics text exposition; lines it cannot read are
/// skipped (the text is the process's own).
pub fn parse_exposition(text: &str) -> Vec<(Labels, f64)> {
    text.lines().filter(|l| !l.starts_with('#') && !l.trim().is_empty()).filter_map(parse_line).collect()
}

fn parse_line(line: &str) -> Option<(Labels, f64)> {
    let name_end = line.find(['{', ' '])?;
    let mut labels = BTreeMap::new();
    labels.insert("__name__".to_string(), line[..name_end].to_string());
    let mut rest = &line[name_end..];
    if let Some(mut body) = rest.strip_prefix('{') {
        loop {
            body = body.trim_start_matches([',', ' ']);
            if let Some(after) = body.strip_prefix('}') {
                rest = after;
                break;
            }
            let (name, after) = body.split_once("=\"")?;
            // The value runs to the first unescaped quote; \\ \" \n are its escapes.
            let mut value = String::new();
            let mut chars = after.char_indices();
            let end = loop {
                match chars.next()? {
                    (_, '\\') => match chars.next()?.1 {
                        'n' => value.push('\n'),
                        other => value.push(other),
                    },
                    (i, '"') => break i + 1,
                    (_, c) => value.push(c),
                }
            };
            labels.insert(name.to_string(), value);
            body = &after[end..];
        }
    }
    let value = rest.split_whitespace().next()?;
    let value = match value {
        "+Inf" => f64::INFINITY,
        "-Inf" => f64::NEG_INFINITY,
        "NaN" => f64::NAN,
        number => number.parse().ok()?,
    };
    Some((labels, value))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::console::promql::{MatchOp, Matcher};

    #[test]
    fn the_exposition_is_read_with_its_labels_and_escapes() {
        let text = "# HELP x y\n# TYPE http_requests counter\n\
            http_requests_total{method=\"GET\",endpoint=\"/a\\\"b\",status=\"200\"} 7\n\
            http_request_duration_seconds_bucket{le=\"+Inf\",endpoint=\"/\"} 3 # {trace=\"x\"} 1\n\
            referral_cache_entries 10\n# EOF\n";
        let samples = parse_exposition(text);
        assert_eq!(samples.len(), 3);
        assert_eq!(samples[0].0["endpoint"], "/a\"b");
        assert_eq!((samples[0].0["__name__"].as_str(), samples[0].1), ("http_requests_total", 7.0));
        assert_eq!((samples[1].0["le"].as_str(), samples[1].1), ("+Inf", 3.0));
        assert_eq!((samples[2].0.len(), samples[2].1), (1, 10.0));
    }

    #[test]
    fn the_history_selects_by_matchers_and_time_and_forgets_old_samples() {
        let mut store = MetricStore::default();
        let series = |name: &str| (Labels::from([("__name__".to_string(), name.to_string())]), 1.0);
        for second in 0..10 {
            store.add(second * 1000, vec![series("a"), series("b")], &[("job", "vote-api")]);
        }
        let name = Matcher::new("__name__", MatchOp::Equal, "a").unwrap();
        let job = Matcher::new("job", MatchOp::Equal, "vote-api").unwrap();
        let found = store.select(&[name, job], 3000, 5000);
        assert_eq!(found.len(), 1);
        assert_eq!(found[0].1.iter().map(|(t, _)| *t).collect::<Vec<_>>(), [3000, 4000, 5000]);
        store.add(RETENTION_MS + 5000, vec![series("a")], &[]);
        let a = Matcher::new("__name__", MatchOp::Equal, "a").unwrap();
        let kept: usize = store.select(&[a], 0, i64::MAX).iter().map(|(_, s)| s.len()).sum();
        assert_eq!(kept, 5 + 1, "a's samples from 5 s on, the one without a job");
    }
}
