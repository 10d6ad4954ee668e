-- The one firmware update the station may run at a time (L01), durable so a power cut at any stage resumes it
-- or ends it with a clean failure status after the restart. `stage` is the FirmwareStatus last journaled for
-- it (DownloadScheduled … InstallRebooting); the row is deleted when the update has ended.
CREATE TABLE firmware_update (
    singleton      INTEGER PRIMARY KEY CHECK (singleton = 1),
    request_id     INTEGER NOT NULL,
    stage          TEXT NOT NULL,
    request        TEXT NOT NULL,      -- JSON: the UpdateFirmware request's `firmware`, retries, retryInterval
    attempts       INTEGER NOT NULL DEFAULT 0,   -- download attempts begun
    image_path     TEXT,               -- the downloaded image
    target_slot    TEXT,               -- installer "slots": the slot the image went into
    target_version TEXT,               -- the image's version (its manifest)
    updated_at     TEXT NOT NULL
);
