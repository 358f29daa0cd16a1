//! The vote lab's OpenAPI document: `GET /openapi.json`.

use serde::Serialize;
use utoipa::{OpenApi, ToSchema};

use platform::openapi::{AdminAuth, ErrorBody, ResetBody};

/// The five answers of the poll.
#[derive(ToSchema)]
#[schema(rename_all = "lowercase")]
#[allow(dead_code)]
pub enum ChoiceKey {
    Print,
    Stare,
    Ai,
    Revert,
    Restart,
}

/// Which of the two audience links a QR code carries.
#[derive(ToSchema)]
#[schema(rename_all = "lowercase")]
#[allow(dead_code)]
pub enum QrTarget {
    Vote,
    Referral,
}

/// `POST /vote`'s body.
#[derive(ToSchema)]
#[allow(dead_code)]
pub struct VoteBody {
    #[schema(value_type = ChoiceKey)]
    choice: String,
    /// A partner's referral code (the audience's QR code carries conf-partner-2026);
    /// empty or null for none.
    #[schema(nullable, max_length = 64, example = "conf-partner-2026")]
    referral: Option<String>,
}

/// A counted vote.
#[derive(Serialize, ToSchema)]
pub struct VoteAccepted {
    #[schema(example = "ok")]
    status: String,
    #[schema(value_type = ChoiceKey)]
    choice: String,
}

/// One choice's votes.
#[derive(Serialize, ToSchema)]
pub struct CountBody {
    count: i64,
    label: String,
}

/// `GET /votes`: every choice, always, in the ballot's order.
#[derive(Serialize, ToSchema)]
pub struct TallyBody {
    print: CountBody,
    stare: CountBody,
    ai: CountBody,
    revert: CountBody,
    restart: CountBody,
}

/// A status word.
#[derive(Serialize, ToSchema)]
pub struct StatusBody {
    status: String,
}

/// `GET /ready` when a dependency is down.
#[derive(Serialize, ToSchema)]
pub struct NotReadyBody {
    status: String,
    detail: String,
    down: Vec<String>,
}

/// `GET /version`.
#[derive(Serialize, ToSchema)]
pub struct VersionBody {
    version: String,
    #[schema(nullable)]
    conference: Option<String>,
    lab: String,
    referral: String,
    backend: String,
    live_counts: String,
}

#[derive(OpenApi)]
#[openapi(
    info(
        title = "breakroom — vote lab",
        description = "\"Honey, the Audience Broke My App\": a conference poll whose referral cache never evicts."
    ),
    paths(
        super::vote,
        super::votes,
        super::stream,
        super::health,
        super::ready,
        super::version,
        super::reset,
        super::presenter::qr,
        super::presenter::state,
        super::pages::vote,
        super::pages::results,
        super::pages::admin,
        super::presenter::page,
    ),
    components(schemas(
        ErrorBody, ChoiceKey, QrTarget, VoteBody, VoteAccepted, CountBody, TallyBody, StatusBody, NotReadyBody, VersionBody, ResetBody
    )),
    modifiers(&AdminAuth)
)]
pub struct VoteApi;

/// The whole document: the lab's routes and the platform's.
pub fn document() -> utoipa::openapi::OpenApi {
    platform::openapi::document(VoteApi::openapi())
}
