//! What the platform is configured with, resolved: no flag parsing here. The binary
//! turns its command line into a [`PlatformConfig`]; each lab keeps its own settings.

use std::path::PathBuf;
use std::time::Duration;

/// Where a lab keeps its data.
#[derive(Debug, Clone)]
pub struct Backend {
    /// PostgreSQL URL; without it the lab uses SQLite in `data_dir`.
    pub database_url: Option<String>,
    /// Redis URL; without it live state stays in the process.
    pub redis_url: Option<String>,
    /// The embedded SQLite databases and a generated admin token live here.
    pub data_dir: PathBuf,
    /// Prefix for every Redis key and channel, so several labs or tests share one Redis.
    pub redis_prefix: String,
    /// Connections in the database pool.
    pub db_max_connections: u32,
}

/// Everything the platform under a running lab is configured with.
#[derive(Debug, Clone)]
pub struct PlatformConfig {
    /// The lab's name (`vote`, `items`, …): its database file, Redis keys and token file.
    pub lab: &'static str,
    /// Planted bugs to run fixed (`referral` or `vote:referral`).
    pub fixed: Vec<String>,
    pub backend: Backend,
    /// Conference branding on the pages.
    pub conference: Option<String>,
    pub app_version: String,
    /// The admin token; generated at start when not set.
    pub admin_token: Option<String>,
    /// OTLP/HTTP collector; traces are off without it.
    pub otlp_endpoint: Option<String>,
    /// The URL the audience reaches the lab at (used in QR codes).
    pub public_url: Option<String>,
    /// How long a Redis command may take before the cache counts as unreachable.
    pub redis_timeout: Duration,
    /// How often live viewers' state is re-read even without a change notification (a
    /// safety net for lost notifications; changes themselves are pushed at once).
    pub feed_refresh: Duration,
    /// Open a workshop room on the lab's first service (`/room`, `breakroom join`).
    pub room: bool,
    /// Take a client's address from `X-Forwarded-For` (the per-address rate limits):
    /// only behind a proxy the operator runs.
    pub trust_proxy: bool,
    /// What `/console` records in the process: traces, logs and the metrics' history.
    pub console: ConsoleConfig,
}

/// The telemetry console's recording (`/console`).
#[derive(Debug, Clone)]
pub struct ConsoleConfig {
    /// Record spans, log events and metric samples in the process (`--console off` stops it).
    pub recording: bool,
    /// Traces kept, newest first; each holds up to [`crate::console::SPANS_PER_TRACE`] spans.
    pub traces: usize,
    /// New traces a second at most (0: every request); an OTLP collector gets them all.
    pub trace_rate: u32,
    /// Jaeger's UI (e.g. http://localhost:16686): each trace links to it.
    pub jaeger_url: Option<String>,
}

impl Default for ConsoleConfig {
    fn default() -> Self {
        ConsoleConfig {
            recording: true,
            traces: crate::console::DEFAULT_TRACES,
            trace_rate: crate::console::DEFAULT_TRACE_RATE,
            jaeger_url: None,
        }
    }
}

impl PlatformConfig {
    /// The embedded default: SQLite in `data_dir`, live state in the process.
    pub fn embedded(lab: &'static str, data_dir: PathBuf) -> Self {
        PlatformConfig {
            lab,
            fixed: Vec::new(),
            backend: Backend {
                database_url: None,
                redis_url: None,
                data_dir,
                redis_prefix: String::new(),
                db_max_connections: 10,
            },
            conference: None,
            app_version: env!("CARGO_PKG_VERSION").to_string(),
            admin_token: None,
            otlp_endpoint: None,
            public_url: None,
            redis_timeout: Duration::from_millis(150),
            feed_refresh: Duration::from_secs(2),
            room: false,
            trust_proxy: false,
            console: ConsoleConfig::default(),
        }
    }
}

/// `$XDG_DATA_HOME/breakroom`, else `~/.local/share/breakroom`, else `./breakroom-data`.
pub fn default_data_dir() -> PathBuf {
    if let Some(xdg) = std::env::var_os("XDG_DATA_HOME").filter(|v| !v.is_empty()) {
        return PathBuf::from(xdg).join("breakroom");
    }
    match std::env::var_os("HOME").filter(|v| !v.is_empty()) {
        Some(home) => PathBuf::from(home).join(".local/share/breakroom"),
        None => PathBuf::from("breakroom-data"),
    }
}
