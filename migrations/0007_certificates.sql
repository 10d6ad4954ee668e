-- The certificate store (certificates block, M01-M05): the roots the station trusts, by use.
-- Rows, not files, so an install or a delete is one SQLite transaction. Certificates are public data; the
-- station's private keys never come here (they are files under <data_dir>/certs, mode 0600).
-- A factory certificate (the config's ca_file / manufacturer_root_file) is imported once; deleting it over
-- OCPP keeps its row with deleted_at set, so the next start does not import it again.
CREATE TABLE certificates (
    use           TEXT NOT NULL,      -- CSMSRootCertificate | ManufacturerRootCertificate
    fingerprint   TEXT NOT NULL,      -- SHA-256 of the DER, lowercase hex
    pem           TEXT NOT NULL,
    origin        TEXT NOT NULL,      -- factory | csms
    installed_at  TEXT NOT NULL,      -- ISO 8601 UTC
    deleted_at    TEXT,               -- NULL while installed
    PRIMARY KEY (use, fingerprint)
);
