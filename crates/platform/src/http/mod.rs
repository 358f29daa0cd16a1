//! What every lab's HTTP surface shares: the error type, the JSON extractor, request
//! telemetry, admin authentication, embedded static files and the server loop.

mod admin;
mod assets;
mod bare;
mod client;
mod error;
mod extract;
mod headers;
mod observe;
mod serve;
mod stall;
mod waiting;

use axum::http::StatusCode;

pub use admin::{AdminToken, MIN_TOKEN_CHARS, STRONG_TOKEN_HINT, refusal, require_admin};
pub use assets::static_file;
pub use client::{blocking_client, client, tls_config, tls_failure};
pub use error::{ApiError, database_failure};
pub use extract::{BODY_TIMEOUT, Confirmed, FormBody, JsonBody, PathParam, QueryParams};
pub(crate) use headers::add_security_headers;
use headers::oversized_headers;
pub use headers::{BODY_LIMIT_BYTES, HEADER_LIMIT_BYTES, HEADER_LIMIT_COUNT};
pub use observe::{Observe, Observed, Observing, REQUEST_TIMEOUT};
pub use serve::{HEADER_READ_TIMEOUT, serve};
pub use stall::{WRITE_STALL, shed_counter};

pub async fn not_found() -> ApiError {
    ApiError::not_found("Not Found")
}

pub async fn method_not_allowed() -> ApiError {
    ApiError::new(StatusCode::METHOD_NOT_ALLOWED, "Method Not Allowed")
}

#[cfg(test)]
mod tests {
    use axum::extract::Request;
    use axum::{Json, Router};
    use tokio::net::TcpListener;
    use tokio_util::sync::CancellationToken;

    use super::*;
    use crate::telemetry::HttpMetrics;

    /// A router behind `observe`, served on a free loopback port.
    async fn serve_observed(router: Router) -> (String, HttpMetrics) {
        let metrics = HttpMetrics::new();
        let router = router.layer(Observe::new(metrics.clone()));
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let url = format!("http://{}", listener.local_addr().unwrap());
        tokio::spawn(serve(listener, router, CancellationToken::new()));
        (url, metrics)
    }

    #[tokio::test]
    async fn a_panicking_handler_answers_500_and_the_server_carries_on() {
        let router = Router::new()
            .route(
                "/boom",
                axum::routing::get(|| async {
                    let planted: Option<&str> = None;
                    planted.expect("planted panic")
                }),
            )
            .route("/fine", axum::routing::get(|| async { "fine" }));
        let (url, metrics) = serve_observed(router).await;
        let client = super::client().build().unwrap();
        let boom = client.get(format!("{url}/boom")).send().await.unwrap();
        assert_eq!(boom.status(), 500);
        assert_eq!(boom.headers()["x-content-type-options"], "nosniff");
        assert_eq!(boom.json::<serde_json::Value>().await.unwrap()["detail"], "Internal server error");
        assert_eq!(client.get(format!("{url}/fine")).send().await.unwrap().status(), 200);
        let counted = metrics.requests.get_or_create(&super::super::telemetry::RequestLabels {
            method: "GET",
            endpoint: "/boom",
            status: 500,
        });
        assert_eq!(counted.get(), 1, "the panic is counted as a 500 of its route");
    }

    #[tokio::test(start_paused = true)]
    async fn a_request_past_the_deadline_is_answered_503_and_counted() {
        let patient = |seconds| async move {
            tokio::time::sleep(std::time::Duration::from_secs(seconds)).await;
            "done"
        };
        let router = Router::new()
            .route("/slow", axum::routing::get(move || patient(3600)))
            .route("/just-in-time", axum::routing::get(move || patient(REQUEST_TIMEOUT.as_secs() - 1)));
        let metrics = HttpMetrics::new();
        let router = router.layer(Observe::new(metrics.clone()));
        use tower::ServiceExt;
        let get = |path: &str| Request::get(path).body(axum::body::Body::empty()).unwrap();
        let slow = router.clone().oneshot(get("/slow")).await.unwrap();
        assert_eq!(slow.status(), 503);
        assert_eq!(slow.headers()["retry-after"], "1");
        let body = axum::body::to_bytes(slow.into_body(), 4096).await.unwrap();
        assert!(String::from_utf8_lossy(&body).contains("longer than 30 s"));
        assert_eq!(router.oneshot(get("/just-in-time")).await.unwrap().status(), 200);
        let counted = |endpoint, status| {
            let labels = super::super::telemetry::RequestLabels { method: "GET", endpoint, status };
            metrics.requests.get_or_create(&labels).get()
        };
        assert_eq!((counted("/slow", 503), counted("/just-in-time", 200)), (1, 1));
    }

    #[tokio::test]
    async fn documents_and_redirects_get_every_security_header_and_the_api_two() {
        let router = Router::new()
            .route("/page", axum::routing::get(|| async { axum::response::Html("<p>hi</p>") }))
            .route("/away", axum::routing::get(|| async { axum::response::Redirect::to("/page") }))
            .route("/json", axum::routing::get(|| async { Json(serde_json::json!({ "ok": true })) }));
        let router = router.layer(Observe::new(HttpMetrics::new()));
        use tower::ServiceExt;
        let get = |path: &str| Request::get(path).body(axum::body::Body::empty()).unwrap();
        for path in ["/page", "/away"] {
            let response = router.clone().oneshot(get(path)).await.unwrap();
            let headers = response.headers();
            assert!(headers["content-security-policy"].to_str().unwrap().contains("frame-ancestors 'none'"), "{path}");
            assert_eq!(headers["x-content-type-options"], "nosniff", "{path}");
            assert_eq!(headers["x-frame-options"], "DENY", "{path}");
            assert_eq!(headers["referrer-policy"], "no-referrer", "{path}: a redirect's policy governs where it leads");
        }
        let json = router.oneshot(get("/json")).await.unwrap();
        let headers = json.headers();
        assert_eq!(headers["content-security-policy"], "default-src 'none'; frame-ancestors 'none'");
        assert_eq!(headers["x-content-type-options"], "nosniff");
        assert!(!headers.contains_key("x-frame-options") && !headers.contains_key("referrer-policy"));
    }

    #[derive(serde::Deserialize)]
    struct Anything {}

    #[tokio::test]
    async fn a_body_over_the_limit_is_refused_whether_or_not_its_length_is_declared() {
        let router =
            Router::new().route("/echo", axum::routing::post(|JsonBody(_): JsonBody<Anything>| async { "ok" }));
        let (url, _) = serve_observed(router).await;
        let client = super::client().build().unwrap();
        let big = format!("{{\"pad\": \"{}\"}}", "x".repeat(BODY_LIMIT_BYTES));
        let declared = client.post(format!("{url}/echo")).header("content-type", "application/json").body(big.clone());
        let declared = declared.send().await.unwrap();
        assert_eq!(declared.status(), 413);
        assert_eq!(declared.headers()["connection"], "close", "the unread rest of the body ends the connection");
        let chunks = futures_util::stream::iter(
            big.into_bytes().chunks(4096).map(|c| Ok::<_, std::io::Error>(c.to_vec())).collect::<Vec<_>>(),
        );
        let streamed = client
            .post(format!("{url}/echo"))
            .header("content-type", "application/json")
            .body(reqwest::Body::wrap_stream(chunks))
            .send()
            .await
            .unwrap();
        assert_eq!(streamed.status(), 413, "a chunked body without Content-Length is counted as it arrives");
        let detail = streamed.json::<serde_json::Value>().await.unwrap()["detail"].as_str().unwrap().to_owned();
        assert!(detail.contains("64 KiB"), "{detail}");
        let small = client.post(format!("{url}/echo")).header("content-type", "application/json").body("{}");
        assert_eq!(small.send().await.unwrap().status(), 200);
    }

    #[tokio::test(start_paused = true)]
    async fn a_stalled_body_is_a_408_at_the_body_timeout_not_a_503_at_the_deadline() {
        let router =
            Router::new().route("/echo", axum::routing::post(|JsonBody(_): JsonBody<Anything>| async { "ok" }));
        let service = router.layer(Observe::new(HttpMetrics::new()));
        use futures_util::StreamExt;
        // Two bytes of the body, then nothing: the client stalls.
        let start = futures_util::stream::iter([Ok::<_, std::io::Error>(axum::body::Bytes::from_static(b"{\""))]);
        let stalled = start.chain(futures_util::stream::pending());
        let request = Request::post("/echo")
            .header("content-type", "application/json")
            .body(axum::body::Body::from_stream(stalled))
            .unwrap();
        let began = tokio::time::Instant::now();
        use tower::ServiceExt;
        let response = service.oneshot(request).await.unwrap();
        assert_eq!(response.status(), StatusCode::REQUEST_TIMEOUT);
        assert_eq!(began.elapsed(), extract::BODY_TIMEOUT);
        assert_eq!(response.headers()["connection"], "close");
        let body = axum::body::to_bytes(response.into_body(), 4096).await.unwrap();
        let detail: serde_json::Value = serde_json::from_slice(&body).unwrap();
        assert!(detail["detail"].as_str().unwrap().contains("did not arrive within 10 s"), "{detail}");
    }

    #[test]
    fn admin_token_matches_only_itself() {
        let token = AdminToken::new("s3cret-token");
        assert!(token.matches("s3cret-token"));
        assert!(!token.matches("s3cret-tokem"));
        assert!(!token.matches("s3cret"));
        assert!(!token.matches(""));
    }

    #[test]
    fn generated_tokens_differ_and_are_hex() {
        let (a, b) = (AdminToken::generate(), AdminToken::generate());
        assert_ne!(a.expose(), b.expose());
        assert_eq!(a.expose().len(), 32);
        assert!(a.expose().chars().all(|c| c.is_ascii_hexdigit()));
    }
}
