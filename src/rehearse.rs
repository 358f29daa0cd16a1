//! `breakroom rehearse`: before a talk, every scenario proves that its bug reproduces,
//! its symptom shows, its check catches it, its fix passes and its reset restores —
//! on a fresh server of its own, so a scenario that stopped reproducing fails here
//! and not on stage.

use std::time::{Duration, Instant};

use clap::Args;
use tokio_util::sync::CancellationToken;

use platform::lab::RehearsalContext;
use platform::rehearsal::{Step, Verdict};

use crate::labs::{LabName, Scenario, ServeConfig, scenarios};
use crate::stage::{EXIT_FAILED, StageError, Style, Target, admin_token};

#[derive(Debug, Args)]
pub struct RehearseArgs {
    /// Scenarios to rehearse (default: all), e.g. vote/referral
    pub scenarios: Vec<String>,
    /// Rehearse a deployed lab instead of fresh local servers (one scenario's lab)
    #[arg(long)]
    pub url: Option<String>,
    /// With --url: also run the steps that change the lab's state (it is reset at the end)
    #[arg(long)]
    pub allow_reset: bool,
    /// With --url: the admin token
    #[arg(long, env = "BREAKROOM_ADMIN_TOKEN", hide_env_values = true)]
    pub token: Option<String>,
    /// With --url: data directory of a local server that generated its admin token
    #[arg(long, env = "BREAKROOM_DATA_DIR", default_value_os_t = platform::config::default_data_dir())]
    pub data_dir: std::path::PathBuf,
}

#[derive(Debug, Args)]
pub struct ScenariosArgs {
    /// Print docs/scenarios.md (the committed file must equal this output)
    #[arg(long)]
    pub markdown: bool,
}

fn select(names: &[String]) -> Result<Vec<&'static Scenario>, StageError> {
    if names.is_empty() {
        return Ok(scenarios());
    }
    names.iter().map(|name| crate::labs::scenario_named(name)).collect()
}

/// A lab of its own on 127.0.0.1: the embedded default, or PostgreSQL + Redis when
/// `DATABASE_URL` / `REDIS_URL` are set (keys under a prefix of this rehearsal).
struct LocalLab {
    services: Vec<(&'static str, String)>,
    token: String,
    redis_url: Option<String>,
    shutdown: CancellationToken,
    server: tokio::task::JoinHandle<anyhow::Result<()>>,
    _data_dir: tempfile::TempDir,
}

/// Products of the catalog a shop rehearsal generates: enough that a scan costs more
/// than an index search, small enough to generate in a few seconds.
const REHEARSAL_PRODUCTS: u64 = 100_000;

async fn start_local(lab: LabName) -> Result<LocalLab, StageError> {
    let trouble =
        |e: &dyn std::fmt::Display| StageError(format!("cannot start a {} lab to rehearse: {e}", lab.as_str()));
    let data_dir = tempfile::tempdir().map_err(|e| trouble(&e))?;
    let mut config = ServeConfig::embedded(lab, data_dir.path().to_path_buf());
    let from_env = |name: &str| std::env::var(name).ok().filter(|v| !v.trim().is_empty());
    let backend = &mut config.platform.backend;
    backend.database_url = from_env("DATABASE_URL");
    backend.redis_url = from_env("REDIS_URL");
    backend.redis_prefix = format!("breakroom-rehearse-{}:", std::process::id());
    let redis_url = backend.redis_url.clone();
    config.settings.vote.seed_partners = 200;
    config.settings.shop_data.products = REHEARSAL_PRODUCTS;
    let shutdown = CancellationToken::new();
    let listeners = crate::local_listeners(&config).await.map_err(|e| trouble(&e))?;
    let app = crate::build(config, shutdown.clone(), listeners).await.map_err(|e| trouble(&format!("{e:#}")))?;
    let token = app.platform.admin.expose().to_string();
    let services = app.urls();
    let server = tokio::spawn(crate::serve(app));
    Ok(LocalLab { services, token, redis_url, shutdown, server, _data_dir: data_dir })
}

/// Runs the lab's rehearsal of `scenario` through the one engine.
async fn rehearse_one(scenario: &Scenario, context: RehearsalContext) -> Result<Vec<Verdict>, StageError> {
    let mut rehearsal = LabName::of(scenario).lab().rehearsal(scenario, context)?;
    platform::rehearsal::run(rehearsal.as_mut()).await
}

/// Read-only checks of a deployed lab: it answers, and runs the buggy build.
async fn inspect(target: &Target) -> Result<Vec<Verdict>, StageError> {
    let health = target.get("/health").await?;
    let mut verdicts = vec![Verdict {
        step: Step::Reproduced,
        ok: Some(health.status == 200),
        detail: format!("/health {} (read-only rehearsal)", health.status),
    }];
    for step in &Step::ALL[1..] {
        let detail = "changes the lab's state: pass --allow-reset".to_string();
        verdicts.push(Verdict { step: *step, ok: None, detail });
    }
    Ok(verdicts)
}

pub struct Row {
    pub scenario: &'static str,
    pub verdicts: Vec<Verdict>,
    pub seconds: f64,
    pub error: Option<String>,
}

impl Row {
    pub fn passed(&self) -> bool {
        self.error.is_none() && self.verdicts.iter().all(|v| v.ok != Some(false))
    }
}

/// Rehearses the chosen scenarios; returns one row each.
pub async fn rehearse(args: &RehearseArgs) -> Result<Vec<Row>, StageError> {
    if args.url.is_some() && args.scenarios.is_empty() {
        return Err(StageError(
            "with --url, name the scenario(s) of the lab running there, e.g. `breakroom rehearse vote/referral --url …`".into(),
        ));
    }
    let scenarios = select(&args.scenarios)?;
    let mut rows = Vec::new();
    for scenario in scenarios {
        let started = Instant::now();
        let outcome = match &args.url {
            Some(url) => {
                let target = Target::new(url, scenario.lab)?;
                if args.allow_reset {
                    let token = admin_token(args.token.as_deref(), &args.data_dir, scenario.lab)?;
                    let redis = std::env::var("REDIS_URL").ok();
                    rehearse_one(scenario, RehearsalContext { target, token, redis, services: Vec::new() }).await
                } else {
                    inspect(&target).await
                }
            }
            None => {
                let local = start_local(LabName::of(scenario)).await?;
                let url = local.services.first().map(|(_, url)| url.clone()).unwrap_or_default();
                let context = RehearsalContext {
                    target: Target::new(&url, scenario.lab)?,
                    token: local.token.clone(),
                    redis: local.redis_url.clone(),
                    services: local.services.clone(),
                };
                let outcome = rehearse_one(scenario, context).await;
                local.shutdown.cancel();
                let _ = tokio::time::timeout(Duration::from_secs(5), local.server).await;
                outcome
            }
        };
        let seconds = started.elapsed().as_secs_f64();
        rows.push(match outcome {
            Ok(verdicts) => Row { scenario: scenario.name, verdicts, seconds, error: None },
            Err(error) => Row { scenario: scenario.name, verdicts: Vec::new(), seconds, error: Some(error.0) },
        });
    }
    Ok(rows)
}

/// `breakroom rehearse …`: prints the table; exit 1 when any step failed.
pub async fn run(args: RehearseArgs) -> Result<u8, StageError> {
    let rows = rehearse(&args).await?;
    let style = Style::detect();
    println!(
        "{:<22} {:<11} {:<8} {:<12} {:<6} {:<6} {:>7}",
        "scenario", "reproduced", "symptom", "check fails", "fixed", "reset", "seconds"
    );
    for row in &rows {
        let cell = |step: Step| match row.verdicts.iter().find(|v| v.step == step).map(|v| v.ok) {
            Some(Some(true)) => style.good("✓"),
            Some(Some(false)) => style.bad("✗"),
            Some(None) => "–".to_string(),
            None => style.bad("✗"),
        };
        // Pad by visible width: the cells may carry colour codes.
        let pad = |text: String, width: usize| format!("{text}{}", " ".repeat(width.saturating_sub(1)));
        println!(
            "{:<22} {} {} {} {} {} {:>7.1}",
            row.scenario,
            pad(cell(Step::Reproduced), 11),
            pad(cell(Step::Symptom), 8),
            pad(cell(Step::CheckFails), 12),
            pad(cell(Step::Fixed), 6),
            pad(cell(Step::Reset), 6),
            row.seconds
        );
    }
    let mut failed = false;
    for row in &rows {
        if let Some(error) = &row.error {
            failed = true;
            println!("\n{}: {}", row.scenario, style.bad(&format!("could not rehearse: {error}")));
            continue;
        }
        for verdict in &row.verdicts {
            let mark = match verdict.ok {
                Some(true) => style.good("✓"),
                Some(false) => style.bad("✗"),
                None => "–".into(),
            };
            if verdict.ok == Some(false) {
                failed = true;
            }
            println!("  {mark} {:<22} {:<12} {}", row.scenario, verdict.step.as_str(), verdict.detail);
        }
    }
    if failed {
        println!("\n{}", style.bad("REHEARSAL FAILED: a scenario would not work on stage (✗ above)."));
        Ok(EXIT_FAILED)
    } else {
        println!("\n{}", style.good("Every scenario rehearsed: ready for the talk."));
        Ok(0)
    }
}

/// `breakroom scenarios`
pub fn list(args: &ScenariosArgs) -> String {
    if args.markdown {
        return markdown();
    }
    let mut out = String::new();
    for s in scenarios() {
        out.push_str(&format!("{:<22} {:<9} {} (rehearsal: {})\n", s.name, s.lab, s.title, s.rehearsal));
    }
    out
}

/// docs/scenarios.md, generated from the registry.
pub fn markdown() -> String {
    let mut out = String::from(
        "# Scenarios\n\n\
         Generated by `breakroom scenarios --markdown` from the registry in `src/labs.rs`; a test\n\
         fails when this file is stale. `breakroom rehearse` proves each of them before a talk.\n\n\
         | scenario | lab | title | rehearsal |\n|---|---|---|---|\n",
    );
    for s in scenarios() {
        out.push_str(&format!("| `{}` | `{}` | {} | {} |\n", s.name, s.lab, s.title, s.rehearsal));
    }
    for s in scenarios() {
        out.push_str(&format!("\n## `{}`\n\n{}\n\n", s.name, s.story));
        out.push_str(&format!("- **Trigger:** {}\n", s.trigger));
        out.push_str(&format!("- **Symptom:** {}\n", s.symptom));
        out.push_str(&format!("- **Fix:** {}\n", s.fix));
        out.push_str(&format!("- **Check:** {}\n", s.check));
        out.push_str(&format!("- **Reset:** {}\n", s.reset));
        out.push_str(&format!(
            "- **Hints** (`breakroom hint {}`):\n\n  <details><summary>three hints, from where to look to the shape of the fix (spoilers)</summary>\n\n",
            s.name
        ));
        for (i, hint) in s.hints.iter().enumerate() {
            out.push_str(&format!("  {}. {hint}\n", i + 1));
        }
        out.push_str("\n  </details>\n\n");
        let bug = LabName::of(s).lab().bugs().iter().find(|b| b.name == s.bug);
        if let Some(bug) = bug {
            out.push_str(&format!("- **Where:** {}\n", bug.location));
        }
        out.push_str(&format!(
            "- **Commands:** `breakroom serve {lab}`, `breakroom demonstrate {name}`, `breakroom check {name}`, `breakroom reset {name}`, `breakroom rehearse {name}`\n",
            name = s.name,
            lab = s.lab
        ));
    }
    out
}
