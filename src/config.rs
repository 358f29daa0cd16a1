//! One typed configuration, from flags, then environment variables, then defaults.

use std::net::IpAddr;
use std::path::PathBuf;
use std::time::Duration;

use clap::{Args, Parser, Subcommand, ValueEnum};

use crate::labs::LabName;

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
    Drive(crate::driver::DriveArgs),
    /// Prove every scenario before a talk: reproduces, shows, is caught, is fixed, resets
    Rehearse(crate::rehearse::RehearseArgs),
    /// List the scenarios (--markdown: the docs/scenarios.md page)
    Scenarios(crate::rehearse::ScenariosArgs),
    /// Create a lab's tables and seed data, then exit
    Seed(SeedArgs),
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

#[derive(Debug, Args)]
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

/// Which of the shop's services a process runs.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum ShopService {
    /// catalog, cart and checkout in one process, each on its own port
    All,
    Catalog,
    Cart,
    Checkout,
}

/// Settings of the `shop` lab.
#[derive(Debug, Clone, Args)]
pub struct ShopArgs {
    /// shop: which service this process runs (one per pod in a cluster)
    #[arg(long, env = "SHOP_SERVICE", value_enum, default_value_t = ShopService::All)]
    pub service: ShopService,
    /// shop: the product catalog's port
    #[arg(long, env = "CATALOG_PORT", default_value_t = 8014)]
    pub catalog_port: u16,
    /// shop: the cart's port
    #[arg(long, env = "CART_PORT", default_value_t = 8013)]
    pub cart_port: u16,
    /// shop: checkout's port
    #[arg(long, env = "CHECKOUT_PORT", default_value_t = 8016)]
    pub checkout_port: u16,
    /// shop: where checkout finds the catalog (default: this host's --catalog-port)
    #[arg(long, env = "CATALOG_URL")]
    pub catalog_url: Option<String>,
    /// shop: where checkout finds the cart (default: this host's --cart-port)
    #[arg(long, env = "CART_URL")]
    pub cart_url: Option<String>,
    /// loadgen: where checkout answers (default: this host's --checkout-port)
    #[arg(long, env = "CHECKOUT_URL")]
    pub checkout_url: Option<String>,
    /// shop: checkout's database pool in normal operation (the timeline shrinks it)
    #[arg(long, env = "CHECKOUT_POOL_SIZE", default_value_t = 50)]
    pub checkout_pool: u32,
}

impl Default for ShopArgs {
    fn default() -> Self {
        ShopArgs {
            service: ShopService::All,
            catalog_port: 8014,
            cart_port: 8013,
            checkout_port: 8016,
            catalog_url: None,
            cart_url: None,
            checkout_url: None,
            checkout_pool: 50,
        }
    }
}

/// How much catalog the shop generates when its database is empty.
#[derive(Debug, Clone, Args)]
pub struct ShopDataArgs {
    /// shop: products to generate (a catalog query without its index scans all of them)
    #[arg(long = "products", env = "SHOP_PRODUCTS", default_value_t = DEFAULT_PRODUCTS)]
    pub products: u64,
}

/// Big enough that a scan without the index costs real time on a 2-core machine;
/// see docs/runbooks/shop.md for the measured figures.
pub const DEFAULT_PRODUCTS: u64 = 1_000_000;

impl Default for ShopDataArgs {
    fn default() -> Self {
        ShopDataArgs { products: DEFAULT_PRODUCTS }
    }
}

/// Settings of the `items` lab.
#[derive(Debug, Clone, Args)]
pub struct ItemsArgs {
    /// How long an item stays in the cache after it was written or read
    #[arg(long, env = "CACHE_TTL_SECONDS", default_value_t = 300)]
    pub cache_ttl_seconds: u64,
}

impl Default for ItemsArgs {
    fn default() -> Self {
        ItemsArgs { cache_ttl_seconds: 300 }
    }
}

/// Settings of the `vote` lab.
#[derive(Debug, Clone, Args)]
pub struct VoteArgs {
    /// Generated referral partners seeded next to conf-partner-2026 (the original used 500000)
    #[arg(long, env = "BREAKROOM_SEED_PARTNERS", default_value_t = 10_000)]
    pub seed_partners: u32,
    /// Entries the buggy referral cache holds before it reports itself exhausted
    #[arg(long, env = "BREAKROOM_REFERRAL_CACHE_CAPACITY", default_value_t = 10)]
    pub referral_cache_capacity: usize,
    /// Votes a second one client address may send (in bursts of twice as many); a
    /// whole room behind one NAT stays well under the default
    #[arg(long, env = "BREAKROOM_VOTE_RATE_LIMIT", default_value_t = 50.0)]
    pub vote_rate_limit: f64,
    /// Live-results viewers one process serves at most; beyond it /stream answers 503
    #[arg(long, env = "BREAKROOM_MAX_VIEWERS", default_value_t = 20_000)]
    pub max_viewers: usize,
    /// Take the client address from X-Forwarded-For (only behind a proxy you run)
    #[arg(long, env = "BREAKROOM_TRUST_PROXY")]
    pub trust_proxy: bool,
}

impl Default for VoteArgs {
    fn default() -> Self {
        VoteArgs {
            seed_partners: 10_000,
            referral_cache_capacity: 10,
            vote_rate_limit: 50.0,
            max_viewers: 20_000,
            trust_proxy: false,
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
    pub shop: crate::driver::blackfriday::TimelineArgs,
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
