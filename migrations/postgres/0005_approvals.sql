-- Projections of approval rules and requests. The decisions themselves are
-- decided on the ledger (one stream per exact call binding); these tables
-- serve reads, the pending list and the expiry sweeper.
CREATE TABLE approval_rules (
    tenant_id  text    NOT NULL,
    rule_id    text    NOT NULL,
    type       text    NOT NULL,
    threshold  bigint  NOT NULL,
    tools      text    NOT NULL,
    created_at bigint  NOT NULL,
    PRIMARY KEY (tenant_id, rule_id)
);

CREATE TABLE approvals (
    tenant_id  text    NOT NULL,
    request_id text    NOT NULL,
    binding    text    NOT NULL,
    session_id text    NOT NULL,
    agent_id   text    NOT NULL,
    tool       text    NOT NULL,
    action     text    NOT NULL,
    amount     bigint  NOT NULL,
    reason     text    NOT NULL,
    rule_id    text    NOT NULL,
    status     text    NOT NULL,
    created_at bigint  NOT NULL,
    expires_at bigint  NOT NULL,
    decided_at bigint ,
    decided_by text    NOT NULL,
    note       text    NOT NULL,
    PRIMARY KEY (tenant_id, request_id)
);
CREATE INDEX approvals_by_status ON approvals (tenant_id, status, created_at);
CREATE INDEX approvals_to_expire ON approvals (status, expires_at);
