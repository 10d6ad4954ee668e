-- The write-ahead journal: transactions and every outbound message that must reach the CSMS.
--
-- A message is committed here before it is sent and marked delivered only when its CALLRESULT arrives.
-- `id` is the journal order (AUTOINCREMENT: ids are never reused, even after pruning, so replay order is
-- explicit and stable). A transaction's seqNo is allocated from `transactions.next_seq_no` in the same SQLite
-- transaction that inserts the message, so a power cut can neither leave a gap nor repeat a seqNo.
CREATE TABLE transactions (
    transaction_id   TEXT PRIMARY KEY,
    evse_id          INTEGER NOT NULL,
    connector_id     INTEGER NOT NULL DEFAULT 1,
    id_token         TEXT,              -- JSON IdTokenType that authorized it, if any
    remote_start_id  INTEGER,
    started_at       TEXT NOT NULL,     -- ISO 8601 UTC Z (station clock)
    ended_at         TEXT,
    stopped_reason   TEXT,
    meter_start_wh   REAL,
    meter_last_wh    REAL,
    next_seq_no      INTEGER NOT NULL DEFAULT 0,
    state            TEXT NOT NULL DEFAULT 'open' CHECK (state IN ('open', 'ended'))
);
CREATE INDEX transactions_open ON transactions (state, evse_id);

CREATE TABLE outbox (
    id               INTEGER PRIMARY KEY AUTOINCREMENT,
    message_id       TEXT NOT NULL UNIQUE,   -- the OCPP message id, reused by every attempt of this message
    action           TEXT NOT NULL,
    transaction_id   TEXT REFERENCES transactions (transaction_id),
    seq_no           INTEGER,
    event_type       TEXT,
    trigger_reason   TEXT,
    offline          INTEGER NOT NULL DEFAULT 0,
    payload          TEXT NOT NULL,          -- the OCPP payload exactly as sent (JSON)
    created_at       TEXT NOT NULL,
    attempts         INTEGER NOT NULL DEFAULT 0,  -- failed attempts (CALLERROR or no answer), persisted
    last_error       TEXT,
    delivered_at     TEXT,                   -- when the CSMS acknowledged it (NULL while pending)
    outcome          TEXT CHECK (outcome IN ('delivered', 'dropped')),
    UNIQUE (transaction_id, seq_no)
);
CREATE INDEX outbox_pending ON outbox (id) WHERE outcome IS NULL;
CREATE INDEX outbox_tx ON outbox (transaction_id, seq_no);

-- Meter samples a transaction collects for its Ended event (SampledDataCtrlr/AlignedDataCtrlr TxEnded*),
-- kept durable so an Ended event after a power cut still carries them.
CREATE TABLE tx_meter_values (
    id               INTEGER PRIMARY KEY AUTOINCREMENT,
    transaction_id   TEXT NOT NULL REFERENCES transactions (transaction_id),
    meter_value      TEXT NOT NULL           -- one JSON MeterValueType
);
CREATE INDEX tx_meter_values_tx ON tx_meter_values (transaction_id, id);
