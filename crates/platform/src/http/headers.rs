//! The security headers every answer carries, and the request-header limits.

use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::response::Response;

use super::*;

/// Everything a page needs is served from here (fonts and images are embedded), so
/// the policy allows this origin only: no inline script or style, no framing.
const CONTENT_SECURITY_POLICY: &str = "default-src 'self'; script-src 'self'; style-src 'self'; img-src 'self' data:; \
     font-src 'self'; connect-src 'self'; frame-ancestors 'none'; base-uri 'none'; form-action 'self'; object-src 'none'";

/// Everything that is not a document (JSON, event streams, metrics, scripts) loads
/// nothing and is framed by nobody: the strictest policy, in a quarter of the bytes —
/// at a hundred thousand answers a second the page policy's bytes are a tenth of the work.
const CONTENT_SECURITY_POLICY_NOT_A_DOCUMENT: &str = "default-src 'none'; frame-ancestors 'none'";

/// Response headers that keep pages safe in front of an audience. A document (a page,
/// an SVG) and a redirect get all four. Anything else gets the two that mean something
/// for it: `nosniff`, so a browser never runs it as a script or a page, and the policy,
/// whose `frame-ancestors 'none'` forbids framing in every browser with CSP 2.
/// `X-Frame-Options` (the same rule for browsers without it) and `Referrer-Policy`
/// (which governs the requests a document makes) act on documents only; left off the
/// answers of the API they save a header map two insertions and every client 60 bytes.
/// (The values are checked once, at compile time, not on every response.)
pub(crate) fn add_security_headers(response: &mut Response) {
    const PAGE_POLICY: HeaderValue = HeaderValue::from_static(CONTENT_SECURITY_POLICY);
    const NOT_A_DOCUMENT_POLICY: HeaderValue = HeaderValue::from_static(CONTENT_SECURITY_POLICY_NOT_A_DOCUMENT);
    const NOSNIFF: HeaderValue = HeaderValue::from_static("nosniff");
    const NO_REFERRER: HeaderValue = HeaderValue::from_static("no-referrer");
    const DENY: HeaderValue = HeaderValue::from_static("DENY");
    // A redirect's Referrer-Policy governs the request it leads to: it gets the full set.
    let full_set = is_document(response.headers()) || response.status().is_redirection();
    let headers = response.headers_mut();
    if full_set {
        headers.reserve(4);
        headers.insert(header::CONTENT_SECURITY_POLICY, PAGE_POLICY);
        headers.insert(header::X_CONTENT_TYPE_OPTIONS, NOSNIFF);
        headers.insert(header::REFERRER_POLICY, NO_REFERRER);
        headers.insert(header::X_FRAME_OPTIONS, DENY);
    } else {
        headers.reserve(2);
        headers.insert(header::CONTENT_SECURITY_POLICY, NOT_A_DOCUMENT_POLICY);
        headers.insert(header::X_CONTENT_TYPE_OPTIONS, NOSNIFF);
    }
}

/// A browser renders it as a page (an SVG can carry script and style too).
fn is_document(headers: &HeaderMap) -> bool {
    headers.get(header::CONTENT_TYPE).is_some_and(|kind| {
        let kind = kind.as_bytes();
        kind.starts_with(b"text/html") || kind.starts_with(b"image/svg+xml")
    })
}

/// Largest request body any lab accepts; every lab's bodies are tiny.
pub const BODY_LIMIT_BYTES: usize = 64 * 1024;

/// The most header bytes (names and values) and headers a request may carry: a phone's
/// browser sends a few hundred bytes; anything near these is not an attendee.
pub const HEADER_LIMIT_BYTES: usize = 16 * 1024;
pub const HEADER_LIMIT_COUNT: usize = 100;

/// 431 with a JSON `detail` for a request whose headers are too large or too many.
pub(super) fn oversized_headers(headers: &HeaderMap) -> Option<ApiError> {
    let bytes: usize = headers.iter().map(|(name, value)| name.as_str().len() + value.len()).sum();
    if bytes <= HEADER_LIMIT_BYTES && headers.len() <= HEADER_LIMIT_COUNT {
        return None;
    }
    Some(ApiError {
        close: true,
        ..ApiError::new(
            StatusCode::REQUEST_HEADER_FIELDS_TOO_LARGE,
            format!(
                "Request headers too large: {bytes} bytes in {} headers (limits: {HEADER_LIMIT_BYTES} bytes, {HEADER_LIMIT_COUNT} headers)",
                headers.len()
            ),
        )
    })
}
