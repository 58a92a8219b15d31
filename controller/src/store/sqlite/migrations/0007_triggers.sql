-- Webhook triggers (decision 0017): POST /hooks/NAME starts a run of `pipeline` for a caller
-- that proves it holds `secret` (a bearer token, or the key of the body's HMAC-SHA256).
CREATE TABLE triggers (
    name       TEXT PRIMARY KEY,
    pipeline   TEXT NOT NULL,
    secret     TEXT NOT NULL,
    created_at INTEGER NOT NULL
) WITHOUT ROWID;
