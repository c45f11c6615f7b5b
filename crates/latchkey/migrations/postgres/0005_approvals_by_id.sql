-- Device codes and QR login secrets now name their request (`lk_dc_<id>.<secret>`): a request is
-- found by its primary key and the SHA-256 of the secret is compared, so the unique index on
-- device_code_hash, whose random keys cost a random index page per new request, goes.
ALTER TABLE approvals DROP CONSTRAINT approvals_device_code_hash_key;
