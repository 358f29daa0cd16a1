//! Traces of the shop's four services. Each service has a tracer provider of its own
//! (`service.name` product-catalog, cart, checkout, payment) even when one process runs
//! all four, and checkout passes W3C `traceparent` on its calls, so one checkout is one
//! trace across the services.

use std::time::{SystemTime, UNIX_EPOCH};

use axum::extract::{MatchedPath, Request, State};
use axum::middleware::Next;
use axum::response::Response;
use opentelemetry::propagation::TextMapPropagator;
use opentelemetry::trace::{SpanKind, Status, TraceContextExt, Tracer as _, TracerProvider as _};
use opentelemetry::{Context, KeyValue};
use opentelemetry_sdk::propagation::TraceContextPropagator;
use opentelemetry_sdk::trace::{SdkTracer, SdkTracerProvider};

use crate::timeline::phase_at_minute;

/// One service's tracer, and the demo clock its spans are stamped with.
#[derive(Clone)]
pub struct ServiceTrace {
    pub service: &'static str,
    tracer: SdkTracer,
    /// `DEMO_START_TIMESTAMP` (Unix seconds), when a demo run set it.
    demo_start: Option<i64>,
}

/// The trace context of the request being handled, for the handler's own spans.
#[derive(Clone)]
pub struct RequestTrace(pub Context);

impl RequestTrace {
    pub fn set(&self, attributes: impl IntoIterator<Item = KeyValue>) {
        let span = self.0.span();
        for attribute in attributes {
            span.set_attribute(attribute);
        }
    }

    pub fn event(&self, name: &'static str, attributes: Vec<KeyValue>) {
        self.0.span().add_event(name, attributes);
    }

    pub fn trace_id(&self) -> String {
        self.0.span().span_context().trace_id().to_string()
    }
}

impl ServiceTrace {
    pub fn new(service: &'static str, provider: &SdkTracerProvider, demo_start: Option<i64>) -> Self {
        ServiceTrace { service, tracer: provider.tracer("breakroom-shop"), demo_start }
    }

    /// A child span of `parent`; end it with `span().end()` on the returned context.
    pub fn child(&self, parent: &RequestTrace, name: &'static str, kind: SpanKind) -> RequestTrace {
        let span = self.tracer.span_builder(name).with_kind(kind).start_with_context(&self.tracer, &parent.0);
        RequestTrace(parent.0.with_span(span))
    }

    /// The demo minute and phase, from `DEMO_START_TIMESTAMP`: labels only. Faults
    /// come from the real actions (indexes dropped, pool resized), never from the minute.
    fn demo_attributes(&self) -> Vec<KeyValue> {
        let Some(start) = self.demo_start else { return Vec::new() };
        let now = SystemTime::now().duration_since(UNIX_EPOCH).map(|d| d.as_secs() as i64).unwrap_or(start);
        let minute = (now - start).max(0) / 60;
        vec![KeyValue::new("demo.minute", minute), KeyValue::new("service.demo_phase", phase_at_minute(minute as f64))]
    }
}

/// The server span of every routed request, continuing the caller's trace.
pub async fn server_span(State(trace): State<ServiceTrace>, mut request: Request, next: Next) -> Response {
    let route = request.extensions().get::<MatchedPath>().map(|m| m.as_str().to_owned()).unwrap_or_default();
    let method = request.method().as_str().to_owned();
    let parent = TraceContextPropagator::new().extract(&opentelemetry_http::HeaderExtractor(request.headers()));
    let mut attributes = vec![
        KeyValue::new("http.request.method", method.clone()),
        KeyValue::new("http.route", route.clone()),
        KeyValue::new("service.name", trace.service),
    ];
    attributes.extend(trace.demo_attributes());
    let span = trace
        .tracer
        .span_builder(format!("{method} {route}"))
        .with_kind(SpanKind::Server)
        .with_attributes(attributes)
        .start_with_context(&trace.tracer, &parent);
    let context = parent.with_span(span);
    request.extensions_mut().insert(RequestTrace(context.clone()));
    let response = next.run(request).await;
    let status = response.status().as_u16();
    let span = context.span();
    span.set_attribute(KeyValue::new("http.response.status_code", i64::from(status)));
    if status >= 500 {
        span.set_status(Status::error(format!("HTTP {status}")));
    }
    span.end();
    response
}

/// Adds `traceparent` for `context` to an outgoing request's headers.
pub fn inject(context: &RequestTrace, headers: &mut axum::http::HeaderMap) {
    TraceContextPropagator::new().inject_context(&context.0, &mut opentelemetry_http::HeaderInjector(headers));
}
