-- Wrapped data keys live outside the ledger: deleting a row crypto-shreds
-- the secret version whose sealed value stays in the ledger. key_id is
-- named in the secret.stored event; a row no event names is an orphan of
-- an interrupted store and is swept.
CREATE TABLE secret_keys (
    key_id      text    PRIMARY KEY,
    tenant_id   text    NOT NULL,
    name        text    NOT NULL,
    version     bigint  NOT NULL,
    kek_version bigint  NOT NULL,
    wrapped     bytea    NOT NULL,
    created_at  bigint  NOT NULL
);
CREATE INDEX secret_keys_by_secret ON secret_keys (tenant_id, name, version);
CREATE INDEX secret_keys_by_kek ON secret_keys (kek_version);

-- The vault's key-encryption key version and the fingerprint of the master
-- key that derives it, so a wrong HALDIR_ENCRYPTION_KEY is refused at start.
CREATE TABLE vault_state (
    id          integer PRIMARY KEY CHECK (id = 1),
    kek_version bigint  NOT NULL,
    fingerprint text    NOT NULL,
    updated_at  bigint  NOT NULL
);

-- Projection: the current version of each secret. sealed is ciphertext.
CREATE TABLE secrets (
    tenant_id      text    NOT NULL,
    name           text    NOT NULL,
    version        bigint  NOT NULL,
    scope_required text    NOT NULL,
    key_id         text    NOT NULL,
    sealed         bytea    NOT NULL,
    created_at     bigint  NOT NULL,
    updated_at     bigint  NOT NULL,
    PRIMARY KEY (tenant_id, name)
);

-- Projection: reads of each secret (for vault overview and evidence).
CREATE TABLE secret_access_counts (
    tenant_id text    NOT NULL,
    month     text    NOT NULL,
    accesses  bigint  NOT NULL,
    denials   bigint  NOT NULL,
    PRIMARY KEY (tenant_id, month)
);
