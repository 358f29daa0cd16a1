//! The console's page and its JSON: `/console` (the page; its script asks for the
//! rest), `/console/api/{alerts,graphs,traces,logs}`.

use std::collections::{BTreeMap, HashMap};

use axum::Json;
use axum::extract::State;
use axum::response::Html;
use axum::routing::get;
use serde::{Deserialize, Serialize};

use super::alerts::{AlertState, RuleState};
use super::eval::{self, Value};
use super::{Console, lock, logs, now_ms, traces};
use crate::http::{ApiError, PathParam, QueryParams};
use crate::landing::escape;

pub fn router(console: Console) -> axum::Router {
    axum::Router::new()
        .route("/console", get(page))
        .route("/console/api/alerts", get(alerts))
        .route("/console/api/graphs", get(graphs))
        .route("/console/api/traces", get(trace_list))
        .route("/console/api/traces/{trace_id}", get(trace))
        .route("/console/api/logs", get(log_list))
        .with_state(console)
}

/// `GET /console/api/alerts`: every alert rule of the lab and its state.
#[derive(Debug, Serialize, utoipa::ToSchema)]
pub struct AlertsView {
    pub recording: bool,
    /// When the rules were last evaluated (ms since the epoch).
    pub evaluated_at_ms: Option<i64>,
    /// Series and samples in the metric history (bounded: 16 minutes of at most 5,000 series).
    pub history_series: usize,
    pub history_samples: usize,
    pub rules: Vec<RuleView>,
}

#[derive(Debug, Serialize, utoipa::ToSchema)]
pub struct RuleView {
    pub name: String,
    pub group: String,
    /// `inactive`, `pending` or `firing`: the most advanced of its alerts.
    pub state: &'static str,
    pub severity: Option<String>,
    pub expr: String,
    pub for_s: f64,
    pub summary: String,
    pub alerts: Vec<FiringAlert>,
    /// Why the last evaluation failed.
    pub error: Option<String>,
}

#[derive(Debug, Clone, Serialize, utoipa::ToSchema)]
pub struct FiringAlert {
    pub name: String,
    pub state: &'static str,
    /// Pending since (ms since the epoch).
    pub active_since_ms: i64,
    pub fired_since_ms: Option<i64>,
    pub value: Option<f64>,
    pub labels: BTreeMap<String, String>,
    pub summary: String,
    pub description: String,
}

pub fn alerts_view(rules: &[RuleState], evaluated_at_ms: Option<i64>, history: (usize, usize)) -> AlertsView {
    let rules = rules
        .iter()
        .map(|state| {
            let rule = state.rule();
            let alerts: Vec<FiringAlert> = state
                .alerts()
                .into_iter()
                .map(|a| FiringAlert {
                    name: rule.name.clone(),
                    state: match a.state {
                        AlertState::Pending => "pending",
                        AlertState::Firing => "firing",
                    },
                    active_since_ms: a.active_since_ms,
                    fired_since_ms: a.fired_since_ms,
                    value: a.value.is_finite().then_some(a.value),
                    summary: a.annotations.get("summary").cloned().unwrap_or_default(),
                    description: a.annotations.get("description").cloned().unwrap_or_default(),
                    labels: a.labels,
                })
                .collect();
            let state_name = if alerts.iter().any(|a| a.state == "firing") {
                "firing"
            } else if alerts.is_empty() {
                "inactive"
            } else {
                "pending"
            };
            RuleView {
                name: rule.name.clone(),
                group: rule.group.clone(),
                state: state_name,
                severity: rule.labels.get("severity").cloned(),
                expr: rule.expr_text.trim().to_string(),
                for_s: rule.for_ms as f64 / 1000.0,
                summary: alerts.first().map(|a| a.summary.clone()).unwrap_or_else(|| untemplated(rule)),
                alerts,
                error: state.last_error().map(str::to_string),
            }
        })
        .collect();
    AlertsView {
        recording: evaluated_at_ms.is_some(),
        evaluated_at_ms,
        history_series: history.0,
        history_samples: history.1,
        rules,
    }
}

/// A rule's summary before any alert filled its template in.
fn untemplated(rule: &super::alerts::Rule) -> String {
    let summary = rule.annotations.get("summary").cloned().unwrap_or_default();
    if summary.contains("{{") { String::new() } else { summary }
}

#[utoipa::path(
    get,
    path = "/console/api/alerts",
    tag = "console",
    responses((status = 200, description = "Every alert rule of the lab, its state and its alerts", body = AlertsView))
)]
pub(crate) async fn alerts(State(console): State<Console>) -> Json<AlertsView> {
    Json(console.alerts())
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct GraphQuery {
    minutes: Option<String>,
    step: Option<String>,
    id: Option<String>,
}

#[derive(Debug, Serialize, utoipa::ToSchema)]
pub struct GraphView {
    id: &'static str,
    title: &'static str,
    unit: &'static str,
    lines: Vec<LineView>,
}

#[derive(Debug, Serialize, utoipa::ToSchema)]
pub struct LineView {
    legend: String,
    /// `[seconds since the epoch, value]`, oldest first.
    #[schema(value_type = Vec<Vec<f64>>)]
    points: Vec<(i64, f64)>,
}

/// `GET /console/api/graphs`.
#[derive(Debug, Serialize, utoipa::ToSchema)]
pub struct GraphsBody {
    recording: bool,
    /// Seconds between points.
    step: i64,
    graphs: Vec<GraphView>,
}

/// `GET /console/api/traces`.
#[derive(Debug, Serialize, utoipa::ToSchema)]
pub struct TracesBody {
    recording: bool,
    /// Traces kept now, and their spans.
    kept: usize,
    spans: usize,
    jaeger_url: Option<String>,
    traces: Vec<traces::TraceSummary>,
}

/// `GET /console/api/traces/{trace_id}`.
#[derive(Debug, Serialize, utoipa::ToSchema)]
pub struct TraceBody {
    trace: traces::TraceDetail,
    /// The trace in Jaeger's UI, when `--jaeger-url` is set.
    jaeger: Option<String>,
}

/// `GET /console/api/logs`.
#[derive(Debug, Serialize, utoipa::ToSchema)]
pub struct LogsBody {
    recording: bool,
    logs: Vec<logs::LogRecord>,
}

/// A whole number in `range` from a query parameter, or a 400 that says what it may be.
fn bounded(
    value: Option<&str>,
    name: &str,
    range: std::ops::RangeInclusive<i64>,
    default: i64,
) -> Result<i64, ApiError> {
    let Some(text) = value else { return Ok(default) };
    match text.parse::<i64>() {
        Ok(n) if range.contains(&n) => Ok(n),
        _ => Err(ApiError::bad_request(format!(
            "{name} must be a whole number from {} to {}, not '{}'",
            range.start(),
            range.end(),
            text.chars().take(40).collect::<String>()
        ))),
    }
}

/// `GET /console/api/graphs?minutes=15&step=5[&id=latency]`: each graph's lines over
/// the last `minutes`, one point every `step` seconds.
#[utoipa::path(
    get,
    path = "/console/api/graphs",
    tag = "console",
    params(
        ("minutes" = Option<i64>, Query, minimum = 1, maximum = 15, description = "How far back, 1 to 15 (default 15)"),
        ("step" = Option<i64>, Query, minimum = 1, maximum = 60, description = "Seconds between points, 1 to 60 (default 5)"),
        ("id" = Option<String>, Query, description = "One graph only, e.g. latency"),
    ),
    responses(
        (status = 200, description = "Each graph's lines", body = GraphsBody),
        (status = 400, description = "minutes or step out of range", body = crate::openapi::ErrorBody),
        (status = 404, description = "No graph of that id", body = crate::openapi::ErrorBody),
        (status = 422, description = "An unknown parameter", body = crate::openapi::ErrorBody),
        (status = 503, description = "Other graph requests are being drawn; Retry-After says when to ask again", body = crate::openapi::ErrorBody),
    )
)]
pub(crate) async fn graphs(
    State(console): State<Console>,
    QueryParams(query): QueryParams<GraphQuery>,
) -> Result<Json<GraphsBody>, ApiError> {
    let minutes = bounded(query.minutes.as_deref(), "minutes", 1..=15, 15)?;
    let step = bounded(query.step.as_deref(), "step", 1..=60, 5)?;
    if let Some(id) = &query.id {
        let compiled = console.inner.graphs.read().unwrap_or_else(|p| p.into_inner());
        if !compiled.iter().any(|g| g.spec.id == id) {
            let known: Vec<&str> = compiled.iter().map(|g| g.spec.id).collect();
            let known = known.join(", ");
            return Err(ApiError::not_found(format!("no graph '{}'; the console has: {known}", escape(id))));
        }
    }
    let recording = console.recording();
    let Ok(_permit) = console.inner.drawing.clone().try_acquire_owned() else {
        return Err(ApiError::unavailable(format!(
            "{} graph requests are being drawn already; try again in a second",
            super::GRAPH_DRAWS
        ))
        .with_retry_after(1));
    };
    // Hundreds of evaluations over the history: off the runtime's threads.
    let views = tokio::task::spawn_blocking(move || draw(&console, query.id.as_deref(), minutes, step))
        .await
        .map_err(ApiError::internal)?;
    Ok(Json(GraphsBody { recording, step, graphs: views }))
}

/// Each graph (or the one named `id`) over the last `minutes`, a point every `step` s.
fn draw(console: &Console, id: Option<&str>, minutes: i64, step: i64) -> Vec<GraphView> {
    let compiled = console.inner.graphs.read().unwrap_or_else(|p| p.into_inner());
    let now = now_ms() / 1000 * 1000;
    let history = console.inner.history.read().unwrap_or_else(|p| p.into_inner());
    let mut views = Vec::new();
    for graph in compiled.iter().filter(|g| id.is_none_or(|id| g.spec.id == id)) {
        let mut lines: Vec<LineView> = Vec::new();
        let mut index: HashMap<String, usize> = HashMap::new();
        for (legend, expr) in &graph.lines {
            let mut at = now - minutes * 60_000;
            while at <= now {
                if let Ok(Value::Vector(samples)) = eval::evaluate(expr, &*history, at) {
                    for (labels, value) in samples.into_iter().filter(|(_, v)| v.is_finite()) {
                        let name = fill(legend, &labels);
                        let slot = *index.entry(name.clone()).or_insert_with(|| {
                            lines.push(LineView { legend: name, points: Vec::new() });
                            lines.len() - 1
                        });
                        lines[slot].points.push((at / 1000, value));
                    }
                }
                at += step * 1000;
            }
        }
        views.push(GraphView { id: graph.spec.id, title: graph.spec.title, unit: graph.spec.unit, lines });
    }
    views
}

/// A legend with each `{label}` replaced by the series' value of it.
fn fill(legend: &str, labels: &eval::Labels) -> String {
    let mut out = String::new();
    let mut rest = legend;
    while let Some(open) = rest.find('{') {
        out.push_str(&rest[..open]);
        let Some(close) = rest[open..].find('}') else { break };
        let name = &rest[open + 1..open + close];
        out.push_str(labels.get(name).map_or("", String::as_str));
        rest = &rest[open + close + 1..];
    }
    out.push_str(rest);
    out.trim().to_string()
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct TraceQuery {
    route: Option<String>,
    status: Option<String>,
    min_ms: Option<String>,
    /// `key=value`.
    attr: Option<String>,
    service: Option<String>,
    limit: Option<String>,
}

/// `GET /console/api/traces`: the newest traces, filtered.
#[utoipa::path(
    get,
    path = "/console/api/traces",
    tag = "console",
    params(
        ("route" = Option<String>, Query, description = "The root span's route, e.g. /vote"),
        ("status" = Option<String>, Query, pattern = "^([1-5][0-9][0-9]|[1-5]xx)?$", description = "A status (503) or a class (5xx)"),
        ("min_ms" = Option<f64>, Query, minimum = 0, description = "Only traces at least this long"),
        ("attr" = Option<String>, Query, pattern = "^([^=]+=.*)?$", description = "key=value some span carries, e.g. db.slow_query=true"),
        ("service" = Option<String>, Query, description = "Only traces with a span of this service"),
        ("limit" = Option<i64>, Query, minimum = 1, maximum = 500, description = "At most this many, 1 to 500 (default 100)"),
    ),
    responses(
        (status = 200, description = "The newest traces that pass the filter", body = TracesBody),
        (status = 400, description = "A filter that cannot be read", body = crate::openapi::ErrorBody),
        (status = 422, description = "An unknown parameter", body = crate::openapi::ErrorBody),
    )
)]
pub(crate) async fn trace_list(
    State(console): State<Console>,
    QueryParams(query): QueryParams<TraceQuery>,
) -> Result<Json<TracesBody>, ApiError> {
    let limit = bounded(query.limit.as_deref(), "limit", 1..=500, 100)? as usize;
    let status = match query.status.as_deref().filter(|s| !s.is_empty()) {
        None => None,
        Some(s)
            if s.len() == 3
                && (s.bytes().all(|b| b.is_ascii_digit()) || (s.as_bytes()[0].is_ascii_digit() && &s[1..] == "xx")) =>
        {
            Some(s.to_string())
        }
        Some(_) => return Err(ApiError::bad_request("status must be a status (503) or a class (5xx)")),
    };
    // An empty one is refused, as its schema (a number) says; the page leaves it out.
    let min_ms = match query.min_ms.as_deref() {
        None => None,
        Some(text) => match text.parse::<f64>() {
            Ok(ms) if ms.is_finite() && ms >= 0.0 => Some(ms),
            _ => return Err(ApiError::bad_request("min_ms must be a number of milliseconds, 0 or more")),
        },
    };
    let attribute = match query.attr.as_deref().filter(|s| !s.is_empty()) {
        None => None,
        Some(pair) => match pair.split_once('=') {
            Some((key, value)) if !key.is_empty() => Some((key.trim().to_string(), value.trim().to_string())),
            _ => return Err(ApiError::bad_request("attr must be key=value, e.g. db.slow_query=true")),
        },
    };
    let filter = traces::TraceFilter {
        route: query.route.filter(|r| !r.is_empty()),
        status,
        min_ms,
        attribute,
        service: query.service.filter(|s| !s.is_empty()),
    };
    let store = traces::store();
    let (kept, spans) = store.len();
    let found = store.list(&filter, limit);
    Ok(Json(TracesBody {
        recording: console.recording(),
        kept,
        spans,
        jaeger_url: console.jaeger_url().map(str::to_string),
        traces: found,
    }))
}

/// `GET /console/api/traces/{trace_id}`: one trace's spans, with its Jaeger link.
#[utoipa::path(
    get,
    path = "/console/api/traces/{trace_id}",
    tag = "console",
    params(("trace_id" = String, Path, pattern = "^[0-9a-fA-F]{32}$", description = "32 hexadecimal digits")),
    responses(
        (status = 200, description = "The trace's spans by start time", body = TraceBody),
        (status = 400, description = "Not a trace id", body = crate::openapi::ErrorBody),
        (status = 404, description = "Not among the traces kept", body = crate::openapi::ErrorBody),
    )
)]
pub(crate) async fn trace(
    State(console): State<Console>,
    PathParam(trace_id): PathParam<String>,
) -> Result<Json<TraceBody>, ApiError> {
    let hex = trace_id.len() == 32 && trace_id.bytes().all(|b| b.is_ascii_hexdigit());
    let id = hex.then(|| u128::from_str_radix(&trace_id, 16).ok()).flatten();
    let Some(id) = id else {
        return Err(ApiError::bad_request("a trace id is 32 hexadecimal digits"));
    };
    let Some(detail) = traces::store().get(id) else {
        return Err(ApiError::not_found("no such trace: the console keeps only the newest ones"));
    };
    let jaeger = console.jaeger_url().map(|base| format!("{base}/trace/{}", detail.trace_id));
    Ok(Json(TraceBody { trace: detail, jaeger }))
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct LogQuery {
    level: Option<String>,
    event: Option<String>,
    limit: Option<String>,
}

/// `GET /console/api/logs?level=warn&event=referral_cache_exhausted`.
#[utoipa::path(
    get,
    path = "/console/api/logs",
    tag = "console",
    params(
        ("level" = Option<String>, Query, pattern = "^(|error|warn|info|debug|trace|ERROR|WARN|INFO|DEBUG|TRACE)$", description = "This level or worse: error, warn, info, debug, trace"),
        ("event" = Option<String>, Query, description = "One event's name, e.g. referral_cache_exhausted"),
        ("limit" = Option<i64>, Query, minimum = 1, maximum = 500, description = "At most this many, 1 to 500 (default 200)"),
    ),
    responses(
        (status = 200, description = "The newest log events, newest first", body = LogsBody),
        (status = 400, description = "A level or limit that cannot be read", body = crate::openapi::ErrorBody),
        (status = 422, description = "An unknown parameter", body = crate::openapi::ErrorBody),
    )
)]
pub(crate) async fn log_list(
    State(console): State<Console>,
    QueryParams(query): QueryParams<LogQuery>,
) -> Result<Json<LogsBody>, ApiError> {
    let limit = bounded(query.limit.as_deref(), "limit", 1..=logs::CAPACITY as i64, 200)? as usize;
    let level = match query.level.as_deref().filter(|l| !l.is_empty()) {
        None => None,
        Some(text) => {
            let known = ["error", "warn", "info", "debug", "trace"];
            let lower = text.to_ascii_lowercase();
            let exact = text == lower || text == text.to_ascii_uppercase();
            match lower.parse::<tracing::Level>() {
                Ok(level) if exact && known.contains(&lower.as_str()) => Some(level),
                _ => return Err(ApiError::bad_request("level must be one of error, warn, info, debug, trace")),
            }
        }
    };
    let event = query.event.as_deref().filter(|e| !e.is_empty());
    let found = logs::store().list(level, event, limit);
    Ok(Json(LogsBody { recording: console.recording(), logs: found }))
}

/// `GET /console`: the page; its script fills it in.
async fn page(State(console): State<Console>) -> Html<String> {
    let off = if console.recording() {
        ""
    } else {
        "<p class=\"card console-off\" role=\"status\">Recording is off (<code>--console off</code>): \
         nothing is recorded. Start the lab without it to see its traces, graphs, alerts and logs.</p>"
    };
    let lab = escape(lock(&console.inner.sources).first().map(|s| s.job).unwrap_or("breakroom"));
    Html(format!(
        "<!doctype html>\n<html lang=\"en\">\n<head>\n<meta charset=\"utf-8\">\n\
         <meta name=\"viewport\" content=\"width=device-width, initial-scale=1\">\n\
         <meta name=\"color-scheme\" content=\"dark\">\n<title>breakroom · {lab} console</title>\n\
         <link rel=\"icon\" href=\"/static/favicon.svg\" type=\"image/svg+xml\">\n\
         <link rel=\"stylesheet\" href=\"/static/breakroom.css\">\n</head>\n<body class=\"page-console\">\n\
         <div class=\"taxi-stripe\" aria-hidden=\"true\"></div>\n\
         <header class=\"masthead console-head\"><span class=\"badge\" aria-hidden=\"true\">B</span>\
         <h1 class=\"title\">{lab} <span class=\"console-word\">console</span></h1>\
         <nav class=\"console-tabs\" aria-label=\"Console\">\
         <a href=\"#alerts\">Alerts</a><a href=\"#graphs\">Graphs</a><a href=\"#traces\">Traces</a><a href=\"#logs\">Logs</a>\
         <a href=\"?view=projector\" id=\"projector-link\">Projector</a></nav>\
         <span id=\"console-status\" class=\"console-status\" role=\"status\"></span></header>\n\
         <main class=\"console\">\n{off}\
         <section id=\"alerts\" class=\"console-panel\"><h2>Alerts</h2><div id=\"alert-list\"></div></section>\n\
         <section id=\"graphs\" class=\"console-panel\"><h2>Graphs <small>last 15 minutes</small></h2>\
         <div id=\"graph-list\" class=\"graph-list\"></div></section>\n\
         <section id=\"traces\" class=\"console-panel\"><h2>Traces</h2>\n\
         <form id=\"trace-filter\" class=\"console-filter\">\
         <label>Route <input name=\"route\" placeholder=\"/vote\"></label>\
         <label>Status <input name=\"status\" placeholder=\"5xx\" size=\"4\"></label>\
         <label>Slower than (ms) <input name=\"min_ms\" inputmode=\"decimal\" size=\"6\"></label>\
         <label>Attribute <input name=\"attr\" placeholder=\"db.slow_query=true\"></label>\
         <button class=\"button\" type=\"submit\">Filter</button></form>\n\
         <p id=\"trace-error\" class=\"console-error\" role=\"alert\" hidden></p>\
         <div id=\"trace-list\" class=\"scroll-region\" tabindex=\"0\" role=\"region\" aria-label=\"Traces\"></div><div id=\"trace-detail\" class=\"waterfall\"></div></section>\n\
         <section id=\"logs\" class=\"console-panel\"><h2>Logs</h2>\n\
         <form id=\"log-filter\" class=\"console-filter\">\
         <label>Level <select name=\"level\"><option value=\"\">any</option><option>error</option>\
         <option>warn</option><option>info</option></select></label>\
         <label>Event <input name=\"event\" placeholder=\"referral_cache_exhausted\"></label>\
         <button class=\"button\" type=\"submit\">Filter</button></form>\n\
         <div id=\"log-list\" class=\"scroll-region\" tabindex=\"0\" role=\"region\" aria-label=\"Log events\"></div></section>\n\
         </main>\n<script src=\"/static/console.js\" defer></script>\n\
         <div class=\"taxi-stripe\" aria-hidden=\"true\"></div>\n</body>\n</html>\n"
    ))
}
