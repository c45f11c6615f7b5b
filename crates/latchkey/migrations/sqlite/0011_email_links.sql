-- Verified e-mail addresses and password reset by e-mail link. Keep in step with
-- migrations/postgres/0011.

-- When the address proved itself (a verification link, a reset link, a mailed enrolment code,
-- or an upstream identity provider that vouched for it). NULL: not verified.
ALTER TABLE users ADD COLUMN email_verified_at INTEGER;
-- An account that turned e-mail codes on proved its address with a mailed code.
UPDATE users SET email_verified_at = (SELECT f.enabled_at FROM email_factors f WHERE f.user_id = users.id)
    WHERE email IS NOT NULL AND EXISTS (SELECT 1 FROM email_factors f WHERE f.user_id = users.id);

-- A link mailed to an address: found by the SHA-256 of its token (the mail holds the token, the
-- database never), for one purpose (verify, reset), one account and the address it went to,
-- used at most once by one conditional write.
CREATE TABLE email_links (
    token_hash BLOB PRIMARY KEY,
    purpose    TEXT NOT NULL,
    user_id    TEXT NOT NULL REFERENCES users(id) ON DELETE CASCADE,
    email      TEXT NOT NULL,
    created_at INTEGER NOT NULL,
    expires_at INTEGER NOT NULL,
    used_at    INTEGER
);
CREATE INDEX email_links_by_user ON email_links (user_id, purpose);
