"""Opening the station's one SQLite file: pragmas, first-creation fsync, migrations.

Durability choices (see ../shared/research/resilience.md §1, measured on this hardware class):

* `journal_mode=WAL`: readers (`appliance-journal`) never block the station's writer and the writer never
  blocks them; a failed fsync in WAL mode can only cost durability, not consistency, outside checkpoints.
* `synchronous=FULL`: in WAL mode this fsyncs the WAL on every commit, so a commit that returned survives a
  power cut. NORMAL only syncs at checkpoints and was measured to lose acknowledged commits on power loss
  (57 of 60 trials); an acknowledged TransactionEvent must never be lost, so NORMAL is not an option.
* SQLite fsyncs the directory when it creates the WAL, but not when it creates the main database file, so we
  fsync the data directory ourselves right after the file first appears.

Secrets at rest (security block): the journal holds the basic-auth password the CSMS set and the network
profiles, so the data directory is made 0700 and the journal 0600 at every open (also fixing older installs);
the file is created 0600 before SQLite opens it, and SQLite gives its -wal and -shm the database file's mode.
"""

from __future__ import annotations

import contextlib
import importlib.resources
import logging
import os
import re
import sqlite3
from collections.abc import Iterator
from importlib.resources.abc import Traversable
from pathlib import Path

from appliance.timetext import now_text

log = logging.getLogger("appliance.storage")

DB_NAME = "journal.db"
#: `sqlite3.connect`'s own default statement cache size (what a connection keeps unless told otherwise).
PYTHON_CACHED_STATEMENTS = 128
#: `PRAGMA application_id` of our journals ("OCPJ"), set when the file is created: `open_station_db` and
#: `appliance-journal` refuse an SQLite file that carries another program's id instead of writing into it.
APPLICATION_ID = 0x4F43504A
_MIGRATION_NAME = re.compile(r"^(\d{4})_[a-z0-9_]+\.sql$")
_DOWNGRADE_NAME = re.compile(r"^(\d{4})_[a-z0-9_]+\.down\.sql$")
#: The first migration that must ship its downgrade: the firmware that introduced `schema_downgrades` knows
#: every migration before it, so only later ones can ever be met by firmware that does not know them.
FIRST_REVERSIBLE = 12


class JournalError(Exception):
    """The journal cannot be used (newer than this firmware, not a journal, unreadable …)."""


def fsync_dir(path: Path) -> None:
    """Make a new directory entry in `path` durable (a created or renamed-into-place file)."""
    fd = os.open(path, os.O_RDONLY | os.O_DIRECTORY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def _migration_entries() -> list[Traversable]:
    """The files of the migrations folder: the top-level `migrations/` of the source tree, which an install
    ships as the `appliance._migrations` package data (a source checkout reads the folder directly)."""
    try:
        return list(importlib.resources.files("appliance._migrations").iterdir())
    except ModuleNotFoundError:
        return list((Path(__file__).resolve().parents[2] / "migrations").iterdir())  # a source checkout


def migration_files() -> list[tuple[int, str, str]]:
    """(version, name, sql) for every migration, in order."""
    found = []
    for entry in _migration_entries():
        match = _MIGRATION_NAME.match(entry.name)
        if match:
            found.append((int(match.group(1)), entry.name, entry.read_text(encoding="utf-8")))
    found.sort()
    versions = [v for v, _, _ in found]
    # Numbers are handed out per block, so one may be missing while its block is not built yet; a number used
    # twice is still a packaging error.
    if len(set(versions)) != len(versions) or any(v < 1 for v in versions):
        raise JournalError(f"migrations are not numbered uniquely from 1: {versions}")
    return found


def downgrade_files() -> dict[int, str]:
    """Version → the SQL that undoes that migration (`NNNN_name.down.sql` beside `NNNN_name.sql`).

    Every migration from `FIRST_REVERSIBLE` on has one (a test holds us to it). `migrate` stores it in the
    journal with the migration, for the older firmware a failed trial boot rolls back to (see `migrate`).
    """
    names = {name for _, name, _ in migration_files()}
    found: dict[int, str] = {}
    for entry in _migration_entries():
        match = _DOWNGRADE_NAME.match(entry.name)
        if match:
            if entry.name.replace(".down.sql", ".sql") not in names:
                raise JournalError(f"downgrade {entry.name} has no migration of its name: a packaging error")
            found[int(match.group(1))] = entry.read_text(encoding="utf-8")
    return found


def open_station_db(
    data_dir: Path, *, cache_kib: int | None = None, cached_statements: int | None = None
) -> sqlite3.Connection:
    """Open (creating if needed) the station's journal and bring its schema up to date.

    The connection is in autocommit mode (`isolation_level=None`): every write path opens its own
    `BEGIN IMMEDIATE … COMMIT` so the boundaries of each durable step are visible in the code.
    `cache_kib` caps the connection's page cache (SQLite's default is 2 MiB); `appliance fleet` runs many
    stations in one process and bounds each one's cost with it, and with `cached_statements` (how many prepared
    statements the connection keeps; a prepared statement costs a few KiB). None: the defaults.
    """
    data_dir.mkdir(parents=True, exist_ok=True, mode=0o700)
    path = data_dir / DB_NAME
    created = not path.exists()
    _private(data_dir, PRIVATE_DIR)
    if created:
        os.close(os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, PRIVATE_FILE))  # a valid empty database
    statements = PYTHON_CACHED_STATEMENTS if cached_statements is None else cached_statements
    conn = sqlite3.connect(path, isolation_level=None, check_same_thread=False, cached_statements=statements)
    try:
        conn.execute("PRAGMA busy_timeout=5000")
        if cache_kib is not None:
            conn.execute(f"PRAGMA cache_size=-{int(cache_kib)}")
        _claim(conn, path)  # before anything writes: never turn another program's file into a WAL journal
        for file in (path, path.with_name(f"{DB_NAME}-wal"), path.with_name(f"{DB_NAME}-shm")):
            _private(file, PRIVATE_FILE)  # ours: an older install's files may still be readable by others
        conn.execute("PRAGMA journal_mode=WAL")
        conn.execute("PRAGMA synchronous=FULL")
        conn.execute("PRAGMA foreign_keys=ON")
        if created:
            fsync_dir(data_dir)
        _quick_check(conn, path)
        try:
            migrate(conn)
        except JournalError as exc:  # e.g. written by newer firmware: say which file
            raise JournalError(f"{path}: {exc}") from exc
        if cache_kib is not None:
            conn.execute("PRAGMA shrink_memory")  # what the quick_check and migrations read stays cached otherwise
    except sqlite3.DatabaseError as exc:
        conn.close()
        raise JournalError(_problem(path, exc)) from exc
    except BaseException:
        conn.close()
        raise
    return conn


#: Mode bits of the station's own files and of its data directory: nobody else reads a password in them.
PRIVATE_FILE = 0o600
PRIVATE_DIR = 0o700


def _private(path: Path, mode: int) -> None:
    """Give `path` owner-only `mode`; a file that is not there is fine, one we may not chmod is logged."""
    try:
        if path.stat().st_mode & 0o777 != mode:
            os.chmod(path, mode)
    except FileNotFoundError:
        pass
    except PermissionError:
        log.warning("cannot make %s private (mode %04o): it is not owned by this user", path, mode)


def _foreign_reason(conn: sqlite3.Connection) -> str | None:
    """Why the database behind `conn` is not one of our journals; None if it is ours or still empty.

    A file without our id may be one of ours from before the id was set: it is adopted if its schema_migrations
    is our own history, since many tools (Rails, migration runners) keep a `schema_migrations` table too.
    """
    found = conn.execute("PRAGMA application_id").fetchone()[0]
    if found == APPLICATION_ID:
        return None
    if found != 0:
        return f"its SQLite application_id is 0x{found & 0xFFFFFFFF:08x}, ours is 0x{APPLICATION_ID:08x}"
    tables = {r[0] for r in conn.execute("SELECT name FROM sqlite_master WHERE type = 'table'")}
    if not tables:
        return None
    if "schema_migrations" not in tables:
        return "no schema_migrations table"
    columns = {r[1] for r in conn.execute("PRAGMA table_info(schema_migrations)")}
    if not {"version", "name", "applied_at"} <= columns:
        return "its schema_migrations table is another program's"
    first = conn.execute("SELECT name FROM schema_migrations WHERE version = 1").fetchone()
    if first is not None and first[0] != migration_files()[0][1]:
        return "its schema_migrations table is another program's"
    return None


def _claim(conn: sqlite3.Connection, path: Path) -> None:
    """Refuse a foreign database; mark a new one, or one of ours from before the id existed, as ours."""
    reason = _foreign_reason(conn)
    if reason is not None:
        raise JournalError(
            f"{path}: another program's SQLite database, not a station journal ({reason}); "
            "refusing to touch it: move it away or choose another station.data_dir"
        )
    if conn.execute("PRAGMA application_id").fetchone()[0] != APPLICATION_ID:
        conn.execute(f"PRAGMA application_id = {APPLICATION_ID}")


def _quick_check(conn: sqlite3.Connection, path: Path) -> None:
    """Refuse to start on a damaged file: appending to a corrupt b-tree can only make it worse.

    `quick_check` reads every page but skips the index-content comparison: measured 0.1 s for a full retention
    window (100,000 messages, 113 MB) with the file in the page cache; a cold boot reads the file once more.
    `appliance-journal verify` runs it too and says more.
    """
    rows = conn.execute("PRAGMA quick_check(3)").fetchall()
    if rows != [("ok",)]:
        lines = [line for row in rows for line in str(row[0]).splitlines() if not line.startswith("*** in database")]
        raise JournalError(_damaged(path, f"PRAGMA quick_check: {lines[0] if lines else 'no answer'}"))


def _damaged(path: Path, detail: str) -> str:
    return (
        f"{path}: the journal is damaged ({detail}); run `appliance-journal --db {path} verify` to see what "
        "is affected, then restore a backup or move the file away"
    )


def _problem(path: Path, exc: sqlite3.DatabaseError) -> str:
    """One line for a person: what is wrong with the file, by SQLite's error code (not its message text)."""
    code = _code(exc)
    if code == sqlite3.SQLITE_NOTADB:
        return f"{path}: not a usable journal: not an SQLite database (another program's file?); move it away"
    if code == sqlite3.SQLITE_CORRUPT:
        return _damaged(path, str(exc))
    if code in (sqlite3.SQLITE_READONLY, sqlite3.SQLITE_CANTOPEN, sqlite3.SQLITE_PERM):
        return (
            f"{path}: cannot write the journal ({exc}): the station needs read and write permission on it, "
            "its -wal and -shm files and its directory"
        )
    return f"{path}: not a usable journal: {exc}"


def migrate(conn: sqlite3.Connection) -> list[str]:
    """Bring the journal to this firmware's schema: undo what newer firmware added, then apply what is missing.

    Each step is its own transaction with the rows that record it, so a power cut leaves it done or not done,
    never half, and the next start goes on from there; a migration is never applied twice.

    Why downgrades: a firmware update boots the new version on trial, and the new version migrates the journal
    it keeps writing to. If the trial fails, the launcher starts the previous version again, which would meet a
    journal "from newer firmware" and refuse to start: a station that can no longer charge after a failed
    update. So every migration brings its reverse (`downgrade_files`), and applying it stores that SQL in
    `schema_downgrades` in the same transaction. The older firmware cannot know the newer one's schema, but it
    finds in the journal itself how to undo each step it does not know: it runs them in the reverse order of
    their application, then carries on as usual. Only a version newer firmware left without a stored way back
    is refused (exit 2), and then nothing is touched. The stored SQL comes from the station's own private
    journal (0600 in a 0700 directory) and is held to its step by an authorizer (`_undo_newer`): whoever could
    write it could change the journal's tables anyway, but not, through it, more than them.
    """
    conn.execute(
        "CREATE TABLE IF NOT EXISTS schema_migrations ("
        " version INTEGER PRIMARY KEY, name TEXT NOT NULL, applied_at TEXT NOT NULL)"
    )
    # Every later firmware reads this table as it is here: its columns must never change.
    conn.execute(
        "CREATE TABLE IF NOT EXISTS schema_downgrades ("
        " version INTEGER PRIMARY KEY, step INTEGER NOT NULL UNIQUE, sql TEXT NOT NULL)"
    )
    files = migration_files()
    _undo_newer(conn, {version for version, _, _ in files})
    done = {row[0] for row in conn.execute("SELECT version FROM schema_migrations")}
    pending = [f for f in files if f[0] not in done]
    downs = downgrade_files() if pending else {}  # an ordinary boot reads the folder once, not twice
    applied = []
    for version, name, sql in pending:
        with transaction(conn):
            for statement in _statements(sql):
                conn.execute(statement)
            conn.execute(
                "INSERT INTO schema_migrations (version, name, applied_at) VALUES (?, ?, ?)",
                (version, name, now_text()),
            )
            if version in downs:
                conn.execute(
                    "INSERT INTO schema_downgrades (version, step, sql)"
                    " VALUES (?, (SELECT coalesce(max(step), 0) + 1 FROM schema_downgrades), ?)",
                    (version, downs[version]),
                )
        log.info("journal migration applied: %s", name)
        applied.append(name)
    return applied


def _undo_newer(conn: sqlite3.Connection, known: set[int]) -> None:
    """Undo, newest step first, every migration this firmware does not know, by the SQL its firmware stored.

    All or nothing up front: if one of them has no stored downgrade the journal is refused before any is run,
    so a refused journal is exactly what the newer firmware left. The stored SQL runs under an authorizer that
    allows what a downgrade is for (changing and filling our tables) and refuses what would escape its step:
    ending or nesting transactions, attaching another file, pragmas (the connection's durability), extensions.
    """
    newer = {
        version: name
        for version, name in conn.execute("SELECT version, name FROM schema_migrations")
        if version not in known
    }
    if not newer:
        return
    stored = {
        version: (step, sql) for version, step, sql in conn.execute("SELECT version, step, sql FROM schema_downgrades")
    }
    missing = sorted(set(newer) - set(stored))
    if missing:
        raise JournalError(
            f"the journal has schema version {max(newer)} but this firmware knows only "
            f"{max(known, default=0)}: it was written by newer firmware, which stored no way back from "
            f"{', '.join(newer[v] for v in missing)}; refusing to touch it"
        )
    for version in sorted(newer, key=lambda v: stored[v][0], reverse=True):
        try:
            with transaction(conn):
                conn.set_authorizer(_downgrade_authorizer)
                try:
                    for statement in _statements(stored[version][1]):
                        conn.execute(statement)
                finally:
                    conn.set_authorizer(None)
                conn.execute("DELETE FROM schema_migrations WHERE version = ?", (version,))
                conn.execute("DELETE FROM schema_downgrades WHERE version = ?", (version,))
        except sqlite3.Error as exc:
            raise JournalError(
                f"undoing {newer[version]} (written by newer firmware) with the downgrade it stored failed: {exc}; "
                "the journal is left as that firmware wrote it, less the steps already undone"
            ) from exc
        log.warning(
            "journal: %s undone with the downgrade newer firmware stored (this firmware is older than the "
            "journal: a firmware rollback)",
            newer[version],
        )


#: What stored downgrade SQL may not do (see `_undo_newer`).
_REFUSED_IN_DOWNGRADES = frozenset(
    {
        sqlite3.SQLITE_TRANSACTION,
        sqlite3.SQLITE_SAVEPOINT,
        sqlite3.SQLITE_ATTACH,
        sqlite3.SQLITE_DETACH,
        sqlite3.SQLITE_PRAGMA,
    }
)


def _downgrade_authorizer(action: int, arg1: str | None, arg2: str | None, db: str | None, source: str | None) -> int:
    if action in _REFUSED_IN_DOWNGRADES or (action == sqlite3.SQLITE_FUNCTION and arg2 == "load_extension"):
        return sqlite3.SQLITE_DENY
    return sqlite3.SQLITE_OK


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
    """Open a journal for reading without disturbing the station and without write access anywhere.

    * Someone has the journal open, or left it open in a crash (a `-wal` file exists): `mode=ro`, which reads
      the WAL through the `-shm` index. SQLite (3.22 and later) manages that with read-only `-wal`/`-shm`
      files, so read permission on the three files is all it needs.
    * Nobody has it open (a clean stop deleted the `-wal`): `immutable=1`. `mode=ro` would have to create the
      `-wal` and `-shm`, which fails in a read-only directory or mount, and run as another user (root) would
      leave files the station then cannot write. A station starting during the read only appends to a new WAL
      and the main file changes only at a checkpoint, so the read stays consistent in practice; if a `-wal`
      appeared meanwhile, rerunning the command reads through it.
    A missing permission is named exactly (search on a directory, read on a file) instead of SQLite's
    "unable to open database file".
    """
    missing = _missing_permission(path)
    if missing is not None:
        raise JournalError(missing)
    if not path.is_file():
        raise JournalError(f"{path}: no such journal file")
    wal = Path(f"{path}-wal")
    conn = _connect_read_only(path, immutable=not wal.exists())
    try:
        try:
            reason = _foreign_reason(conn)
        except sqlite3.OperationalError as exc:
            if wal.exists() or _code(exc) not in (sqlite3.SQLITE_READONLY, sqlite3.SQLITE_CANTOPEN):
                raise
            conn.close()  # the station stopped between our look at the -wal and the open: nobody writes now
            conn = _connect_read_only(path, immutable=True)
            reason = _foreign_reason(conn)
        if (
            reason is None
            and not conn.execute(
                "SELECT 1 FROM sqlite_master WHERE type = 'table' AND name = 'schema_migrations'"
            ).fetchone()
        ):
            reason = "no schema_migrations table"  # an empty database: nothing a station ever wrote
    except sqlite3.DatabaseError as exc:
        conn.close()
        raise JournalError(_read_problem(path, exc)) from exc
    if reason is not None:
        conn.close()
        raise JournalError(f"{path}: not a journal ({reason})")
    return conn


def _connect_read_only(path: Path, *, immutable: bool) -> sqlite3.Connection:
    query = "mode=ro&immutable=1" if immutable else "mode=ro"
    conn = sqlite3.connect(f"{path.resolve().as_uri()}?{query}", uri=True, check_same_thread=False)
    conn.execute("PRAGMA busy_timeout=5000")
    return conn


def _code(exc: sqlite3.Error) -> int:
    """SQLite's primary result code of an error (the extended code without its upper bits)."""
    return getattr(exc, "sqlite_errorcode", 0) & 0xFF


def is_disk_full(exc: BaseException) -> bool:
    """SQLITE_FULL, judged by SQLite's own error code (message texts differ between versions and locales)."""
    return isinstance(exc, sqlite3.Error) and _code(exc) == sqlite3.SQLITE_FULL


def is_busy(exc: BaseException) -> bool:
    """SQLITE_BUSY / SQLITE_LOCKED: another program held the write lock past `busy_timeout`; worth retrying."""
    return isinstance(exc, sqlite3.Error) and _code(exc) in (sqlite3.SQLITE_BUSY, sqlite3.SQLITE_LOCKED)


def _missing_permission(path: Path) -> str | None:
    """The permission this user lacks to read the journal at `path`, as one sentence; None if it has them all."""
    absolute = path.absolute()
    for directory in reversed(absolute.parents):
        if not os.access(directory, os.X_OK, effective_ids=True):
            return (
                f"{absolute}: permission denied: no search (x) permission on the directory {directory}; "
                "read the journal as the station's user or a member of its group"
            )
    for file in (absolute, Path(f"{absolute}-wal"), Path(f"{absolute}-shm")):
        if file.exists() and not os.access(file, os.R_OK, effective_ids=True):
            return (
                f"{file}: permission denied: no read permission on this file (reading the journal needs read "
                "permission on journal.db and, while they exist, its -wal and -shm files)"
            )
    return None


def _read_problem(path: Path, exc: sqlite3.DatabaseError) -> str:
    code = _code(exc)
    if code == sqlite3.SQLITE_NOTADB:
        return f"{path}: not a journal (not an SQLite database)"
    if code == sqlite3.SQLITE_CORRUPT:
        return f"{path}: the journal is damaged beyond reading ({exc}): restore a backup"
    if code in (sqlite3.SQLITE_READONLY, sqlite3.SQLITE_CANTOPEN):
        if Path(f"{path}-wal").exists() and not Path(f"{path}-shm").exists():
            return (
                f"{path}: cannot open it read-only: its -wal file has no -shm index beside it and this user "
                f"may not create one (no write permission on {path.parent}); read it as the station's user"
            )
        return f"{path}: cannot open it read-only ({exc})"
    return f"{path}: not a journal ({exc})"


@contextlib.contextmanager
def transaction(conn: sqlite3.Connection, name: str = "nested") -> Iterator[None]:
    """One explicit write transaction: `BEGIN IMMEDIATE … COMMIT`, or a SAVEPOINT inside the caller's.

    Committed when the block ends normally, rolled back otherwise. A failed COMMIT (disk full, I/O error) may
    already have rolled back; it is never left open for the next writer to commit by accident.
    """
    if conn.in_transaction:
        conn.execute(f"SAVEPOINT {name}")
        try:
            yield
        except BaseException:
            conn.execute(f"ROLLBACK TO {name}")
            conn.execute(f"RELEASE {name}")
            raise
        conn.execute(f"RELEASE {name}")
        return
    conn.execute("BEGIN IMMEDIATE")
    try:
        yield
        conn.execute("COMMIT")
    except BaseException:
        if conn.in_transaction:
            conn.execute("ROLLBACK")
        raise
