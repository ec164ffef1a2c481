-- The store's write probe (sqlstore.Store.Ready): when the ledger has been
-- idle, readiness commits a row here, bigger than a page, and deletes the
-- older ones, to learn whether the store can still write. Nothing reads it.
CREATE TABLE store_probe (
    probed_at INTEGER NOT NULL,
    pad       BLOB    NOT NULL
);
