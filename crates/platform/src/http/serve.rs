//! The server loop: HTTP/1.1, one task per connection, with the limits a room needs.
//!
//! Written out rather than `axum::serve`, which has no timeouts: a client that opens a
//! connection and sends its request head a byte a second (slowloris), or never sends
//! the next request on a kept-alive connection, would hold a socket — and a file
//! descriptor — for as long as it likes, and enough of them make accept fail for
//! everyone, `/health` included. A client that stops reading is closed too (see
//! [`super::stall`]), and hyper's own error answers are JSON like the rest ([`super::bare`]).

use std::time::Duration;

use axum::Router;
use axum::extract::{ConnectInfo, Request};
use hyper_util::rt::{TokioIo, TokioTimer};
use tokio::net::TcpListener;
use tokio_util::sync::CancellationToken;

use super::bare::JsonErrors;
use super::stall::StallGuard;
use super::waiting::Waiting;

/// A request head — the first on a connection, or the next on a kept-alive one — must
/// be complete within this, or the connection is closed. A phone sends its head in one
/// packet; an idle browser reconnects at once when it needs to.
pub const HEADER_READ_TIMEOUT: Duration = Duration::from_secs(10);

/// After a failed accept (out of file descriptors, say), the next try comes this soon:
/// connections close all the time, so one is usually free again within milliseconds.
const ACCEPT_RETRY: Duration = Duration::from_millis(5);

/// Serves until `shutdown` fires, then lets in-flight requests finish: each connection
/// answers what it is serving and closes; open event streams end on the same signal.
pub async fn serve(listener: TcpListener, router: Router, shutdown: CancellationToken) -> std::io::Result<()> {
    raise_open_file_limit();
    let mut http = hyper::server::conn::http1::Builder::new();
    http.timer(TokioTimer::new()).header_read_timeout(HEADER_READ_TIMEOUT);
    // Every connection holds a sender; when the last is dropped, all have closed.
    let (open, mut all_closed) = tokio::sync::mpsc::channel::<()>(1);
    let waiting = std::sync::Arc::new(Waiting::default());
    loop {
        let (stream, peer) = tokio::select! {
            _ = shutdown.cancelled() => break,
            accepted = listener.accept() => match accepted {
                Ok(accepted) => accepted,
                Err(error) => {
                    let closed = waiting.make_room();
                    tracing::warn!(%error, closed, "accept failed; closed connections that sent nothing, trying again");
                    tokio::time::sleep(ACCEPT_RETRY).await;
                    continue;
                }
            },
        };
        let _ = stream.set_nodelay(true);
        let ticket = waiting.join();
        let first_request = ticket.clone();
        let service = tower::ServiceExt::map_request(router.clone(), move |mut request: Request<_>| {
            first_request.served();
            request.extensions_mut().insert(ConnectInfo(peer));
            request
        });
        let connection = http.serve_connection(
            TokioIo::new(JsonErrors::new(StallGuard::new(stream))),
            hyper_util::service::TowerToHyperService::new(service),
        );
        let (shutdown, open) = (shutdown.clone(), open.clone());
        tokio::spawn(async move {
            let mut connection = std::pin::pin!(connection);
            let result = tokio::select! {
                result = connection.as_mut() => result,
                _ = shutdown.cancelled() => {
                    connection.as_mut().graceful_shutdown();
                    connection.await
                }
                // Never sent a request and the oldest such: closed to make room.
                _ = ticket.evicted.cancelled() => Ok(()),
            };
            ticket.closed();
            if let Err(error) = result {
                // A client that went away or timed out: the connection's own business.
                tracing::debug!(%error, %peer, "connection closed with an error");
            }
            drop(open);
        });
    }
    drop(open);
    let _ = all_closed.recv().await;
    Ok(())
}

/// The soft limit of open files up to the hard one: every connection is a descriptor,
/// and a distribution's default soft limit (1,024) is a small room.
fn raise_open_file_limit() {
    #[cfg(unix)]
    {
        let mut limit = libc::rlimit { rlim_cur: 0, rlim_max: 0 };
        // SAFETY: getrlimit/setrlimit with a valid pointer to a local struct.
        unsafe {
            if libc::getrlimit(libc::RLIMIT_NOFILE, &mut limit) == 0 && limit.rlim_cur < limit.rlim_max {
                limit.rlim_cur = limit.rlim_max;
                libc::setrlimit(libc::RLIMIT_NOFILE, &limit);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    use tokio::net::TcpStream;
    use tokio::time::Instant;

    /// `serve` on a port of its own: its address, its shutdown, its task.
    async fn start(
        router: Router,
    ) -> (std::net::SocketAddr, CancellationToken, tokio::task::JoinHandle<std::io::Result<()>>) {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let address = listener.local_addr().unwrap();
        let shutdown = CancellationToken::new();
        (address, shutdown.clone(), tokio::spawn(serve(listener, router, shutdown)))
    }

    fn health() -> Router {
        Router::new().route("/health", axum::routing::get(|| async { "ok" }))
    }

    /// Reads until the server closes the connection; how long that took.
    async fn closed_after(stream: &mut TcpStream, began: Instant) -> (Duration, String) {
        let mut seen = Vec::new();
        let mut buffer = [0u8; 1024];
        loop {
            match stream.read(&mut buffer).await {
                Ok(0) | Err(_) => return (began.elapsed(), String::from_utf8_lossy(&seen).into_owned()),
                Ok(n) => seen.extend_from_slice(&buffer[..n]),
            }
        }
    }

    #[tokio::test(start_paused = true)]
    async fn a_stalled_request_head_and_an_idle_kept_alive_connection_are_closed_at_the_header_timeout() {
        let (address, shutdown, server) = start(health()).await;

        // Slowloris: part of a head, then nothing.
        let mut slow = TcpStream::connect(address).await.unwrap();
        slow.write_all(b"GET /health HTTP/1.1\r\nHost: breakroom\r\n").await.unwrap();
        let (took, _) = closed_after(&mut slow, Instant::now()).await;
        assert!(took >= HEADER_READ_TIMEOUT && took < HEADER_READ_TIMEOUT + Duration::from_secs(1), "{took:?}");

        // Kept alive after one answer, then idle: closed too, not held forever.
        let mut idle = TcpStream::connect(address).await.unwrap();
        idle.write_all(b"GET /health HTTP/1.1\r\nHost: breakroom\r\n\r\n").await.unwrap();
        let (took, answer) = closed_after(&mut idle, Instant::now()).await;
        assert!(answer.starts_with("HTTP/1.1 200") && answer.ends_with("ok"), "{answer}");
        assert!(took >= HEADER_READ_TIMEOUT && took < HEADER_READ_TIMEOUT + Duration::from_secs(1), "{took:?}");

        // A client that sends its request at once is served as always.
        let mut quick = TcpStream::connect(address).await.unwrap();
        quick.write_all(b"GET /health HTTP/1.1\r\nHost: breakroom\r\nConnection: close\r\n\r\n").await.unwrap();
        let (_, answer) = closed_after(&mut quick, Instant::now()).await;
        assert!(answer.starts_with("HTTP/1.1 200"), "{answer}");

        shutdown.cancel();
        server.await.unwrap().unwrap();
    }

    #[tokio::test]
    async fn connections_that_send_nothing_give_way_and_health_still_answers() {
        let (address, shutdown, server) = start(health()).await;
        // A browser that is served keeps its kept-alive connection through it all.
        let mut browser = TcpStream::connect(address).await.unwrap();
        browser.write_all(b"GET /health HTTP/1.1\r\nHost: b\r\n\r\n").await.unwrap();
        let mut buffer = [0u8; 1024];
        assert!(browser.read(&mut buffer).await.unwrap() > 0);
        // 1,100 sockets that send nothing, more than a default descriptor limit allows.
        let mut idle = Vec::new();
        for _ in 0..1_100 {
            idle.push(TcpStream::connect(address).await.unwrap());
        }
        // Past their grace, the next connection makes room.
        tokio::time::sleep(super::super::waiting::GRACE + Duration::from_millis(100)).await;
        let mut health = TcpStream::connect(address).await.unwrap();
        health.write_all(b"GET /health HTTP/1.1\r\nHost: b\r\nConnection: close\r\n\r\n").await.unwrap();
        let (_, answer) = closed_after(&mut health, Instant::now()).await;
        assert!(answer.starts_with("HTTP/1.1 200"), "{answer}");
        // The oldest idle ones were closed at once (long before the header timeout).
        let mut closed = 0;
        for socket in &mut idle[..1_100 - super::super::waiting::MAX_WAITING] {
            let read = tokio::time::timeout(Duration::from_secs(2), socket.read(&mut buffer)).await;
            closed += usize::from(matches!(read, Ok(Ok(0)) | Ok(Err(_))));
        }
        assert_eq!(closed, 1_100 - super::super::waiting::MAX_WAITING, "all but the newest waiting were closed");
        browser.write_all(b"GET /health HTTP/1.1\r\nHost: b\r\n\r\n").await.unwrap();
        assert!(browser.read(&mut buffer).await.unwrap() > 0, "the served browser's connection is kept");
        shutdown.cancel();
        server.await.unwrap().unwrap();
    }

    #[tokio::test]
    async fn the_answers_hyper_writes_itself_are_json_with_a_detail() {
        let (address, shutdown, server) = start(health()).await;
        let many_headers: String = (0..150).map(|i| format!("x-{i}: 1\r\n")).collect();
        let long_uri = format!("/{}", "a".repeat(70_000));
        for (request, status) in [
            (format!("GET /health HTTP/1.1\r\nHost: b\r\n{many_headers}\r\n"), "431"),
            (format!("GET {long_uri} HTTP/1.1\r\nHost: b\r\n\r\n"), "414"),
            ("GET /health HTTP/1.1\r\nHost: b\r\nno colon here\r\n\r\n".to_string(), "400"),
        ] {
            let mut client = TcpStream::connect(address).await.unwrap();
            client.write_all(request.as_bytes()).await.unwrap();
            let (_, answer) = closed_after(&mut client, Instant::now()).await;
            assert!(answer.starts_with(&format!("HTTP/1.1 {status} ")), "{answer}");
            assert!(answer.contains("content-type: application/json"), "{answer}");
            let body = answer.split("\r\n\r\n").nth(1).unwrap_or_default();
            let body: serde_json::Value = serde_json::from_str(body).expect("a JSON body");
            assert!(body["detail"].as_str().is_some_and(|d| !d.is_empty()), "{answer}");
        }
        shutdown.cancel();
        server.await.unwrap().unwrap();
    }

    #[tokio::test(start_paused = true)]
    async fn a_client_that_stops_reading_an_endless_stream_is_closed_and_counted() {
        use futures_util::StreamExt;
        // An event stream that always has more to send, as a vote feed under load does.
        let endless = || async {
            let chunk = axum::body::Bytes::from(vec![b'x'; 64 * 1024]);
            let chunks = futures_util::stream::repeat(chunk).map(Ok::<_, std::convert::Infallible>);
            axum::body::Body::from_stream(chunks)
        };
        let (address, shutdown, server) = start(Router::new().route("/stream", axum::routing::get(endless))).await;
        let shed_before = super::super::stall::shed_counter().get();

        let mut viewer = TcpStream::connect(address).await.unwrap();
        viewer.write_all(b"GET /stream HTTP/1.1\r\nHost: breakroom\r\n\r\n").await.unwrap();
        // The viewer reads nothing for longer than a write may wait...
        tokio::time::sleep(super::super::stall::WRITE_STALL * 2).await;
        // ...then drains what the kernel had queued: the server has closed the stream.
        let mut buffer = vec![0u8; 256 * 1024];
        let mut read = 0usize;
        loop {
            match viewer.read(&mut buffer).await {
                Ok(0) | Err(_) => break,
                Ok(n) => read += n,
            }
            assert!(read < 256 * 1024 * 1024, "still streaming to a client that stopped reading");
        }
        assert!(super::super::stall::shed_counter().get() > shed_before, "the closed connection is counted");

        // A client that reads is served as always.
        let mut quick = TcpStream::connect(address).await.unwrap();
        quick.write_all(b"GET /missing HTTP/1.1\r\nHost: breakroom\r\nConnection: close\r\n\r\n").await.unwrap();
        let (_, answer) = closed_after(&mut quick, Instant::now()).await;
        assert!(answer.starts_with("HTTP/1.1 404"), "{answer}");
        shutdown.cancel();
        server.await.unwrap().unwrap();
    }
}
