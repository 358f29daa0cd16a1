//! Every Grafana panel queries only metrics breakroom exports.

mod common;

use std::collections::BTreeSet;

use breakroom::labs::LabName;
use common::{Backend, spawn_lab};

/// Metric names a PromQL expression reads: every selector in these dashboards is
/// written `name{job="…"}`, so a name is an identifier right before `{`.
fn metric_names(expr: &str) -> BTreeSet<String> {
    let mut names = BTreeSet::new();
    for (i, _) in expr.match_indices('{') {
        let name: String = expr[..i]
            .chars()
            .rev()
            .take_while(|c| c.is_alphanumeric() || *c == '_' || *c == ':')
            .collect::<Vec<_>>()
            .into_iter()
            .rev()
            .collect();
        if !name.is_empty() {
            names.insert(name);
        }
    }
    names
}

/// The series names in a lab's /metrics (with the _total/_bucket suffixes it shows).
async fn exported(lab: LabName) -> BTreeSet<String> {
    let app = spawn_lab(lab, Backend::Embedded, |_| {}).await;
    // Touch the routes so every labelled family has a sample.
    app.get("/health").await;
    app.metrics()
        .await
        .lines()
        .filter(|l| !l.starts_with('#') && !l.is_empty())
        .map(|l| l.split(['{', ' ']).next().unwrap().to_string())
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_panel_queries_exported_metrics() {
    let mut known = exported(LabName::Vote).await;
    known.extend(exported(LabName::Items).await);
    // Labelled families appear once a labelled sample exists; these are created on the
    // first vote / miss / database operation, so name them from the code's registry.
    known.extend(
        ["votes_total", "cache_misses_total", "db_operations_total", "write_operation_seconds_bucket"]
            .map(String::from),
    );
    let dir = concat!(env!("CARGO_MANIFEST_DIR"), "/deploy/grafana/dashboards");
    let mut checked = 0;
    for entry in std::fs::read_dir(dir).unwrap() {
        let path = entry.unwrap().path();
        let dashboard: serde_json::Value = serde_json::from_str(&std::fs::read_to_string(&path).unwrap()).unwrap();
        for panel in dashboard["panels"].as_array().unwrap() {
            for target in panel["targets"].as_array().unwrap() {
                let expr = target["expr"].as_str().unwrap();
                for name in metric_names(expr) {
                    checked += 1;
                    assert!(
                        known.contains(&name),
                        "{}: panel '{}' queries {name}, which breakroom does not export",
                        path.display(),
                        panel["title"]
                    );
                }
            }
        }
    }
    assert!(checked >= 15, "{checked} metric references checked");
    // Every metric reference carries a selector, so the count above is complete.
}

#[test]
fn metric_names_are_found_in_promql() {
    let names = metric_names(
        r#"histogram_quantile(0.95, sum by (le, endpoint) (rate(http_request_duration_seconds_bucket{job="vote-api"}[5m])))"#,
    );
    assert_eq!(names.into_iter().collect::<Vec<_>>(), ["http_request_duration_seconds_bucket"]);
}
