//! A live feed for Server-Sent Events: one task per process reads the current state
//! when something changed and hands every viewer the same pre-serialized event, so
//! the cost of a change is one read, not one per viewer, and a burst of changes
//! reaches viewers as one event. The same task tells quiet streams to send their
//! keep-alive comment, so a viewer costs no timer of its own.

use std::convert::Infallible;
use std::future::Future;
use std::sync::Arc;
use std::time::Duration;

use axum::body::{Body, Bytes};
use axum::http::{HeaderValue, header};
use axum::response::{IntoResponse, Response};
use futures_util::StreamExt;
use tokio::sync::{Notify, watch};
use tokio_util::sync::CancellationToken;

/// After viewers were told of a change, changes during this window are folded into
/// one event sent when it ends: bounds the event rate per viewer at 1/COALESCE. A
/// change after a quiet spell goes out at once.
const COALESCE: Duration = Duration::from_millis(50);

#[derive(Clone)]
pub struct Feed {
    event: &'static str,
    changed: Arc<Notify>,
    /// The state, encoded once for everyone. Notified without a new version, viewers
    /// send a keep-alive comment instead.
    current: watch::Sender<State>,
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
        let (current, _) = watch::channel(State::new(event, &initial, 0));
        let feed = Feed { event, changed: Arc::new(Notify::new()), current, shutdown };
        let task = feed.clone();
        tokio::spawn(async move {
            let mut ticks = tokio::time::interval(refresh);
            let mut keep_alive = tokio::time::interval_at(tokio::time::Instant::now() + KEEP_ALIVE, KEEP_ALIVE);
            keep_alive.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
            // On shutdown every stream is told to end (their responses must finish for
            // the server to drain); a viewer watches nothing but the state for it.
            let close = || task.current.send_modify(|state| state.closed = true);
            loop {
                tokio::select! {
                    _ = task.shutdown.cancelled() => return close(),
                    _ = task.changed.notified() => {}
                    _ = ticks.tick() => {}
                    _ = keep_alive.tick() => {
                        // Every stream sends a comment line: proxies keep quiet streams open.
                        task.current.send_modify(|_| {});
                        continue;
                    }
                }
                let sent = match read().await {
                    Some(json) => task.current.send_if_modified(|current| {
                        if *current.json == *json {
                            return false;
                        }
                        *current = State::new(task.event, &json, current.version + 1);
                        true
                    }),
                    None => false,
                };
                if sent {
                    // Coalescing window: notifications arriving meanwhile leave one
                    // permit (Notify keeps at most one), read once when it ends.
                    tokio::select! {
                        _ = task.shutdown.cancelled() => return close(),
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
    /// Every viewer is sent the same pre-encoded frame (a reference-counted buffer);
    /// woken without a new version, it sends a comment line that keeps proxies from
    /// closing a quiet stream. A viewer waits on the state alone, shutdown included:
    /// one waiter per viewer, not a second one polled on every event of 10,000 streams.
    pub fn stream(&self) -> Response {
        let events = futures_util::stream::unfold((self.current.subscribe(), None), |(mut viewer, sent)| async move {
            if sent.is_some() && viewer.changed().await.is_err() {
                return None;
            }
            let current = viewer.borrow_and_update();
            if current.closed {
                return None;
            }
            let chunk =
                if sent == Some(current.version) { Bytes::from_static(b":\n\n") } else { current.frame.clone() };
            let version = current.version;
            drop(current);
            Some((chunk, (viewer, Some(version))))
        });
        let mut response = Body::from_stream(events.map(Ok::<_, Infallible>)).into_response();
        let headers = response.headers_mut();
        headers.insert(header::CONTENT_TYPE, HeaderValue::from_static("text/event-stream"));
        headers.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
        headers.insert("x-accel-buffering", HeaderValue::from_static("no"));
        response
    }
}

/// How often an idle stream carries a comment line.
const KEEP_ALIVE: Duration = Duration::from_secs(15);

/// What every viewer is sent: the JSON state and the whole SSE frame carrying it
/// (`event: NAME` + `data: JSON`, one line + a blank line), and its version.
struct State {
    json: Arc<str>,
    frame: Bytes,
    version: u64,
    /// The server is shutting down: streams end.
    closed: bool,
}

impl State {
    fn new(event: &str, json: &str, version: u64) -> State {
        debug_assert!(!json.contains('\n'), "SSE data must be one line");
        let frame = Bytes::from(format!("event: {event}\ndata: {json}\n\n"));
        State { json: Arc::from(json), frame, version, closed: false }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::atomic::{AtomicU32, Ordering};

    #[tokio::test(start_paused = true)]
    async fn a_viewer_gets_the_state_then_changes_and_keep_alives_in_between() {
        let state = Arc::new(AtomicU32::new(0));
        let read_state = state.clone();
        let feed = Feed::spawn("n", "0".into(), Duration::from_secs(3600), CancellationToken::new(), move || {
            let state = read_state.clone();
            async move { Some(state.load(Ordering::SeqCst).to_string()) }
        });
        let mut chunks = feed.stream().into_body().into_data_stream();
        let mut next = async || {
            let chunk = tokio::time::timeout(Duration::from_secs(60), chunks.next()).await;
            chunk.expect("a chunk within a minute").unwrap().unwrap()
        };
        assert_eq!(next().await, "event: n\ndata: 0\n\n", "the state at once");
        state.store(1, Ordering::SeqCst);
        feed.changed();
        assert_eq!(next().await, "event: n\ndata: 1\n\n", "a change");
        let quiet = tokio::time::Instant::now();
        assert_eq!(next().await, ":\n\n", "a comment keeps the quiet stream open");
        assert!(quiet.elapsed() >= KEEP_ALIVE - COALESCE);
        state.store(2, Ordering::SeqCst);
        feed.changed();
        assert_eq!(next().await, "event: n\ndata: 2\n\n", "the next change after the comment");
        assert_eq!(feed.viewers(), 1);
    }

    #[tokio::test]
    async fn streams_end_on_shutdown_and_a_late_one_ends_at_once() {
        let shutdown = CancellationToken::new();
        let feed = Feed::spawn("n", "0".into(), Duration::from_secs(3600), shutdown.clone(), || async { None });
        let mut open = feed.stream().into_body().into_data_stream();
        assert_eq!(open.next().await.unwrap().unwrap(), "event: n\ndata: 0\n\n");
        shutdown.cancel();
        let ended =
            tokio::time::timeout(Duration::from_secs(5), open.next()).await.expect("ends, so the server drains");
        assert!(ended.is_none());
        tokio::time::sleep(Duration::from_millis(50)).await;
        let mut late = feed.stream().into_body().into_data_stream();
        assert!(tokio::time::timeout(Duration::from_secs(5), late.next()).await.expect("ends at once").is_none());
    }
}
