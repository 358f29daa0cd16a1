//! The request pipeline: one hand-written layer that counts, times, logs and traces
//! each request, answers a panic or a deadline, and adds the security headers.

use std::convert::Infallible;
use std::pin::Pin;
use std::task::{Context, Poll};

use axum::extract::{MatchedPath, Request};
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};

use super::*;
use crate::telemetry::{HttpMetrics, SmallMap};

/// A request slower than this is logged at info even when it succeeded.
const SLOW_REQUEST: std::time::Duration = std::time::Duration::from_millis(500);

/// How long any request may take until its response starts (event streams start at once).
pub const REQUEST_TIMEOUT: std::time::Duration = std::time::Duration::from_secs(30);

/// The layer every lab's requests pass through: refuses oversized headers (431),
/// counts, times and logs each request labelled by its route template, answers one
/// that takes too long or panics, and adds the security headers. One layer written
/// out rather than one middleware per concern: every layer costs every request a
/// clone of the route and a boxed future.
#[derive(Clone)]
pub struct Observe(std::sync::Arc<HttpMetrics>);

impl Observe {
    pub fn new(metrics: HttpMetrics) -> Observe {
        Observe(std::sync::Arc::new(metrics))
    }
}

impl<S> tower::Layer<S> for Observe {
    type Service = Observed<S>;

    fn layer(&self, inner: S) -> Observed<S> {
        Observed { inner, metrics: self.0.clone() }
    }
}

/// A route behind [`Observe`].
#[derive(Clone)]
pub struct Observed<S> {
    inner: S,
    metrics: std::sync::Arc<HttpMetrics>,
}

impl<S> tower::Service<Request> for Observed<S>
where
    S: tower::Service<Request, Response = Response, Error = Infallible> + Clone + Send + 'static,
    S::Future: Unpin + Send + 'static,
{
    type Response = Response;
    type Error = Infallible;
    type Future = Observing<S::Future>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, request: Request) -> Self::Future {
        let started = tokio::time::Instant::now();
        let endpoint = endpoint_label(request.extensions().get::<MatchedPath>(), request.uri().path());
        let method = method_label(request.method());
        // The scrape is Prometheus's, not the lab's: neither timed out nor counted.
        let scrape = endpoint == "/metrics";
        // Nor traced are the console's own questions (its page polls every few seconds)
        // and the static files (labelled `/static`): the trace list is the lab's traffic.
        let console = endpoint.starts_with("/console");
        let untraced = scrape || console || endpoint == "/static";
        // Past the console's budget of new traces a second, a request is not traced
        // (asked only when spans are made at all: the budget is for traces).
        let traced = !untraced && tracing::span_enabled!(tracing::Level::INFO) && crate::console::traces::admit();
        let span = if !traced {
            tracing::Span::none()
        } else {
            tracing::info_span!(
                "request",
                otel.name = format!("{method} {endpoint}"),
                otel.kind = "server",
                http.request.method = method,
                http.route = endpoint,
                http.response.status_code = tracing::field::Empty,
                otel.status_code = tracing::field::Empty,
            )
        };
        if !span.is_disabled() {
            set_remote_parent(&span, request.headers());
        }
        // A route answers from a future of its own (it is ready whenever asked), so the
        // request goes in now and no clone of the route is kept.
        let answer = match oversized_headers(request.headers()) {
            Some(refusal) => Err(Some(refusal)),
            None => Ok(self.inner.call(request)),
        };
        Observing {
            untraced: !traced,
            answer,
            deadline: (!scrape).then(|| started + REQUEST_TIMEOUT),
            timer: None,
            span,
            // Nor is the console's polling counted: an open console would dilute the
            // lab's error rate and put its graph draws into the lab's latency alert.
            metrics: (!scrape && !console).then(|| self.metrics.clone()),
            method,
            endpoint,
            started,
        }
    }
}

/// A request on its way through [`Observed`]: the route's answer, or a 500 if its
/// handler panicked, or a 503 at the deadline; then the security headers, the metrics
/// and the access log. Written out rather than as an `async` block, so a request costs
/// no allocation of its own (the timer too is made only once an answer has to wait).
pub struct Observing<F> {
    /// Not traced: the spans its handler would open are not made either.
    untraced: bool,
    /// The route's answer, or the refusal given before the route was asked.
    answer: Result<F, Option<ApiError>>,
    deadline: Option<tokio::time::Instant>,
    timer: Option<Pin<Box<tokio::time::Sleep>>>,
    span: tracing::Span,
    /// `None` for what is not counted (the scrape, the console).
    metrics: Option<std::sync::Arc<HttpMetrics>>,
    method: &'static str,
    endpoint: &'static str,
    started: tokio::time::Instant,
}

impl<F> Future for Observing<F>
where
    F: Future<Output = Result<Response, Infallible>> + Unpin,
{
    type Output = Result<Response, Infallible>;

    fn poll(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        let this = &mut *self;
        let mut response = match &mut this.answer {
            Err(refusal) => refusal
                .take()
                .map_or_else(|| StatusCode::INTERNAL_SERVER_ERROR.into_response(), IntoResponse::into_response),
            Ok(answer) => {
                let polled = {
                    let _entered = this.span.enter();
                    let _untraced = crate::console::traces::Untraced::enter(this.untraced);
                    std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| Pin::new(answer).poll(cx)))
                };
                match polled {
                    Ok(Poll::Ready(Ok(response))) => response,
                    Ok(Poll::Ready(Err(never))) => match never {},
                    // The connection and the process carry on; the 500 is counted and logged.
                    Err(_) => ApiError::internal(anyhow::anyhow!("a request handler panicked")).into_response(),
                    Ok(Poll::Pending) => {
                        let Some(deadline) = this.deadline else { return Poll::Pending };
                        let timer = this.timer.get_or_insert_with(|| Box::pin(tokio::time::sleep_until(deadline)));
                        if timer.as_mut().poll(cx).is_pending() {
                            return Poll::Pending;
                        }
                        // Answered, and the work dropped, rather than holding a connection
                        // and a pool slot forever.
                        let detail =
                            format!("The request took longer than {} s and was abandoned", REQUEST_TIMEOUT.as_secs());
                        ApiError::unavailable(detail).with_retry_after(1).into_response()
                    }
                }
            }
        };
        add_security_headers(&mut response);
        if let Some(metrics) = &this.metrics {
            record(metrics, this.method, this.endpoint, &this.span, this.started.elapsed(), &response);
        }
        Poll::Ready(Ok(response))
    }
}

/// Counts and logs one answered request.
fn record(
    metrics: &HttpMetrics,
    method: &'static str,
    endpoint: &'static str,
    span: &tracing::Span,
    elapsed: std::time::Duration,
    response: &Response,
) {
    let status = response.status().as_u16();
    // As a signed integer: tracing-opentelemetry records unsigned ones as text.
    span.record("http.response.status_code", i64::from(status));
    if status >= 500 {
        span.record("otel.status_code", "ERROR");
        metrics.recent_errors.record(method, endpoint, status);
    }
    metrics.count(method, endpoint, status, elapsed);
    // The access log: failures and slow requests at info; the rest at debug
    // (`RUST_LOG=info,breakroom::http=debug` shows every request), since a line per
    // request would cost the server a quarter of its throughput.
    let latency_ms = (elapsed.as_secs_f64() * 1000.0 * 100.0).round() / 100.0;
    macro_rules! access_log {
        ($level:expr) => {
            tracing::event!(target: "breakroom::http", $level, method, endpoint, status, latency_ms, "request")
        };
    }
    if status >= 400 || elapsed >= SLOW_REQUEST {
        access_log!(tracing::Level::INFO);
    } else {
        access_log!(tracing::Level::DEBUG);
    }
}

/// The method as a label: one of the standard ones, else `other` (a client may send
/// any token as a method, and every label value is a series kept forever).
fn method_label(method: &axum::http::Method) -> &'static str {
    use axum::http::Method;
    match *method {
        Method::GET => "GET",
        Method::POST => "POST",
        Method::PUT => "PUT",
        Method::DELETE => "DELETE",
        Method::HEAD => "HEAD",
        Method::OPTIONS => "OPTIONS",
        Method::PATCH => "PATCH",
        Method::TRACE => "TRACE",
        Method::CONNECT => "CONNECT",
        _ => "other",
    }
}

/// A request carrying W3C `traceparent` continues the caller's trace.
fn set_remote_parent(span: &tracing::Span, headers: &HeaderMap) {
    use tracing_opentelemetry::OpenTelemetrySpanExt;
    let context = opentelemetry::global::get_text_map_propagator(|propagator| {
        propagator.extract(&opentelemetry_http::HeaderExtractor(headers))
    });
    let _ = span.set_parent(context);
}

/// Route templates keep label cardinality low: every static file is `/static`, and a
/// path no route matched is `unmatched`, whatever the client sent.
fn endpoint_label(matched: Option<&MatchedPath>, path: &str) -> &'static str {
    match matched.map(MatchedPath::as_str) {
        Some(template) if template.starts_with("/static/") => "/static",
        Some(template) => route_template(template),
        None if path.starts_with("/static/") => "/static",
        None => "unmatched",
    }
}

/// The route template as a `&'static str`, so labelling a request allocates nothing.
/// Templates come from the routers, never from a client: the set is small and fixed.
/// Each thread remembers the ones it has seen; the shared set is for the first time.
fn route_template(template: &str) -> &'static str {
    thread_local! {
        static SEEN: std::cell::RefCell<SmallMap<&'static str, ()>> = Default::default();
    }
    SEEN.with_borrow_mut(|seen| match seen.get_key_value(template) {
        Some((known, ())) => *known,
        None => {
            let known = interned(template);
            seen.insert(known, ());
            known
        }
    })
}

fn interned(template: &str) -> &'static str {
    use std::collections::HashSet;
    use std::sync::{Mutex, OnceLock};
    static TEMPLATES: OnceLock<Mutex<HashSet<&'static str>>> = OnceLock::new();
    let mut templates = TEMPLATES.get_or_init(Default::default).lock().unwrap_or_else(|p| p.into_inner());
    match templates.get(template) {
        Some(known) => known,
        None => {
            let leaked: &'static str = Box::leak(template.to_owned().into_boxed_str());
            templates.insert(leaked);
            leaked
        }
    }
}
