//! The `vote` lab — "Honey, the Audience Broke My App" (seeds 000 and 001).
//!
//! A conference poll with two planted bugs. Votes that carry a partner referral code
//! pass through a referral "cache" that never evicts (`referral.rs`, `vote/referral`):
//! after ten of them every referral vote answers 503 while `/health` stays green. And
//! the partner lookup behind it leaks a database connection on every unknown code
//! (`partners.rs`, `vote/connection-leak`): once the pool is drained, every vote does.

mod ballot;
mod form;
mod ingest;
pub mod lab;
mod live;
pub(crate) mod openapi;
mod pages;
mod partners;
mod presenter;
mod referral;
pub mod settings;
pub mod stage;
mod stage_leak;
mod store;

use std::sync::Arc;

use axum::extract::State;
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::{Json, Router};
use prometheus_client::registry::Registry;
use serde::Deserialize;

use ballot::Choice;
use live::LiveCounts;
use platform::Platform;
use platform::bugs::BugInfo;
use platform::cache::Subscription;
use platform::feed::Feed;
use platform::http::{ApiError, Confirmed, JsonBody};
use platform::openapi::ResetBody;
use platform::stage::Scenario;
use referral::{ReferralError, ReferralValidator};
use settings::VoteArgs;
use store::VoteStore;

pub use lab::VoteLab;
pub use presenter::{qr_text, referral_url, vote_url};
pub use store::KNOWN_PARTNER_CODE;

pub const BUGS: &[BugInfo] = &[
    BugInfo {
        name: "referral",
        summary: "an unbounded referral cache: every referral vote after the 10th answers 503",
        location: "crates/labs/vote/src/referral.rs (ReferralValidator::validate_with_cache)",
    },
    BugInfo {
        name: "connection-leak",
        summary: "an unknown referral code keeps its database connection: once the pool is drained every vote answers 503",
        location: "crates/labs/vote/src/partners.rs (PartnerLookup::find_checked_out_by_hand)",
    },
];

pub const SCENARIO: Scenario = Scenario {
    name: "vote/referral",
    lab: "vote",
    bug: "referral",
    title: "The audience broke my app",
    story: "The audience votes through a partner QR code. Each referral validation appends to a \
            process-wide list that is never cleared; after ten entries the list reports itself \
            exhausted and every referral vote fails with 503, while votes without a referral and \
            the health check stay green.",
    trigger: "15 POST /vote with {\"choice\":\"ai\",\"referral\":\"conf-partner-2026\"}",
    symptom: "votes 1-10 answer 200, 11+ answer 503 'referral cache exhausted'; referral_cache_exhausted_total rises; /health stays 200",
    fix: "--fixed referral: validate the code with one indexed query, no cache",
    check: "15 referral votes through POST /vote must all answer 200",
    reset: "votes, live counts, the referral cache of every replica and the bug switch, without a restart",
    rehearsal: "about 1 s",
    hints: [
        "Votes without a referral still succeed and /health stays green, so the fault is on the referral path only. Compare the referral_cache_* series on /metrics before and after the 10th referral vote, and read crates/labs/vote/src/referral.rs.",
        "The validator keeps every code it checks in a process-wide list that nothing ever removes from. Once the list holds its capacity it reports itself exhausted instead of validating, and a restart only hides that until the list fills up again.",
        "Keep no state per request: check the code against the partners table each time (one indexed query), or use a cache that is bounded and evicts. Then `breakroom check vote` must see all 15 referral votes succeed.",
    ],
};

pub const LEAK_SCENARIO: Scenario = Scenario {
    name: "vote/connection-leak",
    lab: "vote",
    bug: "connection-leak",
    title: "The typo that drained the pool",
    story: "A flyer still carries last year's partner code, and a bot tries codes at random. The \
            partner lookup checks a database connection out of the pool by hand and checks it back \
            in at the end, but its early return for an unknown code skips the check-in: each bad \
            code keeps one connection for good. Once the pool's connections are all held, every \
            vote waits the pool's 5 s and answers 503, with or without a referral, while the \
            health check stays green.",
    trigger: "as many POST /vote with last year's code conf-partner-2025 as the pool has connections (db_pool_size), then one vote without a referral",
    symptom: "each bad code answers 400 and db_pool_checked_out rises by one and never falls; then every vote answers 503 'the database connection pool is exhausted' after 5 s and db_pool_timeout_total rises; /health stays 200",
    fix: "--fixed connection-leak: the lookup's connection is scoped, so it goes back to the pool on every path",
    check: "as many unknown codes as the pool has connections (each answering 400), then 3 votes must answer 200 and leave connections free",
    reset: "votes, live counts, the referral cache, every connection the leak holds and the bug switches, without a restart",
    rehearsal: "about 11 s (two waits of the pool's 5 s)",
    hints: [
        "Bad referral codes answer 400 as they should, yet afterwards every vote fails, even without a referral, and /health stays green. Watch db_pool_checked_out on /metrics after each bad code, and read the lookup in crates/labs/vote/src/partners.rs.",
        "The lookup takes a connection from the pool by hand and gives it back at its end, but one path returns before it does: an unknown code keeps its connection for good. After as many bad codes as the pool holds, no connection is left for anyone.",
        "Make returning the connection impossible to forget: let it go back when its scope ends, on every path (error and not-found included), instead of by a call at the end. Then `breakroom check vote/connection-leak` must see the votes after the bad codes succeed.",
    ],
};

#[derive(Clone, Debug, Hash, PartialEq, Eq, prometheus_client::encoding::EncodeLabelSet)]
struct ChoiceLabel {
    choice: &'static str,
}

struct VoteApp {
    settings: VoteArgs,
    platform: Platform,
    limiter: platform::limit::RateLimiter,
    votes_total: prometheus_client::metrics::family::Family<ChoiceLabel, prometheus_client::metrics::counter::Counter>,
    referral: ReferralValidator,
    partners: partners::PartnerLookup,
    live: Arc<LiveCounts>,
    feed: Feed,
    ingest: ingest::Ingest,
}

type Lab = State<Arc<VoteApp>>;

/// Seeds the referral partners (once) and creates the tables' initial state.
pub async fn seed(db: &platform::db::Db, partners: u32) -> anyhow::Result<u64> {
    Ok(VoteStore::new(db.clone()).seed_partners(partners).await?)
}

pub async fn build(platform: &Platform, registry: &mut Registry, settings: &VoteArgs) -> anyhow::Result<Router> {
    let store = VoteStore::new(platform.db.clone());
    store.seed_partners(settings.seed_partners).await?;
    let referral = ReferralValidator::new(platform.bugs.switch("referral"), settings.referral_cache_capacity, registry);
    let partners =
        partners::PartnerLookup::new(platform.bugs.switch("connection-leak"), platform.db.clone(), store.clone());
    let live = Arc::new(LiveCounts::start(&store, platform.redis.as_ref()).await?);
    let votes_total = prometheus_client::metrics::family::Family::default();
    registry.register("votes", "Votes recorded by this process, by choice", votes_total.clone());
    let initial = serde_json::to_string(&live.snapshot().await?)?;

    let lab = Arc::new_cyclic(|weak: &std::sync::Weak<VoteApp>| {
        let weak = weak.clone();
        let feed = Feed::spawn("votes", initial, platform.config.feed_refresh, platform.shutdown.clone(), move || {
            let weak = weak.clone();
            async move {
                let lab = weak.upgrade()?;
                let tally = lab.live.refresh().await.ok()?;
                serde_json::to_string(&tally).ok()
            }
        });
        let vote = settings;
        let limiter = platform::limit::RateLimiter::new(vote.vote_rate_limit, vote.vote_rate_limit * 2.0);
        let ingest = ingest::Ingest::start(store, live.clone(), feed.clone());
        VoteApp {
            platform: platform.clone(),
            settings: settings.clone(),
            limiter,
            votes_total,
            referral,
            partners,
            live,
            feed,
            ingest,
        }
    });
    follow_other_replicas(&lab);

    let admin = platform
        .admin_only(Router::new().route("/admin/reset", post(reset)).route("/admin/state", get(presenter::state)));
    Ok(Router::new()
        .route("/", get(pages::vote))
        .route("/results", get(pages::results))
        .route("/admin", get(pages::admin))
        .route("/presenter", get(presenter::page))
        .route("/presenter/state", get(presenter::public_state))
        .route("/qr.svg", get(presenter::qr))
        .route("/vote", post(vote))
        .route("/vote/form", post(form::vote))
        .route("/votes", get(votes))
        .route("/stream", get(stream))
        .route("/health", get(health))
        .route("/ready", get(ready))
        .route("/version", get(version))
        .merge(admin)
        .merge(platform::openapi::route(openapi::document()))
        .with_state(lab))
}

/// With Redis, a vote or a reset on any replica reaches this one's viewers, and a
/// reset clears this replica's referral cache too.
fn follow_other_replicas(lab: &Arc<VoteApp>) {
    let (Some(redis), Some(channel)) = (lab.platform.redis.as_ref(), lab.live.channel()) else {
        return;
    };
    let mut events = redis.subscribe(channel.to_owned(), lab.platform.shutdown.clone());
    let weak = Arc::downgrade(lab);
    tokio::spawn(async move {
        let mut first = true;
        while let Some(event) = events.recv().await {
            let Some(lab) = weak.upgrade() else { return };
            if matches!(event, Subscription::Subscribed) && !std::mem::take(&mut first) {
                // Reconnected: Redis may have restarted with an old copy of the counts.
                lab.live.mark_stale();
            }
            if let Subscription::Message(message) = &event
                && lab.live.is_reset_by_another(message)
            {
                lab.live.forget_mirror();
                lab.referral.clear();
                lab.partners.give_back();
            }
            // After a (re)subscription too: messages sent meanwhile were lost, so
            // viewers get a fresh full snapshot.
            lab.feed.changed();
        }
    });
}

/// `POST /vote`'s body.
#[derive(Deserialize, utoipa::ToSchema)]
#[schema(as = VoteBody)]
struct VoteRequest {
    /// Parsed by the handler, so a wrong choice is a 400 that lists the right ones.
    #[schema(value_type = Choice)]
    choice: String,
    /// A partner's referral code (the audience's QR code carries conf-partner-2026);
    /// empty or null for none.
    #[serde(default)]
    #[schema(nullable, max_length = 64, example = "conf-partner-2026")]
    referral: Option<String>,
}

/// `POST /vote`
#[utoipa::path(
    post,
    path = "/vote",
    tag = "vote",
    request_body = VoteRequest,
    responses(
        (status = 200, description = "The vote is stored and counted", body = openapi::VoteAccepted),
        (status = 400, description = "Not one of the five choices, or not a partner's referral code", body = platform::openapi::ErrorBody),
        (status = 413, description = "Body over 64 KiB", body = platform::openapi::ErrorBody),
        (status = 422, description = "Not a JSON object with a choice", body = platform::openapi::ErrorBody),
        (status = 429, description = "Too many votes from this address; see Retry-After", body = platform::openapi::ErrorBody),
        (status = 503, description = "Referral cache exhausted (vote/referral), the database connection pool exhausted (vote/connection-leak), or the database unavailable", body = platform::openapi::ErrorBody),
    )
)]
async fn vote(
    State(lab): Lab,
    axum::extract::ConnectInfo(peer): axum::extract::ConnectInfo<std::net::SocketAddr>,
    headers: axum::http::HeaderMap,
    JsonBody(request): JsonBody<VoteRequest>,
) -> Result<Json<openapi::VoteAccepted>, ApiError> {
    let choice = cast(&lab, peer, &headers, &request.choice, request.referral).await?;
    Ok(Json(openapi::VoteAccepted { status: "ok", choice }))
}

/// A vote as `POST /vote` and the page's form take it: the rate limit, the choice, the
/// referral through its cache, then the ballot box.
async fn cast(
    lab: &VoteApp,
    peer: std::net::SocketAddr,
    headers: &axum::http::HeaderMap,
    choice: &str,
    referral: Option<String>,
) -> Result<Choice, ApiError> {
    let client = platform::limit::client_ip(peer, headers, lab.platform.config.trust_proxy);
    if let Err(wait) = lab.limiter.check(client) {
        return Err(ApiError::new(
            StatusCode::TOO_MANY_REQUESTS,
            "Too many votes from this address: slow down and try again",
        )
        .with_retry_after(wait.as_secs().max(1) as u32));
    }
    let choice = Choice::parse(choice)
        .ok_or_else(|| ApiError::bad_request(format!("Invalid choice. Must be one of: {}", Choice::keys_listed())))?;
    let referral = referral_code(referral)?;
    if let Some(code) = &referral {
        let partner = lab.referral.validate(&lab.partners, code).await.map_err(|e| referral_error(lab, e))?;
        tracing::debug!(partner_id = partner.id, partner = %partner.name, "referral accepted");
    }
    lab.ingest.submit(choice, referral).await?;
    lab.votes_total.get_or_create(&ChoiceLabel { choice: choice.key() }).inc();
    Ok(choice)
}

/// Longest referral code accepted; partner codes are 20 characters.
const MAX_REFERRAL_CHARS: usize = 64;

/// An empty referral is the vote page's "no referral", as in the original. A code no
/// partner could have (too long, control characters) is refused here, before it
/// reaches the cache or the database.
fn referral_code(raw: Option<String>) -> Result<Option<String>, ApiError> {
    match raw {
        None => Ok(None),
        Some(code) if code.is_empty() => Ok(None),
        Some(code) if code.chars().count() > MAX_REFERRAL_CHARS || code.chars().any(char::is_control) => {
            Err(ApiError::bad_request("Invalid referral code"))
        }
        Some(code) => Ok(Some(code)),
    }
}

fn referral_error(lab: &VoteApp, error: ReferralError) -> ApiError {
    match error {
        ReferralError::Invalid => {
            tracing::info!("unknown_referral_code");
            ApiError::bad_request("Invalid referral code")
        }
        ReferralError::CacheExhausted { entries } => ApiError::unavailable(format!(
            "Service degraded: referral cache exhausted ({entries} entries). Referral validation keeps \
             every entry and never evicts one (capacity {}); votes without a referral still work.",
            lab.referral.capacity()
        )),
        ReferralError::Database(error) => error.into(),
    }
}

/// `GET /votes`
#[utoipa::path(
    get,
    path = "/votes",
    tag = "vote",
    responses(
        (status = 200, description = "Every choice's votes", body = ballot::Tally),
        (status = 503, description = "The live counts cannot be read", body = platform::openapi::ErrorBody),
    )
)]
async fn votes(State(lab): Lab) -> Result<Json<ballot::Tally>, ApiError> {
    Ok(Json(lab.live.snapshot().await?))
}

/// `GET /stream`: `event: votes` with the `/votes` body, at once and on every change.
#[utoipa::path(
    get,
    path = "/stream",
    tag = "vote",
    responses(
        (status = 200, description = "Server-Sent Events: `event: votes`, the /votes body", content_type = "text/event-stream", body = String),
        (status = 503, description = "Too many live viewers; see Retry-After", body = platform::openapi::ErrorBody),
    )
)]
async fn stream(State(lab): Lab) -> Response {
    let cap = lab.settings.max_viewers;
    if lab.feed.viewers() >= cap {
        return ApiError::unavailable(format!("Too many live viewers ({cap}): try again in a moment"))
            .with_retry_after(5)
            .into_response();
    }
    lab.feed.stream()
}

/// `GET /health`: the process is up. Deliberately blind to the referral cache, like
/// the original's — the pod looks healthy while the service is degraded.
#[utoipa::path(get, path = "/health", tag = "probes", responses((status = 200, description = "Always healthy", body = openapi::StatusBody)))]
async fn health() -> Json<openapi::StatusBody> {
    Json(openapi::StatusBody { status: "healthy" })
}

/// `GET /ready`: 503 naming each dependency that does not answer.
#[utoipa::path(
    get,
    path = "/ready",
    tag = "probes",
    responses(
        (status = 200, description = "Every dependency answers", body = openapi::StatusBody),
        (status = 503, description = "A dependency does not answer", body = openapi::NotReadyBody),
    )
)]
async fn ready(State(lab): Lab) -> Response {
    let down: Vec<&str> = lab.platform.dependencies().await.into_iter().filter(|d| !d.up).map(|d| d.name).collect();
    if down.is_empty() {
        return Json(openapi::StatusBody { status: "ready" }).into_response();
    }
    let detail = format!("Dependency unavailable: {}", down.join(", "));
    (StatusCode::SERVICE_UNAVAILABLE, Json(openapi::NotReadyBody { status: "not ready", detail, down })).into_response()
}

/// `GET /version`
#[utoipa::path(get, path = "/version", tag = "probes", responses((status = 200, description = "Version and configuration", body = openapi::VersionBody)))]
async fn version(State(lab): Lab) -> Json<openapi::VersionBody> {
    let config = &lab.platform.config;
    Json(openapi::VersionBody {
        version: config.app_version.clone(),
        conference: config.conference.clone(),
        lab: "vote",
        referral: lab.referral.mode(),
        connection_leak: lab.partners.mode(),
        backend: lab.platform.db.backend_name(),
        live_counts: if lab.platform.redis.is_some() { "redis" } else { "in-process" },
    })
}

/// `POST /admin/reset?confirm=yes`: votes, live counts, referral cache, the leaked
/// connections and the bug switches back to their pre-talk state, without a restart.
#[utoipa::path(
    post,
    path = "/admin/reset",
    tag = "admin",
    security(("admin_token" = [])),
    params(platform::http::Confirmed),
    responses(
        (status = 200, description = "Session reset", body = platform::openapi::ResetBody),
        platform::openapi::ResetRefusals,
        (status = 503, description = "The reset could not complete; try again", body = platform::openapi::ErrorBody),
    )
)]
async fn reset(State(lab): Lab, _: Confirmed) -> Result<Json<ResetBody>, ApiError> {
    // The held connections first: clearing the votes needs one of them.
    let returned = lab.partners.give_back();
    let deleted = lab.live.reset().await.map_err(|e| {
        ApiError::unavailable(format!("The session could not be reset completely: {e:#}. Try again."))
            .with_retry_after(1)
    })?;
    lab.referral.clear();
    lab.platform.bugs.restore_everywhere().await;
    lab.feed.changed();
    tracing::warn!(votes_deleted = deleted, connections_returned = returned, "session_reset");
    Ok(ResetBody::success("Session reset complete. All votes cleared."))
}
