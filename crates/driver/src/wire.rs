//! The closed model's own HTTP/1.1 keep-alive connection: the request written as one
//! buffer, the response read into a buffer that is kept and parsed in place, the body
//! counted and dropped. That is all a flat-out closed model needs, and it is what wrk
//! does per request: a general client (pools, channels, header maps) costs the driver
//! several times the CPU, which on a shared machine it takes from the server it
//! measures, so the two tools would disagree about the same server.

use std::io;

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

/// The most bytes a response head may take.
const HEAD_LIMIT: usize = 64 * 1024;

pub struct Wire {
    stream: TcpStream,
    /// Bytes read and not yet used.
    buffer: Vec<u8>,
    request: Vec<u8>,
}

/// Why an exchange failed; the connection is not used again either way.
#[derive(Debug)]
pub enum WireError {
    /// Closed by the server before the whole response arrived.
    Closed,
    /// Not an HTTP/1.1 response the driver understands.
    Malformed,
    /// The connection failed (reset, refused a write).
    Io,
}

impl From<io::Error> for WireError {
    fn from(_: io::Error) -> Self {
        WireError::Io
    }
}

/// What the response said about itself.
struct Head {
    status: u16,
    length: Length,
    keep_alive: bool,
}

enum Length {
    None,
    Exactly(u64),
    Chunked,
    UntilClose,
}

impl Wire {
    pub async fn connect(authority: &str) -> io::Result<Wire> {
        let stream = TcpStream::connect(authority).await?;
        stream.set_nodelay(true)?;
        Ok(Wire { stream, buffer: Vec::with_capacity(4096), request: Vec::with_capacity(512) })
    }

    /// Whether the server closed the connection (or sent what nobody asked for) while
    /// it was idle: then it is not used for another request. Costs a system call only
    /// when the socket has something to read.
    pub async fn closed_while_idle(&self) -> bool {
        let readable =
            std::future::poll_fn(|cx| std::task::Poll::Ready(self.stream.poll_read_ready(cx).is_ready())).await;
        if !readable {
            return false;
        }
        let mut probe = [0u8; 1];
        !matches!(self.stream.try_read(&mut probe), Err(error) if error.kind() == io::ErrorKind::WouldBlock)
    }

    /// Sends one request and reads its whole response: its status, and whether the
    /// connection may carry the next request.
    pub async fn exchange(
        &mut self,
        method: &str,
        authority: &str,
        target: &str,
        body: Option<&[u8]>,
    ) -> Result<(u16, bool), WireError> {
        self.write_request(method, authority, target, body);
        self.stream.write_all(&self.request).await?;
        let (head, head_len) = self.read_head().await?;
        self.buffer.drain(..head_len);
        let bodiless = method == "HEAD" || head.status == 204 || head.status == 304 || head.status < 200;
        let keep_alive = match if bodiless { Length::None } else { head.length } {
            Length::None => head.keep_alive,
            Length::Exactly(length) => {
                self.skip(length).await?;
                head.keep_alive
            }
            Length::Chunked => {
                self.skip_chunks().await?;
                head.keep_alive
            }
            Length::UntilClose => {
                while self.fill().await? > 0 {
                    self.buffer.clear();
                }
                false
            }
        };
        // Anything after the response was not asked for: the connection is out of step.
        Ok((head.status, keep_alive && self.buffer.is_empty()))
    }

    fn write_request(&mut self, method: &str, authority: &str, target: &str, body: Option<&[u8]>) {
        let request = &mut self.request;
        request.clear();
        for part in [method, " ", target, " HTTP/1.1\r\nhost: ", authority, "\r\n"] {
            request.extend_from_slice(part.as_bytes());
        }
        if let Some(body) = body {
            use std::io::Write;
            // Writing into a Vec cannot fail.
            let _ = write!(request, "content-type: application/json\r\ncontent-length: {}\r\n\r\n", body.len());
            request.extend_from_slice(body);
        } else {
            request.extend_from_slice(b"\r\n");
        }
    }

    /// Reads more bytes into the buffer; 0 when the server closed the connection.
    async fn fill(&mut self) -> io::Result<usize> {
        if self.buffer.capacity() - self.buffer.len() < 1024 {
            self.buffer.reserve(4096);
        }
        self.stream.read_buf(&mut self.buffer).await
    }

    async fn read_head(&mut self) -> Result<(Head, usize), WireError> {
        loop {
            if let Some(parsed) = parse_head(&self.buffer)? {
                return Ok(parsed);
            }
            if self.buffer.len() > HEAD_LIMIT {
                return Err(WireError::Malformed);
            }
            if self.fill().await? == 0 {
                return Err(WireError::Closed);
            }
        }
    }

    /// Drops the next `length` body bytes.
    async fn skip(&mut self, mut length: u64) -> Result<(), WireError> {
        loop {
            let available = self.buffer.len().min(usize::try_from(length).unwrap_or(usize::MAX));
            self.buffer.drain(..available);
            length -= available as u64;
            if length == 0 {
                return Ok(());
            }
            if self.fill().await? == 0 {
                return Err(WireError::Closed);
            }
        }
    }

    /// Drops a chunked body, its last chunk and trailers included.
    async fn skip_chunks(&mut self) -> Result<(), WireError> {
        loop {
            let (used, size) = loop {
                match httparse::parse_chunk_size(&self.buffer) {
                    Ok(httparse::Status::Complete(sized)) => break sized,
                    Ok(httparse::Status::Partial) if self.buffer.len() < HEAD_LIMIT => {
                        if self.fill().await? == 0 {
                            return Err(WireError::Closed);
                        }
                    }
                    _ => return Err(WireError::Malformed),
                }
            };
            self.buffer.drain(..used);
            if size == 0 {
                return self.skip_trailers().await;
            }
            self.skip(size).await?;
            self.expect_line_end().await?;
        }
    }

    async fn expect_line_end(&mut self) -> Result<(), WireError> {
        while self.buffer.len() < 2 {
            if self.fill().await? == 0 {
                return Err(WireError::Closed);
            }
        }
        if &self.buffer[..2] != b"\r\n" {
            return Err(WireError::Malformed);
        }
        self.buffer.drain(..2);
        Ok(())
    }

    async fn skip_trailers(&mut self) -> Result<(), WireError> {
        loop {
            let mut trailers = [httparse::EMPTY_HEADER; 16];
            match httparse::parse_headers(&self.buffer, &mut trailers) {
                Ok(httparse::Status::Complete((used, _))) => {
                    self.buffer.drain(..used);
                    return Ok(());
                }
                Ok(httparse::Status::Partial) if self.buffer.len() < HEAD_LIMIT => {
                    if self.fill().await? == 0 {
                        return Err(WireError::Closed);
                    }
                }
                _ => return Err(WireError::Malformed),
            }
        }
    }
}

/// The response head at the start of `bytes` and its length, once it is all there.
fn parse_head(bytes: &[u8]) -> Result<Option<(Head, usize)>, WireError> {
    let mut headers = [httparse::EMPTY_HEADER; 64];
    let mut response = httparse::Response::new(&mut headers);
    let head_len = match response.parse(bytes) {
        Ok(httparse::Status::Complete(head_len)) => head_len,
        Ok(httparse::Status::Partial) => return Ok(None),
        Err(_) => return Err(WireError::Malformed),
    };
    let status = response.code.ok_or(WireError::Malformed)?;
    let mut keep_alive = response.version == Some(1);
    let (mut chunked, mut content_length) = (false, None);
    for header in response.headers.iter() {
        if header.name.eq_ignore_ascii_case("content-length") {
            let text = std::str::from_utf8(header.value).map_err(|_| WireError::Malformed)?;
            content_length = Some(text.trim().parse().map_err(|_| WireError::Malformed)?);
        } else if header.name.eq_ignore_ascii_case("transfer-encoding") {
            if !header.value.eq_ignore_ascii_case(b"chunked") {
                return Err(WireError::Malformed);
            }
            chunked = true;
        } else if header.name.eq_ignore_ascii_case("connection") {
            if header.value.eq_ignore_ascii_case(b"close") {
                keep_alive = false;
            } else if header.value.eq_ignore_ascii_case(b"keep-alive") {
                keep_alive = true;
            }
        }
    }
    // Chunked wins over a length (RFC 9112 §6.3); with neither, the body ends with the connection.
    let length = match (chunked, content_length) {
        (true, _) => Length::Chunked,
        (false, Some(length)) => Length::Exactly(length),
        (false, None) => Length::UntilClose,
    };
    Ok(Some((Head { status, length, keep_alive }, head_len)))
}

#[cfg(test)]
mod tests {
    use super::*;
    use tokio::net::TcpListener;

    /// A server that answers every request on a connection with the next of `answers`
    /// (raw bytes), closing the connection after an answer marked `true`. Returns its
    /// address and how many connections it accepted.
    async fn raw_server(
        answers: Vec<(&'static [u8], bool)>,
    ) -> (String, std::sync::Arc<std::sync::atomic::AtomicUsize>) {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let address = listener.local_addr().unwrap().to_string();
        let accepted = std::sync::Arc::new(std::sync::atomic::AtomicUsize::new(0));
        let counter = accepted.clone();
        tokio::spawn(async move {
            let answers = std::sync::Arc::new(tokio::sync::Mutex::new(answers.into_iter()));
            loop {
                let (mut socket, _) = listener.accept().await.unwrap();
                counter.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
                let answers = answers.clone();
                tokio::spawn(async move {
                    let mut request = Vec::new();
                    loop {
                        let mut chunk = [0u8; 1024];
                        let n = socket.read(&mut chunk).await.unwrap_or(0);
                        if n == 0 {
                            return;
                        }
                        request.extend_from_slice(&chunk[..n]);
                        let Some(end) = request.windows(4).position(|w| w == b"\r\n\r\n") else { continue };
                        let head = String::from_utf8_lossy(&request[..end]).to_lowercase();
                        let body = head
                            .lines()
                            .find_map(|l| l.strip_prefix("content-length: "))
                            .map_or(0, |n| n.trim().parse::<usize>().unwrap());
                        if request.len() < end + 4 + body {
                            continue;
                        }
                        request.drain(..end + 4 + body);
                        let Some((answer, close)) = answers.lock().await.next() else { return };
                        socket.write_all(answer).await.unwrap();
                        if close {
                            return;
                        }
                    }
                });
            }
        });
        (address, accepted)
    }

    #[tokio::test]
    async fn reads_every_way_a_body_can_end_and_knows_when_to_reconnect() {
        let (address, accepted) = raw_server(vec![
            (b"HTTP/1.1 200 OK\r\ncontent-length: 5\r\n\r\nhello", false),
            (
                b"HTTP/1.1 201 Created\r\ntransfer-encoding: chunked\r\n\r\n3;x=y\r\nabc\r\n0\r\nx-trailer: 1\r\n\r\n",
                false,
            ),
            (b"HTTP/1.1 204 No Content\r\n\r\n", false),
            (b"HTTP/1.1 503 Service Unavailable\r\nconnection: close\r\ncontent-length: 2\r\n\r\nno", true),
            (b"HTTP/1.1 200 OK\r\n\r\nuntil the end", true),
            (b"HTTP/1.1 200 OK\r\ncontent-length: 2\r\n\r\nok", true),
            (b"HTTP/1.1 200 OK\r\ncontent-length: 2\r\n\r\nok", false),
        ])
        .await;
        let mut wire = Wire::connect(&address).await.unwrap();
        assert_eq!(wire.exchange("GET", &address, "/a", None).await.unwrap(), (200, true));
        assert_eq!(wire.exchange("POST", &address, "/b", Some(b"{}")).await.unwrap(), (201, true));
        assert_eq!(wire.exchange("DELETE", &address, "/c", None).await.unwrap(), (204, true));
        assert_eq!(wire.exchange("GET", &address, "/d", None).await.unwrap(), (503, false), "connection: close");
        let mut wire = Wire::connect(&address).await.unwrap();
        assert_eq!(wire.exchange("GET", &address, "/e", None).await.unwrap(), (200, false), "a body until close");
        let mut wire = Wire::connect(&address).await.unwrap();
        assert_eq!(wire.exchange("GET", &address, "/f", None).await.unwrap(), (200, true));
        // The server closed this one after answering, without saying so.
        tokio::time::sleep(std::time::Duration::from_millis(50)).await;
        assert!(wire.closed_while_idle().await);
        let wire = Wire::connect(&address).await.unwrap();
        assert!(!wire.closed_while_idle().await, "an open idle connection is usable");
        for _ in 0..100 {
            if accepted.load(std::sync::atomic::Ordering::SeqCst) == 4 {
                break;
            }
            tokio::time::sleep(std::time::Duration::from_millis(10)).await;
        }
        assert_eq!(accepted.load(std::sync::atomic::Ordering::SeqCst), 4, "a connection for each that was closed");
    }

    #[tokio::test]
    async fn a_response_cut_short_or_garbled_is_an_error() {
        let (address, _) = raw_server(vec![
            (b"HTTP/1.1 200 OK\r\ncontent-length: 10\r\n\r\nshort", true),
            (b"SMTP ready\r\n\r\n", true),
        ])
        .await;
        let mut wire = Wire::connect(&address).await.unwrap();
        assert!(matches!(wire.exchange("GET", &address, "/", None).await, Err(WireError::Closed)));
        let mut wire = Wire::connect(&address).await.unwrap();
        assert!(matches!(wire.exchange("GET", &address, "/", None).await, Err(WireError::Malformed)));
    }
}
