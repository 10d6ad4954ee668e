-- The security log (A04): every security event the station raises, critical or not, newest last.
--
-- Critical events are journaled as SecurityEventNotification (the outbox delivers them); the trigger below
-- copies each one into the log in the very SQLite transaction that journals it, so a power cut can never leave
-- an event in one and not the other. Non-critical events (which never reach the CSMS, A04.FR.02) are inserted
-- directly. The log is bounded: the second trigger keeps only the newest 10,000 entries.
CREATE TABLE security_log (
    id          INTEGER PRIMARY KEY AUTOINCREMENT,
    timestamp   TEXT NOT NULL,              -- station clock, ISO 8601 UTC with Z (as sent to the CSMS)
    type        TEXT NOT NULL,              -- SecurityEventEnumType value or another type (≤ 50 characters)
    tech_info   TEXT,
    critical    INTEGER NOT NULL CHECK (critical IN (0, 1)),
    outbox_id   INTEGER                     -- the journaled notification of a critical event
);
CREATE INDEX security_log_time ON security_log (timestamp);

CREATE TRIGGER security_log_from_outbox AFTER INSERT ON outbox
WHEN NEW.action = 'SecurityEventNotification'
BEGIN
    INSERT INTO security_log (timestamp, type, tech_info, critical, outbox_id)
    VALUES (json_extract(NEW.payload, '$.timestamp'), json_extract(NEW.payload, '$.type'),
            json_extract(NEW.payload, '$.techInfo'), 1, NEW.id);
END;

CREATE TRIGGER security_log_bound AFTER INSERT ON security_log
BEGIN
    DELETE FROM security_log WHERE id <= NEW.id - 10000;
END;
