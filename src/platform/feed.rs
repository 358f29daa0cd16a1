//! A live feed for Server-Sent Events: one task per process reads the current state
//! when something changed and hands every viewer the same pre-serialized event, so
//! the cost of a change is one read, not one per viewer, and a burst of changes
//! reaches viewers as one event.

use std::convert::Infallible;
use std::future::Future;
use std::sync::Arc;
use std::time::Duration;

use axum::http::{HeaderValue, header};
use axum::response::sse::{Event, KeepAlive, Sse};
use axum::response::{IntoResponse, Response};
use futures_util::StreamExt;
use tokio::sync::{Notify, watch};
use tokio_stream::wrappers::WatchStream;
use tokio_util::sync::CancellationToken;

/// How long a change waits for more changes before viewers are told; bounds the event
/// rate per viewer at 1/COALESCE while adding at most that much delay.
const COALESCE: Duration = Duration::from_millis(50);

#[derive(Clone)]
pub struct Feed {
    event: &'static str,
    changed: Arc<Notify>,
    current: watch::Sender<Arc<str>>,
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
        let (current, _) = watch::channel(Arc::<str>::from(initial));
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
                // Coalescing window: notifications arriving meanwhile are folded into
                // the one read below (Notify keeps at most one permit).
                tokio::select! {
                    _ = task.shutdown.cancelled() => return,
                    _ = tokio::time::sleep(COALESCE) => {}
                }
                if let Some(json) = read().await {
                    task.current.send_if_modified(|current| {
                        if **current == *json {
                            return false;
                        }
                        *current = json.into();
                        true
                    });
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
    pub fn stream(&self) -> Response {
        let event = self.event;
        let events = WatchStream::new(self.current.subscribe())
            .map(move |json| Ok::<_, Infallible>(Event::default().event(event).data(&*json)))
            .take_until(self.shutdown.clone().cancelled_owned());
        let mut response = Sse::new(events).keep_alive(KeepAlive::default()).into_response();
        let headers = response.headers_mut();
        headers.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
        headers.insert("x-accel-buffering", HeaderValue::from_static("no"));
        response
    }
}
