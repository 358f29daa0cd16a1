//! `breakroom drive`: the traffic that makes a lab's bug show, from the same tool.
//!
//! The driver talks to labs only over HTTP, as an audience does: it never imports a
//! lab. See `engine` for the open-model schedule and how latency is measured.

pub mod control;
pub mod engine;
pub mod profile;
pub mod record;
pub mod shape;
mod wire;

use std::io::IsTerminal;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use clap::{Args, ValueEnum};

use engine::{Model, Run};
use platform::stage::{EXIT_FAILED, StageError};
use record::Snapshot;
use shape::{Shape, parse_duration, parse_phase, parse_rate};

#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum ProfileName {
    /// POST /vote like a room of phones; a share of them through the referral QR code
    VoteAudience,
    /// items: 70% reads of existing items, 20% creates, 10% updates (seed 002's k6 mix)
    ItemsMixed,
    /// items: readers of one hot item's product page, GET /items/{id}/popular (the saw-tooth of items/cache-stampede)
    ItemsPopular,
    /// One method + URL (+ body) for anything else: --url is the full URL
    Url,
    /// shop: seed 003's shoppers (browse_only, browse_and_cart, full_checkout) on its three services
    Blackfriday,
    /// shop: doorbuster buyers straight to checkout, POST /orders/create (the load of shop/retry-storm)
    ShopCheckouts,
}

const EXAMPLES: &str = "\
Examples:
  Trigger the vote lab's bug with a room of phones, half of them with the referral code:
    breakroom drive vote-audience --rate 5 --duration 30s --referral-share 0.5
  Seed 002's mix against the items lab for a minute, failing if p95 passes 50 ms:
    breakroom drive items-mixed --url http://127.0.0.1:8000 --rate 100 --duration 1m --threshold 'p95<50ms'
  A ramp from 30 to 120 requests a minute over 10 minutes, then 5 minutes flat:
    breakroom drive url --url http://127.0.0.1:8000/health --phase 10m:30..120rpm --phase 5m:120rpm
  Throughput: as fast as 64 connections go, for 10 seconds:
    breakroom drive url --url http://127.0.0.1:8000/health --rate max --connections 64 --duration 10s
  The shop's Black Friday shoppers at 300 journeys a minute (the timeline with its faults is `demonstrate shop`):
    breakroom drive blackfriday --rate 300rpm --duration 5m
  A peak of checkouts at twice a slowed payment processor's 50 a second, then a calm (shop/retry-storm):
    breakroom drive shop-checkouts --phase 3s:100 --phase 20s:20
  Steer it while it runs (with --control 127.0.0.1:9000):
    curl -X POST 127.0.0.1:9000/rate -d '{\"rate\":\"50rps\"}' -H 'content-type: application/json'
    curl -X POST 127.0.0.1:9000/stop";

#[derive(Debug, Args)]
#[command(after_help = EXAMPLES)]
pub struct DriveArgs {
    /// The traffic to send
    pub profile: ProfileName,
    /// The lab's base URL (for the url profile: the full URL to request)
    #[arg(long, env = "BREAKROOM_URL", default_value = "http://127.0.0.1:8000")]
    pub url: String,
    /// Target rate: 50 (per second), 50rps, 3000rpm — or max, for as fast as --connections allow
    #[arg(long, default_value = "10")]
    pub rate: String,
    /// Connections of the closed model (--rate max)
    #[arg(long, default_value_t = 64)]
    pub connections: usize,
    /// Open model: journeys in flight at most; a journey due beyond that is counted as dropped
    #[arg(long, default_value_t = 10_000)]
    pub max_in_flight: usize,
    /// How long to run: 30s, 10m, 1h (default 30s unless --requests or --phase bound the run)
    #[arg(long)]
    pub duration: Option<String>,
    /// Stop after this many journeys
    #[arg(long)]
    pub requests: Option<u64>,
    /// A stretch of the timeline, repeatable: 10m:30..120rpm (a ramp) or 5m:120rpm
    #[arg(long = "phase")]
    pub phases: Vec<String>,
    /// Write the report as JSON to this file
    #[arg(long)]
    pub out: Option<PathBuf>,
    /// Pass/fail rule, repeatable: 'p95<500ms', 'p99<1s', 'errors<10%', 'dropped<1%'
    #[arg(long = "threshold")]
    pub thresholds: Vec<String>,
    /// Serve GET /status, POST /rate and POST /stop on this address while running
    #[arg(long)]
    pub control: Option<std::net::SocketAddr>,
    /// Give up on a request after this long (counted as a timeout error)
    #[arg(long, default_value = "10s")]
    pub timeout: String,
    /// vote-audience: share of votes carrying the referral code (0 to 1)
    #[arg(long, default_value_t = 0.3)]
    pub referral_share: f64,
    /// vote-audience: the referral code they carry
    #[arg(long, default_value = "conf-partner-2026")]
    pub referral: String,
    /// vote-audience: share of votes carrying a referral code no partner has (0 to 1,
    /// the rest split by --referral-share; what drains the pool in vote/connection-leak)
    #[arg(long, default_value_t = 0.0)]
    pub unknown_share: f64,
    /// vote-audience: the unknown code they carry (last year's, from an old flyer)
    #[arg(long, default_value = "conf-partner-2025")]
    pub unknown_code: String,
    /// vote-audience: how often each choice is picked
    #[arg(long, default_value = "print=1,stare=1,ai=1,revert=1,restart=1")]
    pub choice_weights: String,
    /// items-popular: the item whose product page the readers open (the seed's Widget A)
    #[arg(long, default_value = "550e8400-e29b-41d4-a716-446655440001")]
    pub item: String,
    /// url: the HTTP method
    #[arg(long, default_value = "GET")]
    pub method: String,
    /// url: a JSON body to send
    #[arg(long)]
    pub body: Option<String>,
    #[command(flatten)]
    pub shop: ShopUrls,
}

const DEFAULT_DURATION: Duration = Duration::from_secs(30);
/// A run bounded only by a request count still ends: after an hour at the latest.
const LONGEST_RUN: Duration = Duration::from_secs(3600);

fn usage(message: impl Into<String>) -> StageError {
    StageError(message.into())
}

/// `scheme://host:port` and the path of the url profile's full URL.
/// `text` when it is a hyphenated UUID, as the items lab's ids are.
fn uuid_like(text: &str) -> Option<&str> {
    let bytes = text.as_bytes();
    let shaped = bytes.len() == 36
        && bytes.iter().enumerate().all(
            |(i, b)| {
                if [8, 13, 18, 23].contains(&i) { *b == b'-' } else { b.is_ascii_hexdigit() }
            },
        );
    shaped.then_some(text)
}

fn split_url(url: &str) -> Result<(String, String), StageError> {
    let wrong = || usage(format!("--url must start with http:// or https:// (got '{url}')"));
    let scheme_end = url.find("://").ok_or_else(wrong)?;
    let scheme = &url[..scheme_end];
    if scheme != "http" && scheme != "https" {
        return Err(wrong());
    }
    let rest = &url[scheme_end + 3..];
    let (authority, path) = rest.find('/').map_or((rest, "/"), |i| (&rest[..i], &rest[i..]));
    Ok((format!("{scheme}://{authority}"), path.to_string()))
}

fn build_profile(args: &DriveArgs) -> Result<(profile::Profile, String), StageError> {
    match args.profile {
        ProfileName::VoteAudience => {
            if !(0.0..=1.0).contains(&args.referral_share) {
                return Err(usage("--referral-share is a share between 0 and 1"));
            }
            if !(0.0..=1.0).contains(&args.unknown_share) {
                return Err(usage("--unknown-share is a share between 0 and 1"));
            }
            let choices = profile::parse_weights(&args.choice_weights).map_err(usage)?;
            let (base, _) = split_url(args.url.trim_end_matches('/'))?;
            let room = profile::vote_audience(choices, args.referral_share, &args.referral);
            Ok((profile::with_unknown_codes(room, args.unknown_share, &args.unknown_code), base))
        }
        ProfileName::ItemsMixed => Ok((profile::items_mixed(), split_url(args.url.trim_end_matches('/'))?.0)),
        ProfileName::ItemsPopular => {
            let item =
                uuid_like(&args.item).ok_or_else(|| usage(format!("--item '{}' is not an item's UUID", args.item)))?;
            Ok((profile::items_popular(item), split_url(args.url.trim_end_matches('/'))?.0))
        }
        ProfileName::Blackfriday => {
            let t = |s: &str| s.trim().trim_end_matches('/').to_string();
            let (catalog, cart, checkout) =
                (t(&args.shop.catalog_url), t(&args.shop.cart_url), t(&args.shop.checkout_url));
            for url in [&catalog, &cart, &checkout] {
                split_url(url)?;
            }
            // Products to draw from: the catalog says how many it has (1 if it cannot).
            Ok((profile::blackfriday(&catalog, &cart, &checkout, 1), catalog))
        }
        ProfileName::ShopCheckouts => {
            let checkout = args.shop.checkout_url.trim().trim_end_matches('/').to_string();
            let base = split_url(&checkout)?.0;
            Ok((profile::doorbuster_rush(&checkout, 1), base))
        }
        ProfileName::Url => {
            let (base, path) = split_url(&args.url)?;
            let method = hyper::Method::from_bytes(args.method.to_uppercase().as_bytes())
                .map_err(|_| usage(format!("'{}' is not an HTTP method", args.method)))?;
            Ok((profile::url(method, &path, args.body.as_deref()), base))
        }
    }
}

fn build_model(args: &DriveArgs) -> Result<Model, StageError> {
    let duration = args.duration.as_deref().map(parse_duration).transpose().map_err(usage)?;
    if args.rate.trim() == "max" {
        let duration = duration.unwrap_or(if args.requests.is_some() { LONGEST_RUN } else { DEFAULT_DURATION });
        return Ok(Model::Closed { connections: args.connections, duration });
    }
    let shape = if args.phases.is_empty() {
        let rps = parse_rate(&args.rate).map_err(usage)?;
        if rps <= 0.0 {
            return Err(usage("--rate must be above 0 (or max)"));
        }
        let duration = duration.unwrap_or(match args.requests {
            Some(n) => Duration::from_secs_f64(n as f64 / rps + 1.0).min(LONGEST_RUN),
            None => DEFAULT_DURATION,
        });
        Shape::constant(rps, duration)
    } else {
        let phases = args.phases.iter().map(|p| parse_phase(p)).collect::<Result<Vec<_>, _>>().map_err(usage)?;
        Shape { phases }
    };
    Ok(Model::Open { shape, max_in_flight: args.max_in_flight.max(1) })
}

/// Creates what the profile needs before traffic starts.
async fn setup(profile: &profile::Profile, base: &str) -> Result<Vec<String>, StageError> {
    let profile::Setup::Items(count) = profile.setup else { return Ok(Vec::new()) };
    let target = platform::stage::Target::new(base, "items")?;
    let mut ids = Vec::with_capacity(count);
    for i in 0..count {
        let body = serde_json::json!({ "name": format!("Drive setup {i}"), "price": 9.99 });
        let reply = target.post_json("/items", &body).await?;
        let id = reply.json().and_then(|v| v["id"].as_str().map(str::to_owned));
        match id {
            Some(id) if reply.is_success() => ids.push(id),
            _ => return Err(usage(format!("setup: POST /items answered {}: {}", reply.status, reply.detail()))),
        }
    }
    Ok(ids)
}

/// `breakroom drive …`; returns the exit code (1 when a threshold failed).
pub async fn run(args: DriveArgs) -> Result<u8, StageError> {
    let (profile, base) = build_profile(&args)?;
    let model = build_model(&args)?;
    let thresholds =
        args.thresholds.iter().map(|t| Threshold::parse(t)).collect::<Result<Vec<_>, _>>().map_err(usage)?;
    let timeout = parse_duration(&args.timeout).map_err(usage)?;
    reachable(&base).await?;
    let mut profile = profile;
    if args.profile == ProfileName::Blackfriday {
        let catalog = platform::stage::Target::new(&base, "shop")?;
        let health = catalog.get("/health").await?.json().unwrap_or_default();
        profile.products = health["products"].as_u64().unwrap_or(1).max(1);
    }
    let ids = setup(&profile, &base).await?;
    let run = Arc::new(Run::new(profile, base.clone(), args.requests, timeout, ids));

    if let Some(address) = args.control {
        let listener = tokio::net::TcpListener::bind(address)
            .await
            .map_err(|e| usage(format!("--control: cannot listen on {address}: {e}")))?;
        let router = control::router(run.clone());
        let stop = run.stop.clone();
        tokio::spawn(async move {
            let _ = axum::serve(listener, router).with_graceful_shutdown(stop.cancelled_owned()).await;
        });
        eprintln!("drive: control API on http://{address} (GET /status, POST /rate, POST /stop)");
    }
    let stop = run.stop.clone();
    tokio::spawn(async move {
        if tokio::signal::ctrl_c().await.is_ok() {
            eprintln!("\ndrive: stopping (Ctrl-C); the report follows");
            stop.cancel();
        }
    });

    let model_name = if matches!(model, Model::Closed { .. }) { "closed" } else { "open" };
    eprintln!("drive: {} → {base} ({model_name} model)", run.profile.name);
    let progress = tokio::spawn(progress(run.clone(), model_name));
    engine::drive(run.clone(), model).await;
    progress.abort();
    let _ = progress.await;

    let mut report = control::snapshot(&run);
    report.model = model_name;
    print_summary(&report, &base);
    let failed = print_thresholds(&report, &thresholds);
    if let Some(path) = &args.out {
        let json = serde_json::to_string_pretty(&report).expect("the report serializes");
        std::fs::write(path, json).map_err(|e| usage(format!("cannot write {}: {e}", path.display())))?;
        eprintln!("drive: report written to {}", path.display());
    }
    run.stop.cancel(); // ends the control API
    Ok(if failed { EXIT_FAILED } else { 0 })
}

async fn reachable(base: &str) -> Result<(), StageError> {
    use tower_service::Service;
    let uri: hyper::Uri = base.parse().map_err(|_| usage(format!("'{base}' is not a URL")))?;
    // A connection (and its TLS handshake), no request: the run's figures stay its own.
    let connect = engine::connector().call(uri);
    let tls = match tokio::time::timeout(Duration::from_secs(3), connect).await {
        Ok(Ok(_)) => return Ok(()),
        Ok(Err(error)) => platform::http::tls_failure(error.as_ref()),
        Err(_) => None,
    };
    if let Some(tls) = tls {
        return Err(usage(format!("Cannot reach {base}: {tls}.")));
    }
    Err(usage(format!(
        "Cannot reach {base}: nothing answered there. Is the lab running (breakroom serve LAB)? Point at it with --url."
    )))
}

/// A live line on a terminal; one summary line every few seconds otherwise.
async fn progress(run: Arc<Run>, model: &'static str) {
    let terminal = std::io::stderr().is_terminal();
    let every = if terminal { Duration::from_millis(250) } else { Duration::from_secs(5) };
    let bar = terminal.then(|| {
        let bar = indicatif::ProgressBar::new_spinner();
        bar.enable_steady_tick(Duration::from_millis(120));
        bar
    });
    let mut last = (Duration::ZERO, 0u64);
    let mut ticks = tokio::time::interval(every);
    ticks.tick().await;
    loop {
        ticks.tick().await;
        let snapshot = control::snapshot(&run);
        let elapsed = run.elapsed();
        let window = elapsed.saturating_sub(last.0).as_secs_f64();
        let current = if window > 0.0 { (snapshot.requests - last.1) as f64 / window } else { 0.0 };
        last = (elapsed, snapshot.requests);
        let line = format!(
            "{:>6.1}s  {model}  rate {:>8.1}/s  requests {:>8}  errors {:>6}  dropped {:>5}  p95 {:>8.2} ms",
            elapsed.as_secs_f64(),
            current,
            snapshot.requests,
            snapshot.errors,
            snapshot.dropped,
            snapshot.latency_ms.p95
        );
        match &bar {
            Some(bar) => bar.set_message(line),
            None => eprintln!("drive: {line}"),
        }
    }
}

fn print_summary(report: &Snapshot, base: &str) {
    let l = &report.latency_ms;
    println!("\nLOAD TEST SUMMARY — {} → {base} ({} model)", report.profile, report.model);
    println!("  duration       {:.1} s", report.elapsed_s);
    println!("  requests       {}   achieved {:.1}/s", report.requests, report.achieved_rps);
    println!("  dropped        {}", report.dropped);
    let kinds: Vec<String> = report.errors_by_kind.iter().map(|(k, n)| format!("{k} {n}")).collect();
    println!(
        "  errors         {} ({:.1}%){}",
        report.errors,
        report.error_rate * 100.0,
        if kinds.is_empty() { String::new() } else { format!("   {}", kinds.join(", ")) }
    );
    println!(
        "  latency ms     p50 {:.2}   p90 {:.2}   p95 {:.2}   p99 {:.2}   max {:.2}",
        l.p50, l.p90, l.p95, l.p99, l.max
    );
    let statuses: Vec<String> = report.status_counts.iter().map(|(s, n)| format!("{s}: {n}")).collect();
    println!("  status         {}", statuses.join("   "));
    if report.steps.len() > 1 {
        println!("  steps");
        for (name, step) in &report.steps {
            println!(
                "    {name:<16} {:>8} requests   {:>6} errors   p95 {:.2} ms",
                step.requests, step.errors, step.latency_ms.p95
            );
        }
    }
}

/// `p95<500ms`, `errors<10%`, `dropped<1%`.
#[derive(Debug, Clone, PartialEq)]
pub struct Threshold {
    text: String,
    metric: String,
    limit: f64,
}

impl Threshold {
    pub fn parse(text: &str) -> Result<Threshold, String> {
        let (metric, limit) =
            text.split_once('<').ok_or_else(|| format!("threshold '{text}': use METRIC<LIMIT, e.g. p95<500ms"))?;
        let metric = metric.trim().to_lowercase();
        let limit = limit.trim();
        let limit = match metric.as_str() {
            "p50" | "p90" | "p95" | "p99" | "max" => parse_duration(limit)?.as_secs_f64() * 1000.0,
            "errors" | "dropped" => limit
                .strip_suffix('%')
                .ok_or_else(|| format!("threshold '{text}': {metric} is a percentage, e.g. {metric}<1%"))?
                .trim()
                .parse::<f64>()
                .map_err(|_| format!("threshold '{text}': not a number"))?,
            _ => {
                return Err(format!(
                    "threshold '{text}': unknown metric '{metric}' (p50, p90, p95, p99, max, errors, dropped)"
                ));
            }
        };
        Ok(Threshold { text: text.to_string(), metric, limit })
    }

    /// The measured value (ms or %) and whether it is under the limit.
    pub fn check(&self, report: &Snapshot) -> (f64, bool) {
        let l = &report.latency_ms;
        let value = match self.metric.as_str() {
            "p50" => l.p50,
            "p90" => l.p90,
            "p95" => l.p95,
            "p99" => l.p99,
            "max" => l.max,
            "errors" => report.error_rate * 100.0,
            _ => {
                let due = report.requests + report.dropped;
                if due == 0 { 0.0 } else { report.dropped as f64 * 100.0 / due as f64 }
            }
        };
        (value, value < self.limit)
    }
}

/// Prints each threshold's verdict; true when any failed.
fn print_thresholds(report: &Snapshot, thresholds: &[Threshold]) -> bool {
    if thresholds.is_empty() {
        return false;
    }
    println!("  thresholds");
    let mut failed = false;
    for threshold in thresholds {
        let (value, ok) = threshold.check(report);
        let unit = if matches!(threshold.metric.as_str(), "errors" | "dropped") { "%" } else { " ms" };
        println!("    {:<16} {} (measured {value:.2}{unit})", threshold.text, if ok { "✓ passed" } else { "✗ FAILED" });
        failed |= !ok;
    }
    failed
}

/// Where the shop's three services answer.
#[derive(Debug, Clone, Args)]
pub struct ShopUrls {
    /// shop: the product catalog
    #[arg(long, env = "SHOP_CATALOG_URL", default_value = "http://127.0.0.1:8014")]
    pub catalog_url: String,
    /// shop: the cart
    #[arg(long, env = "SHOP_CART_URL", default_value = "http://127.0.0.1:8013")]
    pub cart_url: String,
    /// shop: checkout
    #[arg(long, env = "SHOP_CHECKOUT_URL", default_value = "http://127.0.0.1:8016")]
    pub checkout_url: String,
    /// shop: the payment processor
    #[arg(long, env = "SHOP_PAYMENT_URL", default_value = "http://127.0.0.1:8017")]
    pub payment_url: String,
}

impl ShopUrls {
    pub fn trimmed(&self) -> ShopUrls {
        let t = |s: &str| s.trim().trim_end_matches('/').to_string();
        ShopUrls {
            catalog_url: t(&self.catalog_url),
            cart_url: t(&self.cart_url),
            checkout_url: t(&self.checkout_url),
            payment_url: t(&self.payment_url),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn thresholds_parse_and_judge() {
        let report = record::Recorder::default();
        for _ in 0..9 {
            report.record("x", record::Outcome::Status(200), Duration::from_millis(100));
        }
        report.record("x", record::Outcome::Status(500), Duration::from_millis(900));
        let snapshot = report.snapshot("p", "open", Duration::from_secs(1), 10.0);
        let judge = |t: &str| Threshold::parse(t).unwrap().check(&snapshot).1;
        assert!(judge("p50<200ms") && !judge("max<500ms") && judge("p99<1s"));
        assert!(judge("errors<11%") && !judge("errors<10%") && judge("dropped<1%"));
        assert!(Threshold::parse("p95>1").is_err());
        assert!(Threshold::parse("errors<5").is_err());
        assert!(Threshold::parse("latency<5ms").is_err());
    }

    #[test]
    fn urls_split_into_base_and_path() {
        assert_eq!(
            split_url("http://127.0.0.1:8000/health?x=1").unwrap(),
            ("http://127.0.0.1:8000".into(), "/health?x=1".into())
        );
        assert_eq!(split_url("http://localhost:8000").unwrap(), ("http://localhost:8000".into(), "/".into()));
        assert_eq!(split_url("https://example.org/x").unwrap(), ("https://example.org".into(), "/x".into()));
        assert!(split_url("ftp://example.org/").is_err());
        assert!(split_url("localhost:8000").is_err());
    }

    #[test]
    fn an_item_is_a_hyphenated_uuid() {
        assert!(uuid_like("550e8400-e29b-41d4-a716-446655440001").is_some());
        assert!(uuid_like("550e8400e29b41d4a716446655440001").is_none());
        assert!(uuid_like("550e8400-e29b-41d4-a716-44665544000{").is_none());
        assert!(uuid_like("{item_id}").is_none());
    }
}
