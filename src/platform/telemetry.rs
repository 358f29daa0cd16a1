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
    pub requests: Family<RequestLabels, Counter>,
    pub duration: Family<RouteLabels, Histogram>,
    /// 5xx answers per second over the last minute, for a presenter's glance.
    pub recent_errors: std::sync::Arc<RecentErrors>,
}

/// Counts events in one-second buckets over a sliding minute.
#[derive(Debug)]
pub struct RecentErrors {
    buckets: std::sync::Mutex<[(u64, u64); 60]>,
}

impl Default for RecentErrors {
    fn default() -> Self {
        RecentErrors { buckets: std::sync::Mutex::new([(0, 0); 60]) }
    }
}

impl RecentErrors {
    fn now() -> u64 {
        std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map(|d| d.as_secs()).unwrap_or(0)
    }

    pub fn record(&self) {
        self.record_at(Self::now());
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
        HttpMetrics {
            requests: Family::default(),
            duration: Family::new_with_constructor(|| Histogram::new(LATENCY_BUCKETS)),
            recent_errors: Default::default(),
        }
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
/// `otlp_endpoint` is set. Each gets its own filter: the log lines carry events only
/// (no span context), so without a collector nobody wants a span and none is made —
/// a request then costs its log line, not a span's bookkeeping too.
pub fn init(service_name: &str, otlp_endpoint: Option<&str>) -> anyhow::Result<TelemetryGuard> {
    use tracing_subscriber::Layer;
    use tracing_subscriber::filter::FilterExt;
    let directives = std::env::var(EnvFilter::DEFAULT_ENV).unwrap_or_else(|_| "info,sqlx=warn".into());
    let filter = || EnvFilter::try_new(&directives).unwrap_or_else(|_| EnvFilter::new("info,sqlx=warn"));
    let logs = tracing_subscriber::fmt::layer()
        .json()
        .flatten_event(true)
        .with_current_span(false)
        .with_span_list(false)
        .with_target(true)
        .with_filter(filter().and(events_only()));
    let provider = match otlp_endpoint {
        Some(endpoint) => Some(tracer_provider(service_name, endpoint)?),
        None => None,
    };
    let traces = provider
        .as_ref()
        .map(|p| tracing_opentelemetry::layer().with_tracer(p.tracer("breakroom")).with_filter(filter()));
    tracing_subscriber::registry().with(logs).with(traces).try_init()?;
    Ok(TelemetryGuard { provider })
}

/// Events, never spans, decided once per callsite (not per call).
fn events_only<S>() -> impl tracing_subscriber::layer::Filter<S> {
    use tracing::subscriber::Interest;
    tracing_subscriber::filter::DynFilterFn::new(|metadata, _| metadata.is_event())
        .with_callsite_filter(|metadata| if metadata.is_span() { Interest::never() } else { Interest::always() })
}

/// Logs only, for the client commands.
pub fn init_logs_only() {
    let filter = EnvFilter::try_from_default_env().unwrap_or_else(|_| EnvFilter::new("warn"));
    let _ = tracing_subscriber::fmt().with_env_filter(filter).with_writer(std::io::stderr).try_init();
}

/// A tracer provider of its own for one service of a lab that runs several in one
/// process (each keeps its `service.name`). Without an endpoint spans are still made,
/// so trace context still flows between the services, but nothing is exported.
pub fn service_tracer_provider(service_name: &str, endpoint: Option<&str>) -> anyhow::Result<SdkTracerProvider> {
    match endpoint {
        Some(endpoint) => tracer_provider(service_name, endpoint),
        None => {
            let resource = opentelemetry_sdk::Resource::builder().with_service_name(service_name.to_string()).build();
            Ok(SdkTracerProvider::builder().with_resource(resource).build())
        }
    }
}

fn tracer_provider(service_name: &str, endpoint: &str) -> anyhow::Result<SdkTracerProvider> {
    use opentelemetry_otlp::WithExportConfig;
    let endpoint = endpoint.trim_end_matches('/');
    let url = if endpoint.ends_with("/v1/traces") { endpoint.to_string() } else { format!("{endpoint}/v1/traces") };
    // The blocking client runs on the batch exporter's own thread; the async one
    // panics there outside a Tokio context.
    let exporter = opentelemetry_otlp::SpanExporter::builder().with_http().with_endpoint(url).build()?;
    opentelemetry::global::set_text_map_propagator(opentelemetry_sdk::propagation::TraceContextPropagator::new());
    let resource = opentelemetry_sdk::Resource::builder().with_service_name(service_name.to_string()).build();
    Ok(SdkTracerProvider::builder().with_batch_exporter(exporter).with_resource(resource).build())
}

#[cfg(test)]
mod tests {
    use super::RecentErrors;

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
}
