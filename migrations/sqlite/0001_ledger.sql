-- The ledger. Rows are appended by the group-commit writer only; positions
-- and tenant sequence numbers are assigned under the single writer, so they
-- are gapless and commit-ordered. recorded_at is Unix nanoseconds.
CREATE TABLE events (
    position       INTEGER PRIMARY KEY,
    tenant_id      TEXT    NOT NULL,
    seq            INTEGER NOT NULL,
    event_id       TEXT    NOT NULL UNIQUE,
    stream         TEXT    NOT NULL,
    stream_version INTEGER NOT NULL,
    type           TEXT    NOT NULL,
    payload        BLOB    NOT NULL,
    metadata       BLOB    NOT NULL,
    recorded_at    INTEGER NOT NULL,
    prev_hash      BLOB    NOT NULL,
    hash           BLOB    NOT NULL,
    UNIQUE (tenant_id, seq),
    UNIQUE (tenant_id, stream, stream_version)
);

CREATE TRIGGER events_append_only_update BEFORE UPDATE ON events
BEGIN
    SELECT RAISE(ABORT, 'haldir: the ledger is append-only');
END;

CREATE TRIGGER events_append_only_delete BEFORE DELETE ON events
BEGIN
    SELECT RAISE(ABORT, 'haldir: the ledger is append-only');
END;

-- One row per projection handler group: the last ledger position applied.
-- It is updated in the same transaction as the read-model change.
CREATE TABLE checkpoints (
    name       TEXT    PRIMARY KEY,
    position   INTEGER NOT NULL,
    updated_at INTEGER NOT NULL
);
