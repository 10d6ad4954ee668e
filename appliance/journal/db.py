"""Opening the station's one SQLite file: pragmas, first-creation fsync, migrations.

Durability choices (see ../shared/research/resilience.md §1, measured on this hardware class):

* `journal_mode=WAL`: readers (`appliance-journal`) never block the station's writer and the writer never
  blocks them; a failed fsync in WAL mode can only cost durability, not consistency, outside checkpoints.
* `synchronous=FULL`: in WAL mode this fsyncs the WAL on every commit, so a commit that returned survives a
  power cut. NORMAL only syncs at checkpoints and was measured to lose acknowledged commits on power loss
  (57 of 60 trials); an acknowledged TransactionEvent must never be lost, so NORMAL is not an option.
* SQLite fsyncs the directory when it creates the WAL, but not when it creates the main database file, so we
  fsync the data directory ourselves right after the file first appears.
"""

from __future__ import annotations

import importlib.resources
import logging
import os
import re
import sqlite3
from collections.abc import Iterator
from pathlib import Path

from appliance.storage.writer import transaction

log = logging.getLogger("appliance.journal")

DB_NAME = "journal.db"
_MIGRATION_NAME = re.compile(r"^(\d{4})_[a-z0-9_]+\.sql$")


class JournalError(Exception):
    """The journal cannot be used (newer than this firmware, not a journal, unreadable …)."""


def fsync_dir(path: Path) -> None:
    """Make a new directory entry in `path` durable (a created or renamed-into-place file)."""
    fd = os.open(path, os.O_RDONLY | os.O_DIRECTORY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def migration_files() -> list[tuple[int, str, str]]:
    """(version, name, sql) for every migration, in order.

    The SQL files live in the top-level `migrations/` folder of the source tree; an install ships them as
    the `appliance._migrations` package data, a source checkout reads the folder directly.
    """
    try:
        root = importlib.resources.files("appliance._migrations")
        files = list(root.iterdir())
    except ModuleNotFoundError:
        files = list((Path(__file__).resolve().parents[2] / "migrations").iterdir())  # a source checkout
    found = []
    for entry in files:
        match = _MIGRATION_NAME.match(entry.name)
        if match:
            found.append((int(match.group(1)), entry.name, entry.read_text(encoding="utf-8")))
    found.sort()
    versions = [v for v, _, _ in found]
    if versions != list(range(1, len(found) + 1)):
        raise JournalError(f"migrations are not numbered 1..n without gaps: {versions}")
    return found


def open_station_db(data_dir: Path) -> sqlite3.Connection:
    """Open (creating if needed) the station's journal and bring its schema up to date.

    The connection is in autocommit mode (`isolation_level=None`): every write path opens its own
    `BEGIN IMMEDIATE … COMMIT` so the boundaries of each durable step are visible in the code.
    """
    data_dir.mkdir(parents=True, exist_ok=True)
    path = data_dir / DB_NAME
    created = not path.exists()
    conn = sqlite3.connect(path, isolation_level=None, check_same_thread=False)
    try:
        conn.execute("PRAGMA journal_mode=WAL")
        conn.execute("PRAGMA synchronous=FULL")
        conn.execute("PRAGMA foreign_keys=ON")
        conn.execute("PRAGMA busy_timeout=5000")
        if created:
            fsync_dir(data_dir)
        migrate(conn)
    except sqlite3.DatabaseError as exc:
        conn.close()
        raise JournalError(f"{path}: not a usable journal: {exc}") from exc
    except BaseException:
        conn.close()
        raise
    return conn


def migrate(conn: sqlite3.Connection) -> list[str]:
    """Apply every migration newer than the database, each in its own transaction; return their names.

    A migration and the row recording it commit together, so a power cut leaves either both or neither and a
    migration is never applied twice.
    """
    conn.execute(
        "CREATE TABLE IF NOT EXISTS schema_migrations ("
        " version INTEGER PRIMARY KEY, name TEXT NOT NULL, applied_at TEXT NOT NULL)"
    )
    current = conn.execute("SELECT coalesce(max(version), 0) FROM schema_migrations").fetchone()[0]
    files = migration_files()
    known = len(files)
    if current > known:
        raise JournalError(
            f"the journal has schema version {current} but this firmware knows only {known}: "
            "it was written by newer firmware; refusing to touch it"
        )
    applied = []
    for version, name, sql in files[current:]:
        with transaction(conn):
            for statement in _statements(sql):
                conn.execute(statement)
            conn.execute(
                "INSERT INTO schema_migrations (version, name, applied_at) "
                "VALUES (?, ?, strftime('%Y-%m-%dT%H:%M:%fZ','now'))",
                (version, name),
            )
        log.info("journal migration applied: %s", name)
        applied.append(name)
    return applied


def _statements(sql: str) -> Iterator[str]:
    """Split a migration into statements (executescript would commit on its own and break atomicity)."""
    buffer = ""
    for line in sql.splitlines(keepends=True):
        buffer += line
        if sqlite3.complete_statement(buffer):
            if buffer.strip():
                yield buffer
            buffer = ""
    if buffer.strip() and not all(ln.strip().startswith("--") or not ln.strip() for ln in buffer.splitlines()):
        raise JournalError(f"incomplete SQL statement at the end of a migration: {buffer.strip()[:60]!r}")


def open_read_only(path: Path) -> sqlite3.Connection:
    """Open a journal for reading without disturbing the station (`appliance-journal`)."""
    if not path.is_file():
        raise JournalError(f"{path}: no such journal file")
    conn = sqlite3.connect(f"{path.resolve().as_uri()}?mode=ro", uri=True, check_same_thread=False)
    try:
        conn.execute("PRAGMA busy_timeout=5000")
        row = conn.execute(
            "SELECT count(*) FROM sqlite_master WHERE type='table' AND name='schema_migrations'"
        ).fetchone()
    except sqlite3.DatabaseError as exc:
        conn.close()
        raise JournalError(f"{path}: not a journal ({exc})") from exc
    if row[0] != 1:
        conn.close()
        raise JournalError(f"{path}: not a journal (no schema_migrations table)")
    return conn
