-- Outbound webhook deliveries: a durable queue shared by every replica.
-- Times are Unix nanoseconds. body holds the exact JSON bytes sent (signed
-- as is, never re-encoded). A delivery is pending until an attempt
-- succeeds (delivered), the retries run out (failed), or the endpoint
-- answers 410 Gone or is no longer active (disabled).
CREATE TABLE webhook_deliveries (
    tenant_id        text    NOT NULL,
    delivery_id      text    NOT NULL,
    webhook_id       text    NOT NULL,
    event_id         text    NOT NULL,
    event_type       text    NOT NULL,
    body             bytea   NOT NULL,
    status           text    NOT NULL CHECK (status IN ('pending', 'delivered', 'failed', 'disabled')),
    attempts         bigint  NOT NULL DEFAULT 0,
    next_attempt_at  bigint  NOT NULL,
    last_status_code bigint  NOT NULL DEFAULT 0,
    last_error       text    NOT NULL DEFAULT '',
    created_at       bigint  NOT NULL,
    updated_at       bigint  NOT NULL,
    PRIMARY KEY (tenant_id, delivery_id),
    UNIQUE (tenant_id, webhook_id, event_id)
);
CREATE INDEX webhook_deliveries_by_event ON webhook_deliveries (tenant_id, event_id);
-- The workers' scan for due deliveries crosses tenants (a replica serves
-- every tenant of its cell), so this one index does not lead with
-- tenant_id; it holds pending rows only.
CREATE INDEX webhook_deliveries_due ON webhook_deliveries (next_attempt_at) WHERE status = 'pending';

-- One row per delivery attempt, for GET /v1/webhooks/deliveries. The key
-- makes a second record of the same attempt impossible.
CREATE TABLE webhook_attempts (
    tenant_id   text    NOT NULL,
    delivery_id text    NOT NULL,
    attempt     bigint  NOT NULL,
    status_code bigint  NOT NULL,
    error       text    NOT NULL,
    duration_ms bigint  NOT NULL,
    created_at  bigint  NOT NULL,
    PRIMARY KEY (tenant_id, delivery_id, attempt),
    FOREIGN KEY (tenant_id, delivery_id) REFERENCES webhook_deliveries (tenant_id, delivery_id) ON DELETE CASCADE
);
CREATE INDEX webhook_attempts_by_time ON webhook_attempts (tenant_id, created_at);
-- Projection (core): registered webhooks. sealed/prev_sealed are the
-- signing secrets' ciphertext; their data keys are in secret_keys under
-- key_id/prev_key_id. prev_* stay valid until prev_expires_at (rotation
-- grace period), when both signatures are sent.
CREATE TABLE webhooks (
    tenant_id       text    NOT NULL,
    webhook_id      text    NOT NULL,
    url             text    NOT NULL,
    name            text    NOT NULL,
    events          text    NOT NULL,
    active          bigint  NOT NULL,
    secret_version  bigint  NOT NULL,
    key_id          text    NOT NULL,
    sealed          bytea    NOT NULL,
    prev_version    bigint  NOT NULL,
    prev_key_id     text    NOT NULL,
    prev_sealed     bytea,
    prev_expires_at bigint  NOT NULL,
    created_at      bigint  NOT NULL,
    PRIMARY KEY (tenant_id, webhook_id)
);

-- Projection (outbox group): the registry the outbox enqueues against. It is
-- its own copy so that the outbox group, which moves on its own checkpoint,
-- always sees exactly the webhooks registered before the event it handles.
CREATE TABLE outbox_webhooks (
    tenant_id  text    NOT NULL,
    webhook_id text    NOT NULL,
    events     text    NOT NULL,
    active     bigint  NOT NULL,
    PRIMARY KEY (tenant_id, webhook_id)
);
