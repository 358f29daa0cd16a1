//! The registry: every lab, by name, and what the CLI does with one. The labs never
//! import each other; the binary knows each only through [`platform::lab::Lab`].

pub use ::datasets;
pub use ::items;
pub use ::shop;
pub use ::vote;
pub use platform::lab::Lab;
pub use platform::stage::{Scenario, StageCommand};

use std::path::PathBuf;
use std::time::Duration;

use clap::{Args, ValueEnum};

use items::settings::ItemsArgs;
use platform::config::PlatformConfig;
use platform::lab::StageContext;
use shop::settings::{ShopArgs, ShopDataArgs};
use shop::timeline::TimelineArgs;
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

/// Each lab's own settings, as the command line gives them.
#[derive(Debug, Clone, Default)]
pub struct LabSettings {
    pub vote: VoteArgs,
    pub items: ItemsArgs,
    pub shop: ShopArgs,
    pub shop_data: ShopDataArgs,
    /// The shop's timeline, for its stage commands.
    pub timeline: Option<TimelineArgs>,
}

/// The registry: one line per lab.
pub fn lab(name: LabName, settings: &LabSettings) -> Box<dyn Lab> {
    match name {
        LabName::Vote => Box::new(vote::VoteLab { settings: settings.vote.clone() }),
        LabName::Items => Box::new(items::ItemsLab { settings: settings.items.clone() }),
        LabName::Datasets => Box::new(datasets::DatasetsLab),
        LabName::Shop => Box::new(shop::ShopLab {
            settings: settings.shop.clone(),
            data: settings.shop_data.clone(),
            timeline: settings.timeline.clone(),
        }),
    }
}

impl LabName {
    pub fn as_str(self) -> &'static str {
        self.lab().name()
    }

    /// The lab on its default settings.
    pub fn lab(self) -> Box<dyn Lab> {
        lab(self, &LabSettings::default())
    }

    /// The lab a scenario of the registry belongs to.
    pub fn of(scenario: &Scenario) -> LabName {
        all().find(|lab| lab.as_str() == scenario.lab).expect("every scenario of the registry names a lab of it")
    }
}

/// Every lab of the registry.
pub fn all() -> impl Iterator<Item = LabName> {
    LabName::value_variants().iter().copied()
}

/// Every scenario of every lab, in the registry's order.
pub fn scenarios() -> Vec<&'static Scenario> {
    all().flat_map(|lab| lab.lab().scenarios()).collect()
}

/// The scenario a name (`vote/referral`) or its lab's name (`vote`) means.
pub fn scenario_named(name: &str) -> Result<&'static Scenario, platform::stage::StageError> {
    let all = scenarios();
    all.iter().copied().find(|s| s.name == name || s.lab == name).ok_or_else(|| {
        let known: Vec<&str> = all.iter().map(|s| s.name).collect();
        platform::stage::StageError(format!("unknown scenario '{name}'; known: {}", known.join(", ")))
    })
}

/// Runs a stage command against a running lab; returns the process exit code.
pub async fn stage(command: StageCommand, args: &StageArgs) -> Result<u8, platform::stage::StageError> {
    let scenario = scenario_named(&args.scenario)?;
    let name = LabName::of(scenario);
    let settings = LabSettings { timeline: Some(args.shop.clone()), ..LabSettings::default() };
    let lab = lab(name, &settings);
    let what = match command {
        StageCommand::Demonstrate => scenario.trigger,
        StageCommand::Check => scenario.check,
        StageCommand::Reset => scenario.reset,
    };
    println!("{} — {}\n({what})\n", scenario.name, scenario.title);
    let context = StageContext {
        url: args.url.clone(),
        token: args.token.clone(),
        data_dir: args.data_dir.clone(),
        interval: Duration::from_millis(args.interval_ms),
        redis: args.redis.clone(),
    };
    let (result, finding) = platform::stage::finding_of(lab.stage(scenario, command, &context)).await;
    crate::join::report_stage(&args.data_dir, scenario.name, command, &result, finding).await;
    result
}

/// `breakroom explain SCENARIO`: the scenario's story, then its lab's own notes.
pub fn explain(name: &str) -> Result<String, platform::stage::StageError> {
    let s = scenario_named(name)?;
    Ok(format!(
        "{} — {}\n\n{}\n\nTrigger: {}\nSymptom: {}\nFix: {}\nCheck: {}\nReset: {}\n\n{}",
        s.name,
        s.title,
        s.story,
        s.trigger,
        s.symptom,
        s.fix,
        s.check,
        s.reset,
        LabName::of(s).lab().explain(s)
    ))
}

/// Everything a running lab is configured with: the platform's part and the lab's
/// own settings. Built from `ServeArgs` by the CLI and directly by the tests.
#[derive(Debug, Clone)]
pub struct ServeConfig {
    pub lab: LabName,
    pub platform: PlatformConfig,
    pub settings: LabSettings,
}

impl ServeConfig {
    /// The embedded default: SQLite in `data_dir`, live state in the process.
    pub fn embedded(lab: LabName, data_dir: PathBuf) -> Self {
        ServeConfig {
            lab,
            platform: PlatformConfig::embedded(lab.as_str(), data_dir),
            settings: LabSettings::default(),
        }
    }

    /// The lab, on these settings.
    pub fn open(&self) -> Box<dyn Lab> {
        lab(self.lab, &self.settings)
    }
}

#[derive(Debug, Args)]
pub struct StageArgs {
    /// A scenario (`vote/connection-leak`), or a lab for its first one (`vote`)
    pub scenario: String,
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
    pub shop: TimelineArgs,
}
