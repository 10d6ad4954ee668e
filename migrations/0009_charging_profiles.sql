-- Charging profiles installed by the CSMS (SetChargingProfile, RequestStartTransaction's TxProfile) or by the
-- station's external limit source (K12). They survive reboots (K01.FR.27): the composite schedule is computed
-- from these rows, read into memory at start. A TxProfile is removed when its transaction ends.
CREATE TABLE charging_profiles (
    id             INTEGER PRIMARY KEY,   -- chargingProfile.id (a new profile with the same id replaces it)
    evse_id        INTEGER NOT NULL,      -- 0 = the whole station
    source         TEXT NOT NULL,         -- chargingLimitSource: CSO (the CSMS), EMS, SO, Other
    transaction_id TEXT,                  -- a TxProfile's transaction; NULL for a remote start's not yet begun
    profile        TEXT NOT NULL          -- JSON ChargingProfileType as received
);
