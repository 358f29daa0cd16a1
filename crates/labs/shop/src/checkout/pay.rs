//! Checkout's payment client — THE PLANTED BUG OF `shop/retry-storm` LIVES IN THIS FILE.
//!
//! The story: checkout authorizes each order's payment with the payment processor
//! before it places the order, and gives each call [`CALL_TIMEOUT`]. When the call
//! fails — a timeout, a 503 — it tries again. Under the Black Friday peak the processor
//! slows: its queue grows past the timeout, so calls time out while the processor
//! still scores them. Every timeout is a retry, every retry one more authorization in
//! the queue: the load on the processor multiplies until it does nothing but work for
//! callers who left, and checkouts keep failing after the peak has passed.
//!
//! Both implementations sit side by side below. `retry_immediately` is the buggy one
//! that runs by default: up to five retries at once, no wait, no limit on how many the
//! whole checkout sends. `retry_with_backoff` is the fix (`--fixed retry-storm`): at
//! most two retries, each after an exponential backoff with full jitter, and only while
//! the retry budget lasts — each first call earns a tenth of a retry, at most ten are
//! saved up, so past a burst of ten retries add at most a tenth to the calls checkout
//! makes, however many fail.

use std::sync::Mutex;
use std::time::Duration;

use opentelemetry::KeyValue;
use opentelemetry::trace::{SpanKind, TraceContextExt};
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::registry::Registry;
use rand::Rng;
use serde_json::Value;

use crate::trace::{RequestTrace, ServiceTrace, inject};
use platform::bugs::BugSwitch;

/// How long checkout waits for one authorization.
pub const CALL_TIMEOUT: Duration = Duration::from_secs(1);
/// BUGGY: retries after a failed call, sent at once.
pub const IMMEDIATE_RETRIES: u32 = 5;
/// FIXED: retries after a failed call, each after a backoff.
pub const MAX_RETRIES: u32 = 2;
/// FIXED: the first backoff's ceiling; it doubles with each retry (full jitter below it).
const BACKOFF_BASE: Duration = Duration::from_millis(100);
/// FIXED: the retry budget — each first call earns this share of a retry…
const BUDGET_RATIO: f64 = 0.1;
/// …and at most this many retries are saved up.
const BUDGET_MAX: f64 = 10.0;

/// Checkout's calls to the payment processor.
pub struct Payments {
    client: reqwest::Client,
    url: String,
    bug: BugSwitch,
    budget: Mutex<f64>,
    metrics: PayMetrics,
}

#[derive(Clone)]
struct PayMetrics {
    calls: Family<Vec<(String, String)>, Counter>,
    failures: Family<Vec<(String, String)>, Counter>,
    budget_exhausted: Counter,
}

/// Why a payment could not be authorized: the calls made and the last failure.
pub struct Unpaid {
    pub calls: u32,
    pub last: String,
}

impl Payments {
    pub fn new(url: String, bug: BugSwitch, registry: &mut Registry) -> Payments {
        let metrics =
            PayMetrics { calls: Family::default(), failures: Family::default(), budget_exhausted: Counter::default() };
        registry.register(
            "shop_payment_calls",
            "Calls to the payment processor: a checkout's first call, or a retry",
            metrics.calls.clone(),
        );
        registry.register(
            "shop_payment_call_failures",
            "Calls to the payment processor that failed, by reason (timeout, unavailable, unreachable)",
            metrics.failures.clone(),
        );
        registry.register(
            "shop_payment_retry_budget_exhausted",
            "Retries not sent because the retry budget was spent",
            metrics.budget_exhausted.clone(),
        );
        let client = platform::http::client().timeout(CALL_TIMEOUT).build().expect("an HTTP client builds");
        Payments { client, url: format!("{url}/payments/authorize"), bug, budget: Mutex::new(BUDGET_MAX), metrics }
    }

    /// Authorizes `order`; the number of calls it took, or why it could not.
    pub async fn authorize(&self, trace: &ServiceTrace, request: &RequestTrace, order: &Value) -> Result<u32, Unpaid> {
        let outcome = if self.bug.is_fixed() {
            self.retry_with_backoff(trace, request, order).await
        } else {
            self.retry_immediately(trace, request, order).await
        };
        let calls = match &outcome {
            Ok(calls) => *calls,
            Err(unpaid) => unpaid.calls,
        };
        request.set([KeyValue::new("payment.calls", i64::from(calls)), KeyValue::new("payment.ok", outcome.is_ok())]);
        outcome
    }

    // ---- BUGGY: every failure retried at once, as often as it fails ----
    async fn retry_immediately(
        &self,
        trace: &ServiceTrace,
        request: &RequestTrace,
        order: &Value,
    ) -> Result<u32, Unpaid> {
        let mut last = String::new();
        for attempt in 0..=IMMEDIATE_RETRIES {
            match self.call(trace, request, order, attempt).await {
                Ok(()) => return Ok(attempt + 1),
                Err(failure) => last = failure,
            }
        }
        Err(Unpaid { calls: IMMEDIATE_RETRIES + 1, last })
    }

    // ---- FIXED: bounded retries, exponential backoff with full jitter, a retry budget ----
    async fn retry_with_backoff(
        &self,
        trace: &ServiceTrace,
        request: &RequestTrace,
        order: &Value,
    ) -> Result<u32, Unpaid> {
        self.earn();
        let mut last = String::new();
        let mut calls = 0;
        for attempt in 0..=MAX_RETRIES {
            if attempt > 0 {
                if !self.spend() {
                    self.metrics.budget_exhausted.inc();
                    last = format!("{last}; no retry: the retry budget is spent");
                    break;
                }
                let ceiling = BACKOFF_BASE * 2u32.pow(attempt - 1);
                let wait = rand::rng().random_range(Duration::ZERO..=ceiling);
                tokio::time::sleep(wait).await;
            }
            calls += 1;
            match self.call(trace, request, order, attempt).await {
                Ok(()) => return Ok(calls),
                Err(failure) => last = failure,
            }
        }
        Err(Unpaid { calls, last })
    }

    /// A first call earns a tenth of a retry.
    fn earn(&self) {
        let mut budget = self.budget.lock().unwrap_or_else(|p| p.into_inner());
        *budget = (*budget + BUDGET_RATIO).min(BUDGET_MAX);
    }

    /// A retry spends one, when there is one.
    fn spend(&self) -> bool {
        let mut budget = self.budget.lock().unwrap_or_else(|p| p.into_inner());
        if *budget < 1.0 {
            return false;
        }
        *budget -= 1.0;
        true
    }

    /// One call, in a client span; `Err` says why it failed. Checkout sends only orders
    /// it has validated, so every answer but a 2xx is the processor's failure.
    async fn call(
        &self,
        trace: &ServiceTrace,
        request: &RequestTrace,
        order: &Value,
        attempt: u32,
    ) -> Result<(), String> {
        let kind = if attempt == 0 { "first" } else { "retry" };
        self.metrics.calls.get_or_create(&vec![("attempt".into(), kind.into())]).inc();
        let span = trace.child(request, "payment /payments/authorize", SpanKind::Client);
        span.set([KeyValue::new("payment.attempt", i64::from(attempt) + 1)]);
        let mut headers = axum::http::HeaderMap::new();
        inject(&span, &mut headers);
        let outcome = match self.client.post(&self.url).headers(headers).json(order).send().await {
            Ok(response) if response.status().is_success() => Ok(()),
            Ok(response) => {
                let status = response.status().as_u16();
                let body: Value = response.json().await.unwrap_or(Value::Null);
                let said = body["error"].as_str().or(body["detail"].as_str()).unwrap_or("").to_string();
                span.set([KeyValue::new("http.response.status_code", i64::from(status))]);
                Err(("unavailable", format!("the processor answered {status}: {said}")))
            }
            Err(error) if error.is_timeout() => {
                Err(("timeout", format!("no answer within {} ms", CALL_TIMEOUT.as_millis())))
            }
            Err(error) => Err(("unreachable", format!("the processor could not be reached: {error}"))),
        };
        if let Err((reason, _)) = &outcome {
            span.set([KeyValue::new("payment.failure", *reason)]);
            span.0.span().set_status(opentelemetry::trace::Status::error("payment call failed"));
            self.metrics.failures.get_or_create(&vec![("reason".into(), (*reason).into())]).inc();
        }
        span.0.span().end();
        outcome.map_err(|(_, message)| message)
    }
}
