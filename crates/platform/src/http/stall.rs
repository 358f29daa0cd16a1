//! Connections whose client stopped reading are closed, not kept.
//!
//! An event-stream viewer that never reads (a phone asleep with the page open, a
//! script that connects and waits) fills its socket's send queue — several hundred
//! kilobytes of kernel memory each, 707 MB for 2,000 such viewers in a minute of
//! voting — and then holds its connection and its place under the viewer cap for as
//! long as it likes. Once the queue is full, every write waits; a write that has waited
//! [`WRITE_STALL`] fails, hyper closes the connection, and the viewer's stream is
//! dropped. A browser's EventSource reconnects by itself when it wakes up.

use std::io;
use std::pin::Pin;
use std::sync::LazyLock;
use std::task::{Context, Poll, ready};
use std::time::Duration;

use prometheus_client::metrics::counter::Counter;
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::time::{Instant, Sleep};

/// How long a write may wait for a client that does not read: several keep-alive
/// comments of an event stream, far longer than any reading client waits.
pub const WRITE_STALL: Duration = Duration::from_secs(15);

/// Connections closed because the client stopped reading, process-wide.
static SHED: LazyLock<Counter> = LazyLock::new(Counter::default);

/// `http_stalled_connections_closed_total`, to register in a lab's registry.
pub fn shed_counter() -> Counter {
    SHED.clone()
}

/// The socket of one connection, its writes bounded by [`WRITE_STALL`].
pub struct StallGuard<T> {
    io: T,
    /// Armed when a write first waits; disarmed by any write that goes through.
    stalled: Option<Pin<Box<Sleep>>>,
}

impl<T> StallGuard<T> {
    pub fn new(io: T) -> StallGuard<T> {
        StallGuard { io, stalled: None }
    }

    /// A write that waits: fails once it has waited for [`WRITE_STALL`].
    fn waiting<R>(&mut self, cx: &mut Context<'_>) -> Poll<io::Result<R>> {
        let timer =
            self.stalled.get_or_insert_with(|| Box::pin(tokio::time::sleep_until(Instant::now() + WRITE_STALL)));
        ready!(timer.as_mut().poll(cx));
        SHED.inc();
        Poll::Ready(Err(io::Error::new(io::ErrorKind::TimedOut, "the client stopped reading")))
    }
}

impl<T: AsyncRead + Unpin> AsyncRead for StallGuard<T> {
    fn poll_read(mut self: Pin<&mut Self>, cx: &mut Context<'_>, buf: &mut ReadBuf<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.io).poll_read(cx, buf)
    }
}

impl<T: AsyncWrite + Unpin> AsyncWrite for StallGuard<T> {
    fn poll_write(mut self: Pin<&mut Self>, cx: &mut Context<'_>, buf: &[u8]) -> Poll<io::Result<usize>> {
        match Pin::new(&mut self.io).poll_write(cx, buf) {
            Poll::Pending => self.waiting(cx),
            done => {
                self.stalled = None;
                done
            }
        }
    }

    fn poll_write_vectored(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[io::IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        match Pin::new(&mut self.io).poll_write_vectored(cx, bufs) {
            Poll::Pending => self.waiting(cx),
            done => {
                self.stalled = None;
                done
            }
        }
    }

    fn is_write_vectored(&self) -> bool {
        self.io.is_write_vectored()
    }

    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        match Pin::new(&mut self.io).poll_flush(cx) {
            Poll::Pending => self.waiting(cx),
            done => {
                self.stalled = None;
                done
            }
        }
    }

    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.io).poll_shutdown(cx)
    }
}
