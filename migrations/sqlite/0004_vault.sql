-- Wrapped data keys live outside the ledger: deleting a row crypto-shreds
-- the secret version whose sealed value stays in the ledger. key_id is
-- named in the secret.stored event; a row no event names is an orphan of
-- an interrupted store and is swept.
CREATE TABLE secret_keys (
    key_id      TEXT    PRIMARY KEY,
    tenant_id   TEXT    NOT NULL,
    name        TEXT    NOT NULL,
    version     INTEGER NOT NULL,
    kek_version INTEGER NOT NULL,
    wrapped     BLOB    NOT NULL,
    created_at  INTEGER NOT NULL
);
CREATE INDEX secret_keys_by_secret ON secret_keys (tenant_id, name, version);
CREATE INDEX secret_keys_by_kek ON secret_keys (kek_version);

-- The vault's key-encryption key version and the fingerprint of the master
-- key that derives it, so a wrong HALDIR_ENCRYPTION_KEY is refused at start.
CREATE TABLE vault_state (
    id          INTEGER PRIMARY KEY CHECK (id = 1),
    kek_version INTEGER NOT NULL,
    fingerprint TEXT    NOT NULL,
    updated_at  INTEGER NOT NULL
);

-- Projection: the current version of each secret. sealed is ciphertext.
CREATE TABLE secrets (
    tenant_id      TEXT    NOT NULL,
    name           TEXT    NOT NULL,
    version        INTEGER NOT NULL,
    scope_required TEXT    NOT NULL,
    key_id         TEXT    NOT NULL,
    sealed         BLOB    NOT NULL,
    created_at     INTEGER NOT NULL,
    updated_at     INTEGER NOT NULL,
    PRIMARY KEY (tenant_id, name)
);

-- Projection: reads of each secret (for vault overview and evidence).
CREATE TABLE secret_access_counts (
    tenant_id TEXT    NOT NULL,
    month     TEXT    NOT NULL,
    accesses  INTEGER NOT NULL,
    denials   INTEGER NOT NULL,
    PRIMARY KEY (tenant_id, month)
);
