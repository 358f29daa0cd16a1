//! `--control 127.0.0.1:PORT`: steer a run while it goes — `GET /status`,
//! `POST /rate {"rate": "120rpm"}`, `POST /stop`.

use std::sync::Arc;

use axum::extract::State;
use axum::routing::{get, post};
use axum::{Json, Router};
use serde::Deserialize;
use serde_json::json;

use super::engine::Run;
use super::record::Snapshot;
use super::shape::parse_rate;
use platform::http::{ApiError, JsonBody};

pub fn router(run: Arc<Run>) -> Router {
    Router::new()
        .route("/status", get(status))
        .route("/rate", post(rate))
        .route("/stop", post(stop))
        .fallback(platform::http::not_found)
        .with_state(run)
}

pub fn snapshot(run: &Run) -> Snapshot {
    let target = *run.target_rps.lock().unwrap_or_else(|p| p.into_inner());
    run.recorder.snapshot(run.profile.name, "open", run.elapsed(), target)
}

async fn status(State(run): State<Arc<Run>>) -> Json<Snapshot> {
    Json(snapshot(&run))
}

#[derive(Deserialize)]
struct RateRequest {
    rate: String,
}

async fn rate(
    State(run): State<Arc<Run>>,
    JsonBody(request): JsonBody<RateRequest>,
) -> Result<Json<serde_json::Value>, ApiError> {
    let rps = parse_rate(&request.rate).map_err(ApiError::unprocessable)?;
    if !(rps == 0.0 || (0.001..=1_000_000.0).contains(&rps)) {
        return Err(ApiError::unprocessable("rate must be 0 (pause) or between 0.001 and 1,000,000 per second"));
    }
    *run.rate_override.lock().unwrap_or_else(|p| p.into_inner()) = Some(rps);
    eprintln!("drive: target rate set to {rps:.2}/s");
    Ok(Json(json!({ "status": "ok", "target_rps": rps })))
}

async fn stop(State(run): State<Arc<Run>>) -> Json<serde_json::Value> {
    run.stop.cancel();
    Json(json!({ "status": "stopping" }))
}
