-- vote lab: the durable record of every vote and the referral partners it is checked against.
CREATE TABLE IF NOT EXISTS referral_partners (
    id          BIGSERIAL PRIMARY KEY,
    code        TEXT NOT NULL UNIQUE,
    name        TEXT NOT NULL,
    created_at  TIMESTAMPTZ NOT NULL DEFAULT now()
);

CREATE TABLE IF NOT EXISTS votes (
    id             BIGSERIAL PRIMARY KEY,
    choice         TEXT NOT NULL,
    referral_code  TEXT NULL,
    created_at     TIMESTAMPTZ NOT NULL DEFAULT now()
);

CREATE INDEX IF NOT EXISTS idx_votes_choice ON votes (choice);
