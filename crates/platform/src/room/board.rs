//! The board: what the room's reports add up to — counts, a row per attendee in the
//! order the room cares about (fixed first, by when), the first three to fix, and who
//! has been stuck longest — as JSON for `/room/state` and the live page, and as CSV.

use serde::Serialize;

use super::store::{AttendeeRow, RoomRow};

/// How many of the longest-stuck attendees the board names.
const STUCK_SHOWN: usize = 5;

#[derive(Debug, Serialize, PartialEq)]
pub struct Board {
    pub code: String,
    pub lab: &'static str,
    pub open: bool,
    pub opened_at: i64,
    pub closed_at: Option<i64>,
    pub counts: Counts,
    pub attendees: Vec<Attendee>,
    /// Names of the attendees not fixed yet, longest in the room first.
    pub stuck: Vec<String>,
}

#[derive(Debug, Serialize, PartialEq)]
pub struct Counts {
    pub joined: usize,
    pub reproduced: usize,
    pub fixed: usize,
}

#[derive(Debug, Serialize, PartialEq)]
pub struct Attendee {
    pub name: String,
    /// `fixed`, `reproduced` or `joined`.
    pub state: &'static str,
    pub joined_at: i64,
    pub reproduced_at: Option<i64>,
    pub fixed_at: Option<i64>,
    /// From joining to the first passing check.
    pub seconds_to_fix: Option<f64>,
    pub hints: i64,
    pub checks: i64,
    /// 1, 2 or 3 for the first three to fix.
    pub rank: Option<usize>,
    pub last_scenario: Option<String>,
    pub last_verdict: Option<String>,
    pub last_detail: Option<String>,
    pub last_report_at: i64,
}

fn state(row: &AttendeeRow) -> &'static str {
    if row.fixed_at.is_some() {
        "fixed"
    } else if row.reproduced_at.is_some() {
        "reproduced"
    } else {
        "joined"
    }
}

pub fn board(room: &RoomRow, lab: &'static str, rows: Vec<AttendeeRow>) -> Board {
    let mut attendees: Vec<Attendee> = rows
        .into_iter()
        .map(|row| Attendee {
            state: state(&row),
            seconds_to_fix: row.fixed_at.map(|fixed| (fixed - row.joined_at).max(0) as f64 / 1000.0),
            name: row.name,
            joined_at: row.joined_at,
            reproduced_at: row.reproduced_at,
            fixed_at: row.fixed_at,
            hints: row.hints,
            checks: row.checks,
            rank: None,
            last_scenario: row.last_scenario,
            last_verdict: row.last_verdict,
            last_detail: row.last_detail,
            last_report_at: row.last_report_at,
        })
        .collect();
    // Fixed first, in the order they fixed it; then reproduced, then joined, each by when.
    let order = |a: &Attendee| match (a.fixed_at, a.reproduced_at) {
        (Some(fixed), _) => (0, fixed),
        (None, Some(reproduced)) => (1, reproduced),
        (None, None) => (2, a.joined_at),
    };
    attendees.sort_by(|a, b| order(a).cmp(&order(b)).then_with(|| a.name.cmp(&b.name)));
    for (i, attendee) in attendees.iter_mut().take_while(|a| a.fixed_at.is_some()).take(3).enumerate() {
        attendee.rank = Some(i + 1);
    }
    let mut stuck: Vec<&Attendee> = attendees.iter().filter(|a| a.fixed_at.is_none()).collect();
    stuck.sort_by(|a, b| a.joined_at.cmp(&b.joined_at).then_with(|| a.name.cmp(&b.name)));
    let stuck = stuck.into_iter().take(STUCK_SHOWN).map(|a| a.name.clone()).collect();
    let counts = Counts {
        joined: attendees.len(),
        reproduced: attendees.iter().filter(|a| a.reproduced_at.is_some()).count(),
        fixed: attendees.iter().filter(|a| a.fixed_at.is_some()).count(),
    };
    Board {
        code: room.code.clone(),
        lab,
        open: room.closed_at.is_none(),
        opened_at: room.opened_at,
        closed_at: room.closed_at,
        counts,
        attendees,
        stuck,
    }
}

/// One CSV field: quoted when it must be, and a leading `=`, `+`, `-` or `@` defused so
/// a spreadsheet shows a name instead of running it as a formula.
fn field(text: &str) -> String {
    let text = if text.starts_with(['=', '+', '-', '@', '\t', '\r']) { format!("'{text}") } else { text.to_string() };
    if text.contains([',', '"', '\n', '\r']) { format!("\"{}\"", text.replace('"', "\"\"")) } else { text }
}

/// The board as CSV, one row per attendee; times in seconds from the room's opening.
pub fn csv(board: &Board) -> String {
    let mut out = String::from(
        "name,state,joined_s,reproduced_s,fixed_s,seconds_to_fix,hints,checks,last_scenario,last_verdict,last_detail\n",
    );
    let since =
        |at: Option<i64>| at.map(|t| format!("{:.1}", (t - board.opened_at) as f64 / 1000.0)).unwrap_or_default();
    for a in &board.attendees {
        let row = [
            field(&a.name),
            a.state.to_string(),
            since(Some(a.joined_at)),
            since(a.reproduced_at),
            since(a.fixed_at),
            a.seconds_to_fix.map(|s| format!("{s:.1}")).unwrap_or_default(),
            a.hints.to_string(),
            a.checks.to_string(),
            field(a.last_scenario.as_deref().unwrap_or_default()),
            field(a.last_verdict.as_deref().unwrap_or_default()),
            field(a.last_detail.as_deref().unwrap_or_default()),
        ];
        out.push_str(&row.join(","));
        out.push('\n');
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn row(name: &str, joined: i64, reproduced: Option<i64>, fixed: Option<i64>) -> AttendeeRow {
        AttendeeRow {
            name: name.into(),
            joined_at: joined,
            reproduced_at: reproduced,
            fixed_at: fixed,
            hints: 0,
            checks: 0,
            last_scenario: None,
            last_verdict: None,
            last_detail: None,
            last_report_at: joined,
        }
    }

    #[test]
    fn fixed_come_first_the_first_three_are_ranked_and_the_oldest_unfixed_are_stuck() {
        let room = RoomRow { code: "ABC234".into(), opened_at: 0, closed_at: None };
        let rows = vec![
            row("ann", 1_000, Some(2_000), Some(61_000)),
            row("bob", 2_000, None, None),
            row("cy", 3_000, Some(4_000), Some(20_000)),
            row("di", 500, Some(9_000), None),
            row("ed", 4_000, Some(5_000), Some(30_000)),
            row("flo", 100, None, Some(90_000)),
        ];
        let b = board(&room, "datasets", rows);
        let names: Vec<&str> = b.attendees.iter().map(|a| a.name.as_str()).collect();
        assert_eq!(names, ["cy", "ed", "ann", "flo", "di", "bob"]);
        let ranks: Vec<Option<usize>> = b.attendees.iter().map(|a| a.rank).collect();
        assert_eq!(ranks, [Some(1), Some(2), Some(3), None, None, None]);
        assert_eq!(b.counts, Counts { joined: 6, reproduced: 4, fixed: 4 });
        assert_eq!(b.attendees[0].seconds_to_fix, Some(17.0));
        assert_eq!(b.attendees[3].state, "fixed");
        assert_eq!(b.attendees[4].state, "reproduced");
        assert_eq!(b.attendees[5].state, "joined");
        assert_eq!(b.stuck, ["di", "bob"], "unfixed, longest in the room first");
    }

    #[test]
    fn csv_quotes_and_defuses_formulas() {
        let room = RoomRow { code: "ABC234".into(), opened_at: 1_000, closed_at: None };
        let mut evil = row("=HYPERLINK(\"x\")", 2_000, None, Some(12_500));
        evil.last_detail = Some("a, \"b\"\nc".into());
        let text = csv(&board(&room, "vote", vec![evil]));
        let mut lines = text.lines();
        assert!(lines.next().unwrap().starts_with("name,state,"));
        assert_eq!(lines.next().unwrap(), "\"'=HYPERLINK(\"\"x\"\")\",fixed,1.0,,11.5,10.5,0,0,,,\"a, \"\"b\"\"");
    }
}
