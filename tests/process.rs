//! The `breakroom` binary as a speaker runs it: start, serve, export traces, stop.

use std::sync::{Arc, Mutex};
use std::time::Duration;

use axum::body::Bytes;
use axum::routing::post;
use tokio::process::Child;

mod common;

use common::binary::sigterm;
use common::fetch;

/// Starts `breakroom serve vote` on a free port; returns once it answers `/health`.
async fn serve(data_dir: &std::path::Path, envs: &[(&str, &str)]) -> (Child, String, Arc<Mutex<String>>) {
    serve_lab("vote", data_dir, envs).await
}

async fn serve_lab(
    lab: &str,
    data_dir: &std::path::Path,
    envs: &[(&str, &str)],
) -> (Child, String, Arc<Mutex<String>>) {
    // A vote lab's flag: other labs refuse it.
    let args: &[&str] = if lab == "vote" { &["--seed-partners", "100"] } else { &[] };
    let served = common::binary::serve(lab, data_dir, args, envs).await;
    (served.child, served.url, served.transcript)
}

#[tokio::test]
async fn serve_prints_a_banner_with_urls_and_a_token_it_also_writes_down() {
    let dir = tempfile::tempdir().unwrap();
    let (mut child, url, stderr) = serve(dir.path(), &[]).await;
    let token = std::fs::read_to_string(dir.path().join("vote.admin-token")).expect("the generated token is written");
    assert_eq!(token.trim().len(), 32);
    let banner = stderr.lock().unwrap().clone();
    for expected in [
        format!("vote page      {url}/"),
        format!("referral link  {url}/?referral=conf-partner-2026"),
        format!("results        {url}/results"),
        "bug referral   BUGGY   (fix: --fixed referral)".to_string(),
    ] {
        assert!(banner.contains(&expected), "banner lacks {expected:?}:\n{banner}");
    }
    assert!(!banner.contains(token.trim()), "not on a terminal: the token is not printed anywhere:\n{banner}");

    // The written token is the one the server accepts.
    let client = breakroom::platform::http::client().build().unwrap();
    let reset = client.post(format!("{url}/admin/reset?confirm=yes")).bearer_auth(token.trim()).send().await.unwrap();
    assert_eq!(reset.status(), 200);
    assert!(sigterm(&mut child).await.success());
}

#[tokio::test]
async fn sigterm_ends_open_streams_and_exits_promptly() {
    let dir = tempfile::tempdir().unwrap();
    let (mut child, url, _) = serve(dir.path(), &[]).await;
    let stream = fetch(format!("{url}/stream")).await.unwrap();
    assert_eq!(stream.status(), 200);
    let status = sigterm(&mut child).await;
    assert!(status.success(), "exit status {status:?}");
    // The open stream was ended by the server, not left hanging.
    let body = tokio::time::timeout(Duration::from_secs(2), stream.text()).await.expect("the stream ended");
    assert!(body.unwrap_or_default().contains("event: votes"));
}

/// A stand-in OTLP/HTTP collector that keeps every export it receives.
async fn collector() -> (String, Arc<Mutex<Vec<Bytes>>>) {
    let received: Arc<Mutex<Vec<Bytes>>> = Arc::default();
    let sink = received.clone();
    let collector = axum::Router::new().route(
        "/v1/traces",
        post(move |body: Bytes| {
            let sink = sink.clone();
            async move {
                sink.lock().unwrap().push(body);
                ""
            }
        }),
    );
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let endpoint = format!("http://{}", listener.local_addr().unwrap());
    tokio::spawn(async move { axum::serve(listener, collector).await });
    (endpoint, received)
}

/// Whether the exported protobuf bytes contain `needle` (names and attribute keys are
/// plain strings inside it).
fn exported(received: &Mutex<Vec<Bytes>>, needle: &[u8]) -> bool {
    let all: Vec<u8> = received.lock().unwrap().iter().flat_map(|b| b.iter().copied()).collect();
    all.windows(needle.len()).any(|w| w == needle)
}

#[tokio::test]
async fn traces_reach_an_otlp_collector() {
    let (endpoint, received) = collector().await;
    let dir = tempfile::tempdir().unwrap();
    let envs =
        [("OTEL_EXPORTER_OTLP_ENDPOINT", endpoint.as_str()), ("BREAKROOM_JAEGER_URL", "http://jaeger.test:16686/")];
    let (mut child, url, _) = serve(dir.path(), &envs).await;
    let client = breakroom::platform::http::client().build().unwrap();
    let vote = client
        .post(format!("{url}/vote"))
        .header("traceparent", "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01")
        .json(&serde_json::json!({ "choice": "ai", "referral": null }))
        .send()
        .await
        .unwrap();
    assert_eq!(vote.status(), 200);
    // The console keeps the same span under the same trace id, and links it to Jaeger.
    let trace_id = "4bf92f3577b34da6a3ce929d0e0e4736";
    let console: serde_json::Value =
        fetch(format!("{url}/console/api/traces/{trace_id}")).await.unwrap().json().await.unwrap();
    assert_eq!(console["trace"]["spans"][0]["name"], "POST /vote", "{console}");
    assert_eq!(console["trace"]["spans"][0]["parent_id"], "00f067aa0ba902b7", "the caller's span is its parent");
    assert_eq!(console["jaeger"], format!("http://jaeger.test:16686/trace/{trace_id}"));
    // Shutting down flushes the batch exporter.
    assert!(sigterm(&mut child).await.success());

    assert!(exported(&received, b"vote-api"), "the service name is vote-api");
    assert!(exported(&received, b"POST /vote"), "the request span is named after its route");
    let trace_id: Vec<u8> = (0..16)
        .map(|i| u8::from_str_radix(&"4bf92f3577b34da6a3ce929d0e0e4736"[2 * i..2 * i + 2], 16).unwrap())
        .collect();
    assert!(exported(&received, &trace_id), "the span continues the caller's trace (W3C traceparent)");
}

/// Seed 002's point: one write shows a database span and a cache span.
#[tokio::test]
async fn an_item_write_is_traced_to_the_database_and_the_cache() {
    let (endpoint, received) = collector().await;
    let dir = tempfile::tempdir().unwrap();
    let (mut child, url, _) = serve_lab("items", dir.path(), &[("OTEL_EXPORTER_OTLP_ENDPOINT", &endpoint)]).await;
    let created = breakroom::platform::http::client()
        .build()
        .unwrap()
        .post(format!("{url}/items"))
        .json(&serde_json::json!({ "name": "Traced", "price": 1.5 }))
        .send()
        .await
        .unwrap();
    assert_eq!(created.status(), 200);
    let id = created.json::<serde_json::Value>().await.unwrap()["id"].as_str().unwrap().to_string();
    fetch(format!("{url}/items/{id}")).await.unwrap();
    assert!(sigterm(&mut child).await.success());

    for needle in [
        "items",
        "POST /items",
        "postgres_insert",
        "redis_set",
        "redis_get",
        "cache.key",
        "cache.hit",
        "item.id",
        "db.system",
        &id,
    ] {
        assert!(exported(&received, needle.as_bytes()), "{needle} is exported");
    }
}

#[tokio::test]
async fn a_weak_admin_token_is_warned_about_on_the_banner_and_the_admin_page() {
    let dir = tempfile::tempdir().unwrap();
    let (mut child, url, transcript) =
        serve(dir.path(), &[("BREAKROOM_ADMIN_TOKEN", "change-me-before-the-talk")]).await;
    let page = fetch(format!("{url}/admin")).await.unwrap().text().await.unwrap();
    assert!(page.contains("Weak admin token") && page.contains("openssl rand -hex 16"), "{page}");
    assert!(sigterm(&mut child).await.success());
    let transcript = transcript.lock().unwrap().clone();
    assert!(transcript.contains("WEAK ADMIN TOKEN: it is an example value"), "the banner warns:\n{transcript}");
    assert!(transcript.contains("weak admin token"), "the log warns:\n{transcript}");
    assert!(!transcript.contains("change-me-before-the-talk"), "the token itself is never printed:\n{transcript}");

    // A strong token: no warning anywhere.
    let (mut child, url, transcript) = serve(dir.path(), &[("BREAKROOM_ADMIN_TOKEN", "0123456789abcdef0123")]).await;
    let page = fetch(format!("{url}/admin")).await.unwrap().text().await.unwrap();
    assert!(!page.contains("Weak admin token"), "{page}");
    assert!(sigterm(&mut child).await.success());
    assert!(!transcript.lock().unwrap().to_lowercase().contains("weak admin token"));
}

#[tokio::test]
async fn admin_tokens_never_reach_the_logs() {
    let dir = tempfile::tempdir().unwrap();
    let secret = "s3cret-admin-token-for-the-log-test";
    let (mut child, url, transcript) =
        serve(dir.path(), &[("BREAKROOM_ADMIN_TOKEN", secret), ("RUST_LOG", "debug")]).await;
    let client = breakroom::platform::http::client().build().unwrap();
    let wrong = "guessed-token-from-the-audience";
    let refused = client.post(format!("{url}/admin/reset?confirm=yes")).bearer_auth(wrong).send().await.unwrap();
    assert_eq!(refused.status(), 401);
    let accepted = client.post(format!("{url}/admin/reset?confirm=yes")).bearer_auth(secret).send().await.unwrap();
    assert_eq!(accepted.status(), 200);
    assert!(sigterm(&mut child).await.success());
    let transcript = transcript.lock().unwrap().clone();
    assert!(transcript.contains("session_reset"), "the logs were captured:\n{transcript}");
    assert!(!transcript.contains(secret) && !transcript.contains(wrong), "a token leaked into the logs:\n{transcript}");
}
