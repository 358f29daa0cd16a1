//! Whatever a client sends, the answer is never a 5xx: arbitrary bodies and query
//! strings against the real server get a 2xx or a 4xx with a JSON `detail`.

mod common;

use breakroom::labs::LabName;
use common::{Backend, spawn_lab};
use proptest::prelude::*;
use proptest::test_runner::{Config, TestRunner};

/// Bodies that look like the expected JSON, mangled in every way.
fn vote_bodies() -> impl Strategy<Value = Vec<u8>> {
    let choice = prop_oneof![
        Just("\"ai\"".to_string()),
        "\"[a-z]{0,8}\"",
        Just("5".to_string()),
        Just("null".to_string()),
        Just("[]".to_string())
    ];
    let referral = prop_oneof![
        Just("null".to_string()),
        Just("\"conf-partner-2026\"".to_string()),
        "\"\\\\u0000[a-z]{0,4}\"",
        "\"[ -~]{0,80}\"",
        Just("{}".to_string())
    ];
    prop_oneof![
        (choice, referral).prop_map(|(c, r)| format!(r#"{{"choice": {c}, "referral": {r}}}"#).into_bytes()),
        proptest::collection::vec(any::<u8>(), 0..200),
        "[ -~]{0,200}".prop_map(String::into_bytes),
    ]
}

fn item_bodies() -> impl Strategy<Value = Vec<u8>> {
    let price = prop_oneof![
        any::<f64>().prop_map(|p| if p.is_finite() { p.to_string() } else { "1".into() }),
        Just("\"10\"".to_string()),
        Just("-0.0".to_string()),
        Just("1e400".to_string())
    ];
    let name = prop_oneof![
        "\"[ -~]{0,300}\"",
        Just("\"\"".to_string()),
        Just("\"\\\\u0000\"".to_string()),
        Just("7".to_string())
    ];
    prop_oneof![
        (name, price).prop_map(|(n, p)| format!(r#"{{"name": {n}, "price": {p}}}"#).into_bytes()),
        proptest::collection::vec(any::<u8>(), 0..200),
    ]
}

fn check(
    runtime: &tokio::runtime::Runtime,
    app: &common::TestApp,
    method: reqwest::Method,
    path: &str,
    body: Vec<u8>,
) -> Result<(), TestCaseError> {
    let response = runtime.block_on(
        app.client
            .request(method, format!("{}{path}", app.url))
            .header("content-type", "application/json")
            .body(body.clone())
            .send(),
    );
    let response = response.map_err(|e| TestCaseError::fail(format!("no answer: {e}")))?;
    let status = response.status();
    let text = runtime.block_on(response.text()).unwrap_or_default();
    prop_assert!(status.as_u16() < 500, "{status} for {:?}: {text}", String::from_utf8_lossy(&body));
    if status.is_client_error() {
        let json: serde_json::Value =
            serde_json::from_str(&text).map_err(|_| TestCaseError::fail(format!("not JSON: {text}")))?;
        prop_assert!(json["detail"].as_str().is_some_and(|d| !d.is_empty()), "{text}");
    }
    Ok(())
}

fn run(lab: LabName, backend: Backend, cases: &[(reqwest::Method, &str, BoxedStrategy<Vec<u8>>)]) {
    let runtime = tokio::runtime::Builder::new_multi_thread().worker_threads(2).enable_all().build().unwrap();
    // Inside the runtime, so what the server leaves behind can be dropped.
    let _guard = runtime.enter();
    let app = runtime.block_on(spawn_lab(lab, backend, |c| {
        c.vote.vote_rate_limit = 1_000_000.0;
        // The planted bug answers 503 by design once ten referrals were checked; the
        // property is about input handling, so it runs on the fixed build.
        if lab == LabName::Vote {
            c.fixed = vec!["referral".into()];
        }
    }));
    for (method, path, strategy) in cases {
        let mut runner = TestRunner::new(Config { cases: 150, failure_persistence: None, ..Config::default() });
        runner.run(strategy, |body| check(&runtime, &app, method.clone(), path, body)).unwrap();
    }
    drop(app);
}

#[test]
fn arbitrary_votes_never_cause_a_server_error_on_both_backends() {
    for backend in [Backend::Embedded, Backend::Services] {
        run(LabName::Vote, backend, &[(reqwest::Method::POST, "/vote", vote_bodies().boxed())]);
    }
}

#[test]
fn arbitrary_items_never_cause_a_server_error_on_both_backends() {
    for backend in [Backend::Embedded, Backend::Services] {
        run(
            LabName::Items,
            backend,
            &[
                (reqwest::Method::POST, "/items", item_bodies().boxed()),
                (reqwest::Method::PUT, "/items/550e8400-e29b-41d4-a716-446655440001", item_bodies().boxed()),
            ],
        );
    }
}

#[test]
fn arbitrary_paths_and_queries_never_cause_a_server_error() {
    let runtime = tokio::runtime::Builder::new_multi_thread().worker_threads(2).enable_all().build().unwrap();
    let _guard = runtime.enter();
    let items = runtime.block_on(spawn_lab(LabName::Items, Backend::Embedded, |_| {}));
    let vote = runtime.block_on(spawn_lab(LabName::Vote, Backend::Embedded, |_| {}));
    let mut runner = TestRunner::new(Config { cases: 200, failure_persistence: None, ..Config::default() });
    let paths = prop_oneof![
        "/items/[ -~]{0,40}".prop_map(|p| (0usize, p)),
        "/items\\?limit=[ -~]{0,12}".prop_map(|p| (0usize, p)),
        "/\\?conf=[ -~]{0,30}&referral=[ -~]{0,30}".prop_map(|p| (1usize, p)),
        "/qr.svg\\?target=[ -~]{0,20}".prop_map(|p| (1usize, p)),
        "/admin/reset\\?confirm=[ -~]{0,10}".prop_map(|p| (1usize, p)),
    ];
    runner
        .run(&paths, |(app, path)| {
            let app = if app == 0 { &items } else { &vote };
            let encoded: String =
                path.chars().map(|c| if c == ' ' || c == '#' || c == '%' { '_' } else { c }).collect();
            check(&runtime, app, reqwest::Method::GET, &encoded, Vec::new())
        })
        .unwrap();
}
