//! Extractors whose every rejection is a JSON 4xx: bodies, queries, paths, and the
//! `?confirm=yes` of destructive admin actions.

use axum::Json;
use axum::extract::rejection::JsonRejection;
use axum::extract::{FromRequest, Path, Request};
use axum::http::{HeaderMap, StatusCode, header};
use serde::de::DeserializeOwned;

use super::*;

/// `Json<T>` for a JSON object body, whose every rejection is a JSON 4xx: 422 for a
/// body that is not the expected shape (not JSON, not an object, missing fields, wrong
/// types), 413 for an oversized one.
pub struct JsonBody<T>(pub T);

impl<S, T> FromRequest<S> for JsonBody<T>
where
    T: DeserializeOwned,
    S: Send + Sync,
{
    type Rejection = ApiError;

    async fn from_request(req: Request, _: &S) -> Result<Self, Self::Rejection> {
        if !is_json(req.headers()) {
            return Err(ApiError::unprocessable("Expected a JSON body with the header Content-Type: application/json"));
        }
        let bytes = body_bytes(req).await?;
        // serde would accept `["ai"]` for a struct; every body here is an object.
        if bytes.iter().find(|b| !b.is_ascii_whitespace()) != Some(&b'{') {
            return Err(ApiError::unprocessable("Invalid request body: expected a JSON object"));
        }
        match Json::<T>::from_bytes(&bytes) {
            Ok(Json(value)) => Ok(JsonBody(value)),
            Err(rejection) => Err(json_rejection(rejection)),
        }
    }
}

/// A form-encoded body (`application/x-www-form-urlencoded`, what a page's `<form>`
/// posts), read under the same rules as [`JsonBody`]: 413 past the limit, 408 when it
/// stalls, 415 when it is not a form, 422 when it cannot be read.
pub struct FormBody<T>(pub T);

impl<S, T> FromRequest<S> for FormBody<T>
where
    T: DeserializeOwned,
    S: Send + Sync,
{
    type Rejection = ApiError;

    async fn from_request(req: Request, _: &S) -> Result<Self, Self::Rejection> {
        let essence = req
            .headers()
            .get(header::CONTENT_TYPE)
            .and_then(|v| v.to_str().ok())
            .map(|v| v.split(';').next().unwrap_or("").trim().to_ascii_lowercase());
        if essence.as_deref() != Some("application/x-www-form-urlencoded") {
            return Err(ApiError::new(
                StatusCode::UNSUPPORTED_MEDIA_TYPE,
                "Expected a form with the header Content-Type: application/x-www-form-urlencoded",
            ));
        }
        let bytes = body_bytes(req).await?;
        serde_urlencoded::from_bytes(&bytes)
            .map(FormBody)
            .map_err(|e| ApiError::unprocessable(format!("Invalid form: {e}")))
    }
}

/// How long a request's body may take to arrive. Every lab's bodies are a few hundred
/// bytes: a body still incomplete after this is a stalled client, answered 408 (its
/// fault, not a 5xx of the server's that would feed the error-rate alert).
pub const BODY_TIMEOUT: std::time::Duration = std::time::Duration::from_secs(10);

/// The whole body, refused with 413 as soon as it is known to exceed the limit (by
/// its Content-Length, or while it arrives), and with 408 when it stalls.
async fn body_bytes(request: Request) -> Result<Vec<u8>, ApiError> {
    use futures_util::StreamExt;
    let declared = request.headers().get(header::CONTENT_LENGTH).and_then(|v| v.to_str().ok()?.parse::<u64>().ok());
    if declared.is_some_and(|length| length > BODY_LIMIT_BYTES as u64) {
        return Err(too_large());
    }
    let mut bytes = Vec::with_capacity(declared.unwrap_or(0) as usize);
    let mut chunks = request.into_body().into_data_stream();
    let deadline = tokio::time::Instant::now() + BODY_TIMEOUT;
    while let Some(chunk) = tokio::time::timeout_at(deadline, chunks.next()).await.map_err(|_| stalled())? {
        let chunk = chunk.map_err(|e| ApiError::bad_request(format!("The request body could not be read: {e}")))?;
        if bytes.len() + chunk.len() > BODY_LIMIT_BYTES {
            return Err(too_large());
        }
        bytes.extend_from_slice(&chunk);
    }
    Ok(bytes)
}

fn is_json(headers: &HeaderMap) -> bool {
    let Some(content_type) = headers.get(header::CONTENT_TYPE).and_then(|v| v.to_str().ok()) else {
        return false;
    };
    let essence = content_type.split(';').next().unwrap_or("").trim().to_ascii_lowercase();
    essence == "application/json" || (essence.starts_with("application/") && essence.ends_with("+json"))
}

/// 413; the rest of the body is never read, so the connection closes after it.
fn too_large() -> ApiError {
    ApiError {
        close: true,
        ..ApiError::new(
            StatusCode::PAYLOAD_TOO_LARGE,
            format!("Request body too large: the limit is {} KiB", BODY_LIMIT_BYTES / 1024),
        )
    }
}

/// 408; the connection closes after it (the rest of the body may still come).
fn stalled() -> ApiError {
    ApiError {
        close: true,
        ..ApiError::new(
            StatusCode::REQUEST_TIMEOUT,
            format!("The request body did not arrive within {} s", BODY_TIMEOUT.as_secs()),
        )
    }
}

fn json_rejection(rejection: JsonRejection) -> ApiError {
    match rejection {
        JsonRejection::JsonDataError(e) => ApiError::unprocessable(format!("Invalid request body: {}", e.body_text())),
        JsonRejection::JsonSyntaxError(e) => ApiError::unprocessable(format!("Malformed JSON: {}", e.body_text())),
        JsonRejection::MissingJsonContentType(_) => {
            ApiError::unprocessable("Expected a JSON body with the header Content-Type: application/json")
        }
        other if other.status() == StatusCode::PAYLOAD_TOO_LARGE => too_large(),
        other => ApiError::new(other.status(), other.body_text()),
    }
}

/// `Query<T>` whose rejection is a JSON 422 instead of axum's plain-text 400.
pub struct QueryParams<T>(pub T);

impl<S, T> axum::extract::FromRequestParts<S> for QueryParams<T>
where
    T: DeserializeOwned,
    S: Send + Sync,
{
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut axum::http::request::Parts, state: &S) -> Result<Self, Self::Rejection> {
        match axum::extract::Query::<T>::from_request_parts(parts, state).await {
            Ok(axum::extract::Query(value)) => Ok(QueryParams(value)),
            Err(rejection) => Err(ApiError::unprocessable(format!("Invalid query string: {}", rejection.body_text()))),
        }
    }
}

/// `Path<T>` whose rejection is a JSON 4xx instead of axum's plain-text one.
pub struct PathParam<T>(pub T);

impl<S, T> axum::extract::FromRequestParts<S> for PathParam<T>
where
    T: DeserializeOwned + Send,
    S: Send + Sync,
{
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut axum::http::request::Parts, state: &S) -> Result<Self, Self::Rejection> {
        match Path::<T>::from_request_parts(parts, state).await {
            Ok(Path(value)) => Ok(PathParam(value)),
            Err(rejection) => Err(ApiError::unprocessable(format!("Invalid path: {}", rejection.body_text()))),
        }
    }
}

/// `?confirm=yes`, required by destructive admin actions so a stray click or a
/// replayed request without it changes nothing. Also the parameter's contract.
#[derive(utoipa::IntoParams)]
#[into_params(parameter_in = Query)]
pub struct Confirmed {
    /// yes: the reset is meant
    pub confirm: crate::openapi::Confirm,
}

impl<S: Send + Sync> axum::extract::FromRequestParts<S> for Confirmed {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut axum::http::request::Parts, _: &S) -> Result<Self, Self::Rejection> {
        let confirmed = parts.uri.query().unwrap_or("").split('&').any(|pair| pair == "confirm=yes");
        if confirmed {
            Ok(Confirmed { confirm: crate::openapi::Confirm::Yes })
        } else {
            Err(ApiError::bad_request("Add ?confirm=yes to reset the session"))
        }
    }
}
