//! The baseline of the benchmarks: a bare axum server with one GET and one JSON POST,
//! no middleware, no database. `bench/vote.sh` measures breakroom against it in the
//! same run, so the ratios hold on a noisy machine.
//!
//!   cargo run --release --example bare -- 127.0.0.1:9999

use axum::routing::{get, post};
use axum::{Json, Router};
use serde_json::{Value, json};

#[tokio::main]
async fn main() {
    let address = std::env::args().nth(1).unwrap_or_else(|| "127.0.0.1:9999".into());
    let app = Router::new()
        .route("/health", get(|| async { Json(json!({ "status": "healthy" })) }))
        .route("/votes", get(|| async { Json(json!({ "ai": { "count": 0, "label": "Ask an AI to explain it" } })) }))
        .route(
            "/vote",
            post(|Json(body): Json<Value>| async move { Json(json!({ "status": "ok", "choice": body["choice"] })) }),
        );
    let listener = tokio::net::TcpListener::bind(&address).await.expect("bind");
    axum::serve(listener, app).await.expect("serve");
}
