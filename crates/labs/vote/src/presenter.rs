//! The presenter's view: the two audience links as QR codes made here (no website
//! needed, no CDN), the live results, and the lab's state at a glance.

use std::sync::Arc;

use askama::Template;
use askama_web::WebTemplate;
use axum::Json;
use axum::extract::State;
use axum::http::{HeaderMap, header};
use axum::response::{IntoResponse, Response};
use serde::Deserialize;

use super::VoteApp;
use super::pages::{Frame, PageQuery};
use super::store::KNOWN_PARTNER_CODE;
use platform::http::{ApiError, QueryParams};

/// Where the audience reaches the lab: `--public-url`, else this request's Host (and
/// `X-Forwarded-Proto`); the bool says whether it was configured.
pub(crate) fn public_base(lab: &VoteApp, headers: &HeaderMap) -> (String, bool) {
    if let Some(url) = &lab.platform.config.public_url {
        return (url.clone(), true);
    }
    let host = headers
        .get(header::HOST)
        .and_then(|h| h.to_str().ok())
        .filter(|h| h.chars().all(|c| c.is_ascii_alphanumeric() || ".-:[]".contains(c)))
        .unwrap_or("localhost:8000");
    let scheme = match headers.get("x-forwarded-proto").and_then(|h| h.to_str().ok()) {
        Some("https") => "https",
        _ => "http",
    };
    (format!("{scheme}://{host}"), false)
}

pub fn vote_url(base: &str) -> String {
    format!("{base}/")
}

pub fn referral_url(base: &str) -> String {
    format!("{base}/?referral={KNOWN_PARTNER_CODE}")
}

pub use platform::qr::{svg as qr_svg, text as qr_text};

#[derive(Deserialize)]
pub struct QrQuery {
    target: Option<String>,
    /// A conference the link carries on (`?conf=` of the page showing the code).
    conf: Option<String>,
}

/// Which link a QR code carries.
#[derive(Debug, Clone, Copy, PartialEq, Eq, utoipa::ToSchema)]
#[schema(rename_all = "lowercase")]
pub enum QrTarget {
    Vote,
    Referral,
}

impl QrTarget {
    /// `vote` (the default) or `referral`; anything else is a 400 naming both.
    fn parse(target: Option<&str>) -> Result<QrTarget, ApiError> {
        match target {
            Some("vote") | None => Ok(QrTarget::Vote),
            Some("referral") => Ok(QrTarget::Referral),
            Some(other) => Err(ApiError::bad_request(format!("Unknown QR target '{other}': use vote or referral"))),
        }
    }
}

/// `GET /qr.svg?target=vote|referral`, for the page and for slides.
#[utoipa::path(
    get,
    path = "/qr.svg",
    tag = "pages",
    params(
        ("target" = Option<QrTarget>, Query, description = "vote (default) or referral"),
        ("conf" = Option<String>, Query, description = "A conference the link carries on: sreday, kubecon, devopsdays (others: none)"),
    ),
    responses(
        (status = 200, description = "The QR code", content_type = "image/svg+xml", body = String),
        (status = 400, description = "Unknown target", body = platform::openapi::ErrorBody),
        (status = 422, description = "A malformed query string", body = platform::openapi::ErrorBody),
    )
)]
pub async fn qr(
    State(lab): State<Arc<VoteApp>>,
    headers: HeaderMap,
    QueryParams(query): QueryParams<QrQuery>,
) -> Result<Response, ApiError> {
    let (base, _) = public_base(&lab, &headers);
    let url = match QrTarget::parse(query.target.as_deref())? {
        QrTarget::Vote => vote_url(&base),
        QrTarget::Referral => referral_url(&base),
    };
    let url = super::pages::with_conf(url, super::pages::brand_named(query.conf.as_deref()));
    let svg = qr_svg(&url)?;
    Ok(([(header::CONTENT_TYPE, "image/svg+xml"), (header::CACHE_CONTROL, "no-store")], svg).into_response())
}

#[derive(Template, WebTemplate)]
#[template(path = "presenter.html")]
pub struct PresenterPage {
    frame: Frame,
    question: &'static str,
    choices: Vec<super::pages::ChoiceView>,
    total: i64,
    vote_url: String,
    referral_url: String,
    /// The links as the room reads them: no scheme, in pieces that may wrap only
    /// before a `/` or a `?`, never inside the host or its port.
    vote_short: Vec<String>,
    referral_short: Vec<String>,
    /// What the projector shows: the codes, the results, or both.
    focus: Focus,
    /// The status strip as the page opens (then refreshed from `/presenter/state`).
    state: super::openapi::StateBody,
    /// `&conf=KEY` for the codes when the page was opened with `?conf=`.
    qr_conf: String,
}

/// What the projector shows (`?focus=`, or the keys Q, R and B on the page).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Focus {
    /// The two QR codes, as large as the screen allows.
    Codes,
    Results,
    /// The codes either side of the results.
    #[default]
    Both,
}

impl Focus {
    fn parse(text: Option<&str>) -> Focus {
        match text {
            Some("qr" | "codes") => Focus::Codes,
            Some("results") => Focus::Results,
            _ => Focus::Both,
        }
    }

    pub fn name(&self) -> &'static str {
        match self {
            Focus::Codes => "qr",
            Focus::Results => "results",
            Focus::Both => "both",
        }
    }
}

/// A link without its scheme, cut before each `/` and `?` after the host.
pub fn short_parts(url: &str) -> Vec<String> {
    let bare = url.split_once("://").map_or(url, |(_, rest)| rest);
    let mut parts = Vec::new();
    let mut current = String::new();
    for c in bare.chars() {
        if (c == '/' || c == '?') && !current.is_empty() {
            parts.push(std::mem::take(&mut current));
        }
        current.push(c);
    }
    if !current.is_empty() {
        parts.push(current);
    }
    parts
}

#[derive(Deserialize)]
pub struct PresenterQuery {
    conf: Option<String>,
    focus: Option<String>,
}

/// `GET /presenter`: the projector's screen — the codes, the results and a status strip,
/// no controls (those are on `/admin`, the speaker's screen).
#[utoipa::path(
    get,
    path = "/presenter",
    tag = "pages",
    params(
        ("conf" = Option<String>, Query, description = "Conference branding: sreday, kubecon, devopsdays"),
        ("focus" = Option<String>, Query, description = "What the projector shows: qr, results or both (default)"),
    ),
    responses(
        (status = 200, description = "QR codes around the live results (projector)", content_type = "text/html", body = String),
        (status = 422, description = "A malformed query string", body = platform::openapi::ErrorBody),
    )
)]
pub async fn page(
    State(lab): State<Arc<VoteApp>>,
    headers: HeaderMap,
    QueryParams(query): QueryParams<PresenterQuery>,
) -> PresenterPage {
    let (base, _) = public_base(&lab, &headers);
    let named = super::pages::brand_named(query.conf.as_deref());
    let (vote, referral) =
        (super::pages::with_conf(vote_url(&base), named), super::pages::with_conf(referral_url(&base), named));
    let (choices, total) = super::pages::tallied(&lab.live.snapshot().await.unwrap_or_default());
    PresenterPage {
        frame: Frame::new(&lab, &PageQuery { conf: query.conf }),
        question: super::ballot::QUESTION,
        choices,
        total,
        vote_short: short_parts(&vote),
        referral_short: short_parts(&referral),
        vote_url: vote,
        referral_url: referral,
        focus: Focus::parse(query.focus.as_deref()),
        state: state_of(&lab),
        qr_conf: named.map(|b| format!("&conf={}", b.key)).unwrap_or_default(),
    }
}

/// `GET /admin/state`: which implementation runs, how full the referral cache is, and
/// how many 5xx this process answered in the last minute.
#[utoipa::path(
    get,
    path = "/admin/state",
    tag = "admin",
    security(("admin_token" = [])),
    responses(
        (status = 200, description = "The lab's state for the presenter", body = super::openapi::StateBody),
        (status = 401, description = "Admin token missing or wrong", body = platform::openapi::ErrorBody),
    )
)]
pub async fn state(State(lab): State<Arc<VoteApp>>) -> Json<super::openapi::StateBody> {
    Json(state_of(&lab))
}

/// `GET /presenter/state`: the same, for the projector's status strip — what the whole
/// room may see (it is on `/metrics` too), so without a token.
#[utoipa::path(
    get,
    path = "/presenter/state",
    tag = "pages",
    responses(
        (status = 200, description = "The lab's state for the projector's status strip", body = super::openapi::StateBody),
    )
)]
pub async fn public_state(State(lab): State<Arc<VoteApp>>) -> Json<super::openapi::StateBody> {
    Json(state_of(&lab))
}

fn state_of(lab: &VoteApp) -> super::openapi::StateBody {
    super::openapi::StateBody {
        referral: lab.referral.mode(),
        referral_cache: super::openapi::CacheFill {
            entries: lab.referral.entries(),
            capacity: lab.referral.capacity(),
        },
        errors_last_minute: lab.platform.http_metrics.recent_errors.last_minute(),
        recent_errors: lab.platform.http_metrics.recent_errors.latest(),
        viewers: lab.feed.viewers(),
        alerts_firing: firing_alerts(lab),
    }
}

/// The names of the console's firing alerts, each once.
fn firing_alerts(lab: &VoteApp) -> Vec<String> {
    let mut names: Vec<String> = lab.platform.console.firing().into_iter().map(|a| a.name).collect();
    names.dedup();
    names
}

#[cfg(test)]
mod tests {
    #[test]
    fn terminal_qr_codes_are_blocks_of_two_rows_a_line() {
        let text = super::qr_text("http://127.0.0.1:8000/?referral=conf-partner-2026").unwrap();
        let lines: Vec<&str> = text.lines().collect();
        // A version-3 code is 29 modules plus the quiet zone, two rows a line.
        assert!((15..=30).contains(&lines.len()), "{} lines", lines.len());
        assert!(lines.iter().all(|l| l.chars().count() == lines[0].chars().count()), "square");
        assert!(text.contains('▀') || text.contains('▄'));
    }

    #[test]
    fn short_links_wrap_only_before_a_slash_or_a_question_mark() {
        assert_eq!(
            super::short_parts("http://192.168.1.20:8000/?referral=conf-partner-2026"),
            ["192.168.1.20:8000", "/", "?referral=conf-partner-2026"]
        );
        assert_eq!(super::short_parts("https://vote.example.org/"), ["vote.example.org", "/"]);
        assert_eq!(super::short_parts("https://[::1]:8000/a/b"), ["[::1]:8000", "/a", "/b"]);
    }

    #[test]
    fn svg_qr_codes_are_whole_documents() {
        let svg = super::qr_svg("http://127.0.0.1:8000/").unwrap();
        assert!(svg.starts_with("<?xml") && svg.trim_end().ends_with("</svg>"));
    }
}
