"""The station's security log (A04): a bounded, persistent record of every security event.

The log is the table `security_log` (migration 0006). Critical events reach it through the journal: the
migration's trigger copies every journaled SecurityEventNotification into the log inside the same SQLite
transaction, so an event is in both or in neither, whatever the moment of a power cut. Non-critical events are
written here directly (`record`), through the storage worker like every durable write. A second trigger keeps
the newest `CAPACITY` entries, so the log cannot grow without bound whatever a CSMS or a network makes us log.

`export` is what GetLog(SecurityLog) uploads: one line per entry, oldest first,

    2026-12-02T00:41:03.123Z<TAB>InvalidCsmsCertificate<TAB>certificate has expired (…)

(timestamp, type, techInfo; tabs and line breaks inside techInfo become spaces). Reading uses its own
read-only connection in a worker thread: an export of 10,000 entries never holds up the event loop or the
writer (WAL readers do not block writers).
"""

from __future__ import annotations

import os
import sqlite3
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path

import trio

from appliance.clock import parse_iso
from appliance.storage import Storage

#: Entries kept (the migration's `security_log_bound` trigger enforces the same number).
CAPACITY = 10_000


@dataclass(frozen=True)
class Entry:
    timestamp: str
    type: str
    tech_info: str | None
    critical: bool

    def line(self) -> str:
        info = " ".join((self.tech_info or "").split())
        return f"{self.timestamp}\t{self.type}\t{info}"


class SecurityLog:
    def __init__(self, storage: Storage) -> None:
        self._storage = storage

    async def record(self, kind: str, tech_info: str, timestamp: str) -> None:
        """Log a non-critical event durably (critical ones arrive through the journal's trigger)."""
        await self._storage.write(_insert, self._storage.writer, kind, tech_info, timestamp)

    async def entries(self, oldest: datetime | None = None, latest: datetime | None = None) -> list[Entry]:
        """The entries with oldest ≤ timestamp ≤ latest (either bound optional), oldest first."""
        return await trio.to_thread.run_sync(_read, self._storage.path, oldest, latest)

    async def export(self, path: Path, oldest: datetime | None, latest: datetime | None) -> int:
        """Write the entries between `oldest` and `latest` to `path` (created 0600); return how many."""
        entries = await self.entries(oldest, latest)
        await trio.to_thread.run_sync(_write, path, [e.line() for e in entries])
        return len(entries)


def _insert(conn: sqlite3.Connection, kind: str, tech_info: str, timestamp: str) -> None:
    conn.execute(
        "INSERT INTO security_log (timestamp, type, tech_info, critical) VALUES (?, ?, ?, 0)",
        (timestamp, kind, tech_info),
    )


def _read(db: Path, oldest: datetime | None, latest: datetime | None) -> list[Entry]:
    conn = sqlite3.connect(f"{db.resolve().as_uri()}?mode=ro", uri=True)
    try:
        rows = conn.execute("SELECT timestamp, type, tech_info, critical FROM security_log ORDER BY id").fetchall()
    finally:
        conn.close()
    found = []
    for timestamp, kind, info, critical in rows:
        if oldest is not None or latest is not None:
            try:
                moment = parse_iso(timestamp)
            except (TypeError, ValueError):
                continue  # not a time we wrote; a bounded export cannot place it
            if (oldest is not None and moment < oldest) or (latest is not None and moment > latest):
                continue
        found.append(Entry(timestamp, kind, info, bool(critical)))
    return found


def _write(path: Path, lines: list[str]) -> None:
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w", encoding="utf-8") as out:
        out.writelines(line + "\n" for line in lines)
