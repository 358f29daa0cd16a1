//! Admin authentication: the token every `/admin/*` action requires.

use axum::extract::{Request, State};
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};

use super::*;

/// Tokens shorter than this are easy to guess from the audience's network.
pub const MIN_TOKEN_CHARS: usize = 16;

/// Values people copy from examples (earlier compose files defaulted to the first).
const EXAMPLE_TOKENS: &[&str] =
    &["change-me-before-the-talk", "change-me", "changeme", "secret", "password", "admin", "token", "test"];

/// How to make a token that is not weak.
pub const STRONG_TOKEN_HINT: &str = "set BREAKROOM_ADMIN_TOKEN=$(openssl rand -hex 16)";

/// The admin token every `/admin/*` action requires.
#[derive(Clone)]
pub struct AdminToken(std::sync::Arc<str>);

impl AdminToken {
    pub fn new(token: &str) -> Self {
        AdminToken(token.into())
    }

    /// 32 random hex characters.
    pub fn generate() -> Self {
        use rand::Rng;
        let mut rng = rand::rng();
        let token: String = (0..32).map(|_| char::from_digit(rng.random_range(0..16), 16).unwrap()).collect();
        AdminToken(token.into())
    }

    /// Why this token is easy to guess, when it is: too short, or an example value.
    pub fn weakness(&self) -> Option<String> {
        let lowered = self.0.to_ascii_lowercase();
        if EXAMPLE_TOKENS.contains(&lowered.as_str()) {
            return Some("it is an example value from documentation".into());
        }
        let length = self.0.chars().count();
        (length < MIN_TOKEN_CHARS).then(|| format!("it has {length} characters, fewer than {MIN_TOKEN_CHARS}"))
    }

    pub fn expose(&self) -> &str {
        &self.0
    }

    /// Compares in time independent of where the first difference is, so the token
    /// cannot be guessed byte by byte from response times.
    pub fn matches(&self, candidate: &str) -> bool {
        let (a, b) = (self.0.as_bytes(), candidate.as_bytes());
        if a.len() != b.len() {
            return false;
        }
        let difference = a.iter().zip(b).fold(0u8, |acc, (x, y)| acc | (x ^ y));
        std::hint::black_box(difference) == 0
    }
}

/// Middleware for admin routes: `Authorization: Bearer <token>` or 401.
pub async fn require_admin(State(token): State<AdminToken>, request: Request, next: Next) -> Response {
    match refusal(&token, request.headers()) {
        Some(refused) => refused,
        None => next.run(request).await,
    }
}

/// The 401 for a request without the right token; None when it carries it.
pub fn refusal(token: &AdminToken, headers: &HeaderMap) -> Option<Response> {
    let presented = headers
        .get(header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.strip_prefix("Bearer "))
        .map(str::trim);
    let error = match presented {
        Some(candidate) if token.matches(candidate) => return None,
        Some(_) => "Admin token rejected. Use the token printed when breakroom started, or BREAKROOM_ADMIN_TOKEN",
        None => {
            "Admin token required: send Authorization: Bearer <token> (printed when breakroom started, or set with BREAKROOM_ADMIN_TOKEN)"
        }
    };
    let mut response = ApiError::new(StatusCode::UNAUTHORIZED, error).into_response();
    response.headers_mut().insert(header::WWW_AUTHENTICATE, HeaderValue::from_static("Bearer"));
    Some(response)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn short_and_example_tokens_are_weak_generated_ones_are_not() {
        assert!(AdminToken::generate().weakness().is_none());
        assert!(AdminToken::new("a-long-enough-secret-value").weakness().is_none());
        let short = AdminToken::new("hunter2").weakness().unwrap();
        assert!(short.contains("7 characters") && short.contains("16"), "{short}");
        let example = AdminToken::new("Change-Me-Before-The-Talk").weakness().unwrap();
        assert!(example.contains("example"), "{example}");
    }
}
