-- no-transaction
-- Device codes and QR login secrets now name their request (`lk_dc_<id>.<secret>`): a request is
-- found by its primary key, which new requests append to in order, and the SHA-256 of the secret
-- is compared. The unique index on device_code_hash goes: its random keys rewrote one random index
-- page per new request (docs/performance.md). SQLite cannot drop a column's UNIQUE, so the table is
-- rebuilt the way its documentation prescribes: foreign keys off outside the transaction, so that
-- pairing_codes keeps pointing at `approvals` by name.
PRAGMA foreign_keys = OFF;
BEGIN IMMEDIATE;
CREATE TABLE approvals_new (
    id                 TEXT PRIMARY KEY,
    flow               TEXT NOT NULL,          -- device_code | pairing | qr
    device_code_hash   BLOB NOT NULL,          -- SHA-256 of the requester's device_code (or QR secret)
    user_code_hmac     BLOB UNIQUE,            -- device grant: HMAC of the user code
    client_id          TEXT NOT NULL REFERENCES clients(id),
    scope              TEXT NOT NULL,
    status             TEXT NOT NULL,
    created_at         INTEGER NOT NULL,
    expires_at         INTEGER NOT NULL,
    requester_ip       TEXT NOT NULL,
    requester_ua       TEXT NOT NULL,
    requester_name     TEXT,
    requester_kind     TEXT,
    user_id            TEXT REFERENCES users(id) ON DELETE CASCADE,
    approver_device_id TEXT,
    decided_at         INTEGER,
    poll_interval      INTEGER NOT NULL,
    last_poll_at       INTEGER,
    slow_downs         INTEGER NOT NULL DEFAULT 0,
    poll_early         INTEGER NOT NULL DEFAULT 0,
    session_id         TEXT,
    match_code         TEXT,
    scanned_at         INTEGER,
    handoff_hash       BLOB,
    handoff_expires_at INTEGER,
    handoff_used_at    INTEGER
);
INSERT INTO approvals_new (id, flow, device_code_hash, user_code_hmac, client_id, scope, status, created_at, expires_at,
    requester_ip, requester_ua, requester_name, requester_kind, user_id, approver_device_id, decided_at, poll_interval,
    last_poll_at, slow_downs, poll_early, session_id, match_code, scanned_at, handoff_hash, handoff_expires_at, handoff_used_at)
SELECT id, flow, device_code_hash, user_code_hmac, client_id, scope, status, created_at, expires_at,
    requester_ip, requester_ua, requester_name, requester_kind, user_id, approver_device_id, decided_at, poll_interval,
    last_poll_at, slow_downs, poll_early, session_id, match_code, scanned_at, handoff_hash, handoff_expires_at, handoff_used_at
FROM approvals;
DROP TABLE approvals;
ALTER TABLE approvals_new RENAME TO approvals;
CREATE INDEX approvals_pending_ip ON approvals (requester_ip, status, expires_at);
CREATE INDEX approvals_status ON approvals (status, expires_at);
CREATE UNIQUE INDEX approvals_handoff ON approvals (handoff_hash) WHERE handoff_hash IS NOT NULL;
COMMIT;
PRAGMA foreign_keys = ON;
