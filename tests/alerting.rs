//! The stage moment of seed 001, end to end: a real Prometheus scrapes breakroom with
//! the rules in deploy/prometheus/rules, a real Alertmanager routes what fires to a
//! webhook standing in for Slack. Eleven referral votes on the buggy build must page;
//! the same votes on the fixed build must not. Needs the Debian packages prometheus
//! and prometheus-alertmanager (.ci/run installs them).

mod common;

use std::process::Stdio;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use axum::routing::post;
use common::{Backend, spawn_app};
use serde_json::Value;

/// A child process killed when the test ends, however it ends.
fn start(program: &str, args: &[String]) -> tokio::process::Child {
    tokio::process::Command::new(program)
        .args(args)
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .kill_on_drop(true)
        .spawn()
        .unwrap_or_else(|e| {
            panic!("{program} runs ({e}); install it: apt-get install prometheus prometheus-alertmanager")
        })
}

async fn ready(url: &str) -> bool {
    common::eventually(Duration::from_secs(20), || async {
        common::fetch(url).await.is_ok_and(|r| r.status().is_success())
    })
    .await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn referral_cache_exhausted_pages_for_the_buggy_build_only() {
    let buggy = spawn_app(Backend::Embedded, |_| {}).await;
    let fixed = spawn_app(Backend::Embedded, |c| c.platform.fixed = vec!["referral".into()]).await;
    let target = |app: &common::TestApp| app.url.trim_start_matches("http://").to_string();

    // The webhook receiver standing in for Slack.
    let received: Arc<Mutex<Vec<Value>>> = Arc::default();
    let sink = received.clone();
    let webhook = axum::Router::new().route(
        "/",
        post(move |axum::Json(body): axum::Json<Value>| {
            let sink = sink.clone();
            async move {
                sink.lock().unwrap().push(body);
                ""
            }
        }),
    );
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let webhook_url = format!("http://{}/", listener.local_addr().unwrap());
    tokio::spawn(async move { axum::serve(listener, webhook).await });

    let dir = tempfile::tempdir().unwrap();
    let (prometheus_port, alertmanager_port) = (common::free_port(), common::free_port());
    let alertmanager_config = dir.path().join("alertmanager.yml");
    std::fs::write(
        &alertmanager_config,
        format!(
            "route:\n  receiver: webhook\n  group_by: [alertname, instance]\n  group_wait: 1s\n  group_interval: 1s\n  repeat_interval: 1h\n\
             receivers:\n  - name: webhook\n    webhook_configs:\n      - url: {webhook_url}\n        send_resolved: true\n"
        ),
    )
    .unwrap();
    let rules = concat!(env!("CARGO_MANIFEST_DIR"), "/deploy/prometheus/rules/vote.yml");
    let prometheus_config = dir.path().join("prometheus.yml");
    std::fs::write(
        &prometheus_config,
        format!(
            "global:\n  scrape_interval: 1s\n  evaluation_interval: 1s\nrule_files:\n  - {rules}\n\
             alerting:\n  alertmanagers:\n    - static_configs:\n        - targets: ['127.0.0.1:{alertmanager_port}']\n\
             scrape_configs:\n  - job_name: vote-api\n    static_configs:\n      - targets: ['{}', '{}']\n",
            target(&buggy),
            target(&fixed)
        ),
    )
    .unwrap();
    let path = |p: &std::path::Path| p.to_str().unwrap().to_string();
    let _alertmanager = start(
        "prometheus-alertmanager",
        &[
            format!("--config.file={}", path(&alertmanager_config)),
            format!("--storage.path={}", path(&dir.path().join("am"))),
            format!("--web.listen-address=127.0.0.1:{alertmanager_port}"),
            "--cluster.listen-address=".into(),
        ],
    );
    let _prometheus = start(
        "prometheus",
        &[
            format!("--config.file={}", path(&prometheus_config)),
            format!("--storage.tsdb.path={}", path(&dir.path().join("tsdb"))),
            format!("--web.listen-address=127.0.0.1:{prometheus_port}"),
        ],
    );
    assert!(ready(&format!("http://127.0.0.1:{alertmanager_port}/-/ready")).await, "alertmanager started");
    assert!(ready(&format!("http://127.0.0.1:{prometheus_port}/-/ready")).await, "prometheus started");
    // Both targets scraped once, so the counters' rise is seen as an increase.
    let scraped = common::eventually(Duration::from_secs(15), || async {
        let url = format!("http://127.0.0.1:{prometheus_port}/api/v1/query?query=up%7Bjob%3D%22vote-api%22%7D%3D%3D1");
        let body: Value = common::fetch(url).await.unwrap().json().await.unwrap();
        body["data"]["result"].as_array().is_some_and(|r| r.len() == 2)
    })
    .await;
    assert!(scraped, "prometheus scrapes both builds");

    for app in [&buggy, &fixed] {
        for _ in 0..11 {
            app.vote("ai", Some("conf-partner-2026")).await;
        }
    }
    let alerts_for = |instance: &str| {
        received
            .lock()
            .unwrap()
            .iter()
            .flat_map(|body| body["alerts"].as_array().cloned().unwrap_or_default())
            .filter(|a| a["labels"]["alertname"] == "ReferralCacheExhausted" && a["labels"]["instance"] == instance)
            .count()
    };
    let paged = common::eventually(Duration::from_secs(30), || async { alerts_for(&target(&buggy)) > 0 }).await;
    assert!(paged, "ReferralCacheExhausted reached the webhook within 30 s");
    let alert = received
        .lock()
        .unwrap()
        .iter()
        .flat_map(|b| b["alerts"].as_array().cloned().unwrap_or_default())
        .next()
        .unwrap();
    assert_eq!(alert["labels"]["severity"], "critical");
    assert!(alert["annotations"]["description"].as_str().unwrap().contains("crates/labs/vote/src/referral.rs"));

    // The fixed build got the same votes at the same time; give it as long again.
    tokio::time::sleep(Duration::from_secs(8)).await;
    assert_eq!(alerts_for(&target(&fixed)), 0, "the fixed build pages nobody");
}
