-- Projection: ledger events per tenant and type (usage, evidence manifest).
CREATE TABLE event_counts (
    tenant_id      TEXT    NOT NULL,
    type           TEXT    NOT NULL,
    count          INTEGER NOT NULL,
    first_position INTEGER NOT NULL,
    last_position  INTEGER NOT NULL,
    PRIMARY KEY (tenant_id, type)
);
