-- Second factors and remembered devices.

CREATE TABLE totp_credentials (
    user_id      TEXT PRIMARY KEY REFERENCES users(id) ON DELETE CASCADE,
    secret_enc   BYTEA NOT NULL,              -- AES-256-GCM (nonce || ciphertext) under a server key
    created_at   BIGINT NOT NULL,
    confirmed_at BIGINT,                    -- NULL until a first code proves the app has the secret
    last_step    BIGINT NOT NULL DEFAULT -1 -- each 30 s step's code is accepted once
);

CREATE TABLE recovery_codes (
    user_id   TEXT NOT NULL REFERENCES users(id) ON DELETE CASCADE,
    code_hmac BYTEA NOT NULL,
    used_at   BIGINT,
    PRIMARY KEY (user_id, code_hmac)
);

CREATE TABLE email_factors (
    user_id    TEXT PRIMARY KEY REFERENCES users(id) ON DELETE CASCADE,
    enabled_at BIGINT NOT NULL
);

-- One live e-mail code per user and purpose (enroll | login); a resend replaces it.
CREATE TABLE email_codes (
    user_id    TEXT NOT NULL REFERENCES users(id) ON DELETE CASCADE,
    purpose    TEXT NOT NULL,
    code_hmac  BYTEA NOT NULL,
    created_at BIGINT NOT NULL,
    expires_at BIGINT NOT NULL,
    attempts   BIGINT NOT NULL DEFAULT 0,
    PRIMARY KEY (user_id, purpose)
);

-- Seed 002's two-step token: the password was right, a second factor is still owed.
CREATE TABLE mfa_tokens (
    hash        BYTEA PRIMARY KEY,
    user_id     TEXT NOT NULL REFERENCES users(id) ON DELETE CASCADE,
    client_id   TEXT NOT NULL,
    scope       TEXT NOT NULL,
    device_json TEXT NOT NULL,               -- what the device said of itself at the password step
    web         BOOLEAN NOT NULL,
    ip          TEXT NOT NULL,
    user_agent  TEXT NOT NULL,
    created_at  BIGINT NOT NULL,
    expires_at  BIGINT NOT NULL,
    failures    BIGINT NOT NULL DEFAULT 0,
    consumed_at BIGINT
);

-- "Remember this device": skips only the second factor, only for its user and device.
CREATE TABLE device_trust (
    hash         BYTEA PRIMARY KEY,
    user_id      TEXT NOT NULL REFERENCES users(id) ON DELETE CASCADE,
    device_id    TEXT NOT NULL REFERENCES devices(id) ON DELETE CASCADE,
    created_at   BIGINT NOT NULL,
    expires_at   BIGINT NOT NULL,           -- absolute; rotation keeps it
    last_used_at BIGINT NOT NULL,
    ip           TEXT NOT NULL,
    user_agent   TEXT NOT NULL
);
CREATE INDEX device_trust_user ON device_trust (user_id);
CREATE INDEX device_trust_device ON device_trust (device_id);
