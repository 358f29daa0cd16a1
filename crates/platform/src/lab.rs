//! The contract every lab implements. The binary knows a lab only through it: its
//! name, bugs and scenarios, the services it runs and their ports, how it is built on
//! a started platform, seeded, staged and rehearsed.

use std::future::Future;
use std::path::PathBuf;
use std::pin::Pin;
use std::time::Duration;

use axum::Router;

use crate::Platform;
use crate::bugs::BugInfo;
use crate::db::Db;
use crate::rehearsal::Rehearsal;
use crate::stage::{Scenario, StageCommand, StageError, Target};

/// The future a lab's asynchronous parts return.
pub type Boxed<'a, T> = Pin<Box<dyn Future<Output = T> + Send + 'a>>;

/// One service a lab runs: its name (traces, the banner, errors) and the port it
/// listens on unless told otherwise.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ServiceSpec {
    pub name: &'static str,
    pub port: u16,
}

/// A service's router, assembled with the platform's own routes.
pub struct Service {
    pub name: &'static str,
    pub router: Router,
}

/// A lab built on a started platform, ready to serve.
pub struct Built {
    pub services: Vec<Service>,
    /// What the lab opened beside the platform (pools, tracer providers), closed once
    /// serving has ended.
    pub close: Option<Boxed<'static, ()>>,
}

impl Built {
    /// A lab of one service that opened nothing of its own.
    pub fn one(name: &'static str, router: Router) -> Built {
        Built { services: vec![Service { name, router }], close: None }
    }
}

/// What a stage command (`demonstrate`, `check`, `reset`) is given.
pub struct StageContext {
    /// Where the lab answers.
    pub url: String,
    /// The admin token, when given; else read from `data_dir`.
    pub token: Option<String>,
    pub data_dir: PathBuf,
    /// Pause between requests, so the room can follow along.
    pub interval: Duration,
    /// The lab's Redis, for a command that stops it to prove an outage promise.
    pub redis: Option<String>,
}

impl StageContext {
    pub fn target(&self, lab: &'static str) -> Result<Target, StageError> {
        Target::new(&self.url, lab)
    }

    pub fn admin_token(&self, lab: &str) -> Result<String, StageError> {
        crate::stage::admin_token(self.token.as_deref(), &self.data_dir, lab)
    }
}

/// A running lab as a rehearsal reaches it.
pub struct RehearsalContext {
    /// The lab's first service.
    pub target: Target,
    pub token: String,
    pub redis: Option<String>,
    /// Each service's base URL, by name, when the rehearsal started the lab itself.
    pub services: Vec<(&'static str, String)>,
}

impl RehearsalContext {
    pub fn service_url(&self, name: &str) -> Option<&str> {
        self.services.iter().find(|(n, _)| *n == name).map(|(_, url)| url.as_str())
    }
}

/// The port a one-service lab listens on unless told otherwise (the seeds' own).
pub const DEFAULT_PORT: u16 = 8000;

pub trait Lab: Send + Sync {
    /// `vote`, `items`, …: its database file, Redis keys, token file and CLI name.
    fn name(&self) -> &'static str;

    /// What its traces and dashboards call it.
    fn service_name(&self) -> &'static str {
        self.name()
    }

    /// Its planted bugs, each switchable with `--fixed` and `/admin/bugs`.
    fn bugs(&self) -> &'static [BugInfo] {
        &[]
    }

    fn scenarios(&self) -> &'static [Scenario];

    /// The services this process runs, each with its port: by default one, named
    /// [`service_name`](Self::service_name), on [`DEFAULT_PORT`].
    fn services(&self) -> Vec<ServiceSpec> {
        vec![ServiceSpec { name: self.service_name(), port: DEFAULT_PORT }]
    }

    /// Builds the routers of [`services`](Self::services) on a started platform.
    /// `local` holds the base URL of each service this process listens on, so a
    /// service can call another of the same process.
    fn build<'a>(
        &'a self,
        platform: &'a Platform,
        local: &'a [(&'static str, String)],
    ) -> Boxed<'a, anyhow::Result<Built>>;

    /// `breakroom seed LAB`: creates the tables and seed data; says what it did.
    fn seed<'a>(&'a self, db: &'a Db) -> Boxed<'a, anyhow::Result<String>>;

    /// Its alert rules and telling graphs, for `/console`.
    fn console(&self) -> crate::console::ConsoleSpec {
        crate::console::ConsoleSpec::default()
    }

    /// Whether the lab serves its own `/` (the vote lab's pages); the others get the
    /// platform's landing page there ([`crate::landing`]).
    fn home_page(&self) -> bool {
        false
    }

    /// Whether each service exports its own traces (under its own service name)
    /// rather than the process under [`service_name`](Self::service_name).
    fn traces_per_service(&self) -> bool {
        false
    }

    /// The banner's lines for the speaker: `services` is where this machine reaches
    /// each service, `audience` where phones reach the first.
    fn banner(&self, services: &[(&'static str, String)], audience: &str) -> Vec<String> {
        let _ = (services, audience);
        Vec::new()
    }

    /// Runs a stage command of one of its [`scenarios`](Self::scenarios) against a
    /// running lab; returns the process exit code.
    fn stage<'a>(
        &'a self,
        scenario: &'static Scenario,
        command: StageCommand,
        context: &'a StageContext,
    ) -> Boxed<'a, Result<u8, StageError>>;

    /// The steps that rehearse `scenario` on a running lab.
    fn rehearsal(&self, scenario: &Scenario, context: RehearsalContext) -> Result<Box<dyn Rehearsal>, StageError>;

    /// `breakroom explain SCENARIO`'s notes after the scenario's story: by default the
    /// lab's planted bugs ([`bug_notes`]).
    fn explain(&self, scenario: &Scenario) -> String {
        let _ = scenario;
        bug_notes(self)
    }
}

/// A lab's planted bugs, each with where it lives and how to run its fix.
pub fn bug_notes<L: Lab + ?Sized>(lab: &L) -> String {
    let bugs: Vec<String> =
        lab.bugs().iter().map(|b| format!("  {}: {} — {}", b.name, b.summary, b.location)).collect();
    let fixes = if bugs.is_empty() {
        "  (no planted bug: its scenario is a fault injected from outside)".to_string()
    } else {
        bugs.join("\n")
    };
    format!("The {} lab's planted bugs (run the fix with --fixed NAME):\n{fixes}\n", lab.name())
}
