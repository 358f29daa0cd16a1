//! What the stage commands (`demonstrate`, `check`, `reset`) share: an HTTP client for
//! a running lab whose failures are sentences a speaker can read out, not traces.

use std::fmt;
use std::io::IsTerminal;
use std::path::Path;
use std::time::Duration;

/// Exit code of a check whose lab still shows its bug.
pub const EXIT_FAILED: u8 = 1;
/// Exit code when the command could not do its job (server unreachable, no token).
pub const EXIT_TROUBLE: u8 = 2;

#[derive(Debug)]
pub struct StageError(pub String);

impl fmt::Display for StageError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl std::error::Error for StageError {}

/// A running lab, reached over HTTP as the audience reaches it.
#[derive(Clone)]
pub struct Target {
    base: String,
    client: reqwest::Client,
    lab: &'static str,
}

/// A response: status and body text.
#[derive(Debug, Clone)]
pub struct Reply {
    pub status: u16,
    pub body: String,
}

impl Reply {
    pub fn is_success(&self) -> bool {
        (200..300).contains(&self.status)
    }

    pub fn json(&self) -> Option<serde_json::Value> {
        serde_json::from_str(&self.body).ok()
    }

    /// A reset's `message`, or the `detail` of a refusal.
    pub fn message(&self) -> String {
        self.json().and_then(|v| v["message"].as_str().map(str::to_owned)).unwrap_or_else(|| self.detail())
    }

    /// The JSON body of a successful answer to `what`; anything else is an error
    /// naming it.
    pub fn expect_json(self, what: &str) -> Result<serde_json::Value, StageError> {
        if !self.is_success() {
            return Err(StageError(format!("{what} answered {}: {}", self.status, self.detail())));
        }
        self.json().ok_or_else(|| StageError(format!("{what} did not answer JSON: {}", self.body)))
    }

    /// The `detail` of a JSON error body, or the body itself.
    pub fn detail(&self) -> String {
        self.json()
            .and_then(|v| v.get("detail").or_else(|| v.get("error")).and_then(|d| d.as_str()).map(str::to_owned))
            .unwrap_or_else(|| self.body.clone())
    }
}

impl Target {
    pub fn new(url: &str, lab: &'static str) -> Result<Target, StageError> {
        Target::with_timeout(url, lab, Duration::from_secs(10))
    }

    /// A target whose requests may take up to `timeout` (DDL on a big table, a resize).
    pub fn with_timeout(url: &str, lab: &'static str, timeout: Duration) -> Result<Target, StageError> {
        let base = url.trim_end_matches('/').to_string();
        if !(base.starts_with("http://") || base.starts_with("https://")) {
            return Err(StageError(format!("--url must start with http:// or https:// (got '{url}')")));
        }
        let client = crate::http::client()
            .timeout(timeout)
            .connect_timeout(Duration::from_secs(3))
            .build()
            .map_err(|e| StageError(format!("cannot build an HTTP client: {e}")))?;
        Ok(Target { base, client, lab })
    }

    pub fn url(&self, path: &str) -> String {
        format!("{}{}", self.base, path)
    }

    pub async fn get(&self, path: &str) -> Result<Reply, StageError> {
        self.send(self.client.get(self.url(path))).await
    }

    pub async fn post_json(&self, path: &str, body: &serde_json::Value) -> Result<Reply, StageError> {
        self.send(self.client.post(self.url(path)).json(body)).await
    }

    pub async fn put_json(&self, path: &str, body: &serde_json::Value) -> Result<Reply, StageError> {
        self.send(self.client.put(self.url(path)).json(body)).await
    }

    pub async fn post_admin_json(
        &self,
        path: &str,
        token: &str,
        body: &serde_json::Value,
    ) -> Result<Reply, StageError> {
        self.send(self.client.post(self.url(path)).bearer_auth(token).json(body)).await
    }

    pub async fn get_admin(&self, path: &str, token: &str) -> Result<Reply, StageError> {
        self.send(self.client.get(self.url(path)).bearer_auth(token)).await
    }

    /// A request as a user of a lab that authenticates with `Authorization: Token …`.
    pub async fn get_with_token(&self, path: &str, token: &str) -> Result<Reply, StageError> {
        self.send(self.client.get(self.url(path)).header("authorization", format!("Token {token}"))).await
    }

    pub async fn post_with_token(&self, path: &str, token: &str) -> Result<Reply, StageError> {
        self.send(self.client.post(self.url(path)).header("authorization", format!("Token {token}"))).await
    }

    pub async fn post_admin(&self, path: &str, token: &str) -> Result<Reply, StageError> {
        self.send(self.client.post(self.url(path)).bearer_auth(token)).await
    }

    async fn send(&self, request: reqwest::RequestBuilder) -> Result<Reply, StageError> {
        let response = request.send().await.map_err(|e| self.unreachable(&e))?;
        let status = response.status().as_u16();
        let body = response.text().await.map_err(|e| self.unreachable(&e))?;
        Ok(Reply { status, body })
    }

    fn unreachable(&self, error: &reqwest::Error) -> StageError {
        if let Some(tls) = crate::http::tls_failure(error) {
            return StageError(format!("Cannot reach the {} lab at {}: {tls}.", self.lab, self.base));
        }
        let why = if error.is_timeout() {
            "it did not answer in time"
        } else if error.is_connect() {
            "nothing answered there"
        } else {
            "the connection failed"
        };
        StageError(format!(
            "Cannot reach the {lab} lab at {base}: {why}.\n\
             Is it running? Start it with `breakroom serve {lab}`, or point at it with --url.",
            lab = self.lab,
            base = self.base
        ))
    }

    /// A bug's implementation, `buggy` or `fixed`, as `GET /admin/bugs` tells it
    /// (`unknown` when the lab has no such bug).
    pub async fn bug_mode(&self, name: &str, token: &str) -> Result<String, StageError> {
        let bugs = self.get_admin("/admin/bugs", token).await?.expect_json("GET /admin/bugs")?;
        Ok(bugs["bugs"]
            .as_array()
            .and_then(|all| all.iter().find(|b| b["name"] == name))
            .and_then(|b| b["mode"].as_str())
            .unwrap_or("unknown")
            .to_owned())
    }

    /// A sample's value from the lab's `/metrics`.
    pub async fn metric(&self, name: &str) -> Result<Option<f64>, StageError> {
        let reply = self.get("/metrics").await?;
        Ok(metric_value(&reply.body, name))
    }
}

/// The value of the first sample named exactly `name` (labels allowed) in Prometheus text.
pub fn metric_value(text: &str, name: &str) -> Option<f64> {
    text.lines().filter(|line| !line.starts_with('#')).find_map(|line| {
        let rest = line.strip_prefix(name)?;
        let value = match rest.chars().next()? {
            ' ' => rest.trim(),
            '{' => rest.split_once('}')?.1.trim(),
            _ => return None,
        };
        value.split_whitespace().next()?.parse().ok()
    })
}

/// What a stage command found, for a workshop room to hear: each `demonstrate` says
/// whether the bug showed, and [`report_check`] gives every check's verdict.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Finding {
    Reproduced(String),
    NotReproduced(String),
    Passed(String),
    Failed(String),
}

tokio::task_local! {
    static FINDING: std::cell::RefCell<Option<Finding>>;
}

/// Runs a stage command and returns what it found (None when it said nothing: it could
/// not do its job, or the command finds nothing, like `reset`).
pub async fn finding_of<T>(command: impl std::future::Future<Output = T>) -> (T, Option<Finding>) {
    FINDING
        .scope(std::cell::RefCell::new(None), async {
            let result = command.await;
            (result, FINDING.with(|f| f.borrow_mut().take()))
        })
        .await
}

/// Records what the running stage command found; nothing happens outside
/// [`finding_of`] (the rehearsal runs stage commands without a room).
pub fn found(finding: Finding) {
    let _ = FINDING.try_with(|f| *f.borrow_mut() = Some(finding));
}

/// Prints a check's verdict — `Ok(what passed)` or `Err(what failed)`, then `advice` —
/// under the check's heading; returns the exit code.
pub fn report_check(outcome: Result<String, String>, advice: &str) -> u8 {
    let style = Style::detect();
    println!("{}", style.heading("=== TESTING THE FIX ==="));
    match outcome {
        Ok(passed) => {
            println!("{}", style.good(&format!("SUCCESS: {passed}. The fix works.")));
            found(Finding::Passed(passed));
            0
        }
        Err(failed) => {
            println!("{}", style.bad(&format!("FAIL: {failed}")));
            found(Finding::Failed(failed));
            println!("{advice}");
            EXIT_FAILED
        }
    }
}

/// Prints what a reset left (`state`) and whether that is ready for the next `session`
/// (talk, workshop); returns the exit code.
pub fn report_reset(clean: bool, session: &str, state: &str) -> u8 {
    let style = Style::detect();
    if clean {
        println!("{}", style.good(&format!("Ready for the next {session}. {state}")));
        0
    } else {
        println!("{}", style.bad(&format!("Reset did not leave a clean state: {state}")));
        EXIT_FAILED
    }
}

/// The admin token: given, or the one a local server generated into its data directory.
pub fn admin_token(given: Option<&str>, data_dir: &Path, lab: &str) -> Result<String, StageError> {
    if let Some(token) = given.filter(|t| !t.trim().is_empty()) {
        return Ok(token.trim().to_string());
    }
    let file = crate::token_file(data_dir, lab);
    match std::fs::read_to_string(&file) {
        Ok(token) if !token.trim().is_empty() => Ok(token.trim().to_string()),
        _ => Err(StageError(format!(
            "This needs the admin token. Pass --token or set BREAKROOM_ADMIN_TOKEN \
             (a local `breakroom serve {lab}` without a configured token writes the one it \
             generated to {}).",
            file.display()
        ))),
    }
}

/// Resets the lab's session: `POST /admin/reset?confirm=yes`, which must succeed.
pub async fn reset_session(target: &Target, token: &str) -> Result<Reply, StageError> {
    admin_call(target, "/admin/reset?confirm=yes", token, None).await
}

/// Runs a planted bug's fix: `POST /admin/bugs/{bug}` with `{"fixed": true}`.
pub async fn run_fix(target: &Target, token: &str, bug: &str) -> Result<Reply, StageError> {
    admin_call(target, &format!("/admin/bugs/{bug}"), token, Some(serde_json::json!({ "fixed": true }))).await
}

/// An admin POST that must succeed.
pub async fn admin_call(
    target: &Target,
    path: &str,
    token: &str,
    body: Option<serde_json::Value>,
) -> Result<Reply, StageError> {
    let reply = match body {
        Some(body) => target.post_admin_json(path, token, &body).await?,
        None => target.post_admin(path, token).await?,
    };
    if reply.is_success() {
        Ok(reply)
    } else {
        Err(StageError(format!("POST {path} answered {}: {}", reply.status, reply.detail())))
    }
}

/// `POST /admin/reset?confirm=yes` with the admin token; a refusal is an error that
/// says why.
pub async fn post_reset(target: &Target, token: Option<&str>, data_dir: &Path, lab: &str) -> Result<Reply, StageError> {
    let token = admin_token(token, data_dir, lab)?;
    let reply = target.post_admin("/admin/reset?confirm=yes", &token).await?;
    if reply.status == 401 {
        return Err(StageError(format!("The server refused the admin token: {}", reply.detail())));
    }
    if !reply.is_success() {
        return Err(StageError(format!("Reset failed with {}: {}", reply.status, reply.detail())));
    }
    Ok(reply)
}

/// [`post_reset`], printing the lab's message.
pub async fn reset_lab(target: &Target, token: Option<&str>, data_dir: &Path, lab: &str) -> Result<u8, StageError> {
    let reply = post_reset(target, token, data_dir, lab).await?;
    println!("{}", reply.message());
    Ok(0)
}

/// Text styles for a projector: bold green/red on a terminal, plain in a pipe.
pub struct Style {
    color: bool,
}

impl Style {
    pub fn detect() -> Style {
        Style { color: std::io::stdout().is_terminal() && std::env::var_os("NO_COLOR").is_none() }
    }

    fn paint(&self, code: &str, text: &str) -> String {
        if self.color { format!("\x1b[{code}m{text}\x1b[0m") } else { text.to_string() }
    }

    pub fn good(&self, text: &str) -> String {
        self.paint("1;32", text)
    }

    pub fn bad(&self, text: &str) -> String {
        self.paint("1;31", text)
    }

    pub fn heading(&self, text: &str) -> String {
        self.paint("1;33", text)
    }
}

/// "11–15", "3, 7, 9–12": request numbers for a summary line.
pub fn ranges(numbers: &[usize]) -> String {
    let mut parts = Vec::new();
    let mut i = 0;
    while i < numbers.len() {
        let start = numbers[i];
        let mut end = start;
        while i + 1 < numbers.len() && numbers[i + 1] == end + 1 {
            i += 1;
            end = numbers[i];
        }
        parts.push(if start == end { start.to_string() } else { format!("{start}–{end}") });
        i += 1;
    }
    parts.join(", ")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn metric_value_reads_plain_and_labelled_samples() {
        let text = "# TYPE referral_cache_exhausted counter\nreferral_cache_exhausted_total 5\n\
                    referral_cache_entries 15\nhttp_requests_total{method=\"GET\"} 3\n";
        assert_eq!(metric_value(text, "referral_cache_exhausted_total"), Some(5.0));
        assert_eq!(metric_value(text, "referral_cache_entries"), Some(15.0));
        assert_eq!(metric_value(text, "http_requests_total"), Some(3.0));
        assert_eq!(metric_value(text, "referral_cache"), None);
    }

    #[test]
    fn ranges_fold_consecutive_numbers() {
        assert_eq!(ranges(&[11, 12, 13, 14, 15]), "11–15");
        assert_eq!(ranges(&[3, 7, 9, 10, 11]), "3, 7, 9–11");
        assert_eq!(ranges(&[]), "");
    }
}

/// Ctrl-C, SIGTERM or SIGHUP (the terminal was closed): whichever ends a stage
/// command, its cleanup still runs. After a hangup nothing can be printed any more, so
/// the cleanup must not depend on printing.
pub async fn interrupted() {
    #[cfg(unix)]
    {
        use tokio::signal::unix::{Signal, SignalKind, signal};
        // Each on its own: one that cannot be watched does not stop the others.
        async fn received(signal: Option<Signal>) {
            match signal {
                Some(mut signal) => drop(signal.recv().await),
                None => std::future::pending().await,
            }
        }
        let (term, hangup) = (signal(SignalKind::terminate()).ok(), signal(SignalKind::hangup()).ok());
        tokio::select! {
            _ = tokio::signal::ctrl_c() => {}
            _ = received(term) => {}
            _ = received(hangup) => {}
        }
    }
    #[cfg(not(unix))]
    let _ = tokio::signal::ctrl_c().await;
}

/// A planted bug seen from the stage: what triggers it, what shows, and how it is fixed.
#[derive(Debug, Clone, Copy)]
pub struct Scenario {
    pub name: &'static str,
    /// The lab it belongs to (`vote`, `items`, …).
    pub lab: &'static str,
    pub bug: &'static str,
    pub title: &'static str,
    pub story: &'static str,
    pub trigger: &'static str,
    pub symptom: &'static str,
    pub fix: &'static str,
    /// What `breakroom check LAB` proves, and so what passes only once it is fixed.
    pub check: &'static str,
    /// What `breakroom reset LAB` puts back for the next talk.
    pub reset: &'static str,
    /// How long a rehearsal of it takes, roughly.
    pub rehearsal: &'static str,
    /// `breakroom hint`: where to look, what is wrong, the shape of the fix — in that
    /// order, and never the code itself.
    pub hints: [&'static str; 3],
}

/// What a stage command does; each lab implements the ones its story has.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum StageCommand {
    Demonstrate,
    Check,
    Reset,
}
