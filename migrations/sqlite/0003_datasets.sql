-- datasets lab: research datasets, their users, and the audit log statistics come from.
CREATE TABLE IF NOT EXISTS research_users (
    id        TEXT PRIMARY KEY,
    username  TEXT NOT NULL UNIQUE,
    token     TEXT NOT NULL UNIQUE
);

CREATE TABLE IF NOT EXISTS datasets (
    id             TEXT PRIMARY KEY,
    name           TEXT NOT NULL,
    description    TEXT NOT NULL,
    file_type      TEXT NOT NULL,
    size_bytes     INTEGER NOT NULL,
    privacy        TEXT NOT NULL CHECK (privacy IN ('public', 'private')),
    owner_id       TEXT NOT NULL REFERENCES research_users (id),
    last_accessed  TEXT NULL,
    created_at     TEXT NOT NULL
);

CREATE TABLE IF NOT EXISTS audit_logs (
    id           INTEGER PRIMARY KEY AUTOINCREMENT,
    user_id      TEXT NOT NULL REFERENCES research_users (id),
    action       TEXT NOT NULL CHECK (action IN ('view', 'download', 'upload', 'delete', 'modify', 'share')),
    object_type  TEXT NOT NULL,
    object_id    TEXT NOT NULL,
    timestamp    TEXT NOT NULL,
    ip           TEXT NULL
);

CREATE INDEX IF NOT EXISTS idx_audit_logs_object ON audit_logs (object_type, object_id, action);
