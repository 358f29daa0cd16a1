//! The vote lab under the [`platform::lab::Lab`] contract.

use prometheus_client::registry::Registry;

use platform::Platform;
use platform::bugs::BugInfo;
use platform::console::{ConsoleSpec, Graph, Line};
use platform::db::Db;
use platform::lab::{Boxed, Built, Lab, RehearsalContext, StageContext};
use platform::rehearsal::Rehearsal;
use platform::stage::{Scenario, StageCommand, StageError};

use crate::settings::VoteArgs;
use crate::{BUGS, LEAK_SCENARIO, SCENARIO, presenter, stage, stage_leak};

/// The port the vote lab listens on unless told otherwise.
const SERVICE: &str = "vote-api";

/// The vote lab, with its settings.
#[derive(Debug, Clone, Default)]
pub struct VoteLab {
    pub settings: VoteArgs,
}

impl Lab for VoteLab {
    fn name(&self) -> &'static str {
        "vote"
    }

    fn service_name(&self) -> &'static str {
        SERVICE
    }

    fn home_page(&self) -> bool {
        true
    }

    fn console(&self) -> ConsoleSpec {
        CONSOLE
    }

    fn bugs(&self) -> &'static [BugInfo] {
        BUGS
    }

    fn scenarios(&self) -> &'static [Scenario] {
        &[SCENARIO, LEAK_SCENARIO]
    }

    fn build<'a>(
        &'a self,
        platform: &'a Platform,
        _: &'a [(&'static str, String)],
    ) -> Boxed<'a, anyhow::Result<Built>> {
        Box::pin(async move {
            let mut registry = Registry::default();
            let router = crate::build(platform, &mut registry, &self.settings).await?;
            Ok(Built::one(SERVICE, platform.assemble(SERVICE, router, registry)))
        })
    }

    fn seed<'a>(&'a self, db: &'a Db) -> Boxed<'a, anyhow::Result<String>> {
        Box::pin(async move {
            let inserted = crate::seed(db, self.settings.seed_partners).await?;
            Ok(format!("vote: {inserted} referral partners inserted"))
        })
    }

    fn banner(&self, services: &[(&'static str, String)], audience: &str) -> Vec<String> {
        let base = services.first().map(|(_, url)| url.as_str()).unwrap_or(audience);
        vec![
            format!("  vote page      {}", presenter::vote_url(audience)),
            format!("  referral link  {}", presenter::referral_url(audience)),
            format!("  results        {base}/results"),
            format!("  presenter      {base}/presenter"),
            format!("  admin          {base}/admin"),
        ]
    }

    fn stage<'a>(
        &'a self,
        scenario: &'static Scenario,
        command: StageCommand,
        context: &'a StageContext,
    ) -> Boxed<'a, Result<u8, StageError>> {
        Box::pin(async move {
            let target = context.target(self.name())?;
            if scenario.name == LEAK_SCENARIO.name {
                return match command {
                    StageCommand::Demonstrate => stage_leak::demonstrate(&target, context.interval).await,
                    StageCommand::Check => stage_leak::check(&target).await,
                    StageCommand::Reset => {
                        let token = context.admin_token(self.name())?;
                        stage_leak::reset(&target, &token).await
                    }
                };
            }
            match command {
                StageCommand::Demonstrate => stage::demonstrate(&target, context.interval).await,
                StageCommand::Check => stage::check(&target, context.interval).await,
                StageCommand::Reset => stage::reset(&target, context.token.as_deref(), &context.data_dir).await,
            }
        })
    }

    fn rehearsal(&self, scenario: &Scenario, context: RehearsalContext) -> Result<Box<dyn Rehearsal>, StageError> {
        if scenario.name == LEAK_SCENARIO.name {
            return Ok(Box::new(stage_leak::Rehearse::new(context.target, context.token)));
        }
        Ok(Box::new(stage::Rehearse::new(context.target, context.token)))
    }
}

/// The console's view of the lab: its alert rules (deploy/prometheus/rules/vote.yml,
/// the file promtool tests) and the graphs that tell its story.
pub const CONSOLE: ConsoleSpec = ConsoleSpec {
    rules: &[include_str!("../../../../deploy/prometheus/rules/vote.yml")],
    graphs: &[
        Graph {
            id: "referral",
            title: "Referral cache: entries and capacity",
            unit: "entries",
            lines: &[
                Line { legend: "entries", expr: "sum(referral_cache_entries)" },
                Line { legend: "capacity", expr: "sum(referral_cache_capacity)" },
            ],
        },
        Graph {
            id: "exhausted",
            title: "Referral validations refused (cache exhausted)",
            unit: "per s",
            lines: &[Line { legend: "refused", expr: "sum(rate(referral_cache_exhausted_total[1m]))" }],
        },
        platform::console::POOL_GRAPH,
    ],
};
