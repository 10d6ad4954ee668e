"""Opening the journal: pragmas, migrations applied once and in order, refusing newer databases."""

import sqlite3
from pathlib import Path

import pytest

from appliance.journal.db import JournalError, migration_files, open_read_only, open_station_db


def test_creates_wal_full_and_applies_migrations(tmp_path: Path) -> None:
    conn = open_station_db(tmp_path / "data")
    assert conn.execute("PRAGMA journal_mode").fetchone()[0] == "wal"
    assert conn.execute("PRAGMA synchronous").fetchone()[0] == 2  # FULL
    versions = [r[0] for r in conn.execute("SELECT version FROM schema_migrations ORDER BY version")]
    assert versions == [v for v, _, _ in migration_files()]
    conn.close()


def test_migrations_never_reapplied(tmp_path: Path) -> None:
    open_station_db(tmp_path).close()
    conn = open_station_db(tmp_path)  # a second open must not fail on CREATE TABLE
    count = conn.execute("SELECT count(*) FROM schema_migrations").fetchone()[0]
    assert count == len(migration_files())
    conn.close()


def test_newer_database_refused(tmp_path: Path) -> None:
    conn = open_station_db(tmp_path)
    conn.execute("INSERT INTO schema_migrations VALUES (999, '0999_future.sql', 'x')")
    conn.close()
    with pytest.raises(JournalError, match="newer firmware"):
        open_station_db(tmp_path)


def test_not_a_database(tmp_path: Path) -> None:
    (tmp_path / "journal.db").write_bytes(b"this is not sqlite" * 100)
    with pytest.raises(JournalError, match="not a usable journal"):
        open_station_db(tmp_path)


def test_read_only_open(tmp_path: Path) -> None:
    open_station_db(tmp_path).close()
    ro = open_read_only(tmp_path / "journal.db")
    with pytest.raises(sqlite3.OperationalError):
        ro.execute("CREATE TABLE x (a)")
    ro.close()
    with pytest.raises(JournalError, match="no such journal"):
        open_read_only(tmp_path / "missing.db")
    other = tmp_path / "other.db"
    sqlite3.connect(other).execute("CREATE TABLE t (a)").connection.commit()
    with pytest.raises(JournalError, match="not a journal"):
        open_read_only(other)


def test_failed_migration_leaves_nothing(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    from appliance.journal import db

    good = db.migration_files()
    broken = [*good, (len(good) + 1, f"{len(good) + 1:04d}_broken.sql",
                      "CREATE TABLE half (a);\nINSERT INTO nowhere VALUES (1);\n")]
    monkeypatch.setattr(db, "migration_files", lambda: broken)
    with pytest.raises(JournalError):
        open_station_db(tmp_path)
    monkeypatch.setattr(db, "migration_files", lambda: good)
    conn = open_station_db(tmp_path)
    tables = {r[0] for r in conn.execute("SELECT name FROM sqlite_master WHERE type='table'")}
    assert "half" not in tables  # the migration's first statement was rolled back with it
    conn.close()
