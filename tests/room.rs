//! Workshop rooms: attendees join the presenter's lab with `breakroom join`, and their
//! own `demonstrate`, `check` and `hint` (the real binary, against their own lab) report
//! to it; the board adds it up, survives a restart, and refuses bad reports.

mod common;

use std::time::{Duration, SystemTime, UNIX_EPOCH};

use common::{ADMIN_TOKEN, Backend, Events, TestApp, spawn_lab};
use futures_util::StreamExt;
use serde_json::{Value, json};

use breakroom::labs::LabName;

on_both_backends!(alone: thirty_attendees_reproduce_fix_and_ask_for_hints);
on_both_backends!(bad_reports_are_refused_and_change_nothing, a_room_holds_five_hundred);

const SCENARIO: &str = "datasets/stats-cache";

fn now_ms() -> i64 {
    SystemTime::now().duration_since(UNIX_EPOCH).unwrap().as_millis() as i64
}

async fn presenter(backend: Backend) -> TestApp {
    spawn_lab(LabName::Datasets, backend, |c| c.platform.room = true).await
}

async fn admin_get(app: &TestApp, path: &str) -> reqwest::Response {
    app.client.get(format!("{}{path}", app.url)).bearer_auth(ADMIN_TOKEN).send().await.unwrap()
}

async fn board(app: &TestApp) -> Value {
    let response = admin_get(app, "/room/state").await;
    assert_eq!(response.status(), 200);
    response.json().await.unwrap()
}

async fn code(app: &TestApp) -> String {
    let card: Value = admin_get(app, "/room/card").await.json().await.unwrap();
    card["code"].as_str().unwrap().to_string()
}

/// `breakroom ARGS` as an attendee on their own machine (their own data directory).
async fn breakroom(data_dir: &std::path::Path, args: &[&str]) -> (i32, String) {
    let output = tokio::process::Command::new(env!("CARGO_BIN_EXE_breakroom"))
        .args(args)
        .env("BREAKROOM_DATA_DIR", data_dir)
        .env("BREAKROOM_ADMIN_TOKEN", ADMIN_TOKEN)
        .env("NO_COLOR", "1")
        .kill_on_drop(true)
        .output();
    let output = tokio::time::timeout(Duration::from_secs(120), output).await.expect("the command ends").unwrap();
    let text = format!("{}{}", String::from_utf8_lossy(&output.stdout), String::from_utf8_lossy(&output.stderr));
    (output.status.code().unwrap_or(-1), text)
}

/// What an attendee did, and when, to hold the board against.
struct Attendee {
    name: String,
    joined: (i64, i64),
    fixed: Option<(i64, i64)>,
    reproduced: bool,
    hints: i64,
    checks: i64,
}

/// The three kinds of attendee: runs the fix from the start (never reproduces); reproduces,
/// asks for hints, edits the code (the fix switched on in their running lab) and passes;
/// reproduces, reads every hint, and still fails.
async fn attend(i: usize, url: String, code: String) -> (Attendee, TestApp) {
    let kind = i % 3;
    let lab = spawn_lab(LabName::Datasets, Backend::Embedded, |c| {
        if kind == 0 {
            c.platform.fixed = vec!["stats-cache".into()];
        }
    })
    .await;
    let dir = lab.data_dir().to_path_buf();
    let name = format!("attendee {i:02}");
    let started = now_ms();
    let (status, out) = breakroom(&dir, &["join", &url, &code.to_lowercase(), "--name", &name]).await;
    assert_eq!(status, 0, "{name} joins: {out}");
    assert!(out.contains(&format!("Joined room {code}")), "{out}");
    let joined = (started, now_ms());
    let mut me = Attendee { name, joined, fixed: None, reproduced: false, hints: 0, checks: 0 };
    let (status, out) = breakroom(&dir, &["demonstrate", SCENARIO, "--url", &lab.url]).await;
    assert_eq!(status, 0, "{out}");
    assert!(out.contains(&format!("reported to room {code}")), "{out}");
    me.reproduced = kind != 0;
    match kind {
        1 => {
            for _ in 0..(1 + i % 2) {
                let (status, out) = breakroom(&dir, &["hint", SCENARIO]).await;
                assert!(status == 0 && out.contains("reported to room"), "{out}");
                me.hints += 1;
            }
            let fix = json!({ "fixed": true });
            let flip = lab.post_admin("/admin/bugs/stats-cache", Some(ADMIN_TOKEN), Some(&fix)).await;
            assert_eq!(flip.status(), 200);
        }
        2 => {
            let (status, out) = breakroom(&dir, &["hint", SCENARIO, "--all"]).await;
            assert!(status == 0 && out.contains("reported to room"), "{out}");
            me.hints = 3;
        }
        _ => {}
    }
    let before = now_ms();
    let (status, out) = breakroom(&dir, &["check", SCENARIO, "--url", &lab.url]).await;
    me.checks = 1;
    if kind == 2 {
        assert_eq!(status, 1, "the bug is still there: {out}");
    } else {
        assert_eq!(status, 0, "{out}");
        me.fixed = Some((before, now_ms()));
    }
    (me, lab)
}

/// The board on a projector: tests/browser/board.mjs in headless Chromium, showing `expect`.
struct Projector {
    child: tokio::process::Child,
    lines: tokio::io::Lines<tokio::io::BufReader<tokio::process::ChildStdout>>,
}

impl Projector {
    /// Opens the board and returns once it shows `expect`; with `then`, the page stays
    /// open until it shows that too (by itself, no reload).
    async fn open(app: &TestApp, expect: &Value, then: Option<&Value>) -> Projector {
        use tokio::io::AsyncBufReadExt;
        let dir = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/browser");
        let mut command = tokio::process::Command::new("node");
        command
            .arg("board.mjs")
            .current_dir(dir)
            .env("ROOM_URL", &app.url)
            .env("ADMIN_TOKEN", ADMIN_TOKEN)
            .env("EXPECT", expect.to_string())
            .stdout(std::process::Stdio::piped())
            .kill_on_drop(true);
        if let Some(then) = then {
            command.env("THEN", then.to_string());
        }
        let mut child = command.spawn().expect("node runs (tests/browser: npm ci)");
        let mut lines = tokio::io::BufReader::new(child.stdout.take().unwrap()).lines();
        let shown = tokio::time::timeout(Duration::from_secs(60), lines.next_line()).await.expect("the board opens");
        assert_eq!(shown.unwrap().as_deref(), Some("shown"), "the board shows {expect}");
        Projector { child, lines }
    }

    /// What the page showed at the end: its rows, the stuck and its status.
    async fn rendered(mut self) -> Value {
        let last = tokio::time::timeout(Duration::from_secs(90), self.lines.next_line()).await.expect("the page ends");
        let last = last.unwrap().unwrap_or_default();
        let status = self.child.wait().await.unwrap();
        assert!(status.success(), "{last}");
        serde_json::from_str(&last).unwrap_or_else(|_| panic!("{last}"))
    }
}

/// The page shows the board's JSON: every row in order, as text, the podium, the stuck.
fn assert_rendered(page: &Value, board: &Value) {
    let rows = page["rows"].as_array().unwrap();
    let attendees = board["attendees"].as_array().unwrap();
    assert_eq!(rows.len(), attendees.len(), "{page}");
    for (shown, attendee) in rows.iter().zip(attendees) {
        assert_eq!(shown["name"], attendee["name"]);
        assert_eq!(shown["state"], attendee["state"], "{}", attendee["name"]);
        assert_eq!(shown["hints"], attendee["hints"].to_string(), "{}", attendee["name"]);
        assert_eq!(shown["podium"], attendee["rank"].is_u64(), "{}", attendee["name"]);
        assert_eq!(shown["fix"] != "", attendee["seconds_to_fix"].is_f64(), "{}", attendee["name"]);
    }
    assert_eq!(page["stuck"], board["stuck"]);
}

fn row<'a>(board: &'a Value, name: &str) -> &'a Value {
    board["attendees"].as_array().unwrap().iter().find(|a| a["name"] == name).unwrap_or_else(|| panic!("{name}"))
}

async fn thirty_attendees_reproduce_fix_and_ask_for_hints(backend: Backend) {
    let app = presenter(backend).await;
    let code = code(&app).await;
    let mut live = Events::open_admin(&app, "/room/events").await;
    let first = live.next("room", Duration::from_secs(5)).await.expect("the board at once");
    assert_eq!(first["counts"], json!({ "joined": 0, "reproduced": 0, "fixed": 0 }));

    let runs = futures_util::stream::iter(0..30).map(|i| attend(i, app.url.clone(), code.clone()));
    let done: Vec<(Attendee, TestApp)> = runs.buffer_unordered(6).collect().await;
    let (attendees, labs): (Vec<Attendee>, Vec<TestApp>) = done.into_iter().unzip();

    let expected = json!({ "joined": 30, "reproduced": 20, "fixed": 20 });
    let pushed = live.until("room", Duration::from_secs(10), |b| b["counts"] == expected).await;
    assert!(pushed.is_some(), "the live board reached {expected}");
    let state = board(&app).await;
    assert_eq!(state["counts"], expected, "{state}");
    assert_eq!(state["open"], true);
    for a in &attendees {
        let row = row(&state, &a.name);
        let joined_at = row["joined_at"].as_i64().unwrap();
        assert!((a.joined.0..=a.joined.1).contains(&joined_at), "{}: joined when it did", a.name);
        assert_eq!(row["hints"], a.hints, "{}: hints", a.name);
        assert_eq!(row["checks"], a.checks, "{}: checks", a.name);
        assert_eq!(row["reproduced_at"].is_i64(), a.reproduced, "{}: reproduced", a.name);
        match a.fixed {
            Some((from, to)) => {
                assert_eq!(row["state"], "fixed", "{}", a.name);
                let seconds = row["seconds_to_fix"].as_f64().unwrap();
                let earliest = (from - a.joined.1) as f64 / 1000.0;
                let latest = (to - a.joined.0) as f64 / 1000.0;
                assert!(seconds >= earliest - 0.001 && seconds <= latest + 0.001, "{}: {seconds}", a.name);
                assert_eq!(row["last_verdict"], "check pass");
                assert!(row["last_detail"].as_str().unwrap().contains("one more download"), "{row}");
            }
            None => {
                assert_eq!(row["state"], "reproduced", "{}", a.name);
                assert!(row["seconds_to_fix"].is_null());
                assert_eq!(row["last_verdict"], "check fail");
                assert!(row["last_detail"].as_str().unwrap().contains("still stale"), "{row}");
            }
        }
    }
    // The first three to fix, in order, and the stuck: unfixed, longest in the room first.
    let rows = state["attendees"].as_array().unwrap();
    let mut fixed: Vec<(i64, &str)> =
        rows.iter().filter_map(|r| Some((r["fixed_at"].as_i64()?, r["name"].as_str()?))).collect();
    fixed.sort();
    for (rank, (_, name)) in fixed.iter().take(3).enumerate() {
        assert_eq!(row(&state, name)["rank"], rank + 1, "{name}");
    }
    assert_eq!(rows.iter().filter(|r| r["rank"].is_u64()).count(), 3);
    let mut stuck: Vec<(i64, &str)> = rows
        .iter()
        .filter(|r| r["fixed_at"].is_null())
        .map(|r| (r["joined_at"].as_i64().unwrap(), r["name"].as_str().unwrap()))
        .collect();
    stuck.sort();
    let stuck: Vec<&str> = stuck.iter().take(5).map(|(_, n)| *n).collect();
    assert_eq!(state["stuck"], json!(stuck));

    let csv = admin_get(&app, "/room/export.csv").await;
    assert_eq!(csv.status(), 200);
    let csv = csv.text().await.unwrap();
    assert_eq!(csv.lines().count(), 31, "{csv}");
    assert_eq!(csv.lines().filter(|l| l.contains(",fixed,")).count(), 20);

    // On the projector: exactly what the JSON says.
    assert_rendered(&Projector::open(&app, &expected, None).await.rendered().await, &state);

    // The presenter's lab restarts: the board is the same, the stream ends and a new one
    // carries on, and the stuck attendees' next reports land — on a page left open too.
    let later = json!({ "joined": 30, "reproduced": 20, "fixed": 21 });
    let open_page = Projector::open(&app, &expected, Some(&later)).await;
    let app = app.restart_in_place().await;
    assert!(live.ends_within(Duration::from_secs(5)).await, "the old stream ended with the old server");
    let after = board(&app).await;
    assert_eq!(after, state, "the board survives a restart");
    let mut live = Events::open_admin(&app, "/room/events").await;
    let still = attendees.iter().zip(&labs).find(|(a, _)| a.fixed.is_none()).unwrap();
    let (me, lab) = still;
    lab.post_admin("/admin/bugs/stats-cache", Some(ADMIN_TOKEN), Some(&json!({ "fixed": true }))).await;
    let (status, out) = breakroom(lab.data_dir(), &["check", SCENARIO, "--url", &lab.url]).await;
    assert_eq!(status, 0, "{out}");
    let pushed = live.until("room", Duration::from_secs(10), |b| b["counts"] == later).await;
    assert!(pushed.is_some(), "the restarted board is live: {later}");
    let final_board = board(&app).await;
    assert_eq!(row(&final_board, &me.name)["checks"], 2);
    let page = open_page.rendered().await;
    assert_rendered(&page, &final_board);
    assert_eq!(page["status"], "live", "the page reconnected by itself");

    // Leaving stops the reports; joining again under the same name is the same attendee.
    let check = ["check", SCENARIO, "--url", &lab.url];
    let (status, out) = breakroom(lab.data_dir(), &["join", "--leave"]).await;
    assert!(status == 0 && out.contains("Left room"), "{out}");
    let (status, out) = breakroom(lab.data_dir(), &check).await;
    assert!(status == 0 && !out.contains("reported to room"), "{out}");
    assert_eq!(row(&board(&app).await, &me.name)["checks"], 2, "a check after leaving is not the room's");
    let (status, out) = breakroom(lab.data_dir(), &["join", &app.url, &code, "--name", &me.name]).await;
    assert!(status == 0 && out.contains("Back in room"), "{out}");
    let (status, out) = breakroom(lab.data_dir(), &check).await;
    assert!(status == 0 && out.contains("reported to room"), "{out}");
    let back = board(&app).await;
    assert_eq!(row(&back, &me.name)["checks"], 3, "back in, the same row counts on");
    assert_eq!(back["counts"]["joined"], 30, "and nobody new joined");
    let membership = std::fs::metadata(lab.data_dir().join("room.json")).unwrap();
    use std::os::unix::fs::PermissionsExt;
    assert_eq!(membership.permissions().mode() & 0o777, 0o600, "the attendee's secret is theirs alone");
}

async fn join(app: &TestApp, code: &str, name: &str) -> reqwest::Response {
    app.post_json("/room/join", &json!({ "code": code, "name": name })).await
}

async fn expect_refused(response: reqwest::Response, status: u16, says: &str) {
    assert_eq!(response.status(), status);
    let body: Value = response.json().await.unwrap();
    assert!(body["detail"].as_str().unwrap().contains(says), "{body}");
}

async fn bad_reports_are_refused_and_change_nothing(backend: Backend) {
    let app = presenter(backend).await;
    let code = code(&app).await;
    let ann: Value = join(&app, &code, "Ann & Bob's").await.json().await.unwrap();
    let cy: Value = join(&app, &code, "Cy").await.json().await.unwrap();
    let report = |who: &Value, secret: &Value, extra: Value| {
        let mut body = json!({ "code": code, "attendee": who["attendee"], "secret": secret, "scenario": SCENARIO,
                               "kind": "check", "outcome": "pass", "detail": "fine" });
        for (k, v) in extra.as_object().unwrap() {
            body[k] = v.clone();
        }
        body
    };
    let before = board(&app).await;

    expect_refused(join(&app, "ZZZZZZ", "Eve").await, 403, "Wrong room code").await;
    expect_refused(join(&app, &code, &"x".repeat(10_000)).await, 400, "at most 40").await;
    expect_refused(join(&app, &code, "<img src=x onerror=alert(1)>").await, 400, "plain text").await;
    expect_refused(join(&app, &code, "C\u{200B}y").await, 400, "invisible").await;
    expect_refused(join(&app, &code, "\u{202E}yC").await, 400, "invisible").await;
    expect_refused(join(&app, &code, "cy").await, 409, "already called").await;
    let refused = [
        (report(&cy, &ann["secret"], json!({})), 403, "wrong secret"),
        (report(&ann, &json!("0".repeat(32)), json!({})), 403, "wrong secret"),
        (report(&json!({ "attendee": "nobody" }), &ann["secret"], json!({})), 403, "Unknown attendee"),
        (report(&json!({ "attendee": "0123456789abcde\u{0}" }), &ann["secret"], json!({})), 403, "Unknown attendee"),
        (report(&ann, &json!("\u{0}".repeat(32)), json!({})), 403, "wrong secret"),
        (report(&ann, &ann["secret"], json!({ "code": "ZZZZZZ" })), 403, "Wrong room code"),
        (report(&ann, &ann["secret"], json!({ "scenario": "vote/referral" })), 400, "datasets/stats-cache"),
        (report(&ann, &ann["secret"], json!({ "kind": "explain" })), 400, "kind is one of"),
        (report(&ann, &ann["secret"], json!({ "outcome": "maybe" })), 400, "pass, fail, trouble"),
        (report(&ann, &ann["secret"], json!({ "kind": "hint", "outcome": null, "hints": 7 })), 400, "1, 2 or 3"),
        (report(&ann, &ann["secret"], json!({ "detail": "d".repeat(3000) })), 400, "longer than 2000"),
    ];
    for (body, status, says) in refused {
        expect_refused(app.post_json("/room/report", &body).await, status, says).await;
    }
    let unknown = report(&ann, &ann["secret"], json!({ "admin": true }));
    assert_eq!(app.post_json("/room/report", &unknown).await.status(), 422);
    assert_eq!(app.post_raw("/room/report", "application/json", "{not json").await.status(), 422);
    for path in ["/room/state", "/room/events", "/room/export.csv", "/room/card"] {
        assert_eq!(app.get(path).await.status(), 401, "{path} needs the admin token");
    }
    assert_eq!(app.post_admin("/room/close", None, None).await.status(), 401);
    let after = board(&app).await;
    assert_eq!(after, before, "nothing refused changed the board");
    let names: Vec<&str> = after["attendees"].as_array().unwrap().iter().map(|a| a["name"].as_str().unwrap()).collect();
    assert_eq!(names, ["Ann & Bob's", "Cy"]);

    // The pages: the board's shell and the join page need no token, and carry no data.
    let page = app.get("/room").await;
    assert_eq!(page.status(), 200);
    let page = page.text().await.unwrap();
    assert!(page.contains("/static/room.js") && !page.contains("Ann"), "the board's data comes with the token");
    let join_page = app.get(&format!("/room/join?code={code}")).await.text().await.unwrap();
    assert!(join_page.contains(&format!("breakroom join {} {code} --name", app.url)), "{join_page}");
    assert!(!app.get("/room/join").await.text().await.unwrap().contains(&code), "no code without the link's");

    // A flood from one attendee: ten get through, the rest wait, and only those count.
    let mut accepted = 0;
    let flood = report(&ann, &ann["secret"], json!({}));
    let flood = futures_util::future::join_all((0..40).map(|_| app.post_json("/room/report", &flood))).await;
    for response in flood {
        match response.status().as_u16() {
            200 => accepted += 1,
            429 => assert!(response.headers().contains_key("retry-after")),
            other => panic!("{other}"),
        }
    }
    assert!((10..=12).contains(&accepted), "{accepted} of 40 accepted");
    let ann_row = row(&board(&app).await, "Ann & Bob's").clone();
    assert_eq!(ann_row["checks"], accepted);
    assert_eq!(row(&board(&app).await, "Cy")["checks"], 0, "Cy's bucket is Cy's");
    let cy_report = report(&cy, &cy["secret"], json!({ "outcome": "fail" }));
    assert_eq!(app.post_json("/room/report", &cy_report).await.status(), 200);

    // Closed: nobody joins or reports, the board stays.
    let closed = app.post_admin("/room/close", Some(ADMIN_TOKEN), None).await;
    assert_eq!(closed.status(), 200);
    expect_refused(join(&app, &code, "Late").await, 409, "closed").await;
    expect_refused(app.post_json("/room/report", &cy_report).await, 409, "closed").await;
    let closed = board(&app).await;
    assert_eq!(closed["open"], false);
    assert_eq!(closed["counts"], json!({ "joined": 2, "reproduced": 1, "fixed": 1 }));
    // A restart of a lab whose room was closed opens a new room.
    let app = app.restart().await;
    let fresh = board(&app).await;
    assert_ne!(fresh["code"], closed["code"]);
    assert_eq!(fresh["counts"]["joined"], 0);
}

/// Joins `count` attendees, each waiting out the address limit when the room says so.
async fn join_many(app: &TestApp, code: &str, count: usize) {
    for i in 0..count {
        loop {
            let response = join(app, code, &format!("attendee {i}")).await;
            match response.status().as_u16() {
                201 => break,
                429 => {
                    let wait: u64 = response.headers()["retry-after"].to_str().unwrap().parse().unwrap();
                    tokio::time::sleep(Duration::from_secs(wait)).await;
                }
                other => panic!("join {i}: {other}"),
            }
        }
    }
}

async fn a_room_holds_five_hundred(backend: Backend) {
    let app = presenter(backend).await;
    let code = code(&app).await;
    join_many(&app, &code, 500).await;
    let state = board(&app).await;
    assert_eq!(state["counts"]["joined"], 500);
    // One address flooding the room with the right code is refused once its burst is
    // spent: only those let in count.
    // All at once, so the machine's speed does not decide how many the bucket refills.
    let names: Vec<String> = (0..400).map(|i| format!("flood {i}")).collect();
    let flood = futures_util::future::join_all(names.iter().map(|name| join(&app, &code, name))).await;
    let (mut admitted, mut limited) = (0, 0);
    for response in flood {
        match response.status().as_u16() {
            201 => admitted += 1,
            429 => limited += 1,
            other => panic!("flood: {other}"),
        }
    }
    assert!(limited > 0 && admitted < 400, "a flood from one address is rate-limited: {admitted} let in");
    assert_eq!(self::board(&app).await["counts"]["joined"], 500 + admitted);
}
