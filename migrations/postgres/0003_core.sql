-- Projections of the governance core. Times are Unix nanoseconds, money is
-- micro-dollars, scopes are JSON arrays.
CREATE TABLE tenants (
    tenant_id  text    PRIMARY KEY,
    name       text    NOT NULL,
    created_at bigint  NOT NULL
);

CREATE TABLE api_keys (
    prefix     text    PRIMARY KEY,
    tenant_id  text    NOT NULL,
    name       text    NOT NULL,
    scopes     text    NOT NULL,
    key_hash   text    NOT NULL,
    rate_limit bigint  NOT NULL DEFAULT 0,
    created_at bigint  NOT NULL,
    revoked_at bigint 
);
CREATE INDEX api_keys_by_tenant ON api_keys (tenant_id, created_at);

CREATE TABLE sessions (
    tenant_id   text    NOT NULL,
    session_id  text    NOT NULL,
    agent_id    text    NOT NULL,
    scopes      text    NOT NULL,
    spend_limit bigint  NOT NULL,
    spent       bigint  NOT NULL,
    created_at  bigint  NOT NULL,
    expires_at  bigint  NOT NULL,
    revoked_at  bigint ,
    PRIMARY KEY (tenant_id, session_id)
);
CREATE INDEX sessions_by_expiry ON sessions (tenant_id, expires_at);

-- The audit trail is the ledger: one row per event of the tenant.
CREATE TABLE audit_entries (
    tenant_id   text    NOT NULL,
    seq         bigint  NOT NULL,
    position    bigint  NOT NULL,
    entry_id    text    NOT NULL,
    type        text    NOT NULL,
    session_id  text    NOT NULL,
    agent_id    text    NOT NULL,
    tool        text    NOT NULL,
    action      text    NOT NULL,
    cost        bigint  NOT NULL,
    flagged     bigint  NOT NULL,
    flag_reason text    NOT NULL,
    recorded_at bigint  NOT NULL,
    details     text    NOT NULL,
    prev_hash   text    NOT NULL,
    entry_hash  text    NOT NULL,
    PRIMARY KEY (tenant_id, seq)
);
CREATE UNIQUE INDEX audit_by_entry ON audit_entries (entry_id);
CREATE INDEX audit_by_session ON audit_entries (tenant_id, session_id, seq);
CREATE INDEX audit_by_agent ON audit_entries (tenant_id, agent_id, seq);
CREATE INDEX audit_by_tool ON audit_entries (tenant_id, tool, seq);
CREATE INDEX audit_by_time ON audit_entries (tenant_id, recorded_at);

CREATE TABLE usage_monthly (
    tenant_id    text    NOT NULL,
    month        text    NOT NULL,
    action_count bigint  NOT NULL,
    spend        bigint  NOT NULL,
    PRIMARY KEY (tenant_id, month)
);

-- Idempotency-Key reservations (not a projection: request bookkeeping,
-- kept at least 24 hours).
CREATE TABLE idempotency_keys (
    tenant_id    text    NOT NULL,
    key          text    NOT NULL,
    request_hash text    NOT NULL,
    status       bigint  NOT NULL,
    response     bytea,
    created_at   bigint  NOT NULL,
    completed_at bigint ,
    PRIMARY KEY (tenant_id, key)
);
CREATE INDEX idempotency_by_age ON idempotency_keys (created_at);

-- Fixed-window rate-limit counters shared by every replica.
CREATE TABLE rate_windows (
    key          text    NOT NULL,
    window_start bigint NOT NULL,
    count        bigint NOT NULL,
    PRIMARY KEY (key, window_start)
);
