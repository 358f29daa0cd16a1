//! One typed configuration, from flags, then environment variables, then defaults.

use std::net::{IpAddr, SocketAddr};
use std::path::PathBuf;

use clap::parser::ValueSource;
use clap::{ArgMatches, Args, CommandFactory, FromArgMatches, Parser, Subcommand, ValueEnum};

use crate::labs::{LabName, LabSettings};
pub use crate::labs::{ServeConfig, StageArgs};
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
    /// The next hint for a scenario (where to look, what is wrong, the shape of the fix)
    Hint(crate::hint::HintArgs),
    /// Join a workshop room: your demonstrate, check and hint then report to its board
    Join(crate::join::JoinArgs),
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
    #[arg(long, env = "BREAKROOM_DATA_DIR", default_value_os_t = platform::config::default_data_dir())]
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
    /// Open a workshop room: attendees `breakroom join` it, the board is at /room
    #[arg(long, env = "BREAKROOM_ROOM")]
    pub room: bool,
    /// Take the client address from X-Forwarded-For for the rate limits (only behind a proxy you run)
    #[arg(long, env = "BREAKROOM_TRUST_PROXY")]
    pub trust_proxy: bool,
    /// The telemetry console at /console: on records traces, logs and metric history in the process
    #[arg(long, env = "BREAKROOM_CONSOLE", default_value = "on", value_parser = ["on", "off"])]
    pub console: String,
    /// Traces the console keeps (the newest; about 10 KiB each at most)
    #[arg(long, env = "BREAKROOM_CONSOLE_TRACES", default_value_t = platform::console::DEFAULT_TRACES as u64,
          value_parser = clap::value_parser!(u64).range(10..=100_000))]
    pub console_traces: u64,
    /// New traces a second the console starts at most (0: every request; with a collector, every request)
    #[arg(long, env = "BREAKROOM_CONSOLE_TRACE_RATE", default_value_t = platform::console::DEFAULT_TRACE_RATE)]
    pub console_trace_rate: u32,
    /// Jaeger's UI (e.g. http://localhost:16686): the console links each trace to it
    #[arg(long, env = "BREAKROOM_JAEGER_URL")]
    pub jaeger_url: Option<String>,
    #[command(flatten)]
    pub vote: VoteArgs,
    #[command(flatten)]
    pub items: ItemsArgs,
    #[command(flatten)]
    pub shop: ShopArgs,
    #[command(flatten)]
    pub shop_data: ShopDataArgs,
}

/// The port of the shop's load generator when `--port` is not given.
pub const DEFAULT_LOADGEN_PORT: u16 = 8010;

impl ServeArgs {
    /// Where `serve` listens: each service the process runs, by name. `--port` moves
    /// a lab of one service; the shop's services have a port flag each.
    pub fn listen_specs(&self) -> Vec<(&'static str, SocketAddr)> {
        let Some(lab) = self.lab.lab() else {
            return vec![("loadgen", SocketAddr::new(self.bind, self.port.unwrap_or(DEFAULT_LOADGEN_PORT)))];
        };
        let services = ServeConfig::from_args(lab, self.clone()).open().services();
        let single = services.len() == 1;
        services
            .into_iter()
            .map(|spec| {
                let port = if single { self.port.unwrap_or(spec.port) } else { spec.port };
                (spec.name, SocketAddr::new(self.bind, port))
            })
            .collect()
    }

    /// [`listen_specs`](Self::listen_specs)' addresses.
    pub fn listen_addresses(&self) -> Vec<SocketAddr> {
        self.listen_specs().into_iter().map(|(_, address)| address).collect()
    }
}

impl Cli {
    /// The command line, parsed; a lab's flag given to another lab (`serve items
    /// --referral-cache-capacity 3`) is refused with a usage error, not ignored. The
    /// same variables in the environment are fine: compose and Helm set several labs'.
    pub fn parse_checked() -> Cli {
        let mut command = Cli::command();
        let matches = command.get_matches_mut();
        let cli = Cli::from_arg_matches(&matches).unwrap_or_else(|e| e.exit());
        let (name, lab, sub) = match (&cli.command, matches.subcommand()) {
            (Command::Serve(args), Some((name, sub))) | (Command::Dev(args), Some((name, sub))) => {
                (name, args.lab, sub)
            }
            _ => return cli,
        };
        if let Some(flag) = foreign_flag(lab, sub) {
            let owner = flag.1;
            let message = format!(
                "--{} belongs to the {owner} lab; `breakroom {name} {}` does not take it",
                flag.0,
                lab.to_possible_value().map(|v| v.get_name().to_string()).unwrap_or_default()
            );
            let mut serve = command.find_subcommand_mut(name).cloned().unwrap_or_default();
            serve.error(clap::error::ErrorKind::ArgumentConflict, message).exit();
        }
        cli
    }
}

/// The first flag on the command line that belongs to a lab other than `lab`, with
/// that lab's name.
fn foreign_flag(lab: ServeTarget, matches: &ArgMatches) -> Option<(String, &'static str)> {
    let groups: [(&'static str, clap::Command, &[ServeTarget]); 4] = [
        ("vote", VoteArgs::augment_args(clap::Command::new("vote")), &[ServeTarget::Vote]),
        ("items", ItemsArgs::augment_args(clap::Command::new("items")), &[ServeTarget::Items]),
        ("shop", ShopArgs::augment_args(clap::Command::new("shop")), &[ServeTarget::Shop, ServeTarget::Loadgen]),
        ("shop", ShopDataArgs::augment_args(clap::Command::new("shop")), &[ServeTarget::Shop]),
    ];
    for (owner, group, takers) in groups {
        if takers.contains(&lab) {
            continue;
        }
        for arg in group.get_arguments() {
            if matches.value_source(arg.get_id().as_str()) == Some(ValueSource::CommandLine) {
                return Some((arg.get_long().unwrap_or(arg.get_id().as_str()).to_string(), owner));
            }
        }
    }
    None
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
    /// A scenario (`vote/connection-leak`), or a lab for its first one (`vote`)
    pub scenario: String,
}

impl ServeConfig {
    /// The configuration of a lab; `args.lab` must name a lab, not the load generator.
    pub fn from_args(lab: LabName, args: ServeArgs) -> Self {
        let empty_to_none = |v: Option<String>| v.filter(|s| !s.trim().is_empty());
        let mut backend = args.backend.resolved();
        backend.database_url = empty_to_none(backend.database_url);
        backend.redis_url = empty_to_none(backend.redis_url);
        let mut platform = PlatformConfig::embedded(lab.as_str(), backend.data_dir.clone());
        platform.fixed = args.fixed.into_iter().filter(|f| !f.trim().is_empty()).collect();
        platform.backend = backend;
        platform.conference = empty_to_none(args.conference);
        platform.app_version = args.app_version;
        platform.admin_token = empty_to_none(args.admin_token);
        platform.otlp_endpoint = empty_to_none(args.otlp_endpoint);
        platform.public_url = empty_to_none(args.public_url).map(|u| u.trim_end_matches('/').to_string());
        platform.room = args.room;
        platform.trust_proxy = args.trust_proxy;
        platform.console = platform::config::ConsoleConfig {
            recording: args.console == "on",
            traces: args.console_traces as usize,
            trace_rate: args.console_trace_rate,
            jaeger_url: empty_to_none(args.jaeger_url).map(|u| u.trim_end_matches('/').to_string()),
        };
        let settings = LabSettings {
            vote: args.vote,
            items: args.items,
            shop: args.shop,
            shop_data: args.shop_data,
            timeline: None,
        };
        ServeConfig { lab, platform, settings }
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
