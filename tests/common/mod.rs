//! `spawn_app()`: the real server on a port of its own, on either backend.
//!
//! Every story runs twice: on the embedded default (SQLite + in-process state) and on
//! the machine's PostgreSQL + Redis (a fresh database per test, a Redis key prefix per
//! test). The PostgreSQL + Redis variant fails — it never skips — when those servers
//! are not running: start them (see .ci/run) or point BREAKROOM_TEST_DATABASE_URL and
//! BREAKROOM_TEST_REDIS_URL elsewhere.
#![allow(dead_code)]

use std::sync::Arc;
use std::sync::atomic::{AtomicU32, Ordering};
use std::time::Duration;

use breakroom::config::ServeConfig;
use breakroom::labs::LabName;
use redis::Commands;
use serde_json::Value;
use sqlx::Connection;
use tokio_util::sync::CancellationToken;

pub const ADMIN_TOKEN: &str = "test-admin-token";

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Backend {
    /// SQLite in a temporary directory, live state in the process.
    Embedded,
    /// PostgreSQL and Redis, as deployed.
    Services,
}

/// Runs each named `async fn story(backend: Backend)` once per backend, as
/// `story::sqlite` and `story::postgres_redis`. A story given as `on_both_backends!(alone: story)` runs with
/// no other story of its test binary beside it (both variants too, one after the other):
/// one whose symptom is measured against the machine's speed, which the other tests
/// would change halfway.
#[macro_export]
macro_rules! on_both_backends {
    (alone: $($story:ident),+ $(,)?) => {
        $($crate::on_both_backends!(@story $story, write);)+
    };
    ($($story:ident),* $(,)?) => {
        $($crate::on_both_backends!(@story $story, read);)*
    };
    (@story $story:ident, $turn:ident) => {
        mod $story {
            #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
            async fn sqlite() {
                let _turn = $crate::common::TURNS.$turn().await;
                super::$story($crate::common::Backend::Embedded).await
            }
            #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
            async fn postgres_redis() {
                let _turn = $crate::common::TURNS.$turn().await;
                super::$story($crate::common::Backend::Services).await
            }
        }
    };
}

/// The stories of one test binary share the machine (a read each); a story run
/// `alone:` has it to itself (the write). Fair: a waiting `alone` story holds off the
/// stories that start after it, so it runs as soon as the running ones are done.
pub static TURNS: tokio::sync::RwLock<()> = tokio::sync::RwLock::const_new(());

fn admin_database_url() -> String {
    std::env::var("BREAKROOM_TEST_DATABASE_URL")
        .unwrap_or_else(|_| "postgres://postgres@127.0.0.1:5432/postgres".into())
}

pub fn redis_url() -> String {
    std::env::var("BREAKROOM_TEST_REDIS_URL").unwrap_or_else(|_| "redis://127.0.0.1:6379".into())
}

/// What a test's servers share and what is cleaned up after the last one stops.
struct Resources {
    data_dir: tempfile::TempDir,
    database: Option<String>,
    database_url: Option<String>,
    redis_prefix: Option<String>,
}

impl Drop for Resources {
    fn drop(&mut self) {
        let database = self.database.take();
        let prefix = self.redis_prefix.take();
        // Drop runs inside the test's runtime: do the async cleanup on a thread of its own.
        let cleanup = std::thread::spawn(move || {
            if let Some(database) = database {
                let runtime = tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap();
                runtime.block_on(async {
                    if let Ok(mut conn) = sqlx::PgConnection::connect(&admin_database_url()).await {
                        let sql = format!("DROP DATABASE IF EXISTS \"{database}\" WITH (FORCE)");
                        let _ = sqlx::query(sqlx::AssertSqlSafe(sql)).execute(&mut conn).await;
                    }
                });
            }
            if let Some(prefix) = prefix
                && let Ok(mut conn) = redis::Client::open(redis_url()).and_then(|c| c.get_connection())
            {
                let keys: Vec<String> = conn
                    .scan_match::<_, String>(format!("{prefix}*"))
                    .map(|keys| keys.filter_map(Result::ok).collect())
                    .unwrap_or_default();
                if !keys.is_empty() {
                    let _: redis::RedisResult<i64> = redis::cmd("DEL").arg(keys).query(&mut conn);
                }
            }
        });
        let _ = cleanup.join();
    }
}

pub struct TestApp {
    pub url: String,
    pub client: reqwest::Client,
    pub backend: Backend,
    pub config: ServeConfig,
    shutdown: CancellationToken,
    server: Option<tokio::task::JoinHandle<anyhow::Result<()>>>,
    resources: Arc<Resources>,
}

static NEXT: AtomicU32 = AtomicU32::new(0);

/// A vote lab with a small seed; `adjust` may change any setting before it starts.
pub async fn spawn_app(backend: Backend, adjust: impl FnOnce(&mut ServeConfig)) -> TestApp {
    spawn_lab(LabName::Vote, backend, adjust).await
}

/// Any lab; `adjust` may change any setting before it starts.
pub async fn spawn_lab(lab: LabName, backend: Backend, adjust: impl FnOnce(&mut ServeConfig)) -> TestApp {
    let data_dir = tempfile::tempdir().expect("temporary data directory");
    let mut config = ServeConfig::embedded(lab, data_dir.path().to_path_buf());
    config.settings.vote.seed_partners = 50;
    config.platform.admin_token = Some(ADMIN_TOKEN.into());
    // Live viewers must get changes pushed; the periodic re-read would hide a lost push.
    config.platform.feed_refresh = Duration::from_secs(3600);
    let mut resources = Resources { data_dir, database: None, database_url: None, redis_prefix: None };
    if backend == Backend::Services {
        use_services(&mut config, &mut resources).await;
    }
    adjust(&mut config);
    start(backend, config, Arc::new(resources)).await
}

/// A fresh database on the machine's PostgreSQL and a key prefix on its Redis.
async fn use_services(config: &mut ServeConfig, resources: &mut Resources) {
    let (name, url) = create_database().await;
    resources.database = Some(name.clone());
    resources.database_url = Some(url.clone());
    resources.redis_prefix = Some(format!("{name}:"));
    config.platform.backend.database_url = Some(url);
    config.platform.backend.redis_url = Some(redis_url());
    config.platform.backend.redis_prefix = format!("{name}:");
    // Parallel tests on two cores: allow Redis a little more than production.
    config.platform.redis_timeout = Duration::from_millis(500);
}

/// A fresh, empty PostgreSQL database: (name, URL). Dropped with the test's
/// resources; `.ci/run` drops any left by an interrupted run.
pub async fn create_database() -> (String, String) {
    let n = NEXT.fetch_add(1, Ordering::Relaxed);
    let name = format!("breakroom_t_{}_{}_{}", std::process::id(), n, rand_suffix());
    let admin = admin_database_url();
    let mut conn = sqlx::PgConnection::connect(&admin).await.unwrap_or_else(|e| {
        panic!("PostgreSQL is not reachable at {admin} ({e}); start it (see .ci/run) to run the postgres_redis tests")
    });
    sqlx::query(sqlx::AssertSqlSafe(format!("CREATE DATABASE \"{name}\""))).execute(&mut conn).await.unwrap();
    let url = database_url_for(&admin, &name);
    (name, url)
}

/// Drops a database made by `create_database`.
pub async fn drop_database(name: &str) {
    if let Ok(mut conn) = sqlx::PgConnection::connect(&admin_database_url()).await {
        let sql = format!("DROP DATABASE IF EXISTS \"{name}\" WITH (FORCE)");
        let _ = sqlx::query(sqlx::AssertSqlSafe(sql)).execute(&mut conn).await;
    }
}

fn rand_suffix() -> u32 {
    use std::hash::{BuildHasher, RandomState};
    (RandomState::new().hash_one(std::time::SystemTime::now()) % 1_000_000) as u32
}

fn database_url_for(admin: &str, database: &str) -> String {
    let (base, _) = admin.rsplit_once('/').expect("a database URL with a path");
    format!("{base}/{database}")
}

async fn start(backend: Backend, config: ServeConfig, resources: Arc<Resources>) -> TestApp {
    let listeners = breakroom::local_listeners(&config).await.unwrap();
    start_on(backend, config, resources, listeners).await
}

async fn start_on(
    backend: Backend,
    config: ServeConfig,
    resources: Arc<Resources>,
    listeners: Vec<(&'static str, tokio::net::TcpListener)>,
) -> TestApp {
    let shutdown = CancellationToken::new();
    let app = breakroom::build(config.clone(), shutdown.clone(), listeners).await.expect("the lab starts");
    let url = app.urls()[0].1.clone();
    let server = tokio::spawn(breakroom::serve(app));
    let client = breakroom::platform::http::client().timeout(Duration::from_secs(10)).build().unwrap();
    TestApp { url, client, backend, config, shutdown, server: Some(server), resources }
}

impl TestApp {
    /// A second server on the same database and Redis: another replica of the deployment.
    pub async fn replica(&self) -> TestApp {
        start(self.backend, self.config.clone(), self.resources.clone()).await
    }

    /// Stops this server (as SIGTERM would) and starts a new one on the same data.
    pub async fn restart(mut self) -> TestApp {
        self.stop().await;
        start(self.backend, self.config.clone(), self.resources.clone()).await
    }

    /// [`restart`](Self::restart) on the same address (a lab with one service): what
    /// a presenter's lab is to the attendees who report to it.
    pub async fn restart_in_place(mut self) -> TestApp {
        self.stop().await;
        let address = self.url.trim_start_matches("http://").to_string();
        let listener = tokio::net::TcpListener::bind(&address).await.expect("the lab's port is free again");
        let name = self.config.open().services()[0].name;
        start_on(self.backend, self.config.clone(), self.resources.clone(), vec![(name, listener)]).await
    }

    /// Graceful shutdown; returns once the server has finished.
    pub async fn stop(&mut self) {
        self.shutdown.cancel();
        if let Some(server) = self.server.take() {
            tokio::time::timeout(Duration::from_secs(5), server)
                .await
                .expect("the server stops within 5 s of shutdown")
                .expect("the server task did not panic")
                .expect("the server exits cleanly");
        }
    }

    pub fn data_dir(&self) -> &std::path::Path {
        self.resources.data_dir.path()
    }

    pub fn redis_key(&self, name: &str) -> Option<String> {
        self.resources.redis_prefix.as_ref().map(|p| format!("{p}{name}"))
    }

    pub async fn get(&self, path: &str) -> reqwest::Response {
        self.client.get(format!("{}{path}", self.url)).send().await.expect("GET reaches the server")
    }

    pub async fn post_json(&self, path: &str, body: &Value) -> reqwest::Response {
        self.client.post(format!("{}{path}", self.url)).json(body).send().await.expect("POST reaches the server")
    }

    pub async fn post_raw(&self, path: &str, content_type: &str, body: impl Into<reqwest::Body>) -> reqwest::Response {
        self.client
            .post(format!("{}{path}", self.url))
            .header("content-type", content_type)
            .body(body)
            .send()
            .await
            .expect("POST reaches the server")
    }

    pub async fn put_json(&self, path: &str, body: &Value) -> reqwest::Response {
        self.client.put(format!("{}{path}", self.url)).json(body).send().await.expect("PUT reaches the server")
    }

    pub async fn delete(&self, path: &str) -> reqwest::Response {
        self.client.delete(format!("{}{path}", self.url)).send().await.expect("DELETE reaches the server")
    }

    pub async fn post_admin(&self, path: &str, token: Option<&str>, body: Option<&Value>) -> reqwest::Response {
        let mut request = self.client.post(format!("{}{path}", self.url));
        if let Some(token) = token {
            request = request.bearer_auth(token);
        }
        if let Some(body) = body {
            request = request.json(body);
        }
        request.send().await.expect("POST reaches the server")
    }

    /// `POST /vote`, returning status and JSON body.
    pub async fn vote(&self, choice: &str, referral: Option<&str>) -> (u16, Value) {
        let response = self.post_json("/vote", &serde_json::json!({ "choice": choice, "referral": referral })).await;
        let status = response.status().as_u16();
        (status, response.json().await.expect("a JSON body"))
    }

    /// `GET /votes` as (choice, count) in the order served.
    pub async fn counts(&self) -> Vec<(String, i64)> {
        let body: serde_json::Map<String, Value> = self.get("/votes").await.json().await.unwrap();
        body.into_iter().map(|(k, v)| (k, v["count"].as_i64().unwrap())).collect()
    }

    pub async fn count_of(&self, choice: &str) -> i64 {
        self.counts().await.into_iter().find(|(k, _)| k == choice).map(|(_, c)| c).unwrap()
    }

    pub async fn metrics(&self) -> String {
        self.get("/metrics").await.text().await.unwrap()
    }

    /// One number from the database itself, bypassing the server.
    pub async fn sql_count(&self, sql: &'static str) -> i64 {
        match &self.resources.database_url {
            Some(url) => {
                let mut conn = sqlx::PgConnection::connect(url).await.unwrap();
                sqlx::query_scalar::<_, i64>(sql).fetch_one(&mut conn).await.unwrap()
            }
            None => {
                let path = self.data_dir().join(format!("{}.db", self.config.lab.as_str()));
                let mut conn = sqlx::SqliteConnection::connect(&format!("sqlite://{}", path.display())).await.unwrap();
                sqlx::query_scalar::<_, i64>(sql).fetch_one(&mut conn).await.unwrap()
            }
        }
    }

    /// Runs one statement on the lab's database, bypassing the server.
    pub async fn sql_execute(&self, sql: &'static str) {
        match &self.resources.database_url {
            Some(url) => {
                let mut conn = sqlx::PgConnection::connect(url).await.unwrap();
                sqlx::query(sql).execute(&mut conn).await.unwrap();
            }
            None => {
                let path = self.data_dir().join(format!("{}.db", self.config.lab.as_str()));
                let mut conn = sqlx::SqliteConnection::connect(&format!("sqlite://{}", path.display())).await.unwrap();
                sqlx::query(sql).execute(&mut conn).await.unwrap();
            }
        }
    }

    /// A field of one of this test's Redis hashes, read from Redis itself.
    pub async fn redis_hash_field(&self, name: &str, field: &str) -> Option<i64> {
        let key = self.redis_key(name).expect("a Redis backend");
        let mut conn = redis::Client::open(redis_url()).unwrap().get_multiplexed_async_connection().await.unwrap();
        redis::cmd("HGET").arg(key).arg(field).query_async(&mut conn).await.unwrap()
    }

    /// Deletes one of this test's Redis keys, as a FLUSHALL or a Redis restart would.
    pub async fn delete_redis_key(&self, name: &str) {
        let key = self.redis_key(name).expect("a Redis backend");
        let mut conn = redis::Client::open(redis_url()).unwrap().get_multiplexed_async_connection().await.unwrap();
        let _: i64 = redis::cmd("DEL").arg(key).query_async(&mut conn).await.unwrap();
    }
}

impl Drop for TestApp {
    fn drop(&mut self) {
        self.shutdown.cancel();
    }
}

/// The value of a sample (exact name and labels as written) in Prometheus text.
pub fn sample(metrics: &str, series: &str) -> Option<f64> {
    metrics.lines().find_map(|line| line.strip_prefix(series)?.strip_prefix(' ')?.trim().parse().ok())
}

/// A client reading a Server-Sent Events stream.
pub struct Events {
    stream: std::pin::Pin<Box<dyn futures_util::Stream<Item = reqwest::Result<bytes::Bytes>> + Send>>,
    buffer: String,
    pub headers: reqwest::header::HeaderMap,
}

impl Events {
    pub async fn open(app: &TestApp, path: &str) -> Events {
        Events::open_with(app, path, None).await
    }

    /// A stream that needs the admin token.
    pub async fn open_admin(app: &TestApp, path: &str) -> Events {
        Events::open_with(app, path, Some(ADMIN_TOKEN)).await
    }

    async fn open_with(app: &TestApp, path: &str, token: Option<&str>) -> Events {
        // No overall timeout: the stream stays open as long as the test reads it.
        let client = breakroom::platform::http::client().build().unwrap();
        let mut request = client.get(format!("{}{path}", app.url));
        if let Some(token) = token {
            request = request.bearer_auth(token);
        }
        let response = request.send().await.expect("the stream opens");
        assert_eq!(response.status(), 200);
        let headers = response.headers().clone();
        Events { stream: Box::pin(response.bytes_stream()), buffer: String::new(), headers }
    }

    /// The data of the next event named `name`, or None when the stream ends or
    /// nothing arrives within `wait`.
    pub async fn next(&mut self, name: &str, wait: Duration) -> Option<Value> {
        use futures_util::StreamExt;
        let deadline = tokio::time::Instant::now() + wait;
        loop {
            while let Some(end) = self.buffer.find("\n\n") {
                let block: String = self.buffer.drain(..end + 2).collect();
                let mut event = "message";
                let mut data = String::new();
                for line in block.lines() {
                    if let Some(v) = line.strip_prefix("event:") {
                        event = v.trim();
                    } else if let Some(v) = line.strip_prefix("data:") {
                        data.push_str(v.trim_start());
                    }
                }
                if event == name && !data.is_empty() {
                    return Some(serde_json::from_str(&data).expect("event data is JSON"));
                }
            }
            match tokio::time::timeout_at(deadline, self.stream.next()).await {
                Ok(Some(Ok(chunk))) => self.buffer.push_str(&String::from_utf8_lossy(&chunk)),
                _ => return None,
            }
        }
    }

    /// True when the server ends the stream within `wait` (a timeout is not an end).
    pub async fn ends_within(&mut self, wait: Duration) -> bool {
        use futures_util::StreamExt;
        let deadline = tokio::time::Instant::now() + wait;
        loop {
            match tokio::time::timeout_at(deadline, self.stream.next()).await {
                Err(_) => return false,
                Ok(None) => return true,
                Ok(Some(Err(_))) => return true,
                Ok(Some(Ok(chunk))) => self.buffer.push_str(&String::from_utf8_lossy(&chunk)),
            }
        }
    }

    /// Events named `name` that arrive within `wait`.
    pub async fn collect(&mut self, name: &str, wait: Duration) -> Vec<Value> {
        let deadline = tokio::time::Instant::now() + wait;
        let mut events = Vec::new();
        loop {
            let left = deadline.saturating_duration_since(tokio::time::Instant::now());
            match self.next(name, left).await {
                Some(event) => events.push(event),
                None => return events,
            }
        }
    }

    /// Reads events until one satisfies `accept`.
    pub async fn until(&mut self, name: &str, wait: Duration, accept: impl Fn(&Value) -> bool) -> Option<Value> {
        let deadline = tokio::time::Instant::now() + wait;
        loop {
            let left = deadline.saturating_duration_since(tokio::time::Instant::now());
            let event = self.next(name, left).await?;
            if accept(&event) {
                return Some(event);
            }
        }
    }
}

/// A Redis server of the test's own, on a free port: it can be stopped, restarted and
/// paused without disturbing the tests that share the machine's Redis.
pub struct PrivateRedis {
    pub port: u16,
    dir: tempfile::TempDir,
    child: Option<std::process::Child>,
}

impl PrivateRedis {
    pub fn start() -> PrivateRedis {
        let port = std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port();
        let mut redis = PrivateRedis { port, dir: tempfile::tempdir().unwrap(), child: None };
        redis.run();
        redis
    }

    pub fn url(&self) -> String {
        format!("redis://127.0.0.1:{}", self.port)
    }

    fn run(&mut self) {
        let child = std::process::Command::new("redis-server")
            .args(["--port", &self.port.to_string(), "--bind", "127.0.0.1", "--save", "", "--appendonly", "no"])
            .arg("--dir")
            .arg(self.dir.path())
            .stdout(std::process::Stdio::null())
            .spawn()
            .expect("redis-server runs (apt-get install redis-server)");
        self.child = Some(child);
        for _ in 0..100 {
            if redis::Client::open(self.url()).and_then(|c| c.get_connection()).is_ok() {
                return;
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        panic!("the private redis-server on port {} did not start", self.port);
    }

    /// Kills the server: its data is gone, like a crashed Redis without persistence.
    pub fn stop(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }

    /// A new, empty server on the same port.
    pub fn restart(&mut self) {
        self.stop();
        self.run();
    }

    /// `CLIENT PAUSE ms ALL`: Redis keeps its data and its connections but answers nothing.
    pub fn pause(&self, ms: u64) {
        let mut conn = redis::Client::open(self.url()).unwrap().get_connection().unwrap();
        let _: () = redis::cmd("CLIENT").arg("PAUSE").arg(ms).arg("ALL").query(&mut conn).unwrap();
    }

    pub fn get(&self, key: &str) -> Option<String> {
        let mut conn = redis::Client::open(self.url()).unwrap().get_connection().unwrap();
        redis::cmd("GET").arg(key).query(&mut conn).unwrap()
    }

    pub fn set(&self, key: &str, value: &str) {
        let mut conn = redis::Client::open(self.url()).unwrap().get_connection().unwrap();
        let _: () = redis::cmd("SET").arg(key).arg(value).query(&mut conn).unwrap();
    }
}

impl Drop for PrivateRedis {
    fn drop(&mut self) {
        self.stop();
    }
}

/// Polls `check` every 50 ms until it holds or `limit` passes; returns whether it held.
pub async fn eventually<F, Fut>(limit: Duration, mut check: F) -> bool
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = bool>,
{
    let deadline = tokio::time::Instant::now() + limit;
    loop {
        if check().await {
            return true;
        }
        if tokio::time::Instant::now() >= deadline {
            return false;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// Runs the `breakroom` binary with no admin token or URL from the environment;
/// returns its exit code and stdout + stderr.
pub async fn breakroom(args: &[&str]) -> (i32, String) {
    breakroom_with_env(args, &[]).await
}

/// `breakroom` with extra environment variables (and none of DATABASE_URL/REDIS_URL
/// from the test's own environment unless given).
pub async fn breakroom_with_env(args: &[&str], envs: &[(&str, &str)]) -> (i32, String) {
    let output = tokio::process::Command::new(env!("CARGO_BIN_EXE_breakroom"))
        .args(args)
        .env_remove("DATABASE_URL")
        .env_remove("REDIS_URL")
        .envs(envs.iter().copied())
        .env_remove("BREAKROOM_ADMIN_TOKEN")
        .env_remove("BREAKROOM_URL")
        .env("NO_COLOR", "1")
        .output()
        .await
        .expect("the breakroom binary runs");
    let text = format!("{}{}", String::from_utf8_lossy(&output.stdout), String::from_utf8_lossy(&output.stderr));
    (output.status.code().unwrap_or(-1), text)
}

/// `GET url` with breakroom's own HTTP client (the only kind that builds: reqwest's
/// TLS is compiled without a crypto provider of its own).
pub async fn fetch(url: impl reqwest::IntoUrl) -> reqwest::Result<reqwest::Response> {
    breakroom::platform::http::client().build().unwrap().get(url).send().await
}

/// Where a browser test writes its screenshots: `BREAKROOM_SCREENSHOTS` (relative to
/// the repository, e.g. docs/screenshots, to refresh the README's) or else `scratch`.
pub fn screenshot_dir(scratch: &tempfile::TempDir) -> std::path::PathBuf {
    let dir = std::env::var("BREAKROOM_SCREENSHOTS")
        .map(|d| std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join(d))
        .unwrap_or_else(|_| scratch.path().to_path_buf());
    std::fs::create_dir_all(&dir).unwrap();
    dir
}

/// A TCP port on 127.0.0.1 that was free a moment ago.
pub fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port()
}

pub mod binary;
pub mod shop;

/// A PostgreSQL cluster of the test's own (initdb in a temporary directory), so a test
/// may stop and start it without disturbing the machine's server or other tests.
pub struct PrivatePostgres {
    pub port: u16,
    dir: tempfile::TempDir,
    bin: std::path::PathBuf,
}

impl PrivatePostgres {
    pub fn start() -> PrivatePostgres {
        let bin = std::fs::read_dir("/usr/lib/postgresql")
            .expect("PostgreSQL's server binaries in /usr/lib/postgresql (apt-get install postgresql)")
            .filter_map(|e| e.ok().map(|e| e.path().join("bin")))
            .filter(|p| p.join("initdb").exists())
            .max()
            .expect("initdb under /usr/lib/postgresql/*/bin");
        let dir = tempfile::tempdir().unwrap();
        let port = free_port();
        let pg = PrivatePostgres { port, dir, bin };
        pg.chown();
        let data = pg.data();
        pg.run("initdb", &["-D", &data, "-A", "trust", "-U", "postgres", "--no-sync"]);
        pg.start_server();
        pg
    }

    fn data(&self) -> String {
        self.dir.path().join("data").display().to_string()
    }

    /// PostgreSQL refuses to run as root: as root, its files belong to `postgres`.
    fn chown(&self) {
        if is_root() {
            let status = std::process::Command::new("chown")
                .args(["-R", "postgres:postgres"])
                .arg(self.dir.path())
                .status()
                .unwrap();
            assert!(status.success());
        }
    }

    fn run(&self, program: &str, args: &[&str]) {
        let path = self.bin.join(program).display().to_string();
        let mut command = if is_root() {
            let mut c = std::process::Command::new("runuser");
            c.args(["-u", "postgres", "--", &path]);
            c
        } else {
            std::process::Command::new(&path)
        };
        let output = command.args(args).output().expect("PostgreSQL's tools run");
        assert!(output.status.success(), "{program} {args:?}: {}", String::from_utf8_lossy(&output.stderr));
    }

    pub fn url(&self) -> String {
        format!("postgres://postgres@127.0.0.1:{}/postgres", self.port)
    }

    fn start_server(&self) {
        let data = self.data();
        let log = self.dir.path().join("log").display().to_string();
        let options =
            format!("-p {} -k {} -c listen_addresses=127.0.0.1 -c fsync=off", self.port, self.dir.path().display());
        self.run("pg_ctl", &["-D", &data, "-l", &log, "-o", &options, "-w", "-t", "30", "start"]);
    }

    /// An immediate shutdown, as a crash or a killed pod would do.
    pub fn stop(&self) {
        self.run("pg_ctl", &["-D", &self.data(), "-m", "immediate", "-w", "stop"]);
    }

    pub fn restart(&self) {
        self.start_server();
    }
}

impl Drop for PrivatePostgres {
    fn drop(&mut self) {
        let data = self.data();
        let _ = std::panic::catch_unwind(|| self.run("pg_ctl", &["-D", &data, "-m", "immediate", "stop"]));
    }
}

fn is_root() -> bool {
    std::process::Command::new("id").arg("-u").output().map(|o| o.stdout.starts_with(b"0\n")).unwrap_or(false)
}
