//! The vote lab's OpenAPI document, `GET /openapi.json`, and the bodies its handlers
//! answer with: the schemas are derived on the types the handlers return.

use serde::Serialize;
use utoipa::{OpenApi, ToSchema};

use platform::openapi::{AdminAuth, ErrorBody, ResetBody};

use super::ballot::{Choice, Tally};
use super::presenter::QrTarget;

/// A counted vote.
#[derive(Serialize, ToSchema)]
pub struct VoteAccepted {
    #[schema(example = "ok")]
    pub status: &'static str,
    pub choice: Choice,
}

/// A status word.
#[derive(Serialize, ToSchema)]
pub struct StatusBody {
    pub status: &'static str,
}

/// `GET /ready` when a dependency is down.
#[derive(Serialize, ToSchema)]
pub struct NotReadyBody {
    pub status: &'static str,
    pub detail: String,
    pub down: Vec<&'static str>,
}

/// `GET /version`.
#[derive(Serialize, ToSchema)]
pub struct VersionBody {
    pub version: String,
    #[schema(nullable)]
    pub conference: Option<String>,
    pub lab: &'static str,
    pub referral: &'static str,
    /// `buggy` or `fixed`: the partner lookup of vote/connection-leak.
    pub connection_leak: &'static str,
    pub backend: &'static str,
    pub live_counts: &'static str,
}

/// `GET /admin/state` and `GET /presenter/state`: the lab's state for the speaker and
/// the projector's status strip.
#[derive(Serialize, ToSchema)]
pub struct StateBody {
    pub referral: &'static str,
    pub referral_cache: CacheFill,
    pub errors_last_minute: u64,
    /// The latest 5xx answers, newest first (at most 20).
    pub recent_errors: Vec<platform::telemetry::ErrorAnswer>,
    pub viewers: usize,
    /// The alerts firing now on the console (`/console`), by name.
    pub alerts_firing: Vec<String>,
}

/// How full the referral cache is.
#[derive(Serialize, ToSchema)]
pub struct CacheFill {
    pub entries: usize,
    pub capacity: usize,
}

#[derive(OpenApi)]
#[openapi(
    info(
        title = "breakroom — vote lab",
        description = "\"Honey, the Audience Broke My App\": a conference poll whose referral cache never evicts."
    ),
    paths(
        super::vote,
        super::form::vote,
        super::votes,
        super::stream,
        super::health,
        super::ready,
        super::version,
        super::reset,
        super::presenter::qr,
        super::presenter::state,
        super::presenter::public_state,
        super::pages::vote,
        super::pages::results,
        super::pages::admin,
        super::presenter::page,
    ),
    components(schemas(
        ErrorBody,
        Choice,
        QrTarget,
        super::VoteRequest,
        super::form::VoteForm,
        VoteAccepted,
        Tally,
        StatusBody,
        NotReadyBody,
        VersionBody,
        StateBody,
        platform::telemetry::ErrorAnswer,
        CacheFill,
        ResetBody
    )),
    modifiers(&AdminAuth)
)]
pub struct VoteApi;

/// The whole document: the lab's routes and the platform's.
pub fn document() -> utoipa::openapi::OpenApi {
    platform::openapi::document(VoteApi::openapi())
}
