"""The installed charging profiles, durable (migration 0009) and in memory.

Every change is one transaction on the storage worker, awaited before memory follows, so a profile the CSMS
was told is installed survives a power cut and one it was told is cleared does not come back (K01.FR.27).
Reads come from memory: the limit is recomputed at every period boundary and every change of an EVSE.
"""

from __future__ import annotations

import json
import logging
import sqlite3
from collections.abc import Iterable

from appliance.smartcharging.profiles import InvalidProfile, Profile, parse
from appliance.storage import Storage

log = logging.getLogger("appliance.smartcharging")


class ProfileStore:
    def __init__(self, storage: Storage) -> None:
        self._storage = storage
        self._profiles: dict[int, Profile] = {}

    async def load(self) -> None:
        """Read what is installed (a few dozen rows at most), as a storage job. A row that no longer parses is
        logged and skipped, never a crash at boot."""
        rows = await self._storage.run(self._rows)
        for profile_id, evse_id, source, tx_id, text in rows:
            try:
                raw = json.loads(text)
                profile = parse(evse_id, raw, source)
                if tx_id is not None:
                    profile = profile.with_transaction(tx_id)
            except (ValueError, KeyError, TypeError, IndexError, InvalidProfile) as exc:
                log.error("charging profile %s in the database is unusable (%s); ignored", profile_id, exc)
                continue
            self._profiles[profile.id] = profile

    def _rows(self) -> list[tuple[int, int, str, str | None, str]]:
        return self._storage.writer.execute(
            "SELECT id, evse_id, source, transaction_id, profile FROM charging_profiles ORDER BY id"
        ).fetchall()

    def all(self) -> list[Profile]:
        return list(self._profiles.values())

    def count(self) -> int:
        return len(self._profiles)

    async def put(self, profile: Profile) -> None:
        """Install `profile`, replacing one with the same id."""
        await self._storage.write(self._put, self._storage.writer, profile)
        self._profiles[profile.id] = profile

    @staticmethod
    def _put(conn: sqlite3.Connection, profile: Profile) -> None:
        conn.execute(
            "INSERT INTO charging_profiles (id, evse_id, source, transaction_id, profile) VALUES (?, ?, ?, ?, ?)"
            " ON CONFLICT (id) DO UPDATE SET evse_id = excluded.evse_id, source = excluded.source,"
            " transaction_id = excluded.transaction_id, profile = excluded.profile",
            (
                profile.id,
                profile.evse_id,
                profile.source,
                profile.transaction_id,
                json.dumps(profile.raw, separators=(",", ":")),
            ),
        )

    async def remove(self, ids: Iterable[int]) -> list[int]:
        """Remove these profiles (all in one transaction); the ids that were installed."""
        gone = [i for i in ids if i in self._profiles]
        if gone:
            await self._storage.write(self._remove, self._storage.writer, gone)
            for i in gone:
                del self._profiles[i]
        return gone

    @staticmethod
    def _remove(conn: sqlite3.Connection, ids: list[int]) -> None:
        conn.executemany("DELETE FROM charging_profiles WHERE id = ?", [(i,) for i in ids])
