//! A workshop room (`serve LAB --room`): attendees join from their own machine with
//! `breakroom join URL CODE --name NAME`, and from then on their `demonstrate`, `check`
//! and `hint` report here — reproduced, each check's verdict and what it printed,
//! hints used. The board (`/room`, live) shows the instructor who is where.
//!
//! Kept in the lab's database (the board survives a restart). Joining needs the code;
//! a report needs the attendee's own secret, so it can change that attendee only;
//! names are short plain text; posts are rate-limited per address and per attendee;
//! the board, its stream, the export and closing need the admin token.

mod board;
mod page;
mod store;

use std::net::{IpAddr, SocketAddr};
use std::sync::Arc;

use anyhow::Context;
use axum::Router;
use axum::extract::{ConnectInfo, State};
use axum::http::{HeaderMap, StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use serde::{Deserialize, Serialize};

use crate::Platform;
use crate::db::Db;
use crate::feed::Feed;
use crate::http::{AdminToken, ApiError, JsonBody};
use crate::limit::RateLimiter;
pub use board::Board;

/// A room holds this many attendees; the next join is refused.
pub const MAX_ATTENDEES: i64 = 1000;
/// The longest name the board shows.
pub const MAX_NAME_CHARS: usize = 40;
/// The most of a verdict's text a report carries.
pub const MAX_DETAIL_CHARS: usize = 2000;
/// Posts (joins and reports) one address may make: a classroom behind one NAT address
/// joins at once, a script flooding the room does not get far.
const ADDRESS_RATE: f64 = 50.0;
const ADDRESS_BURST: f64 = 200.0;
/// Reports one attendee may make: a command sends one.
const ATTENDEE_RATE: f64 = 1.0;
const ATTENDEE_BURST: f64 = 10.0;
/// The code's letters: no 0/O, 1/I/L, read off a projector without doubt.
const CODE_ALPHABET: &[u8] = b"ABCDEFGHJKMNPQRSTUVWXYZ23456789";
const CODE_LEN: usize = 6;

pub struct Room {
    db: Db,
    code: String,
    lab: &'static str,
    scenarios: Vec<&'static str>,
    public_url: Option<String>,
    admin: AdminToken,
    feed: Feed,
    by_address: RateLimiter<IpAddr>,
    by_attendee: RateLimiter<String>,
    /// Key the address limit by `X-Forwarded-For` (behind the operator's proxy).
    trust_proxy: bool,
}

impl Room {
    /// The lab's open room, or a new one when it has none (the last one was closed).
    pub async fn open(platform: &Platform, scenarios: Vec<&'static str>) -> anyhow::Result<Arc<Room>> {
        let db = platform.db.clone();
        if store::open_room(&db).await?.is_none() {
            store::create(&db, &new_code(), store::now_ms()).await?;
        }
        let code = store::open_room(&db).await?.map(|room| room.code).context("the room just opened is gone")?;
        let config = &platform.config;
        let lab = config.lab;
        let read = {
            let (db, code) = (db.clone(), code.clone());
            move || {
                let (db, code) = (db.clone(), code.clone());
                async move { read_board(&db, &code, lab).await.ok().and_then(|b| serde_json::to_string(&b).ok()) }
            }
        };
        let initial = read().await.unwrap_or_else(|| "{}".into());
        let feed = Feed::spawn("room", initial, config.feed_refresh, platform.shutdown.clone(), read);
        tracing::info!(lab, code, "room open");
        Ok(Arc::new(Room {
            db,
            code,
            lab,
            scenarios,
            public_url: config.public_url.clone(),
            admin: platform.admin.clone(),
            feed,
            by_address: RateLimiter::new(ADDRESS_RATE, ADDRESS_BURST),
            by_attendee: RateLimiter::new(ATTENDEE_RATE, ATTENDEE_BURST),
            trust_proxy: config.trust_proxy,
        }))
    }

    pub fn code(&self) -> &str {
        &self.code
    }

    /// What an attendee types to join, for a room reached at `base`.
    pub fn join_command(&self, base: &str) -> String {
        format!("breakroom join {base} {} --name NAME", self.code)
    }

    /// `router` with the room's routes in front; every other request goes straight on.
    pub fn wrap(self: &Arc<Self>, router: Router) -> Router {
        let admin = Router::new()
            .route("/room/state", get(state))
            .route("/room/events", get(events))
            .route("/room/card", get(card))
            .route("/room/export.csv", get(export))
            .route("/room/close", post(close))
            .route_layer(axum::middleware::from_fn_with_state(self.admin.clone(), crate::http::require_admin));
        Router::new()
            .route("/room", get(page::board))
            .route("/room/join", get(page::join).post(join))
            .route("/room/report", post(report))
            .merge(admin)
            .method_not_allowed_fallback(crate::http::method_not_allowed)
            .layer(axum::middleware::map_response(secure))
            .with_state(self.clone())
            .fallback_service(router)
    }
}

/// Outside the service's own layers: the room's answers carry the headers every answer does.
async fn secure(mut response: Response) -> Response {
    crate::http::add_security_headers(&mut response);
    response
}

fn new_code() -> String {
    use rand::Rng;
    let mut rng = rand::rng();
    (0..CODE_LEN).map(|_| CODE_ALPHABET[rng.random_range(0..CODE_ALPHABET.len())] as char).collect()
}

/// An attendee's id and secret: this many lowercase hex digits.
const ATTENDEE_ID_CHARS: usize = 16;
const SECRET_CHARS: usize = 32;

fn is_hex(text: &str, chars: usize) -> bool {
    text.len() == chars && text.bytes().all(|b| b.is_ascii_digit() || (b'a'..=b'f').contains(&b))
}

fn random_hex(chars: usize) -> String {
    use rand::Rng;
    let mut rng = rand::rng();
    (0..chars).map(|_| char::from_digit(rng.random_range(0..16), 16).unwrap_or('0')).collect()
}

/// A code as typed: any case, spaces and dashes ignored.
pub fn normalize_code(code: &str) -> String {
    code.chars().filter(|c| !c.is_whitespace() && *c != '-').collect::<String>().to_uppercase()
}

/// Equal in time independent of where they differ.
fn same(a: &str, b: &str) -> bool {
    a.len() == b.len() && a.bytes().zip(b.bytes()).fold(0u8, |acc, (x, y)| acc | (x ^ y)) == 0
}

async fn read_board(db: &Db, code: &str, lab: &'static str) -> Result<Board, sqlx::Error> {
    let room = store::room(db, code).await?.ok_or(sqlx::Error::RowNotFound)?;
    let rows = store::attendees(db, code).await?;
    Ok(board::board(&room, lab, rows))
}

fn database(db: &Db, error: sqlx::Error) -> ApiError {
    let error = db.observe(error);
    ApiError::unavailable(format!("The room's database did not answer: {}", crate::http::database_failure(&error)))
        .with_retry_after(2)
}

impl Room {
    fn limit_address(&self, peer: SocketAddr, headers: &HeaderMap) -> Result<(), ApiError> {
        let address = crate::limit::client_ip(peer, headers, self.trust_proxy);
        self.by_address.check(address).map_err(|wait| {
            ApiError::new(StatusCode::TOO_MANY_REQUESTS, "Too many posts to the room from this address; slow down")
                .with_retry_after(wait.as_secs().max(1) as u32)
        })
    }

    /// The code must be this room's, and the room open.
    async fn admit(&self, code: &str) -> Result<(), ApiError> {
        if !same(&normalize_code(code), &self.code) {
            return Err(ApiError::new(
                StatusCode::FORBIDDEN,
                "Wrong room code: use the code on the presenter's board (`breakroom join URL CODE --name NAME`)",
            ));
        }
        match store::closed_at(&self.db, &self.code).await.map_err(|e| database(&self.db, e))? {
            Some(_) => Err(ApiError::new(StatusCode::CONFLICT, "The room is closed: the presenter has ended it")),
            None => Ok(()),
        }
    }

    async fn board(&self) -> Result<Board, ApiError> {
        read_board(&self.db, &self.code, self.lab).await.map_err(|e| database(&self.db, e))
    }
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct JoinRequest {
    pub code: String,
    pub name: String,
}

#[derive(Debug, Serialize, Deserialize)]
pub struct Joined {
    pub attendee: String,
    pub secret: String,
    pub name: String,
    pub code: String,
    pub lab: String,
}

/// Characters that show nothing or reorder the text around them (Unicode's format
/// characters and separators that matter in a name): a name with one could pass for
/// another attendee's, or turn a row of the board around.
fn invisible(c: char) -> bool {
    matches!(
        c,
        '\u{00AD}'
            | '\u{034F}'
            | '\u{061C}'
            | '\u{115F}'
            | '\u{1160}'
            | '\u{180B}'..='\u{180F}'
            | '\u{200B}'..='\u{200F}'
            | '\u{2028}'..='\u{202E}'
            | '\u{2060}'..='\u{206F}'
            | '\u{3164}'
            | '\u{FEFF}'
            | '\u{FFA0}'
            | '\u{FFF9}'..='\u{FFFB}'
    )
}

/// A name the board can show: trimmed, 1 to 40 characters, no control characters and
/// no markup.
fn valid_name(name: &str) -> Result<String, ApiError> {
    let name = name.trim();
    let chars = name.chars().count();
    if chars == 0 {
        return Err(ApiError::bad_request("A name is required: --name NAME (how the board shows you)"));
    }
    if chars > MAX_NAME_CHARS {
        return Err(ApiError::bad_request(format!(
            "The name has {chars} characters; the board shows at most {MAX_NAME_CHARS}"
        )));
    }
    if name.chars().any(|c| c.is_control() || invisible(c) || matches!(c, '<' | '>')) {
        return Err(ApiError::bad_request(
            "A name is plain text: no control or invisible characters (zero-width, direction marks), no < or >",
        ));
    }
    Ok(name.to_string())
}

/// `POST /room/join` `{code, name}`: 201 with the attendee's id and secret.
async fn join(
    State(room): State<Arc<Room>>,
    ConnectInfo(peer): ConnectInfo<SocketAddr>,
    headers: HeaderMap,
    JsonBody(request): JsonBody<JoinRequest>,
) -> Result<Response, ApiError> {
    room.limit_address(peer, &headers)?;
    let name = valid_name(&request.name)?;
    room.admit(&request.code).await?;
    let db = &room.db;
    if store::attendee_count(db, &room.code).await.map_err(|e| database(db, e))? >= MAX_ATTENDEES {
        return Err(ApiError::new(StatusCode::CONFLICT, format!("The room is full ({MAX_ATTENDEES} attendees)")));
    }
    let (id, secret) = (random_hex(ATTENDEE_ID_CHARS), random_hex(SECRET_CHARS));
    if !store::join(db, &room.code, &id, &name, &secret, store::now_ms()).await.map_err(|e| database(db, e))? {
        return Err(ApiError::new(
            StatusCode::CONFLICT,
            format!("Someone in the room is already called '{name}': pick another --name"),
        ));
    }
    room.feed.changed();
    tracing::info!(code = room.code, name, "attendee joined the room");
    let joined = Joined { attendee: id, secret, name, code: room.code.clone(), lab: room.lab.to_string() };
    Ok((StatusCode::CREATED, axum::Json(joined)).into_response())
}

/// What a stage command or a hint reports.
#[derive(Debug, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Report {
    pub code: String,
    pub attendee: String,
    pub secret: String,
    pub scenario: String,
    /// `demonstrate`, `check` or `hint`.
    pub kind: String,
    /// demonstrate: `reproduced`, `not_reproduced` or `trouble`; check: `pass`, `fail`
    /// or `trouble`.
    #[serde(default)]
    pub outcome: Option<String>,
    /// hint: how many of the scenario's hints the attendee has seen now.
    #[serde(default)]
    pub hints: Option<i64>,
    /// What the command printed as its verdict.
    #[serde(default)]
    pub detail: Option<String>,
}

impl Room {
    /// What a report changes, or why it is refused.
    fn change(&self, report: &Report) -> Result<store::Change, ApiError> {
        if !self.scenarios.contains(&report.scenario.as_str()) {
            return Err(ApiError::bad_request(format!(
                "This room runs the {} lab; its scenarios are {}",
                self.lab,
                self.scenarios.join(", ")
            )));
        }
        if let Some(detail) = &report.detail
            && detail.chars().count() > MAX_DETAIL_CHARS
        {
            return Err(ApiError::bad_request(format!("detail is longer than {MAX_DETAIL_CHARS} characters")));
        }
        let mut change = store::Change {
            scenario: report.scenario.clone(),
            detail: report.detail.as_deref().map(|d| d.chars().filter(|c| *c == '\n' || !c.is_control()).collect()),
            ..store::Change::default()
        };
        let outcome = report.outcome.as_deref();
        let refused =
            |expected: &str| ApiError::bad_request(format!("A {} report's outcome is one of {expected}", report.kind));
        match report.kind.as_str() {
            "demonstrate" => match outcome {
                Some("reproduced") => change.reproduced = true,
                Some("not_reproduced" | "trouble") => {}
                _ => return Err(refused("reproduced, not_reproduced, trouble")),
            },
            "check" => match outcome {
                Some("pass") => (change.fixed, change.checks) = (true, 1),
                // A failing check is the bug reproducing on the attendee's lab.
                Some("fail") => (change.reproduced, change.checks) = (true, 1),
                Some("trouble") => {}
                _ => return Err(refused("pass, fail, trouble")),
            },
            "hint" => match report.hints {
                Some(seen @ 1..=3) if outcome.is_none() => change.hints = seen,
                _ => return Err(ApiError::bad_request("A hint report carries hints: 1, 2 or 3 (and no outcome)")),
            },
            _ => return Err(ApiError::bad_request("kind is one of demonstrate, check, hint")),
        }
        if report.kind != "hint" {
            change.verdict = outcome.map(|o| format!("{} {}", report.kind, o.replace('_', " ")));
        }
        Ok(change)
    }
}

/// `POST /room/report`: 200 once applied.
async fn report(
    State(room): State<Arc<Room>>,
    ConnectInfo(peer): ConnectInfo<SocketAddr>,
    headers: HeaderMap,
    JsonBody(report): JsonBody<Report>,
) -> Result<Response, ApiError> {
    room.limit_address(peer, &headers)?;
    let change = room.change(&report)?;
    room.admit(&report.code).await?;
    let unknown = || {
        ApiError::new(
            StatusCode::FORBIDDEN,
            "Unknown attendee or wrong secret: join again with `breakroom join URL CODE --name NAME`",
        )
    };
    // Only an id and a secret of the shape the room hands out are looked up.
    if !is_hex(&report.attendee, ATTENDEE_ID_CHARS) || !is_hex(&report.secret, SECRET_CHARS) {
        return Err(unknown());
    }
    let db = &room.db;
    let stored = store::secret(db, &room.code, &report.attendee).await.map_err(|e| database(db, e))?;
    if !stored.is_some_and(|secret| same(&secret, &report.secret)) {
        return Err(unknown());
    }
    room.by_attendee.check(report.attendee.clone()).map_err(|wait| {
        ApiError::new(StatusCode::TOO_MANY_REQUESTS, "Too many reports from this attendee; slow down")
            .with_retry_after(wait.as_secs().max(1) as u32)
    })?;
    store::apply(db, &report.attendee, &change, store::now_ms()).await.map_err(|e| database(db, e))?;
    room.feed.changed();
    Ok(axum::Json(serde_json::json!({ "reported": true, "code": room.code })).into_response())
}

/// `GET /room/state` (admin): the board as JSON.
async fn state(State(room): State<Arc<Room>>) -> Result<axum::Json<Board>, ApiError> {
    room.board().await.map(axum::Json)
}

/// `GET /room/events` (admin): the board, live (`event: room`).
async fn events(State(room): State<Arc<Room>>) -> Response {
    room.feed.stream()
}

/// Where attendees reach the room: the public URL, else the host the browser used.
fn audience_base(room: &Room, headers: &HeaderMap) -> (String, bool) {
    if let Some(url) = &room.public_url {
        return (url.clone(), false);
    }
    let host = headers.get(header::HOST).and_then(|h| h.to_str().ok()).unwrap_or("127.0.0.1");
    let local = host.starts_with("127.") || host.starts_with("localhost") || host.starts_with("[::1]");
    (format!("http://{host}"), local)
}

/// `GET /room/card` (admin): the code, the join command and its QR code, for latecomers.
async fn card(State(room): State<Arc<Room>>, headers: HeaderMap) -> Result<Response, ApiError> {
    let (base, local) = audience_base(&room, &headers);
    let join_page = format!("{base}/room/join?code={}", room.code);
    let note = local.then_some(
        "This page is open on this machine's loopback address, which attendees cannot reach: \
         open it at the address the room reaches, or serve with --public-url URL",
    );
    Ok(axum::Json(serde_json::json!({
        "code": room.code,
        "lab": room.lab,
        "url": base,
        "command": room.join_command(&base),
        "join_page": join_page,
        "qr": crate::qr::data_url(&join_page)?,
        "note": note,
    }))
    .into_response())
}

/// `GET /room/export.csv` (admin): one row per attendee.
async fn export(State(room): State<Arc<Room>>) -> Result<Response, ApiError> {
    let board = room.board().await?;
    let disposition = format!("attachment; filename=\"room-{}-{}.csv\"", room.lab, room.code);
    Ok((
        [(header::CONTENT_TYPE, "text/csv; charset=utf-8".to_string()), (header::CONTENT_DISPOSITION, disposition)],
        board::csv(&board),
    )
        .into_response())
}

/// `POST /room/close` (admin): no more joins or reports; the board stays readable.
async fn close(State(room): State<Arc<Room>>) -> Result<Response, ApiError> {
    let db = &room.db;
    let closed = store::close(db, &room.code, store::now_ms()).await.map_err(|e| database(db, e))?;
    room.feed.changed();
    tracing::info!(code = room.code, "room closed");
    Ok(axum::Json(serde_json::json!({ "closed": true, "already": !closed, "code": room.code })).into_response())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn codes_are_six_unambiguous_letters_and_typed_codes_are_forgiven() {
        let code = new_code();
        assert_eq!(code.len(), CODE_LEN);
        assert!(code.bytes().all(|b| CODE_ALPHABET.contains(&b)), "{code}");
        assert_eq!(normalize_code(" abc-234 "), "ABC234");
    }

    #[test]
    fn names_are_short_plain_text() {
        assert_eq!(valid_name("  Ann & Bob's laptop ").unwrap(), "Ann & Bob's laptop");
        assert!(valid_name("").unwrap_err().detail().contains("required"));
        assert!(valid_name(&"x".repeat(41)).unwrap_err().detail().contains("at most 40"));
        assert!(valid_name("<b>me</b>").unwrap_err().detail().contains("plain text"));
        assert!(valid_name("a\u{7}b").unwrap_err().detail().contains("plain text"));
        assert_eq!(valid_name(&"é".repeat(40)).unwrap().chars().count(), 40, "characters, not bytes");
        // Invisible characters would let a name pass for another or turn its row around.
        for sneaky in ["Ann\u{200B}", "A\u{200D}nn", "\u{202E}nnA", "Ann\u{FEFF}", "An\u{00AD}n", "\u{2066}Ann"] {
            assert!(valid_name(sneaky).unwrap_err().detail().contains("invisible"), "{sneaky:?}");
        }
        assert_eq!(valid_name("Zoë 🚀 李").unwrap(), "Zoë 🚀 李", "letters and emoji are fine");
    }

    #[test]
    fn only_ids_and_secrets_of_the_room_s_shape_are_looked_up() {
        assert!(is_hex(&random_hex(ATTENDEE_ID_CHARS), ATTENDEE_ID_CHARS));
        assert!(is_hex(&random_hex(SECRET_CHARS), SECRET_CHARS));
        assert!(!is_hex("0123456789abcde\0", ATTENDEE_ID_CHARS), "a NUL");
        assert!(!is_hex("0123456789ABCDEF", ATTENDEE_ID_CHARS), "upper case is not what the room hands out");
        assert!(!is_hex("0123456789abcdef0", ATTENDEE_ID_CHARS), "one too many");
        assert!(!is_hex("ééééééééééééééé", ATTENDEE_ID_CHARS));
    }
}
