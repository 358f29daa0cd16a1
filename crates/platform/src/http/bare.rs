//! JSON for the answers hyper writes itself.
//!
//! hyper refuses some requests before any handler sees them — a head it cannot parse
//! (400), a URI of 64 KiB or more (414), more headers than it parses (431), a version
//! it does not speak (505) — and answers them with an empty body. Every other error of
//! breakroom's is JSON with a `detail`, and a client that parses the body got nothing.
//! Those answers are recognized on their way out — an error status, an empty body and
//! no Content-Security-Policy, which every answer of the router carries — and written
//! as JSON instead. hyper closes the connection after them, so nothing follows.

use std::io;
use std::pin::Pin;
use std::task::{Context, Poll, ready};

use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};

use super::{HEADER_LIMIT_BYTES, HEADER_LIMIT_COUNT};

/// A connection's socket, hyper's bare error answers rewritten as JSON.
pub struct JsonErrors<T> {
    io: T,
    replacing: Option<Replacing>,
}

/// A JSON answer being written in place of hyper's `claimed` bytes.
struct Replacing {
    bytes: Vec<u8>,
    written: usize,
    claimed: usize,
}

impl<T> JsonErrors<T> {
    pub fn new(io: T) -> JsonErrors<T> {
        JsonErrors { io, replacing: None }
    }
}

impl<T: AsyncWrite + Unpin> JsonErrors<T> {
    /// Writes the replacement to its end; then tells hyper its own bytes went out.
    fn drive(&mut self, cx: &mut Context<'_>, offered: usize) -> Poll<io::Result<usize>> {
        let replacing = self.replacing.as_mut().expect("a replacement in progress");
        while replacing.written < replacing.bytes.len() {
            let n = ready!(Pin::new(&mut self.io).poll_write(cx, &replacing.bytes[replacing.written..]))?;
            if n == 0 {
                return Poll::Ready(Err(io::ErrorKind::WriteZero.into()));
            }
            replacing.written += n;
        }
        Poll::Ready(Ok(replacing.claimed.min(offered)))
    }
}

impl<T: AsyncRead + Unpin> AsyncRead for JsonErrors<T> {
    fn poll_read(mut self: Pin<&mut Self>, cx: &mut Context<'_>, buf: &mut ReadBuf<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.io).poll_read(cx, buf)
    }
}

impl<T: AsyncWrite + Unpin> AsyncWrite for JsonErrors<T> {
    fn poll_write(mut self: Pin<&mut Self>, cx: &mut Context<'_>, buf: &[u8]) -> Poll<io::Result<usize>> {
        if self.replacing.is_none()
            && let Some(bytes) = json_for_bare_error(buf)
        {
            self.replacing = Some(Replacing { bytes, written: 0, claimed: buf.len() });
        }
        if self.replacing.is_some() {
            return self.drive(cx, buf.len());
        }
        Pin::new(&mut self.io).poll_write(cx, buf)
    }

    fn poll_write_vectored(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[io::IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        // hyper's own answer is a head alone, in one slice.
        if let Some(first) = bufs.iter().find(|b| !b.is_empty())
            && (self.replacing.is_some() || json_for_bare_error(first).is_some())
        {
            return self.poll_write(cx, first);
        }
        Pin::new(&mut self.io).poll_write_vectored(cx, bufs)
    }

    fn is_write_vectored(&self) -> bool {
        self.io.is_write_vectored()
    }

    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.io).poll_flush(cx)
    }

    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.io).poll_shutdown(cx)
    }
}

/// The JSON answer for `written`, when it is one of hyper's own bare error answers.
fn json_for_bare_error(written: &[u8]) -> Option<Vec<u8>> {
    if !(written.starts_with(b"HTTP/1.1 4") || written.starts_with(b"HTTP/1.1 5")) {
        return None;
    }
    let end = written.windows(4).position(|w| w == b"\r\n\r\n")?;
    if end + 4 != written.len() {
        return None; // a body follows: not hyper's
    }
    let head = std::str::from_utf8(&written[..end]).ok()?;
    let mut lines = head.split("\r\n");
    let code: u16 = lines.next()?.get(9..12)?.parse().ok()?;
    let mut empty = false;
    for line in lines {
        let line = line.to_ascii_lowercase();
        if line.starts_with("content-security-policy:") {
            return None; // the router's
        }
        empty |= line == "content-length: 0";
    }
    if !empty {
        return None;
    }
    let (reason, detail) = match code {
        400 => ("Bad Request", "Malformed HTTP request: its request line or a header could not be read".to_string()),
        414 => ("URI Too Long", "URI too long: the path and query must stay under 64 KiB".to_string()),
        431 => (
            "Request Header Fields Too Large",
            format!("Request headers too large (limits: {HEADER_LIMIT_BYTES} bytes, {HEADER_LIMIT_COUNT} headers)"),
        ),
        505 => ("HTTP Version Not Supported", "HTTP version not supported: speak HTTP/1.1".to_string()),
        _ => ("Error", format!("The request was refused ({code})")),
    };
    let body = serde_json::json!({ "detail": detail }).to_string();
    Some(
        format!(
            "HTTP/1.1 {code} {reason}\r\ncontent-type: application/json\r\ncontent-length: {}\r\nconnection: close\r\n\
             content-security-policy: default-src 'none'; frame-ancestors 'none'\r\nx-content-type-options: nosniff\r\n\r\n{body}",
            body.len()
        )
        .into_bytes(),
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_hypers_own_empty_error_answers_are_rewritten() {
        let bare = b"HTTP/1.1 431 Request Header Fields Too Large\r\nconnection: close\r\ncontent-length: 0\r\ndate: x\r\n\r\n";
        let json = String::from_utf8(json_for_bare_error(bare).unwrap()).unwrap();
        assert!(json.starts_with("HTTP/1.1 431 Request Header Fields Too Large\r\n"), "{json}");
        assert!(json.contains("content-type: application/json") && json.ends_with(r#"headers)"}"#), "{json}");
        let router =
            b"HTTP/1.1 404 Not Found\r\ncontent-security-policy: default-src 'none'\r\ncontent-length: 0\r\n\r\n";
        assert!(json_for_bare_error(router).is_none(), "the router's answers are its own");
        assert!(json_for_bare_error(b"HTTP/1.1 200 OK\r\ncontent-length: 0\r\n\r\n").is_none());
        assert!(json_for_bare_error(b"HTTP/1.1 400 Bad Request\r\ncontent-length: 2\r\n\r\n{}").is_none());
    }
}
