//! Redis, when `REDIS_URL` is set: one multiplexed connection with short timeouts,
//! and a pub/sub subscription that reconnects by itself.
//!
//! The redis crate's defaults retry a dead server for about nine seconds per command;
//! a lab must instead notice within a request and fall back, so commands get one
//! retry and a timeout of `redis_timeout` (150 ms by default).

use std::sync::Arc;
use std::time::Duration;

use anyhow::Context;
use futures_util::StreamExt;
use redis::aio::{ConnectionManager, ConnectionManagerConfig};
use tokio::sync::mpsc;
use tokio_util::sync::CancellationToken;

#[derive(Clone)]
pub struct Redis {
    client: redis::Client,
    conn: ConnectionManager,
    prefix: Arc<str>,
    timeout: Duration,
}

/// What a subscription reports to its owner.
#[derive(Debug)]
pub enum Subscription {
    /// (Re)subscribed: messages published while the subscription was down are lost,
    /// so the owner should push a fresh full snapshot.
    Subscribed,
    Message(String),
}

impl Redis {
    /// Prepares the connection without waiting for Redis: a lab starts even while
    /// Redis is down and reports itself degraded until it answers.
    pub fn connect(url: &str, prefix: &str, timeout: Duration) -> anyhow::Result<Redis> {
        let client = redis::Client::open(url)
            .with_context(|| format!("REDIS_URL is not a valid Redis URL: {}", super::db::redact(url)))?;
        let config = ConnectionManagerConfig::new()
            .set_number_of_retries(1)
            .set_min_delay(Duration::from_millis(50))
            .set_max_delay(Duration::from_millis(200))
            .set_response_timeout(Some(timeout))
            .set_connection_timeout(Some(timeout));
        let conn = ConnectionManager::new_lazy_with_config(client.clone(), config)
            .context("preparing the Redis connection")?;
        Ok(Redis { client, conn, prefix: prefix.into(), timeout })
    }

    /// The full name of one of a lab's keys or channels.
    pub fn key(&self, name: &str) -> String {
        format!("{}{}", self.prefix, name)
    }

    pub fn conn(&self) -> ConnectionManager {
        self.conn.clone()
    }

    pub async fn ping(&self) -> redis::RedisResult<()> {
        let mut conn = self.conn();
        redis::cmd("PING").query_async::<String>(&mut conn).await.map(drop)
    }

    /// Subscribes to `channel` (already prefixed) until `shutdown`, reconnecting after
    /// every loss; the receiver sees `Subscribed` after each (re)subscription.
    pub fn subscribe(&self, channel: String, shutdown: CancellationToken) -> mpsc::Receiver<Subscription> {
        let (tx, rx) = mpsc::channel(256);
        let client = self.client.clone();
        let connect_timeout = self.timeout.max(Duration::from_secs(1));
        tokio::spawn(async move {
            // Wait between reconnection attempts so a dead Redis is not hammered.
            let backoff = Duration::from_millis(500);
            loop {
                let attempt = async {
                    let mut pubsub = client.get_async_pubsub().await?;
                    pubsub.subscribe(&channel).await?;
                    redis::RedisResult::Ok(pubsub)
                };
                match tokio::time::timeout(connect_timeout, attempt).await {
                    Ok(Ok(mut pubsub)) => {
                        if tx.send(Subscription::Subscribed).await.is_err() {
                            return;
                        }
                        let mut messages = pubsub.on_message();
                        loop {
                            tokio::select! {
                                _ = shutdown.cancelled() => return,
                                message = messages.next() => match message {
                                    Some(message) => {
                                        let payload = message.get_payload::<String>().unwrap_or_default();
                                        if tx.send(Subscription::Message(payload)).await.is_err() {
                                            return;
                                        }
                                    }
                                    None => break,
                                },
                            }
                        }
                        tracing::warn!(channel = %channel, "redis subscription lost; reconnecting");
                    }
                    Ok(Err(error)) => tracing::debug!(%error, "redis subscription failed"),
                    Err(_) => tracing::debug!("redis subscription timed out"),
                }
                tokio::select! {
                    _ = shutdown.cancelled() => return,
                    _ = tokio::time::sleep(backoff) => {}
                }
            }
        });
        rx
    }
}
