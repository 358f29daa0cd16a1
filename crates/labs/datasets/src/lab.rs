//! The datasets lab under the [`platform::lab::Lab`] contract.

use prometheus_client::registry::Registry;

use platform::Platform;
use platform::bugs::BugInfo;
use platform::console::{ConsoleSpec, Graph, Line};
use platform::db::Db;
use platform::lab::{Boxed, Built, Lab, RehearsalContext, StageContext};
use platform::rehearsal::Rehearsal;
use platform::stage::{Scenario, StageCommand, StageError};

use crate::{BUGS, FLAGSHIP_ID, N_PLUS_ONE_SCENARIO, SCENARIO, stage, stage_list};

/// The port the datasets lab listens on unless told otherwise.
const NAME: &str = "datasets";

/// The datasets lab: it has no settings of its own.
#[derive(Debug, Clone, Default)]
pub struct DatasetsLab;

impl Lab for DatasetsLab {
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
        &[SCENARIO, N_PLUS_ONE_SCENARIO]
    }

    fn build<'a>(
        &'a self,
        platform: &'a Platform,
        _: &'a [(&'static str, String)],
    ) -> Boxed<'a, anyhow::Result<Built>> {
        Box::pin(async move {
            let mut registry = Registry::default();
            let router = crate::build(platform, &mut registry).await?;
            Ok(Built::one(NAME, platform.assemble(NAME, router, registry)))
        })
    }

    fn seed<'a>(&'a self, db: &'a Db) -> Boxed<'a, anyhow::Result<String>> {
        Box::pin(async move {
            crate::seed(db).await?;
            Ok("datasets: users, datasets and the flagship's 15 downloads are seeded".into())
        })
    }

    fn banner(&self, services: &[(&'static str, String)], audience: &str) -> Vec<String> {
        let base = services.first().map(|(_, url)| url.as_str()).unwrap_or(audience);
        vec![
            format!("  datasets       {base}/api/datasets/   (Authorization: Token alice-token)"),
            format!("  statistics     {base}/api/datasets/{FLAGSHIP_ID}/statistics/"),
        ]
    }

    fn stage<'a>(
        &'a self,
        scenario: &'static Scenario,
        command: StageCommand,
        context: &'a StageContext,
    ) -> Boxed<'a, Result<u8, StageError>> {
        Box::pin(async move {
            let target = context.target(NAME)?;
            if scenario.name == N_PLUS_ONE_SCENARIO.name {
                return match command {
                    StageCommand::Demonstrate => stage_list::demonstrate(&target, &context.admin_token(NAME)?).await,
                    StageCommand::Check => stage_list::check(&target).await,
                    StageCommand::Reset => stage_list::reset(&target, &context.admin_token(NAME)?).await,
                };
            }
            let token = context.token.as_deref();
            match command {
                StageCommand::Demonstrate => stage::demonstrate(&target, token, &context.data_dir).await,
                StageCommand::Check => stage::check(&target).await,
                StageCommand::Reset => stage::reset(&target, token, &context.data_dir).await,
            }
        })
    }

    fn rehearsal(&self, scenario: &Scenario, context: RehearsalContext) -> Result<Box<dyn Rehearsal>, StageError> {
        if scenario.name == N_PLUS_ONE_SCENARIO.name {
            return Ok(Box::new(stage_list::Rehearse::new(context.target, context.token)));
        }
        Ok(Box::new(stage::Rehearse::new(context.target, context.token)))
    }

    /// The workshop's answer: the reference fix as compiled into this binary.
    fn explain(&self, scenario: &Scenario) -> String {
        if scenario.name == N_PLUS_ONE_SCENARIO.name {
            return platform::lab::bug_notes(self);
        }
        stage::explain()
    }
}

/// The console's view of the lab: its alert rules (deploy/prometheus/rules/datasets.yml,
/// the file promtool tests) and the graphs that tell its story.
pub const CONSOLE: ConsoleSpec = ConsoleSpec {
    rules: &[include_str!("../../../../deploy/prometheus/rules/datasets.yml")],
    graphs: &[
        Graph {
            id: "queries",
            title: "Database queries per list request",
            unit: "queries",
            lines: &[Line {
                legend: "per list",
                expr: "sum(rate(datasets_list_queries_sum[1m])) / sum(rate(datasets_list_queries_count[1m]))",
            }],
        },
        Graph {
            id: "stale",
            title: "Dashboard statistics: downloads they miss, and their age",
            unit: "downloads, s",
            lines: &[
                Line { legend: "downloads not shown", expr: "max(datasets_statistics_unseen_downloads)" },
                Line { legend: "age (s)", expr: "max(datasets_statistics_age_seconds)" },
            ],
        },
        platform::console::POOL_GRAPH,
    ],
};
