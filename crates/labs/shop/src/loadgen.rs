//! `breakroom serve loadgen` (port 8010): the shop's Black Friday timeline as a
//! service, for a cluster — `POST /admin/start-demo`, `GET /admin/demo-status`,
//! `POST /admin/stop-demo`. Stopping really stops the traffic and runs the cleanup.
//!
//! Its admin routes need the admin token, except from the pod itself (loopback): the
//! seed's runbook runs them with `kubectl exec … curl localhost:8010`, which proves
//! access to the pod already.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use axum::extract::{ConnectInfo, Request, State};
use axum::middleware::Next;
use axum::response::Response;
use axum::routing::{get, post};
use axum::{Json, Router};
use serde::{Deserialize, Serialize};
use serde_json::Value;
use tokio::net::TcpListener;
use tokio::sync::Mutex;
use tokio_util::sync::CancellationToken;

use crate::timeline::{self, Event, Settings, Shop, Timeline};
use driver::ShopUrls;
use platform::http::{self, AdminToken, ApiError, JsonBody};
use platform::telemetry::HttpMetrics;

/// How long `stop-demo` waits for the cleanup before answering.
const CLEANUP_WAIT: Duration = Duration::from_secs(60);

/// What the timeline is doing: `GET /admin/demo-status` (`idle` before any run).
#[derive(Debug, Clone, Serialize, utoipa::ToSchema)]
pub struct DemoStatus {
    pub running: bool,
    pub elapsed_minutes: f64,
    pub elapsed_seconds: f64,
    pub current_rpm: f64,
    pub phase: String,
    pub requests_sent: u64,
    pub errors: u64,
    pub current_error_rate: f64,
    pub checkouts_attempted: u64,
    pub checkouts_failed: u64,
    pub start_timestamp: Option<u64>,
    pub start_time_iso: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub speedup: Option<f64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub peak_rpm: Option<f64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub duration_minutes: Option<f64>,
    /// What went wrong in this run so far (a fault not applied, a phase that could not
    /// run and why), oldest first; empty when all went to plan.
    pub troubles: Vec<String>,
}

impl DemoStatus {
    /// No timeline has run yet.
    pub fn idle() -> DemoStatus {
        DemoStatus {
            running: false,
            elapsed_minutes: 0.0,
            elapsed_seconds: 0.0,
            current_rpm: 0.0,
            phase: "idle".into(),
            requests_sent: 0,
            errors: 0,
            current_error_rate: 0.0,
            checkouts_attempted: 0,
            checkouts_failed: 0,
            start_timestamp: None,
            start_time_iso: None,
            speedup: None,
            peak_rpm: None,
            duration_minutes: None,
            troubles: Vec::new(),
        }
    }
}

pub struct LoadgenConfig {
    pub urls: ShopUrls,
    pub admin: AdminToken,
    /// The shop's admin token: the configured one, else the one a local shop wrote.
    pub shop_token: Option<String>,
    pub data_dir: PathBuf,
}

struct Demo {
    timeline: Arc<Timeline>,
    /// Cancelled once the run has ended and its cleanup is done.
    done: CancellationToken,
}

struct Loadgen {
    config: LoadgenConfig,
    demo: Mutex<Option<Demo>>,
}

type Lab = State<Arc<Loadgen>>;

/// Serves until `shutdown`; a running demo is stopped and cleaned up before returning.
pub async fn serve(listener: TcpListener, config: LoadgenConfig, shutdown: CancellationToken) -> anyhow::Result<()> {
    let loadgen = Arc::new(Loadgen { config, demo: Mutex::new(None) });
    http::serve(listener, routes(loadgen.clone()), shutdown).await?;
    stop_running(&loadgen).await;
    Ok(())
}

fn routes(loadgen: Arc<Loadgen>) -> Router {
    let admin = loadgen.config.admin.clone();
    let admin_routes = Router::new()
        .route("/admin/start-demo", post(start))
        .route("/admin/demo-status", get(status))
        .route("/admin/stop-demo", post(stop))
        .route_layer(axum::middleware::from_fn_with_state(admin, admin_off_loopback));
    Router::new()
        .route("/health", get(health))
        .merge(admin_routes)
        .merge(platform::openapi::route(openapi::document()))
        .with_state(loadgen)
        .fallback(http::not_found)
        .method_not_allowed_fallback(http::method_not_allowed)
        .layer(http::Observe::new(HttpMetrics::new()))
}

async fn admin_off_loopback(
    State(token): State<AdminToken>,
    ConnectInfo(peer): ConnectInfo<SocketAddr>,
    request: Request,
    next: Next,
) -> Response {
    // Exactly the pod's own loopback address: a service mesh's sidecar delivers outside
    // callers from other 127.0.0.0/8 addresses (Istio: 127.0.0.6), which need the token.
    let own = match peer.ip() {
        std::net::IpAddr::V4(ip) => ip == std::net::Ipv4Addr::LOCALHOST,
        std::net::IpAddr::V6(ip) => {
            ip == std::net::Ipv6Addr::LOCALHOST || ip.to_ipv4_mapped() == Some(std::net::Ipv4Addr::LOCALHOST)
        }
    };
    if own {
        return next.run(request).await;
    }
    match http::refusal(&token, request.headers()) {
        Some(refused) => refused,
        None => next.run(request).await,
    }
}

fn error(status: axum::http::StatusCode, message: impl Into<std::borrow::Cow<'static, str>>) -> ApiError {
    ApiError::new(status, message).as_error_field()
}

mod openapi {
    //! The load generator's OpenAPI document: `GET /openapi.json`.

    use serde::Serialize;
    use utoipa::{OpenApi, ToSchema};

    use platform::openapi::AdminAuth;

    pub use super::DemoStatus;

    /// An error: `{"error": …}` from the load generator, `{"detail": …}` from the platform.
    #[derive(Serialize, ToSchema)]
    #[schema(min_properties = 1)]
    pub struct LoadgenError {
        error: Option<String>,
        detail: Option<String>,
    }

    /// `POST /admin/start-demo`'s answer.
    #[derive(Serialize, ToSchema)]
    pub struct DemoStarted {
        pub status: &'static str,
        pub scenario: &'static str,
        pub duration_minutes: f64,
        pub peak_rpm: f64,
        pub speedup: f64,
        pub start_timestamp: u64,
        pub start_time_iso: String,
    }

    /// `POST /admin/stop-demo`'s answer: the run's last status, when one ran.
    #[derive(Serialize, ToSchema)]
    pub struct DemoAction {
        pub status: &'static str,
        #[serde(rename = "final", skip_serializing_if = "Option::is_none")]
        pub last: Option<DemoStatus>,
    }

    /// Where the traffic goes.
    #[derive(Serialize, ToSchema)]
    pub struct ShopTargets {
        pub catalog: String,
        pub cart: String,
        pub checkout: String,
        pub payment: String,
    }

    /// `GET /health`.
    #[derive(Serialize, ToSchema)]
    pub struct LoadgenHealth {
        pub status: &'static str,
        pub service: &'static str,
        pub demo_running: bool,
        pub shop: ShopTargets,
    }

    #[derive(OpenApi)]
    #[openapi(
        info(
            title = "breakroom — shop lab: load-generator",
            description = "The Black Friday timeline as a service. Its admin actions need the admin token, \
                           except from the pod's own loopback address (127.0.0.1 or ::1), where seed 003's \
                           runbook runs them with `kubectl exec … curl localhost:8010`."
        ),
        paths(super::health, super::start, super::status, super::stop),
        components(schemas(LoadgenError, super::StartBody, DemoStarted, DemoStatus, DemoAction, ShopTargets, LoadgenHealth)),
        modifiers(&AdminAuth)
    )]
    struct LoadgenApi;

    pub fn document() -> utoipa::openapi::OpenApi {
        LoadgenApi::openapi()
    }
}

/// `POST /admin/start-demo`: every field optional.
#[derive(Deserialize, utoipa::ToSchema)]
#[schema(as = StartInput)]
struct StartBody {
    #[schema(nullable, pattern = "^blackfriday$", example = "blackfriday")]
    scenario: Option<String>,
    #[schema(nullable, minimum = 5.0, maximum = 240.0, example = 30.0)]
    duration_minutes: Option<f64>,
    /// Journeys a minute at the peak; without it, sized to the database at hand.
    #[schema(nullable, minimum = 1.0, maximum = 100000.0, example = 120.0)]
    peak_rpm: Option<f64>,
    #[schema(nullable, minimum = 0.1, maximum = 1000.0, example = 1.0)]
    speedup: Option<f64>,
    /// Checkout's pool after the cut at minute 20.
    #[schema(value_type = Option<u32>, nullable, minimum = 1, maximum = 200, example = 20)]
    pool_size: Option<Value>,
    /// With the retry storm's phase: the payment processor slows at minute 10, is half
    /// back at 12, normal at 15.
    #[schema(nullable, example = false)]
    retry_storm: Option<bool>,
}

/// `POST /admin/start-demo {"scenario":"blackfriday","duration_minutes":30,"peak_rpm":120}`
#[utoipa::path(
    post,
    path = "/admin/start-demo",
    tag = "admin",
    security((), ("admin_token" = [])),
    request_body = StartBody,
    responses(
        (status = 200, description = "The timeline started", body = openapi::DemoStarted),
        (status = 400, description = "Unknown scenario or a setting out of range", body = openapi::LoadgenError),
        (status = 409, description = "A demo is already running: stop it first", body = openapi::LoadgenError),
        (status = 401, description = "Admin token missing or wrong (off the pod's loopback)", body = openapi::LoadgenError),
        (status = 413, description = "Body over 64 KiB", body = openapi::LoadgenError),
        (status = 422, description = "Not a JSON object", body = openapi::LoadgenError),
        (status = 503, description = "The shop is not ready or its configured URLs are unusable, or no admin token for it", body = openapi::LoadgenError),
    )
)]
async fn start(State(lab): Lab, JsonBody(body): JsonBody<StartBody>) -> Result<Json<openapi::DemoStarted>, ApiError> {
    use axum::http::StatusCode;
    let scenario = body.scenario.as_deref().unwrap_or("blackfriday");
    if scenario != "blackfriday" {
        return Err(error(
            StatusCode::BAD_REQUEST,
            format!("Unknown scenario '{scenario}': the one scenario is blackfriday"),
        ));
    }
    // Out of 1..=200 is refused by `Settings::validate` below, as on the command line.
    let pool_size = crate::optional_integer(
        body.pool_size.as_ref(),
        0..=i64::from(u32::MAX),
        20,
        "pool_size must be an integer from 1 to 200",
    )? as u32;
    let mut demo = lab.demo.lock().await;
    if let Some(running) = demo.as_ref().filter(|d| !d.done.is_cancelled()) {
        return Err(error(
            StatusCode::CONFLICT,
            format!(
                "A demo is already running (started {}); POST /admin/stop-demo first",
                running.timeline.status().start_time_iso.unwrap_or_default()
            ),
        ));
    }
    let token = platform::stage::admin_token(lab.config.shop_token.as_deref(), &lab.config.data_dir, "shop")
        .map_err(|e| error(StatusCode::SERVICE_UNAVAILABLE, e.0))?;
    // The shop's URLs are the load generator's configuration, not the client's input.
    let shop = Shop::new(&lab.config.urls, token).map_err(|e| error(StatusCode::SERVICE_UNAVAILABLE, e.0))?;
    let peak_rpm = match body.peak_rpm {
        Some(rpm) => rpm,
        None => shop.auto_peak_rpm().await.map(|(rpm, _)| rpm).unwrap_or(timeline::FALLBACK_PEAK_RPM),
    };
    let settings = Settings {
        speedup: body.speedup.unwrap_or(1.0),
        peak_rpm,
        duration_minutes: body.duration_minutes.unwrap_or(timeline::TIMELINE_MINUTES),
        pool_size,
        pool_timeout_ms: 5000,
        retry_storm: body.retry_storm.unwrap_or(false),
    };
    settings.validate().map_err(|e| error(StatusCode::BAD_REQUEST, e.0))?;
    let timeline = Timeline::prepare(settings.clone(), shop)
        .await
        .map_err(|e| error(StatusCode::SERVICE_UNAVAILABLE, format!("The shop is not ready: {}", e.0)))?;
    let running = timeline.clone();
    let done = CancellationToken::new();
    let finished = done.clone();
    tokio::spawn(async move {
        let mut log = |event: Event| match event {
            Event::Minute(_) => {} // the timeline logs demo_progress itself
            Event::Milestone(text) => tracing::warn!(milestone = %text, "demo_milestone"),
            Event::AlertCondition { holds, detail } => tracing::warn!(holds, detail = %detail, "demo_alert_condition"),
            Event::Trouble(text) => tracing::error!(trouble = %text, "demo_trouble"),
            Event::Peak(peak) => tracing::warn!(
                checkouts = peak.checkouts,
                failed = peak.failed,
                error_rate = peak.error_rate,
                pool_caused = peak.pool_caused(),
                "demo_peak_failure"
            ),
        };
        running.run(&mut log).await;
        finished.cancel();
    });
    let started = openapi::DemoStarted {
        status: "demo_started",
        scenario: "blackfriday",
        duration_minutes: settings.duration_minutes,
        peak_rpm: settings.peak_rpm,
        speedup: settings.speedup,
        start_timestamp: timeline.start_timestamp(),
        start_time_iso: timeline.status().start_time_iso.unwrap_or_default(),
    };
    *demo = Some(Demo { timeline, done });
    Ok(Json(started))
}

/// `GET /admin/demo-status`
#[utoipa::path(
    get,
    path = "/admin/demo-status",
    tag = "admin",
    security((), ("admin_token" = [])),
    responses(
        (status = 200, description = "The running (or last) timeline's progress, or idle", body = openapi::DemoStatus),
        (status = 401, description = "Admin token missing or wrong (off the pod's loopback)", body = openapi::LoadgenError),
    )
)]
async fn status(State(lab): Lab) -> Json<openapi::DemoStatus> {
    let demo = lab.demo.lock().await;
    Json(demo.as_ref().map_or_else(openapi::DemoStatus::idle, |demo| demo.timeline.status()))
}

/// `POST /admin/stop-demo`: traffic stops, indexes and pool are restored, then it answers.
#[utoipa::path(
    post,
    path = "/admin/stop-demo",
    tag = "admin",
    security((), ("admin_token" = [])),
    responses(
        (status = 200, description = "Stopped and cleaned up, or nothing was running", body = openapi::DemoAction),
        (status = 401, description = "Admin token missing or wrong (off the pod's loopback)", body = openapi::LoadgenError),
    )
)]
async fn stop(State(lab): Lab) -> Json<openapi::DemoAction> {
    Json(match stop_running(&lab).await {
        Some(status) => openapi::DemoAction { status: "demo_stopped", last: Some(status) },
        None => openapi::DemoAction { status: "not_running", last: None },
    })
}

async fn stop_running(lab: &Loadgen) -> Option<openapi::DemoStatus> {
    // Not holding the lock while the cleanup runs: demo-status keeps answering.
    let (timeline, done) = {
        let demo = lab.demo.lock().await;
        let demo = demo.as_ref().filter(|d| !d.done.is_cancelled())?;
        (demo.timeline.clone(), demo.done.clone())
    };
    timeline.stop();
    if tokio::time::timeout(CLEANUP_WAIT, done.cancelled()).await.is_err() {
        tracing::error!("the demo's cleanup did not finish in time; run `breakroom reset shop`");
    }
    Some(timeline.status())
}

/// `GET /health`: where it sends the traffic, and whether a demo runs.
#[utoipa::path(get, path = "/health", tag = "probes", responses((status = 200, description = "Always healthy", body = openapi::LoadgenHealth)))]
async fn health(State(lab): Lab) -> Json<openapi::LoadgenHealth> {
    let running = lab.demo.lock().await.as_ref().is_some_and(|d| !d.done.is_cancelled());
    let urls = &lab.config.urls;
    let shop = openapi::ShopTargets {
        catalog: urls.catalog_url.clone(),
        cart: urls.cart_url.clone(),
        checkout: urls.checkout_url.clone(),
        payment: urls.payment_url.clone(),
    };
    Json(openapi::LoadgenHealth { status: "ok", service: "load-generator", demo_running: running, shop })
}
