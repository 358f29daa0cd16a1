//! The items lab under the [`platform::lab::Lab`] contract.

use prometheus_client::registry::Registry;

use platform::Platform;
use platform::bugs::BugInfo;
use platform::console::{ConsoleSpec, Graph, Line};
use platform::db::Db;
use platform::lab::{Boxed, Built, Lab, RehearsalContext, StageContext};
use platform::rehearsal::Rehearsal;
use platform::stage::{Scenario, StageCommand, StageError};

use crate::settings::ItemsArgs;
use crate::{BUGS, SCENARIO, STAMPEDE_SCENARIO, stage, stage_stampede};

/// The port the items lab listens on unless told otherwise.
const NAME: &str = "items";

/// The items lab, with its settings.
#[derive(Debug, Clone, Default)]
pub struct ItemsLab {
    pub settings: ItemsArgs,
}

impl Lab for ItemsLab {
    fn name(&self) -> &'static str {
        NAME
    }

    fn console(&self) -> ConsoleSpec {
        CONSOLE
    }

    fn bugs(&self) -> &'static [BugInfo] {
        BUGS
    }

    fn scenarios(&self) -> &'static [Scenario] {
        &[SCENARIO, STAMPEDE_SCENARIO]
    }

    fn build<'a>(
        &'a self,
        platform: &'a Platform,
        _: &'a [(&'static str, String)],
    ) -> Boxed<'a, anyhow::Result<Built>> {
        Box::pin(async move {
            let mut registry = Registry::default();
            let router = crate::build(platform, &mut registry, &self.settings).await?;
            Ok(Built::one(NAME, platform.assemble(NAME, router, registry)))
        })
    }

    fn seed<'a>(&'a self, db: &'a Db) -> Boxed<'a, anyhow::Result<String>> {
        Box::pin(async move {
            let inserted = crate::seed(db).await?;
            Ok(format!("items: {inserted} seed items inserted"))
        })
    }

    fn banner(&self, services: &[(&'static str, String)], audience: &str) -> Vec<String> {
        let base = services.first().map(|(_, url)| url.as_str()).unwrap_or(audience);
        vec![format!("  items          {base}/items"), format!("  cache stats    {base}/cache/stats")]
    }

    fn stage<'a>(
        &'a self,
        scenario: &'static Scenario,
        command: StageCommand,
        context: &'a StageContext,
    ) -> Boxed<'a, Result<u8, StageError>> {
        Box::pin(async move {
            let target = context.target(NAME)?;
            if scenario.name == STAMPEDE_SCENARIO.name {
                return match command {
                    StageCommand::Demonstrate => stage_stampede::demonstrate(&target).await,
                    StageCommand::Check => stage_stampede::check(&target).await,
                    StageCommand::Reset => stage_stampede::reset(&target, &context.admin_token(NAME)?).await,
                };
            }
            match command {
                StageCommand::Demonstrate => stage::demonstrate(&target).await,
                StageCommand::Check => stage::check(&target, context.redis.as_deref()).await,
                StageCommand::Reset => stage::reset(&target, context.token.as_deref(), &context.data_dir).await,
            }
        })
    }

    fn rehearsal(&self, scenario: &Scenario, context: RehearsalContext) -> Result<Box<dyn Rehearsal>, StageError> {
        if scenario.name == STAMPEDE_SCENARIO.name {
            return Ok(Box::new(stage_stampede::Rehearse::new(context.target, context.token)));
        }
        Ok(Box::new(stage::Rehearse::new(context.target, context.token, context.redis)))
    }

    /// The outage has nothing planted to fix; the stampede names its bug.
    fn explain(&self, scenario: &Scenario) -> String {
        if scenario.name == STAMPEDE_SCENARIO.name {
            return platform::lab::bug_notes(self);
        }
        "No planted bug: the outage is a fault injected from outside (Redis stops), and the lab \
         recovers by itself once Redis answers again.\n"
            .to_string()
    }
}

/// The console's view of the lab: its alert rules (deploy/prometheus/rules/items.yml,
/// the file promtool tests) and the graphs that tell its story.
pub const CONSOLE: ConsoleSpec = ConsoleSpec {
    rules: &[include_str!("../../../../deploy/prometheus/rules/items.yml")],
    graphs: &[
        Graph {
            id: "cache",
            title: "Item cache: hits and misses per second, Redis up",
            unit: "per s",
            lines: &[
                Line { legend: "hits", expr: "sum(rate(cache_hits_total[1m]))" },
                Line { legend: "misses", expr: "sum(rate(cache_misses_total[1m]))" },
                Line { legend: "Redis up (1 = yes)", expr: "min(cache_up)" },
            ],
        },
        Graph {
            id: "popular",
            title: "Popular views: aggregations and duplicates per second",
            unit: "per s",
            lines: &[
                Line { legend: "aggregations", expr: "sum(rate(items_popular_recomputes_total[1m]))" },
                Line { legend: "duplicates", expr: "sum(rate(items_popular_duplicate_recomputes_total[1m]))" },
            ],
        },
        platform::console::POOL_GRAPH,
    ],
};
