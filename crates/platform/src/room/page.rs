//! The room's two pages: the board (`/room`, for the projector: the page holds no data,
//! its script asks for the board with the admin token) and the join page
//! (`/room/join`, for attendees: how to join, no token).

use std::sync::Arc;

use axum::extract::State;
use axum::http::HeaderMap;
use axum::response::{Html, IntoResponse, Response};

use super::{Room, audience_base};
use crate::http::QueryParams;
use crate::landing::escape;

fn head(title: &str, class: &str) -> String {
    format!(
        "<!doctype html>\n<html lang=\"en\">\n<head>\n<meta charset=\"utf-8\">\n\
         <meta name=\"viewport\" content=\"width=device-width, initial-scale=1\">\n\
         <meta name=\"color-scheme\" content=\"dark\">\n<title>{t}</title>\n\
         <link rel=\"icon\" href=\"/static/favicon.svg\" type=\"image/svg+xml\">\n\
         <link rel=\"stylesheet\" href=\"/static/breakroom.css\">\n</head>\n<body class=\"{class}\">\n\
         <div class=\"taxi-stripe\" aria-hidden=\"true\"></div>\n",
        t = escape(title)
    )
}

const FOOT: &str = "<div class=\"taxi-stripe\" aria-hidden=\"true\"></div>\n</body>\n</html>\n";

/// `GET /room`: the live board.
pub async fn board(State(room): State<Arc<Room>>) -> Response {
    let mut html = head(&format!("breakroom · {} room", room.lab), "page-room");
    html.push_str(&format!(
        "<header class=\"masthead room-head\"><span class=\"badge\" aria-hidden=\"true\">B</span>\
         <h1 class=\"title\">Room <span id=\"room-code\" class=\"room-code\">{code}</span></h1>\
         <span id=\"room-status\" class=\"room-status\" role=\"status\">connecting…</span></header>\n\
         <main class=\"room\">\n\
         <form id=\"token-form\" class=\"card room-token\" hidden>\n\
         <label for=\"token\">Admin token (printed when breakroom started)</label>\n\
         <input id=\"token\" type=\"password\" autocomplete=\"off\" spellcheck=\"false\">\n\
         <button class=\"button\" type=\"submit\">Show the board</button>\n</form>\n\
         <section class=\"room-counts\" aria-label=\"progress\">\n\
         <div class=\"count\"><span id=\"count-joined\" class=\"count-n\">–</span><span class=\"count-label\">joined</span></div>\n\
         <div class=\"count\"><span id=\"count-reproduced\" class=\"count-n\">–</span><span class=\"count-label\">reproduced</span></div>\n\
         <div class=\"count fixed\"><span id=\"count-fixed\" class=\"count-n\">–</span><span class=\"count-label\">fixed</span></div>\n\
         </section>\n\
         <div class=\"room-grid\">\n\
         <section class=\"card room-table-card\"><h2>Attendees</h2>\n\
         <table class=\"room-table\"><thead><tr><th scope=\"col\">#</th><th scope=\"col\">name</th>\
         <th scope=\"col\">state</th><th scope=\"col\">time to fix</th><th scope=\"col\">hints</th>\
         <th scope=\"col\">last verdict</th></tr></thead>\n<tbody id=\"attendees\"></tbody></table>\n\
         <p id=\"nobody\" class=\"muted\">Nobody has joined yet.</p></section>\n\
         <aside class=\"room-side\">\n\
         <section class=\"card join-card\"><h2>Join</h2>\n\
         <img id=\"join-qr\" class=\"join-qr\" alt=\"QR code of the join page\" width=\"320\" height=\"320\" hidden>\n\
         <pre id=\"join-command\" class=\"commands\"></pre>\n<p id=\"join-note\" class=\"muted\" hidden></p></section>\n\
         <section class=\"card\"><h2>Stuck longest</h2><ol id=\"stuck\" class=\"stuck\"></ol></section>\n\
         <section class=\"card room-actions\"><h2>Room</h2>\n\
         <button id=\"export\" class=\"button\" type=\"button\">Export CSV</button>\n\
         <button id=\"close-room\" class=\"button danger\" type=\"button\">Close the room</button>\n\
         <p id=\"room-message\" class=\"muted\" role=\"status\"></p></section>\n\
         </aside>\n</div>\n</main>\n\
         <footer class=\"footer\"><span>breakroom · {lab} lab · room</span></footer>\n\
         <script src=\"/static/room.js\"></script>\n",
        code = escape(&room.code),
        lab = escape(room.lab),
    ));
    html.push_str(FOOT);
    page(html)
}

#[derive(serde::Deserialize)]
pub struct JoinQuery {
    code: Option<String>,
}

/// `GET /room/join`: how to join, with the code the QR code carried.
pub async fn join(
    State(room): State<Arc<Room>>,
    headers: HeaderMap,
    QueryParams(query): QueryParams<JoinQuery>,
) -> Response {
    let (base, _) = audience_base(&room, &headers);
    // Only what the link carried: the page does not tell a stranger the code.
    let code = query
        .code
        .map(|c| super::normalize_code(&c))
        .filter(|c| c.len() == super::CODE_LEN && c.bytes().all(|b| super::CODE_ALPHABET.contains(&b)));
    let code_text = code.as_deref().unwrap_or("CODE");
    let mut html = head(&format!("Join the {} room", room.lab), "page-join");
    let scenario = room.scenarios.first().copied().unwrap_or(room.lab);
    html.push_str(&format!(
        "<header class=\"masthead\"><span class=\"badge\" aria-hidden=\"true\">B</span>\
         <h1 class=\"title\">Join the room</h1></header>\n<main>\n<section class=\"card\">\n\
         <p>Run these on your own machine, where your copy of the {lab} lab runs. Your \
         <code>demonstrate</code>, <code>check</code> and <code>hint</code> then tell the room how far \
         you are — whether the bug reproduced, each check's verdict, how many hints you used. None of \
         your code leaves your machine.</p>\n\
         <pre class=\"commands\">breakroom join {base} {code} --name \"Your name\"\n\
         breakroom demonstrate {scenario}\nbreakroom hint {scenario}\nbreakroom check {scenario}</pre>\n\
         {missing}<p>From a checkout, put <code>cargo run --release --</code> in front of \
         <code>join</code>. <code>breakroom join --leave</code> stops the reports.</p>\n</section>\n</main>\n",
        lab = escape(room.lab),
        base = escape(&base),
        code = escape(code_text),
        scenario = escape(scenario),
        missing = if code.is_none() { "<p>The code is on the presenter's board.</p>\n" } else { "" },
    ));
    html.push_str(FOOT);
    page(html)
}

fn page(html: String) -> Response {
    ([(axum::http::header::CACHE_CONTROL, "no-store")], Html(html)).into_response()
}
