//! The vote page without JavaScript: its buttons are a form that posts here
//! (`choice`, and `referral` when the page was opened with one). A counted vote goes on
//! to the results (`303 /results?voted=CHOICE`); a refused one comes back as the vote
//! page with the outcome in plain words — or, to a client that does not ask for HTML,
//! as the API's JSON error.

use std::sync::Arc;

use axum::extract::{ConnectInfo, State};
use axum::http::{HeaderMap, StatusCode, header};
use axum::response::{IntoResponse, Redirect, Response};
use serde::Deserialize;

use super::VoteApp;
use super::ballot::Choice;
use super::pages::{Outcome, PageQuery, brand_named, vote_page};
use platform::http::{ApiError, FormBody, QueryParams};

/// `POST /vote/form`, form-encoded.
#[derive(Deserialize, utoipa::ToSchema)]
pub struct VoteForm {
    /// The choice's key: ai, print, kubernetes, security.
    #[schema(example = "ai")]
    choice: Option<String>,
    /// A partner's referral code; empty means none.
    #[schema(example = "conf-partner-2026")]
    referral: Option<String>,
}

/// A vote another site's page sent (a form posts across origins without asking): the
/// browser says where it came from in `Sec-Fetch-Site`, or else in `Origin`. Clients
/// that send neither (curl, the driver) are not browsers and are let through.
fn cross_site(headers: &HeaderMap) -> Option<ApiError> {
    let header = |name: &str| headers.get(name).and_then(|v| v.to_str().ok());
    let refused = || {
        Some(ApiError::new(
            StatusCode::FORBIDDEN,
            "Votes are taken from this poll's own page only: open it and vote there",
        ))
    };
    if let Some(site) = header("sec-fetch-site") {
        return if site == "same-origin" || site == "none" { None } else { refused() };
    }
    match (header("origin"), header("host")) {
        (Some(origin), Some(host)) if origin.split_once("://").map(|(_, h)| h) != Some(host) => refused(),
        _ => None,
    }
}

/// Whether the client asked for a page (a browser's form submit does).
fn wants_html(headers: &HeaderMap) -> bool {
    headers.get(header::ACCEPT).and_then(|v| v.to_str().ok()).is_some_and(|accept| accept.contains("text/html"))
}

/// `POST /vote/form` `choice=ai&referral=…`
#[utoipa::path(
    post,
    path = "/vote/form",
    tag = "vote",
    params(("conf" = Option<String>, Query, description = "Conference branding carried on to the next page")),
    request_body(content = VoteForm, content_type = "application/x-www-form-urlencoded"),
    responses(
        (status = 303, description = "Counted: on to /results?voted=CHOICE", headers(("location" = String, description = "The results page"))),
        (status = 400, description = "An unknown choice or an impossible referral code (a page with the outcome when HTML is asked for)", body = platform::openapi::ErrorBody),
        (status = 403, description = "Sent by another site's page", body = platform::openapi::ErrorBody),
        (status = 408, description = "The body did not arrive in time", body = platform::openapi::ErrorBody),
        (status = 413, description = "Body over 64 KiB", body = platform::openapi::ErrorBody),
        (status = 415, description = "Not a form", body = platform::openapi::ErrorBody),
        (status = 422, description = "A form that cannot be read, or a malformed query string", body = platform::openapi::ErrorBody),
        (status = 429, description = "Too many votes from this address", body = platform::openapi::ErrorBody),
        (status = 503, description = "The vote could not be taken now (see POST /vote)", body = platform::openapi::ErrorBody),
    )
)]
pub async fn vote(
    State(lab): State<Arc<VoteApp>>,
    ConnectInfo(peer): ConnectInfo<std::net::SocketAddr>,
    headers: HeaderMap,
    QueryParams(query): QueryParams<PageQuery>,
    form: Result<FormBody<VoteForm>, ApiError>,
) -> Response {
    let html = wants_html(&headers);
    if let Some(error) = cross_site(&headers) {
        return refuse(&lab, query, None, None, error, html);
    }
    let form = match form {
        Ok(FormBody(form)) => form,
        Err(error) => return refuse(&lab, query, None, None, error, html),
    };
    let raw = form.choice.unwrap_or_default();
    match super::cast(&lab, peer, &headers, &raw, form.referral.clone()).await {
        Ok(choice) => {
            let conf = brand_named(query.conf.as_deref()).map(|b| format!("&conf={}", b.key)).unwrap_or_default();
            Redirect::to(&format!("/results?voted={}{conf}", choice.key())).into_response()
        }
        Err(error) => refuse(&lab, query, Choice::parse(&raw), form.referral, error, html),
    }
}

/// A refused vote: the API's error, or the vote page saying what happened.
fn refuse(
    lab: &VoteApp,
    query: PageQuery,
    choice: Option<Choice>,
    referral: Option<String>,
    error: ApiError,
    html: bool,
) -> Response {
    if !html {
        return error.into_response();
    }
    let with_referral = referral.as_deref().is_some_and(|r| !r.is_empty());
    let status = error.status();
    let retry_after = error.retry_after();
    let outcome = match status {
        StatusCode::SERVICE_UNAVAILABLE if with_referral && error.detail().contains("referral") => Outcome {
            class: "degraded",
            title: "SERVICE DEGRADED",
            text: "The partner link is not working right now, so your vote was not counted. You can still vote \
                   without it."
                .into(),
            choice: choice.map(Choice::key),
            without_partner: true,
        },
        StatusCode::SERVICE_UNAVAILABLE => Outcome {
            class: "degraded",
            title: "SERVICE DEGRADED",
            text: "The poll is overloaded right now and your vote was not counted. Wait a few seconds and try again."
                .into(),
            choice: None,
            without_partner: false,
        },
        _ => Outcome {
            class: "failed",
            title: "VOTE NOT RECORDED",
            text: error.detail().to_string(),
            choice: None,
            without_partner: false,
        },
    };
    let mut page = (status, vote_page(lab, query.conf, referral, Some(outcome))).into_response();
    if let Some(seconds) = retry_after {
        page.headers_mut().insert(header::RETRY_AFTER, seconds.into());
    }
    page
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_this_poll_s_own_pages_may_send_the_form() {
        let headers = |pairs: &[(&'static str, &'static str)]| {
            let mut map = HeaderMap::new();
            for (name, value) in pairs {
                map.insert(*name, value.parse().unwrap());
            }
            map
        };
        assert!(cross_site(&headers(&[])).is_none(), "curl");
        assert!(cross_site(&headers(&[("sec-fetch-site", "same-origin")])).is_none());
        assert!(cross_site(&headers(&[("sec-fetch-site", "cross-site")])).is_some());
        assert!(cross_site(&headers(&[("sec-fetch-site", "same-site")])).is_some());
        assert!(cross_site(&headers(&[("origin", "http://poll:8000"), ("host", "poll:8000")])).is_none());
        assert!(cross_site(&headers(&[("origin", "https://evil.example"), ("host", "poll:8000")])).is_some());
    }

    #[test]
    fn a_browser_form_asks_for_html_and_an_api_client_does_not() {
        let mut headers = HeaderMap::new();
        assert!(!wants_html(&headers));
        headers.insert(header::ACCEPT, "text/html,application/xhtml+xml,*/*;q=0.8".parse().unwrap());
        assert!(wants_html(&headers));
        headers.insert(header::ACCEPT, "application/json".parse().unwrap());
        assert!(!wants_html(&headers));
    }
}
