//! What every lab stands on. Nothing here knows a lab: a lab brings its router, its
//! metrics and the list of its planted bugs; the platform brings the rest.

pub mod bugs;
pub mod cache;
pub mod clock;
pub mod config;
pub mod console;
pub mod db;
pub mod feed;
pub mod http;
pub mod lab;
pub mod landing;
pub mod limit;
pub mod openapi;
pub mod qr;
pub mod rehearsal;
pub mod room;
pub mod stage;
pub mod telemetry;

use std::sync::Arc;
use std::time::Duration;

use anyhow::Context;
use axum::Router;
use axum::extract::State;
use axum::http::header;
use axum::response::IntoResponse;
use axum::routing::{get, post};
use prometheus_client::registry::Registry;
use tokio_util::sync::CancellationToken;

use bugs::{BugInfo, Bugs};
use cache::Redis;
use config::PlatformConfig;
use db::Db;
use http::{AdminToken, ApiError};
use telemetry::HttpMetrics;

/// How long a readiness probe waits for one dependency.
const PROBE_TIMEOUT: Duration = Duration::from_secs(1);

#[derive(Clone)]
pub struct Platform {
    pub config: Arc<PlatformConfig>,
    pub db: Db,
    pub redis: Option<Redis>,
    pub bugs: Bugs,
    pub admin: AdminToken,
    /// True when no token was configured and one was made up at start.
    pub admin_token_generated: bool,
    /// Fires on SIGTERM/Ctrl-C: long-lived work (SSE streams, subscriptions) ends on it.
    pub shutdown: CancellationToken,
    pub http_metrics: HttpMetrics,
    /// `/console`: what the process records of its own telemetry.
    pub console: console::Console,
}

/// One dependency's state, as `/ready` reports it.
#[derive(Debug, Clone, Copy)]
pub struct DependencyState {
    pub name: &'static str,
    pub up: bool,
}

impl Platform {
    pub async fn start(
        config: PlatformConfig,
        bugs: &[BugInfo],
        shutdown: CancellationToken,
    ) -> anyhow::Result<Platform> {
        let lab = config.lab;
        let mut bugs = Bugs::new(lab, bugs, &config.fixed)?;
        let backend = &config.backend;
        let db = Db::open(backend.database_url.as_deref(), &backend.data_dir, lab, backend.db_max_connections).await?;
        let redis = match backend.redis_url.as_deref() {
            Some(url) => Some(Redis::connect(url, &backend.redis_prefix, config.redis_timeout)?),
            None => None,
        };
        if let Some(redis) = &redis {
            // Replicas share one switch: a flip or a restore on one reaches them all.
            bugs.follow(redis.clone(), redis.key(&format!("breakroom:{lab}:bugs")), shutdown.clone());
        }
        // Trimmed: a token mounted from a file usually ends in a newline.
        let (admin, admin_token_generated) =
            match config.admin_token.as_deref().map(str::trim).filter(|t| !t.is_empty()) {
                Some(token) => (AdminToken::new(token), false),
                None => (AdminToken::generate(), true),
            };
        if !admin_token_generated && let Some(reason) = admin.weakness() {
            tracing::warn!(
                lab,
                reason,
                "weak admin token: anyone on the network could guess it; {}",
                http::STRONG_TOKEN_HINT
            );
        }
        let console = console::Console::new(config.console.clone());
        Ok(Platform {
            console,
            config: Arc::new(config),
            db,
            redis,
            bugs,
            admin,
            admin_token_generated,
            shutdown,
            http_metrics: HttpMetrics::new(),
        })
    }

    /// Why the configured admin token is easy to guess, when it is (a generated one never is).
    pub fn weak_admin_token(&self) -> Option<String> {
        if self.admin_token_generated { None } else { self.admin.weakness() }
    }

    /// Wraps a lab's admin actions so each one requires the admin token.
    pub fn admin_only<S: Clone + Send + Sync + 'static>(&self, router: Router<S>) -> Router<S> {
        router.route_layer(axum::middleware::from_fn_with_state(self.admin.clone(), http::require_admin))
    }

    /// The database and, when configured, Redis, each probed with a short timeout.
    /// Whether the database answers a trivial query within the probe timeout.
    pub async fn database_up(&self) -> bool {
        matches!(tokio::time::timeout(PROBE_TIMEOUT, self.db.ping()).await, Ok(Ok(())))
    }

    pub async fn dependencies(&self) -> Vec<DependencyState> {
        let mut states = vec![DependencyState { name: self.db.backend_name(), up: self.database_up().await }];
        if let Some(redis) = &self.redis {
            let up = matches!(tokio::time::timeout(PROBE_TIMEOUT, redis.ping()).await, Ok(Ok(())));
            states.push(DependencyState { name: "redis", up });
        }
        states
    }

    /// The lab's router plus what every lab serves: `/metrics`, `/static/*`,
    /// `/admin/bugs`, `/console`, JSON 404/405, request telemetry, a body limit and panic safety.
    /// `job` is the name the lab's alert rules know it by (`vote-api`).
    pub fn assemble(&self, job: &'static str, lab: Router, registry: Registry) -> Router {
        self.assemble_service(job, lab, registry, self.http_metrics.clone(), Some(self.db.clone()))
    }

    /// [`assemble`](Self::assemble) for one of several services of a lab in one
    /// process: each has its own request metrics and reports the pool it uses.
    pub fn assemble_service(
        &self,
        job: &'static str,
        lab: Router,
        mut registry: Registry,
        http_metrics: HttpMetrics,
        db: Option<Db>,
    ) -> Router {
        http_metrics.register(&mut registry);
        registry.register(
            "http_stalled_connections_closed",
            "Connections closed because the client stopped reading (stalled event-stream viewers), process-wide",
            http::shed_counter(),
        );
        if let Some(db) = &db {
            db.register_metrics(&mut registry);
        }
        let registry = Arc::new(registry);
        self.console.add_source(job, registry.clone(), db.clone());
        let scrape = Scrape { registry, db };
        let bug_admin = Router::new()
            .route("/admin/bugs", get(bugs::list))
            .route("/admin/bugs/{name}", post(bugs::flip))
            .with_state(self.bugs.clone());
        lab.merge(self.admin_only(bug_admin))
            .merge(self.console.router())
            .route("/metrics", get(metrics).with_state(scrape))
            .route("/static/{*path}", get(http::static_file))
            .fallback(http::not_found)
            .method_not_allowed_fallback(http::method_not_allowed)
            .layer(http::Observe::new(http_metrics))
    }

    /// Writes a generated admin token where `breakroom reset` on this machine finds it.
    pub fn write_generated_token(&self) -> anyhow::Result<Option<std::path::PathBuf>> {
        if !self.admin_token_generated {
            return Ok(None);
        }
        write_token_file(&self.config.backend.data_dir, self.config.lab, self.admin.expose()).map(Some)
    }

    pub async fn close(&self) {
        self.db.close().await;
    }
}

/// Where a generated admin token of `lab` is kept in `data_dir`.
pub fn token_file(data_dir: &std::path::Path, lab: &str) -> std::path::PathBuf {
    data_dir.join(format!("{lab}.admin-token"))
}

/// Writes `token` where `breakroom reset` on this machine finds the token of `lab`,
/// readable by its owner only.
pub fn write_token_file(data_dir: &std::path::Path, lab: &str, token: &str) -> anyhow::Result<std::path::PathBuf> {
    let path = token_file(data_dir, lab);
    std::fs::create_dir_all(data_dir)?;
    write_private(&path, token).with_context(|| format!("writing {}", path.display()))?;
    Ok(path)
}

/// Writes `contents` to `path`, readable and writable by its owner only (also when
/// the file was already there with wider permissions).
#[cfg(unix)]
pub fn write_private(path: &std::path::Path, contents: &str) -> std::io::Result<()> {
    use std::io::Write;
    use std::os::unix::fs::{OpenOptionsExt, PermissionsExt};
    let mut file = std::fs::OpenOptions::new().write(true).create(true).truncate(true).mode(0o600).open(path)?;
    file.set_permissions(std::fs::Permissions::from_mode(0o600))?;
    file.write_all(contents.as_bytes())
}

#[cfg(not(unix))]
pub fn write_private(path: &std::path::Path, contents: &str) -> std::io::Result<()> {
    std::fs::write(path, contents)
}

#[derive(Clone)]
struct Scrape {
    registry: Arc<Registry>,
    db: Option<Db>,
}

/// `GET /metrics`: Prometheus/OpenMetrics text.
#[utoipa::path(
    get,
    path = "/metrics",
    tag = "platform",
    responses((status = 200, description = "Prometheus/OpenMetrics text", content_type = "application/openmetrics-text", body = String))
)]
async fn metrics(State(scrape): State<Scrape>) -> Result<impl IntoResponse, ApiError> {
    if let Some(db) = &scrape.db {
        db.sample_pool();
    }
    let mut body = String::new();
    prometheus_client::encoding::text::encode(&mut body, &scrape.registry).map_err(ApiError::internal)?;
    Ok(([(header::CONTENT_TYPE, "application/openmetrics-text; version=1.0.0; charset=utf-8")], body))
}
