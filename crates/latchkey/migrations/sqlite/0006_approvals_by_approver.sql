-- A revoked device ends the requests it approved, scanned or holds through its pairing code
-- (service::approvals::end_for_device): find them by the approving device, without a scan.
-- Partial: a new request has no approver until it is decided, so inserts do not touch it.
CREATE INDEX approvals_approver ON approvals (approver_device_id) WHERE approver_device_id IS NOT NULL;
