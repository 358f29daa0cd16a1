//! Payment (port 8017): the shop's payment processor, with a real concurrency limit.
//!
//! Each authorization runs a fraud score — rounds of SipHash over the order, real CPU
//! work, sized at start so one takes about `work_ms` on this machine when it has the
//! CPU to itself (`measured_work_ms` on `/health` says what they really take) — on one
//! of `workers` workers. Authorizations wait for a worker in arrival order. A caller who stops
//! waiting does not take its authorization back: the processor finishes it all the
//! same (`shop_payment_abandoned_total`), as a card network does. That is what a retry
//! storm feeds on: once the queue is longer than the caller's timeout, every worker
//! scores orders nobody waits for any more, and every retry makes the queue longer.
//!
//! The processor is fast in normal operation. `POST /admin/payment` slows it (fewer
//! workers, more work per authorization), as a degraded provider is; the retry storm's
//! trigger and the Black Friday timeline's optional phase do that.

use std::collections::VecDeque;
use std::hash::Hasher;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use axum::extract::State;
use axum::routing::{get, post};
use axum::{Json, Router};
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::histogram::Histogram;
use prometheus_client::registry::Registry;
use serde::{Deserialize, Serialize};
use serde_json::Value;
use tokio::sync::Notify;

use super::cart::valid_id;
use super::{bad_request, json_integer, optional_integer};
use platform::Platform;
use platform::http::{ApiError, Confirmed, JsonBody};

/// The processor in normal operation: quick, and never the bottleneck of the shop — not
/// even at the Black Friday rush's 400 checkouts a second while the catalog's scans take
/// the CPU (at 4 workers and 2 ms it was, in CI: the planted retries then buried it and
/// the peak failed on payments instead of on the pool).
pub const NORMAL: PaymentSettings = PaymentSettings { workers: 8, work_ms: 1 };
/// Authorizations that may wait for a worker; past this the processor refuses at once.
pub const QUEUE_LIMIT: u64 = 2_000;
/// The calibration: samples long enough to time, few enough for a quick start.
const CALIBRATION: Duration = Duration::from_millis(10);
const CALIBRATION_SAMPLES: usize = 5;
/// Authorizations scored at once at most, whatever the settings and their changes (the
/// workers of a setting just replaced finish the one they are scoring).
const MAX_SCORING: usize = 64;

/// How many workers score authorizations, and how long one takes alone.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
pub struct PaymentSettings {
    #[schema(minimum = 1, maximum = 64)]
    pub workers: u32,
    #[schema(minimum = 1, maximum = 1000)]
    pub work_ms: u32,
}

impl PaymentSettings {
    /// Authorizations a second the processor completes at most.
    pub fn capacity(&self) -> f64 {
        f64::from(self.workers) * 1000.0 / f64::from(self.work_ms)
    }
}

/// An authorization waiting for a worker.
struct Job {
    enqueued: Instant,
    seed: u64,
    reply: tokio::sync::oneshot::Sender<(u64, u64, Duration)>,
}

struct Payment {
    settings: Mutex<PaymentSettings>,
    /// The authorizations waiting, in arrival order.
    queue: Mutex<VecDeque<Job>>,
    /// Rings when an authorization joins the queue.
    ready: Notify,
    /// The workers of the latest settings; the others leave after the authorization
    /// in progress. Changed under the queue's lock, so no worker of an older setting
    /// takes an authorization once it has changed.
    generation: AtomicU64,
    /// Set at shutdown: no authorization is queued any more.
    stopped: std::sync::atomic::AtomicBool,
    /// A seat each authorization being scored holds: [`MAX_SCORING`] in all.
    scoring: Arc<tokio::sync::Semaphore>,
    /// SipHash rounds a millisecond on this machine, measured at start.
    rounds_per_ms: u64,
    /// How long an authorization took lately, in ms (an f64's bits; 0: none since the
    /// last change).
    took: AtomicU64,
    next_id: AtomicU64,
    metrics: PaymentMetrics,
}

#[derive(Clone)]
struct PaymentMetrics {
    authorizations: Family<Vec<(String, String)>, Counter>,
    abandoned: Counter,
    queued: Gauge,
    busy: Gauge,
    workers: Gauge,
    wait: Histogram,
}

type Lab = State<Arc<Payment>>;

pub fn router(platform: &Platform, registry: &mut Registry) -> Router {
    let metrics = PaymentMetrics {
        authorizations: Family::default(),
        abandoned: Counter::default(),
        queued: Gauge::default(),
        busy: Gauge::default(),
        workers: Gauge::default(),
        wait: Histogram::new([0.001, 0.01, 0.05, 0.1, 0.25, 0.5, 1.0, 2.0, 5.0, 10.0, 30.0]),
    };
    registry.register(
        "shop_payment_authorizations",
        "Authorizations by outcome: authorized, queue_full (refused at once), dropped (by a reset)",
        metrics.authorizations.clone(),
    );
    registry.register(
        "shop_payment_abandoned",
        "Authorizations completed after their caller had stopped waiting: work done for nobody",
        metrics.abandoned.clone(),
    );
    registry.register("shop_payment_queue_depth", "Authorizations waiting for a worker", metrics.queued.clone());
    registry.register("shop_payment_busy_workers", "Workers scoring an authorization now", metrics.busy.clone());
    registry.register("shop_payment_workers", "Workers the processor has", metrics.workers.clone());
    registry.register(
        "shop_payment_queue_wait_seconds",
        "How long authorizations waited for a worker",
        metrics.wait.clone(),
    );
    let payment = Arc::new(Payment {
        settings: Mutex::new(NORMAL),
        queue: Mutex::default(),
        ready: Notify::new(),
        generation: AtomicU64::new(0),
        scoring: Arc::new(tokio::sync::Semaphore::new(MAX_SCORING)),
        stopped: std::sync::atomic::AtomicBool::new(false),
        rounds_per_ms: calibrate(),
        took: AtomicU64::new(0),
        next_id: AtomicU64::new(1),
        metrics,
    });
    payment.change(NORMAL, false);
    // On shutdown the waiting authorizations are answered (503) and the workers leave,
    // so a buried queue never holds the server's drain.
    let (stopping, shutdown) = (payment.clone(), platform.shutdown.clone());
    tokio::spawn(async move {
        shutdown.cancelled().await;
        stopping.stop();
    });
    let admin = platform.admin_only(
        Router::new().route("/admin/payment", get(settings).post(change)).route("/admin/reset", post(reset)),
    );
    Router::new()
        .route("/payments/authorize", post(authorize))
        .route("/health", get(health))
        .merge(admin)
        .merge(platform::openapi::route(super::openapi::payment()))
        .with_state(payment)
}

/// The fraud score: `rounds` of SipHash chained from `seed`. Real work the optimizer
/// cannot skip (each round needs the last).
fn fraud_score(seed: u64, rounds: u64) -> u64 {
    let mut value = seed;
    for _ in 0..rounds {
        let mut hasher = std::hash::DefaultHasher::new();
        hasher.write_u64(value);
        value = std::hint::black_box(hasher.finish());
    }
    value
}

/// A moving average of how long authorizations take (a fifth of the newest each time):
/// slower than `work_ms` when the machine is busy with more than the processor.
fn record(took: &AtomicU64, elapsed: Duration) {
    let ms = elapsed.as_secs_f64() * 1000.0;
    let _ = took.fetch_update(Ordering::Relaxed, Ordering::Relaxed, |bits| {
        let before = f64::from_bits(bits);
        Some(if before > 0.0 { before * 0.8 + ms * 0.2 } else { ms }.to_bits())
    });
}

/// SipHash rounds a millisecond here: timed over [`CALIBRATION`].
/// SipHash rounds a millisecond here: the fastest of a few short samples, the one the
/// machine's other work interrupted least. (What an authorization really takes under
/// load is measured as it runs: `measured_work_ms`.)
fn calibrate() -> u64 {
    let mut best = 1.0f64;
    let mut seed = 1;
    for _ in 0..CALIBRATION_SAMPLES {
        let started = Instant::now();
        let mut rounds = 0u64;
        while started.elapsed() < CALIBRATION {
            seed = fraud_score(seed, 1_000);
            rounds += 1_000;
        }
        best = best.max(rounds as f64 / (started.elapsed().as_secs_f64() * 1000.0));
    }
    std::hint::black_box(seed);
    best as u64
}

impl Payment {
    fn settings(&self) -> PaymentSettings {
        *self.settings.lock().unwrap_or_else(|p| p.into_inner())
    }

    fn queued(&self) -> u64 {
        self.queue.lock().unwrap_or_else(|p| p.into_inner()).len() as u64
    }

    /// A worker: takes the oldest authorization, scores it, answers — or, when nobody
    /// waits for the answer any more, counts the work as abandoned.
    async fn work(self: Arc<Self>, generation: u64) {
        loop {
            let ready = self.ready.notified();
            let job = {
                let mut queue = self.queue.lock().unwrap_or_else(|p| p.into_inner());
                if self.generation.load(Ordering::SeqCst) != generation {
                    drop(queue);
                    // A wake-up this worker took may have been meant for its successors.
                    self.ready.notify_one();
                    break;
                }
                let job = queue.pop_front();
                if job.is_some() && !queue.is_empty() {
                    // Several may have arrived with one wake-up stored: pass one on.
                    self.ready.notify_one();
                }
                job
            };
            let Some(job) = job else {
                ready.await;
                continue;
            };
            self.metrics.queued.dec();
            let Ok(_seat) = self.scoring.clone().acquire_owned().await else { break };
            let waited = job.enqueued.elapsed();
            self.metrics.wait.observe(waited.as_secs_f64());
            self.metrics.busy.inc();
            // The speed of now: a change applies to the authorizations already waiting.
            let rounds = self.rounds_per_ms * u64::from(self.settings().work_ms);
            let (seed, working) = (job.seed, Instant::now());
            let score = tokio::task::spawn_blocking(move || fraud_score(seed, rounds)).await;
            self.metrics.busy.dec();
            record(&self.took, working.elapsed());
            let Ok(score) = score else { continue };
            self.count("authorized");
            let id = self.next_id.fetch_add(1, Ordering::Relaxed);
            if job.reply.send((id, score, waited)).is_err() {
                self.metrics.abandoned.inc();
            }
        }
    }

    /// New settings and their workers (those of the old settings leave after the
    /// authorization they are scoring); with `drop_queue`, the authorizations waiting
    /// are answered 503 at once. The settings before.
    fn change(self: &Arc<Self>, settings: PaymentSettings, drop_queue: bool) -> PaymentSettings {
        let mut current = self.settings.lock().unwrap_or_else(|p| p.into_inner());
        let previous = std::mem::replace(&mut *current, settings);
        self.took.store(0, Ordering::Relaxed);
        let generation = self.retire(drop_queue);
        for _ in 0..settings.workers {
            tokio::spawn(self.clone().work(generation));
        }
        self.metrics.workers.set(i64::from(settings.workers));
        drop(current);
        previous
    }

    /// Every worker leaves and the waiting authorizations are answered 503.
    fn stop(&self) {
        let _settings = self.settings.lock().unwrap_or_else(|p| p.into_inner());
        {
            // Under the queue's lock: `authorize` reads it there before it queues.
            let _queue = self.queue.lock().unwrap_or_else(|p| p.into_inner());
            self.stopped.store(true, Ordering::SeqCst);
        }
        self.retire(true);
        self.metrics.workers.set(0);
    }

    /// A new generation of workers (the old ones leave), under the queue's lock; with
    /// `drop_queue` the queue emptied too. The new generation.
    fn retire(&self, drop_queue: bool) -> u64 {
        let mut queue = self.queue.lock().unwrap_or_else(|p| p.into_inner());
        let generation = self.generation.fetch_add(1, Ordering::SeqCst) + 1;
        if drop_queue {
            let dropped = queue.len();
            queue.clear();
            self.metrics.queued.dec_by(dropped as i64);
            for _ in 0..dropped {
                self.count("dropped");
            }
        }
        drop(queue);
        self.ready.notify_waiters();
        generation
    }

    fn count(&self, outcome: &str) {
        self.metrics.authorizations.get_or_create(&vec![("outcome".into(), outcome.into())]).inc();
    }
}

/// `POST /payments/authorize`.
#[derive(Deserialize, utoipa::ToSchema)]
#[schema(as = AuthorizationInput)]
pub struct AuthorizeBody {
    #[schema(value_type = String, required = true, min_length = 1, max_length = 64, pattern = "^[A-Za-z0-9_-]{1,64}$")]
    user_id: Option<Value>,
    #[schema(value_type = i64, required = true, minimum = 1, maximum = 9007199254740991_i64, example = 42)]
    product_id: Option<Value>,
    #[schema(value_type = Option<i64>, minimum = 1, maximum = 100, nullable, example = 1)]
    quantity: Option<Value>,
}

/// An authorization.
#[derive(Serialize, utoipa::ToSchema)]
pub struct Authorized {
    pub authorized: bool,
    /// `pay-1`, `pay-2`, …
    pub authorization_id: String,
    pub fraud_score: u32,
    /// How long it waited for a worker.
    pub queued_ms: u64,
}

/// `POST /payments/authorize {"user_id": "u1", "product_id": 42, "quantity": 1}`
#[utoipa::path(
    post,
    path = "/payments/authorize",
    tag = "payment",
    request_body = AuthorizeBody,
    responses(
        (status = 200, description = "Authorized", body = Authorized),
        (status = 400, description = "A bad user id, product id or quantity", body = super::openapi::ShopError),
        (status = 413, description = "Body over 64 KiB", body = super::openapi::ShopError),
        (status = 422, description = "Not a JSON object", body = super::openapi::ShopError),
        (status = 503, description = "The queue is full, or the authorization was dropped by a reset; see Retry-After", body = super::openapi::ShopError),
    )
)]
async fn authorize(State(lab): Lab, JsonBody(body): JsonBody<AuthorizeBody>) -> Result<Json<Authorized>, ApiError> {
    let user = match &body.user_id {
        Some(Value::String(user)) if valid_id(user) => user.clone(),
        _ => return Err(bad_request("user_id required: 1 to 64 letters, digits, '-' or '_'")),
    };
    let product = body
        .product_id
        .as_ref()
        .and_then(json_integer)
        .filter(|id| *id > 0)
        .ok_or_else(|| bad_request("product_id required: a positive integer"))?;
    let quantity = optional_integer(body.quantity.as_ref(), 1..=100, 1, super::QUANTITY)?;
    let queued = lab.queued();
    if queued >= QUEUE_LIMIT {
        lab.count("queue_full");
        let message = format!("payment queue full: {queued} authorizations waiting for a worker");
        return Err(ApiError::unavailable(message).as_error_field().with_retry_after(1));
    }
    let mut seed = std::hash::DefaultHasher::new();
    seed.write(user.as_bytes());
    seed.write_i64(product);
    seed.write_i64(quantity);
    let (reply, answer) = tokio::sync::oneshot::channel();
    // Queued, not run by this request: the authorization is scored even when the caller leaves.
    let job = Job { enqueued: Instant::now(), seed: seed.finish(), reply };
    {
        // Under the queue's lock, as `stop` sets it: nothing joins a queue no worker serves.
        let mut queue = lab.queue.lock().unwrap_or_else(|p| p.into_inner());
        if lab.stopped.load(Ordering::SeqCst) {
            return Err(ApiError::unavailable("the payment processor is shutting down")
                .as_error_field()
                .with_retry_after(1));
        }
        queue.push_back(job);
    }
    lab.metrics.queued.inc();
    lab.ready.notify_one();
    let (id, score, waited) = answer.await.map_err(|_| {
        ApiError::unavailable("the authorization was dropped: the payment processor was reset or reconfigured")
            .as_error_field()
            .with_retry_after(1)
    })?;
    Ok(Json(Authorized {
        authorized: true,
        authorization_id: format!("pay-{id}"),
        fraud_score: (score % 1000) as u32,
        queued_ms: waited.as_millis() as u64,
    }))
}

/// The processor's state: its settings, its queue, what it can do.
#[derive(Serialize, utoipa::ToSchema)]
pub struct PaymentReport {
    pub settings: PaymentSettings,
    pub normal: PaymentSettings,
    /// Authorizations a second it completes at most (workers × 1000 / work_ms).
    pub capacity_per_second: f64,
    /// How long an authorization has lately taken, in ms (null before the first since the
    /// last change): above `work_ms` when the machine is busy with more than the processor.
    pub measured_work_ms: Option<f64>,
    /// Authorizations waiting for a worker.
    pub queued: u64,
    pub busy_workers: u64,
}

fn report(lab: &Payment) -> PaymentReport {
    let settings = lab.settings();
    PaymentReport {
        settings,
        normal: NORMAL,
        capacity_per_second: settings.capacity(),
        measured_work_ms: Some(f64::from_bits(lab.took.load(Ordering::Relaxed))).filter(|ms| *ms > 0.0),
        queued: lab.queued(),
        busy_workers: u64::try_from(lab.metrics.busy.get()).unwrap_or(0),
    }
}

/// `GET /health`.
#[derive(Serialize, utoipa::ToSchema)]
pub struct PaymentHealth {
    pub status: &'static str,
    pub service: &'static str,
    pub payment: PaymentReport,
}

#[utoipa::path(
    get,
    path = "/health",
    tag = "probes",
    responses((status = 200, description = "ok; the processor's settings and queue", body = PaymentHealth))
)]
async fn health(State(lab): Lab) -> Json<PaymentHealth> {
    Json(PaymentHealth { status: "ok", service: "payment", payment: report(&lab) })
}

/// `GET /admin/payment`
#[utoipa::path(
    get,
    path = "/admin/payment",
    tag = "admin",
    security(("admin_token" = [])),
    responses(
        (status = 200, description = "The processor's settings and queue", body = PaymentReport),
        (status = 401, description = "Admin token missing or wrong", body = super::openapi::ShopError),
    )
)]
async fn settings(State(lab): Lab) -> Json<PaymentReport> {
    Json(report(&lab))
}

/// `POST /admin/payment`.
#[derive(Deserialize, utoipa::ToSchema)]
#[schema(as = PaymentInput)]
pub struct ChangeBody {
    #[schema(value_type = Option<i64>, minimum = 1, maximum = 64, nullable, example = 1)]
    workers: Option<Value>,
    #[schema(value_type = Option<i64>, minimum = 1, maximum = 1000, nullable, example = 20)]
    work_ms: Option<Value>,
}

/// What a change did.
#[derive(Serialize, utoipa::ToSchema)]
pub struct Changed {
    pub status: &'static str,
    pub payment: PaymentReport,
    pub previous: PaymentSettings,
}

/// `POST /admin/payment {"workers": 1, "work_ms": 20}`: a slower processor (the
/// authorizations waiting stay, at the new speed; absent fields keep their value).
#[utoipa::path(
    post,
    path = "/admin/payment",
    tag = "admin",
    security(("admin_token" = [])),
    request_body = ChangeBody,
    responses(
        (status = 200, description = "The processor runs with these settings", body = Changed),
        (status = 400, description = "Workers or work out of range", body = super::openapi::ShopError),
        (status = 401, description = "Admin token missing or wrong", body = super::openapi::ShopError),
        (status = 413, description = "Body over 64 KiB", body = super::openapi::ShopError),
        (status = 422, description = "Not a JSON object", body = super::openapi::ShopError),
    )
)]
async fn change(State(lab): Lab, JsonBody(body): JsonBody<ChangeBody>) -> Result<Json<Changed>, ApiError> {
    let now = lab.settings();
    let workers = optional_integer(
        body.workers.as_ref(),
        1..=64,
        i64::from(now.workers),
        "workers must be an integer from 1 to 64",
    )?;
    let work_ms = optional_integer(
        body.work_ms.as_ref(),
        1..=1000,
        i64::from(now.work_ms),
        "work_ms must be an integer from 1 to 1000",
    )?;
    let settings = PaymentSettings { workers: workers as u32, work_ms: work_ms as u32 };
    Ok(Json(apply(&lab, settings, "changed")))
}

fn apply(lab: &Arc<Payment>, settings: PaymentSettings, status: &'static str) -> Changed {
    // A reset empties the queue; a change keeps it, at the new speed.
    let previous = lab.change(settings, status == "reset");
    tracing::warn!(
        workers = settings.workers,
        work_ms = settings.work_ms,
        capacity_per_second = settings.capacity(),
        previous_workers = previous.workers,
        previous_work_ms = previous.work_ms,
        "payment_processor_changed"
    );
    Changed { status, payment: report(lab), previous }
}

/// `POST /admin/reset?confirm=yes`: the normal processor, its queue emptied.
#[utoipa::path(
    post,
    path = "/admin/reset",
    tag = "admin",
    security(("admin_token" = [])),
    params(platform::http::Confirmed),
    responses(
        (status = 200, description = "The normal processor, nothing waiting", body = Changed),
        platform::openapi::ResetRefusals,
    )
)]
async fn reset(State(lab): Lab, _: Confirmed) -> Json<Changed> {
    Json(apply(&lab, NORMAL, "reset"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_fraud_score_is_deterministic_and_depends_on_every_round() {
        assert_eq!(fraud_score(7, 100), fraud_score(7, 100));
        assert_ne!(fraud_score(7, 100), fraud_score(7, 101));
        assert_ne!(fraud_score(7, 100), fraud_score(8, 100));
    }

    #[test]
    fn capacity_is_workers_times_what_one_completes_a_second() {
        assert_eq!(PaymentSettings { workers: 1, work_ms: 20 }.capacity(), 50.0);
        assert_eq!(NORMAL.capacity(), 8000.0);
    }
}
