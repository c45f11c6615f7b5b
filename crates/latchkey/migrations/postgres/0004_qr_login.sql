-- QR login rides on the approval state machine (flow = 'qr'): the QR shows the public id, the
-- browser holds the secret (device_code_hash is the SHA-256 of it), a signed-in phone scans
-- (locks it), checks the two-digit number, and approves; the browser collects with a handoff code.
ALTER TABLE approvals ADD COLUMN match_code TEXT;
ALTER TABLE approvals ADD COLUMN scanned_at BIGINT;
ALTER TABLE approvals ADD COLUMN handoff_hash BYTEA;
ALTER TABLE approvals ADD COLUMN handoff_expires_at BIGINT;
ALTER TABLE approvals ADD COLUMN handoff_used_at BIGINT;
CREATE UNIQUE INDEX approvals_handoff ON approvals (handoff_hash) WHERE handoff_hash IS NOT NULL;
