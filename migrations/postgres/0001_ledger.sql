-- The ledger. Rows are appended by the group-commit writer only, under a
-- transaction-scoped advisory lock, so positions and tenant sequence numbers
-- are gapless and commit-ordered (a bigserial would not be: its values become
-- visible in commit order, not allocation order). recorded_at is Unix
-- nanoseconds. Payload and metadata are bytea: the exact bytes that were
-- hashed, never jsonb (which reorders keys).
CREATE TABLE events (
    position       bigint  PRIMARY KEY,
    tenant_id      text    NOT NULL,
    seq            bigint  NOT NULL,
    event_id       text    NOT NULL UNIQUE,
    stream         text    NOT NULL,
    stream_version bigint  NOT NULL,
    type           text    NOT NULL,
    payload        bytea   NOT NULL,
    metadata       bytea   NOT NULL,
    recorded_at    bigint  NOT NULL,
    prev_hash      bytea   NOT NULL,
    hash           bytea   NOT NULL,
    UNIQUE (tenant_id, seq),
    UNIQUE (tenant_id, stream, stream_version)
);

CREATE FUNCTION haldir_events_append_only() RETURNS trigger
LANGUAGE plpgsql AS $$
BEGIN
    RAISE EXCEPTION 'haldir: the ledger is append-only' USING ERRCODE = 'HA001';
END;
$$;

CREATE TRIGGER events_append_only
    BEFORE UPDATE OR DELETE ON events
    FOR EACH ROW EXECUTE FUNCTION haldir_events_append_only();

CREATE TRIGGER events_append_only_truncate
    BEFORE TRUNCATE ON events
    FOR EACH STATEMENT EXECUTE FUNCTION haldir_events_append_only();

-- One row per projection handler group: the last ledger position applied.
-- It is updated in the same transaction as the read-model change.
CREATE TABLE checkpoints (
    name       text   PRIMARY KEY,
    position   bigint NOT NULL,
    updated_at bigint NOT NULL
);
