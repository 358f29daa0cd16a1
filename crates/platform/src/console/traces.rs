//! The console's traces: the process's newest spans, grouped by trace in a ring of
//! bounded size. An OpenTelemetry span processor feeds it beside the OTLP exporter, so
//! a trace here has the id Jaeger shows for it.

use std::collections::{HashMap, VecDeque};
use std::sync::Mutex;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use opentelemetry::trace::Status;
use opentelemetry::{KeyValue, Value};
use opentelemetry_sdk::error::OTelSdkResult;
use opentelemetry_sdk::trace::{SpanData, SpanProcessor};
use serde::Serialize;
use serde_json::{Map, Value as Json};

use super::SPANS_PER_TRACE;

/// Attributes kept per span or event; the seeds' spans have fewer than 15.
const ATTRIBUTES: usize = 32;
/// Characters kept of a text attribute (a query, a key).
const VALUE_CHARS: usize = 300;
/// Events kept per span.
const EVENTS: usize = 16;

/// One finished span as the console shows it.
#[derive(Debug, Clone, Serialize, utoipa::ToSchema)]
pub struct SpanRecord {
    pub span_id: String,
    /// The parent's id; absent for a trace's root (a remote parent is kept).
    pub parent_id: Option<String>,
    pub name: String,
    pub service: String,
    pub kind: &'static str,
    /// Microseconds since the Unix epoch.
    pub start_us: u64,
    pub duration_us: u64,
    /// The status's description when the span failed.
    pub error: Option<String>,
    #[schema(value_type = Object)]
    pub attributes: Map<String, Json>,
    pub events: Vec<EventRecord>,
}

#[derive(Debug, Clone, Serialize, utoipa::ToSchema)]
pub struct EventRecord {
    pub at_us: u64,
    pub name: String,
    #[schema(value_type = Object)]
    pub attributes: Map<String, Json>,
}

struct Trace {
    spans: Vec<SpanRecord>,
    /// Spans past [`SPANS_PER_TRACE`], counted not kept.
    dropped: usize,
}

#[derive(Default)]
struct Ring {
    /// Trace ids by first span seen, oldest first.
    order: VecDeque<u128>,
    traces: HashMap<u128, Trace>,
}

/// The newest traces of the process.
pub struct TraceStore {
    capacity: AtomicUsize,
    ring: Mutex<Ring>,
}

/// A trace in the console's list.
#[derive(Debug, Clone, Serialize, utoipa::ToSchema)]
pub struct TraceSummary {
    pub trace_id: String,
    /// The root span's name, e.g. `POST /vote`.
    pub name: String,
    pub service: String,
    pub route: Option<String>,
    pub status: Option<i64>,
    pub start_us: u64,
    pub duration_ms: f64,
    pub spans: usize,
    /// Whether any span failed.
    pub error: bool,
}

/// A trace whole: its spans by start time.
#[derive(Debug, Clone, Serialize, utoipa::ToSchema)]
pub struct TraceDetail {
    pub trace_id: String,
    pub spans: Vec<SpanRecord>,
    pub dropped_spans: usize,
}

/// What the list is filtered by; every part given must hold.
#[derive(Debug, Default, Clone)]
pub struct TraceFilter {
    pub route: Option<String>,
    /// A status (`503`) or a class (`5xx`).
    pub status: Option<String>,
    pub min_ms: Option<f64>,
    /// `key=value`: some span has the attribute with that value (as text).
    pub attribute: Option<(String, String)>,
    pub service: Option<String>,
}

impl TraceStore {
    pub fn new(capacity: usize) -> TraceStore {
        TraceStore {
            capacity: AtomicUsize::new(capacity),
            ring: Mutex::new(Ring { order: VecDeque::new(), traces: HashMap::new() }),
        }
    }

    pub fn set_capacity(&self, capacity: usize) {
        self.capacity.store(capacity.max(1), Ordering::Relaxed);
    }

    fn ring(&self) -> std::sync::MutexGuard<'_, Ring> {
        self.ring.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Keeps one finished span in its trace, making room by forgetting the oldest trace.
    pub fn record(&self, trace_id: u128, span: SpanRecord) {
        let capacity = self.capacity.load(Ordering::Relaxed);
        let mut ring = self.ring();
        let ring = &mut *ring;
        match ring.traces.get_mut(&trace_id) {
            Some(trace) if trace.spans.len() >= SPANS_PER_TRACE => trace.dropped += 1,
            Some(trace) => trace.spans.push(span),
            None => {
                while ring.order.len() >= capacity {
                    let Some(oldest) = ring.order.pop_front() else { break };
                    ring.traces.remove(&oldest);
                }
                ring.order.push_back(trace_id);
                ring.traces.insert(trace_id, Trace { spans: vec![span], dropped: 0 });
            }
        }
    }

    /// Traces kept now, and their spans.
    pub fn len(&self) -> (usize, usize) {
        let ring = self.ring();
        (ring.order.len(), ring.traces.values().map(|t| t.spans.len()).sum())
    }

    /// The newest traces that pass `filter`, at most `limit`.
    pub fn list(&self, filter: &TraceFilter, limit: usize) -> Vec<TraceSummary> {
        let ring = self.ring();
        let mut found = Vec::new();
        for id in ring.order.iter().rev() {
            if found.len() >= limit {
                break;
            }
            let Some(trace) = ring.traces.get(id) else { continue };
            let summary = summarize(*id, trace);
            if passes(filter, &summary, trace) {
                found.push(summary);
            }
        }
        found
    }

    pub fn get(&self, trace_id: u128) -> Option<TraceDetail> {
        let ring = self.ring();
        let trace = ring.traces.get(&trace_id)?;
        let mut spans = trace.spans.clone();
        spans.sort_by_key(|s| s.start_us);
        Some(TraceDetail { trace_id: format!("{trace_id:032x}"), spans, dropped_spans: trace.dropped })
    }
}

/// The root: the span whose parent is not in the trace (the earliest such).
fn root(trace: &Trace) -> Option<&SpanRecord> {
    let ids: std::collections::HashSet<&str> = trace.spans.iter().map(|s| s.span_id.as_str()).collect();
    trace.spans.iter().filter(|s| s.parent_id.as_deref().is_none_or(|p| !ids.contains(p))).min_by_key(|s| s.start_us)
}

fn summarize(id: u128, trace: &Trace) -> TraceSummary {
    let start = trace.spans.iter().map(|s| s.start_us).min().unwrap_or(0);
    let end = trace.spans.iter().map(|s| s.start_us + s.duration_us).max().unwrap_or(start);
    let root = root(trace);
    let attribute = |key: &str| root.and_then(|r| r.attributes.get(key));
    TraceSummary {
        trace_id: format!("{id:032x}"),
        name: root.map(|r| r.name.clone()).unwrap_or_default(),
        service: root.map(|r| r.service.clone()).unwrap_or_default(),
        route: attribute("http.route").and_then(Json::as_str).map(str::to_string),
        status: attribute("http.response.status_code").and_then(Json::as_i64),
        start_us: start,
        duration_ms: (end - start) as f64 / 1000.0,
        spans: trace.spans.len(),
        error: trace.spans.iter().any(|s| s.error.is_some()),
    }
}

fn passes(filter: &TraceFilter, summary: &TraceSummary, trace: &Trace) -> bool {
    if filter.route.as_ref().is_some_and(|r| summary.route.as_ref() != Some(r)) {
        return false;
    }
    if filter.service.as_ref().is_some_and(|s| !trace.spans.iter().any(|span| &span.service == s)) {
        return false;
    }
    if let Some(wanted) = &filter.status {
        let status = summary.status.map(|s| s.to_string()).unwrap_or_default();
        let class = wanted.strip_suffix("xx").filter(|c| c.len() == 1);
        let matches = match class {
            Some(class) => status.len() == 3 && status.starts_with(class),
            None => &status == wanted,
        };
        if !matches {
            return false;
        }
    }
    if filter.min_ms.is_some_and(|min| summary.duration_ms < min) {
        return false;
    }
    if let Some((key, value)) = &filter.attribute {
        let has = |attributes: &Map<String, Json>| attributes.get(key).is_some_and(|v| text(v) == *value);
        if !trace.spans.iter().any(|s| has(&s.attributes) || s.events.iter().any(|e| has(&e.attributes))) {
            return false;
        }
    }
    true
}

/// An attribute's value as a filter compares it: strings bare, the rest as JSON.
fn text(value: &Json) -> String {
    match value {
        Json::String(s) => s.clone(),
        other => other.to_string(),
    }
}

/// How many new traces a second the console starts, like Jaeger's rate-limiting
/// sampler: a request past the second's budget is counted and logged as ever, but not
/// traced, so a flood of requests costs the lab almost nothing (a span costs a request
/// more than its handler does). 0: every request (as with an OTLP collector, which
/// wants them all).
static TRACES_PER_SECOND: AtomicU64 = AtomicU64::new(super::DEFAULT_TRACE_RATE as u64);
/// The current second (since the epoch) and how many traces it started, in one word:
/// second << 20 | started.
static THIS_SECOND: AtomicU64 = AtomicU64::new(0);

pub fn set_rate(traces_per_second: u32) {
    TRACES_PER_SECOND.store(traces_per_second.into(), Ordering::Relaxed);
}

/// Whether a new trace may start now (and counts it when it may).
pub fn admit() -> bool {
    let rate = TRACES_PER_SECOND.load(Ordering::Relaxed);
    if rate == 0 {
        return true;
    }
    let second = SystemTime::now().duration_since(UNIX_EPOCH).map(|d| d.as_secs()).unwrap_or(0);
    let mut current = THIS_SECOND.load(Ordering::Relaxed);
    loop {
        let (at, started) = (current >> 20, current & 0xF_FFFF);
        let next = if at == second { started + 1 } else { 1 };
        if at == second && started >= rate.min(0xF_FFFF) {
            return false;
        }
        match THIS_SECOND.compare_exchange_weak(current, second << 20 | next, Ordering::Relaxed, Ordering::Relaxed) {
            Ok(_) => return true,
            Err(actual) => current = actual,
        }
    }
}

thread_local! {
    /// Set while a request the budget refused is being handled on this thread: the
    /// spans its handler would open are not made either.
    static UNTRACED: std::cell::Cell<bool> = const { std::cell::Cell::new(false) };
}

/// Marks this thread as handling an untraced request (or not) until dropped.
pub struct Untraced(bool);

impl Untraced {
    pub fn enter(untraced: bool) -> Untraced {
        Untraced(UNTRACED.replace(untraced))
    }
}

impl Drop for Untraced {
    fn drop(&mut self) {
        UNTRACED.set(self.0);
    }
}

/// The subscriber's global filter that turns off the spans of an untraced request.
/// Asked at every span (its answer depends on the request), never at events.
pub struct SkipUntraced;

impl<S: tracing::Subscriber> tracing_subscriber::Layer<S> for SkipUntraced {
    fn register_callsite(&self, metadata: &'static tracing::Metadata<'static>) -> tracing::subscriber::Interest {
        if metadata.is_span() {
            tracing::subscriber::Interest::sometimes()
        } else {
            tracing::subscriber::Interest::always()
        }
    }

    fn enabled(&self, metadata: &tracing::Metadata<'_>, _: tracing_subscriber::layer::Context<'_, S>) -> bool {
        !metadata.is_span() || !UNTRACED.get()
    }
}

/// The same budget for services that make their spans with OpenTelemetry itself (the
/// shop): a root span is sampled when [`admit`] says so; a child follows its parent.
#[derive(Debug, Clone)]
pub struct BudgetSampler;

impl opentelemetry_sdk::trace::ShouldSample for BudgetSampler {
    fn should_sample(
        &self,
        _parent: Option<&opentelemetry::Context>,
        _trace_id: opentelemetry::trace::TraceId,
        _name: &str,
        _kind: &opentelemetry::trace::SpanKind,
        _attributes: &[KeyValue],
        _links: &[opentelemetry::trace::Link],
    ) -> opentelemetry_sdk::trace::SamplingResult {
        use opentelemetry_sdk::trace::SamplingDecision;
        let decision = if admit() { SamplingDecision::RecordAndSample } else { SamplingDecision::Drop };
        opentelemetry_sdk::trace::SamplingResult { decision, attributes: Vec::new(), trace_state: Default::default() }
    }
}

/// The process's trace store; its capacity is set once telemetry starts.
pub fn store() -> &'static TraceStore {
    static STORE: std::sync::LazyLock<TraceStore> = std::sync::LazyLock::new(|| TraceStore::new(super::DEFAULT_TRACES));
    &STORE
}

/// Copies every span a tracer provider ends into [`store`].
#[derive(Debug, Default)]
pub struct RingProcessor {
    service: String,
}

impl SpanProcessor for RingProcessor {
    fn on_start(&self, _span: &mut opentelemetry_sdk::trace::Span, _cx: &opentelemetry::Context) {}

    fn on_end(&self, span: SpanData) {
        let context = &span.span_context;
        let trace_id = u128::from_be_bytes(context.trace_id().to_bytes());
        let parent = span.parent_span_id;
        let record = SpanRecord {
            span_id: format!("{}", context.span_id()),
            parent_id: (parent != opentelemetry::trace::SpanId::INVALID).then(|| parent.to_string()),
            name: span.name.to_string(),
            service: self.service.clone(),
            kind: match span.span_kind {
                opentelemetry::trace::SpanKind::Server => "server",
                opentelemetry::trace::SpanKind::Client => "client",
                opentelemetry::trace::SpanKind::Producer => "producer",
                opentelemetry::trace::SpanKind::Consumer => "consumer",
                opentelemetry::trace::SpanKind::Internal => "internal",
            },
            start_us: micros(span.start_time),
            duration_us: span.end_time.duration_since(span.start_time).unwrap_or(Duration::ZERO).as_micros() as u64,
            error: match &span.status {
                Status::Error { description } => Some(description.to_string()),
                _ => None,
            },
            attributes: attributes(&span.attributes),
            events: span
                .events
                .events
                .iter()
                .take(EVENTS)
                .map(|e| EventRecord {
                    at_us: micros(e.timestamp),
                    name: e.name.to_string(),
                    attributes: attributes(&e.attributes),
                })
                .collect(),
        };
        store().record(trace_id, record);
    }

    fn force_flush(&self) -> OTelSdkResult {
        Ok(())
    }

    fn shutdown_with_timeout(&self, _timeout: Duration) -> OTelSdkResult {
        Ok(())
    }

    fn set_resource(&mut self, resource: &opentelemetry_sdk::Resource) {
        if let Some(name) = resource.get(&opentelemetry::Key::new("service.name")) {
            self.service = name.to_string();
        }
    }
}

fn micros(at: SystemTime) -> u64 {
    at.duration_since(UNIX_EPOCH).unwrap_or(Duration::ZERO).as_micros() as u64
}

fn attributes(pairs: &[KeyValue]) -> Map<String, Json> {
    pairs.iter().take(ATTRIBUTES).map(|kv| (kv.key.to_string(), json(&kv.value))).collect()
}

fn json(value: &Value) -> Json {
    match value {
        Value::Bool(b) => Json::Bool(*b),
        Value::I64(n) => Json::from(*n),
        Value::F64(x) => serde_json::Number::from_f64(*x).map_or(Json::Null, Json::Number),
        other => Json::String(other.as_str().chars().take(VALUE_CHARS).collect()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn span(id: &str, parent: Option<&str>, start_us: u64, attributes: &[(&str, Json)]) -> SpanRecord {
        SpanRecord {
            span_id: id.into(),
            parent_id: parent.map(str::to_string),
            name: format!("span {id}"),
            service: "vote-api".into(),
            kind: "server",
            start_us,
            duration_us: 1000,
            error: None,
            attributes: attributes.iter().map(|(k, v)| (k.to_string(), v.clone())).collect(),
            events: Vec::new(),
        }
    }

    #[test]
    fn the_budget_admits_its_rate_a_second_and_everything_at_zero() {
        set_rate(3);
        let admitted = (0..10).filter(|_| admit()).count();
        // Three a second; a second boundary during the loop may admit three more.
        assert!(admitted == 3 || admitted == 6, "{admitted}");
        set_rate(0);
        assert!((0..10).all(|_| admit()));
        set_rate(crate::console::DEFAULT_TRACE_RATE);
    }

    #[test]
    fn the_ring_forgets_the_oldest_trace_and_caps_each_trace() {
        let store = TraceStore::new(3);
        for trace in 1..=5u128 {
            store.record(trace, span("a", None, trace as u64, &[]));
        }
        let kept: Vec<String> = store.list(&TraceFilter::default(), 10).into_iter().map(|t| t.trace_id).collect();
        assert_eq!(kept, [5u128, 4, 3].map(|t| format!("{t:032x}")));
        for n in 0..SPANS_PER_TRACE + 5 {
            store.record(5, span(&format!("c{n}"), Some("a"), 10, &[]));
        }
        let trace = store.get(5).unwrap();
        assert_eq!((trace.spans.len(), trace.dropped_spans), (SPANS_PER_TRACE, 6));
    }

    #[test]
    fn the_list_filters_by_route_status_class_duration_and_attribute() {
        let store = TraceStore::new(10);
        let root =
            |status: i64| [("http.route", Json::from("/vote")), ("http.response.status_code", Json::from(status))];
        store.record(1, span("r1", None, 0, &root(200)));
        store.record(2, span("r2", None, 0, &root(503)));
        store.record(2, span("c2", Some("r2"), 10, &[("referral.cache.exhausted", Json::Bool(true))]));
        let ids = |filter: TraceFilter| -> Vec<String> {
            store.list(&filter, 10).into_iter().map(|t| t.trace_id[30..].to_string()).collect()
        };
        assert_eq!(ids(TraceFilter { status: Some("5xx".into()), ..Default::default() }), ["02"]);
        assert_eq!(ids(TraceFilter { status: Some("200".into()), ..Default::default() }), ["01"]);
        assert_eq!(ids(TraceFilter { route: Some("/health".into()), ..Default::default() }), Vec::<String>::new());
        let attribute = Some(("referral.cache.exhausted".into(), "true".into()));
        assert_eq!(ids(TraceFilter { attribute, ..Default::default() }), ["02"]);
        assert_eq!(ids(TraceFilter { min_ms: Some(1.005), ..Default::default() }), ["02"], "r2 and c2 span 1.01 ms");
        let summary = &store.list(&TraceFilter::default(), 1)[0];
        assert_eq!((summary.name.as_str(), summary.spans, summary.status), ("span r2", 2, Some(503)));
    }
}
