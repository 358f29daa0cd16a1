//! The engine: an open model on a schedule of absolute deadlines, or a closed model of
//! C connections as fast as they go.
//!
//! Open model: the n-th arrival is due at `start + t_n`, where `t_{n+1} = t_n +
//! 1/rate(t_n)`. Each arrival starts on its own task whether or not earlier ones have
//! answered, and its latency is measured from its *intended* start, so a slow server
//! cannot hide its latency by slowing the driver down (no coordinated omission). When
//! `max_in_flight` journeys are already running, a due arrival is counted as dropped
//! rather than silently delayed.

use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use http_body_util::{BodyExt, Full};
use hyper::body::Bytes;
use hyper_rustls::HttpsConnector;
use hyper_util::client::legacy::Client;
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::rt::TokioExecutor;
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;

use super::profile::{Journey, Profile};
use super::record::{Outcome, Recorder};
use super::shape::Shape;
use super::wire::Wire;

pub type HttpClient = Client<HttpsConnector<HttpConnector>, Full<Bytes>>;

/// Keep-alive connections, as many as the run needs; `https://` with the platform's TLS
/// (the system's CA certificates and `SSL_CERT_FILE`).
pub fn client() -> HttpClient {
    Client::builder(TokioExecutor::new()).pool_max_idle_per_host(usize::MAX).build(connector())
}

/// TCP, and TLS for `https://`.
pub fn connector() -> HttpsConnector<HttpConnector> {
    let mut connector = HttpConnector::new();
    connector.set_nodelay(true);
    connector.enforce_http(false);
    hyper_rustls::HttpsConnectorBuilder::new()
        .with_tls_config(platform::http::tls_config())
        .https_or_http()
        .enable_http1()
        .wrap_connector(connector)
}

fn is_absolute(path: &str) -> bool {
    path.starts_with("http://") || path.starts_with("https://")
}

/// What the run does: open (a timeline of rates) or closed (C connections, max rate).
#[derive(Debug, Clone)]
pub enum Model {
    Open { shape: Shape, max_in_flight: usize },
    Closed { connections: usize, duration: Duration },
}

/// Shared between the engine, the progress line and the control API.
pub struct Run {
    pub profile: Profile,
    pub base: String,
    /// Shared with the runs started [`Run::alongside`] this one.
    pub recorder: Arc<Recorder>,
    pub stop: CancellationToken,
    pub started: Mutex<Option<Instant>>,
    /// A rate set through `POST /rate`; replaces the timeline from then on.
    pub rate_override: Mutex<Option<f64>>,
    pub max_requests: Option<u64>,
    pub timeout: Duration,
    pub ids: Vec<String>,
    pub target_rps: Mutex<f64>,
    /// The figures since the last [`Recorder::take`]: a timeline's minute.
    pub window: Arc<Recorder>,
    /// The figures since a moment of the caller's choosing (its own [`Recorder::take`]):
    /// a timeline's "since the fault".
    pub mark: Arc<Recorder>,
    /// Set when the timeline switches to the profile's later journey mix.
    pub later_mix: std::sync::atomic::AtomicBool,
    sequence: AtomicU64,
    journeys: AtomicU64,
    /// Requests of this run answered (or failed) so far; runs started alongside count their own.
    answered: AtomicU64,
}

impl Run {
    pub fn new(profile: Profile, base: String, max_requests: Option<u64>, timeout: Duration, ids: Vec<String>) -> Run {
        Run {
            profile,
            base,
            recorder: Arc::default(),
            stop: CancellationToken::new(),
            started: Mutex::new(None),
            rate_override: Mutex::new(None),
            max_requests,
            timeout,
            ids,
            target_rps: Mutex::new(0.0),
            window: Arc::default(),
            mark: Arc::default(),
            later_mix: std::sync::atomic::AtomicBool::new(false),
            sequence: AtomicU64::new(0),
            journeys: AtomicU64::new(0),
            answered: AtomicU64::new(0),
        }
    }

    /// A second run of `profile` that records into this one's figures (all three) and
    /// stops when it stops; it may also be stopped alone. Its pace is its own.
    pub fn alongside(&self, profile: Profile) -> Run {
        let mut run = Run::new(profile, self.base.clone(), None, self.timeout, self.ids.clone());
        run.recorder = self.recorder.clone();
        run.window = self.window.clone();
        run.mark = self.mark.clone();
        run.stop = self.stop.child_token();
        run
    }

    /// How many of this run's own requests have an outcome (whatever its figures share).
    pub fn answered(&self) -> u64 {
        self.answered.load(Ordering::Relaxed)
    }

    pub fn elapsed(&self) -> Duration {
        self.started.lock().unwrap_or_else(|p| p.into_inner()).map_or(Duration::ZERO, |s| s.elapsed())
    }

    fn pick_journey(&self) -> usize {
        self.profile.pick_journey(&mut rand::rng(), self.later_mix.load(Ordering::Relaxed))
    }

    fn count_reached(&self, sent: u64) -> bool {
        self.max_requests.is_some_and(|max| sent >= max)
    }
}

/// How a journey's requests travel: through the shared pool (the open model, where
/// any number of journeys overlap), or over a closed-model connection's own keep-alive
/// connections — one per host, as wrk keeps one per slot — with no pool to check out
/// from and no lock shared with the other connections.
pub enum Transport<'a> {
    Pooled(&'a HttpClient),
    Own(&'a mut OwnConnections),
}

/// A closed-model connection's keep-alive connections, one per host (`127.0.0.1:8000`),
/// each a [`Wire`]: driven by the task that sends on it, as wrk's event loop does.
#[derive(Default)]
pub struct OwnConnections {
    hosts: Vec<(String, Wire)>,
}

/// Why an exchange on an own connection failed.
enum OwnFailure {
    Connect,
    Other,
}

impl OwnConnections {
    /// The status of `method target` on `authority` once its whole body has arrived, on
    /// this host's connection, opened (again) when there is none or the server closed it.
    async fn exchange(
        &mut self,
        method: &hyper::Method,
        authority: &str,
        target: &str,
        body: Option<&str>,
    ) -> Result<u16, OwnFailure> {
        let index = self.connection_to(authority).await?;
        let exchanged = self.hosts[index].1.exchange(method.as_str(), authority, target, body.map(str::as_bytes)).await;
        match exchanged {
            Ok((status, true)) => Ok(status),
            Ok((status, false)) => {
                self.hosts.swap_remove(index);
                Ok(status)
            }
            Err(_) => {
                self.hosts.swap_remove(index);
                Err(OwnFailure::Other)
            }
        }
    }

    /// The index of an open connection to `authority`, connecting when needed.
    async fn connection_to(&mut self, authority: &str) -> Result<usize, OwnFailure> {
        if let Some(index) = self.hosts.iter().position(|(host, _)| host == authority) {
            // Closed by the server while idle: a new one, rather than a request sent into
            // a closed connection and counted as an error.
            if !self.hosts[index].1.closed_while_idle().await {
                return Ok(index);
            }
            self.hosts.swap_remove(index);
        }
        let wire = Wire::connect(authority).await.map_err(|_| OwnFailure::Connect)?;
        self.hosts.push((authority.to_owned(), wire));
        Ok(self.hosts.len() - 1)
    }
}

/// The authority and origin-form target of `path` (a path on `base`, or a full
/// `http://` URL).
fn split_target<'a>(base: &'a str, path: &'a str) -> Option<(&'a str, &'a str)> {
    let (url, path) = if path.starts_with("http://") { (path, None) } else { (base, Some(path)) };
    let rest = url.strip_prefix("http://")?;
    let (authority, own_path) = rest.split_at(rest.find('/').unwrap_or(rest.len()));
    let target = match path {
        Some(path) if own_path.is_empty() => path,
        Some(_) => return None, // a base with a path of its own: not what the driver is given
        None if own_path.is_empty() => "/",
        None => own_path,
    };
    Some((authority, target))
}

/// Sends one request; returns its outcome once the whole body has arrived.
async fn send(
    transport: &mut Transport<'_>,
    run: &Run,
    method: hyper::Method,
    path: &str,
    body: Option<String>,
) -> Outcome {
    let connections = match transport {
        Transport::Pooled(client) => return send_pooled(client, run, method, path, body).await,
        Transport::Own(connections) => connections,
    };
    let Some((authority, target)) = split_target(&run.base, path) else {
        return Outcome::Other;
    };
    match tokio::time::timeout(run.timeout, connections.exchange(&method, authority, target, body.as_deref())).await {
        Ok(Ok(status)) => Outcome::Status(status),
        Ok(Err(OwnFailure::Connect)) => Outcome::Connect,
        Ok(Err(OwnFailure::Other)) => Outcome::Other,
        Err(_) => {
            // A request abandoned mid-exchange leaves its connection unusable.
            connections.hosts.clear();
            Outcome::Timeout
        }
    }
}

async fn send_pooled(
    client: &HttpClient,
    run: &Run,
    method: hyper::Method,
    path: &str,
    body: Option<String>,
) -> Outcome {
    let uri = if is_absolute(path) { path.to_string() } else { format!("{}{}", run.base, path) };
    let mut request = hyper::Request::builder().method(method).uri(uri);
    if body.is_some() {
        request = request.header(hyper::header::CONTENT_TYPE, "application/json");
    }
    let Ok(request) = request.body(Full::new(Bytes::from(body.unwrap_or_default()))) else {
        return Outcome::Other;
    };
    let exchange = async {
        let response = client.request(request).await?;
        let status = response.status().as_u16();
        // Read the body so the connection goes back to the pool.
        let _ = response.into_body().collect().await;
        Ok::<_, hyper_util::client::legacy::Error>(status)
    };
    match tokio::time::timeout(run.timeout, exchange).await {
        Ok(Ok(status)) => Outcome::Status(status),
        Ok(Err(error)) if error.is_connect() => Outcome::Connect,
        Ok(Err(_)) => Outcome::Other,
        Err(_) => Outcome::Timeout,
    }
}

/// Runs a journey's steps; the first step's latency counts from `intended`.
async fn journey(transport: &mut Transport<'_>, run: &Run, journey: &Journey, intended: Instant) {
    let number = run.journeys.fetch_add(1, Ordering::Relaxed);
    for (i, step) in journey.steps.iter().enumerate() {
        if i > 0 && !journey.think.is_zero() {
            tokio::time::sleep(journey.think).await;
        }
        let from = if i == 0 { intended } else { Instant::now() };
        let (path, body) = {
            let mut rng = rand::rng();
            let n = run.sequence.fetch_add(1, Ordering::Relaxed);
            let path = run.profile.fill(&mut rng, &step.path, n, number, &run.ids);
            let body = step.body.as_ref().map(|b| run.profile.fill(&mut rng, b, n, number, &run.ids));
            (path, body)
        };
        let outcome = send(transport, run, step.method.clone(), &path, body).await;
        let latency = from.elapsed();
        run.recorder.record(&step.name, outcome, latency);
        run.window.record(&step.name, outcome, latency);
        run.mark.record(&step.name, outcome, latency);
        run.answered.fetch_add(1, Ordering::Relaxed);
        if outcome.error_kind().is_some() {
            break; // a failed step ends the journey, as it would for a person
        }
    }
}

/// Runs the model until its timeline ends, its request count is reached, or `stop`.
pub async fn drive(run: Arc<Run>, model: Model) {
    let client = client();
    let start = Instant::now();
    *run.started.lock().unwrap_or_else(|p| p.into_inner()) = Some(start);
    match model {
        Model::Open { shape, max_in_flight } => open(run, client, shape, max_in_flight, start).await,
        Model::Closed { connections, duration } => closed(run, connections, start + duration).await,
    }
}

async fn open(run: Arc<Run>, client: HttpClient, shape: Shape, max_in_flight: usize, start: Instant) {
    let in_flight = Arc::new(AtomicUsize::new(0));
    let mut tasks = tokio::task::JoinSet::new();
    let mut sent = 0u64;
    // Seconds since start at which the previous request was due.
    let mut t = 0.0f64;
    loop {
        if run.count_reached(sent) {
            break;
        }
        let overridden = *run.rate_override.lock().unwrap_or_else(|p| p.into_inner());
        // A rate set through the control API changes the pace, not the run's length.
        let end = shape.total().as_secs_f64();
        let next = match overridden {
            Some(rps) if rps > 0.0 => {
                // Arrivals due while this loop waited for a busy runtime are sent late,
                // not skipped (up to a second of them, or one): a starved driver must
                // not quietly ask for less than its rate. Longer gaps (a pause, a new
                // rate after a slow one) start afresh.
                let backlog = (1.0 / rps).max(1.0);
                let next = t.max(start.elapsed().as_secs_f64() - backlog) + 1.0 / rps;
                (next < end).then_some(next)
            }
            Some(_) => {
                // Paused by the control API: look again in 10 ms.
                t = start.elapsed().as_secs_f64();
                if t >= end {
                    break;
                }
                tokio::select! {
                    _ = run.stop.cancelled() => break,
                    _ = tokio::time::sleep(Duration::from_millis(10)) => continue,
                }
            }
            None => shape.next_arrival(t),
        };
        let Some(next) = next else { break };
        *run.target_rps.lock().unwrap_or_else(|p| p.into_inner()) = overridden.unwrap_or_else(|| shape.rate_at(next));
        t = next;
        let due = start + Duration::from_secs_f64(t);
        tokio::select! {
            _ = run.stop.cancelled() => break,
            _ = tokio::time::sleep_until(due) => {}
        }
        sent += 1;
        if in_flight.load(Ordering::Acquire) >= max_in_flight {
            run.recorder.drop_one();
            run.window.drop_one();
            run.mark.drop_one();
            continue;
        }
        in_flight.fetch_add(1, Ordering::AcqRel);
        let (run, client, in_flight) = (run.clone(), client.clone(), in_flight.clone());
        tasks.spawn(async move {
            let chosen = run.pick_journey();
            journey(&mut Transport::Pooled(&client), &run, &run.profile.journeys[chosen], due).await;
            in_flight.fetch_sub(1, Ordering::AcqRel);
        });
        // Reap finished tasks so the set does not grow for the whole run.
        while tasks.try_join_next().is_some() {}
    }
    // In-flight journeys finish (each bounded by the request timeout) unless stopped.
    tokio::select! {
        _ = run.stop.cancelled() => tasks.abort_all(),
        _ = async { while tasks.join_next().await.is_some() {} } => {}
    }
}

/// The closed model runs like wrk: one event loop per core (a thread with a runtime of
/// its own), each with its share of the connections, so a response wakes the loop that
/// sent the request and no other thread.
async fn closed(run: Arc<Run>, connections: usize, end: Instant) {
    let connections = connections.max(1);
    let loops = std::thread::available_parallelism().map_or(1, usize::from).min(connections);
    let sent = Arc::new(AtomicU64::new(0));
    let mut finished = Vec::new();
    for index in 0..loops {
        let share = connections / loops + usize::from(index < connections % loops);
        let (run, sent) = (run.clone(), sent.clone());
        let (done, finish) = tokio::sync::oneshot::channel::<()>();
        finished.push(finish);
        let connections = closed_loop(run, sent, share, end);
        match tokio::runtime::Builder::new_current_thread().enable_all().build() {
            Ok(runtime) => {
                std::thread::spawn(move || {
                    runtime.block_on(connections);
                    let _ = done.send(());
                });
            }
            // No thread to be had: this share runs with the rest of the program.
            Err(_) => {
                tokio::spawn(async move {
                    connections.await;
                    let _ = done.send(());
                });
            }
        }
    }
    for finish in finished {
        let _ = finish.await;
    }
}

/// `connections` closed-model connections on the current thread's runtime.
async fn closed_loop(run: Arc<Run>, sent: Arc<AtomicU64>, connections: usize, end: Instant) {
    let mut workers = tokio::task::JoinSet::new();
    // The own connections speak plain HTTP only; when any request goes over TLS each
    // connection goes through the pool (one journey at a time each: still a closed model).
    let https = |path: &str| path.starts_with("https://");
    let steps = run.profile.journeys.iter().flat_map(|j| &j.steps);
    let tls = (https(&run.base) || steps.clone().any(|s| https(&s.path))).then(client);
    for _ in 0..connections {
        let (run, sent, tls) = (run.clone(), sent.clone(), tls.clone());
        workers.spawn(async move {
            let mut own = OwnConnections::default();
            let mut transport = match &tls {
                Some(client) => Transport::Pooled(client),
                None => Transport::Own(&mut own),
            };
            // Only a run with a request count shares a counter: a value every connection
            // writes on every request is a cost they all pay, on every core.
            let counted = run.max_requests.is_some();
            while Instant::now() < end && !run.stop.is_cancelled() {
                if counted && run.count_reached(sent.fetch_add(1, Ordering::AcqRel)) {
                    return;
                }
                let chosen = run.pick_journey();
                journey(&mut transport, &run, &run.profile.journeys[chosen], Instant::now()).await;
            }
        });
    }
    // A stop ends every connection where it is; they do not each watch for it.
    let stopped = tokio::select! {
        _ = run.stop.cancelled() => true,
        _ = async { while workers.join_next().await.is_some() {} } => false,
    };
    if stopped {
        workers.abort_all();
        while workers.join_next().await.is_some() {}
    }
}

#[cfg(test)]
mod tests {
    use super::split_target;

    #[test]
    fn a_path_goes_to_the_base_and_a_full_url_to_its_own_host() {
        assert_eq!(split_target("http://127.0.0.1:8000", "/vote"), Some(("127.0.0.1:8000", "/vote")));
        assert_eq!(
            split_target("http://127.0.0.1:8000", "http://127.0.0.1:8011/cart/a?x=1"),
            Some(("127.0.0.1:8011", "/cart/a?x=1"))
        );
        assert_eq!(split_target("http://127.0.0.1:8000", "http://127.0.0.1:8011"), Some(("127.0.0.1:8011", "/")));
        assert_eq!(split_target("https://example.org", "/vote"), None);
    }
}
