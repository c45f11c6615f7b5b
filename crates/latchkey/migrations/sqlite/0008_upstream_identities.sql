-- Sign-in through upstream identity providers (any OpenID Connect issuer, GitHub). Keep in step
-- with migrations/postgres/0008.

-- An upstream identity linked to an account, keyed by (upstream, issuer, subject): never by
-- e-mail. `email` is what the upstream last said, for the account page only; the account's
-- own address is never rewritten from it.
CREATE TABLE identities (
    id           TEXT PRIMARY KEY,
    user_id      TEXT NOT NULL REFERENCES users(id) ON DELETE CASCADE,
    upstream     TEXT NOT NULL,
    issuer       TEXT NOT NULL,
    subject      TEXT NOT NULL,
    email        TEXT,
    created_at   INTEGER NOT NULL,
    last_used_at INTEGER NOT NULL,
    UNIQUE (upstream, issuer, subject)
);
CREATE INDEX identities_by_user ON identities (user_id);

-- A sign-in sent to an upstream and not yet back, found by the SHA-256 of its `state` (which
-- travels in URLs) and bound to the browser by the SHA-256 of a second secret that only the
-- browser's cookie holds; the PKCE verifier and nonce are derived from that secret under a
-- server key, so neither a leaked callback URL nor this table can finish the sign-in. Taken by
-- one conditional delete when any callback presents the state.
CREATE TABLE upstream_states (
    state_hash      BLOB PRIMARY KEY,
    browser_hash    BLOB NOT NULL,
    upstream        TEXT NOT NULL,
    next            TEXT NOT NULL,
    -- Set when a signed-in browser links a new identity to its account.
    link_session_id TEXT,
    created_at      INTEGER NOT NULL,
    expires_at      INTEGER NOT NULL
);

-- The first factor of a login waiting for its second: `pwd`, or the upstream's id.
ALTER TABLE mfa_tokens ADD COLUMN first_factor TEXT NOT NULL DEFAULT 'pwd';
