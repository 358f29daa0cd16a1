//! The labs and the registry of their scenarios. Labs never import each other.

pub use ::datasets;
pub use ::items;
pub use ::shop;
pub use ::vote;
pub use platform::stage::{Scenario, StageCommand, Verdict};

use std::path::PathBuf;
use std::time::Duration;

use clap::{Args, ValueEnum};

use items::settings::ItemsArgs;
use platform::bugs::BugInfo;
use platform::config::{Backend, PlatformConfig};
use shop::settings::{ShopArgs, ShopDataArgs};
use vote::settings::VoteArgs;

#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum LabName {
    /// Conference poll whose referral cache exhausts after 10 referral votes
    Vote,
    /// Write-through cache over the database and Redis; survives a Redis outage
    Items,
    /// Research datasets whose cached statistics are never invalidated on download
    Datasets,
    /// Black Friday: catalog, cart and checkout; dropped indexes and a too-small pool
    Shop,
}

impl LabName {
    pub fn as_str(self) -> &'static str {
        match self {
            LabName::Vote => "vote",
            LabName::Items => "items",
            LabName::Datasets => "datasets",
            LabName::Shop => "shop",
        }
    }

    /// The service name its traces and dashboards use.
    pub fn service_name(self) -> &'static str {
        match self {
            LabName::Vote => "vote-api",
            LabName::Items => "items",
            LabName::Datasets => "datasets",
            LabName::Shop => "shop",
        }
    }

    /// The lab a scenario of the registry belongs to.
    pub fn of(scenario: &Scenario) -> LabName {
        LabName::value_variants()
            .iter()
            .copied()
            .find(|lab| lab.as_str() == scenario.lab)
            .expect("every scenario of the registry names a lab of it")
    }

    pub fn bugs(self) -> &'static [BugInfo] {
        match self {
            LabName::Vote => vote::BUGS,
            LabName::Items => items::BUGS,
            LabName::Datasets => datasets::BUGS,
            LabName::Shop => shop::BUGS,
        }
    }
}

pub const SCENARIOS: &[Scenario] = &[vote::SCENARIO, items::SCENARIO, datasets::SCENARIO, shop::SCENARIO];

/// Builds a lab's router on a started platform; the lab registers its metrics.
pub async fn build(
    lab: LabName,
    platform: &platform::Platform,
    registry: &mut prometheus_client::registry::Registry,
    config: &ServeConfig,
) -> anyhow::Result<axum::Router> {
    match lab {
        LabName::Vote => vote::build(platform, registry, &config.vote).await,
        LabName::Items => items::build(platform, registry, &config.items).await,
        LabName::Datasets => datasets::build(platform, registry).await,
        LabName::Shop => anyhow::bail!("the shop runs several services: build it with breakroom::build_shop"),
    }
}

/// `breakroom seed LAB`
pub async fn seed(lab: LabName, db: &platform::db::Db, partners: u32, products: u64) -> anyhow::Result<String> {
    match lab {
        LabName::Vote => {
            let inserted = vote::seed(db, partners).await?;
            Ok(format!("vote: {inserted} referral partners inserted"))
        }
        LabName::Items => {
            let inserted = items::seed(db).await?;
            Ok(format!("items: {inserted} seed items inserted"))
        }
        LabName::Datasets => {
            datasets::seed(db).await?;
            Ok("datasets: users, datasets and the flagship's 15 downloads are seeded".into())
        }
        LabName::Shop => {
            let started = std::time::Instant::now();
            let generated = shop::seed(db, products).await?;
            Ok(if generated == 0 {
                "shop: the catalog already has products; nothing generated (reset keeps the catalog)".into()
            } else {
                format!(
                    "shop: {generated} products and their order history generated in {:.1} s",
                    started.elapsed().as_secs_f64()
                )
            })
        }
    }
}

/// The scenario of a lab, from the registry.
pub fn scenario_of(lab: LabName) -> &'static Scenario {
    SCENARIOS.iter().find(|s| s.lab == lab.as_str()).expect("every lab has a scenario in the registry")
}

/// Runs a stage command against a running lab; returns the process exit code.
pub async fn stage(command: StageCommand, args: &StageArgs) -> Result<u8, platform::stage::StageError> {
    let target = platform::stage::Target::new(&args.url, args.lab.as_str())?;
    let scenario = scenario_of(args.lab);
    let what = match command {
        StageCommand::Demonstrate => scenario.trigger,
        StageCommand::Check => scenario.check,
        StageCommand::Reset => scenario.reset,
    };
    println!("{} — {}\n({what})\n", scenario.name, scenario.title);
    let interval = std::time::Duration::from_millis(args.interval_ms);
    match (args.lab, command) {
        (LabName::Vote, StageCommand::Demonstrate) => vote::stage::demonstrate(&target, interval).await,
        (LabName::Vote, StageCommand::Check) => vote::stage::check(&target, interval).await,
        (LabName::Vote, StageCommand::Reset) => {
            vote::stage::reset(&target, args.token.as_deref(), &args.data_dir).await
        }
        (LabName::Items, StageCommand::Demonstrate) => items::stage::demonstrate(&target).await,
        (LabName::Items, StageCommand::Check) => items::stage::check(&target, args.redis.as_deref()).await,
        (LabName::Items, StageCommand::Reset) => {
            items::stage::reset(&target, args.token.as_deref(), &args.data_dir).await
        }
        (LabName::Datasets, StageCommand::Demonstrate) => {
            datasets::stage::demonstrate(&target, args.token.as_deref(), &args.data_dir).await
        }
        (LabName::Datasets, StageCommand::Check) => datasets::stage::check(&target).await,
        (LabName::Datasets, StageCommand::Reset) => {
            datasets::stage::reset(&target, args.token.as_deref(), &args.data_dir).await
        }
        (LabName::Shop, command) => shop::stage::run(command, &args.shop, args.token.as_deref(), &args.data_dir).await,
    }
}

/// `breakroom explain LAB`: the reference fix as compiled into this binary, and notes.
pub fn explain(lab: LabName) -> String {
    let s = scenario_of(lab);
    let header = format!(
        "{} — {}\n\n{}\n\nTrigger: {}\nSymptom: {}\nFix: {}\nCheck: {}\nReset: {}\n\n",
        s.name, s.title, s.story, s.trigger, s.symptom, s.fix, s.check, s.reset
    );
    header
        + &match lab {
            LabName::Datasets => datasets::stage::explain(),
            other => {
                let bugs: Vec<String> =
                    other.bugs().iter().map(|b| format!("  {}: {} — {}", b.name, b.summary, b.location)).collect();
                let fixes = if bugs.is_empty() {
                    "  (no planted bug: its scenario is a fault injected from outside)".to_string()
                } else {
                    bugs.join("\n")
                };
                format!("The {} lab's planted bugs (run the fix with --fixed NAME):\n{fixes}\n", other.as_str())
            }
        }
}

/// Everything a running lab is configured with. Built from `ServeArgs` by the CLI and
/// directly by the tests.
#[derive(Debug, Clone)]
pub struct ServeConfig {
    pub lab: LabName,
    pub fixed: Vec<String>,
    pub backend: Backend,
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
            backend: PlatformConfig::embedded(lab.as_str(), data_dir.clone()).backend,
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
    /// What the platform under this lab is configured with.
    pub fn platform(&self) -> PlatformConfig {
        PlatformConfig {
            lab: self.lab.as_str(),
            fixed: self.fixed.clone(),
            backend: self.backend.clone(),
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
    #[arg(long, env = "BREAKROOM_DATA_DIR", default_value_os_t = platform::config::default_data_dir())]
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
