//! `breakroom rehearse`: before a talk, every scenario proves that its bug reproduces,
//! its symptom shows, its check catches it, its fix passes and its reset restores —
//! on a fresh server of its own, so a scenario that stopped reproducing fails here
//! and not on stage.

use std::time::{Duration, Instant};

use clap::Args;
use tokio_util::sync::CancellationToken;

use crate::labs::{LabName, SCENARIOS, Scenario, ServeConfig, Verdict};
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

/// The columns of the rehearsal table, in order.
const STEPS: [&str; 5] = ["reproduced", "symptom", "check fails", "fixed", "reset"];

fn select(names: &[String]) -> Result<Vec<&'static Scenario>, StageError> {
    if names.is_empty() {
        return Ok(SCENARIOS.iter().collect());
    }
    names
        .iter()
        .map(|name| {
            SCENARIOS.iter().find(|s| s.name == name || s.lab == name).ok_or_else(|| {
                let known: Vec<&str> = SCENARIOS.iter().map(|s| s.name).collect();
                StageError(format!("unknown scenario '{name}'; known: {}", known.join(", ")))
            })
        })
        .collect()
}

/// A lab of its own on 127.0.0.1: the embedded default, or PostgreSQL + Redis when
/// `DATABASE_URL` / `REDIS_URL` are set (keys under a prefix of this rehearsal).
struct LocalLab {
    url: String,
    token: String,
    redis_url: Option<String>,
    shutdown: CancellationToken,
    server: tokio::task::JoinHandle<anyhow::Result<()>>,
    shop_urls: Option<driver::ShopUrls>,
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
    config.backend.database_url = from_env("DATABASE_URL");
    config.backend.redis_url = from_env("REDIS_URL");
    config.backend.redis_prefix = format!("breakroom-rehearse-{}:", std::process::id());
    config.vote.seed_partners = 200;
    config.shop_data.products = REHEARSAL_PRODUCTS;
    let redis_url = config.backend.redis_url.clone();
    let shutdown = CancellationToken::new();
    if lab == LabName::Shop {
        use shop::settings::ShopService;
        let mut listeners = Vec::new();
        for service in [ShopService::Catalog, ShopService::Cart, ShopService::Checkout] {
            listeners.push((service, tokio::net::TcpListener::bind("127.0.0.1:0").await.map_err(|e| trouble(&e))?));
        }
        let url = |i: usize| listeners[i].1.local_addr().map(|a| format!("http://{a}")).map_err(|e| trouble(&e));
        let urls = driver::ShopUrls { catalog_url: url(0)?, cart_url: url(1)?, checkout_url: url(2)? };
        let server =
            crate::build_shop(config, shutdown.clone(), listeners).await.map_err(|e| trouble(&format!("{e:#}")))?;
        let token = server.platform.admin.expose().to_string();
        let server = tokio::spawn(crate::serve_shop(server));
        return Ok(LocalLab {
            url: urls.catalog_url.clone(),
            token,
            redis_url,
            shutdown,
            server,
            shop_urls: Some(urls),
            _data_dir: data_dir,
        });
    }
    let app = crate::build(config, shutdown.clone()).await.map_err(|e| trouble(&format!("{e:#}")))?;
    let token = app.platform.admin.expose().to_string();
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.map_err(|e| trouble(&e))?;
    let url = format!("http://{}", listener.local_addr().map_err(|e| trouble(&e))?);
    let server = tokio::spawn(crate::serve(app, listener));
    Ok(LocalLab { url, token, redis_url, shutdown, server, shop_urls: None, _data_dir: data_dir })
}

async fn rehearse_one(
    scenario: &Scenario,
    target: &Target,
    token: &str,
    redis: Option<&str>,
    shop_urls: Option<&driver::ShopUrls>,
) -> Result<Vec<Verdict>, StageError> {
    match LabName::of(scenario) {
        LabName::Vote => crate::labs::vote::stage::rehearse(target, token).await,
        LabName::Items => crate::labs::items::stage::rehearse(target, token, redis).await,
        LabName::Datasets => crate::labs::datasets::stage::rehearse(target, token).await,
        LabName::Shop => {
            let urls = shop_urls.cloned().unwrap_or_else(|| driver::ShopUrls {
                catalog_url: std::env::var("SHOP_CATALOG_URL").unwrap_or_else(|_| target.url("")),
                cart_url: std::env::var("SHOP_CART_URL").unwrap_or_else(|_| "http://127.0.0.1:8013".into()),
                checkout_url: std::env::var("SHOP_CHECKOUT_URL").unwrap_or_else(|_| "http://127.0.0.1:8016".into()),
            });
            let shop = shop::timeline::Shop::new(&urls, token.to_string())?;
            crate::labs::shop::stage::rehearse(shop).await
        }
    }
}

/// Read-only checks of a deployed lab: it answers, and runs the buggy build.
async fn inspect(scenario: &Scenario, target: &Target) -> Result<Vec<Verdict>, StageError> {
    let health = target.get("/health").await?;
    let mut verdicts = vec![Verdict::new(
        "reproduced",
        health.status == 200,
        format!("/health {} (read-only rehearsal)", health.status),
    )];
    for step in &STEPS[1..] {
        verdicts.push(Verdict::not_applicable(step, "changes the lab's state: pass --allow-reset"));
    }
    let _ = scenario;
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
                    rehearse_one(scenario, &target, &token, redis.as_deref(), None).await
                } else {
                    inspect(scenario, &target).await
                }
            }
            None => {
                let local = start_local(LabName::of(scenario)).await?;
                let target = Target::new(&local.url, scenario.lab)?;
                let outcome =
                    rehearse_one(scenario, &target, &local.token, local.redis_url.as_deref(), local.shop_urls.as_ref())
                        .await;
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
        let cell = |step: &str| match row.verdicts.iter().find(|v| v.step == step).map(|v| v.ok) {
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
            pad(cell("reproduced"), 11),
            pad(cell("symptom"), 8),
            pad(cell("check fails"), 12),
            pad(cell("fixed"), 6),
            pad(cell("reset"), 6),
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
            println!("  {mark} {:<22} {:<12} {}", row.scenario, verdict.step, verdict.detail);
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
    for s in SCENARIOS {
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
    for s in SCENARIOS {
        out.push_str(&format!("| `{}` | `{}` | {} | {} |\n", s.name, s.lab, s.title, s.rehearsal));
    }
    for s in SCENARIOS {
        out.push_str(&format!("\n## `{}`\n\n{}\n\n", s.name, s.story));
        out.push_str(&format!("- **Trigger:** {}\n", s.trigger));
        out.push_str(&format!("- **Symptom:** {}\n", s.symptom));
        out.push_str(&format!("- **Fix:** {}\n", s.fix));
        out.push_str(&format!("- **Check:** {}\n", s.check));
        out.push_str(&format!("- **Reset:** {}\n", s.reset));
        let bug = LabName::of(s).bugs().iter().find(|b| b.name == s.bug);
        if let Some(bug) = bug {
            out.push_str(&format!("- **Where:** {}\n", bug.location));
        }
        out.push_str(&format!(
            "- **Commands:** `breakroom serve {lab}`, `breakroom demonstrate {lab}`, `breakroom check {lab}`, `breakroom reset {lab}`, `breakroom rehearse {}`\n",
            s.name,
            lab = s.lab
        ));
    }
    out
}
