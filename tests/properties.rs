//! Whatever a client sends, the answer is never a 5xx: arbitrary bodies, paths and
//! query strings against the real server get a 2xx or a 4xx with a JSON message
//! (`detail`, or `error` where the shop's original API said so).

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
    check_at(runtime, &app.client, &app.url, &[], method, path, body)
}

/// Sends one request and checks the property: below 500, and a 4xx explains itself.
fn check_at(
    runtime: &tokio::runtime::Runtime,
    client: &reqwest::Client,
    base: &str,
    headers: &[(&str, &str)],
    method: reqwest::Method,
    path: &str,
    body: Vec<u8>,
) -> Result<(), TestCaseError> {
    let mut request = client.request(method, format!("{base}{path}")).header("content-type", "application/json");
    for (name, value) in headers {
        request = request.header(*name, *value);
    }
    let response = runtime.block_on(request.body(body.clone()).send());
    let response = response.map_err(|e| TestCaseError::fail(format!("no answer: {e}")))?;
    let status = response.status();
    let text = runtime.block_on(response.text()).unwrap_or_default();
    prop_assert!(status.as_u16() < 500, "{status} for {path} {:?}: {text}", String::from_utf8_lossy(&body));
    if status.is_client_error() {
        let json: serde_json::Value =
            serde_json::from_str(&text).map_err(|_| TestCaseError::fail(format!("not JSON: {text}")))?;
        let message = json["detail"].as_str().or(json["error"].as_str());
        prop_assert!(message.is_some_and(|m| !m.is_empty()), "{status} for {path}: {text}");
    }
    Ok(())
}

/// A JSON value of the kinds a client might put in a numeric or text field.
fn json_value() -> impl Strategy<Value = String> {
    prop_oneof![
        any::<i64>().prop_map(|n| n.to_string()),
        any::<f64>().prop_map(|f| if f.is_finite() { format!("{f:?}") } else { "1e400".into() }),
        (0i64..200).prop_map(|n| format!("{n}.0")),
        "\"[ -~]{0,70}\"",
        Just("\"\\u0000\"".to_string()),
        Just("null".to_string()),
        Just("[]".to_string()),
        Just("{}".to_string()),
        Just("true".to_string()),
    ]
}

/// Objects with the shop's fields set to anything, and bytes that are not JSON at all.
fn shop_bodies(fields: &'static [&'static str]) -> impl Strategy<Value = Vec<u8>> {
    prop_oneof![
        proptest::collection::vec(json_value(), fields.len()).prop_map(move |values| {
            let pairs: Vec<String> = fields.iter().zip(values).map(|(f, v)| format!("\"{f}\": {v}")).collect();
            format!("{{{}}}", pairs.join(", ")).into_bytes()
        }),
        proptest::collection::vec(any::<u8>(), 0..120),
    ]
}

/// Path and query text: printable ASCII with the characters a URL cannot carry raw
/// replaced.
fn url_text(pattern: &'static str) -> impl Strategy<Value = String> {
    pattern.prop_map(|text| text.chars().map(|c| if " #%?&/".contains(c) { '_' } else { c }).collect())
}

fn run(lab: LabName, backend: Backend, cases: &[(reqwest::Method, &str, BoxedStrategy<Vec<u8>>)]) {
    let runtime = tokio::runtime::Builder::new_multi_thread().worker_threads(2).enable_all().build().unwrap();
    // Inside the runtime, so what the server leaves behind can be dropped.
    let _guard = runtime.enter();
    let app = runtime.block_on(spawn_lab(lab, backend, |c| {
        c.settings.vote.vote_rate_limit = 1_000_000.0;
        // The planted bugs answer 503 by design (once ten referrals were checked, once
        // the unknown codes drained the pool); the property is about input handling,
        // so it runs on the fixed build.
        if lab == LabName::Vote {
            c.platform.fixed = vec!["referral".into(), "connection-leak".into()];
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
fn arbitrary_shop_requests_never_cause_a_server_error_on_both_backends() {
    use reqwest::Method;
    for backend in [Backend::Embedded, Backend::Services] {
        let runtime = tokio::runtime::Builder::new_multi_thread().worker_threads(2).enable_all().build().unwrap();
        let _guard = runtime.enter();
        let shop = runtime.block_on(common::shop::spawn_shop(backend, 2_000, |_| {}));
        let admin = [("authorization", "Bearer test-admin-token")];
        let cases: Vec<(&str, &[(&str, &str)], Method, BoxedStrategy<(String, Vec<u8>)>)> = vec![
            (
                &shop.checkout,
                &[],
                Method::POST,
                shop_bodies(&["user_id", "product_id", "quantity"]).prop_map(|b| ("/orders/create".into(), b)).boxed(),
            ),
            (
                &shop.cart,
                &[],
                Method::POST,
                (url_text("[ -~]{1,70}"), shop_bodies(&["product_id", "quantity"]))
                    .prop_map(|(id, b)| (format!("/cart/{id}/add"), b))
                    .boxed(),
            ),
            (
                &shop.cart,
                &[],
                Method::GET,
                url_text("[ -~]{1,70}").prop_map(|id| (format!("/cart/{id}"), vec![])).boxed(),
            ),
            (
                &shop.checkout,
                &admin,
                Method::POST,
                shop_bodies(&["max_connections", "acquire_timeout_ms"]).prop_map(|b| ("/admin/pool".into(), b)).boxed(),
            ),
            (
                &shop.catalog,
                &[],
                Method::GET,
                (url_text("[ -~]{0,14}"), url_text("[ -~]{0,10}"), url_text("[ -~]{0,10}"))
                    .prop_map(|(c, lo, hi)| (format!("/products?category={c}&price_min={lo}&price_max={hi}"), vec![]))
                    .boxed(),
            ),
            (
                &shop.catalog,
                &[],
                Method::GET,
                url_text("[ -~]{0,120}").prop_map(|q| (format!("/products/search?q={q}"), vec![])).boxed(),
            ),
            (
                &shop.catalog,
                &[],
                Method::GET,
                url_text("[ -~]{1,30}").prop_map(|id| (format!("/products/{id}"), vec![])).boxed(),
            ),
        ];
        for (base, headers, method, strategy) in cases {
            let mut runner = TestRunner::new(Config { cases: 100, failure_persistence: None, ..Config::default() });
            runner
                .run(&strategy, |(path, body)| {
                    check_at(&runtime, &shop.client, base, headers, method.clone(), &path, body)
                })
                .unwrap();
        }
        // The load generator's start-demo body, against this shop: a valid one starts a
        // real timeline (later ones are refused while it runs), stopped at the end.
        let loadgen = runtime.block_on(common::shop::start_loadgen(&shop));
        let bodies = shop_bodies(&["scenario", "duration_minutes", "peak_rpm", "speedup", "pool_size"]);
        let mut runner = TestRunner::new(Config { cases: 100, failure_persistence: None, ..Config::default() });
        runner
            .run(&bodies, |body| {
                check_at(&runtime, &shop.client, &loadgen, &admin, Method::POST, "/admin/start-demo", body)
            })
            .unwrap();
        let stopped = runtime
            .block_on(shop.client.post(format!("{loadgen}/admin/stop-demo")).bearer_auth("loadgen-token").send());
        assert_eq!(stopped.unwrap().status(), 200);
        drop(shop);
    }
}

#[test]
fn arbitrary_dataset_ids_never_cause_a_server_error_on_both_backends() {
    for backend in [Backend::Embedded, Backend::Services] {
        let runtime = tokio::runtime::Builder::new_multi_thread().worker_threads(2).enable_all().build().unwrap();
        let _guard = runtime.enter();
        let app = runtime.block_on(spawn_lab(LabName::Datasets, backend, |_| {}));
        let paths = prop_oneof![
            url_text("[ -~]{1,40}").prop_map(|id| (reqwest::Method::GET, format!("/api/datasets/{id}/"))),
            url_text("[ -~]{1,40}").prop_map(|id| (reqwest::Method::GET, format!("/api/datasets/{id}/statistics/"))),
            url_text("[ -~]{1,40}").prop_map(|id| (reqwest::Method::POST, format!("/api/datasets/{id}/download/"))),
        ];
        let tokens = prop_oneof![Just("Token alice-token"), Just("Token nobody"), Just("Bearer x"), Just("")];
        let mut runner = TestRunner::new(Config { cases: 150, failure_persistence: None, ..Config::default() });
        runner
            .run(&(paths, tokens), |((method, path), token)| {
                check_at(&runtime, &app.client, &app.url, &[("authorization", token)], method, &path, Vec::new())
            })
            .unwrap();
        drop(app);
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
