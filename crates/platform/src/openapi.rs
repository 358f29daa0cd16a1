//! The OpenAPI 3.1 documents of the labs, generated from the handlers' own
//! annotations (utoipa) so they cannot drift, served at `/openapi.json`. What every lab
//! shares lives here: the error body, the admin token's scheme, the platform's routes.

use std::sync::Arc;

use axum::routing::get;
use std::collections::BTreeMap;

use serde::Serialize;
use utoipa::openapi::security::{Http, HttpAuthScheme, SecurityScheme};
use utoipa::openapi::{Content, Ref, RefOr, Response, ResponseBuilder};
use utoipa::{IntoResponses, Modify, OpenApi, ToSchema};

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

/// `?confirm=yes`'s one value.
#[derive(ToSchema)]
#[schema(rename_all = "lowercase")]
pub enum Confirm {
    Yes,
}

/// What every `/admin/reset` refuses with, before it changes anything: without
/// `?confirm=yes` ([`Confirmed`](crate::http::Confirmed)) and without the admin token
/// ([`require_admin`](crate::http::require_admin)).
pub struct ResetRefusals;

impl IntoResponses for ResetRefusals {
    fn responses() -> BTreeMap<String, RefOr<Response>> {
        let refusal = |description: &str| {
            let content = Content::new(Some(Ref::from_schema_name("ErrorBody")));
            RefOr::T(ResponseBuilder::new().description(description).content("application/json", content).build())
        };
        BTreeMap::from([
            ("400".to_string(), refusal("Without ?confirm=yes nothing is reset")),
            ("401".to_string(), refusal("Admin token missing or wrong")),
        ])
    }
}

/// The platform's own routes, in every lab.
#[derive(OpenApi)]
#[openapi(
    paths(
        crate::metrics,
        crate::bugs::list,
        crate::bugs::flip,
        crate::console::page::alerts,
        crate::console::page::graphs,
        crate::console::page::trace_list,
        crate::console::page::trace,
        crate::console::page::log_list,
    ),
    components(schemas(ErrorBody, crate::bugs::FlipRequest, BugsBody, Confirm, ResetBody, crate::bugs::BugState)),
    modifiers(&AdminAuth)
)]
pub struct PlatformApi;

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

/// `POST /admin/reset?confirm=yes`'s answer.
#[derive(Serialize, ToSchema)]
pub struct ResetBody {
    pub status: &'static str,
    pub message: &'static str,
}

impl ResetBody {
    /// `{"status": "success", "message": …}`.
    pub fn success(message: &'static str) -> axum::Json<ResetBody> {
        axum::Json(ResetBody { status: "success", message })
    }
}

/// `GET /admin/bugs`'s answer.
#[derive(Serialize, ToSchema)]
pub struct BugsBody {
    pub bugs: Vec<crate::bugs::BugState>,
}
