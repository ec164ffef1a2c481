-- Projection: each tenant's RFC 6962 Merkle tree over its event hashes,
-- as tlog stored hashes (leaf n is the event with seq n+1), and its size.
CREATE TABLE tree_hashes (
    tenant_id TEXT    NOT NULL,
    idx       INTEGER NOT NULL,
    hash      BLOB    NOT NULL,
    PRIMARY KEY (tenant_id, idx)
);

CREATE TABLE tree_sizes (
    tenant_id TEXT    PRIMARY KEY,
    size      INTEGER NOT NULL
);

-- Signed checkpoints as published: append-only, never rebuilt. An auditor
-- holding one can demand a consistency proof from it to any later one.
CREATE TABLE tree_checkpoints (
    tenant_id TEXT    NOT NULL,
    size      INTEGER NOT NULL,
    signed_at INTEGER NOT NULL,
    note      BLOB    NOT NULL,
    PRIMARY KEY (tenant_id, size)
);

CREATE TRIGGER tree_checkpoints_append_only_update BEFORE UPDATE ON tree_checkpoints
BEGIN
    SELECT RAISE(ABORT, 'haldir: published checkpoints are append-only');
END;

CREATE TRIGGER tree_checkpoints_append_only_delete BEFORE DELETE ON tree_checkpoints
BEGIN
    SELECT RAISE(ABORT, 'haldir: published checkpoints are append-only');
END;
