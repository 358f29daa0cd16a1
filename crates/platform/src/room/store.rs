//! The room in the lab's database (migrations `0010_room.sql`): the room a lab opened
//! and its attendees. Every change is one statement, so reports arriving together
//! cannot undo each other.

use crate::db::Db;
use crate::on_pool;

/// A room as stored.
#[derive(Debug, Clone, sqlx::FromRow)]
pub struct RoomRow {
    pub code: String,
    pub opened_at: i64,
    pub closed_at: Option<i64>,
}

/// An attendee as stored (the secret stays in the database).
#[derive(Debug, Clone, sqlx::FromRow)]
pub struct AttendeeRow {
    pub name: String,
    pub joined_at: i64,
    pub reproduced_at: Option<i64>,
    pub fixed_at: Option<i64>,
    pub hints: i64,
    pub checks: i64,
    pub last_scenario: Option<String>,
    pub last_verdict: Option<String>,
    pub last_detail: Option<String>,
    pub last_report_at: i64,
}

/// What one report changes.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Change {
    pub reproduced: bool,
    pub fixed: bool,
    /// Hints seen for the scenario (the attendee's count is the most seen).
    pub hints: i64,
    /// 1 for a check's verdict.
    pub checks: i64,
    pub scenario: String,
    /// Kept as it was when None (a hint carries no verdict).
    pub verdict: Option<String>,
    pub detail: Option<String>,
}

pub fn now_ms() -> i64 {
    std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map(|d| d.as_millis() as i64).unwrap_or_default()
}

/// The open room, if any: the first opened, so replicas that started together and each
/// opened one all settle on the same.
pub async fn open_room(db: &Db) -> Result<Option<RoomRow>, sqlx::Error> {
    let sql = "SELECT code, opened_at, closed_at FROM room WHERE closed_at IS NULL ORDER BY opened_at, code LIMIT 1";
    on_pool!(db, |p| sqlx::query_as(sql).fetch_optional(p).await)
}

pub async fn room(db: &Db, code: &str) -> Result<Option<RoomRow>, sqlx::Error> {
    let sql = "SELECT code, opened_at, closed_at FROM room WHERE code = $1";
    on_pool!(db, |p| sqlx::query_as(sql).bind(code).fetch_optional(p).await)
}

pub async fn create(db: &Db, code: &str, opened_at: i64) -> Result<(), sqlx::Error> {
    let sql = "INSERT INTO room (code, opened_at) VALUES ($1, $2)";
    on_pool!(db, |p| sqlx::query(sql).bind(code).bind(opened_at).execute(p).await.map(drop))
}

/// Closes the room; false when it was closed already.
pub async fn close(db: &Db, code: &str, at: i64) -> Result<bool, sqlx::Error> {
    let sql = "UPDATE room SET closed_at = $1 WHERE code = $2 AND closed_at IS NULL";
    on_pool!(db, |p| sqlx::query(sql).bind(at).bind(code).execute(p).await.map(|r| r.rows_affected() == 1))
}

pub async fn closed_at(db: &Db, code: &str) -> Result<Option<i64>, sqlx::Error> {
    let sql = "SELECT closed_at FROM room WHERE code = $1";
    let row: Option<(Option<i64>,)> = on_pool!(db, |p| sqlx::query_as(sql).bind(code).fetch_optional(p).await)?;
    Ok(row.and_then(|(closed,)| closed))
}

pub async fn attendee_count(db: &Db, code: &str) -> Result<i64, sqlx::Error> {
    let sql = "SELECT COUNT(*) FROM room_attendee WHERE room = $1";
    on_pool!(db, |p| sqlx::query_scalar(sql).bind(code).fetch_one(p).await)
}

/// A new attendee; false when the room has one by that name already.
pub async fn join(db: &Db, code: &str, id: &str, name: &str, secret: &str, at: i64) -> Result<bool, sqlx::Error> {
    let sql = "INSERT INTO room_attendee (id, room, name, name_key, secret, joined_at, last_report_at) \
               VALUES ($1, $2, $3, $4, $5, $6, $6) ON CONFLICT (room, name_key) DO NOTHING";
    let key = name.to_lowercase();
    on_pool!(db, |p| sqlx::query(sql)
        .bind(id)
        .bind(code)
        .bind(name)
        .bind(&key)
        .bind(secret)
        .bind(at)
        .execute(p)
        .await
        .map(|r| r.rows_affected() == 1))
}

/// The secret of an attendee of the room, if there is one by that id.
pub async fn secret(db: &Db, code: &str, id: &str) -> Result<Option<String>, sqlx::Error> {
    let sql = "SELECT secret FROM room_attendee WHERE room = $1 AND id = $2";
    on_pool!(db, |p| sqlx::query_scalar(sql).bind(code).bind(id).fetch_optional(p).await)
}

/// Applies one report: the first reproduction and the first fix keep their time.
pub async fn apply(db: &Db, id: &str, change: &Change, at: i64) -> Result<(), sqlx::Error> {
    let sql = "UPDATE room_attendee SET \
               reproduced_at = CASE WHEN $2 THEN COALESCE(reproduced_at, $3) ELSE reproduced_at END, \
               fixed_at = CASE WHEN $4 THEN COALESCE(fixed_at, $3) ELSE fixed_at END, \
               hints = CASE WHEN $5 > hints THEN $5 ELSE hints END, \
               checks = checks + $6, \
               last_scenario = $7, \
               last_verdict = COALESCE($8, last_verdict), \
               last_detail = COALESCE($9, last_detail), \
               last_report_at = $3 \
               WHERE id = $1";
    on_pool!(db, |p| sqlx::query(sql)
        .bind(id)
        .bind(change.reproduced)
        .bind(at)
        .bind(change.fixed)
        .bind(change.hints)
        .bind(change.checks)
        .bind(&change.scenario)
        .bind(&change.verdict)
        .bind(&change.detail)
        .execute(p)
        .await
        .map(drop))
}

/// Every attendee of the room, in the order they joined.
pub async fn attendees(db: &Db, code: &str) -> Result<Vec<AttendeeRow>, sqlx::Error> {
    let sql = "SELECT name, joined_at, reproduced_at, fixed_at, hints, checks, last_scenario, last_verdict, \
               last_detail, last_report_at FROM room_attendee WHERE room = $1 ORDER BY joined_at, name";
    on_pool!(db, |p| sqlx::query_as(sql).bind(code).fetch_all(p).await)
}
