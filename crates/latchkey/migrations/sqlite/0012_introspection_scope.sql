-- Which tokens a confidential client may introspect. Keep in step with migrations/postgres/0012.
-- FALSE: only tokens issued to itself (RFC 7662 section 4: the server decides what a caller may
-- learn). TRUE: any token, for a resource server that checks the tokens of other clients.
ALTER TABLE clients ADD COLUMN introspects_any INTEGER NOT NULL DEFAULT 0;
-- Before this column any confidential client could introspect any token. Confidential device
-- clients (no redirect URIs) were the resource servers that relied on it and keep it; apps
-- (with redirect URIs) lose it, as no app needs to read the tokens of another.
UPDATE clients SET introspects_any = 1 WHERE secret_hash IS NOT NULL AND redirect_uris = '';
