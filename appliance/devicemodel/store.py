"""SQLite persistence of the device model's values (table `device_variable`, migrations/0001).

Transactions: the writes here run as `Storage.write` jobs, on the storage worker's writer connection, and that
job is the transaction (``BEGIN IMMEDIATE … COMMIT``, a SAVEPOINT when one is already open): one SetVariables
request is one transaction, so a power cut leaves all of its values or none of them. With `synchronous=FULL`
in WAL mode, a COMMIT that returned is on disk, so "persisted before the answer" holds as soon as the awaited
write returns.

Reads happen once, at open: the model keeps the values in memory and writes through.
"""

from __future__ import annotations

import sqlite3
from collections.abc import Iterable
from dataclasses import dataclass

from appliance.devicemodel.types import AttributeKey, AttributeType, ComponentKey, SetBy, VariableKey
from appliance.timetext import now_text

_COLUMNS = "component, component_instance, evse_id, connector_id, variable, variable_instance, attribute"

RowKey = tuple[str, str, int, int, str, str, str]


@dataclass(frozen=True)
class Stored:
    """One persisted value and its provenance."""

    value: str | None
    set_by: SetBy
    set_at: str


@dataclass(frozen=True)
class Write:
    """One value to persist."""

    key: AttributeKey
    value: str | None
    set_by: SetBy


def row_key(key: AttributeKey) -> RowKey:
    """The primary key columns of a variable attribute ('' / 0 stand for "absent")."""
    variable, attribute = key
    component = variable.component
    return (
        component.name,
        component.instance or "",
        component.evse or 0,
        component.connector or 0,
        variable.name,
        variable.instance or "",
        attribute.value,
    )


def attribute_key(row: RowKey) -> AttributeKey:
    """The inverse of `row_key`."""
    name, cinst, evse, connector, variable, vinst, attribute = row
    component = ComponentKey(name, cinst or None, evse or None, connector or None)
    return VariableKey(component, variable, vinst or None), AttributeType(attribute)


class VariableStore:
    def __init__(self, conn: sqlite3.Connection) -> None:
        self._conn = conn

    def load(self) -> dict[AttributeKey, Stored]:
        """Every persisted value, including rows of variables the current catalog no longer has."""
        rows = self._conn.execute(f"SELECT {_COLUMNS}, value, set_by, set_at FROM device_variable").fetchall()
        out: dict[AttributeKey, Stored] = {}
        for row in rows:
            try:
                key = attribute_key(tuple(row[:7]))
            except ValueError:
                continue  # an attribute name this firmware does not know: leave the row alone
            out[key] = Stored(row[7], SetBy(row[8]), row[9])
        return out

    def create(self, writes: Iterable[Write]) -> None:
        """Insert rows that do not exist yet (first boot, or variables new in this firmware), never replacing."""
        self._apply(writes, "INSERT OR IGNORE")

    def write(self, writes: Iterable[Write]) -> None:
        """Insert or replace the rows."""
        self._apply(writes, "INSERT OR REPLACE")

    def _apply(self, writes: Iterable[Write], verb: str) -> None:
        set_at = now_text()
        params = [(*row_key(w.key), w.value, w.set_by.value, set_at) for w in writes]
        if not params:
            return
        sql = f"{verb} INTO device_variable ({_COLUMNS}, value, set_by, set_at) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?)"
        self._conn.executemany(sql, params)
