-- Dashboard sign-ins (package web). The browser holds only a random token;
-- this table holds its SHA-256, never the token. The API key the session
-- acts with is sealed with the vault's keyring (sealed: the value, wrapped:
-- its data key), bound to the row by the token hash, so neither the browser
-- nor a reader of this table alone holds the key. Rows are looked up by the
-- token hash, which names no tenant; tenant_id is kept for revoking every
-- session of a key. Shared by every replica on the database.
CREATE TABLE dashboard_sessions (
    token_hash  TEXT    PRIMARY KEY,
    tenant_id   TEXT    NOT NULL,
    key_prefix  TEXT    NOT NULL,
    key_name    TEXT    NOT NULL,
    sealed      BLOB    NOT NULL,
    wrapped     BLOB    NOT NULL,
    created_at  INTEGER NOT NULL,
    expires_at  INTEGER NOT NULL,
    revoked_at  INTEGER
);
CREATE INDEX dashboard_sessions_key ON dashboard_sessions (tenant_id, key_prefix);
CREATE INDEX dashboard_sessions_expiry ON dashboard_sessions (expires_at);
