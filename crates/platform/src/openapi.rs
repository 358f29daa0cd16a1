//! The OpenAPI 3.1 documents of the labs, generated from the handlers' own
//! annotations (utoipa) so they cannot drift, served at `/openapi.json`. What every lab
//! shares lives here: the error body, the admin token's scheme, the platform's routes.

use std::sync::Arc;

use axum::routing::get;
use serde::{Deserialize, Serialize};
use utoipa::openapi::security::{Http, HttpAuthScheme, SecurityScheme};
use utoipa::{IntoParams, IntoResponses, Modify, OpenApi, ToSchema};

/// Every error: `{"detail": "…"}`, saying what went wrong and what to do.
#[derive(Serialize, ToSchema)]
pub struct ErrorBody {
    pub detail: String,
}

/// `Authorization: Bearer <admin token>` on every `/admin/*` action.
pub struct AdminAuth;

impl Modify for AdminAuth {
    fn modify(&self, openapi: &mut utoipa::openapi::OpenApi) {
        let components = openapi.components.get_or_insert_with(Default::default);
        components.add_security_scheme("admin_token", SecurityScheme::Http(Http::new(HttpAuthScheme::Bearer)));
    }
}

/// `{"fixed": true}` runs a planted bug's fixed implementation; `false` the buggy one.
#[derive(Deserialize, ToSchema)]
pub struct FlipBody {
    pub fixed: bool,
}

/// `?confirm=yes`, which every destructive admin action requires.
#[derive(ToSchema)]
#[schema(rename_all = "lowercase")]
#[allow(dead_code)]
pub enum Confirm {
    Yes,
}

/// `?confirm=yes`, as every `/admin/reset` takes it.
#[derive(IntoParams)]
#[into_params(parameter_in = Query)]
#[allow(dead_code)]
pub struct ConfirmQuery {
    /// yes: the reset is meant
    confirm: Confirm,
}

/// What every `/admin/reset` refuses with, before it changes anything.
#[derive(IntoResponses)]
#[allow(dead_code)]
pub enum ResetRefusals {
    #[response(status = 400, description = "Without ?confirm=yes nothing is reset")]
    Unconfirmed(ErrorBody),
    #[response(status = 401, description = "Admin token missing or wrong")]
    Unauthorized(ErrorBody),
}

/// The platform's own routes, in every lab.
#[derive(OpenApi)]
#[openapi(
    paths(metrics, crate::bugs::list, crate::bugs::flip),
    components(schemas(ErrorBody, FlipBody, BugsBody, Confirm, ResetBody, crate::bugs::BugState)),
    modifiers(&AdminAuth)
)]
pub struct PlatformApi;

/// `GET /metrics`: Prometheus text (documented here; served by the platform).
#[utoipa::path(
    get,
    path = "/metrics",
    tag = "platform",
    responses((status = 200, description = "Prometheus/OpenMetrics text", content_type = "application/openmetrics-text", body = String))
)]
#[allow(dead_code)]
fn metrics() {}

/// A lab's document with the platform's routes merged in.
pub fn document(mut lab: utoipa::openapi::OpenApi) -> utoipa::openapi::OpenApi {
    lab.merge(PlatformApi::openapi());
    lab
}

/// `GET /openapi.json` serving `doc`, serialized once.
pub fn route<S: Clone + Send + Sync + 'static>(doc: utoipa::openapi::OpenApi) -> axum::Router<S> {
    let body: Arc<str> = doc.to_json().expect("an OpenAPI document serializes").into();
    axum::Router::new().route(
        "/openapi.json",
        get(move || {
            let body = body.clone();
            std::future::ready(([(axum::http::header::CONTENT_TYPE, "application/json")], body.to_string()))
        }),
    )
}

/// `POST /admin/reset?confirm=yes`'s answer, in every lab that documents it.
#[derive(Serialize, ToSchema)]
pub struct ResetBody {
    pub status: String,
    pub message: String,
}

/// `GET /admin/bugs`'s answer.
#[derive(Serialize, ToSchema)]
pub struct BugsBody {
    pub bugs: Vec<crate::bugs::BugState>,
}
