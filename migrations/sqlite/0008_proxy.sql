-- Projections of the MCP proxy: upstream registrations (their environment
-- and headers sealed), tool definition pins and policies.
CREATE TABLE proxy_upstreams (
    tenant_id     TEXT    NOT NULL,
    name          TEXT    NOT NULL,
    transport     TEXT    NOT NULL,
    url           TEXT    NOT NULL,
    command       TEXT    NOT NULL,
    key_id        TEXT    NOT NULL,
    sealed_config BLOB,
    created_at    INTEGER NOT NULL,
    PRIMARY KEY (tenant_id, name)
);

CREATE TABLE proxy_pins (
    tenant_id  TEXT    NOT NULL,
    tool       TEXT    NOT NULL,
    hash       TEXT    NOT NULL,
    status     TEXT    NOT NULL,
    new_hash   TEXT    NOT NULL,
    updated_at INTEGER NOT NULL,
    PRIMARY KEY (tenant_id, tool)
);

CREATE TABLE proxy_policies (
    tenant_id  TEXT    NOT NULL,
    policy_id  TEXT    NOT NULL,
    policy     TEXT    NOT NULL,
    created_at INTEGER NOT NULL,
    PRIMARY KEY (tenant_id, policy_id)
);
