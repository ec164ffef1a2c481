-- Anomaly detection (projections.Detectors, group "anomalies"): each
-- tenant's detector settings, the sliding windows and first sightings the
-- detectors keep, and the outbox of flags to append to the ledger (not a
-- read model: never rebuilt). The flags themselves are read from
-- "anomalies", projected from anomaly.flagged and anomaly.acknowledged.
CREATE TABLE anomaly_settings (
    tenant_id TEXT NOT NULL PRIMARY KEY,
    settings  TEXT NOT NULL
);

CREATE TABLE anomaly_window (
    tenant_id TEXT    NOT NULL,
    detector  TEXT    NOT NULL,
    subject   TEXT    NOT NULL,
    at        INTEGER NOT NULL,
    seq       INTEGER NOT NULL,
    event_id  TEXT    NOT NULL,
    amount    INTEGER NOT NULL,
    PRIMARY KEY (tenant_id, detector, subject, seq)
);
CREATE INDEX anomaly_window_by_time ON anomaly_window (tenant_id, detector, subject, at);

-- Each window's running count and total, so that a detector reads one row
-- per event however long the window is.
CREATE TABLE anomaly_window_sums (
    tenant_id TEXT    NOT NULL,
    detector  TEXT    NOT NULL,
    subject   TEXT    NOT NULL,
    n         INTEGER NOT NULL,
    total     INTEGER NOT NULL,
    PRIMARY KEY (tenant_id, detector, subject)
);

CREATE TABLE anomaly_seen (
    tenant_id TEXT NOT NULL,
    detector  TEXT NOT NULL,
    subject   TEXT NOT NULL,
    PRIMARY KEY (tenant_id, detector, subject)
);

CREATE TABLE anomaly_outbox (
    tenant_id TEXT    NOT NULL,
    flag_id   TEXT    NOT NULL,
    payload   BLOB    NOT NULL,
    appended  INTEGER NOT NULL,
    PRIMARY KEY (tenant_id, flag_id)
);
CREATE INDEX anomaly_outbox_pending ON anomaly_outbox (appended);

CREATE TABLE anomalies (
    tenant_id  TEXT    NOT NULL,
    flag_id    TEXT    NOT NULL,
    detector   TEXT    NOT NULL,
    severity   TEXT    NOT NULL,
    agent_id   TEXT    NOT NULL,
    session_id TEXT    NOT NULL,
    tool       TEXT    NOT NULL,
    reason     TEXT    NOT NULL,
    evidence   TEXT    NOT NULL,
    entry_id   TEXT    NOT NULL,
    flagged_at INTEGER NOT NULL,
    acked_at   INTEGER,
    acked_by   TEXT    NOT NULL,
    note       TEXT    NOT NULL,
    PRIMARY KEY (tenant_id, flag_id)
);
CREATE INDEX anomalies_by_time ON anomalies (tenant_id, flagged_at);
