-- Projection: each tenant's RFC 6962 Merkle tree over its event hashes,
-- as tlog stored hashes (leaf n is the event with seq n+1), and its size.
CREATE TABLE tree_hashes (
    tenant_id text   NOT NULL,
    idx       bigint NOT NULL,
    hash      bytea  NOT NULL,
    PRIMARY KEY (tenant_id, idx)
);

CREATE TABLE tree_sizes (
    tenant_id text   PRIMARY KEY,
    size      bigint NOT NULL
);

-- Signed checkpoints as published: append-only, never rebuilt. An auditor
-- holding one can demand a consistency proof from it to any later one.
CREATE TABLE tree_checkpoints (
    tenant_id text   NOT NULL,
    size      bigint NOT NULL,
    signed_at bigint NOT NULL,
    note      bytea  NOT NULL,
    PRIMARY KEY (tenant_id, size)
);

CREATE FUNCTION haldir_checkpoints_append_only() RETURNS trigger
LANGUAGE plpgsql AS $$
BEGIN
    RAISE EXCEPTION 'haldir: published checkpoints are append-only' USING ERRCODE = 'HA001';
END;
$$;

CREATE TRIGGER tree_checkpoints_append_only
    BEFORE UPDATE OR DELETE ON tree_checkpoints
    FOR EACH ROW EXECUTE FUNCTION haldir_checkpoints_append_only();
