//! JSON logs, the Prometheus registry with the HTTP metrics every lab shares, and
//! OTLP traces when a collector is configured.

use opentelemetry::trace::TracerProvider as _;
use opentelemetry_sdk::trace::SdkTracerProvider;
use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::histogram::Histogram;
use prometheus_client::registry::Registry;
use tracing_subscriber::EnvFilter;
use tracing_subscriber::layer::SubscriberExt;
use tracing_subscriber::util::SubscriberInitExt;

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct RequestLabels {
    pub method: &'static str,
    pub endpoint: &'static str,
    pub status: u16,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct RouteLabels {
    pub method: &'static str,
    pub endpoint: &'static str,
}

/// The seeds' request metrics, labelled by route template (never the raw path).
#[derive(Clone)]
pub struct HttpMetrics {
    /// Which families these are (clones share it): the key of [`HttpMetrics::count`]'s cache.
    id: u64,
    pub requests: Family<RequestLabels, Counter>,
    pub duration: Family<RouteLabels, Histogram>,
    /// 5xx answers per second over the last minute, for a presenter's glance.
    pub recent_errors: std::sync::Arc<RecentErrors>,
}

/// Counts events in one-second buckets over a sliding minute, and keeps the last few
/// answers themselves: the speaker's error log.
#[derive(Debug)]
pub struct RecentErrors {
    buckets: std::sync::Mutex<[(u64, u64); 60]>,
    latest: std::sync::Mutex<std::collections::VecDeque<ErrorAnswer>>,
}

/// One 5xx answer, for the speaker's error log.
#[derive(Debug, Clone, serde::Serialize, utoipa::ToSchema)]
pub struct ErrorAnswer {
    /// When it was answered (RFC 3339).
    pub at: String,
    pub method: &'static str,
    /// The route's template, e.g. `/vote`.
    pub endpoint: &'static str,
    pub status: u16,
}

/// 5xx answers kept for the error log.
const LATEST_ERRORS: usize = 20;

impl Default for RecentErrors {
    fn default() -> Self {
        RecentErrors { buckets: std::sync::Mutex::new([(0, 0); 60]), latest: Default::default() }
    }
}

impl RecentErrors {
    fn now() -> u64 {
        std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map(|d| d.as_secs()).unwrap_or(0)
    }

    /// Counts a 5xx answer and keeps it in the error log.
    pub fn record(&self, method: &'static str, endpoint: &'static str, status: u16) {
        self.record_at(Self::now());
        let mut latest = self.latest.lock().unwrap_or_else(|p| p.into_inner());
        if latest.len() == LATEST_ERRORS {
            latest.pop_back();
        }
        latest.push_front(ErrorAnswer { at: crate::clock::now(), method, endpoint, status });
    }

    /// The latest 5xx answers, newest first.
    pub fn latest(&self) -> Vec<ErrorAnswer> {
        self.latest.lock().unwrap_or_else(|p| p.into_inner()).iter().cloned().collect()
    }

    fn record_at(&self, second: u64) {
        let mut buckets = self.buckets.lock().unwrap_or_else(|p| p.into_inner());
        let slot = &mut buckets[(second % 60) as usize];
        if slot.0 != second {
            *slot = (second, 0);
        }
        slot.1 += 1;
    }

    /// Events in the last 60 seconds.
    pub fn last_minute(&self) -> u64 {
        self.last_minute_at(Self::now())
    }

    fn last_minute_at(&self, now: u64) -> u64 {
        let buckets = self.buckets.lock().unwrap_or_else(|p| p.into_inner());
        buckets.iter().filter(|(second, _)| now.saturating_sub(*second) < 60).map(|(_, n)| n).sum()
    }
}

/// The default buckets of the Python client the seeds used, so their dashboards read the same.
const LATENCY_BUCKETS: [f64; 14] = [0.005, 0.01, 0.025, 0.05, 0.075, 0.1, 0.25, 0.5, 0.75, 1.0, 2.5, 5.0, 7.5, 10.0];

impl HttpMetrics {
    pub fn new() -> HttpMetrics {
        static IDS: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(0);
        HttpMetrics {
            id: IDS.fetch_add(1, std::sync::atomic::Ordering::Relaxed),
            requests: Family::default(),
            duration: Family::new_with_constructor(|| Histogram::new(LATENCY_BUCKETS)),
            recent_errors: Default::default(),
        }
    }

    /// Counts one answered request and its latency. Each thread keeps the series it has
    /// used, found by the labels' addresses: the families' own lookup hashes every
    /// label's text under a shared lock, which costs a request more than its handler.
    pub fn count(&self, method: &'static str, endpoint: &'static str, status: u16, elapsed: std::time::Duration) {
        thread_local! {
            static SERIES: std::cell::RefCell<SmallMap<SeriesKey, (Counter, Histogram)>> = Default::default();
        }
        let key = SeriesKey {
            metrics: self.id,
            method: method.as_ptr() as usize,
            endpoint: endpoint.as_ptr() as usize,
            status,
        };
        SERIES.with_borrow_mut(|series| {
            let (requests, duration) = series.entry(key).or_insert_with(|| {
                let requests = self.requests.get_or_create(&RequestLabels { method, endpoint, status }).clone();
                let duration = self.duration.get_or_create(&RouteLabels { method, endpoint }).clone();
                (requests, duration)
            });
            requests.inc();
            duration.observe(elapsed.as_secs_f64());
        });
    }

    pub fn register(&self, registry: &mut Registry) {
        let metrics = self;
        registry.register("http_requests", "HTTP requests by method, route and status", metrics.requests.clone());
        registry.register(
            "http_request_duration_seconds",
            "HTTP request latency by method and route",
            metrics.duration.clone(),
        );
    }
}

impl Default for HttpMetrics {
    fn default() -> Self {
        Self::new()
    }
}

/// A request's series in [`HttpMetrics::count`]'s cache. Label values are `&'static`
/// (never freed, so an address never comes to mean another text), and two addresses
/// of one text only make two entries for one series.
#[derive(Clone, Copy, PartialEq, Eq, Hash)]
struct SeriesKey {
    metrics: u64,
    method: usize,
    endpoint: usize,
    status: u16,
}

/// A map for small keys the process made itself (addresses, ids, route templates),
/// never for a client's input: its hash is fast, not resistant to chosen collisions.
pub(crate) type SmallMap<K, V> = std::collections::HashMap<K, V, std::hash::BuildHasherDefault<SmallKeyHasher>>;

/// The multiply-rotate step of FxHash.
#[derive(Default)]
pub(crate) struct SmallKeyHasher(u64);

impl SmallKeyHasher {
    fn add(&mut self, word: u64) {
        self.0 = (self.0.rotate_left(5) ^ word).wrapping_mul(0x51_7c_c1_b7_27_22_0a_95);
    }
}

impl std::hash::Hasher for SmallKeyHasher {
    fn write(&mut self, bytes: &[u8]) {
        let mut chunks = bytes.chunks_exact(8);
        for chunk in &mut chunks {
            self.add(u64::from_le_bytes(chunk.try_into().unwrap_or_default()));
        }
        for &byte in chunks.remainder() {
            self.add(byte.into());
        }
    }

    fn write_u16(&mut self, n: u16) {
        self.add(n.into());
    }

    fn write_u64(&mut self, n: u64) {
        self.add(n);
    }

    fn write_usize(&mut self, n: usize) {
        self.add(n as u64);
    }

    fn finish(&self) -> u64 {
        self.0
    }
}

/// What of the process's telemetry the console records.
#[derive(Debug, Clone, Copy, Default)]
pub struct Recording {
    /// The spans of the process's tracing spans (a lab whose services trace on their
    /// own providers records those instead).
    pub spans: bool,
    pub logs: bool,
}

/// Keeps the trace exporter alive; dropping it flushes and shuts it down.
pub struct TelemetryGuard {
    provider: Option<SdkTracerProvider>,
}

impl Drop for TelemetryGuard {
    fn drop(&mut self) {
        if let Some(provider) = self.provider.take()
            && let Err(error) = provider.shutdown()
        {
            eprintln!("breakroom: flushing traces failed: {error}");
        }
    }
}

/// JSON log lines on stdout (`RUST_LOG` filters them), plus OTLP/HTTP traces when
/// `otlp_endpoint` is set, plus the console's recording: its spans when `console.spans`,
/// its logs when `console.logs`. Each gets its own filter: the log lines carry events
/// only (no span context), so with neither a collector nor the console nobody wants a
/// span and none is made — a request then costs its log line, not a span's bookkeeping.
pub fn init(service_name: &str, otlp_endpoint: Option<&str>, console: Recording) -> anyhow::Result<TelemetryGuard> {
    let directives = std::env::var(EnvFilter::DEFAULT_ENV).unwrap_or_else(|_| "info,sqlx=warn".into());
    let provider = match (otlp_endpoint, console.spans) {
        (None, false) => None,
        (endpoint, spans) => Some(tracer_provider(service_name, endpoint, spans, None)?),
    };
    subscriber(&directives, provider.as_ref(), console.logs).try_init()?;
    crate::console::logs::remember_dispatch();
    Ok(TelemetryGuard { provider })
}

/// The subscriber [`init`] installs. Without a provider it has the log layer alone: an
/// absent (`None`) traces layer would still say yes to every span, and each request
/// would pay for a span nobody reads.
///
/// Every filter here is global (a layer of the subscriber), never a per-layer filter
/// (`Layer::with_filter`). A per-layer filter remembers, per thread, which layers the
/// last `enabled` question disabled, and forgets it only at the next event: when that
/// question is asked and no event follows — as `log_enabled!` does, which sqlx calls
/// around each statement — the next event on that thread whose callsite is always
/// enabled skipped the log layer. That dropped one `vote batch not stored` ERROR in
/// three, and `shutting down` lines (tests/faults.rs, every_failed_batch_…).
fn subscriber(
    directives: &str,
    provider: Option<&SdkTracerProvider>,
    recording: bool,
) -> Box<dyn tracing::Subscriber + Send + Sync + 'static> {
    let filter = EnvFilter::try_new(directives).unwrap_or_else(|_| EnvFilter::new("info,sqlx=warn"));
    let console_logs = recording.then_some(crate::console::logs::LogLayer);
    match provider {
        Some(provider) => {
            // Where a span was made (code.file.path) stays: it points at the bug. Threads
            // and busy/idle times are noise on every span.
            let traces = tracing_opentelemetry::layer()
                .with_threads(false)
                .with_tracked_inactivity(false)
                .with_tracer(provider.tracer("breakroom"));
            let untraced = crate::console::traces::SkipUntraced;
            Box::new(
                tracing_subscriber::registry()
                    .with(filter)
                    .with(untraced)
                    .with(log_lines())
                    .with(console_logs)
                    .with(traces),
            )
        }
        None => Box::new(
            tracing_subscriber::registry().with(filter).with(events_only()).with(log_lines()).with(console_logs),
        ),
    }
}

/// One JSON line per event, without span context.
fn log_lines<S>() -> impl tracing_subscriber::Layer<S>
where
    S: tracing::Subscriber + for<'a> tracing_subscriber::registry::LookupSpan<'a>,
{
    tracing_subscriber::fmt::layer()
        .json()
        .flatten_event(true)
        .with_current_span(false)
        .with_span_list(false)
        .with_target(true)
}

/// Events, never spans, decided once per callsite (not per call): a global filter.
fn events_only() -> tracing_subscriber::filter::FilterFn {
    tracing_subscriber::filter::filter_fn(|metadata| metadata.is_event())
}

/// Logs only, for the client commands.
pub fn init_logs_only() {
    let filter = EnvFilter::try_from_default_env().unwrap_or_else(|_| EnvFilter::new("warn"));
    let _ = tracing_subscriber::fmt().with_env_filter(filter).with_writer(std::io::stderr).try_init();
}

/// A tracer provider of its own for one service of a lab that runs several in one
/// process (each keeps its `service.name`). Without an endpoint spans are still made,
/// so trace context still flows between the services; they go to the console when
/// `recording`, else nowhere.
///
/// Its root spans are sampled by the console's budget ([`crate::console::traces::admit`]:
/// every one with a collector), a child span as its parent was; the process's own
/// provider samples every span it is given, since its requests were already sampled
/// before their spans were made ([`crate::http::Observe`]).
pub fn service_tracer_provider(
    service_name: &str,
    endpoint: Option<&str>,
    recording: bool,
) -> anyhow::Result<SdkTracerProvider> {
    let sampler = opentelemetry_sdk::trace::Sampler::ParentBased(Box::new(crate::console::traces::BudgetSampler));
    tracer_provider(service_name, endpoint, recording, Some(sampler))
}

/// Spans to the OTLP collector at `endpoint` (batched, on the exporter's thread) and,
/// when `recording`, to the console's store, both under `service_name`: one span, one
/// trace id, in both places.
fn tracer_provider(
    service_name: &str,
    endpoint: Option<&str>,
    recording: bool,
    sampler: Option<opentelemetry_sdk::trace::Sampler>,
) -> anyhow::Result<SdkTracerProvider> {
    let resource = opentelemetry_sdk::Resource::builder().with_service_name(service_name.to_string()).build();
    let mut builder = SdkTracerProvider::builder().with_resource(resource);
    if let Some(sampler) = sampler {
        builder = builder.with_sampler(sampler);
    }
    if recording {
        builder = builder.with_span_processor(crate::console::traces::RingProcessor::default());
    }
    if let Some(endpoint) = endpoint {
        builder = builder.with_batch_exporter(otlp_exporter(endpoint)?);
    }
    opentelemetry::global::set_text_map_propagator(opentelemetry_sdk::propagation::TraceContextPropagator::new());
    Ok(builder.build())
}

fn otlp_exporter(endpoint: &str) -> anyhow::Result<opentelemetry_otlp::SpanExporter> {
    use opentelemetry_otlp::{WithExportConfig, WithHttpConfig};
    let endpoint = endpoint.trim_end_matches('/');
    let url = if endpoint.ends_with("/v1/traces") { endpoint.to_string() } else { format!("{endpoint}/v1/traces") };
    // The blocking client runs on the batch exporter's own thread; the async one
    // panics there outside a Tokio context.
    // Built here, with breakroom's TLS (an https:// collector), on a thread of its own:
    // a blocking client cannot be built inside the async runtime.
    let client =
        std::thread::spawn(|| super::http::blocking_client().timeout(std::time::Duration::from_secs(10)).build())
            .join()
            .map_err(|_| anyhow::anyhow!("building the OTLP exporter's HTTP client panicked"))??;
    Ok(opentelemetry_otlp::SpanExporter::builder().with_http().with_http_client(client).with_endpoint(url).build()?)
}

#[cfg(test)]
mod tests {
    use super::{HttpMetrics, RecentErrors, RequestLabels, subscriber};
    use std::time::Duration;

    fn counted(metrics: &HttpMetrics, endpoint: &'static str, status: u16) -> u64 {
        metrics.requests.get_or_create(&RequestLabels { method: "GET", endpoint, status }).get()
    }

    #[test]
    fn each_request_is_counted_once_in_its_own_series_from_any_thread() {
        let (first, second) = (HttpMetrics::new(), HttpMetrics::new());
        let same_text_elsewhere: &'static str = Box::leak(String::from("/votes").into_boxed_str());
        first.count("GET", "/votes", 200, Duration::from_millis(3));
        first.count("GET", same_text_elsewhere, 200, Duration::from_millis(3));
        let clone = first.clone();
        std::thread::spawn(move || clone.count("GET", "/votes", 200, Duration::from_millis(3))).join().unwrap();
        first.count("GET", "/votes", 503, Duration::from_millis(3));
        second.count("GET", "/votes", 200, Duration::from_millis(3));
        assert_eq!(counted(&first, "/votes", 200), 3);
        assert_eq!(counted(&first, "/votes", 503), 1);
        assert_eq!(counted(&second, "/votes", 200), 1, "another app's metrics are its own");
        let mut text = String::new();
        let mut registry = prometheus_client::registry::Registry::default();
        first.register(&mut registry);
        prometheus_client::encoding::text::encode(&mut text, &registry).unwrap();
        assert!(text.contains(r#"http_request_duration_seconds_count{method="GET",endpoint="/votes"} 4"#), "{text}");
    }

    #[test]
    fn without_a_collector_no_span_is_made_and_events_still_are_logged() {
        let quiet = subscriber("info", None, false);
        tracing::subscriber::with_default(quiet, || {
            assert!(tracing::info_span!("request").is_disabled(), "a span without a collector costs every request");
            assert!(tracing::event_enabled!(tracing::Level::INFO), "info events are the log lines");
            assert!(!tracing::event_enabled!(tracing::Level::DEBUG));
        });
        let provider = opentelemetry_sdk::trace::SdkTracerProvider::builder().build();
        tracing::subscriber::with_default(subscriber("info", Some(&provider), false), || {
            assert!(!tracing::info_span!("request").is_disabled(), "with a collector requests are traced");
        });
    }

    #[test]
    fn recent_errors_forget_what_is_older_than_a_minute() {
        let recent = RecentErrors::default();
        recent.record_at(1_000);
        recent.record_at(1_000);
        recent.record_at(1_030);
        assert_eq!(recent.last_minute_at(1_030), 3);
        assert_eq!(recent.last_minute_at(1_061), 1);
        recent.record_at(1_060); // reuses the slot of second 1_000
        assert_eq!(recent.last_minute_at(1_061), 2);
        assert_eq!(recent.last_minute_at(1_200), 0);
    }

    #[test]
    fn the_error_log_keeps_the_latest_answers_newest_first() {
        let recent = RecentErrors::default();
        for status in 500..530 {
            recent.record("POST", "/vote", status);
        }
        let latest = recent.latest();
        assert_eq!(latest.len(), super::LATEST_ERRORS);
        assert_eq!((latest[0].status, latest[super::LATEST_ERRORS - 1].status), (529, 510));
        assert_eq!(recent.last_minute(), 30);
    }
}
