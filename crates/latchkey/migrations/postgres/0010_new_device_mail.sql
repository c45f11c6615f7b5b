-- "A new device signed in" mail, with a one-click "This wasn't me". Keep in step with
-- migrations/sqlite/0010.

-- Each account chooses whether it gets the mail (the operator can turn it off for all).
ALTER TABLE users ADD COLUMN new_device_mail BOOLEAN NOT NULL DEFAULT TRUE;

-- The link in one such mail: found by the SHA-256 of its token (the mail holds the token, the
-- database never), for one device, used at most once by one conditional write, for 7 days.
CREATE TABLE device_alerts (
    token_hash BYTEA PRIMARY KEY,
    user_id    TEXT NOT NULL REFERENCES users(id) ON DELETE CASCADE,
    device_id  TEXT NOT NULL REFERENCES devices(id) ON DELETE CASCADE,
    created_at BIGINT NOT NULL,
    expires_at BIGINT NOT NULL,
    used_at    BIGINT
);
CREATE INDEX device_alerts_by_device ON device_alerts (device_id);
