-- The device model's persisted values: one row per variable attribute
-- (component, component instance, EVSE, connector, variable, variable instance, attribute).
-- Absent instances are stored as '' and absent EVSE/connector ids as 0, so the primary key really is unique
-- (SQLite treats NULLs in a key as distinct). Component and variable names use the catalog's spelling.
-- value is the canonical text of the value (NULL = the attribute has no value, e.g. a password never set);
-- set_by/set_at say who wrote it last: the catalog default or the config's [variables] when the row was
-- created, a SetVariables from the CSMS, or the station itself.
CREATE TABLE device_variable (
    component          TEXT    NOT NULL,
    component_instance TEXT    NOT NULL DEFAULT '',
    evse_id            INTEGER NOT NULL DEFAULT 0 CHECK (evse_id >= 0),
    connector_id       INTEGER NOT NULL DEFAULT 0 CHECK (connector_id >= 0),
    variable           TEXT    NOT NULL,
    variable_instance  TEXT    NOT NULL DEFAULT '',
    attribute          TEXT    NOT NULL CHECK (attribute IN ('Actual', 'Target', 'MinSet', 'MaxSet')),
    value              TEXT,
    set_by             TEXT    NOT NULL CHECK (set_by IN ('default', 'factory', 'csms', 'station')),
    set_at             TEXT    NOT NULL,
    PRIMARY KEY (component, component_instance, evse_id, connector_id, variable, variable_instance, attribute)
) WITHOUT ROWID;
