//! The vote lab's pages: vote (the audience's phones), results (the projector) and admin.

use std::sync::Arc;

use askama::Template;
use askama_web::WebTemplate;
use axum::extract::State;
use serde::Deserialize;

use super::VoteApp;
use super::ballot::{Choice, QUESTION, Tally};
use platform::http::QueryParams;

/// A conference the pages can be branded for, via `CONFERENCE` or `?conf=`.
pub struct Brand {
    pub key: &'static str,
    pub name: &'static str,
    pub greeting: &'static str,
    pub city: &'static str,
    pub logo: &'static str,
}

const BRANDS: &[Brand] = &[
    Brand { key: "sreday", name: "SREday", greeting: "SREday", city: "NYC", logo: "/static/logos/sreday.svg" },
    Brand {
        key: "kubecon",
        name: "KubeCon + CloudNativeCon",
        greeting: "KubeCon",
        city: "ATL",
        logo: "/static/logos/kubecon.svg",
    },
    Brand {
        key: "devopsdays",
        name: "DevOpsDays",
        greeting: "DevOpsDays",
        city: "NYC",
        logo: "/static/logos/devopsdays.svg",
    },
];

/// The brand for `?conf=` or else the configured conference; unknown names mean none.
fn brand(query: Option<&str>, configured: Option<&str>) -> Option<&'static Brand> {
    let wanted = query.filter(|q| !q.is_empty()).or(configured)?.trim().to_ascii_lowercase();
    BRANDS.iter().find(|b| b.key == wanted)
}

/// The brand a page's own `?conf=` names, when it names one: what its QR codes and links
/// carry on, so phones get the branded page too.
pub fn brand_named(query: Option<&str>) -> Option<&'static Brand> {
    brand(query, None)
}

/// `url` with `conf=KEY` added to its query, when there is a brand to carry.
pub fn with_conf(url: String, brand: Option<&Brand>) -> String {
    match brand {
        Some(b) if url.contains('?') => format!("{url}&conf={}", b.key),
        Some(b) => format!("{url}?conf={}", b.key),
        None => url,
    }
}

#[derive(Deserialize)]
pub struct PageQuery {
    pub conf: Option<String>,
}

/// What every page shows around its content.
pub struct Frame {
    pub brand: Option<&'static Brand>,
    pub title: String,
    pub version: String,
    /// `?conf=…` to carry the branding across links.
    pub conf_suffix: String,
    /// The same after a query of its own: `&conf=…`.
    pub conf_suffix_more: String,
}

impl Frame {
    pub fn new(lab: &VoteApp, query: &PageQuery) -> Frame {
        let brand = brand(query.conf.as_deref(), lab.platform.config.conference.as_deref());
        let city = brand.map_or("NYC", |b| b.city);
        Frame {
            brand,
            title: format!("{city} POLL '{:02}", current_year() % 100),
            version: lab.platform.config.app_version.clone(),
            conf_suffix: brand.map(|b| format!("?conf={}", b.key)).unwrap_or_default(),
            conf_suffix_more: brand.map(|b| format!("&conf={}", b.key)).unwrap_or_default(),
        }
    }
}

fn current_year() -> u64 {
    let days =
        std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map(|d| d.as_secs() / 86_400).unwrap_or(0);
    // Days since 1970 to a year, exact to within a day, which is plenty for a title.
    1970 + (days * 10_000 + 5_000) / 3_652_425
}

pub struct ChoiceView {
    pub key: &'static str,
    pub label: &'static str,
    pub count: i64,
    /// Its share of all votes, in whole percent: the bar's width.
    pub percent: i64,
}

/// The choices without counts (the vote page).
pub fn choices() -> Vec<ChoiceView> {
    tallied(&Tally::default()).0
}

/// The choices with their votes and share of the total, as the bars show them before
/// any script runs; and the total.
pub fn tallied(tally: &Tally) -> (Vec<ChoiceView>, i64) {
    let total: i64 = tally.0.iter().sum();
    let views = Choice::ALL
        .into_iter()
        .map(|c| {
            let count = tally.get(c);
            let percent = if total > 0 { (count * 100 + total / 2) / total } else { 0 };
            ChoiceView { key: c.key(), label: c.label(), count, percent: percent.clamp(0, 100) }
        })
        .collect();
    (views, total)
}

#[derive(Template, WebTemplate)]
#[template(path = "vote.html")]
pub struct VotePage {
    frame: Frame,
    question: &'static str,
    choices: Vec<ChoiceView>,
    /// The referral code the page was opened with, sent with the form's vote.
    referral: Option<String>,
    /// What happened to a vote sent without JavaScript, when it was refused.
    outcome: Option<Outcome>,
}

/// A refused vote, as the page says it (the words of vote.js).
pub struct Outcome {
    /// `degraded` or `failed`: the card's colour.
    pub class: &'static str,
    pub title: &'static str,
    pub text: String,
    /// The choice to send again without the partner link.
    pub choice: Option<&'static str>,
    pub without_partner: bool,
}

/// `GET /`'s query.
#[derive(Deserialize)]
pub struct VoteQuery {
    pub conf: Option<String>,
    pub referral: Option<String>,
}

/// The vote page, with the referral code its form sends (one the ballot could take;
/// another is left out) and a refused vote's outcome.
pub fn vote_page(lab: &VoteApp, conf: Option<String>, referral: Option<String>, outcome: Option<Outcome>) -> VotePage {
    let referral = referral.filter(|c| !c.is_empty() && c.chars().count() <= 64 && !c.chars().any(char::is_control));
    VotePage { frame: Frame::new(lab, &PageQuery { conf }), question: QUESTION, choices: choices(), referral, outcome }
}

#[derive(Template, WebTemplate)]
#[template(path = "results.html")]
pub struct ResultsPage {
    frame: Frame,
    question: &'static str,
    choices: Vec<ChoiceView>,
    total: i64,
    /// Where latecomers vote, under the join code.
    vote_url: String,
    vote_short: Vec<String>,
    /// `&conf=KEY` for the join code when the page was opened with `?conf=`.
    qr_conf: String,
    /// The choice of the vote that just brought the voter here (`?voted=`).
    voted: Option<&'static str>,
}

/// `GET /results`'s query.
#[derive(Deserialize)]
pub struct ResultsQuery {
    pub conf: Option<String>,
    /// Set by the vote page's form after a counted vote.
    pub voted: Option<String>,
}

#[derive(Template, WebTemplate)]
#[template(path = "admin.html")]
pub struct AdminPage {
    frame: Frame,
    /// Why the configured admin token is easy to guess, when it is.
    weak_token: Option<String>,
    /// Whether the audience links come from --public-url (else from the page's address).
    public_url_configured: bool,
}

#[utoipa::path(
    get,
    path = "/",
    tag = "pages",
    params(
        ("conf" = Option<String>, Query, description = "Conference branding: sreday, kubecon, devopsdays"),
        ("referral" = Option<String>, Query, description = "A partner's referral code, sent with the vote"),
    ),
    responses(
        (status = 200, description = "The vote page (phones); its buttons vote without JavaScript too", content_type = "text/html", body = String),
        (status = 422, description = "A malformed query string", body = platform::openapi::ErrorBody),
    )
)]
pub async fn vote(State(lab): State<Arc<VoteApp>>, QueryParams(query): QueryParams<VoteQuery>) -> VotePage {
    vote_page(&lab, query.conf, query.referral, None)
}

#[utoipa::path(
    get,
    path = "/results",
    tag = "pages",
    params(
        ("conf" = Option<String>, Query, description = "Conference branding: sreday, kubecon, devopsdays"),
        ("voted" = Option<String>, Query, description = "The choice just voted for (the vote page's form): said at the top"),
    ),
    responses(
        (status = 200, description = "Live results (projector): counts, shares and the join code, right without JavaScript", content_type = "text/html", body = String),
        (status = 422, description = "A malformed query string", body = platform::openapi::ErrorBody),
    )
)]
pub async fn results(
    State(lab): State<Arc<VoteApp>>,
    headers: axum::http::HeaderMap,
    QueryParams(query): QueryParams<ResultsQuery>,
) -> ResultsPage {
    // Counts that cannot be read now show as none; the live stream brings them.
    let (choices, total) = tallied(&lab.live.snapshot().await.unwrap_or_default());
    let (base, _) = super::presenter::public_base(&lab, &headers);
    let named = brand_named(query.conf.as_deref());
    let vote_url = with_conf(super::presenter::vote_url(&base), named);
    ResultsPage {
        frame: Frame::new(&lab, &PageQuery { conf: query.conf.clone() }),
        question: QUESTION,
        choices,
        total,
        vote_short: super::presenter::short_parts(&vote_url),
        vote_url,
        qr_conf: named.map(|b| format!("&conf={}", b.key)).unwrap_or_default(),
        voted: query.voted.as_deref().and_then(Choice::parse).map(Choice::label),
    }
}

#[utoipa::path(
    get,
    path = "/admin",
    tag = "pages",
    params(("conf" = Option<String>, Query, description = "Conference branding: sreday, kubecon, devopsdays")),
    responses(
        (status = 200, description = "The speaker's control view: the lab's state, reset, fix switch, the projector's focus (the token is asked for)", content_type = "text/html", body = String),
        (status = 422, description = "A malformed query string", body = platform::openapi::ErrorBody),
    )
)]
pub async fn admin(State(lab): State<Arc<VoteApp>>, QueryParams(query): QueryParams<PageQuery>) -> AdminPage {
    AdminPage {
        frame: Frame::new(&lab, &query),
        weak_token: lab.platform.weak_admin_token(),
        public_url_configured: lab.platform.config.public_url.is_some(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn query_brand_overrides_the_configured_one_and_unknown_means_none() {
        assert_eq!(brand(Some("kubecon"), Some("sreday")).map(|b| b.key), Some("kubecon"));
        assert_eq!(brand(None, Some("SREday")).map(|b| b.key), Some("sreday"));
        assert_eq!(brand(Some(""), Some("devopsdays")).map(|b| b.key), Some("devopsdays"));
        assert!(brand(Some("<script>"), None).is_none());
        assert!(brand(None, None).is_none());
    }

    #[test]
    fn the_year_is_this_century() {
        let year = current_year();
        assert!((2025..2100).contains(&year), "{year}");
    }
}
