"""Durable authorization data: the authorization cache and the local authorization list (SQLite).

Both live in the station database (migration 0004) and are touched only through this module. Reads use the
storage's read connection on the Trio thread (WAL readers never wait); every change is one transaction run by
the storage worker and awaited, so no fsync or lock wait happens on the event loop. A SendLocalList is applied
with its version number in a single transaction, so a power cut mid-update leaves the old list and version
whole, never half a list.
"""

from __future__ import annotations

import json
import sqlite3
from collections.abc import Iterable
from datetime import datetime, timedelta

from appliance.clock import format_iso, parse_iso
from appliance.storage import Storage


def _key(id_token: dict) -> tuple[str, str]:
    return id_token["idToken"], id_token["type"]


class AuthCache:
    """The authorization cache (AuthCacheCtrlr), bounded in bytes; the least recently used entry goes first."""

    def __init__(self, storage: Storage, capacity_bytes: int) -> None:
        self._storage = storage
        self.capacity_bytes = capacity_bytes

    def get(self, id_token: dict, now: datetime, lifetime_s: float) -> dict | None:
        """The cached idTokenInfo, with status Expired when its time is up (the entry stays for the CSMS to
        refresh), or None when the token is not cached."""
        row = self._storage.reader.execute(
            "SELECT id_token_info, expires_at, last_used_at FROM auth_cache WHERE id_token = ? AND token_type = ?",
            _key(id_token),
        ).fetchone()
        if row is None:
            return None
        info = json.loads(row[0])
        expires = parse_iso(row[1]) if row[1] else parse_iso(row[2]) + timedelta(seconds=lifetime_s)
        if now >= expires and info.get("status") == "Accepted":
            info["status"] = "Expired"
        return info

    async def touch(self, id_token: dict, now: datetime) -> None:
        await self._storage.write(self._touch, self._storage.writer, id_token, now)

    @staticmethod
    def _touch(conn: sqlite3.Connection, id_token: dict, now: datetime) -> None:
        conn.execute(
            "UPDATE auth_cache SET last_used_at = ? WHERE id_token = ? AND token_type = ?",
            (format_iso(now), *_key(id_token)),
        )

    async def put(self, id_token: dict, info: dict, now: datetime) -> None:
        await self._storage.write(self._put, self._storage.writer, id_token, info, now)

    def _put(self, conn: sqlite3.Connection, id_token: dict, info: dict, now: datetime) -> None:
        stamp = format_iso(now)
        expiry = info.get("cacheExpiryDateTime")
        conn.execute(
            "INSERT INTO auth_cache (id_token, token_type, id_token_info, expires_at, updated_at, last_used_at)"
            " VALUES (?, ?, ?, ?, ?, ?) ON CONFLICT (id_token, token_type) DO UPDATE SET"
            " id_token_info = excluded.id_token_info, expires_at = excluded.expires_at,"
            " updated_at = excluded.updated_at, last_used_at = excluded.last_used_at",
            (
                *_key(id_token),
                json.dumps(info, separators=(",", ":")),
                format_iso(parse_iso(expiry)) if expiry else None,
                stamp,
                stamp,
            ),
        )
        while _cache_bytes(conn) > self.capacity_bytes:
            conn.execute(
                "DELETE FROM auth_cache WHERE rowid = (SELECT rowid FROM auth_cache ORDER BY last_used_at LIMIT 1)"
            )

    async def clear(self) -> None:
        await self._storage.write(self._storage.writer.execute, "DELETE FROM auth_cache")

    @staticmethod
    def forget_in(conn: sqlite3.Connection, id_token: dict) -> bool:
        """Remove one token's entry inside a storage job that clears more in the same transaction (customer
        information, N10); whether there was one."""
        cursor = conn.execute("DELETE FROM auth_cache WHERE id_token = ? AND token_type = ?", _key(id_token))
        return cursor.rowcount > 0

    def used_bytes(self) -> int:
        return _cache_bytes(self._storage.reader)

    def count(self) -> int:
        return int(self._storage.reader.execute("SELECT count(*) FROM auth_cache").fetchone()[0])


def _cache_bytes(conn: sqlite3.Connection) -> int:
    row = conn.execute(
        "SELECT coalesce(sum(length(id_token) + length(token_type) + length(id_token_info) + 48), 0) FROM auth_cache"
    ).fetchone()
    return int(row[0])


class LocalList:
    """The local authorization list (LocalAuthListCtrlr) and its version."""

    def __init__(self, storage: Storage) -> None:
        self._storage = storage

    def version(self) -> int:
        row = self._storage.reader.execute("SELECT version FROM local_list_version WHERE singleton = 1").fetchone()
        return int(row[0]) if row else 0

    def get(self, id_token: dict) -> dict | None:
        row = self._storage.reader.execute(
            "SELECT id_token_info FROM local_list WHERE id_token = ? AND token_type = ?", _key(id_token)
        ).fetchone()
        return json.loads(row[0]) if row else None

    def count(self) -> int:
        return int(self._storage.reader.execute("SELECT count(*) FROM local_list").fetchone()[0])

    def used_bytes(self) -> int:
        row = self._storage.reader.execute(
            "SELECT coalesce(sum(length(id_token) + length(token_type) + length(id_token_info)), 0) FROM local_list"
        ).fetchone()
        return int(row[0])

    async def replace(self, version: int, entries: Iterable[tuple[dict, dict]]) -> None:
        await self._storage.write(_replace, self._storage.writer, version, list(entries))

    async def patch(self, version: int, updates: Iterable[tuple[dict, dict | None]]) -> None:
        """Differential update: entries with idTokenInfo are added or replaced, entries without are removed."""
        await self._storage.write(_patch, self._storage.writer, version, list(updates))

    def size_after_patch(self, updates: Iterable[tuple[dict, dict | None]]) -> int:
        """How many entries the list would hold after a differential update (to refuse one that overflows)."""
        current = {
            (r[0], r[1]) for r in self._storage.reader.execute("SELECT id_token, token_type FROM local_list").fetchall()
        }
        for id_token, info in updates:
            if info is None:
                current.discard(_key(id_token))
            else:
                current.add(_key(id_token))
        return len(current)


def _replace(conn: sqlite3.Connection, version: int, entries: list[tuple[dict, dict]]) -> None:
    conn.execute("DELETE FROM local_list")
    _upsert(conn, entries)
    _set_version(conn, version)


def _patch(conn: sqlite3.Connection, version: int, updates: list[tuple[dict, dict | None]]) -> None:
    for id_token, info in updates:
        if info is None:
            conn.execute("DELETE FROM local_list WHERE id_token = ? AND token_type = ?", _key(id_token))
        else:
            _upsert(conn, [(id_token, info)])
    _set_version(conn, version)


def _upsert(conn: sqlite3.Connection, entries: Iterable[tuple[dict, dict]]) -> None:
    conn.executemany(
        "INSERT INTO local_list (id_token, token_type, id_token_info) VALUES (?, ?, ?)"
        " ON CONFLICT (id_token, token_type) DO UPDATE SET id_token_info = excluded.id_token_info",
        [(*_key(t), json.dumps(i, separators=(",", ":"))) for t, i in entries],
    )


def _set_version(conn: sqlite3.Connection, version: int) -> None:
    conn.execute(
        "INSERT INTO local_list_version (singleton, version) VALUES (1, ?)"
        " ON CONFLICT (singleton) DO UPDATE SET version = excluded.version",
        (version,),
    )
