-- Projections of the MCP proxy: upstream registrations (their environment
-- and headers sealed), tool definition pins and policies.
CREATE TABLE proxy_upstreams (
    tenant_id     text    NOT NULL,
    name          text    NOT NULL,
    transport     text    NOT NULL,
    url           text    NOT NULL,
    command       text    NOT NULL,
    key_id        text    NOT NULL,
    sealed_config bytea,
    created_at    bigint  NOT NULL,
    PRIMARY KEY (tenant_id, name)
);

CREATE TABLE proxy_pins (
    tenant_id  text    NOT NULL,
    tool       text    NOT NULL,
    hash       text    NOT NULL,
    status     text    NOT NULL,
    new_hash   text    NOT NULL,
    updated_at bigint  NOT NULL,
    PRIMARY KEY (tenant_id, tool)
);

CREATE TABLE proxy_policies (
    tenant_id  text    NOT NULL,
    policy_id  text    NOT NULL,
    policy     text    NOT NULL,
    created_at bigint  NOT NULL,
    PRIMARY KEY (tenant_id, policy_id)
);
