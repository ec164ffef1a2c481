-- Projection: ledger events per tenant and type (usage, evidence manifest).
CREATE TABLE event_counts (
    tenant_id      text    NOT NULL,
    type           text    NOT NULL,
    count          bigint NOT NULL,
    first_position bigint NOT NULL,
    last_position  bigint NOT NULL,
    PRIMARY KEY (tenant_id, type)
);
