//! The shop's four services as the timeline, `demonstrate` and `rehearse` reach them:
//! over HTTP, with the admin token for the fault actions, and checkout's own figures
//! read from its `/metrics`.

use std::sync::Arc;
use std::time::Duration;

use serde_json::json;
use tokio::time::Instant;

use driver::ShopUrls;
use driver::profile;
use platform::stage::{StageError, Target, metric_value};

use crate::checkout::RESERVATION_METRIC;
use crate::timeline::FALLBACK_PEAK_RPM;

/// Full scans a journey causes once the indexes are gone (later mix): a catalog
/// listing each, plus checkout's restock reservation for the 30% who buy.
const SCANS_PER_JOURNEY: f64 = 1.3;
/// The share of the measured scan capacity the peak asks for once the indexes are gone:
/// enough for queues (p95 past 2 s), not so much that the catalog never catches up.
const TARGET_UTILIZATION: f64 = 0.7;

/// The shop's services and the admin token their fault actions need.
#[derive(Clone)]
pub struct Shop {
    pub urls: ShopUrls,
    pub catalog: Arc<Target>,
    pub cart: Arc<Target>,
    pub checkout: Arc<Target>,
    pub payment: Arc<Target>,
    pub token: String,
}

/// DDL on a big table waits for the scans in flight: admin calls get long.
const ADMIN_TIMEOUT: Duration = Duration::from_secs(300);

impl Shop {
    pub fn new(urls: &ShopUrls, token: String) -> Result<Shop, StageError> {
        let urls = urls.trimmed();
        for url in [&urls.catalog_url, &urls.cart_url, &urls.checkout_url, &urls.payment_url] {
            if !url.starts_with("http://") && !url.starts_with("https://") {
                return Err(StageError(format!("'{url}': a shop service's URL starts with http:// or https://")));
            }
        }
        Ok(Shop {
            catalog: Arc::new(Target::with_timeout(&urls.catalog_url, "shop", ADMIN_TIMEOUT)?),
            cart: Arc::new(Target::with_timeout(&urls.cart_url, "shop", ADMIN_TIMEOUT)?),
            checkout: Arc::new(Target::with_timeout(&urls.checkout_url, "shop", ADMIN_TIMEOUT)?),
            payment: Arc::new(Target::with_timeout(&urls.payment_url, "shop", ADMIN_TIMEOUT)?),
            urls,
            token,
        })
    }

    pub async fn drop_indexes(&self) -> Result<String, StageError> {
        let reply = platform::stage::admin_call(&self.catalog, "/admin/indexes/drop", &self.token, None).await?;
        let dropped = reply.json().map(|v| v["dropped"].to_string()).unwrap_or_default();
        Ok(format!("DROP INDEX {dropped}"))
    }

    pub async fn shrink_pool(&self, size: u32, timeout_ms: u64) -> Result<String, StageError> {
        let body = json!({ "max_connections": size, "acquire_timeout_ms": timeout_ms });
        platform::stage::admin_call(&self.checkout, "/admin/pool", &self.token, Some(body)).await?;
        Ok(format!("checkout pool: {size} connections, {timeout_ms} ms acquire timeout"))
    }

    /// Indexes restored, checkout's normal pool and the normal payment processor: every
    /// step is tried, the first failure is returned.
    pub async fn restore(&self) -> Result<String, StageError> {
        let indexes = platform::stage::admin_call(&self.catalog, "/admin/indexes/restore", &self.token, None).await;
        let pool = platform::stage::reset_session(&self.checkout, &self.token).await;
        let payment = self.restore_payment().await;
        let created = indexes?.json().map(|v| v["created"].to_string()).unwrap_or_default();
        let pool = pool?.json().map(|v| v["pool"]["max_connections"].to_string()).unwrap_or_default();
        payment?;
        Ok(format!("indexes restored (created {created}), checkout pool back to {pool} connections, payment normal"))
    }

    /// The payment processor slowed to `workers` at `work_ms` an authorization.
    pub async fn slow_payment(&self, workers: u32, work_ms: u32) -> Result<String, StageError> {
        let body = json!({ "workers": workers, "work_ms": work_ms });
        let reply = platform::stage::admin_call(&self.payment, "/admin/payment", &self.token, Some(body)).await?;
        let capacity = reply.json().and_then(|v| v["payment"]["capacity_per_second"].as_f64()).unwrap_or(0.0);
        Ok(format!(
            "payment processor slowed: {workers} worker(s) at {work_ms} ms an authorization ({capacity:.0} a second at most)"
        ))
    }

    /// The payment processor's normal settings, its queue emptied.
    pub async fn restore_payment(&self) -> Result<serde_json::Value, StageError> {
        platform::stage::reset_session(&self.payment, &self.token).await?.expect_json("resetting the payment processor")
    }

    /// [`Shop::reading`], asked up to three times: the timeline's milestones need it while
    /// the shop is at its busiest, and one slow answer must not cancel the rush.
    pub async fn steady_reading(&self) -> Result<Reading, StageError> {
        let mut last = None;
        for attempt in 0..3 {
            if attempt > 0 {
                tokio::time::sleep(Duration::from_millis(200)).await;
            }
            match self.reading().await {
                Ok(reading) => return Ok(reading),
                Err(error) => last = Some(error),
            }
        }
        Err(last.expect("three attempts were made"))
    }

    /// Checkout's own counts now, from its `/metrics`.
    pub async fn reading(&self) -> Result<Reading, StageError> {
        let reply = self.checkout.get("/metrics").await?;
        if !reply.is_success() {
            return Err(StageError(format!("reading checkout's /metrics: {} {}", reply.status, reply.detail())));
        }
        Ok(Reading::parse(&reply.body, Instant::now()))
    }

    /// Products in the catalog, from its health.
    pub async fn products(&self) -> Result<u64, StageError> {
        let reply = self.catalog.get("/health").await?;
        Ok(reply.json().and_then(|v| v["products"].as_u64()).unwrap_or(0))
    }

    /// A peak that loads the database's scan capacity to about two thirds once the
    /// indexes are gone, from the catalog's own measurement; and how it was found.
    pub async fn auto_peak_rpm(&self) -> Result<(f64, String), StageError> {
        let cost = self.scan_cost().await?;
        let per_second = cost["scans_per_second"].as_f64().unwrap_or(0.0);
        if per_second <= 0.0 {
            return Ok((FALLBACK_PEAK_RPM, "the scan cost could not be measured".into()));
        }
        let rpm = (TARGET_UTILIZATION * per_second / SCANS_PER_JOURNEY * 60.0).clamp(30.0, 20_000.0).round();
        Ok((
            rpm,
            format!(
                "a full scan of {} products takes {} ms here and {:.1} run per second side by side",
                cost["products"], cost["scan_ms"], per_second
            ),
        ))
    }

    /// The catalog's measurement of a full scan (`GET /admin/scan-cost`): its time alone,
    /// and how many the database runs a second side by side.
    pub async fn scan_cost(&self) -> Result<serde_json::Value, StageError> {
        let reply = self.catalog.get_admin("/admin/scan-cost", &self.token).await?;
        if !reply.is_success() {
            return Err(StageError(format!("measuring the catalog's scan cost: {} {}", reply.status, reply.detail())));
        }
        Ok(reply.json().unwrap_or_default())
    }

    /// Full table scans the catalog has run so far (every shape), from its `/metrics`.
    pub async fn catalog_scans(&self) -> Result<f64, StageError> {
        let reply = self.catalog.get("/metrics").await?;
        if !reply.is_success() {
            return Err(StageError(format!("reading the catalog's /metrics: {} {}", reply.status, reply.detail())));
        }
        Ok(full_scans(&reply.body))
    }

    /// The doorbusters' average price: what a failed checkout costs.
    pub async fn order_value(&self) -> f64 {
        let mut prices = Vec::new();
        for id in 1..=profile::DOORBUSTERS {
            if let Ok(reply) = self.catalog.get(&format!("/products/{id}")).await
                && let Some(price) = reply.json().and_then(|v| v["price"].as_f64())
            {
                prices.push(price);
            }
        }
        if prices.is_empty() { 0.0 } else { prices.iter().sum::<f64>() / prices.len() as f64 }
    }
}

/// The sum of `shop_db_queries_total{…,plan="full_scan"}` over every query shape.
fn full_scans(metrics: &str) -> f64 {
    metrics
        .lines()
        .filter(|line| line.starts_with("shop_db_queries_total{") && line.contains("plan=\"full_scan\""))
        .filter_map(|line| line.rsplit_once(' ')?.1.parse::<f64>().ok())
        .sum()
}

/// Why checkouts fail, as checkout's `shop_checkouts_total` counts them.
pub const FAILURE_REASONS: [&str; 6] = [
    "pool_exhausted",
    "catalog_unavailable",
    "cart_unavailable",
    "out_of_stock",
    "database_error",
    "payment_unavailable",
];

/// Checkout's counters at one moment: placed checkouts, failed ones by reason, and the
/// restock reservation's histogram (placed checkouts hold it one at a time).
#[derive(Debug, Clone, Copy)]
pub struct Reading {
    pub at: Instant,
    pub placed: f64,
    pub failed: [f64; FAILURE_REASONS.len()],
    pub reservation_seconds: f64,
    pub reservations: f64,
    /// Calls to the payment processor: checkouts' first calls and their retries.
    pub payment_calls: f64,
    pub payment_retries: f64,
}

impl Reading {
    pub fn parse(metrics: &str, at: Instant) -> Reading {
        let value = |name: &str| metric_value(metrics, name).unwrap_or(0.0);
        let failed =
            FAILURE_REASONS.map(|r| value(&format!("shop_checkouts_total{{outcome=\"failed\",reason=\"{r}\"}}")));
        Reading {
            at,
            placed: value("shop_checkouts_total{outcome=\"success\"}"),
            failed,
            reservation_seconds: value(&format!("{RESERVATION_METRIC}_sum")),
            reservations: value(&format!("{RESERVATION_METRIC}_count")),
            payment_calls: value("shop_payment_calls_total{attempt=\"first\"}"),
            payment_retries: value("shop_payment_calls_total{attempt=\"retry\"}"),
        }
    }

    /// What happened between `earlier` and this reading.
    pub fn since(&self, earlier: &Reading) -> Change {
        Change {
            seconds: self.at.saturating_duration_since(earlier.at).as_secs_f64(),
            placed: self.placed - earlier.placed,
            failed: std::array::from_fn(|i| self.failed[i] - earlier.failed[i]),
            reservation_seconds: self.reservation_seconds - earlier.reservation_seconds,
            reservations: self.reservations - earlier.reservations,
            payment_calls: self.payment_calls - earlier.payment_calls,
            payment_retries: self.payment_retries - earlier.payment_retries,
        }
    }
}

/// Checkout's counts between two readings.
#[derive(Debug, Clone, Copy)]
pub struct Change {
    pub seconds: f64,
    pub placed: f64,
    pub failed: [f64; FAILURE_REASONS.len()],
    pub reservation_seconds: f64,
    pub reservations: f64,
    pub payment_calls: f64,
    pub payment_retries: f64,
}

impl Change {
    pub fn failed_total(&self) -> f64 {
        self.failed.iter().sum()
    }

    /// Checkouts that found no connection.
    pub fn pool_exhausted(&self) -> f64 {
        self.failed[0]
    }

    /// Checkouts that failed for want of a payment.
    pub fn unpaid(&self) -> f64 {
        self.failed[5]
    }

    /// Calls to the payment processor a checkout (first calls and retries).
    pub fn payment_calls_per_checkout(&self) -> Option<f64> {
        (self.payment_calls > 0.0).then(|| (self.payment_calls + self.payment_retries) / self.payment_calls)
    }

    /// Checkouts answered (placed or failed) per second.
    pub fn attempted_rate(&self) -> f64 {
        if self.seconds <= 0.0 { 0.0 } else { (self.placed + self.failed_total()) / self.seconds }
    }

    pub fn placed_rate(&self) -> f64 {
        if self.seconds <= 0.0 { 0.0 } else { self.placed / self.seconds }
    }

    /// How long a placed checkout held the reservation, on average.
    pub fn mean_reservation(&self) -> Option<f64> {
        (self.reservations > 0.0).then(|| self.reservation_seconds / self.reservations)
    }

    /// The failures by reason, most first, those that happened only.
    pub fn failures_by_reason(&self) -> Vec<(&'static str, u64)> {
        let mut reasons: Vec<(&'static str, u64)> = FAILURE_REASONS
            .iter()
            .zip(self.failed)
            .filter(|(_, n)| *n > 0.0)
            .map(|(r, n)| (*r, n.round() as u64))
            .collect();
        reasons.sort_by(|a, b| b.1.cmp(&a.1));
        reasons
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn full_scans_add_up_over_the_query_shapes() {
        let text = "# TYPE shop_db_queries counter\n\
                    shop_db_queries_total{shape=\"catalog_by_category\",plan=\"full_scan\"} 12\n\
                    shop_db_queries_total{shape=\"catalog_by_category\",plan=\"index\"} 400\n\
                    shop_db_queries_total{shape=\"restock_check\",plan=\"full_scan\"} 3\n";
        assert_eq!(full_scans(text), 15.0);
        assert_eq!(full_scans(""), 0.0);
    }

    #[test]
    fn a_reading_counts_placed_failed_and_the_reservation() {
        let text = |placed: u32, exhausted: u32, sum: f64, count: u32| {
            format!(
                "# TYPE shop_checkouts counter\nshop_checkouts_total{{outcome=\"success\"}} {placed}\n\
                 shop_checkouts_total{{outcome=\"failed\",reason=\"pool_exhausted\"}} {exhausted}\n\
                 shop_checkouts_total{{outcome=\"failed\",reason=\"out_of_stock\"}} 1\n\
                 {RESERVATION_METRIC}_sum {sum}\n{RESERVATION_METRIC}_count {count}\n"
            )
        };
        let start = Instant::now();
        let before = Reading::parse(&text(10, 0, 0.5, 10), start);
        let after = Reading::parse(&text(30, 10, 1.5, 30), start + Duration::from_secs(2));
        let change = after.since(&before);
        assert_eq!(change.placed_rate(), 10.0);
        assert_eq!(change.attempted_rate(), 15.0);
        assert_eq!(change.pool_exhausted(), 10.0);
        assert_eq!(change.mean_reservation(), Some(0.05));
        assert_eq!(change.failures_by_reason(), [("pool_exhausted", 10)]);
        assert_eq!(before.failed[3], 1.0, "out_of_stock is read too");
    }
}
