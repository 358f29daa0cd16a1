//! The one error type at the HTTP edge: `{"detail": …}` for a client, the cause
//! chain in the log for an operator.

use std::borrow::Cow;

use axum::Json;
use axum::http::{HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};

/// An error answered to a client as `{"detail": "…"}`. Client errors carry their
/// message; internal errors are logged with their cause chain and answered generically.
#[derive(Debug)]
pub struct ApiError {
    pub(super) status: StatusCode,
    pub(super) detail: Cow<'static, str>,
    pub(super) retry_after_secs: Option<u32>,
    pub(super) source: Option<anyhow::Error>,
    /// The body's key: `detail` everywhere but where a seed's API said `error`.
    pub(super) field: &'static str,
    /// The request's body was left unread: the client must not send another request
    /// on this connection.
    pub(super) close: bool,
}

impl ApiError {
    pub fn new(status: StatusCode, detail: impl Into<Cow<'static, str>>) -> Self {
        ApiError { status, detail: detail.into(), retry_after_secs: None, source: None, field: "detail", close: false }
    }

    pub fn bad_request(detail: impl Into<Cow<'static, str>>) -> Self {
        Self::new(StatusCode::BAD_REQUEST, detail)
    }

    pub fn unprocessable(detail: impl Into<Cow<'static, str>>) -> Self {
        Self::new(StatusCode::UNPROCESSABLE_ENTITY, detail)
    }

    pub fn not_found(detail: impl Into<Cow<'static, str>>) -> Self {
        Self::new(StatusCode::NOT_FOUND, detail)
    }

    pub fn unavailable(detail: impl Into<Cow<'static, str>>) -> Self {
        Self::new(StatusCode::SERVICE_UNAVAILABLE, detail)
    }

    pub fn internal(source: impl Into<anyhow::Error>) -> Self {
        ApiError {
            source: Some(source.into()),
            ..Self::new(StatusCode::INTERNAL_SERVER_ERROR, "Internal server error")
        }
    }

    pub fn with_retry_after(mut self, seconds: u32) -> Self {
        self.retry_after_secs = Some(seconds);
        self
    }

    /// The `Retry-After` it answers with, in seconds, when it has one.
    pub fn retry_after(&self) -> Option<u32> {
        self.retry_after_secs
    }

    /// Answers `{"error": "…"}` instead of `{"detail": "…"}`, as the shop's original API did.
    pub fn as_error_field(mut self) -> Self {
        self.field = "error";
        self
    }

    pub fn status(&self) -> StatusCode {
        self.status
    }

    pub fn detail(&self) -> &str {
        &self.detail
    }
}

impl From<sqlx::Error> for ApiError {
    /// A database that is unreachable or saturated is a 503 the client may retry;
    /// anything else is a bug of ours.
    fn from(error: sqlx::Error) -> Self {
        let detail = match &error {
            sqlx::Error::PoolTimedOut => "Database connection pool exhausted: no connection became free in time",
            sqlx::Error::Io(_) | sqlx::Error::PoolClosed | sqlx::Error::Tls(_) | sqlx::Error::Protocol(_) => {
                "Database unavailable"
            }
            // Contention, not a fault: a deadlock or serialization failure PostgreSQL broke
            // (40P01, 40001), a lock it gave up waiting for (55P03), SQLite's writer lock
            // held too long (SQLITE_BUSY 5 and its extended codes, SQLITE_LOCKED 6).
            sqlx::Error::Database(db)
                if matches!(
                    db.code().as_deref(),
                    Some("40P01" | "40001" | "55P03" | "5" | "6" | "261" | "517" | "262")
                ) =>
            {
                "The database is busy: another transaction held the rows this request needs for too long. Retry shortly"
            }
            // PostgreSQL refuses text it cannot store (a NUL byte, invalid encoding): that is
            // the client's input, not our failure.
            sqlx::Error::Database(db) if matches!(db.code().as_deref(), Some("22021" | "22P05")) => {
                return ApiError::bad_request("Text fields must not contain NUL characters");
            }
            _ => return ApiError::internal(error),
        };
        ApiError { source: Some(error.into()), ..ApiError::unavailable(detail).with_retry_after(1) }
    }
}

/// What a client is told when the database refused or failed a write, without the
/// internals: the kind of failure, never the SQL or the server's address.
pub fn database_failure(error: &sqlx::Error) -> String {
    match error {
        sqlx::Error::PoolTimedOut => "the database connection pool is exhausted".into(),
        sqlx::Error::Io(_) | sqlx::Error::PoolClosed | sqlx::Error::Tls(_) | sqlx::Error::Protocol(_) => {
            "the database is unavailable".into()
        }
        _ => "the database did not accept the write".into(),
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        if let Some(source) = &self.source
            && self.status.is_server_error()
        {
            tracing::error!(status = self.status.as_u16(), error = format!("{source:#}"), "request failed");
        }
        let mut response = (self.status, Json(serde_json::json!({ self.field: self.detail }))).into_response();
        if let Some(seconds) = self.retry_after_secs {
            response.headers_mut().insert(header::RETRY_AFTER, HeaderValue::from(seconds));
        }
        if self.close {
            response.headers_mut().insert(header::CONNECTION, HeaderValue::from_static("close"));
        }
        response
    }
}
