//! What every lab's HTTP surface shares: the error type, the JSON extractor, request
//! telemetry, admin authentication, embedded static files and the server loop.

use std::borrow::Cow;
use std::convert::Infallible;
use std::net::SocketAddr;
use std::pin::Pin;
use std::task::{Context, Poll};

use axum::extract::rejection::JsonRejection;
use axum::extract::{FromRequest, MatchedPath, Path, Request, State};
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use axum::{Json, Router};
use rust_embed::RustEmbed;
use serde::de::DeserializeOwned;
use tokio::net::TcpListener;
use tokio_util::sync::CancellationToken;

use super::telemetry::{HttpMetrics, SmallMap};

/// A request slower than this is logged at info even when it succeeded.
const SLOW_REQUEST: std::time::Duration = std::time::Duration::from_millis(500);

/// How long any request may take until its response starts (event streams start at once).
pub const REQUEST_TIMEOUT: std::time::Duration = std::time::Duration::from_secs(30);

/// Everything a page needs is served from here (fonts and images are embedded), so
/// the policy allows this origin only: no inline script or style, no framing.
const CONTENT_SECURITY_POLICY: &str = "default-src 'self'; script-src 'self'; style-src 'self'; img-src 'self' data:; \
     font-src 'self'; connect-src 'self'; frame-ancestors 'none'; base-uri 'none'; form-action 'self'; object-src 'none'";

/// Everything that is not a document (JSON, event streams, metrics, scripts) loads
/// nothing and is framed by nobody: the strictest policy, in a quarter of the bytes —
/// at a hundred thousand answers a second the page policy's bytes are a tenth of the work.
const CONTENT_SECURITY_POLICY_NOT_A_DOCUMENT: &str = "default-src 'none'; frame-ancestors 'none'";

/// Response headers that keep pages safe in front of an audience. A document (a page,
/// an SVG) and a redirect get all four. Anything else gets the two that mean something
/// for it: `nosniff`, so a browser never runs it as a script or a page, and the policy,
/// whose `frame-ancestors 'none'` forbids framing in every browser with CSP 2.
/// `X-Frame-Options` (the same rule for browsers without it) and `Referrer-Policy`
/// (which governs the requests a document makes) act on documents only; left off the
/// answers of the API they save a header map two insertions and every client 60 bytes.
/// (The values are checked once, at compile time, not on every response.)
fn add_security_headers(response: &mut Response) {
    const PAGE_POLICY: HeaderValue = HeaderValue::from_static(CONTENT_SECURITY_POLICY);
    const NOT_A_DOCUMENT_POLICY: HeaderValue = HeaderValue::from_static(CONTENT_SECURITY_POLICY_NOT_A_DOCUMENT);
    const NOSNIFF: HeaderValue = HeaderValue::from_static("nosniff");
    const NO_REFERRER: HeaderValue = HeaderValue::from_static("no-referrer");
    const DENY: HeaderValue = HeaderValue::from_static("DENY");
    // A redirect's Referrer-Policy governs the request it leads to: it gets the full set.
    let full_set = is_document(response.headers()) || response.status().is_redirection();
    let headers = response.headers_mut();
    if full_set {
        headers.reserve(4);
        headers.insert(header::CONTENT_SECURITY_POLICY, PAGE_POLICY);
        headers.insert(header::X_CONTENT_TYPE_OPTIONS, NOSNIFF);
        headers.insert(header::REFERRER_POLICY, NO_REFERRER);
        headers.insert(header::X_FRAME_OPTIONS, DENY);
    } else {
        headers.reserve(2);
        headers.insert(header::CONTENT_SECURITY_POLICY, NOT_A_DOCUMENT_POLICY);
        headers.insert(header::X_CONTENT_TYPE_OPTIONS, NOSNIFF);
    }
}

/// A browser renders it as a page (an SVG can carry script and style too).
fn is_document(headers: &HeaderMap) -> bool {
    headers.get(header::CONTENT_TYPE).is_some_and(|kind| {
        let kind = kind.as_bytes();
        kind.starts_with(b"text/html") || kind.starts_with(b"image/svg+xml")
    })
}

/// Largest request body any lab accepts; every lab's bodies are tiny.
pub const BODY_LIMIT_BYTES: usize = 64 * 1024;

/// The most header bytes (names and values) and headers a request may carry: a phone's
/// browser sends a few hundred bytes; anything near these is not an attendee.
pub const HEADER_LIMIT_BYTES: usize = 16 * 1024;
pub const HEADER_LIMIT_COUNT: usize = 100;

/// 431 with a JSON `detail` for a request whose headers are too large or too many.
fn oversized_headers(headers: &HeaderMap) -> Option<ApiError> {
    let bytes: usize = headers.iter().map(|(name, value)| name.as_str().len() + value.len()).sum();
    if bytes <= HEADER_LIMIT_BYTES && headers.len() <= HEADER_LIMIT_COUNT {
        return None;
    }
    Some(ApiError {
        close: true,
        ..ApiError::new(
            StatusCode::REQUEST_HEADER_FIELDS_TOO_LARGE,
            format!(
                "Request headers too large: {bytes} bytes in {} headers (limits: {HEADER_LIMIT_BYTES} bytes, {HEADER_LIMIT_COUNT} headers)",
                headers.len()
            ),
        )
    })
}

/// An error answered to a client as `{"detail": "…"}`. Client errors carry their
/// message; internal errors are logged with their cause chain and answered generically.
#[derive(Debug)]
pub struct ApiError {
    status: StatusCode,
    detail: Cow<'static, str>,
    retry_after_secs: Option<u32>,
    source: Option<anyhow::Error>,
    /// The body's key: `detail` everywhere but where a seed's API said `error`.
    field: &'static str,
    /// The request's body was left unread: the client must not send another request
    /// on this connection.
    close: bool,
}

impl ApiError {
    pub fn new(status: StatusCode, detail: impl Into<Cow<'static, str>>) -> Self {
        ApiError { status, detail: detail.into(), retry_after_secs: None, source: None, field: "detail", close: false }
    }

    pub fn bad_request(detail: impl Into<Cow<'static, str>>) -> Self {
        Self::new(StatusCode::BAD_REQUEST, detail)
    }

    pub fn unprocessable(detail: impl Into<Cow<'static, str>>) -> Self {
        Self::new(StatusCode::UNPROCESSABLE_ENTITY, detail)
    }

    pub fn not_found(detail: impl Into<Cow<'static, str>>) -> Self {
        Self::new(StatusCode::NOT_FOUND, detail)
    }

    pub fn unavailable(detail: impl Into<Cow<'static, str>>) -> Self {
        Self::new(StatusCode::SERVICE_UNAVAILABLE, detail)
    }

    pub fn internal(source: impl Into<anyhow::Error>) -> Self {
        ApiError {
            source: Some(source.into()),
            ..Self::new(StatusCode::INTERNAL_SERVER_ERROR, "Internal server error")
        }
    }

    pub fn with_retry_after(mut self, seconds: u32) -> Self {
        self.retry_after_secs = Some(seconds);
        self
    }

    /// Answers `{"error": "…"}` instead of `{"detail": "…"}`, as the shop's original API did.
    pub fn as_error_field(mut self) -> Self {
        self.field = "error";
        self
    }

    pub fn status(&self) -> StatusCode {
        self.status
    }

    pub fn detail(&self) -> &str {
        &self.detail
    }
}

impl From<sqlx::Error> for ApiError {
    /// A database that is unreachable or saturated is a 503 the client may retry;
    /// anything else is a bug of ours.
    fn from(error: sqlx::Error) -> Self {
        let detail = match &error {
            sqlx::Error::PoolTimedOut => "Database connection pool exhausted: no connection became free in time",
            sqlx::Error::Io(_) | sqlx::Error::PoolClosed | sqlx::Error::Tls(_) | sqlx::Error::Protocol(_) => {
                "Database unavailable"
            }
            // Contention, not a fault: a deadlock or serialization failure PostgreSQL broke
            // (40P01, 40001), a lock it gave up waiting for (55P03), SQLite's writer lock
            // held too long (SQLITE_BUSY 5 and its extended codes, SQLITE_LOCKED 6).
            sqlx::Error::Database(db)
                if matches!(
                    db.code().as_deref(),
                    Some("40P01" | "40001" | "55P03" | "5" | "6" | "261" | "517" | "262")
                ) =>
            {
                "The database is busy: another transaction held the rows this request needs for too long. Retry shortly"
            }
            // PostgreSQL refuses text it cannot store (a NUL byte, invalid encoding): that is
            // the client's input, not our failure.
            sqlx::Error::Database(db) if matches!(db.code().as_deref(), Some("22021" | "22P05")) => {
                return ApiError::bad_request("Text fields must not contain NUL characters");
            }
            _ => return ApiError::internal(error),
        };
        ApiError { source: Some(error.into()), ..ApiError::unavailable(detail).with_retry_after(1) }
    }
}

/// What a client is told when the database refused or failed a write, without the
/// internals: the kind of failure, never the SQL or the server's address.
pub fn database_failure(error: &sqlx::Error) -> String {
    match error {
        sqlx::Error::PoolTimedOut => "the database connection pool is exhausted".into(),
        sqlx::Error::Io(_) | sqlx::Error::PoolClosed | sqlx::Error::Tls(_) | sqlx::Error::Protocol(_) => {
            "the database is unavailable".into()
        }
        _ => "the database did not accept the write".into(),
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        if let Some(source) = &self.source
            && self.status.is_server_error()
        {
            tracing::error!(status = self.status.as_u16(), error = format!("{source:#}"), "request failed");
        }
        let mut response = (self.status, Json(serde_json::json!({ self.field: self.detail }))).into_response();
        if let Some(seconds) = self.retry_after_secs {
            response.headers_mut().insert(header::RETRY_AFTER, HeaderValue::from(seconds));
        }
        if self.close {
            response.headers_mut().insert(header::CONNECTION, HeaderValue::from_static("close"));
        }
        response
    }
}

/// `Json<T>` for a JSON object body, whose every rejection is a JSON 4xx: 422 for a
/// body that is not the expected shape (not JSON, not an object, missing fields, wrong
/// types), 413 for an oversized one.
pub struct JsonBody<T>(pub T);

impl<S, T> FromRequest<S> for JsonBody<T>
where
    T: DeserializeOwned,
    S: Send + Sync,
{
    type Rejection = ApiError;

    async fn from_request(req: Request, _: &S) -> Result<Self, Self::Rejection> {
        if !is_json(req.headers()) {
            return Err(ApiError::unprocessable("Expected a JSON body with the header Content-Type: application/json"));
        }
        let bytes = body_bytes(req).await?;
        // serde would accept `["ai"]` for a struct; every body here is an object.
        if bytes.iter().find(|b| !b.is_ascii_whitespace()) != Some(&b'{') {
            return Err(ApiError::unprocessable("Invalid request body: expected a JSON object"));
        }
        match Json::<T>::from_bytes(&bytes) {
            Ok(Json(value)) => Ok(JsonBody(value)),
            Err(rejection) => Err(json_rejection(rejection)),
        }
    }
}

/// The whole body, refused with 413 as soon as it is known to exceed the limit (by
/// its Content-Length, or while it arrives).
async fn body_bytes(request: Request) -> Result<Vec<u8>, ApiError> {
    use futures_util::StreamExt;
    let declared = request.headers().get(header::CONTENT_LENGTH).and_then(|v| v.to_str().ok()?.parse::<u64>().ok());
    if declared.is_some_and(|length| length > BODY_LIMIT_BYTES as u64) {
        return Err(too_large());
    }
    let mut bytes = Vec::with_capacity(declared.unwrap_or(0) as usize);
    let mut chunks = request.into_body().into_data_stream();
    while let Some(chunk) = chunks.next().await {
        let chunk = chunk.map_err(|e| ApiError::bad_request(format!("The request body could not be read: {e}")))?;
        if bytes.len() + chunk.len() > BODY_LIMIT_BYTES {
            return Err(too_large());
        }
        bytes.extend_from_slice(&chunk);
    }
    Ok(bytes)
}

fn is_json(headers: &HeaderMap) -> bool {
    let Some(content_type) = headers.get(header::CONTENT_TYPE).and_then(|v| v.to_str().ok()) else {
        return false;
    };
    let essence = content_type.split(';').next().unwrap_or("").trim().to_ascii_lowercase();
    essence == "application/json" || (essence.starts_with("application/") && essence.ends_with("+json"))
}

/// 413; the rest of the body is never read, so the connection closes after it.
fn too_large() -> ApiError {
    ApiError {
        close: true,
        ..ApiError::new(
            StatusCode::PAYLOAD_TOO_LARGE,
            format!("Request body too large: the limit is {} KiB", BODY_LIMIT_BYTES / 1024),
        )
    }
}

fn json_rejection(rejection: JsonRejection) -> ApiError {
    match rejection {
        JsonRejection::JsonDataError(e) => ApiError::unprocessable(format!("Invalid request body: {}", e.body_text())),
        JsonRejection::JsonSyntaxError(e) => ApiError::unprocessable(format!("Malformed JSON: {}", e.body_text())),
        JsonRejection::MissingJsonContentType(_) => {
            ApiError::unprocessable("Expected a JSON body with the header Content-Type: application/json")
        }
        other if other.status() == StatusCode::PAYLOAD_TOO_LARGE => too_large(),
        other => ApiError::new(other.status(), other.body_text()),
    }
}

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
        let span = if scrape {
            tracing::Span::none()
        } else {
            tracing::info_span!(
                "request",
                otel.name = format!("{method} {endpoint}"),
                otel.kind = "server",
                http.request.method = method,
                http.route = endpoint,
                http.response.status_code = tracing::field::Empty,
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
            answer,
            deadline: (!scrape).then(|| started + REQUEST_TIMEOUT),
            timer: None,
            span,
            metrics: (!scrape).then(|| self.metrics.clone()),
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
    /// The route's answer, or the refusal given before the route was asked.
    answer: Result<F, Option<ApiError>>,
    deadline: Option<tokio::time::Instant>,
    timer: Option<Pin<Box<tokio::time::Sleep>>>,
    span: tracing::Span,
    /// `None` for what is not counted (the scrape).
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
    span.record("http.response.status_code", status);
    if status >= 500 {
        metrics.recent_errors.record();
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

/// The admin token every `/admin/*` action requires.
#[derive(Clone)]
pub struct AdminToken(std::sync::Arc<str>);

impl AdminToken {
    pub fn new(token: &str) -> Self {
        AdminToken(token.into())
    }

    /// 32 random hex characters.
    pub fn generate() -> Self {
        use rand::Rng;
        let mut rng = rand::rng();
        let token: String = (0..32).map(|_| char::from_digit(rng.random_range(0..16), 16).unwrap()).collect();
        AdminToken(token.into())
    }

    pub fn expose(&self) -> &str {
        &self.0
    }

    /// Compares in time independent of where the first difference is, so the token
    /// cannot be guessed byte by byte from response times.
    pub fn matches(&self, candidate: &str) -> bool {
        let (a, b) = (self.0.as_bytes(), candidate.as_bytes());
        if a.len() != b.len() {
            return false;
        }
        let difference = a.iter().zip(b).fold(0u8, |acc, (x, y)| acc | (x ^ y));
        std::hint::black_box(difference) == 0
    }
}

/// Middleware for admin routes: `Authorization: Bearer <token>` or 401.
pub async fn require_admin(State(token): State<AdminToken>, request: Request, next: Next) -> Response {
    match refusal(&token, request.headers()) {
        Some(refused) => refused,
        None => next.run(request).await,
    }
}

/// The 401 for a request without the right token; None when it carries it.
pub fn refusal(token: &AdminToken, headers: &HeaderMap) -> Option<Response> {
    let presented = headers
        .get(header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.strip_prefix("Bearer "))
        .map(str::trim);
    let error = match presented {
        Some(candidate) if token.matches(candidate) => return None,
        Some(_) => "Admin token rejected. Use the token printed when breakroom started, or BREAKROOM_ADMIN_TOKEN",
        None => {
            "Admin token required: send Authorization: Bearer <token> (printed when breakroom started, or set with BREAKROOM_ADMIN_TOKEN)"
        }
    };
    let mut response = ApiError::new(StatusCode::UNAUTHORIZED, error).into_response();
    response.headers_mut().insert(header::WWW_AUTHENTICATE, HeaderValue::from_static("Bearer"));
    Some(response)
}

#[derive(RustEmbed)]
#[folder = "../../web/static"]
struct StaticFiles;

#[derive(RustEmbed)]
#[folder = "../../web/fonts"]
struct Fonts;

/// `/static/{*path}`: files embedded in the binary, so pages never wait on a CDN.
pub async fn static_file(Path(path): Path<String>) -> Response {
    let file = match path.strip_prefix("fonts/") {
        Some(font) => Fonts::get(font),
        None => StaticFiles::get(&path),
    };
    let Some(file) = file else {
        return ApiError::not_found("Not Found").into_response();
    };
    let content_type = match path.rsplit('.').next() {
        Some("css") => "text/css; charset=utf-8",
        Some("js") => "text/javascript; charset=utf-8",
        Some("svg") => "image/svg+xml",
        Some("woff2") => "font/woff2",
        Some("png") => "image/png",
        Some("txt") => "text/plain; charset=utf-8",
        _ => "application/octet-stream",
    };
    ([(header::CONTENT_TYPE, content_type), (header::CACHE_CONTROL, "public, max-age=3600")], file.data).into_response()
}

pub async fn not_found() -> ApiError {
    ApiError::not_found("Not Found")
}

pub async fn method_not_allowed() -> ApiError {
    ApiError::new(StatusCode::METHOD_NOT_ALLOWED, "Method Not Allowed")
}

/// Serves until `shutdown` fires, then lets in-flight requests finish.
pub async fn serve(listener: TcpListener, router: Router, shutdown: CancellationToken) -> std::io::Result<()> {
    axum::serve(listener, router.into_make_service_with_connect_info::<SocketAddr>())
        .with_graceful_shutdown(shutdown.cancelled_owned())
        .await
}

/// `Query<T>` whose rejection is a JSON 422 instead of axum's plain-text 400.
pub struct QueryParams<T>(pub T);

impl<S, T> axum::extract::FromRequestParts<S> for QueryParams<T>
where
    T: DeserializeOwned,
    S: Send + Sync,
{
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut axum::http::request::Parts, state: &S) -> Result<Self, Self::Rejection> {
        match axum::extract::Query::<T>::from_request_parts(parts, state).await {
            Ok(axum::extract::Query(value)) => Ok(QueryParams(value)),
            Err(rejection) => Err(ApiError::unprocessable(format!("Invalid query string: {}", rejection.body_text()))),
        }
    }
}

/// `Path<T>` whose rejection is a JSON 4xx instead of axum's plain-text one.
pub struct PathParam<T>(pub T);

impl<S, T> axum::extract::FromRequestParts<S> for PathParam<T>
where
    T: DeserializeOwned + Send,
    S: Send + Sync,
{
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut axum::http::request::Parts, state: &S) -> Result<Self, Self::Rejection> {
        match Path::<T>::from_request_parts(parts, state).await {
            Ok(Path(value)) => Ok(PathParam(value)),
            Err(rejection) => Err(ApiError::unprocessable(format!("Invalid path: {}", rejection.body_text()))),
        }
    }
}

/// `?confirm=yes`, required by destructive admin actions so a stray click or a
/// replayed request without it changes nothing.
pub struct Confirmed;

impl<S: Send + Sync> axum::extract::FromRequestParts<S> for Confirmed {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut axum::http::request::Parts, _: &S) -> Result<Self, Self::Rejection> {
        let confirmed = parts.uri.query().unwrap_or("").split('&').any(|pair| pair == "confirm=yes");
        if confirmed { Ok(Confirmed) } else { Err(ApiError::bad_request("Add ?confirm=yes to reset the session")) }
    }
}

#[cfg(test)]
mod tests {
    use super::AdminToken;
    use super::*;

    /// A router behind `observe`, served on a free loopback port.
    async fn serve_observed(router: Router) -> (String, HttpMetrics) {
        let metrics = HttpMetrics::new();
        let router = router.layer(Observe::new(metrics.clone()));
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let url = format!("http://{}", listener.local_addr().unwrap());
        tokio::spawn(serve(listener, router, CancellationToken::new()));
        (url, metrics)
    }

    #[tokio::test]
    async fn a_panicking_handler_answers_500_and_the_server_carries_on() {
        let router = Router::new()
            .route(
                "/boom",
                axum::routing::get(|| async {
                    let planted: Option<&str> = None;
                    planted.expect("planted panic")
                }),
            )
            .route("/fine", axum::routing::get(|| async { "fine" }));
        let (url, metrics) = serve_observed(router).await;
        let client = reqwest::Client::new();
        let boom = client.get(format!("{url}/boom")).send().await.unwrap();
        assert_eq!(boom.status(), 500);
        assert_eq!(boom.headers()["x-content-type-options"], "nosniff");
        assert_eq!(boom.json::<serde_json::Value>().await.unwrap()["detail"], "Internal server error");
        assert_eq!(client.get(format!("{url}/fine")).send().await.unwrap().status(), 200);
        let counted = metrics.requests.get_or_create(&super::super::telemetry::RequestLabels {
            method: "GET",
            endpoint: "/boom",
            status: 500,
        });
        assert_eq!(counted.get(), 1, "the panic is counted as a 500 of its route");
    }

    #[tokio::test(start_paused = true)]
    async fn a_request_past_the_deadline_is_answered_503_and_counted() {
        let patient = |seconds| async move {
            tokio::time::sleep(std::time::Duration::from_secs(seconds)).await;
            "done"
        };
        let router = Router::new()
            .route("/slow", axum::routing::get(move || patient(3600)))
            .route("/just-in-time", axum::routing::get(move || patient(REQUEST_TIMEOUT.as_secs() - 1)));
        let metrics = HttpMetrics::new();
        let router = router.layer(Observe::new(metrics.clone()));
        use tower::ServiceExt;
        let get = |path: &str| Request::get(path).body(axum::body::Body::empty()).unwrap();
        let slow = router.clone().oneshot(get("/slow")).await.unwrap();
        assert_eq!(slow.status(), 503);
        assert_eq!(slow.headers()["retry-after"], "1");
        let body = axum::body::to_bytes(slow.into_body(), 4096).await.unwrap();
        assert!(String::from_utf8_lossy(&body).contains("longer than 30 s"));
        assert_eq!(router.oneshot(get("/just-in-time")).await.unwrap().status(), 200);
        let counted = |endpoint, status| {
            let labels = super::super::telemetry::RequestLabels { method: "GET", endpoint, status };
            metrics.requests.get_or_create(&labels).get()
        };
        assert_eq!((counted("/slow", 503), counted("/just-in-time", 200)), (1, 1));
    }

    #[tokio::test]
    async fn documents_and_redirects_get_every_security_header_and_the_api_two() {
        let router = Router::new()
            .route("/page", axum::routing::get(|| async { axum::response::Html("<p>hi</p>") }))
            .route("/away", axum::routing::get(|| async { axum::response::Redirect::to("/page") }))
            .route("/json", axum::routing::get(|| async { Json(serde_json::json!({ "ok": true })) }));
        let router = router.layer(Observe::new(HttpMetrics::new()));
        use tower::ServiceExt;
        let get = |path: &str| Request::get(path).body(axum::body::Body::empty()).unwrap();
        for path in ["/page", "/away"] {
            let response = router.clone().oneshot(get(path)).await.unwrap();
            let headers = response.headers();
            assert!(headers["content-security-policy"].to_str().unwrap().contains("frame-ancestors 'none'"), "{path}");
            assert_eq!(headers["x-content-type-options"], "nosniff", "{path}");
            assert_eq!(headers["x-frame-options"], "DENY", "{path}");
            assert_eq!(headers["referrer-policy"], "no-referrer", "{path}: a redirect's policy governs where it leads");
        }
        let json = router.oneshot(get("/json")).await.unwrap();
        let headers = json.headers();
        assert_eq!(headers["content-security-policy"], "default-src 'none'; frame-ancestors 'none'");
        assert_eq!(headers["x-content-type-options"], "nosniff");
        assert!(!headers.contains_key("x-frame-options") && !headers.contains_key("referrer-policy"));
    }

    #[derive(serde::Deserialize)]
    struct Anything {}

    #[tokio::test]
    async fn a_body_over_the_limit_is_refused_whether_or_not_its_length_is_declared() {
        let router =
            Router::new().route("/echo", axum::routing::post(|JsonBody(_): JsonBody<Anything>| async { "ok" }));
        let (url, _) = serve_observed(router).await;
        let client = reqwest::Client::new();
        let big = format!("{{\"pad\": \"{}\"}}", "x".repeat(BODY_LIMIT_BYTES));
        let declared = client.post(format!("{url}/echo")).header("content-type", "application/json").body(big.clone());
        let declared = declared.send().await.unwrap();
        assert_eq!(declared.status(), 413);
        assert_eq!(declared.headers()["connection"], "close", "the unread rest of the body ends the connection");
        let chunks = futures_util::stream::iter(
            big.into_bytes().chunks(4096).map(|c| Ok::<_, std::io::Error>(c.to_vec())).collect::<Vec<_>>(),
        );
        let streamed = client
            .post(format!("{url}/echo"))
            .header("content-type", "application/json")
            .body(reqwest::Body::wrap_stream(chunks))
            .send()
            .await
            .unwrap();
        assert_eq!(streamed.status(), 413, "a chunked body without Content-Length is counted as it arrives");
        let detail = streamed.json::<serde_json::Value>().await.unwrap()["detail"].as_str().unwrap().to_owned();
        assert!(detail.contains("64 KiB"), "{detail}");
        let small = client.post(format!("{url}/echo")).header("content-type", "application/json").body("{}");
        assert_eq!(small.send().await.unwrap().status(), 200);
    }

    #[test]
    fn admin_token_matches_only_itself() {
        let token = AdminToken::new("s3cret-token");
        assert!(token.matches("s3cret-token"));
        assert!(!token.matches("s3cret-tokem"));
        assert!(!token.matches("s3cret"));
        assert!(!token.matches(""));
    }

    #[test]
    fn generated_tokens_differ_and_are_hex() {
        let (a, b) = (AdminToken::generate(), AdminToken::generate());
        assert_ne!(a.expose(), b.expose());
        assert_eq!(a.expose().len(), 32);
        assert!(a.expose().chars().all(|c| c.is_ascii_hexdigit()));
    }
}
