//! The telemetry console (`/console`) of the real binary, with nothing but the binary:
//! the vote lab's ReferralCacheExhausted fires within seconds of the eleventh referral
//! vote and the failing vote's trace carries the exhaustion; an item write shows its
//! database and cache spans, and a Redis outage its series and alert; the shop's
//! catalog shows full-table-scan spans once its indexes are dropped. On both backends:
//! the binary given DATABASE_URL and REDIS_URL uses PostgreSQL and Redis.

mod common;

use std::time::Duration;

use common::Backend;
use common::binary::Served;
use serde_json::{Value, json};

const TOKEN: &str = "console-test-admin-token";

/// The binary serving `lab` on `backend`, with its admin token; the database it was
/// given is dropped with the returned guard.
struct Lab {
    served: Served,
    client: reqwest::Client,
    _dir: tempfile::TempDir,
    database: Option<String>,
}

impl Drop for Lab {
    fn drop(&mut self) {
        if let Some(name) = self.database.take() {
            let _ = std::thread::spawn(move || {
                let runtime = tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap();
                runtime.block_on(common::drop_database(&name));
            })
            .join();
        }
    }
}

async fn start(lab: &str, backend: Backend, args: &[&str], redis: Option<String>) -> Lab {
    start_on(common::free_port(), lab, backend, args, redis).await
}

async fn start_on(port: u16, lab: &str, backend: Backend, args: &[&str], redis: Option<String>) -> Lab {
    let dir = tempfile::tempdir().unwrap();
    let mut envs = vec![("BREAKROOM_ADMIN_TOKEN".to_string(), TOKEN.to_string())];
    let mut database = None;
    if backend == Backend::Services {
        let (name, url) = common::create_database().await;
        envs.push(("DATABASE_URL".into(), url));
        envs.push(("REDIS_URL".into(), redis.unwrap_or_else(common::redis_url)));
        envs.push(("BREAKROOM_REDIS_PREFIX".into(), format!("{name}:")));
        database = Some(name);
    }
    let envs: Vec<(&str, &str)> = envs.iter().map(|(k, v)| (k.as_str(), v.as_str())).collect();
    let served = common::binary::serve_on(port, lab, dir.path(), args, &envs).await;
    Lab { served, client: breakroom::platform::http::client().build().unwrap(), _dir: dir, database }
}

impl Lab {
    async fn get(&self, path: &str) -> (u16, Value) {
        let response = self.client.get(format!("{}{path}", self.served.url)).send().await.unwrap();
        let status = response.status().as_u16();
        (status, response.json().await.unwrap_or(Value::Null))
    }

    /// The rule's state on the alert panel: `inactive`, `pending` or `firing`.
    async fn alert_state(&self, name: &str) -> String {
        let (_, alerts) = self.get("/console/api/alerts").await;
        let rule = alerts["rules"].as_array().unwrap().iter().find(|r| r["name"] == name).cloned();
        rule.unwrap_or_else(|| panic!("no rule {name}: {alerts}"))["state"].as_str().unwrap().to_string()
    }

    /// Waits until `name` reads `state`; the states it read on the way, each once.
    async fn alert_reaches(&self, name: &str, state: &str, limit: Duration) -> Vec<String> {
        let mut seen: Vec<String> = Vec::new();
        let started = std::time::Instant::now();
        while started.elapsed() < limit {
            let now = self.alert_state(name).await;
            if seen.last() != Some(&now) {
                seen.push(now.clone());
            }
            if now == state {
                return seen;
            }
            tokio::time::sleep(Duration::from_millis(250)).await;
        }
        panic!("{name} did not reach {state} within {limit:?}; it read {seen:?}\n{}", self.transcript());
    }

    fn transcript(&self) -> String {
        let text = self.served.transcript.lock().unwrap().clone();
        text.lines().rev().take(40).collect::<Vec<_>>().into_iter().rev().collect::<Vec<_>>().join("\n")
    }

    async fn traces(&self, query: &str) -> Vec<Value> {
        let (status, body) = self.get(&format!("/console/api/traces?{query}")).await;
        assert_eq!(status, 200, "{body}");
        body["traces"].as_array().unwrap().clone()
    }

    async fn trace(&self, id: &str) -> Vec<Value> {
        let (status, body) = self.get(&format!("/console/api/traces/{id}")).await;
        assert_eq!(status, 200, "{body}");
        body["trace"]["spans"].as_array().unwrap().clone()
    }

    /// The newest trace matching `query`, waited for (spans are recorded when they end).
    async fn first_trace(&self, query: &str) -> Value {
        for _ in 0..40 {
            if let Some(trace) = self.traces(query).await.into_iter().next() {
                return trace;
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        panic!("no trace for {query}: {:?}", self.traces("").await);
    }
}

/// Seed 001's moment: ten referral votes pass, the eleventh is refused, and the console
/// shows ReferralCacheExhausted pending, then firing five seconds later — without a
/// Prometheus — beside the failing vote's trace and its log line.
async fn referral_exhaustion_fires_and_its_vote_is_traced(backend: Backend) {
    let lab = start("vote", backend, &["--seed-partners", "50"], None).await;
    assert_eq!(lab.alert_state("ReferralCacheExhausted").await, "inactive");
    let mut refused = 0;
    for _ in 0..11 {
        let body = json!({ "choice": "ai", "referral": "conf-partner-2026" });
        let response = lab.client.post(format!("{}/vote", lab.served.url)).json(&body).send().await.unwrap();
        refused += u32::from(response.status() == 503);
    }
    assert_eq!(refused, 1, "the eleventh referral vote exhausts the cache of ten");
    let states = lab.alert_reaches("ReferralCacheExhausted", "firing", Duration::from_secs(30)).await;
    assert_eq!(states.last().map(String::as_str), Some("firing"));
    assert!(states.contains(&"pending".to_string()), "it waits its `for: 5s` pending first: {states:?}");

    let (_, alerts) = lab.get("/console/api/alerts").await;
    let rule = alerts["rules"].as_array().unwrap().iter().find(|r| r["name"] == "ReferralCacheExhausted").unwrap();
    let alert = &rule["alerts"][0];
    assert_eq!(alert["labels"]["job"], "vote-api");
    assert_eq!(alert["summary"], "vote-api: referral votes fail, the referral cache is exhausted");
    assert!(alert["value"].as_f64().unwrap() > 0.0, "{alert}");
    for quiet in ["VoteAPIDown", "VoteDatabaseConnectionsLeaked"] {
        assert_eq!(lab.alert_state(quiet).await, "inactive", "{quiet} stays quiet");
    }

    // The failing vote's trace: its referral span says the cache was exhausted.
    let failing = lab.first_trace("status=503&attr=referral.cache.exhausted%3Dtrue").await;
    assert_eq!((failing["name"].as_str(), failing["route"].as_str()), (Some("POST /vote"), Some("/vote")));
    let spans = lab.trace(failing["trace_id"].as_str().unwrap()).await;
    let referral = spans.iter().find(|s| s["name"] == "referral.validate").expect("a referral span");
    assert_eq!(referral["attributes"]["referral.cache.exhausted"], true);
    assert_eq!(referral["attributes"]["referral.cache.entries"], 11);
    assert!(referral["error"].is_string(), "the span failed: {referral}");
    assert!(referral["events"].as_array().unwrap().iter().any(|e| e["name"] == "referral_cache_exhausted"));
    let before = lab.first_trace("status=200&route=/vote").await;
    let spans = lab.trace(before["trace_id"].as_str().unwrap()).await;
    let query = spans.iter().find(|s| s["name"] == "SELECT referral_partners").expect("the partner query's span");
    let system = if backend == Backend::Services { "postgresql" } else { "sqlite" };
    assert_eq!((query["kind"].as_str(), query["attributes"]["db.system"].as_str()), (Some("client"), Some(system)));
    assert_eq!(query["attributes"]["db.rows_affected"], 1);
    let acquire = spans.iter().find(|s| s["name"] == "db.pool.acquire").expect("the pool wait's span");
    assert!(acquire["attributes"]["db.connection.pool.wait_time_ms"].as_f64().is_some(), "{acquire}");
    assert_eq!(acquire["attributes"]["db.connection.pool.exhausted"], false);
    let passing = lab.traces("status=200&attr=referral.cache.exhausted%3Dfalse").await;
    assert_eq!(passing.len(), 10, "the ten votes before it passed");

    // Its log line links to the same trace.
    let (_, logs) = lab.get("/console/api/logs?level=error&event=referral_cache_exhausted").await;
    let logs = logs["logs"].as_array().unwrap();
    assert_eq!(logs.len(), 1, "{logs:?}");
    assert_eq!(logs[0]["trace_id"], failing["trace_id"]);
    assert_eq!(logs[0]["fields"]["entries"], 11);
    let (_, firing) = lab.get("/console/api/logs?event=alert_firing").await;
    assert!(firing["logs"][0]["fields"]["alert"] == "ReferralCacheExhausted", "{firing}");

    // The graph the speaker points at: entries over capacity.
    let (_, graphs) = lab.get("/console/api/graphs?id=referral&step=1&minutes=1").await;
    let lines = graphs["graphs"][0]["lines"].as_array().unwrap();
    let last = |legend: &str| -> f64 {
        let line = lines.iter().find(|l| l["legend"] == legend).unwrap_or_else(|| panic!("{legend}: {lines:?}"));
        line["points"].as_array().unwrap().last().unwrap()[1].as_f64().unwrap()
    };
    assert_eq!((last("entries"), last("capacity")), (11.0, 10.0));

    // The presenter's strip names it.
    let (_, state) = lab.get("/presenter/state").await;
    assert_eq!(state["alerts_firing"], json!(["ReferralCacheExhausted"]));
}

/// The fixed build never fires, however many referral votes come.
async fn the_fixed_build_stays_quiet(backend: Backend) {
    let lab = start("vote", backend, &["--seed-partners", "50", "--fixed", "referral"], None).await;
    for _ in 0..15 {
        let body = json!({ "choice": "ai", "referral": "conf-partner-2026" });
        let response = lab.client.post(format!("{}/vote", lab.served.url)).json(&body).send().await.unwrap();
        assert_eq!(response.status(), 200);
    }
    // Past the rule's `for` with samples of every vote in its window.
    tokio::time::sleep(Duration::from_secs(8)).await;
    let (_, alerts) = lab.get("/console/api/alerts").await;
    for rule in alerts["rules"].as_array().unwrap() {
        assert_eq!(rule["state"], "inactive", "{rule}");
        assert!(rule["error"].is_null(), "every rule evaluates: {rule}");
    }
    let spans = lab.first_trace("route=/vote").await;
    let spans = lab.trace(spans["trace_id"].as_str().unwrap()).await;
    let referral = spans.iter().find(|s| s["name"] == "referral.validate").unwrap();
    assert_eq!(referral["attributes"]["referral.fixed"], true);
    assert!(referral["attributes"].get("referral.cache.exhausted").is_none(), "no cache in the fixed build");
}

/// Seed 002: one write shows its database span and its cache span, in one trace.
async fn an_item_write_shows_its_database_and_cache_spans(backend: Backend) {
    let lab = start("items", backend, &[], None).await;
    let created = lab
        .client
        .post(format!("{}/items", lab.served.url))
        .json(&json!({ "name": "Traced", "price": 1.5 }))
        .send()
        .await
        .unwrap();
    assert_eq!(created.status(), 200);
    let write = lab.first_trace("route=/items&status=200").await;
    let spans = lab.trace(write["trace_id"].as_str().unwrap()).await;
    let names: Vec<&str> = spans.iter().filter_map(|s| s["name"].as_str()).collect();
    assert!(names.contains(&"postgres_insert") && names.contains(&"redis_set"), "{names:?}");
    let insert = spans.iter().find(|s| s["name"] == "postgres_insert").unwrap();
    let system = if backend == Backend::Services { "postgresql" } else { "sqlite" };
    assert_eq!(insert["attributes"]["db.system"], system);
    let root = spans.iter().find(|s| s["parent_id"].is_null()).unwrap();
    assert!(spans.iter().filter(|s| s["name"] != root["name"]).all(|s| s["parent_id"].is_string()));
    let (_, alerts) = lab.get("/console/api/alerts").await;
    assert!(alerts["rules"].as_array().unwrap().iter().all(|r| r["error"].is_null()), "{alerts}");
}

/// A Redis outage on the items lab: `cache_up` drops to 0 on the graph and
/// ItemsCacheDown fires after its 15 s; writes still succeed.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_redis_outage_shows_on_the_graph_and_fires_items_cache_down() {
    let mut redis = common::PrivateRedis::start();
    let lab = start("items", Backend::Services, &[], Some(redis.url())).await;
    assert_eq!(lab.alert_state("ItemsCacheDown").await, "inactive");
    redis.stop();
    let states = lab.alert_reaches("ItemsCacheDown", "firing", Duration::from_secs(45)).await;
    assert!(states.contains(&"pending".to_string()), "{states:?}");
    let (_, graphs) = lab.get("/console/api/graphs?id=cache&step=1&minutes=1").await;
    let up =
        graphs["graphs"][0]["lines"].as_array().unwrap().iter().find(|l| l["legend"] == "Redis up (1 = yes)").cloned();
    let points = up.expect("a Redis-up line")["points"].as_array().unwrap().clone();
    let values: Vec<f64> = points.iter().map(|p| p[1].as_f64().unwrap()).collect();
    assert!(values.first() == Some(&1.0) && values.last() == Some(&0.0), "up, then down: {values:?}");
    let created = lab
        .client
        .post(format!("{}/items", lab.served.url))
        .json(&json!({ "name": "x", "price": 1 }))
        .send()
        .await
        .unwrap();
    assert_eq!(created.status(), 200, "writes go on from the database");
    redis.restart();
    lab.alert_reaches("ItemsCacheDown", "inactive", Duration::from_secs(30)).await;
}

/// The shop's four services on free ports (the catalog first), with a small catalog.
async fn start_shop(backend: Backend) -> (Lab, Vec<String>) {
    let ports: Vec<String> = (0..4).map(|_| common::free_port().to_string()).collect();
    let args = [
        "--catalog-port",
        &ports[0],
        "--cart-port",
        &ports[1],
        "--checkout-port",
        &ports[2],
        "--payment-port",
        &ports[3],
        "--products",
        "2000",
    ];
    (start_on(ports[0].parse().unwrap(), "shop", backend, &args, None).await, ports)
}

/// Seed 003: once the catalog's indexes are dropped, its product queries are spans
/// with `db.full_table_scan=true` (and the console is the same on every service).
async fn the_shop_shows_full_table_scans_once_the_indexes_are_dropped(backend: Backend) {
    let (lab, ports) = start_shop(backend).await;
    let catalog = format!("http://127.0.0.1:{}", ports[0]);
    let search = |lab: &Lab| {
        let url = format!("{catalog}/products?category=electronics&price_min=0&price_max=1000");
        let client = lab.client.clone();
        async move { client.get(url).send().await.unwrap().status() }
    };
    assert_eq!(search(&lab).await, 200);
    assert!(lab.traces("attr=db.full_table_scan%3Dtrue").await.is_empty(), "indexed at first");
    let dropped = lab.client.post(format!("{catalog}/admin/indexes/drop")).bearer_auth(TOKEN).send().await.unwrap();
    assert_eq!(dropped.status(), 200, "{}", dropped.text().await.unwrap());
    assert_eq!(search(&lab).await, 200);
    let scan = lab.first_trace("attr=db.full_table_scan%3Dtrue").await;
    assert_eq!(scan["service"], "product-catalog");
    let spans = lab.trace(scan["trace_id"].as_str().unwrap()).await;
    let query = spans.iter().find(|s| s["attributes"]["db.full_table_scan"] == true && s["kind"] == "client").unwrap();
    assert!(query["attributes"]["db.missing_index"].as_str().is_some_and(|i| !i.is_empty()), "{query}");
    lab.alert_reaches("ShopIndexMissing", "pending", Duration::from_secs(10)).await;
    let (status, _) = lab.get("/console/api/alerts").await;
    assert_eq!(status, 200);
    // Every service serves the one console.
    let other = lab.client.get(format!("http://127.0.0.1:{}/console/api/alerts", ports[2])).send().await.unwrap();
    let other: Value = other.json().await.unwrap();
    assert!(
        other["rules"].as_array().unwrap().iter().any(|r| r["name"] == "ShopIndexMissing" && r["state"] != "inactive")
    );
}

/// Seed 004: each download the cached dashboard statistics do not show is counted on
/// the console's graph; with the fix, a download invalidates them and the count stays 0.
async fn the_datasets_graph_counts_the_downloads_the_dashboard_misses(backend: Backend) {
    use breakroom::labs::datasets::FLAGSHIP_ID;
    for (fixed, expected) in [(false, 3.0), (true, 0.0)] {
        let args: &[&str] = if fixed { &["--fixed", "stats-cache"] } else { &[] };
        let lab = start("datasets", backend, args, None).await;
        let as_alice = |method: reqwest::Method, path: String| {
            lab.client.request(method, format!("{}{path}", lab.served.url)).header("authorization", "Token alice-token")
        };
        let statistics = format!("/api/datasets/{FLAGSHIP_ID}/statistics/");
        assert_eq!(as_alice(reqwest::Method::GET, statistics.clone()).send().await.unwrap().status(), 200);
        for _ in 0..3 {
            let download = as_alice(reqwest::Method::POST, format!("/api/datasets/{FLAGSHIP_ID}/download/"));
            assert_eq!(download.send().await.unwrap().status(), 200);
        }
        assert_eq!(as_alice(reqwest::Method::GET, statistics).send().await.unwrap().status(), 200);
        let shows = |lab: &'_ Lab| {
            let lab_url = lab.served.url.clone();
            let client = lab.client.clone();
            async move {
                let url = format!("{lab_url}/console/api/graphs?id=stale&step=1&minutes=1");
                let graphs: Value = client.get(url).send().await.unwrap().json().await.unwrap();
                let lines = graphs["graphs"][0]["lines"].as_array().cloned().unwrap_or_default();
                let line = lines.iter().find(|l| l["legend"] == "downloads not shown").cloned();
                line.and_then(|l| l["points"].as_array()?.last()?[1].as_f64())
            }
        };
        // Two ticks past the last read, so the last point is a sample taken after it.
        tokio::time::sleep(Duration::from_millis(2200)).await;
        let mut last = None;
        for _ in 0..30 {
            last = shows(&lab).await;
            if last == Some(expected) {
                break;
            }
            tokio::time::sleep(Duration::from_millis(200)).await;
        }
        assert_eq!(last, Some(expected), "fixed: {fixed}");
    }
}

/// Bad filters get a 400 that says what is allowed and change nothing.
async fn bad_console_queries_are_refused_with_a_reason(backend: Backend) {
    let lab = start("datasets", backend, &[], None).await;
    for (path, status) in [
        ("/console/api/traces?status=abc", 400),
        ("/console/api/traces?status=5x", 400),
        ("/console/api/traces?min_ms=-1", 400),
        ("/console/api/traces?min_ms=NaN", 400),
        ("/console/api/traces?min_ms=", 400),
        ("/console/api/traces?attr=novalue", 400),
        ("/console/api/traces?limit=0", 400),
        ("/console/api/traces?colour=red", 422),
        ("/console/api/traces/xyz", 400),
        ("/console/api/traces/0123456789abcdef0123456789abcdef", 404),
        ("/console/api/graphs?minutes=99", 400),
        ("/console/api/graphs?step=%00", 400),
        ("/console/api/graphs?id=%3Cscript%3E", 404),
        ("/console/api/logs?level=loud", 400),
        ("/console/api/logs?limit=100000", 400),
    ] {
        let (got, body) = lab.get(path).await;
        assert_eq!(got, status, "{path}: {body}");
        assert!(body["detail"].as_str().is_some_and(|d| !d.is_empty() && !d.contains("<script>")), "{path}: {body}");
    }
    let (status, alerts) = lab.get("/console/api/alerts").await;
    assert_eq!(status, 200);
    assert_eq!(alerts["rules"][0]["name"], "DatasetsListQueriesPerRequestHigh");
    // The console's own questions are not the lab's traffic: not in its request metrics.
    let metrics = lab.client.get(format!("{}/metrics", lab.served.url)).send().await.unwrap().text().await.unwrap();
    assert!(!metrics.contains("endpoint=\"/console"), "{metrics}");
    let page = lab.client.get(format!("{}/console", lab.served.url)).send().await.unwrap().text().await.unwrap();
    assert!(page.contains("/static/console.js") && page.contains("datasets"), "{page}");
}

on_both_backends!(
    referral_exhaustion_fires_and_its_vote_is_traced,
    the_fixed_build_stays_quiet,
    an_item_write_shows_its_database_and_cache_spans,
    the_shop_shows_full_table_scans_once_the_indexes_are_dropped,
    bad_console_queries_are_refused_with_a_reason,
    the_datasets_graph_counts_the_downloads_the_dashboard_misses,
);

/// A flood past the console's budget of new traces a second: only the budget's worth
/// of requests is traced, and the requests it skipped leave no stray spans of their
/// own (their referral spans would otherwise be roots of traces of their own).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_flood_is_traced_within_the_budget_and_leaves_no_stray_spans() {
    let lab = start("vote", Backend::Embedded, &["--seed-partners", "50", "--console-trace-rate", "5"], None).await;
    // A page's files first, inside the second's budget: they are not traced either.
    tokio::time::sleep(Duration::from_millis(1100)).await;
    let page = lab.client.get(format!("{}/static/breakroom.css", lab.served.url)).send().await.unwrap();
    assert_eq!(page.status(), 200);
    let started = std::time::Instant::now();
    let votes = (0..80).map(|_| {
        let body = json!({ "choice": "ai", "referral": "conf-partner-2026" });
        lab.client.post(format!("{}/vote", lab.served.url)).json(&body).send()
    });
    for answer in futures_util::future::join_all(votes).await {
        answer.unwrap();
    }
    let seconds = started.elapsed().as_secs() + 1;
    tokio::time::sleep(Duration::from_millis(300)).await;
    let traces = lab.traces("limit=500").await;
    assert!(!traces.is_empty() && traces.len() as u64 <= 5 * (seconds + 1), "{} traces in {seconds} s", traces.len());
    let names: Vec<&str> = traces.iter().filter_map(|t| t["name"].as_str()).collect();
    assert!(names.iter().all(|n| *n == "POST /vote" || *n == "GET /health"), "only requests are roots: {names:?}");
    let (_, metrics) = lab.get("/console/api/alerts").await;
    assert!(metrics["rules"].is_array());
}

/// `--console off`: nothing is recorded, and the page says how to turn it on.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn recording_off_records_nothing_and_says_so() {
    let lab = start("vote", Backend::Embedded, &["--console", "off"], None).await;
    let vote =
        lab.client.post(format!("{}/vote", lab.served.url)).json(&json!({ "choice": "ai" })).send().await.unwrap();
    assert_eq!(vote.status(), 200);
    tokio::time::sleep(Duration::from_millis(1500)).await;
    let (_, traces) = lab.get("/console/api/traces").await;
    assert_eq!((traces["recording"].as_bool(), traces["kept"].as_u64()), (Some(false), Some(0)), "{traces}");
    let (_, alerts) = lab.get("/console/api/alerts").await;
    assert!(alerts["evaluated_at_ms"].is_null(), "{alerts}");
    let (_, logs) = lab.get("/console/api/logs").await;
    assert_eq!(logs["logs"], json!([]));
    let page = lab.client.get(format!("{}/console", lab.served.url)).send().await.unwrap().text().await.unwrap();
    assert!(page.contains("Recording is off"), "{page}");
}

/// tests/browser/console.mjs for `lab` against `url`; with `redis`, stops it when the
/// page asks ("stop redis"). Returns what it printed once it ended.
async fn chromium(lab: &str, url: &str, mut redis: Option<&mut common::PrivateRedis>) -> (bool, String) {
    use tokio::io::{AsyncBufReadExt, AsyncWriteExt};
    let dir = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/browser");
    assert!(
        std::path::Path::new(dir).join("node_modules/playwright-core").exists(),
        "playwright-core is not installed: run `npm ci` in tests/browser (.ci/run does)"
    );
    let shots = tempfile::tempdir().unwrap();
    let mut node = tokio::process::Command::new("node")
        .arg("console.mjs")
        .current_dir(dir)
        .env("BASE_URL", url)
        .env("LAB", lab)
        .env("SCREENSHOT_DIR", common::screenshot_dir(&shots))
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .kill_on_drop(true)
        .spawn()
        .expect("node runs");
    let mut stdin = node.stdin.take();
    let mut lines = tokio::io::BufReader::new(node.stdout.take().unwrap()).lines();
    let mut printed = String::new();
    let reading = async {
        while let Ok(Some(line)) = lines.next_line().await {
            if line == "stop redis"
                && let Some(redis) = redis.as_mut()
            {
                redis.stop();
                // Written, then closed: the page goes on, and node may end.
                if let Some(mut input) = stdin.take() {
                    input.write_all(b"stopped\n").await.unwrap();
                }
            }
            printed.push_str(&line);
            printed.push('\n');
        }
    };
    tokio::time::timeout(Duration::from_secs(120), reading).await.expect("the browser test ends within 2 minutes");
    let output = node.wait_with_output().await.unwrap();
    printed.push_str(&String::from_utf8_lossy(&output.stderr));
    (output.status.success() && printed.trim_end().ends_with("ok"), printed)
}

/// The console in headless Chromium (tests/browser/console.mjs): the alert firing, the
/// failing vote's waterfall, the projector view, a phone. Needs chromium and `npm ci`
/// in tests/browser (.ci/run does both). `BREAKROOM_SCREENSHOTS=docs/screenshots`
/// refreshes the README's pictures of it.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_console_shows_the_exhaustion_in_chromium() {
    let lab = start("vote", Backend::Embedded, &["--seed-partners", "50"], None).await;
    for _ in 0..11 {
        let body = json!({ "choice": "ai", "referral": "conf-partner-2026" });
        lab.client.post(format!("{}/vote", lab.served.url)).json(&body).send().await.unwrap();
    }
    let (ok, printed) = chromium("vote", &lab.served.url, None).await;
    assert!(ok, "{printed}\n{}", lab.transcript());
}

/// Seed 002 in Chromium: a write's database and Redis spans, then Redis stops and the
/// console shows the Redis-up line at 0 and ItemsCacheDown firing.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_items_console_shows_a_write_and_a_redis_outage_in_chromium() {
    let mut redis = common::PrivateRedis::start();
    let lab = start("items", Backend::Services, &[], Some(redis.url())).await;
    let body = json!({ "name": "Traced", "price": 1.5 });
    let created = lab.client.post(format!("{}/items", lab.served.url)).json(&body).send().await.unwrap();
    assert_eq!(created.status(), 200);
    let (ok, printed) = chromium("items", &lab.served.url, Some(&mut redis)).await;
    assert!(ok, "{printed}\n{}", lab.transcript());
}

/// Seed 003 in Chromium: the catalog's full-table-scan spans once its indexes are gone.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_shop_console_shows_full_table_scans_in_chromium() {
    let (lab, _) = start_shop(Backend::Embedded).await;
    let catalog = &lab.served.url;
    let dropped = lab.client.post(format!("{catalog}/admin/indexes/drop")).bearer_auth(TOKEN).send().await.unwrap();
    assert_eq!(dropped.status(), 200);
    let products = format!("{catalog}/products?category=electronics&price_min=0&price_max=1000");
    assert_eq!(lab.client.get(products).send().await.unwrap().status(), 200);
    let (ok, printed) = chromium("shop", catalog, None).await;
    assert!(ok, "{printed}\n{}", lab.transcript());
}
