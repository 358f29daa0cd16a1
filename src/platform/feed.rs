//! A live feed for Server-Sent Events: one task per process reads the current state
//! when something changed and hands every viewer the same pre-serialized event, so
//! the cost of a change is one read, not one per viewer, and a burst of changes
//! reaches viewers as one event.

use std::convert::Infallible;
use std::future::Future;
use std::sync::Arc;
use std::time::Duration;

use axum::body::{Body, Bytes};
use axum::http::{HeaderValue, header};
use axum::response::{IntoResponse, Response};
use futures_util::StreamExt;
use tokio::sync::{Notify, watch};
use tokio_stream::wrappers::WatchStream;
use tokio_util::sync::CancellationToken;

/// After viewers were told of a change, changes during this window are folded into
/// one event sent when it ends: bounds the event rate per viewer at 1/COALESCE. A
/// change after a quiet spell goes out at once.
const COALESCE: Duration = Duration::from_millis(50);

#[derive(Clone)]
pub struct Feed {
    event: &'static str,
    changed: Arc<Notify>,
    /// The JSON state and the whole SSE frame carrying it, encoded once for everyone.
    current: watch::Sender<(Arc<str>, Bytes)>,
    shutdown: CancellationToken,
}

impl Feed {
    /// Starts the fan-out task. `read` produces the JSON state; it is called after
    /// `changed()` and every `refresh` even without one (so a lost notification or a
    /// store rebuilt behind our back still reaches viewers).
    pub fn spawn<F, Fut>(
        event: &'static str,
        initial: String,
        refresh: Duration,
        shutdown: CancellationToken,
        read: F,
    ) -> Feed
    where
        F: Fn() -> Fut + Send + Sync + 'static,
        Fut: Future<Output = Option<String>> + Send,
    {
        let (current, _) = watch::channel(frame(event, &initial));
        let feed = Feed { event, changed: Arc::new(Notify::new()), current, shutdown };
        let task = feed.clone();
        tokio::spawn(async move {
            let mut ticks = tokio::time::interval(refresh);
            loop {
                tokio::select! {
                    _ = task.shutdown.cancelled() => return,
                    _ = task.changed.notified() => {}
                    _ = ticks.tick() => {}
                }
                let sent = match read().await {
                    Some(json) => task.current.send_if_modified(|current| {
                        if *current.0 == *json {
                            return false;
                        }
                        *current = frame(task.event, &json);
                        true
                    }),
                    None => false,
                };
                if sent {
                    // Coalescing window: notifications arriving meanwhile leave one
                    // permit (Notify keeps at most one), read once when it ends.
                    tokio::select! {
                        _ = task.shutdown.cancelled() => return,
                        _ = tokio::time::sleep(COALESCE) => {}
                    }
                }
            }
        });
        feed
    }

    /// Something changed: viewers get a fresh event within the coalescing window.
    pub fn changed(&self) {
        self.changed.notify_one();
    }

    pub fn viewers(&self) -> usize {
        self.current.receiver_count()
    }

    /// An SSE response: the current state at once, then every change, until shutdown.
    /// Every viewer is sent the same pre-encoded frame (a reference-counted buffer),
    /// and a comment line every 15 s keeps proxies from closing a quiet stream.
    pub fn stream(&self) -> Response {
        let events = WatchStream::new(self.current.subscribe()).map(|(_, frame)| frame);
        let keep_alive = tokio_stream::wrappers::IntervalStream::new(tokio::time::interval_at(
            tokio::time::Instant::now() + KEEP_ALIVE,
            KEEP_ALIVE,
        ))
        .map(|_| Bytes::from_static(b":\n\n"));
        let body = futures_util::stream::select(events, keep_alive)
            .take_until(self.shutdown.clone().cancelled_owned())
            .map(Ok::<_, Infallible>);
        let mut response = Body::from_stream(body).into_response();
        let headers = response.headers_mut();
        headers.insert(header::CONTENT_TYPE, HeaderValue::from_static("text/event-stream"));
        headers.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
        headers.insert("x-accel-buffering", HeaderValue::from_static("no"));
        response
    }
}

/// How often an idle stream carries a comment line.
const KEEP_ALIVE: Duration = Duration::from_secs(15);

/// `event: NAME` + `data: JSON` (one line: the JSON has no newlines) + a blank line.
fn frame(event: &str, json: &str) -> (Arc<str>, Bytes) {
    debug_assert!(!json.contains('\n'), "SSE data must be one line");
    (Arc::from(json), Bytes::from(format!("event: {event}\ndata: {json}\n\n")))
}
