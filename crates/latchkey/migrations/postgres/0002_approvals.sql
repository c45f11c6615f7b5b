-- The one cross-device approval state machine shared by the device grant, pairing and QR login:
-- a requester asks, the server records what it observed of it, a signed-in device approves or
-- denies, the requester collects its session exactly once.
--   status: pending -> approved | denied ; approved -> collected. Expiry is `expires_at`, never extended.
CREATE TABLE approvals (
    id                 TEXT PRIMARY KEY,
    flow               TEXT NOT NULL,          -- device_code | pairing
    device_code_hash   BYTEA NOT NULL UNIQUE,   -- SHA-256 of the requester's device_code
    user_code_hmac     BYTEA UNIQUE,            -- device grant: HMAC of the user code
    client_id          TEXT NOT NULL REFERENCES clients(id),
    scope              TEXT NOT NULL,
    status             TEXT NOT NULL,
    created_at         BIGINT NOT NULL,
    expires_at         BIGINT NOT NULL,
    requester_ip       TEXT NOT NULL,
    requester_ua       TEXT NOT NULL,
    requester_name     TEXT,                   -- the name the new device gave itself
    requester_kind     TEXT,
    user_id            TEXT REFERENCES users(id) ON DELETE CASCADE,
    approver_device_id TEXT,
    decided_at         BIGINT,
    poll_interval      BIGINT NOT NULL,
    last_poll_at       BIGINT,
    slow_downs         BIGINT NOT NULL DEFAULT 0,
    poll_early         BIGINT NOT NULL DEFAULT 0,  -- whether the latest poll came too early
    session_id         TEXT
);
CREATE INDEX approvals_pending_ip ON approvals (requester_ip, status, expires_at);
CREATE INDEX approvals_status ON approvals (status, expires_at);

-- Pairing codes issued by a signed-in device; at most one live code per issuing device.
CREATE TABLE pairing_codes (
    id                TEXT PRIMARY KEY,
    user_id           TEXT NOT NULL REFERENCES users(id) ON DELETE CASCADE,
    issuer_device_id  TEXT NOT NULL,
    code_hmac         BYTEA NOT NULL UNIQUE,
    scope             TEXT NOT NULL,
    created_at        BIGINT NOT NULL,
    expires_at        BIGINT NOT NULL,
    redeemed_at       BIGINT,
    approval_id       TEXT REFERENCES approvals(id) DEFERRABLE INITIALLY DEFERRED
);
CREATE INDEX pairing_codes_issuer ON pairing_codes (issuer_device_id, redeemed_at);
