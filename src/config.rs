//! One typed configuration, from flags, then environment variables, then defaults.

use std::net::{IpAddr, SocketAddr};
use std::path::PathBuf;
use std::time::Duration;

use clap::{Args, Parser, Subcommand, ValueEnum};

use crate::labs::LabName;
pub use items::settings::ItemsArgs;
use platform::config::{Backend, PlatformConfig};
pub use shop::settings::{DEFAULT_PRODUCTS, ShopArgs, ShopDataArgs, ShopService};
pub use vote::settings::VoteArgs;

#[derive(Debug, Parser)]
#[command(
    name = "breakroom",
    version,
    about = "Live production-debugging labs for conference talks and workshops",
    long_about = "breakroom runs small web apps with a planted production-only bug, \
                  the traffic that triggers it, the telemetry that reveals it, a check \
                  that proves the fix and a reset for the next talk."
)]
pub struct Cli {
    #[command(subcommand)]
    pub command: Command,
}

#[derive(Debug, Subcommand)]
pub enum Command {
    /// Run a lab's web app (embedded SQLite by default; PostgreSQL + Redis when their URLs are set)
    Serve(ServeArgs),
    /// Replay the audience traffic that triggers a lab's bug, and say what happened
    Demonstrate(StageArgs),
    /// Test the fix: exit 0 only when the lab's bug no longer reproduces
    Check(StageArgs),
    /// Put a running lab back in its pre-talk state (needs the admin token)
    Reset(StageArgs),
    /// Print a lab's reference fix, from the source compiled into this binary
    Explain(ExplainArgs),
    /// Send traffic to a lab: open-model load with phases, live control and a report
    Drive(driver::DriveArgs),
    /// Prove every scenario before a talk: reproduces, shows, is caught, is fixed, resets
    Rehearse(crate::rehearse::RehearseArgs),
    /// List the scenarios (--markdown: the docs/scenarios.md page)
    Scenarios(crate::rehearse::ScenariosArgs),
    /// Create a lab's tables and seed data, then exit
    Seed(SeedArgs),
    /// The fix loop: serve a lab from this checkout and rebuild + restart it on every saved edit
    #[command(long_about = "Serves a lab like `serve` (same flags) from the checkout this binary was \
        built from, watches its sources, and on every save rebuilds and restarts it on the same \
        port. The data stays (the SQLite file or the PostgreSQL database); in-memory state such as \
        the referral cache starts empty, as after any restart. A build error is printed in full and \
        the previous server keeps answering. Run it as `cargo run -- dev vote`.")]
    Dev(ServeArgs),
}

/// Where a lab keeps its data.
#[derive(Debug, Clone, Args)]
pub struct BackendArgs {
    /// PostgreSQL URL (postgres://user@host/db); without it the lab uses SQLite in --data-dir
    #[arg(long, env = "DATABASE_URL")]
    pub database_url: Option<String>,
    /// Redis URL (redis://host:6379); without it live state stays in the process
    #[arg(long, env = "REDIS_URL")]
    pub redis_url: Option<String>,
    /// Directory for the embedded SQLite databases and the generated admin token
    #[arg(long, env = "BREAKROOM_DATA_DIR", default_value_os_t = default_data_dir())]
    pub data_dir: PathBuf,
    /// Prefix for every Redis key and channel, so several labs or tests can share one Redis
    #[arg(long, env = "BREAKROOM_REDIS_PREFIX", default_value = "")]
    pub redis_prefix: String,
    /// Connections in the database pool
    #[arg(long, env = "DB_MAX_CONNECTIONS", default_value_t = 10)]
    pub db_max_connections: u32,
}

/// What `breakroom serve` runs: a lab, or the shop's load generator service.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum ServeTarget {
    /// Conference poll whose referral cache exhausts after 10 referral votes
    Vote,
    /// Write-through cache over the database and Redis; survives a Redis outage
    Items,
    /// Research datasets whose cached statistics are never invalidated on download
    Datasets,
    /// Black Friday: catalog, cart and checkout; dropped indexes and a too-small pool
    Shop,
    /// The shop's load generator as a service (port 8010): start, watch and stop the timeline
    Loadgen,
}

impl ServeTarget {
    pub fn lab(self) -> Option<LabName> {
        match self {
            ServeTarget::Vote => Some(LabName::Vote),
            ServeTarget::Items => Some(LabName::Items),
            ServeTarget::Datasets => Some(LabName::Datasets),
            ServeTarget::Shop => Some(LabName::Shop),
            ServeTarget::Loadgen => None,
        }
    }
}

#[derive(Debug, Clone, Args)]
pub struct ServeArgs {
    /// Which lab to run (or the shop's load generator)
    pub lab: ServeTarget,
    /// TCP port to listen on: 8000 for a lab, 8010 for loadgen (the shop uses
    /// --catalog-port, --cart-port and --checkout-port)
    #[arg(long, env = "PORT")]
    pub port: Option<u16>,
    /// Address to bind (0.0.0.0 so phones on the same network and a cluster's ingress reach it)
    #[arg(long, env = "BREAKROOM_BIND", default_value = "0.0.0.0")]
    pub bind: IpAddr,
    /// Planted bugs to run fixed, comma-separated (e.g. `referral` or `vote:referral`)
    #[arg(long, env = "BREAKROOM_FIXED", value_delimiter = ',')]
    pub fixed: Vec<String>,
    #[command(flatten)]
    pub backend: BackendArgs,
    /// Conference branding on the pages: sreday, kubecon, devopsdays
    #[arg(long, env = "CONFERENCE")]
    pub conference: Option<String>,
    /// Version shown in the page footer and at /version
    #[arg(long, env = "APP_VERSION", default_value = env!("CARGO_PKG_VERSION"))]
    pub app_version: String,
    /// Token for every /admin action; generated and printed at start when not set
    #[arg(long, env = "BREAKROOM_ADMIN_TOKEN", hide_env_values = true)]
    pub admin_token: Option<String>,
    /// OTLP/HTTP collector (e.g. http://localhost:4318); traces are off without it
    #[arg(long, env = "OTEL_EXPORTER_OTLP_ENDPOINT")]
    pub otlp_endpoint: Option<String>,
    /// The URL the audience reaches the lab at (ingress, tunnel): used in the QR codes
    #[arg(long, env = "BREAKROOM_PUBLIC_URL")]
    pub public_url: Option<String>,
    #[command(flatten)]
    pub vote: VoteArgs,
    #[command(flatten)]
    pub items: ItemsArgs,
    #[command(flatten)]
    pub shop: ShopArgs,
    #[command(flatten)]
    pub shop_data: ShopDataArgs,
}

/// The port of a lab, and of the shop's load generator, when `--port` is not given.
pub const DEFAULT_LAB_PORT: u16 = 8000;
pub const DEFAULT_LOADGEN_PORT: u16 = 8010;

impl ServeArgs {
    /// Where `serve` listens: one address per service the process runs.
    pub fn listen_addresses(&self) -> Vec<SocketAddr> {
        match self.lab {
            ServeTarget::Shop => {
                self.shop.ports().into_iter().map(|(_, port)| SocketAddr::new(self.bind, port)).collect()
            }
            ServeTarget::Loadgen => vec![SocketAddr::new(self.bind, self.port.unwrap_or(DEFAULT_LOADGEN_PORT))],
            _ => vec![SocketAddr::new(self.bind, self.port.unwrap_or(DEFAULT_LAB_PORT))],
        }
    }
}

#[derive(Debug, Args)]
pub struct SeedArgs {
    pub lab: LabName,
    #[command(flatten)]
    pub backend: BackendArgs,
    #[command(flatten)]
    pub vote: VoteArgs,
    #[command(flatten)]
    pub shop: ShopDataArgs,
}

#[derive(Debug, Args)]
pub struct ExplainArgs {
    pub lab: LabName,
}

#[derive(Debug, Args)]
pub struct StageArgs {
    pub lab: LabName,
    /// Where the lab runs
    #[arg(long, env = "BREAKROOM_URL", default_value = "http://127.0.0.1:8000")]
    pub url: String,
    /// Admin token (reset); read from the data directory when the server generated it
    #[arg(long, env = "BREAKROOM_ADMIN_TOKEN", hide_env_values = true)]
    pub token: Option<String>,
    /// Data directory of a local server, where a generated admin token is written
    #[arg(long, env = "BREAKROOM_DATA_DIR", default_value_os_t = default_data_dir())]
    pub data_dir: PathBuf,
    /// Pause between requests, in milliseconds, so the room can follow along
    #[arg(long, default_value_t = 500)]
    pub interval_ms: u64,
    /// items: the lab's Redis, so `check` can pause it and verify the outage promises
    #[arg(long)]
    pub redis: Option<String>,
    #[command(flatten)]
    pub shop: shop::timeline::TimelineArgs,
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

/// Everything a running lab is configured with. Built from `ServeArgs` by the CLI and
/// directly by the tests.
#[derive(Debug, Clone)]
pub struct ServeConfig {
    pub lab: LabName,
    pub fixed: Vec<String>,
    pub backend: BackendArgs,
    pub conference: Option<String>,
    pub app_version: String,
    pub admin_token: Option<String>,
    pub otlp_endpoint: Option<String>,
    pub public_url: Option<String>,
    pub vote: VoteArgs,
    pub items: ItemsArgs,
    pub shop: ShopArgs,
    pub shop_data: ShopDataArgs,
    /// How long a Redis command may take before the cache counts as unreachable.
    pub redis_timeout: Duration,
    /// How often live viewers' state is re-read even without a change notification (a
    /// safety net for lost notifications; changes themselves are pushed at once).
    pub feed_refresh: Duration,
}

impl ServeConfig {
    /// The embedded default: SQLite in `data_dir`, live state in the process.
    pub fn embedded(lab: LabName, data_dir: PathBuf) -> Self {
        ServeConfig {
            lab,
            fixed: Vec::new(),
            backend: BackendArgs {
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
            vote: VoteArgs::default(),
            items: ItemsArgs::default(),
            shop: ShopArgs::default(),
            shop_data: ShopDataArgs::default(),
            redis_timeout: Duration::from_millis(150),
            feed_refresh: Duration::from_secs(2),
        }
    }
}

impl ServeConfig {
    /// The configuration of a lab; `args.lab` must name a lab, not the load generator.
    pub fn from_args(lab: LabName, args: ServeArgs) -> Self {
        let empty_to_none = |v: Option<String>| v.filter(|s| !s.trim().is_empty());
        let mut backend = args.backend;
        backend.database_url = empty_to_none(backend.database_url);
        backend.redis_url = empty_to_none(backend.redis_url);
        ServeConfig {
            lab,
            fixed: args.fixed.into_iter().filter(|f| !f.trim().is_empty()).collect(),
            backend,
            conference: empty_to_none(args.conference),
            app_version: args.app_version,
            admin_token: empty_to_none(args.admin_token),
            otlp_endpoint: empty_to_none(args.otlp_endpoint),
            public_url: empty_to_none(args.public_url).map(|u| u.trim_end_matches('/').to_string()),
            vote: args.vote,
            items: args.items,
            shop: args.shop,
            shop_data: args.shop_data,
            redis_timeout: Duration::from_millis(150),
            feed_refresh: Duration::from_secs(2),
        }
    }
}

impl BackendArgs {
    /// The resolved backend the platform opens.
    pub fn resolved(&self) -> Backend {
        Backend {
            database_url: self.database_url.clone(),
            redis_url: self.redis_url.clone(),
            data_dir: self.data_dir.clone(),
            redis_prefix: self.redis_prefix.clone(),
            db_max_connections: self.db_max_connections,
        }
    }
}

impl ServeConfig {
    /// What the platform under this lab is configured with.
    pub fn platform(&self) -> PlatformConfig {
        PlatformConfig {
            lab: self.lab.as_str(),
            fixed: self.fixed.clone(),
            backend: self.backend.resolved(),
            conference: self.conference.clone(),
            app_version: self.app_version.clone(),
            admin_token: self.admin_token.clone(),
            otlp_endpoint: self.otlp_endpoint.clone(),
            public_url: self.public_url.clone(),
            redis_timeout: self.redis_timeout,
            feed_refresh: self.feed_refresh,
        }
    }
}
