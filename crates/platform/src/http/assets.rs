//! Pages' files, embedded in the binary so they never wait on a CDN.

use axum::http::header;
use axum::response::{IntoResponse, Response};
use rust_embed::RustEmbed;

use super::*;

#[derive(RustEmbed)]
#[folder = "../../web/static"]
struct StaticFiles;

#[derive(RustEmbed)]
#[folder = "../../web/fonts"]
struct Fonts;

/// `/static/{*path}`: files embedded in the binary, so pages never wait on a CDN.
pub async fn static_file(PathParam(path): PathParam<String>) -> Response {
    let file = match path.strip_prefix("fonts/") {
        Some(font) => Fonts::get(font),
        None => StaticFiles::get(&path),
    };
    let Some(file) = file else {
        return ApiError::not_found("Not Found").into_response();
    };
    let content_type = match path.rsplit('.').next() {
        Some("css") => "text/css; charset=utf-8",
        Some("js") => "text/javascript; charset=utf-8",
        Some("svg") => "image/svg+xml",
        Some("woff2") => "font/woff2",
        Some("png") => "image/png",
        Some("txt") => "text/plain; charset=utf-8",
        _ => "application/octet-stream",
    };
    ([(header::CONTENT_TYPE, content_type), (header::CACHE_CONTROL, "public, max-age=3600")], file.data).into_response()
}
