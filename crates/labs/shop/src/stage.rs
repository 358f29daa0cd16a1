//! `breakroom demonstrate|check|reset shop`, against the services over HTTP.

use std::io::{BufRead, IsTerminal};
use std::sync::Arc;
use std::time::Duration;

use crate::timeline::{self, Event, Settings, Shop, Timeline, TimelineArgs};
use driver::engine::{self, Model, Run};
use driver::profile;
use driver::shape::Shape;
use platform::lab::Boxed;
use platform::rehearsal::{Judged, Judgement, Rehearsal};
use platform::stage::StageCommand;
use platform::stage::{EXIT_FAILED, Finding, StageError, Style};

pub async fn run(
    command: StageCommand,
    args: &TimelineArgs,
    token: Option<&str>,
    data_dir: &std::path::Path,
) -> Result<u8, StageError> {
    let token = platform::stage::admin_token(token, data_dir, "shop")?;
    let shop = Shop::new(&args.urls, token)?;
    match command {
        StageCommand::Demonstrate => demonstrate(shop, args).await,
        StageCommand::Check => check(shop, args).await,
        StageCommand::Reset => reset(shop).await,
    }
}

/// The timeline's settings; an unset peak is sized to the database.
async fn settings(args: &TimelineArgs, shop: &Shop) -> Result<Settings, StageError> {
    let t = args;
    let peak_rpm = match t.peak_rpm {
        Some(rpm) => rpm,
        None => {
            let (rpm, why) = shop.auto_peak_rpm().await?;
            println!("Peak: {rpm:.0} journeys a minute — {why} (set it with --peak-rpm)");
            rpm
        }
    };
    let settings = Settings {
        speedup: t.speedup,
        peak_rpm,
        duration_minutes: t.duration_minutes,
        pool_size: t.pool_size,
        pool_timeout_ms: t.pool_timeout_ms,
        retry_storm: t.retry_storm,
    };
    settings.validate()?;
    Ok(settings)
}

/// What the services say before the run; fails when one is missing or already broken.
async fn preflight(shop: &Shop, style: &Style) -> Result<(), StageError> {
    println!("{}", style.heading("Preflight"));
    let services = [
        ("product-catalog", &shop.catalog),
        ("cart", &shop.cart),
        ("checkout", &shop.checkout),
        ("payment", &shop.payment),
    ];
    for (name, target) in services {
        let reply = target.get("/health").await?;
        let health = reply.json().unwrap_or_default();
        if !reply.is_success() || health["status"] != "ok" {
            return Err(StageError(format!("{name} is not healthy at {}: {}", target.url("/health"), reply.body)));
        }
        println!("  ✓ {name:<16} {}", target.url(""));
    }
    let catalog = shop.catalog.get("/health").await?.json().unwrap_or_default();
    let products = catalog["products"].as_u64().unwrap_or(0);
    println!("  ✓ database         {products} products");
    let missing = missing_indexes(shop).await?;
    if !missing.is_empty() {
        return Err(StageError(format!(
            "Indexes already missing: {} — the lab is not in its pre-talk state; run `breakroom reset shop`",
            missing.join(", ")
        )));
    }
    println!("  ✓ indexes          idx_products_category, idx_products_stock_quantity present");
    let pool = shop.checkout.get("/health").await?.json().unwrap_or_default();
    if pool["pool"]["max_connections"] != pool["pool"]["normal"]["max_connections"] {
        return Err(StageError(format!(
            "Checkout's pool is {} connections, not its normal {} — the lab is not in its pre-talk state; run `breakroom reset shop`",
            pool["pool"]["max_connections"], pool["pool"]["normal"]["max_connections"]
        )));
    }
    println!(
        "  ✓ checkout pool    {} connections, {} ms acquire timeout",
        pool["pool"]["max_connections"], pool["pool"]["acquire_timeout_ms"]
    );
    if catalog["traces"] != true {
        println!(
            "  ! traces           the services export no traces: start them with OTEL_EXPORTER_OTLP_ENDPOINT \
             to investigate from spans"
        );
    }
    Ok(())
}

/// The story's indexes the catalog does not have now.
async fn missing_indexes(shop: &Shop) -> Result<Vec<String>, StageError> {
    let indexes = shop.catalog.get_admin("/admin/indexes", &shop.token).await?;
    if indexes.status == 401 {
        return Err(StageError(format!("The catalog refused the admin token: {}", indexes.detail())));
    }
    if !indexes.is_success() {
        return Err(StageError(format!(
            "The catalog could not list its indexes: {} {}",
            indexes.status,
            indexes.detail()
        )));
    }
    Ok(indexes
        .json()
        .and_then(|v| v["indexes"].as_array().cloned())
        .unwrap_or_default()
        .iter()
        .filter(|i| i["present"] != true)
        .filter_map(|i| i["name"].as_str().map(str::to_owned))
        .collect())
}

fn print_timeline(settings: &Settings) {
    let m = |minute: f64| minute * settings.duration_minutes / timeline::TIMELINE_MINUTES;
    let real = |minute: f64| {
        let seconds = m(minute) * settings.minute_seconds();
        if seconds >= 120.0 { format!("{:.0} min", seconds / 60.0) } else { format!("{seconds:.0} s") }
    };
    let start = settings.peak_rpm * 0.25;
    println!("\nThe timeline ({} minutes at {}×: {} in all)", settings.duration_minutes, settings.speedup, real(30.0));
    println!("  minute {:>4.0}  (+{:>7})  ramp {start:.0} → {:.0} journeys/min", m(0.0), real(0.0), settings.peak_rpm);
    println!("  minute {:>4.0}  (+{:>7})  peak traffic, normal operations", m(10.0), real(10.0));
    if let Some([slow, half, back]) = settings.storm_minutes() {
        let seconds = |minute: u32| format!("{:.0} s", f64::from(minute) * settings.minute_seconds());
        println!("  minute {slow:>4}  (+{:>7})  the payment processor slows to half the checkouts", seconds(slow));
        println!("  minute {half:>4}  (+{:>7})  … and is half back: room for twice them", seconds(half));
        println!(
            "  minute {back:>4}  (+{:>7})  … and normal (checkout's retries decide the minutes between)",
            seconds(back)
        );
    } else if settings.retry_storm {
        println!("  (no retry storm: a timeline this short has no room for its phase)");
    }
    println!(
        "  minute {:>4.0}  (+{:>7})  DROP INDEX idx_products_category, idx_products_stock_quantity",
        m(15.0),
        real(15.0)
    );
    println!(
        "  minute {:>4.0}  (+{:>7})  checkout pool → {} connections, {} ms acquire timeout",
        m(20.0),
        real(20.0),
        settings.pool_size,
        settings.acquire_timeout_ms()
    );
    println!("  minute {:>4.0}  (+{:>7})  the doorbusters open: a rush of buyers at checkout", m(20.0), real(20.0));
    println!(
        "  minute {:>4.0}  (+{:>7})  alert condition: checkout errors > 20% and p95 > {:.0} ms",
        m(22.0),
        real(22.0),
        settings.alert_p95_ms()
    );
    if settings.compressed() {
        println!(
            "                          (the story's {} ms wait and 2 s threshold, compressed with the clock)",
            settings.pool_timeout_ms
        );
    }
    println!("  minute {:>4.0}  (+{:>7})  peak failure", m(25.0), real(25.0));
    println!("  end          (+{:>7})  cleanup: indexes and pool restored, traffic stopped\n", real(30.0));
}

async fn demonstrate(shop: Shop, args: &TimelineArgs) -> Result<u8, StageError> {
    let style = Style::detect();
    preflight(&shop, &style).await?;
    let settings = settings(args, &shop).await?;
    print_timeline(&settings);
    if !args.yes && std::io::stdin().is_terminal() {
        println!("Press Enter to start (Ctrl-C to cancel) …");
        let _ = tokio::task::spawn_blocking(|| std::io::stdin().lock().read_line(&mut String::new())).await;
    }
    let prometheus = args.prometheus.clone();
    let timeline = Timeline::prepare(settings, shop).await?;
    let stopper = timeline.clone();
    let ctrl_c = tokio::spawn(async move {
        platform::stage::interrupted().await;
        stopper.stop();
        // Not eprintln!: after a hangup the terminal is gone and it would panic.
        use std::io::Write;
        let _ = writeln!(std::io::stderr(), "\nInterrupted: stopping the traffic and cleaning up …");
    });
    let mut trouble = false;
    let mut alert_seen = None;
    let (sender, mut receiver) = tokio::sync::mpsc::unbounded_channel::<Event>();
    let printer = {
        let style = Style::detect();
        tokio::spawn(async move {
            let mut alert = None;
            let mut trouble = false;
            while let Some(event) = receiver.recv().await {
                match event {
                    Event::Minute(r) => {
                        println!("\n--- Minute {}/{} ---", r.minute, r.total_minutes);
                        println!(
                            "  Phase: {} | RPM: {:.0} | Requests: {} | Errors: {} ({:.1}%)",
                            r.phase,
                            r.rpm,
                            r.requests_sent,
                            r.errors,
                            r.error_rate * 100.0
                        );
                        println!(
                            "  This minute: {} requests, {} errors · checkouts {} ({} failed, {:.1}%) p95 {:.0} ms · catalog p95 {:.0} ms · revenue lost ${:.2}",
                            r.minute_requests,
                            r.minute_errors,
                            r.checkouts,
                            r.checkouts_failed,
                            r.checkout_error_rate * 100.0,
                            r.checkout_p95_ms,
                            r.catalog_p95_ms,
                            r.revenue_lost
                        );
                    }
                    Event::Milestone(text) => println!("  » {text}"),
                    Event::AlertCondition { holds, detail } => {
                        if holds {
                            println!("  {}", style.bad(&format!("🚨 ALERT CONDITION HOLDS: {detail}")));
                        } else {
                            println!("  {}", style.heading(&format!("Alert condition does not hold yet: {detail}")));
                        }
                        alert = Some(holds);
                        if let Some(url) = &prometheus {
                            println!("  Prometheus: {}", alert_state(url).await);
                        }
                    }
                    Event::Trouble(text) => {
                        trouble = true;
                        println!("  {}", style.bad(&text));
                    }
                    Event::Peak(peak) => {
                        println!("\nPeak failure (minute 25 to the end): {}", peak.describe());
                        if !peak.pool_caused() {
                            trouble = true;
                            println!("  {}", style.bad("The failures were not the pool's: not the story's mechanism."));
                        } else if !peak.in_band() {
                            println!(
                                "  {}",
                                style.heading("! The failed share is outside the story's 20–60% (about 35%).")
                            );
                        } else {
                            println!(
                                "  {}",
                                style.good("The pool turned the failed checkouts away, as the story says.")
                            );
                        }
                    }
                }
            }
            (alert, trouble)
        })
    };
    let snapshot = timeline.run(&mut |event| drop(sender.send(event))).await;
    drop(sender);
    if let Ok((alert, t)) = printer.await {
        alert_seen = alert;
        trouble = t;
    }
    ctrl_c.abort();
    // writeln!, not println!: after a hangup the terminal is gone (the cleanup already ran).
    use std::io::Write;
    let mut out = std::io::stdout();
    let _ = writeln!(
        out,
        "\nDone: {} requests, {} errors ({:.1}%).",
        snapshot.requests,
        snapshot.errors,
        snapshot.error_rate * 100.0
    );
    let _ = match alert_seen {
        Some(true) => writeln!(out, "{}", style.good("The alert condition held at its minute, as the story says.")),
        Some(false) => {
            writeln!(out, "{}", style.bad("The alert condition did not hold at its minute: see the figures above."))
        }
        None => writeln!(out, "The run ended before the alert minute."),
    };
    let figures = format!("{} of {} requests failed", snapshot.errors, snapshot.requests);
    platform::stage::found(match (alert_seen, trouble) {
        (Some(true), false) => Finding::Reproduced(format!("{figures}; the alert condition held at its minute")),
        _ => Finding::NotReproduced(format!("{figures}; the alert condition did not hold")),
    });
    Ok(if trouble || alert_seen == Some(false) { EXIT_FAILED } else { 0 })
}

/// Whether Prometheus has ShopCheckoutDegraded firing.
async fn alert_state(url: &str) -> String {
    let query =
        format!("{}/api/v1/query?query=ALERTS%7Balertname%3D%22ShopCheckoutDegraded%22%7D", url.trim_end_matches('/'));
    let client = platform::http::client().timeout(Duration::from_secs(5)).build();
    let Ok(client) = client else { return "no HTTP client".into() };
    match client.get(&query).send().await {
        Ok(response) => match response.json::<serde_json::Value>().await {
            Ok(body) => {
                let states: Vec<String> = body["data"]["result"]
                    .as_array()
                    .map(|r| r.iter().filter_map(|s| s["metric"]["alertstate"].as_str().map(str::to_owned)).collect())
                    .unwrap_or_default();
                if states.iter().any(|s| s == "firing") {
                    "ShopCheckoutDegraded is FIRING".into()
                } else if states.iter().any(|s| s == "pending") {
                    "ShopCheckoutDegraded is pending (its `for` has not passed yet)".into()
                } else {
                    "ShopCheckoutDegraded is not firing".into()
                }
            }
            Err(error) => format!("unreadable answer: {error}"),
        },
        Err(error) => format!("unreachable ({error})"),
    }
}

/// After the fix: a burst at the timeline's peak rate, with the later (checkout-heavy) mix.
async fn check(shop: Shop, args: &TimelineArgs) -> Result<u8, StageError> {
    let style = Style::detect();
    let settings = settings(args, &shop).await?;
    let missing = missing_indexes(&shop).await?;
    let products = shop.products().await?;
    let seconds = args.check_seconds.clamp(5, 600);
    println!("A burst of {seconds} s at {:.0} journeys a minute (the peak), checkout-heavy mix …", settings.peak_rpm);
    let report = burst(&shop, products, settings.peak_rpm, seconds).await;
    let p95 = report.latency_ms.p95;
    let errors = report.error_rate * 100.0;
    let mut ok = true;
    let mut line = |pass: bool, text: String| {
        ok &= pass;
        println!("  {}", if pass { style.good(&format!("✓ {text}")) } else { style.bad(&format!("✗ {text}")) });
    };
    line(
        missing.is_empty(),
        if missing.is_empty() { "both indexes present".into() } else { format!("missing: {}", missing.join(", ")) },
    );
    line(p95 < 500.0, format!("p95 {p95:.0} ms (SLO < 500 ms) over {} requests", report.requests));
    line(errors < 1.0, format!("errors {errors:.2}% (SLO < 1%)"));
    if let Some(checkout) = report.steps.get(timeline::CHECKOUT_STEP) {
        println!(
            "    checkouts: {} ({} failed), p95 {:.0} ms",
            checkout.requests, checkout.errors, checkout.latency_ms.p95
        );
    }
    let summary = format!("p95 {p95:.0} ms, errors {errors:.2}%, missing indexes: {}", missing.len());
    platform::stage::found(if ok { Finding::Passed(summary) } else { Finding::Failed(summary) });
    Ok(if ok { 0 } else { EXIT_FAILED })
}

async fn reset(shop: Shop) -> Result<u8, StageError> {
    // All four are tried, whatever one of them answers.
    let catalog = platform::stage::reset_session(&shop.catalog, &shop.token).await;
    let checkout = platform::stage::reset_session(&shop.checkout, &shop.token).await;
    let cart = platform::stage::reset_session(&shop.cart, &shop.token).await;
    let payment = shop.restore_payment().await;
    let (catalog, checkout) = (catalog?, checkout?);
    cart?;
    payment?;
    if let Some(message) = catalog.json().and_then(|v| v["message"].as_str().map(str::to_owned)) {
        println!("{message}");
    }
    let pool = checkout.json().map(|v| v["pool"].to_string()).unwrap_or_default();
    println!("Checkout pool back to normal: {pool}. Carts emptied. Payment processor normal, its queue empty.");
    Ok(0)
}

/// The plan of the catalog query, from the catalog's admin view.
async fn catalog_scans(shop: &Shop) -> Result<bool, StageError> {
    let reply = shop.catalog.get_admin("/admin/indexes", &shop.token).await?;
    let plans = reply.json().unwrap_or_default();
    Ok(plans["plans"][0]["full_table_scan"] == true)
}

/// `breakroom rehearse shop/black-friday`: the story's own timeline, compressed to a
/// minute (the defaults: a 20-connection pool, a 5 s wait, the automatic peak), must
/// fail on cue — the alert condition holds at its minute and the pool turns the peak's
/// checkouts away; then the check fails with the indexes missing, the fix passes it and
/// the reset puts everything back.
pub struct Rehearse {
    shop: Shop,
    products: u64,
    run: Option<TimelineOutcome>,
}

/// The timeline's speed in a rehearsal: 30 minutes in 60 s.
pub const REHEARSAL_SPEEDUP: f64 = 30.0;

/// What a rehearsal's timeline showed.
#[derive(Default)]
struct TimelineOutcome {
    alert: Option<(bool, String)>,
    peak: Option<crate::rush::PeakReport>,
    troubles: Vec<String>,
}

impl Rehearse {
    pub fn new(shop: Shop) -> Rehearse {
        Rehearse { shop, products: 0, run: None }
    }

    async fn run_timeline(&self) -> Result<TimelineOutcome, StageError> {
        let (peak_rpm, _) = self.shop.auto_peak_rpm().await?;
        let settings = Settings {
            speedup: REHEARSAL_SPEEDUP,
            peak_rpm,
            duration_minutes: timeline::TIMELINE_MINUTES,
            pool_size: 20,
            pool_timeout_ms: 5000,
            retry_storm: false,
        };
        let seconds = settings.minute_seconds() * settings.duration_minutes;
        // stderr: the verdict table stays on stdout, and a silent minute looks hung.
        eprintln!(
            "  shop/black-friday: the whole timeline at {REHEARSAL_SPEEDUP}× ({seconds:.0} s, peak {peak_rpm:.0} journeys a minute) …"
        );
        let timeline = Timeline::prepare(settings, self.shop.clone()).await?;
        let mut outcome = TimelineOutcome::default();
        timeline
            .run(&mut |event| match event {
                Event::AlertCondition { holds, detail } => outcome.alert = Some((holds, detail)),
                Event::Peak(peak) => outcome.peak = Some(peak),
                Event::Trouble(text) => outcome.troubles.push(text),
                Event::Minute(_) | Event::Milestone(_) => {}
            })
            .await;
        Ok(outcome)
    }
}

impl Rehearsal for Rehearse {
    fn prepare(&mut self) -> Boxed<'_, Result<(), StageError>> {
        Box::pin(async move {
            self.products = self.shop.products().await?;
            Ok(())
        })
    }

    fn reproduce(&mut self) -> Judged<'_> {
        Box::pin(async move {
            let outcome = self.run_timeline().await?;
            let judgement = match (&outcome.alert, outcome.troubles.first()) {
                (_, Some(trouble)) => Judgement::new(false, trouble.clone()),
                (Some((holds, detail)), None) => Judgement::new(
                    *holds,
                    if *holds {
                        format!("the alert condition held at minute 22: {detail}")
                    } else {
                        format!("the demo fails to fail: the alert condition did not hold at minute 22 ({detail})")
                    },
                ),
                (None, None) => Judgement::new(false, "the timeline ended before its alert minute"),
            };
            self.run = Some(outcome);
            Ok(judgement)
        })
    }

    fn symptom(&mut self) -> Judged<'_> {
        Box::pin(async move {
            let peak = self.run.as_ref().and_then(|run| run.peak.as_ref());
            Ok(match peak {
                None => Judgement::new(false, "the timeline did not reach its peak failure"),
                Some(peak) => Judgement::new(
                    peak.pool_caused() && peak.failed > 0,
                    format!(
                        "peak failure: {}{}",
                        peak.describe(),
                        if peak.in_band() { "" } else { " — outside the story's 20–60%" }
                    ),
                ),
            })
        })
    }

    fn check_fails(&mut self) -> Judged<'_> {
        Box::pin(async move {
            // The timeline cleaned up after itself: the check runs against the fault again.
            self.shop.drop_indexes().await?;
            let burst = burst(&self.shop, self.products, 600.0, 5).await;
            let missing = catalog_scans(&self.shop).await?;
            Ok(Judgement::new(
                missing,
                format!(
                    "indexes missing → the check fails (burst p95 {:.0} ms, errors {:.1}%)",
                    burst.latency_ms.p95,
                    burst.error_rate * 100.0
                ),
            ))
        })
    }

    fn fix(&mut self) -> Judged<'_> {
        Box::pin(async move {
            self.shop.restore().await?;
            let report = burst(&self.shop, self.products, 600.0, 5).await;
            let ok = report.latency_ms.p95 < 500.0 && report.error_rate < 0.01;
            Ok(Judgement::new(
                ok,
                format!(
                    "indexes restored, pool normal: {} requests, p95 {:.0} ms, errors {:.2}%",
                    report.requests,
                    report.latency_ms.p95,
                    report.error_rate * 100.0
                ),
            ))
        })
    }

    fn reset(&mut self) -> Judged<'_> {
        Box::pin(async move {
            let shop = &self.shop;
            for service in [&shop.catalog, &shop.checkout, &shop.cart] {
                platform::stage::reset_session(service, &shop.token).await?;
            }
            let pool = shop.checkout.get("/health").await?.json().unwrap_or_default();
            let normal = pool["pool"]["max_connections"] == pool["pool"]["normal"]["max_connections"];
            let ok = normal && !catalog_scans(shop).await?;
            Ok(Judgement::new(ok, "indexes present, checkout's normal pool, demo orders removed"))
        })
    }

    fn recover(&mut self) -> Boxed<'_, ()> {
        // Whatever failed, the lab is not left broken.
        Box::pin(async move {
            let shop = &self.shop;
            let _ = shop.restore().await;
            // The timeline's orders and carts too (thousands of doorbuster buyers).
            for service in [&shop.catalog, &shop.checkout, &shop.cart] {
                let _ = platform::stage::reset_session(service, &shop.token).await;
            }
        })
    }
}

/// Shoppers at `rpm` journeys a minute for `seconds`, checkout-heavy.
async fn burst(shop: &Shop, products: u64, rpm: f64, seconds: u64) -> driver::record::Snapshot {
    let profile = profile::blackfriday(&shop.urls.catalog_url, &shop.urls.cart_url, &shop.urls.checkout_url, products);
    let run = Arc::new(Run::new(profile, shop.urls.catalog_url.clone(), None, Duration::from_secs(30), Vec::new()));
    run.later_mix.store(true, std::sync::atomic::Ordering::Relaxed);
    let rate = rpm / 60.0;
    let model = Model::Open { shape: Shape::constant(rate, Duration::from_secs(seconds)), max_in_flight: 20_000 };
    engine::drive(run.clone(), model).await;
    run.recorder.snapshot("blackfriday", "open", run.elapsed(), rate)
}
