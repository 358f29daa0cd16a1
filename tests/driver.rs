//! `breakroom drive` against a small test server on 127.0.0.1: the schedule, honest
//! latency, thresholds, the report and live control.

mod common;

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use axum::http::StatusCode;
use axum::routing::{get, post};
use breakroom::driver::engine::{self, Model, Run};
use breakroom::driver::profile;
use breakroom::driver::shape::{Shape, parse_phase};
use common::breakroom;
use serde_json::Value;

/// A server that answers `/ok` at once, `/fail` with 500, and `/stall` through one
/// lock that the first request after `stall_at` holds for `stall_for` — a server that
/// freezes for a moment, as a GC pause or a lock convoy would.
struct TestServer {
    url: String,
    arrivals: Arc<Mutex<Vec<Instant>>>,
    hits: Arc<AtomicU64>,
}

async fn test_server(stall_at: Duration, stall_for: Duration) -> TestServer {
    let arrivals: Arc<Mutex<Vec<Instant>>> = Arc::default();
    let hits: Arc<AtomicU64> = Arc::default();
    let started = Instant::now();
    let lock = Arc::new(tokio::sync::Mutex::new(false));
    let (a, h) = (arrivals.clone(), hits.clone());
    let record = move || {
        a.lock().unwrap().push(Instant::now());
        h.fetch_add(1, Ordering::Relaxed);
    };
    let (r1, r2, r3) = (record.clone(), record.clone(), record);
    let app = axum::Router::new()
        .route(
            "/ok",
            get(move || async move {
                r1();
                "ok"
            }),
        )
        .route(
            "/fail",
            get(move || async move {
                r2();
                StatusCode::INTERNAL_SERVER_ERROR
            }),
        )
        .route(
            "/stall",
            post(move || {
                let lock = lock.clone();
                let record = r3.clone();
                async move {
                    record();
                    let mut stalled = lock.lock().await;
                    if !*stalled && started.elapsed() >= stall_at {
                        *stalled = true;
                        tokio::time::sleep(stall_for).await;
                    }
                    "ok"
                }
            }),
        );
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let url = format!("http://{}", listener.local_addr().unwrap());
    tokio::spawn(async move { axum::serve(listener, app).await });
    TestServer { url, arrivals, hits }
}

async fn drive(server: &TestServer, profile: profile::Profile, model: Model) -> breakroom::driver::record::Snapshot {
    let run = Arc::new(Run::new(profile, server.url.clone(), None, Duration::from_secs(10), Vec::new()));
    engine::drive(run.clone(), model).await;
    breakroom::driver::control::snapshot(&run)
}

fn get_ok() -> profile::Profile {
    profile::url(hyper::Method::GET, "/ok", None)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_open_model_sends_exactly_what_the_schedule_asks_for() {
    let server = test_server(Duration::MAX, Duration::ZERO).await;
    let report = drive(
        &server,
        get_ok(),
        Model::Open { shape: Shape::constant(100.0, Duration::from_secs(2)), max_in_flight: 1000 },
    )
    .await;
    // Deadlines are absolute: 100/s for 2 s is 200 sends however busy the machine is.
    assert!((199..=201).contains(&report.requests), "{report:?}");
    assert_eq!(server.hits.load(Ordering::Relaxed), report.requests);
    assert_eq!((report.errors, report.dropped), (0, 0));
    assert!((report.achieved_rps - 100.0).abs() < 10.0, "achieved {}", report.achieved_rps);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn phases_ramp_as_specified() {
    let server = test_server(Duration::MAX, Duration::ZERO).await;
    let shape = Shape { phases: vec![parse_phase("2s:0..100rps").unwrap(), parse_phase("1s:100rps").unwrap()] };
    let started = Instant::now();
    let report = drive(&server, get_ok(), Model::Open { shape: shape.clone(), max_in_flight: 1000 }).await;
    // ∫ rate = 100 (ramp) + 100 (flat).
    assert!((195..=205).contains(&report.requests), "{report:?}");
    let arrivals = server.arrivals.lock().unwrap();
    let in_window = |a: f64, b: f64| {
        arrivals.iter().filter(|t| (a..b).contains(&t.duration_since(started).as_secs_f64())).count() as f64
    };
    // Counts per window follow the timeline's integral (loosely: arrival times jitter).
    for (a, b) in [(0.0f64, 1.0f64), (1.0, 2.0), (2.0, 3.1)] {
        let expected = shape.expected_between(a, b.min(3.0));
        let seen = in_window(a, b);
        assert!((seen - expected).abs() <= expected * 0.2 + 3.0, "{a}..{b}: saw {seen}, expected {expected}");
    }
    assert!(in_window(0.0, 1.0) < in_window(1.0, 2.0), "the rate ramps up");
}

/// The coordinated-omission test: the server freezes for 800 ms. Requests due during
/// the freeze were still sent on time and waited, so their latency — measured from
/// the intended start — must show the freeze.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_server_stall_shows_in_the_percentiles() {
    let server = test_server(Duration::from_millis(500), Duration::from_millis(800)).await;
    let stalling = profile::url(hyper::Method::POST, "/stall", None);
    let report = drive(
        &server,
        stalling,
        Model::Open { shape: Shape::constant(50.0, Duration::from_secs(2)), max_in_flight: 1000 },
    )
    .await;
    assert!(report.latency_ms.max >= 700.0, "{:?}", report.latency_ms);
    // ~40 of 100 requests fell inside the freeze: p90 sits well inside it.
    assert!(report.latency_ms.p90 >= 200.0, "{:?}", report.latency_ms);
    assert!(report.latency_ms.p50 < 400.0, "{:?}", report.latency_ms);

    // With the concurrency saturated, due requests are counted as dropped, and the
    // sent ones still carry the stall.
    let server = test_server(Duration::from_millis(500), Duration::from_millis(800)).await;
    let stalling = profile::url(hyper::Method::POST, "/stall", None);
    let capped = drive(
        &server,
        stalling,
        Model::Open { shape: Shape::constant(50.0, Duration::from_secs(2)), max_in_flight: 5 },
    )
    .await;
    assert!(capped.dropped > 10, "{capped:?}");
    assert!(capped.latency_ms.max >= 700.0, "{:?}", capped.latency_ms);
    let due = capped.requests + capped.dropped;
    assert!((99..=100).contains(&due), "every due request is accounted for: {due}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_closed_model_runs_its_connections_flat_out() {
    let server = test_server(Duration::MAX, Duration::ZERO).await;
    let report = drive(&server, get_ok(), Model::Closed { connections: 4, duration: Duration::from_millis(500) }).await;
    assert!(report.requests > 50, "{report:?}");
    assert_eq!(report.errors, 0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_stop_ends_the_closed_model_at_once_even_mid_request() {
    // From 200 ms on the server holds every request for a minute.
    let server = test_server(Duration::from_millis(200), Duration::from_secs(60)).await;
    let run = Arc::new(Run::new(get_ok(), server.url.clone(), None, Duration::from_secs(30), Vec::new()));
    let driving =
        tokio::spawn(engine::drive(run.clone(), Model::Closed { connections: 4, duration: Duration::from_secs(60) }));
    tokio::time::sleep(Duration::from_millis(500)).await;
    let stopped_at = std::time::Instant::now();
    run.stop.cancel();
    tokio::time::timeout(Duration::from_secs(5), driving).await.expect("the run ends when stopped").unwrap();
    assert!(stopped_at.elapsed() < Duration::from_secs(2), "took {:?}", stopped_at.elapsed());
    let report = breakroom::driver::control::snapshot(&run);
    assert!(report.requests > 0 && report.errors == 0, "stopped requests are not errors: {report:?}");
}

/// `app` on a free loopback port, its handlers told each client's address.
async fn serve_with_peers(app: axum::Router) -> (TestServer, std::net::SocketAddr) {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let address = listener.local_addr().unwrap();
    let app = app.into_make_service_with_connect_info::<std::net::SocketAddr>();
    tokio::spawn(async move { axum::serve(listener, app).await });
    (TestServer { url: format!("http://{address}"), arrivals: Arc::default(), hits: Arc::default() }, address)
}

/// Like wrk, each closed-model connection keeps one keep-alive connection of its own
/// (no pool shared between them), and sends a Host header on it.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn each_closed_model_connection_keeps_a_connection_of_its_own() {
    use std::collections::HashSet;
    use std::net::SocketAddr;
    let seen: Arc<Mutex<(HashSet<SocketAddr>, HashSet<String>)>> = Arc::default();
    let record = seen.clone();
    let app = axum::Router::new().route(
        "/ok",
        get(
            move |axum::extract::ConnectInfo(peer): axum::extract::ConnectInfo<SocketAddr>,
                  headers: axum::http::HeaderMap| {
                let host = headers.get("host").and_then(|h| h.to_str().ok()).unwrap_or("").to_string();
                let mut seen = record.lock().unwrap();
                seen.0.insert(peer);
                seen.1.insert(host);
                async { "ok" }
            },
        ),
    );
    let (server, address) = serve_with_peers(app).await;
    let report = drive(&server, get_ok(), Model::Closed { connections: 3, duration: Duration::from_millis(500) }).await;
    assert!(report.requests > 30 && report.errors == 0, "{report:?}");
    let (peers, hosts) = seen.lock().unwrap().clone();
    assert_eq!(peers.len(), 3, "three connections, each kept alive: {peers:?}");
    assert_eq!(hosts, HashSet::from([address.to_string()]));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_server_that_closes_each_connection_costs_reconnects_not_errors() {
    use axum::serve::ListenerExt;
    let app = axum::Router::new().route("/ok", get(|| async { ([(axum::http::header::CONNECTION, "close")], "ok") }));
    // The connections the server accepted, counted as it accepts them (distinct peer
    // addresses undercount: thousands connect in half a second, and the kernel hands a
    // closed one's port out again).
    let accepted = Arc::new(AtomicU64::new(0));
    let counter = accepted.clone();
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let address = listener.local_addr().unwrap();
    let listener = listener.tap_io(move |_| drop(counter.fetch_add(1, Ordering::Relaxed)));
    tokio::spawn(async move { axum::serve(listener, app).await });
    let server = TestServer { url: format!("http://{address}"), arrivals: Arc::default(), hits: Arc::default() };
    let report = drive(&server, get_ok(), Model::Closed { connections: 2, duration: Duration::from_millis(500) }).await;
    assert!(report.requests > 20 && report.errors == 0, "{report:?}");
    let connections = accepted.load(Ordering::Relaxed);
    assert!(connections >= report.requests, "a new connection for each request: {connections} for {report:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn thresholds_decide_the_exit_code_and_the_report_has_its_fields() {
    let server = test_server(Duration::MAX, Duration::ZERO).await;
    let dir = tempfile::tempdir().unwrap();
    let out = dir.path().join("report.json");
    let ok_url = format!("{}/ok", server.url);
    let (code, text) = breakroom(&[
        "drive",
        "url",
        "--url",
        &ok_url,
        "--rate",
        "50",
        "--duration",
        "1s",
        "--threshold",
        "p95<2s",
        "--threshold",
        "errors<1%",
        "--out",
        out.to_str().unwrap(),
    ])
    .await;
    assert_eq!(code, 0, "{text}");
    assert!(text.contains("LOAD TEST SUMMARY") && text.contains("✓ passed"), "{text}");
    let report: Value = serde_json::from_str(&std::fs::read_to_string(&out).unwrap()).unwrap();
    for field in ["requests", "errors", "dropped", "achieved_rps", "latency_ms", "status_counts", "steps"] {
        assert!(report.get(field).is_some(), "{field} in {report}");
    }
    for p in ["p50", "p90", "p95", "p99", "max"] {
        assert!(report["latency_ms"][p].is_number(), "{p}");
    }
    assert_eq!(report["status_counts"]["200"], report["requests"]);

    let fail_url = format!("{}/fail", server.url);
    let (code, text) = breakroom(&[
        "drive",
        "url",
        "--url",
        &fail_url,
        "--rate",
        "20",
        "--requests",
        "10",
        "--threshold",
        "errors<10%",
    ])
    .await;
    assert_eq!(code, 1, "{text}");
    assert!(text.contains("✗ FAILED") && text.contains("5xx 10"), "{text}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_rate_can_be_changed_and_the_run_stopped_while_it_goes() {
    let server = test_server(Duration::MAX, Duration::ZERO).await;
    let control_port = std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port();
    let control = format!("127.0.0.1:{control_port}");
    let ok_url = format!("{}/ok", server.url);
    let child = tokio::process::Command::new(env!("CARGO_BIN_EXE_breakroom"))
        .args(["drive", "url", "--url", &ok_url, "--rate", "5", "--duration", "60s", "--control", &control])
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    let client = breakroom::platform::http::client().build().unwrap();
    let base = format!("http://{control}");
    assert!(
        common::eventually(Duration::from_secs(5), || async {
            client.get(format!("{base}/status")).send().await.is_ok()
        })
        .await
    );
    let set = client.post(format!("{base}/rate")).json(&serde_json::json!({ "rate": "200rps" })).send().await.unwrap();
    assert_eq!(set.status(), 200);
    let bad = client.post(format!("{base}/rate")).json(&serde_json::json!({ "rate": "fast" })).send().await.unwrap();
    assert_eq!(bad.status(), 422);
    assert!(
        common::eventually(Duration::from_secs(5), || async {
            let status: Value = client.get(format!("{base}/status")).send().await.unwrap().json().await.unwrap();
            status["target_rps"] == 200.0 && status["requests"].as_u64().unwrap() > 100
        })
        .await,
        "the new rate took effect"
    );
    let stop = client.post(format!("{base}/stop")).send().await.unwrap();
    assert_eq!(stop.status(), 200);
    let output =
        tokio::time::timeout(Duration::from_secs(5), child.wait_with_output()).await.expect("stops at once").unwrap();
    assert!(output.status.success());
    let text = String::from_utf8_lossy(&output.stdout);
    assert!(text.contains("LOAD TEST SUMMARY"), "{text}");
}

#[tokio::test]
async fn drive_explains_an_unreachable_target_and_bad_arguments() {
    let port = std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port();
    let url = format!("http://127.0.0.1:{port}");
    let (code, text) = breakroom(&["drive", "vote-audience", "--url", &url, "--duration", "1s"]).await;
    assert_eq!(code, 2, "{text}");
    assert!(text.contains(&format!("Cannot reach {url}")), "{text}");
    for args in [["--rate", "fast"], ["--phase", "10m"], ["--threshold", "p95>1s"], ["--duration", "forever"]] {
        let mut all = vec!["drive", "url", "--url", "http://127.0.0.1:9/x"];
        all.extend(args);
        let (code, text) = breakroom(&all).await;
        assert_eq!(code, 2, "{args:?}: {text}");
        assert!(!text.contains("panicked"), "{text}");
    }
}

/// The vote lab's bug, triggered by the driver: 10 referral votes pass, then 503s.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn vote_audience_triggers_the_referral_bug() {
    let app = common::spawn_app(common::Backend::Embedded, |_| {}).await;
    let weights = profile::parse_weights("ai=1").unwrap();
    let run = Arc::new(Run::new(
        profile::vote_audience(weights, 1.0, "conf-partner-2026"),
        app.url.clone(),
        Some(30),
        Duration::from_secs(10),
        Vec::new(),
    ));
    engine::drive(
        run.clone(),
        Model::Open { shape: Shape::constant(50.0, Duration::from_secs(2)), max_in_flight: 100 },
    )
    .await;
    let report = breakroom::driver::control::snapshot(&run);
    assert_eq!(report.requests, 30);
    assert_eq!(
        (report.status_counts.get("200"), report.status_counts.get("503")),
        (Some(&10), Some(&20)),
        "{report:?}"
    );
}

/// A rate set from outside (the control API, the shop's rush) is kept when the driver's
/// runtime is busy: arrivals it was late for are sent late, not dropped.
#[tokio::test(flavor = "current_thread")]
async fn a_set_rate_is_kept_when_the_runtime_is_starved() {
    let server = test_server(Duration::MAX, Duration::ZERO).await;
    let run = Arc::new(Run::new(get_ok(), server.url.clone(), None, Duration::from_secs(10), Vec::new()));
    *run.rate_override.lock().unwrap() = Some(200.0);
    // Something else on the one thread holds it 30 ms at a time: the engine wakes late
    // every time (by up to six of its 5 ms arrivals).
    let hog = tokio::spawn(async {
        loop {
            std::thread::sleep(Duration::from_millis(30));
            tokio::task::yield_now().await;
        }
    });
    let model = Model::Open { shape: Shape::constant(1.0, Duration::from_secs(2)), max_in_flight: 1000 };
    tokio::time::timeout(Duration::from_secs(20), engine::drive(run.clone(), model)).await.unwrap();
    hog.abort();
    let report = breakroom::driver::control::snapshot(&run);
    assert!(report.requests >= 340, "200 a second for 2 s, 400 asked for: {} sent", report.requests);
    assert!(report.requests <= 402, "and no more: {}", report.requests);
}

/// A rate set through the control API changes the pace, never the run's length.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_changed_rate_still_ends_with_the_timeline() {
    let server = test_server(Duration::MAX, Duration::ZERO).await;
    let run = Arc::new(Run::new(get_ok(), server.url.clone(), None, Duration::from_secs(10), Vec::new()));
    *run.rate_override.lock().unwrap() = Some(50.0);
    let ended = tokio::time::timeout(
        Duration::from_secs(10),
        engine::drive(
            run.clone(),
            Model::Open { shape: Shape::constant(5.0, Duration::from_secs(1)), max_in_flight: 100 },
        ),
    )
    .await;
    assert!(ended.is_ok(), "the run ended by itself");
    let report = breakroom::driver::control::snapshot(&run);
    assert!((40..=52).contains(&report.requests), "the new rate applied for the 1 s run: {}", report.requests);
}
