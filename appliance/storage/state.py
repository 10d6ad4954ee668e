"""Small durable facts about the station (table `station_state`): clock offset, next boot reason, availability.

The table is tiny, so it is read once at open and served from memory; every change is written through the
storage worker before `put` returns, so a fact the station acted on is on disk.
"""

from __future__ import annotations

import sqlite3

from appliance.storage.writer import Storage
from appliance.timetext import now_text


class StateStore:
    def __init__(self, storage: Storage, values: dict[str, str]) -> None:
        self._storage = storage
        self._values = values

    @classmethod
    async def open(cls, storage: Storage) -> StateStore:
        rows = await storage.run(lambda: storage.writer.execute("SELECT key, value FROM station_state").fetchall())
        return cls(storage, {key: value for key, value in rows})

    def get(self, key: str) -> str | None:
        return self._values.get(key)

    async def put(self, key: str, value: str | None) -> None:
        """Persist (None deletes) and then remember; an unchanged value is not written again."""
        if self._values.get(key) == value:
            return
        await self._storage.write(_put, self._storage.writer, key, value)
        if value is None:
            self._values.pop(key, None)
        else:
            self._values[key] = value


def _put(conn: sqlite3.Connection, key: str, value: str | None) -> None:
    if value is None:
        conn.execute("DELETE FROM station_state WHERE key = ?", (key,))
    else:
        conn.execute(
            "INSERT INTO station_state (key, value, updated_at) "
            "VALUES (?, ?, ?) "
            "ON CONFLICT(key) DO UPDATE SET value = excluded.value, updated_at = excluded.updated_at",
            (key, value, now_text()),
        )
