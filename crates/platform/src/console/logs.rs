//! The console's logs: the last few hundred events the process logged (what the JSON
//! lines on stdout say), each with the trace it happened in.

use std::collections::VecDeque;
use std::sync::{Mutex, OnceLock};

use serde::Serialize;
use serde_json::{Map, Value as Json};
use tracing::field::{Field, Visit};
use tracing_subscriber::layer::Context;
use tracing_subscriber::registry::LookupSpan;

/// Events kept, newest first.
pub const CAPACITY: usize = 500;
/// Characters kept of a field's text.
const FIELD_CHARS: usize = 500;

#[derive(Debug, Clone, Serialize, utoipa::ToSchema)]
pub struct LogRecord {
    /// RFC 3339.
    pub at: String,
    pub level: &'static str,
    pub target: String,
    /// The event's name: its message, e.g. `referral_cache_exhausted`.
    pub event: String,
    #[schema(value_type = Object)]
    pub fields: Map<String, Json>,
    /// The trace the event happened in (32 hex digits), when it was traced.
    pub trace_id: Option<String>,
}

/// The newest log events of the process.
pub struct LogStore {
    ring: Mutex<VecDeque<LogRecord>>,
}

impl LogStore {
    const fn new() -> LogStore {
        LogStore { ring: Mutex::new(VecDeque::new()) }
    }

    fn push(&self, record: LogRecord) {
        let mut ring = self.ring.lock().unwrap_or_else(|p| p.into_inner());
        if ring.len() >= CAPACITY {
            ring.pop_front();
        }
        ring.push_back(record);
    }

    /// The newest events at `level` or worse (any when `None`), named `event` when
    /// given, at most `limit`.
    pub fn list(&self, level: Option<tracing::Level>, event: Option<&str>, limit: usize) -> Vec<LogRecord> {
        let ring = self.ring.lock().unwrap_or_else(|p| p.into_inner());
        ring.iter()
            .rev()
            .filter(|r| level.is_none_or(|wanted| r.level.parse::<tracing::Level>().is_ok_and(|l| l <= wanted)))
            .filter(|r| event.is_none_or(|e| r.event == e))
            .take(limit)
            .cloned()
            .collect()
    }
}

pub fn store() -> &'static LogStore {
    static STORE: LogStore = LogStore::new();
    &STORE
}

/// The subscriber this layer is part of: how an event's span finds its trace id
/// (asking for the current dispatcher from inside it gets the no-op one). Set once the
/// subscriber is installed ([`remember_dispatch`]): a boxed subscriber does not pass
/// `on_register_dispatch` on to its layers.
static DISPATCH: OnceLock<tracing::dispatcher::WeakDispatch> = OnceLock::new();

/// Remembers the process's subscriber, once it is the global default.
pub fn remember_dispatch() {
    tracing::dispatcher::get_default(|dispatch| {
        let _ = DISPATCH.set(dispatch.downgrade());
    });
}

/// The subscriber's layer that copies each event into [`store`].
#[derive(Default)]
pub struct LogLayer;

impl<S> tracing_subscriber::Layer<S> for LogLayer
where
    S: tracing::Subscriber + for<'a> LookupSpan<'a>,
{
    fn on_event(&self, event: &tracing::Event<'_>, ctx: Context<'_, S>) {
        let mut fields = Fields(Map::new());
        event.record(&mut fields);
        let mut fields = fields.0;
        let message = match fields.remove("message") {
            Some(Json::String(message)) => message,
            Some(other) => other.to_string(),
            None => String::new(),
        };
        let explicit = match fields.get("trace_id") {
            Some(Json::String(id)) if id.len() == 32 => Some(id.clone()),
            _ => None,
        };
        let trace_id = explicit.or_else(|| {
            let span = ctx.event_span(event)?;
            let dispatch = DISPATCH.get()?.upgrade()?;
            let context = tracing_opentelemetry::get_otel_context(&span.id(), &dispatch)?;
            use opentelemetry::trace::TraceContextExt as _;
            let span_context = context.span().span_context().clone();
            span_context.is_valid().then(|| span_context.trace_id().to_string())
        });
        let metadata = event.metadata();
        store().push(LogRecord {
            at: crate::clock::now(),
            level: metadata.level().as_str(),
            target: metadata.target().to_string(),
            event: message,
            fields,
            trace_id,
        });
    }
}

struct Fields(Map<String, Json>);

impl Visit for Fields {
    fn record_f64(&mut self, field: &Field, value: f64) {
        let value = serde_json::Number::from_f64(value).map_or(Json::Null, Json::Number);
        self.0.insert(field.name().into(), value);
    }

    fn record_i64(&mut self, field: &Field, value: i64) {
        self.0.insert(field.name().into(), value.into());
    }

    fn record_u64(&mut self, field: &Field, value: u64) {
        self.0.insert(field.name().into(), value.into());
    }

    fn record_bool(&mut self, field: &Field, value: bool) {
        self.0.insert(field.name().into(), value.into());
    }

    fn record_str(&mut self, field: &Field, value: &str) {
        self.0.insert(field.name().into(), value.chars().take(FIELD_CHARS).collect::<String>().into());
    }

    fn record_debug(&mut self, field: &Field, value: &dyn std::fmt::Debug) {
        let text: String = format!("{value:?}").chars().take(FIELD_CHARS).collect();
        self.0.insert(field.name().into(), text.into());
    }
}
