-- Anomaly detection (projections.Detectors, group "anomalies"): each
-- tenant's detector settings, the sliding windows and first sightings the
-- detectors keep, and the outbox of flags to append to the ledger (not a
-- read model: never rebuilt). The flags themselves are read from
-- "anomalies", projected from anomaly.flagged and anomaly.acknowledged.
CREATE TABLE anomaly_settings (
    tenant_id text NOT NULL PRIMARY KEY,
    settings  text NOT NULL
);

CREATE TABLE anomaly_window (
    tenant_id text    NOT NULL,
    detector  text    NOT NULL,
    subject   text    NOT NULL,
    at        bigint  NOT NULL,
    seq       bigint  NOT NULL,
    event_id  text    NOT NULL,
    amount    bigint  NOT NULL,
    PRIMARY KEY (tenant_id, detector, subject, seq)
);
CREATE INDEX anomaly_window_by_time ON anomaly_window (tenant_id, detector, subject, at);

-- Each window's running count and total, so that a detector reads one row
-- per event however long the window is.
CREATE TABLE anomaly_window_sums (
    tenant_id text    NOT NULL,
    detector  text    NOT NULL,
    subject   text    NOT NULL,
    n         bigint  NOT NULL,
    total     bigint  NOT NULL,
    PRIMARY KEY (tenant_id, detector, subject)
);

CREATE TABLE anomaly_seen (
    tenant_id text NOT NULL,
    detector  text NOT NULL,
    subject   text NOT NULL,
    PRIMARY KEY (tenant_id, detector, subject)
);

CREATE TABLE anomaly_outbox (
    tenant_id text    NOT NULL,
    flag_id   text    NOT NULL,
    payload   bytea   NOT NULL,
    appended  bigint  NOT NULL,
    PRIMARY KEY (tenant_id, flag_id)
);
CREATE INDEX anomaly_outbox_pending ON anomaly_outbox (appended);

CREATE TABLE anomalies (
    tenant_id  text    NOT NULL,
    flag_id    text    NOT NULL,
    detector   text    NOT NULL,
    severity   text    NOT NULL,
    agent_id   text    NOT NULL,
    session_id text    NOT NULL,
    tool       text    NOT NULL,
    reason     text    NOT NULL,
    evidence   text    NOT NULL,
    entry_id   text    NOT NULL,
    flagged_at bigint  NOT NULL,
    acked_at   bigint ,
    acked_by   text    NOT NULL,
    note       text    NOT NULL,
    PRIMARY KEY (tenant_id, flag_id)
);
CREATE INDEX anomalies_by_time ON anomalies (tenant_id, flagged_at);
