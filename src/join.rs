//! `breakroom join URL CODE --name NAME`: joins a workshop room; from then on this
//! machine's `demonstrate`, `check` and `hint` tell the room what they found (a small
//! JSON post each: the scenario, the outcome, the verdict's one line, hints seen —
//! nothing of the attendee's code). The membership is remembered in the data directory.

use std::path::{Path, PathBuf};
use std::time::Duration;

use clap::Args;
use serde::{Deserialize, Serialize};

use platform::room::{Joined, Report};
use platform::stage::{Finding, StageCommand};

#[derive(Debug, Args)]
pub struct JoinArgs {
    /// The presenter's lab, as the board shows it (http://HOST:PORT)
    #[arg(required_unless_present = "leave")]
    pub url: Option<String>,
    /// The room's code, from the board
    #[arg(required_unless_present = "leave")]
    pub code: Option<String>,
    /// How the board shows you (remembered for the next join)
    #[arg(long)]
    pub name: Option<String>,
    /// Leave the room: stop reporting to it
    #[arg(long, conflicts_with_all = ["url", "code", "name"])]
    pub leave: bool,
    /// Where the membership is remembered
    #[arg(long, env = "BREAKROOM_DATA_DIR", default_value_os_t = platform::config::default_data_dir())]
    pub data_dir: PathBuf,
}

const FILE: &str = "room.json";
/// How long a report may take; a room that does not answer never holds up a command.
const REPORT_TIMEOUT: Duration = Duration::from_secs(5);
/// How often a report is sent when the room answers 429 (waiting as it says, 1-3 s).
const REPORT_TRIES: u32 = 3;

/// What this machine remembers of the room it joined.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Membership {
    pub url: String,
    pub code: String,
    pub name: String,
    pub attendee: String,
    pub secret: String,
    pub lab: String,
    /// Set by `join --leave`: nothing reports any more, but joining the same room again
    /// takes the same place on the board (the name stays the attendee's).
    #[serde(default)]
    pub left: bool,
}

fn path(dir: &Path) -> PathBuf {
    dir.join(FILE)
}

/// What the file remembers, whether or not this machine has left the room since.
fn remembered(dir: &Path) -> Option<Membership> {
    serde_json::from_str(&std::fs::read_to_string(path(dir)).ok()?).ok()
}

/// The room this machine is in, if any.
pub fn membership(dir: &Path) -> Option<Membership> {
    remembered(dir).filter(|m| !m.left)
}

fn remember(dir: &Path, membership: &Membership) -> anyhow::Result<()> {
    std::fs::create_dir_all(dir)?;
    // The secret is this attendee's alone: the file is its owner's only.
    platform::write_private(&path(dir), &serde_json::to_string_pretty(membership)?)?;
    Ok(())
}

/// Codes as the room compares them: case and dashes do not matter.
fn same_code(a: &str, b: &str) -> bool {
    platform::room::normalize_code(a) == platform::room::normalize_code(b)
}

fn joined_text(m: &Membership, again: bool) -> String {
    let how = if again { "Back in" } else { "Joined" };
    format!(
        "{how} room {} ({} lab) at {} as {}.\n\
         From now on `breakroom demonstrate`, `check` and `hint` on this machine tell the room what they found \
         (the outcome and the verdict's line; none of your code).\n\
         Start with: breakroom demonstrate {}\n\
         Stop reporting: breakroom join --leave\n",
        m.code, m.lab, m.url, m.name, m.lab
    )
}

fn client() -> anyhow::Result<reqwest::Client> {
    Ok(platform::http::client().timeout(REPORT_TIMEOUT).build()?)
}

/// Joins (or leaves) and says what happens next.
pub async fn run(args: &JoinArgs) -> anyhow::Result<String> {
    if args.leave {
        return Ok(match membership(&args.data_dir) {
            Some(m) => {
                remember(&args.data_dir, &Membership { left: true, ..m.clone() })?;
                format!(
                    "Left room {} at {}: nothing reports to it any more (join it again to carry on).\n",
                    m.code, m.url
                )
            }
            None => "Not in a room: nothing to leave.\n".into(),
        });
    }
    let url = args.url.as_deref().unwrap_or_default().trim().trim_end_matches('/').to_string();
    let code = args.code.clone().unwrap_or_default();
    let previous = remembered(&args.data_dir);
    let name = match (&args.name, &previous) {
        (Some(name), _) => name.trim().to_string(),
        (None, Some(previous)) => previous.name.clone(),
        (None, None) => anyhow::bail!("say how the board should show you: --name NAME"),
    };
    // The same room under the same name (a second join, or after --leave): the same
    // attendee, not a clash with oneself.
    if let Some(previous) = previous.filter(|p| p.url == url && same_code(&p.code, &code) && p.name == name) {
        let back = Membership { left: false, ..previous };
        remember(&args.data_dir, &back)?;
        return Ok(joined_text(&back, true));
    }
    let body = serde_json::json!({ "code": code, "name": name });
    let reply = client()?.post(format!("{url}/room/join")).json(&body).send().await.map_err(|error| {
        anyhow::anyhow!(
            "cannot reach {url} ({error}). Is it the address on the presenter's board, and is this machine on the room's network?"
        )
    })?;
    let status = reply.status();
    let text = reply.text().await.unwrap_or_default();
    if !status.is_success() {
        let detail = serde_json::from_str::<serde_json::Value>(&text)
            .ok()
            .and_then(|v| v["detail"].as_str().map(str::to_owned))
            .unwrap_or_else(|| format!("HTTP {status} (is the lab at {url} served with --room?)"));
        anyhow::bail!("the room did not let you in: {detail}");
    }
    let joined: Joined =
        serde_json::from_str(&text).map_err(|_| anyhow::anyhow!("{url} answered, but not as a breakroom room does"))?;
    let membership = Membership {
        url,
        code: joined.code,
        name: joined.name,
        attendee: joined.attendee,
        secret: joined.secret,
        lab: joined.lab,
        left: false,
    };
    remember(&args.data_dir, &membership)?;
    Ok(joined_text(&membership, false))
}

/// Sends one report; returns the line to print (a note when it could not be sent: the
/// command's own result stands either way).
async fn send(membership: &Membership, report: serde_json::Value) -> String {
    let sent = async {
        let client = client()?;
        let mut tries = 0;
        loop {
            tries += 1;
            let reply = client.post(format!("{}/room/report", membership.url)).json(&report).send().await?;
            let status = reply.status();
            if status.is_success() {
                return Ok(None);
            }
            // A busy room (the whole class behind one address): wait as it says, a few times.
            let wait = reply
                .headers()
                .get(reqwest::header::RETRY_AFTER)
                .and_then(|v| v.to_str().ok())
                .and_then(|v| v.parse::<u64>().ok());
            if status == reqwest::StatusCode::TOO_MANY_REQUESTS && tries < REPORT_TRIES {
                tokio::time::sleep(Duration::from_secs(wait.unwrap_or(1).clamp(1, 3))).await;
                continue;
            }
            let body: serde_json::Value = reply.json().await.unwrap_or_default();
            return Ok::<_, anyhow::Error>(Some(
                body["detail"].as_str().map_or_else(|| format!("HTTP {status}"), str::to_owned),
            ));
        }
    };
    match sent.await {
        Ok(None) => format!("(reported to room {} as {})", membership.code, membership.name),
        Ok(Some(refused)) => format!("Note: room {} refused the report: {refused}", membership.code),
        Err(error) => format!("Note: could not report to room {} at {} ({error})", membership.code, membership.url),
    }
}

fn report(membership: &Membership, scenario: &str, kind: &str) -> Report {
    Report {
        code: membership.code.clone(),
        attendee: membership.attendee.clone(),
        secret: membership.secret.clone(),
        scenario: scenario.to_string(),
        kind: kind.to_string(),
        outcome: None,
        hints: None,
        detail: None,
    }
}

/// The one line of a verdict a room is told.
fn line(text: &str) -> String {
    let text = text.lines().next().unwrap_or_default();
    text.chars().take(platform::room::MAX_DETAIL_CHARS).collect()
}

/// After `demonstrate` or `check`: what it found, when this machine is in a room.
/// `finding` is what the command recorded; without one its exit code says.
pub async fn report_stage(
    data_dir: &Path,
    scenario: &str,
    command: StageCommand,
    result: &Result<u8, platform::stage::StageError>,
    finding: Option<Finding>,
) {
    let Some(membership) = membership(data_dir) else { return };
    let kind = match command {
        StageCommand::Demonstrate => "demonstrate",
        StageCommand::Check => "check",
        StageCommand::Reset => return,
    };
    let demonstrate = command == StageCommand::Demonstrate;
    let (outcome, detail) = match (finding, result) {
        (Some(Finding::Reproduced(d)), _) => ("reproduced", d),
        (Some(Finding::NotReproduced(d)), _) => ("not_reproduced", d),
        (Some(Finding::Passed(d)), _) => ("pass", d),
        (Some(Finding::Failed(d)), _) => ("fail", d),
        (None, Ok(0)) if demonstrate => ("reproduced", "the bug showed".into()),
        (None, Ok(platform::stage::EXIT_FAILED)) if demonstrate => ("not_reproduced", "the bug did not show".into()),
        (None, Ok(0)) => ("pass", "the check passed".into()),
        (None, Ok(platform::stage::EXIT_FAILED)) => ("fail", "the check failed".into()),
        (None, Ok(_)) => ("trouble", "the command could not do its job".into()),
        (None, Err(error)) => ("trouble", error.0.clone()),
    };
    let mut report = report(&membership, scenario, kind);
    report.outcome = Some(outcome.into());
    report.detail = Some(line(&detail));
    let sent = send(&membership, serde_json::to_value(&report).unwrap_or_default()).await;
    println!("{sent}");
}

/// After `hint`: how many of the scenario's hints this machine has seen now.
pub async fn report_hint(args: &crate::hint::HintArgs) {
    let Some(membership) = membership(&args.data_dir) else { return };
    let Ok(scenario) = crate::labs::scenario_named(&args.scenario) else { return };
    let Some(seen) = crate::hint::seen_count(&args.data_dir, scenario.name) else { return };
    let mut report = report(&membership, scenario.name, "hint");
    report.hints = Some(seen as i64);
    let sent = send(&membership, serde_json::to_value(&report).unwrap_or_default()).await;
    println!("{sent}");
}
