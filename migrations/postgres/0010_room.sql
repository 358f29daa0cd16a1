-- Workshop rooms (`serve LAB --room`, crates/platform/src/room): the room a lab opened
-- and everyone who joined it, with what their `demonstrate`, `check` and `hint`
-- reported. Kept in the lab's database so the board survives a restart of the lab.
-- Times are milliseconds since the Unix epoch, on the presenter's clock.
CREATE TABLE IF NOT EXISTS room (
    code       TEXT PRIMARY KEY,
    opened_at  BIGINT NOT NULL,
    closed_at  BIGINT
);

CREATE TABLE IF NOT EXISTS room_attendee (
    id             TEXT PRIMARY KEY,
    room           TEXT NOT NULL REFERENCES room (code) ON DELETE CASCADE,
    name           TEXT NOT NULL,
    -- The name folded to lower case: two attendees may not share one on the board.
    name_key       TEXT NOT NULL,
    secret         TEXT NOT NULL,
    joined_at      BIGINT NOT NULL,
    reproduced_at  BIGINT,
    fixed_at       BIGINT,
    hints          BIGINT NOT NULL DEFAULT 0,
    checks         BIGINT NOT NULL DEFAULT 0,
    last_scenario  TEXT,
    last_verdict   TEXT,
    last_detail    TEXT,
    last_report_at BIGINT NOT NULL,
    UNIQUE (room, name_key)
);
