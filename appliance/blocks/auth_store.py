"""Durable authorization data: the authorization cache and the local authorization list (SQLite).

Both live in the station database (migration 0004) and are touched only through this module. SQLite is the
truth; what authorization looks up on the Trio thread is a copy in memory, so a lookup needs neither a storage
job nor a second connection (each one parses the whole schema, ~115 KiB of SQLite heap, and a fleet of a
thousand stations that all authorize would pay that a thousand times).

The copy is exact, never "eventually": every change is one transaction run by the storage worker and awaited
(no fsync or lock wait on the event loop), and the same job, right after its COMMIT, reads the changed table
back and publishes a new immutable snapshot. Jobs run one after another on one thread, so snapshots follow the
commits in their order, a rolled-back change publishes nothing, and the Trio thread reads whichever snapshot is
current with one attribute load (no lock). After a restart or a power cut the copy is read back from the
database (`load`) before the station serves anything.

Bounds: the local list holds at most LOCAL_LIST_CAPACITY entries of at most one SendLocalList's bytes each, so
it is always copied whole. The cache may grow to AuthCacheCtrlr.Storage (1 MiB), so it is copied only while it
holds at most `mirror_bytes` (16 KiB of the bytes AuthCacheCtrlr.Storage counts, ~190 typical entries); past
that, a lookup is a job on the storage worker (the writer connection, queued after the writes before it) until
the cache shrinks again. A SendLocalList is applied with its version number in a single transaction, so a power
cut mid-update leaves the old list and version whole, never half a list.
"""

from __future__ import annotations

import json
import sqlite3
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any, TypeVar

from appliance.clock import format_iso, parse_iso
from appliance.storage import Storage
from appliance.storage.db import transaction

T = TypeVar("T")

#: Up to how many cache bytes (as AuthCacheCtrlr.Storage counts them) the cache is held in memory too.
MIRROR_BYTES = 16_384

Key = tuple[str, str]


def _key(id_token: dict) -> Key:
    return id_token["idToken"], id_token["type"]


class NotLoaded(RuntimeError):
    """A read before `load`: the station loads both stores (Authorizer.run) before it serves anything."""


@dataclass(frozen=True)
class _CacheRow:
    info: str  # JSON IdTokenInfoType
    expires_at: str | None
    last_used_at: str


@dataclass(frozen=True)
class _CacheSnapshot:
    rows: Mapping[Key, _CacheRow] | None  # every row; None while the cache is too big to copy
    used_bytes: int
    count: int


class AuthCache:
    """The authorization cache (AuthCacheCtrlr), bounded in bytes; the least recently used entry goes first."""

    def __init__(self, storage: Storage, capacity_bytes: int, mirror_bytes: int = MIRROR_BYTES) -> None:
        self._storage = storage
        self.capacity_bytes = capacity_bytes
        self.mirror_bytes = mirror_bytes
        self._snapshot: _CacheSnapshot | None = None

    @property
    def mirrored(self) -> bool:
        """Whether lookups are answered from memory (the cache holds at most `mirror_bytes`)."""
        return self._snapshot is not None and self._snapshot.rows is not None

    async def load(self) -> None:
        """Read the copy from the database (at start; again is harmless)."""
        await self._storage.run(self._refresh, self._storage.writer)

    async def get(self, id_token: dict, now: datetime, lifetime_s: float) -> dict | None:
        """The cached idTokenInfo, with status Expired when its time is up (the entry stays for the CSMS to
        refresh), or None when the token is not cached."""
        snapshot = self._loaded()
        if snapshot.rows is not None:
            row = snapshot.rows.get(_key(id_token))
        else:
            row = await self._storage.run(_cache_row, self._storage.writer, _key(id_token))
        if row is None:
            return None
        info = json.loads(row.info)
        if row.expires_at:
            expires = parse_iso(row.expires_at)
        else:
            expires = parse_iso(row.last_used_at) + timedelta(seconds=lifetime_s)
        if now >= expires and info.get("status") == "Accepted":
            info["status"] = "Expired"
        return info

    async def touch(self, id_token: dict, now: datetime) -> None:
        await self._write(_key(id_token), self._touch, self._storage.writer, id_token, now)

    @staticmethod
    def _touch(conn: sqlite3.Connection, id_token: dict, now: datetime) -> None:
        conn.execute(
            "UPDATE auth_cache SET last_used_at = ? WHERE id_token = ? AND token_type = ?",
            (format_iso(now), *_key(id_token)),
        )

    async def put(self, id_token: dict, info: dict, now: datetime) -> None:
        await self._write(_key(id_token), self._put, self._storage.writer, id_token, info, now)

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
        while _cache_totals(conn)[0] > self.capacity_bytes:
            conn.execute(
                "DELETE FROM auth_cache WHERE rowid = (SELECT rowid FROM auth_cache ORDER BY last_used_at LIMIT 1)"
            )

    async def clear(self) -> None:
        await self.write(self._storage.writer.execute, "DELETE FROM auth_cache")

    async def write(self, fn: Callable[..., T], *args: Any) -> T:
        """Run `fn(*args)` in one write transaction on the storage worker, then bring the copy up to date.

        For every change of auth_cache, also one made beyond this class in a bigger transaction (customer
        information's clear, with `forget_in`).
        """
        return await self._write(None, fn, *args)

    async def _write(self, changed: Key | None, fn: Callable[..., T], *args: Any) -> T:
        """`write` of a change to the entry `changed` alone and any evictions (None: anything)."""

        def job() -> T:
            with transaction(self._storage.writer):
                result = fn(*args)
            self._refresh(self._storage.writer, changed)
            return result

        return await self._storage.run(job)

    @staticmethod
    def forget_in(conn: sqlite3.Connection, id_token: dict) -> bool:
        """Remove one token's entry inside a job that clears more in the same transaction (customer information,
        N10; run it with `write`); whether there was one."""
        cursor = conn.execute("DELETE FROM auth_cache WHERE id_token = ? AND token_type = ?", _key(id_token))
        return cursor.rowcount > 0

    def used_bytes(self) -> int:
        return self._loaded().used_bytes

    def count(self) -> int:
        return self._loaded().count

    def _loaded(self) -> _CacheSnapshot:
        if self._snapshot is None:
            raise NotLoaded("the authorization cache is read before AuthCache.load")
        return self._snapshot

    def _refresh(self, conn: sqlite3.Connection, changed: Key | None = None) -> None:
        """Publish what the table holds now (a storage job, after a commit).

        After a change of one entry only that entry is read again (reading a full copy back costs ~0.3 ms of
        the worker's time); evictions show as fewer rows than the copy holds, and then all is read.
        """
        used, count = _cache_totals(conn)
        old = self._snapshot
        if changed is not None and old is not None and old.rows is not None and used <= self.mirror_bytes:
            copy = dict(old.rows)  # a published snapshot never changes
            row = _cache_row(conn, changed)
            if row is None:
                copy.pop(changed, None)
            else:
                copy[changed] = row
            if len(copy) == count:
                self._snapshot = _CacheSnapshot(copy, used, count)
                return
        rows = None
        if used <= self.mirror_bytes:
            rows = {
                (r[0], r[1]): _CacheRow(r[2], r[3], r[4])
                for r in conn.execute(
                    "SELECT id_token, token_type, id_token_info, expires_at, last_used_at FROM auth_cache"
                )
            }
        self._snapshot = _CacheSnapshot(rows, used, count)


def _cache_row(conn: sqlite3.Connection, key: Key) -> _CacheRow | None:
    row = conn.execute(
        "SELECT id_token_info, expires_at, last_used_at FROM auth_cache WHERE id_token = ? AND token_type = ?", key
    ).fetchone()
    return None if row is None else _CacheRow(*row)


def _cache_totals(conn: sqlite3.Connection) -> tuple[int, int]:
    """(bytes as AuthCacheCtrlr.Storage counts them, entries)."""
    row = conn.execute(
        "SELECT coalesce(sum(length(id_token) + length(token_type) + length(id_token_info) + 48), 0), count(*)"
        " FROM auth_cache"
    ).fetchone()
    return int(row[0]), int(row[1])


@dataclass(frozen=True)
class _ListSnapshot:
    entries: Mapping[Key, str]  # idTokenInfo JSON
    version: int
    used_bytes: int


class LocalList:
    """The local authorization list (LocalAuthListCtrlr) and its version, held whole in memory too."""

    def __init__(self, storage: Storage) -> None:
        self._storage = storage
        self._snapshot: _ListSnapshot | None = None

    async def load(self) -> None:
        """Read the copy from the database (at start; again is harmless)."""
        await self._storage.run(self._refresh, self._storage.writer)

    def version(self) -> int:
        return self._loaded().version

    def get(self, id_token: dict) -> dict | None:
        info = self._loaded().entries.get(_key(id_token))
        return None if info is None else json.loads(info)

    def count(self) -> int:
        return len(self._loaded().entries)

    def used_bytes(self) -> int:
        return self._loaded().used_bytes

    async def replace(self, version: int, entries: Iterable[tuple[dict, dict]]) -> None:
        await self._write(_replace, version, list(entries))

    async def patch(self, version: int, updates: Iterable[tuple[dict, dict | None]]) -> None:
        """Differential update: entries with idTokenInfo are added or replaced, entries without are removed."""
        await self._write(_patch, version, list(updates))

    def size_after_patch(self, updates: Iterable[tuple[dict, dict | None]]) -> int:
        """How many entries the list would hold after a differential update (to refuse one that overflows)."""
        current = set(self._loaded().entries)
        for id_token, info in updates:
            if info is None:
                current.discard(_key(id_token))
            else:
                current.add(_key(id_token))
        return len(current)

    def _loaded(self) -> _ListSnapshot:
        if self._snapshot is None:
            raise NotLoaded("the local list is read before LocalList.load")
        return self._snapshot

    async def _write(self, fn: Callable[..., None], *args: Any) -> None:
        def job() -> None:
            with transaction(self._storage.writer):
                fn(self._storage.writer, *args)
            self._refresh(self._storage.writer)

        await self._storage.run(job)

    def _refresh(self, conn: sqlite3.Connection) -> None:
        """Publish what the tables hold now (a storage job, after a commit)."""
        rows = conn.execute("SELECT id_token, token_type, id_token_info FROM local_list").fetchall()
        version = conn.execute("SELECT version FROM local_list_version WHERE singleton = 1").fetchone()
        self._snapshot = _ListSnapshot(
            entries={(r[0], r[1]): r[2] for r in rows},
            version=int(version[0]) if version else 0,
            used_bytes=sum(len(r[0]) + len(r[1]) + len(r[2]) for r in rows),
        )


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
