//! The telemetry console (`/console`): the traces, graphs, alerts and logs the seeds
//! show in Jaeger, Grafana and Alertmanager, recorded inside the process. The metric
//! history is the registry `/metrics` serves, sampled once a second; the alerts are
//! the lab's own rule files (deploy/prometheus/rules, embedded at build time),
//! evaluated on that history by [`eval`]; the traces and logs are what the process's
//! telemetry made ([`traces`], [`logs`]).

pub mod alerts;
pub mod eval;
pub mod logs;
pub mod page;
pub mod promql;
#[cfg(test)]
mod promtool;
pub mod store;
pub mod traces;

use std::collections::BTreeMap;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, RwLock};
use std::time::Duration;

use prometheus_client::registry::Registry;
use tokio_util::sync::CancellationToken;

use crate::config::ConsoleConfig;
use crate::db::Db;

/// Traces kept by default: a trace of the labs is at most a few KiB (a shop checkout's
/// dozen spans), so 2,000 of them stay well under 20 MiB.
pub const DEFAULT_TRACES: usize = 2000;
/// New traces a second by default (`--console-trace-rate`): every request of a room
/// voting from its phones, a sample of a load test's.
pub const DEFAULT_TRACE_RATE: u32 = 100;
/// Spans kept of one trace; the rest are counted.
pub const SPANS_PER_TRACE: usize = 64;
/// How often the registry is sampled and the rules evaluated (Prometheus's scrape and
/// evaluation interval in deploy/prometheus is 5 s; the console's is finer).
pub const SAMPLE_EVERY: Duration = Duration::from_secs(1);

/// Graph requests drawn at once; one more is answered 503 with Retry-After (a
/// projector and a laptop or two are what a talk has open).
pub const GRAPH_DRAWS: usize = 2;

/// What a lab brings to its console: its rule files and its telling graphs.
#[derive(Clone, Copy, Default)]
pub struct ConsoleSpec {
    /// The text of each of its deploy/prometheus/rules files.
    pub rules: &'static [&'static str],
    pub graphs: &'static [Graph],
}

/// One graph: lines drawn from PromQL expressions over the history.
#[derive(Debug, Clone, Copy)]
pub struct Graph {
    pub id: &'static str,
    pub title: &'static str,
    pub unit: &'static str,
    pub lines: &'static [Line],
}

/// A line per series of `expr`'s result, named by `legend` with `{label}` replaced by
/// the series' value of that label.
#[derive(Debug, Clone, Copy)]
pub struct Line {
    pub legend: &'static str,
    pub expr: &'static str,
}

/// The graphs every lab has: its requests by status class and its latency per route.
pub const HTTP_GRAPHS: &[Graph] = &[
    Graph {
        id: "requests",
        title: "Requests per second by status class",
        unit: "req/s",
        lines: &[
            Line { legend: "2xx", expr: r#"sum(rate(http_requests_total{status=~"2.."}[1m]))"# },
            Line { legend: "3xx", expr: r#"sum(rate(http_requests_total{status=~"3.."}[1m]))"# },
            Line { legend: "4xx", expr: r#"sum(rate(http_requests_total{status=~"4.."}[1m]))"# },
            Line { legend: "5xx", expr: r#"sum(rate(http_requests_total{status=~"5.."}[1m]))"# },
        ],
    },
    Graph {
        id: "latency",
        title: "Latency per route (p50, p95)",
        unit: "s",
        lines: &[
            Line {
                legend: "p50 {method} {endpoint}",
                expr: "histogram_quantile(0.5, sum by (le, method, endpoint) (rate(http_request_duration_seconds_bucket[1m])))",
            },
            Line {
                legend: "p95 {method} {endpoint}",
                expr: "histogram_quantile(0.95, sum by (le, method, endpoint) (rate(http_request_duration_seconds_bucket[1m])))",
            },
        ],
    },
];

/// The platform pool's graph, for a lab whose story involves its database connections.
pub const POOL_GRAPH: Graph = Graph {
    id: "pool",
    title: "Database pool: connections in use, size, waits timed out",
    unit: "connections",
    lines: &[
        Line { legend: "in use", expr: "sum(db_pool_checked_out)" },
        Line { legend: "size", expr: "sum(db_pool_size)" },
        Line { legend: "timeouts per s", expr: "sum(rate(db_pool_timeout_total[1m]))" },
    ],
};

/// A registry the console samples, under the job name the rules know it by.
struct Source {
    job: &'static str,
    registry: Arc<Registry>,
    db: Option<Db>,
}

struct CompiledGraph {
    spec: Graph,
    lines: Vec<(&'static str, promql::Expr)>,
}

/// The console of one process: shared by every service it serves.
#[derive(Clone)]
pub struct Console {
    inner: Arc<Inner>,
}

struct Inner {
    config: ConsoleConfig,
    instance: String,
    sources: Mutex<Vec<Source>>,
    history: RwLock<store::MetricStore>,
    /// Its series and samples, as of the last tick.
    history_size: [AtomicUsize; 2],
    /// Graph draws at once: each reads the whole history hundreds of times.
    drawing: Arc<tokio::sync::Semaphore>,
    rules: Mutex<Vec<alerts::RuleState>>,
    graphs: RwLock<Vec<CompiledGraph>>,
    /// When the rules were last evaluated (ms since the epoch).
    evaluated_at: Mutex<Option<i64>>,
}

impl Console {
    pub fn new(config: ConsoleConfig) -> Console {
        Console {
            inner: Arc::new(Inner {
                config,
                instance: hostname(),
                sources: Mutex::default(),
                history: RwLock::default(),
                history_size: Default::default(),
                drawing: Arc::new(tokio::sync::Semaphore::new(GRAPH_DRAWS)),
                rules: Mutex::default(),
                graphs: RwLock::default(),
                evaluated_at: Mutex::default(),
            }),
        }
    }

    pub fn recording(&self) -> bool {
        self.inner.config.recording
    }

    pub fn jaeger_url(&self) -> Option<&str> {
        self.inner.config.jaeger_url.as_deref()
    }

    /// Samples `registry` (and `db`'s pool gauges before each sample) as job `job`.
    pub fn add_source(&self, job: &'static str, registry: Arc<Registry>, db: Option<Db>) {
        lock(&self.inner.sources).push(Source { job, registry, db });
    }

    /// Loads the lab's rules and graphs (after the platform's own graphs). A rule or a
    /// graph the evaluator cannot read is an error that names it: no silent gap.
    pub fn configure(&self, spec: ConsoleSpec) -> anyhow::Result<()> {
        let mut rules = Vec::new();
        for text in spec.rules {
            let parsed = alerts::parse_rules(text).map_err(|e| anyhow::anyhow!("the console's alert rules: {e}"))?;
            rules.extend(parsed.into_iter().map(alerts::RuleState::new));
        }
        let mut graphs = Vec::new();
        for graph in HTTP_GRAPHS.iter().chain(spec.graphs) {
            let mut lines = Vec::new();
            for line in graph.lines {
                let expr = promql::parse(line.expr)
                    .map_err(|e| anyhow::anyhow!("the console's graph '{}' ({}): {e}", graph.id, line.expr))?;
                lines.push((line.legend, expr));
            }
            graphs.push(CompiledGraph { spec: *graph, lines });
        }
        *lock(&self.inner.rules) = rules;
        *self.inner.graphs.write().unwrap_or_else(|p| p.into_inner()) = graphs;
        Ok(())
    }

    /// Samples and evaluates every [`SAMPLE_EVERY`] until `shutdown`, when recording.
    pub fn start(&self, shutdown: CancellationToken) {
        if !self.recording() {
            return;
        }
        let console = self.clone();
        tokio::spawn(async move {
            let mut ticks = tokio::time::interval(SAMPLE_EVERY);
            ticks.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Skip);
            loop {
                tokio::select! {
                    _ = shutdown.cancelled() => break,
                    // Off the runtime's threads: the history's write lock may wait for
                    // a graph being drawn.
                    _ = ticks.tick() => {
                        let console = console.clone();
                        let _ = tokio::task::spawn_blocking(move || console.tick(now_ms())).await;
                    }
                }
            }
        });
    }

    /// One scrape of every source and one evaluation of every rule, at `at_ms`.
    pub fn tick(&self, at_ms: i64) {
        let mut scraped = Vec::new();
        for source in lock(&self.inner.sources).iter() {
            if let Some(db) = &source.db {
                db.sample_pool();
            }
            let mut text = String::new();
            if prometheus_client::encoding::text::encode(&mut text, &source.registry).is_err() {
                continue;
            }
            let mut samples = store::parse_exposition(&text);
            samples.push((BTreeMap::from([("__name__".to_string(), "up".to_string())]), 1.0));
            scraped.push((source.job, samples));
        }
        {
            let mut history = self.inner.history.write().unwrap_or_else(|p| p.into_inner());
            for (job, samples) in scraped {
                history.add(at_ms, samples, &[("job", job), ("instance", &self.inner.instance)]);
            }
            let (series, samples) = history.len();
            self.inner.history_size[0].store(series, Ordering::Relaxed);
            self.inner.history_size[1].store(samples, Ordering::Relaxed);
        }
        let history = self.inner.history.read().unwrap_or_else(|p| p.into_inner());
        for rule in lock(&self.inner.rules).iter_mut() {
            let firing_before = firing(rule);
            if let Err(error) = rule.evaluate(&*history, at_ms) {
                tracing::warn!(alert = rule.rule().name, %error, "console_rule_failed");
            }
            for alert in rule.alerts() {
                let key = alert.labels.clone();
                if matches!(alert.state, alerts::AlertState::Firing) && !firing_before.contains(&key) {
                    let summary = alert.annotations.get("summary").cloned().unwrap_or_default();
                    tracing::warn!(alert = rule.rule().name, value = alert.value, summary, "alert_firing");
                }
            }
        }
        *lock(&self.inner.evaluated_at) = Some(at_ms);
    }

    /// Series and samples in the history at the last tick (read without its lock: a
    /// graph being drawn holds it).
    pub fn history_size(&self) -> (usize, usize) {
        let size = &self.inner.history_size;
        (size[0].load(Ordering::Relaxed), size[1].load(Ordering::Relaxed))
    }

    /// Every rule with its state, as the alert panel shows it.
    pub fn alerts(&self) -> page::AlertsView {
        let history = self.history_size();
        let rules = lock(&self.inner.rules);
        page::alerts_view(&rules, *lock(&self.inner.evaluated_at), history)
    }

    /// The names of the alerts firing now.
    pub fn firing(&self) -> Vec<page::FiringAlert> {
        self.alerts().rules.into_iter().flat_map(|r| r.alerts.into_iter().filter(|a| a.state == "firing")).collect()
    }

    /// The axum routes of the console, for every service of the process.
    pub fn router(&self) -> axum::Router {
        page::router(self.clone())
    }
}

fn firing(rule: &alerts::RuleState) -> Vec<BTreeMap<String, String>> {
    rule.alerts().into_iter().filter(|a| matches!(a.state, alerts::AlertState::Firing)).map(|a| a.labels).collect()
}

fn lock<T>(mutex: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    mutex.lock().unwrap_or_else(|p| p.into_inner())
}

pub fn now_ms() -> i64 {
    std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map(|d| d.as_millis() as i64).unwrap_or(0)
}

/// The `instance` label: this machine's name, as a scrape of it would say.
fn hostname() -> String {
    let mut buffer = [0u8; 256];
    // SAFETY: the buffer is valid for its length; gethostname writes at most that.
    let ok = unsafe { libc::gethostname(buffer.as_mut_ptr().cast(), buffer.len()) } == 0;
    let name = if ok {
        String::from_utf8_lossy(buffer.split(|b| *b == 0).next().unwrap_or_default()).into_owned()
    } else {
        String::new()
    };
    if name.is_empty() { "localhost".into() } else { name }
}
