-- Times are unix seconds (INTEGER). Secrets are stored only as hashes (BLOB).

CREATE TABLE server_secrets (
    name  TEXT PRIMARY KEY,
    value BLOB NOT NULL
);

CREATE TABLE signing_keys (
    kid        TEXT PRIMARY KEY,
    seed       BLOB NOT NULL,          -- Ed25519 private seed; the database is as sensitive as a key file
    created_at INTEGER NOT NULL,
    retired_at INTEGER                 -- NULL: the key that signs now
);
-- At most one active key, whatever races between instances or a concurrent `keys rotate`.
CREATE UNIQUE INDEX signing_keys_one_active ON signing_keys ((retired_at IS NULL)) WHERE retired_at IS NULL;

CREATE TABLE users (
    id            TEXT PRIMARY KEY,
    email         TEXT UNIQUE,               -- NULL for a passwordless account made from a device
    password_hash TEXT,
    created_at    INTEGER NOT NULL
);

CREATE TABLE clients (
    id           TEXT PRIMARY KEY,
    name         TEXT NOT NULL,
    secret_hash  BLOB,                 -- NULL for public clients
    created_at   INTEGER NOT NULL
);
INSERT INTO clients (id, name, secret_hash, created_at) VALUES
    ('latchkey-cli', 'Latchkey CLI', NULL, 0),
    ('latchkey-web', 'Latchkey web', NULL, 0);

CREATE TABLE devices (
    id                 TEXT PRIMARY KEY,
    user_id            TEXT NOT NULL REFERENCES users(id) ON DELETE CASCADE,
    name               TEXT NOT NULL,
    kind               TEXT NOT NULL,
    os                 TEXT NOT NULL,
    browser            TEXT NOT NULL,
    user_agent         TEXT NOT NULL,
    authorized_by      TEXT NOT NULL,  -- password, device_code, pairing, qr
    approved_by_device TEXT,
    first_seen_at      INTEGER NOT NULL,
    last_seen_at       INTEGER NOT NULL,
    last_ip            TEXT NOT NULL,
    trusted_until      INTEGER,
    revoked_at         INTEGER
);
CREATE INDEX devices_user ON devices (user_id, revoked_at);

CREATE TABLE sessions (
    id              TEXT PRIMARY KEY,
    user_id         TEXT NOT NULL REFERENCES users(id) ON DELETE CASCADE,
    device_id       TEXT NOT NULL REFERENCES devices(id) ON DELETE CASCADE,
    client_id       TEXT NOT NULL REFERENCES clients(id),
    scope           TEXT NOT NULL,
    amr             TEXT NOT NULL,     -- space-separated RFC 8176 values
    web_token_hash  BLOB UNIQUE,       -- browser sessions: SHA-256 of the cookie's token
    created_at      INTEGER NOT NULL,
    last_used_at    INTEGER NOT NULL,
    expires_at      INTEGER NOT NULL,  -- absolute lifetime
    revoked_at      INTEGER,
    revoke_reason   TEXT
);
CREATE INDEX sessions_user ON sessions (user_id, revoked_at);
CREATE INDEX sessions_device ON sessions (device_id);

CREATE TABLE refresh_tokens (
    hash           BLOB PRIMARY KEY,
    session_id     TEXT NOT NULL REFERENCES sessions(id) ON DELETE CASCADE,
    client_id      TEXT NOT NULL,
    created_at     INTEGER NOT NULL,
    expires_at     INTEGER NOT NULL,   -- idle lifetime, never past the session's absolute one
    superseded_at  INTEGER,
    successor_hash BLOB
);
CREATE INDEX refresh_tokens_session ON refresh_tokens (session_id);

CREATE TABLE audit_events (
    id         INTEGER PRIMARY KEY AUTOINCREMENT,
    at         INTEGER NOT NULL,
    kind       TEXT NOT NULL,
    user_id    TEXT,
    device_id  TEXT,
    ip         TEXT,
    user_agent TEXT,
    detail     TEXT NOT NULL DEFAULT '{}'
);
CREATE INDEX audit_events_user ON audit_events (user_id, id);

-- Sliding-window counters for per-IP, per-account and global limits, shared by every instance:
-- the count of the current fixed window and of the one before it, weighted by overlap.
CREATE TABLE rate_limits (
    key          TEXT PRIMARY KEY,
    window_start INTEGER NOT NULL,
    count        INTEGER NOT NULL,
    prev_count   INTEGER NOT NULL DEFAULT 0
);

-- Failed logins per normalised e-mail (known or not, so the table tells nothing about accounts).
CREATE TABLE login_failures (
    key             TEXT PRIMARY KEY,
    failures        INTEGER NOT NULL,
    last_failure_at INTEGER NOT NULL
);
