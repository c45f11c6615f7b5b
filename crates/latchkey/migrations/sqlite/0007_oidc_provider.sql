-- Other apps sign their users in through Latchkey (OAuth 2.0 authorization code + PKCE, OpenID
-- Connect). Keep in step with migrations/postgres/0007.

-- Clients gain what the authorization endpoint needs. Lists are stored one entry per line.
ALTER TABLE clients ADD COLUMN redirect_uris TEXT NOT NULL DEFAULT '';
ALTER TABLE clients ADD COLUMN post_logout_redirect_uris TEXT NOT NULL DEFAULT '';
-- The scopes the client may ask for, space-separated.
ALTER TABLE clients ADD COLUMN scopes TEXT NOT NULL DEFAULT 'openid profile email offline_access';
-- 'auto': ask once, remember per user; 'always': ask on every authorization.
ALTER TABLE clients ADD COLUMN consent TEXT NOT NULL DEFAULT 'auto';
ALTER TABLE clients ADD COLUMN id_token_alg TEXT NOT NULL DEFAULT 'RS256';
-- A removed client stays as a row (sessions and requests refer to it), never to be used again.
ALTER TABLE clients ADD COLUMN removed_at INTEGER;

-- Signing keys of two algorithms: EdDSA (access tokens, id_tokens on request) and RS256
-- (id_tokens by default). `seed` holds the Ed25519 seed or the RSA key as PKCS#8 DER.
ALTER TABLE signing_keys ADD COLUMN alg TEXT NOT NULL DEFAULT 'EdDSA';
DROP INDEX signing_keys_one_active;
CREATE UNIQUE INDEX signing_keys_one_active ON signing_keys (alg) WHERE retired_at IS NULL;

-- Authorization codes: only the SHA-256 of the code is kept. `used_at` is set by the one
-- conditional write that redeems it; `issued_session_id` is the session that redemption
-- opened, revoked if the code is ever presented again (RFC 6749 §4.1.2).
CREATE TABLE authorization_codes (
    code_hash          BLOB PRIMARY KEY,
    client_id          TEXT NOT NULL,
    redirect_uri       TEXT NOT NULL,
    user_id            TEXT NOT NULL REFERENCES users(id) ON DELETE CASCADE,
    browser_session_id TEXT NOT NULL,
    device_id          TEXT NOT NULL,
    scope              TEXT NOT NULL,
    nonce              TEXT,
    code_challenge     TEXT,
    auth_time          INTEGER NOT NULL,
    amr                TEXT NOT NULL,
    created_at         INTEGER NOT NULL,
    expires_at         INTEGER NOT NULL,
    used_at            INTEGER,
    issued_session_id  TEXT
);

-- What a user let an app have; revoking it ends the app's sessions of that user.
CREATE TABLE consents (
    user_id    TEXT NOT NULL REFERENCES users(id) ON DELETE CASCADE,
    client_id  TEXT NOT NULL REFERENCES clients(id) ON DELETE CASCADE,
    scope      TEXT NOT NULL,
    granted_at INTEGER NOT NULL,
    PRIMARY KEY (user_id, client_id)
);
