-- Small durable facts about the station itself that must survive a restart
-- (e.g. the reason to give in the next BootNotification after a reset we performed).
CREATE TABLE station_state (
    key        TEXT PRIMARY KEY,
    value      TEXT NOT NULL,
    updated_at TEXT NOT NULL
);
