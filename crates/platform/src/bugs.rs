//! Planted-bug switches: which implementation of each planted bug runs, chosen at
//! start (`--fixed`) and flipped at runtime through `/admin/bugs/{name}`.

use std::sync::Arc;

use axum::Json;
use axum::extract::State;
use serde::{Deserialize, Serialize};

use super::cache::{Redis, Subscription};
use super::http::{ApiError, JsonBody, PathParam};

/// A planted bug as a lab declares it.
#[derive(Debug, Clone, Copy)]
pub struct BugInfo {
    pub name: &'static str,
    pub summary: &'static str,
    /// Where an attendee finds the buggy code.
    pub location: &'static str,
}

/// One bug's switch; cheap to clone and to read on every request.
#[derive(Clone, Debug)]
pub struct BugSwitch {
    info: BugInfo,
    fixed: Arc<tokio::sync::watch::Sender<bool>>,
    fixed_at_start: bool,
}

impl BugSwitch {
    pub fn is_fixed(&self) -> bool {
        *self.fixed.borrow()
    }

    pub fn set_fixed(&self, fixed: bool) {
        self.fixed.send_if_modified(|now| std::mem::replace(now, fixed) != fixed);
    }

    /// Follows the switch: the receiver sees every flip (a lab whose fix must also
    /// undo what the bug left behind, as deploying it would).
    pub fn changes(&self) -> tokio::sync::watch::Receiver<bool> {
        self.fixed.subscribe()
    }

    pub fn name(&self) -> &'static str {
        self.info.name
    }

    pub fn mode(&self) -> &'static str {
        if self.is_fixed() { "fixed" } else { "buggy" }
    }
}

#[derive(Clone, Default)]
pub struct Bugs {
    switches: Arc<[BugSwitch]>,
    /// With Redis: the channel every replica's switches follow.
    shared: Option<(Redis, String)>,
}

#[derive(Serialize, utoipa::ToSchema)]
pub struct BugState {
    pub name: &'static str,
    pub fixed: bool,
    pub mode: &'static str,
    pub summary: &'static str,
    pub location: &'static str,
}

impl Bugs {
    /// `requested` holds the names given to `--fixed`, bare (`referral`) or with the
    /// lab (`vote:referral`); a name the lab does not know is an error that lists the
    /// known ones, so a typo never silently runs the buggy build.
    pub fn new(lab: &str, known: &[BugInfo], requested: &[String]) -> anyhow::Result<Bugs> {
        let mut fixed = vec![false; known.len()];
        for name in requested {
            let name = name.trim();
            let bare = match name.split_once(':') {
                Some((other_lab, _)) if other_lab != lab => continue,
                Some((_, bug)) => bug,
                None => name,
            };
            match known.iter().position(|b| b.name == bare) {
                Some(i) => fixed[i] = true,
                None => {
                    let names: Vec<_> = known.iter().map(|b| b.name).collect();
                    anyhow::bail!(
                        "unknown bug '{name}' for the {lab} lab in --fixed / BREAKROOM_FIXED; known: {}",
                        if names.is_empty() { "none".to_string() } else { names.join(", ") }
                    );
                }
            }
        }
        let switches = known
            .iter()
            .zip(fixed)
            .map(|(info, fixed)| BugSwitch {
                info: *info,
                fixed: Arc::new(tokio::sync::watch::Sender::new(fixed)),
                fixed_at_start: fixed,
            })
            .collect();
        Ok(Bugs { switches, shared: None })
    }

    /// Makes every replica on this Redis apply each flip and restore, whichever
    /// replica received it (an admin call reaches only one of them).
    pub fn follow(&mut self, redis: Redis, channel: String, shutdown: tokio_util::sync::CancellationToken) {
        let mut events = redis.subscribe(channel.clone(), shutdown);
        let switches = self.switches.clone();
        tokio::spawn(async move {
            while let Some(event) = events.recv().await {
                if let Subscription::Message(message) = event {
                    apply(&switches, &message);
                }
            }
        });
        self.shared = Some((redis, channel));
    }

    async fn announce(&self, message: String) {
        let Some((redis, channel)) = &self.shared else { return };
        let mut conn = redis.conn();
        let sent = redis::cmd("PUBLISH").arg(channel).arg(&message).query_async::<i64>(&mut conn).await;
        if let Err(error) = sent {
            tracing::warn!(%error, message, "other replicas were not told about a bug switch change");
        }
    }

    /// Sets one switch here and on every replica.
    pub async fn set_everywhere(&self, switch: &BugSwitch, fixed: bool) {
        switch.set_fixed(fixed);
        self.announce(format!("set {} {}", switch.name(), switch.mode())).await;
    }

    /// Back to the implementations chosen at start, here and on every replica.
    pub async fn restore_everywhere(&self) {
        self.restore();
        self.announce("restore".into()).await;
    }

    /// The switch of a bug the lab declared.
    pub fn switch(&self, name: &str) -> BugSwitch {
        self.find(name).cloned().unwrap_or_else(|| panic!("bug '{name}' was not declared by its lab"))
    }

    fn find(&self, name: &str) -> Option<&BugSwitch> {
        self.switches.iter().find(|s| s.info.name == name)
    }

    /// Back to the implementations chosen at start.
    pub fn restore(&self) {
        for switch in self.switches.iter() {
            switch.set_fixed(switch.fixed_at_start);
        }
    }

    pub fn states(&self) -> Vec<BugState> {
        self.switches.iter().map(state).collect()
    }
}

/// Applies a message of `announce`: `set NAME fixed|buggy` or `restore`.
fn apply(switches: &[BugSwitch], message: &str) {
    let words: Vec<&str> = message.split_whitespace().collect();
    match words.as_slice() {
        ["restore"] => switches.iter().for_each(|s| s.set_fixed(s.fixed_at_start)),
        ["set", name, mode] => {
            if let Some(switch) = switches.iter().find(|s| s.info.name == *name) {
                switch.set_fixed(*mode == "fixed");
            }
        }
        _ => tracing::debug!(message, "ignored an unknown bug switch message"),
    }
}

fn state(switch: &BugSwitch) -> BugState {
    BugState {
        name: switch.info.name,
        fixed: switch.is_fixed(),
        mode: switch.mode(),
        summary: switch.info.summary,
        location: switch.info.location,
    }
}

/// `{"fixed": true}` runs a planted bug's fixed implementation; `false` the buggy one.
#[derive(Deserialize, utoipa::ToSchema)]
#[schema(as = FlipBody)]
pub struct FlipRequest {
    pub fixed: bool,
}

/// `GET /admin/bugs`: each planted bug and which implementation runs.
#[utoipa::path(
    get,
    path = "/admin/bugs",
    tag = "admin",
    security(("admin_token" = [])),
    responses(
        (status = 200, description = "The lab's planted bugs", body = crate::openapi::BugsBody),
        (status = 401, description = "Admin token missing or wrong", body = crate::openapi::ErrorBody),
    )
)]
pub async fn list(State(bugs): State<Bugs>) -> Json<crate::openapi::BugsBody> {
    Json(crate::openapi::BugsBody { bugs: bugs.states() })
}

/// `POST /admin/bugs/{name}` with `{"fixed": true|false}`: every replica switches.
#[utoipa::path(
    post,
    path = "/admin/bugs/{name}",
    tag = "admin",
    security(("admin_token" = [])),
    params(("name" = String, Path, description = "A planted bug's name, e.g. referral")),
    request_body = FlipRequest,
    responses(
        (status = 200, description = "The bug's new state", body = BugState),
        (status = 401, description = "Admin token missing or wrong", body = crate::openapi::ErrorBody),
        (status = 404, description = "No planted bug of that name", body = crate::openapi::ErrorBody),
        (status = 413, description = "Body too large", body = crate::openapi::ErrorBody),
        (status = 422, description = "Not a JSON object with a boolean fixed", body = crate::openapi::ErrorBody),
    )
)]
pub async fn flip(
    State(bugs): State<Bugs>,
    PathParam(name): PathParam<String>,
    JsonBody(request): JsonBody<FlipRequest>,
) -> Result<Json<BugState>, ApiError> {
    let switch = bugs.find(&name).ok_or_else(|| {
        let names: Vec<_> = bugs.switches.iter().map(|s| s.info.name).collect();
        ApiError::not_found(format!("Unknown bug '{name}'. Known: {}", names.join(", ")))
    })?;
    bugs.set_everywhere(switch, request.fixed).await;
    tracing::warn!(bug = switch.name(), mode = switch.mode(), "bug_switched");
    Ok(Json(state(switch)))
}

#[cfg(test)]
mod tests {
    use super::*;

    const KNOWN: &[BugInfo] = &[BugInfo { name: "referral", summary: "", location: "" }];

    #[test]
    fn fixed_names_accept_the_lab_prefix_and_ignore_other_labs() {
        let bugs = Bugs::new("vote", KNOWN, &["vote:referral".into()]).unwrap();
        assert!(bugs.switch("referral").is_fixed());
        let bugs = Bugs::new("vote", KNOWN, &["items:redis-outage".into()]).unwrap();
        assert!(!bugs.switch("referral").is_fixed());
    }

    #[test]
    fn an_unknown_fixed_name_is_an_error_listing_the_known_ones() {
        let error = Bugs::new("vote", KNOWN, &["referal".into()]).err().expect("an error").to_string();
        assert!(error.contains("referal") && error.contains("known: referral"), "{error}");
    }

    #[test]
    fn announced_changes_apply_to_the_named_switch() {
        let bugs = Bugs::new("vote", KNOWN, &[]).unwrap();
        apply(&bugs.switches, "set referral fixed");
        assert!(bugs.switch("referral").is_fixed());
        apply(&bugs.switches, "set nosuch buggy");
        apply(&bugs.switches, "restore");
        assert!(!bugs.switch("referral").is_fixed());
    }

    #[tokio::test]
    async fn a_flip_reaches_its_followers_once() {
        let bugs = Bugs::new("vote", KNOWN, &[]).unwrap();
        let switch = bugs.switch("referral");
        let mut changes = switch.changes();
        switch.set_fixed(false);
        assert!(!changes.has_changed().unwrap(), "no flip, no news");
        switch.set_fixed(true);
        assert!(changes.has_changed().unwrap());
        assert!(*changes.borrow_and_update());
    }

    #[test]
    fn restore_returns_to_the_start_mode() {
        let bugs = Bugs::new("vote", KNOWN, &[]).unwrap();
        bugs.switch("referral").set_fixed(true);
        bugs.restore();
        assert!(!bugs.switch("referral").is_fixed());
    }
}
