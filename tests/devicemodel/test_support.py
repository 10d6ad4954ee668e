"""Shared helpers for the device-model tests (a real SQLite file, the real migration), and their own checks.

Kept in a test module because the package's only files are test modules; the other tests import from here.
"""

from __future__ import annotations

import json
import sqlite3
from collections.abc import Mapping
from importlib import resources
from pathlib import Path

import jsonschema

from appliance.devicemodel import DEFAULT_LAYOUTS, DeviceModel
from appliance.hardware.base import EvseLayout
from appliance.storage import Storage

MIGRATION = Path(__file__).resolve().parents[2] / "migrations" / "0001_device_model.sql"


def new_db(path: Path) -> sqlite3.Connection:
    """A station-like connection (WAL, FULL, autocommit) on a file, with migration 0001 applied."""
    conn = open_db(path)
    conn.execute("BEGIN IMMEDIATE")
    for statement in _statements(MIGRATION.read_text(encoding="utf-8")):
        conn.execute(statement)
    conn.execute("COMMIT")
    return conn


def open_db(path: Path) -> sqlite3.Connection:
    conn = sqlite3.connect(path, isolation_level=None, check_same_thread=False)
    conn.execute("PRAGMA journal_mode=WAL")
    conn.execute("PRAGMA synchronous=FULL")
    return conn


def _statements(sql: str) -> list[str]:
    out, buffer = [], ""
    for line in sql.splitlines(keepends=True):
        buffer += line
        if sqlite3.complete_statement(buffer):
            out.append(buffer)
            buffer = ""
    return out


#: One storage worker per test connection (kept alive with it, so an id is never reused).
_STORAGES: dict[int, Storage] = {}


def storage_for(conn: sqlite3.Connection) -> Storage:
    """The storage worker that owns `conn` as its writer connection, started on first use."""
    storage = _STORAGES.get(id(conn))
    if storage is None:
        storage = Storage(conn, Path(conn.execute("PRAGMA database_list").fetchone()[2]))
        storage.start()
        _STORAGES[id(conn)] = storage
    return storage


def close_storage(conn: sqlite3.Connection) -> None:
    """Stop the worker of `conn` and close it (and its reader)."""
    storage = _STORAGES.pop(id(conn), None)
    if storage is not None:
        storage.close()


async def open_model(
    conn: sqlite3.Connection, factory: Mapping[str, object] | None = None, layouts: list[EvseLayout] | None = None
) -> DeviceModel:
    return await DeviceModel.open(storage_for(conn), list(layouts or DEFAULT_LAYOUTS), dict(factory or {}))


def _validator(name: str) -> jsonschema.protocols.Validator:
    text = resources.files("ocpp.v201.schemas").joinpath(f"{name}.json").read_text(encoding="utf-8")
    schema = json.loads(text)
    cls = jsonschema.validators.validator_for(schema, default=jsonschema.Draft6Validator)
    return cls(schema)


def assert_valid(name: str, payload: dict) -> None:
    """Raise if `payload` does not validate against the ocpp package's schema `name`."""
    _validator(name).validate(payload)


def get(dm: DeviceModel, component: dict, variable: dict, attribute: str | None = None) -> dict:
    """One GetVariables item through the handler; the response is schema-checked on the way."""
    item: dict = {"component": component, "variable": variable}
    if attribute is not None:
        item["attributeType"] = attribute
    response = dm.handle_get_variables({"getVariableData": [item]})
    assert_valid("GetVariablesResponse", response)
    [result] = response["getVariableResult"]
    return result


async def set_(dm: DeviceModel, component: dict, variable: dict, value: str, attribute: str | None = None) -> dict:
    """One SetVariables item through the handler; the response is schema-checked on the way."""
    item: dict = {"component": component, "variable": variable, "attributeValue": value}
    if attribute is not None:
        item["attributeType"] = attribute
    response = await dm.handle_set_variables({"setVariableData": [item]})
    assert_valid("SetVariablesResponse", response)
    [result] = response["setVariableResult"]
    return result


# --- checks of the helpers themselves and of the migration ---------------------------------------------


def test_migration_creates_the_table(tmp_path: Path) -> None:
    conn = new_db(tmp_path / "dm.db")
    columns = [row[1] for row in conn.execute("PRAGMA table_info(device_variable)")]
    assert columns == [
        "component",
        "component_instance",
        "evse_id",
        "connector_id",
        "variable",
        "variable_instance",
        "attribute",
        "value",
        "set_by",
        "set_at",
    ]
    conn.close()


async def test_the_station_migration_runner_applies_it(tmp_path: Path) -> None:
    from appliance.storage.db import open_station_db

    conn = open_station_db(tmp_path)
    dm = await open_model(conn)
    assert dm.get("OCPPCommCtrlr.OfflineThreshold") == 60


def test_schema_validator_rejects_bad_payloads() -> None:
    bad = {"getVariableResult": [{"attributeStatus": "Maybe", "component": {"name": "X"}, "variable": {"name": "Y"}}]}
    try:
        assert_valid("GetVariablesResponse", bad)
    except jsonschema.ValidationError:
        return
    raise AssertionError("the schema check let an invalid status through")
