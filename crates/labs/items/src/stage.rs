//! `breakroom demonstrate|check|reset items`: seed 002's runbook, parts 3 to 6.

use std::time::{Duration, Instant};

use serde_json::{Value, json};

use platform::lab::Boxed;
use platform::rehearsal::{Judged, Judgement, Rehearsal};
use platform::stage::{EXIT_FAILED, Finding, Reply, StageError, Style, Target, found, reset_session};

async fn create(target: &Target, name: &str, price: f64) -> Result<Value, StageError> {
    let body = json!({ "name": name, "description": "Created by breakroom", "price": price });
    target.post_json("/items", &body).await?.expect_json("POST /items")
}

async fn stats(target: &Target) -> Result<Value, StageError> {
    target.get("/cache/stats").await?.expect_json("GET /cache/stats")
}

async fn timed_get(target: &Target, path: &str) -> Result<(Reply, Duration), StageError> {
    let started = Instant::now();
    let reply = target.get(path).await?;
    Ok((reply, started.elapsed()))
}

fn ms(d: Duration) -> String {
    format!("{:.1} ms", d.as_secs_f64() * 1000.0)
}

fn hits(stats: &Value) -> u64 {
    stats["total_hits"].as_u64().unwrap_or(0)
}

/// Reports one promise; returns whether it held.
fn promise(style: &Style, held: bool, text: &str) -> bool {
    if held {
        println!("  {} {text}", style.good("✓"));
    } else {
        println!("  {} {text}", style.bad("✗"));
    }
    held
}

pub async fn demonstrate(target: &Target) -> Result<u8, StageError> {
    let style = Style::detect();
    let mut kept = true;
    println!("{}", style.heading("=== Part 3: the write-through pattern ==="));
    let listed = target.get("/items").await?.expect_json("GET /items")?;
    println!("Items in the database: {}", listed["count"]);
    let created = create(target, "Demo Widget", 42.99).await?;
    let id = created["id"].as_str().unwrap_or_default().to_string();
    println!("Created {id}: written to the database, then to the cache");
    let before = stats(target).await?;
    let (reply, took) = timed_get(target, &format!("/items/{id}")).await?;
    let after = stats(target).await?;
    kept &= promise(
        &style,
        reply.is_success() && hits(&after) == hits(&before) + 1,
        &format!("first read is a cache HIT ({})", ms(took)),
    );
    println!("Cache stats: {after}");

    println!("\n{}", style.heading("=== Part 4: write vs read latency ==="));
    let mut writes = Vec::new();
    for i in 1..=5 {
        let started = Instant::now();
        create(target, &format!("Test Item {i}"), f64::from(i) + 0.99).await?;
        writes.push(started.elapsed());
        println!("  Write {i}: {}", ms(started.elapsed()));
    }
    let mut reads = Vec::new();
    for i in 1..=5 {
        let (_, took) = timed_get(target, &format!("/items/{id}")).await?;
        reads.push(took);
        println!("  Read {i}: {} (cache hit)", ms(took));
    }
    // A miss assembles the item from the database (its row and its stock in every store
    // of the chain); a hit is one cache lookup. Five of each, the cache cleared before
    // every miss.
    let (mut misses, mut hits) = (Vec::new(), Vec::new());
    let mut assembled = Value::Null;
    for _ in 0..5 {
        target.post_json("/cache/clear", &json!({})).await?.expect_json("POST /cache/clear")?;
        let (item, miss) = timed_get(target, &format!("/items/{id}")).await?;
        let (_, hit) = timed_get(target, &format!("/items/{id}")).await?;
        println!("  Cache miss read: {}   Cache hit read: {}", ms(miss), ms(hit));
        assembled = item.json().map(|item| item["availability"].clone()).unwrap_or_default();
        misses.push(miss);
        hits.push(hit);
    }
    for list in [&mut writes, &mut reads, &mut misses, &mut hits] {
        list.sort();
    }
    println!(
        "Median write {} vs median read {}; median miss {} vs median hit {} (a miss sums the item's stock in {} stores: {})",
        ms(writes[2]),
        ms(reads[2]),
        ms(misses[2]),
        ms(hits[2]),
        assembled["stores"],
        assembled
    );

    println!("\n{}", style.heading("=== Part 5: consistency ==="));
    kept &= read_your_writes(target, &style).await?;
    found(if kept {
        Finding::NotReproduced("every promise of the write-through cache held".into())
    } else {
        Finding::Reproduced("a promise of the write-through cache was broken".into())
    });
    Ok(if kept { 0 } else { EXIT_FAILED })
}

/// Create, update, read: the read must show the update at once.
async fn read_your_writes(target: &Target, style: &Style) -> Result<bool, StageError> {
    let created = create(target, "Original Name", 10.00).await?;
    let id = created["id"].as_str().unwrap_or_default().to_string();
    let update = json!({ "name": "Updated Name", "price": 99.99 });
    target.put_json(&format!("/items/{id}"), &update).await?.expect_json("PUT /items/{id}")?;
    let read = target.get(&format!("/items/{id}")).await?.expect_json("GET /items/{id}")?;
    let fresh = read["name"] == "Updated Name" && read["price"] == json!(99.99);
    Ok(promise(
        style,
        fresh,
        &format!("an update is visible to the next read (read {} at {})", read["name"], read["price"]),
    ))
}

pub async fn check(target: &Target, redis_url: Option<&str>) -> Result<u8, StageError> {
    let style = Style::detect();
    let mut kept = true;
    println!("{}", style.heading("=== Checking the items lab's promises ==="));
    let created = create(target, "Check Widget", 1.00).await?;
    let id = created["id"].as_str().unwrap_or_default().to_string();
    let before = stats(target).await?;
    let reply = target.get(&format!("/items/{id}")).await?;
    let after = stats(target).await?;
    kept &= promise(
        &style,
        reply.is_success() && hits(&after) == hits(&before) + 1,
        "write-through: a created item is a cache hit on its first read",
    );
    kept &= read_your_writes(target, &style).await?;
    match redis_url {
        Some(url) => kept &= outage(target, url, &style).await?,
        None => println!("  (outage promises not checked: pass --redis redis://HOST:6379 to let check pause Redis)"),
    }
    if kept {
        println!("{}", style.good("SUCCESS: every promise held."));
        found(Finding::Passed("every promise held".into()));
        Ok(0)
    } else {
        println!("{}", style.bad("FAIL: a promise was broken (✗ above)."));
        found(Finding::Failed("a promise was broken".into()));
        Ok(EXIT_FAILED)
    }
}

/// Seconds Redis is paused for the outage check.
const PAUSE: Duration = Duration::from_secs(4);

async fn outage(target: &Target, redis_url: &str, style: &Style) -> Result<bool, StageError> {
    let mut kept = true;
    let created = create(target, "Outage Widget", 5.00).await?;
    let id = created["id"].as_str().unwrap_or_default().to_string();
    target.get(&format!("/items/{id}")).await?; // cached as "Outage Widget"

    let client = redis::Client::open(redis_url).map_err(|e| StageError(format!("--redis is not a Redis URL: {e}")))?;
    let mut redis = client
        .get_multiplexed_async_connection()
        .await
        .map_err(|e| StageError(format!("Cannot reach Redis at {redis_url}: {e}")))?;
    println!("  Pausing Redis for {} s (CLIENT PAUSE)…", PAUSE.as_secs());
    redis::cmd("CLIENT")
        .arg("PAUSE")
        .arg(PAUSE.as_millis() as u64)
        .arg("ALL")
        .query_async::<()>(&mut redis)
        .await
        .map_err(|e| StageError(format!("CLIENT PAUSE failed: {e}")))?;
    let paused_at = Instant::now();

    let degraded = wait_for_health(target, "degraded", Duration::from_millis(1500)).await?;
    kept &= promise(
        style,
        degraded.is_some(),
        &format!("/health turns degraded within a second ({})", degraded.map_or("never".into(), ms)),
    );
    let update = json!({ "name": "Written During Outage", "price": 6.00 });
    let started = Instant::now();
    let written = target.put_json(&format!("/items/{id}"), &update).await?;
    kept &= promise(
        style,
        written.is_success(),
        &format!("a write succeeds while Redis is down ({})", ms(started.elapsed())),
    );
    let (read, took) = timed_get(target, &format!("/items/{id}")).await?;
    let name = read.json().map(|v| v["name"].clone()).unwrap_or_default();
    kept &= promise(
        style,
        name == "Written During Outage" && took < Duration::from_millis(500),
        &format!("reads fall back to the database ({})", ms(took)),
    );

    let _ = redis::cmd("CLIENT").arg("UNPAUSE").query_async::<()>(&mut redis).await;
    let recovered = wait_for_health(target, "ok", Duration::from_secs(5)).await?;
    kept &= promise(
        style,
        recovered.is_some(),
        &format!(
            "/health is ok again after Redis returns ({:.1} s after the pause began)",
            paused_at.elapsed().as_secs_f64()
        ),
    );
    let read = target.get(&format!("/items/{id}")).await?.expect_json("GET /items/{id}")?;
    kept &= promise(
        style,
        read["name"] == "Written During Outage",
        &format!("no stale read after recovery (read {})", read["name"]),
    );
    let before = stats(target).await?;
    target.get(&format!("/items/{id}")).await?;
    let after = stats(target).await?;
    kept &= promise(style, hits(&after) == hits(&before) + 1, "the cache is used again (next read is a hit)");
    Ok(kept)
}

/// Polls `/health` until its status is `want`; returns how long that took.
async fn wait_for_health(target: &Target, want: &str, limit: Duration) -> Result<Option<Duration>, StageError> {
    let started = Instant::now();
    while started.elapsed() < limit {
        let health = target.get("/health").await?;
        if health.json().is_some_and(|v| v["status"] == want) {
            return Ok(Some(started.elapsed()));
        }
        // Polling interval of the client watching /health, not a delay in the lab.
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    Ok(None)
}

pub async fn reset(target: &Target, token: Option<&str>, data_dir: &std::path::Path) -> Result<u8, StageError> {
    platform::stage::reset_lab(target, token, data_dir, "items").await
}

/// The rehearsal of `items/redis-outage`. Without a Redis URL only the write-through
/// promises and the reset can be rehearsed: the outage is Redis stopping.
const NEEDS_REDIS: &str = "needs REDIS_URL: the outage is Redis stopping";

pub struct Rehearse {
    target: Target,
    admin: String,
    redis_url: Option<String>,
    /// The connection that paused Redis, while it is paused.
    paused: Option<redis::aio::MultiplexedConnection>,
    /// The item written through before the outage.
    id: String,
}

impl Rehearse {
    pub fn new(target: Target, admin: String, redis_url: Option<String>) -> Rehearse {
        Rehearse { target, admin, redis_url, paused: None, id: String::new() }
    }

    fn without_redis(&self) -> Option<Judgement> {
        self.redis_url.is_none().then(|| Judgement::not_applicable(NEEDS_REDIS))
    }
}

impl Rehearsal for Rehearse {
    fn prepare(&mut self) -> Boxed<'_, Result<(), StageError>> {
        Box::pin(async move {
            reset_session(&self.target, &self.admin).await?;
            let created = create(&self.target, "Rehearsal", 1.0).await?;
            self.id = created["id"].as_str().unwrap_or_default().to_string();
            self.target.get(&format!("/items/{}", self.id)).await?;
            Ok(())
        })
    }

    fn reproduce(&mut self) -> Judged<'_> {
        Box::pin(async move {
            let Some(url) = self.redis_url.as_deref() else {
                return Ok(Judgement::not_applicable(NEEDS_REDIS));
            };
            let client = redis::Client::open(url).map_err(|e| StageError(format!("REDIS_URL: {e}")))?;
            let mut redis =
                client.get_multiplexed_async_connection().await.map_err(|e| StageError(format!("Redis: {e}")))?;
            redis::cmd("CLIENT")
                .arg("PAUSE")
                .arg(3_000)
                .arg("ALL")
                .query_async::<()>(&mut redis)
                .await
                .map_err(|e| StageError(format!("CLIENT PAUSE: {e}")))?;
            self.paused = Some(redis);
            let degraded = wait_for_health(&self.target, "degraded", Duration::from_millis(1500)).await?;
            Ok(Judgement::new(
                degraded.is_some(),
                format!("/health degraded after {}", degraded.map_or("never".into(), ms)),
            ))
        })
    }

    fn symptom(&mut self) -> Judged<'_> {
        Box::pin(async move {
            if let Some(skipped) = self.without_redis() {
                return Ok(skipped);
            }
            let (target, id) = (&self.target, &self.id);
            let started = Instant::now();
            let written = target.put_json(&format!("/items/{id}"), &json!({ "name": "During", "price": 2.0 })).await?;
            let read = target.get(&format!("/items/{id}")).await?;
            let took = started.elapsed();
            let fell_back = written.is_success() && read.json().is_some_and(|v| v["name"] == "During");
            Ok(Judgement::new(fell_back, format!("write + read from the database in {}", ms(took))))
        })
    }

    fn check_fails(&mut self) -> Judged<'_> {
        Box::pin(async move {
            if let Some(skipped) = self.without_redis() {
                return Ok(skipped);
            }
            let target = &self.target;
            let fresh = create(target, "Not cached", 1.0).await?;
            let before = hits(&stats(target).await?);
            target.get(&format!("/items/{}", fresh["id"].as_str().unwrap_or_default())).await?;
            let missed = hits(&stats(target).await?) == before;
            Ok(Judgement::new(missed, "write-through is broken while Redis is down"))
        })
    }

    fn fix(&mut self) -> Judged<'_> {
        Box::pin(async move {
            let target = &self.target;
            let Some(mut redis) = self.paused.take() else {
                let created = create(target, "Rehearsal", 1.0).await?;
                let id = created["id"].as_str().unwrap_or_default().to_string();
                let before = hits(&stats(target).await?);
                target.get(&format!("/items/{id}")).await?;
                let hit = hits(&stats(target).await?) == before + 1;
                return Ok(Judgement::new(
                    hit && read_your_writes_quiet(target).await?,
                    "write-through and read-your-writes hold",
                ));
            };
            let _ = redis::cmd("CLIENT").arg("UNPAUSE").query_async::<()>(&mut redis).await;
            let recovered = wait_for_health(target, "ok", Duration::from_secs(5)).await?;
            let id = &self.id;
            let read = target.get(&format!("/items/{id}")).await?.expect_json("GET /items/{id}")?;
            let before = hits(&stats(target).await?);
            target.get(&format!("/items/{id}")).await?;
            let hit = hits(&stats(target).await?) == before + 1;
            Ok(Judgement::new(
                recovered.is_some() && read["name"] == "During" && hit,
                format!("Redis back: /health ok, read {} (no stale value), cache used again", read["name"]),
            ))
        })
    }

    fn reset(&mut self) -> Judged<'_> {
        Box::pin(async move {
            let target = &self.target;
            reset_session(target, &self.admin).await?;
            let listed = target.get("/items").await?.expect_json("GET /items")?;
            let stats = stats(target).await?;
            Ok(Judgement::new(
                listed["count"] == 3 && hits(&stats) == 0,
                format!("{} items, {} hits", listed["count"], hits(&stats)),
            ))
        })
    }

    fn recover(&mut self) -> Boxed<'_, ()> {
        Box::pin(async move {
            if let Some(mut redis) = self.paused.take() {
                let _ = redis::cmd("CLIENT").arg("UNPAUSE").query_async::<()>(&mut redis).await;
            }
        })
    }
}

async fn read_your_writes_quiet(target: &Target) -> Result<bool, StageError> {
    let created = create(target, "Original Name", 10.00).await?;
    let id = created["id"].as_str().unwrap_or_default().to_string();
    target
        .put_json(&format!("/items/{id}"), &json!({ "name": "Updated Name", "price": 99.99 }))
        .await?
        .expect_json("PUT")?;
    let read = target.get(&format!("/items/{id}")).await?.expect_json("GET")?;
    Ok(read["name"] == "Updated Name")
}
