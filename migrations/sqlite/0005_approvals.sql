-- Projections of approval rules and requests. The decisions themselves are
-- decided on the ledger (one stream per exact call binding); these tables
-- serve reads, the pending list and the expiry sweeper.
CREATE TABLE approval_rules (
    tenant_id  TEXT    NOT NULL,
    rule_id    TEXT    NOT NULL,
    type       TEXT    NOT NULL,
    threshold  INTEGER NOT NULL,
    tools      TEXT    NOT NULL,
    created_at INTEGER NOT NULL,
    PRIMARY KEY (tenant_id, rule_id)
);

CREATE TABLE approvals (
    tenant_id  TEXT    NOT NULL,
    request_id TEXT    NOT NULL,
    binding    TEXT    NOT NULL,
    session_id TEXT    NOT NULL,
    agent_id   TEXT    NOT NULL,
    tool       TEXT    NOT NULL,
    action     TEXT    NOT NULL,
    amount     INTEGER NOT NULL,
    reason     TEXT    NOT NULL,
    rule_id    TEXT    NOT NULL,
    status     TEXT    NOT NULL,
    created_at INTEGER NOT NULL,
    expires_at INTEGER NOT NULL,
    decided_at INTEGER,
    decided_by TEXT    NOT NULL,
    note       TEXT    NOT NULL,
    PRIMARY KEY (tenant_id, request_id)
);
CREATE INDEX approvals_by_status ON approvals (tenant_id, status, created_at);
CREATE INDEX approvals_to_expire ON approvals (status, expires_at);
