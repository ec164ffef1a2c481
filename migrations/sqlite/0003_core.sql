-- Projections of the governance core. Times are Unix nanoseconds, money is
-- micro-dollars, scopes are JSON arrays.
CREATE TABLE tenants (
    tenant_id  TEXT    PRIMARY KEY,
    name       TEXT    NOT NULL,
    created_at INTEGER NOT NULL
);

CREATE TABLE api_keys (
    prefix     TEXT    PRIMARY KEY,
    tenant_id  TEXT    NOT NULL,
    name       TEXT    NOT NULL,
    scopes     TEXT    NOT NULL,
    key_hash   TEXT    NOT NULL,
    rate_limit INTEGER NOT NULL DEFAULT 0,
    created_at INTEGER NOT NULL,
    revoked_at INTEGER
);
CREATE INDEX api_keys_by_tenant ON api_keys (tenant_id, created_at);

CREATE TABLE sessions (
    tenant_id   TEXT    NOT NULL,
    session_id  TEXT    NOT NULL,
    agent_id    TEXT    NOT NULL,
    scopes      TEXT    NOT NULL,
    spend_limit INTEGER NOT NULL,
    spent       INTEGER NOT NULL,
    created_at  INTEGER NOT NULL,
    expires_at  INTEGER NOT NULL,
    revoked_at  INTEGER,
    PRIMARY KEY (tenant_id, session_id)
);
CREATE INDEX sessions_by_expiry ON sessions (tenant_id, expires_at);

-- The audit trail is the ledger: one row per event of the tenant.
CREATE TABLE audit_entries (
    tenant_id   TEXT    NOT NULL,
    seq         INTEGER NOT NULL,
    position    INTEGER NOT NULL,
    entry_id    TEXT    NOT NULL,
    type        TEXT    NOT NULL,
    session_id  TEXT    NOT NULL,
    agent_id    TEXT    NOT NULL,
    tool        TEXT    NOT NULL,
    action      TEXT    NOT NULL,
    cost        INTEGER NOT NULL,
    flagged     INTEGER NOT NULL,
    flag_reason TEXT    NOT NULL,
    recorded_at INTEGER NOT NULL,
    details     TEXT    NOT NULL,
    prev_hash   TEXT    NOT NULL,
    entry_hash  TEXT    NOT NULL,
    PRIMARY KEY (tenant_id, seq)
);
CREATE UNIQUE INDEX audit_by_entry ON audit_entries (entry_id);
CREATE INDEX audit_by_session ON audit_entries (tenant_id, session_id, seq);
CREATE INDEX audit_by_agent ON audit_entries (tenant_id, agent_id, seq);
CREATE INDEX audit_by_tool ON audit_entries (tenant_id, tool, seq);
CREATE INDEX audit_by_time ON audit_entries (tenant_id, recorded_at);

CREATE TABLE usage_monthly (
    tenant_id    TEXT    NOT NULL,
    month        TEXT    NOT NULL,
    action_count INTEGER NOT NULL,
    spend        INTEGER NOT NULL,
    PRIMARY KEY (tenant_id, month)
);

-- Idempotency-Key reservations (not a projection: request bookkeeping,
-- kept at least 24 hours).
CREATE TABLE idempotency_keys (
    tenant_id    TEXT    NOT NULL,
    key          TEXT    NOT NULL,
    request_hash TEXT    NOT NULL,
    status       INTEGER NOT NULL,
    response     BLOB,
    created_at   INTEGER NOT NULL,
    completed_at INTEGER,
    PRIMARY KEY (tenant_id, key)
);
CREATE INDEX idempotency_by_age ON idempotency_keys (created_at);

-- Fixed-window rate-limit counters shared by every replica.
CREATE TABLE rate_windows (
    key          TEXT    NOT NULL,
    window_start INTEGER NOT NULL,
    count        INTEGER NOT NULL,
    PRIMARY KEY (key, window_start)
);
