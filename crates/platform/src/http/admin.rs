//! Admin authentication: the token every `/admin/*` action requires.

use axum::extract::{Request, State};
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};

use super::*;

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
