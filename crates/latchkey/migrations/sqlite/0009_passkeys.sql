-- Passkeys (WebAuthn): sign-in without a password, and step-up before approving a new device.
-- Keep in step with migrations/postgres/0009.

-- A registered passkey. `credential` is webauthn-rs's record of it (credential id, public key,
-- algorithm, flags): nothing secret. `counter` is kept beside it so that one conditional write
-- can refuse a signature counter that did not go forward (a cloned authenticator).
CREATE TABLE passkeys (
    id              TEXT PRIMARY KEY,
    user_id         TEXT NOT NULL REFERENCES users(id) ON DELETE CASCADE,
    credential_id   BLOB NOT NULL UNIQUE,
    name            TEXT NOT NULL,
    credential      TEXT NOT NULL,
    counter         INTEGER NOT NULL,
    backup_eligible INTEGER NOT NULL,
    backed_up       INTEGER NOT NULL,
    created_at      INTEGER NOT NULL,
    last_used_at    INTEGER
);
CREATE INDEX passkeys_by_user ON passkeys (user_id);

-- A ceremony started and not yet finished: webauthn-rs's state (the challenge and what it was
-- issued for) stays here, found by the SHA-256 of a handle the client holds, and is taken by
-- one conditional delete, so a challenge answers at most once and never after it expires.
CREATE TABLE passkey_challenges (
    handle_hash BLOB PRIMARY KEY,
    purpose     TEXT NOT NULL,      -- register, sign_in or step_up
    user_id     TEXT,               -- register, step_up: whose
    session_id  TEXT,               -- register, step_up: the session that asked
    name        TEXT,               -- register: the name the passkey will have
    state       TEXT NOT NULL,
    created_at  INTEGER NOT NULL,
    expires_at  INTEGER NOT NULL
);

-- Which passkey opened a session (to end them with it), and when the session last proved one
-- (step-up before approvals).
ALTER TABLE sessions ADD COLUMN passkey_id TEXT;
ALTER TABLE sessions ADD COLUMN passkey_verified_at INTEGER;
-- An approval given with a fresh passkey assertion, and the device it let in.
ALTER TABLE approvals ADD COLUMN passkey_verified INTEGER NOT NULL DEFAULT 0;
ALTER TABLE devices ADD COLUMN passkey_verified INTEGER NOT NULL DEFAULT 0;
-- The account's own choice: approvals need a fresh passkey assertion.
ALTER TABLE users ADD COLUMN passkey_step_up INTEGER NOT NULL DEFAULT 0;
