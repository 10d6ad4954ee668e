"""Opening the journal: pragmas, migrations applied once and in order, refusing newer databases, our
application id (set, adopted, foreign ones refused untouched), and the integrity check at start."""

import re
import sqlite3
from pathlib import Path

import pytest
from sqlite_utils import Database

from appliance.journal.store import JournalStore
from appliance.journal.verify import verify
from appliance.storage.db import APPLICATION_ID, JournalError, migration_files, open_read_only, open_station_db
from tests.journal.test_verify import build_journal, problems


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
    with pytest.raises(JournalError, match=r"newer firmware, which stored no way back from 0999_future\.sql"):
        open_station_db(tmp_path)


#: Two migrations of a firmware newer than this one; the second changes the table the first creates and one of
#: ours, so their downgrades only work newest first.
NEWER = [
    (98, "0098_future_table.sql", "CREATE TABLE future_things (id INTEGER PRIMARY KEY, note TEXT);\n"),
    (
        99,
        "0099_future_columns.sql",
        "ALTER TABLE future_things ADD COLUMN extra TEXT;\n"
        "ALTER TABLE outbox ADD COLUMN future_flag INTEGER NOT NULL DEFAULT 0;\n",
    ),
]
NEWER_DOWNS = {
    98: "DROP TABLE future_things;\n",
    99: "ALTER TABLE outbox DROP COLUMN future_flag;\nALTER TABLE future_things DROP COLUMN extra;\n",
}


def schema(conn: sqlite3.Connection) -> list[str]:
    return sorted(row[0] for row in conn.execute("SELECT sql FROM sqlite_master WHERE sql IS NOT NULL"))


def opened_schema(directory: Path) -> list[str]:
    """The schema of the journal in `directory` once the firmware this process is now has opened it."""
    conn = open_station_db(directory)
    try:
        return schema(conn)
    finally:
        conn.close()


def as_firmware(monkeypatch: pytest.MonkeyPatch, files: list[tuple[int, str, str]], downs: dict[int, str]) -> None:
    """Make this process the firmware that ships `files` and `downs`."""
    from appliance.storage import db

    monkeypatch.setattr(db, "migration_files", lambda: files)
    monkeypatch.setattr(db, "downgrade_files", lambda: downs)


def test_a_journal_newer_firmware_migrated_is_undone_by_what_it_stored(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    """The failed-trial-boot rollback: the newer firmware migrated the journal and wrote to it; this firmware
    undoes its two steps newest first, keeps every message, and the newer one can migrate again later."""
    from appliance.storage import db

    ours, our_downs = db.migration_files(), db.downgrade_files()
    expected = opened_schema(tmp_path / "fresh")
    as_firmware(monkeypatch, [*ours, *NEWER], {**our_downs, **NEWER_DOWNS})
    newer = build_journal(tmp_path / "data")  # the newer firmware wrote transactions into its schema
    newer.execute("INSERT INTO future_things (note, extra) VALUES ('x', 'y')")
    queued = [(q.message_id, q.seq_no) for q in JournalStore(newer).pending_page(0, 100)]
    assert queued and "future_flag" in {r[1] for r in newer.execute("PRAGMA table_info(outbox)")}
    newer.close()

    as_firmware(monkeypatch, ours, our_downs)
    with caplog.at_level("WARNING", logger="appliance.storage"):
        conn = open_station_db(tmp_path / "data")
    assert schema(conn) == expected
    assert [r[0] for r in conn.execute("SELECT version FROM schema_migrations ORDER BY version")] == [
        v for v, _, _ in ours
    ]
    assert conn.execute("SELECT count(*) FROM schema_downgrades WHERE version > 97").fetchone()[0] == 0
    assert [(q.message_id, q.seq_no) for q in JournalStore(conn).pending_page(0, 100)] == queued
    conn.close()
    undone = [r.getMessage().split(" undone")[0] for r in caplog.records if "undone with the downgrade" in r.message]
    assert undone == ["journal: 0099_future_columns.sql", "journal: 0098_future_table.sql"]
    assert problems(tmp_path / "data") == []

    as_firmware(monkeypatch, [*ours, *NEWER], {**our_downs, **NEWER_DOWNS})  # the next update tries again
    assert open_station_db(tmp_path / "data").execute("SELECT count(*) FROM future_things").fetchone()[0] == 0


def test_a_journal_with_a_newer_step_it_cannot_undo_is_refused_untouched(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """0098 came without its downgrade: 0099, newer and undoable, must not be undone either."""
    from appliance.storage import db

    ours = db.migration_files()
    as_firmware(monkeypatch, [*ours, *NEWER], {99: NEWER_DOWNS[99]})
    open_station_db(tmp_path).close()
    as_firmware(monkeypatch, ours, {})
    with pytest.raises(JournalError, match=r"stored no way back from 0098_future_table\.sql; refusing"):
        open_station_db(tmp_path)
    conn = sqlite3.connect(tmp_path / "journal.db")
    assert {r[0] for r in conn.execute("SELECT version FROM schema_migrations")} >= {98, 99}  # nothing undone
    assert "future_flag" in {r[1] for r in conn.execute("PRAGMA table_info(outbox)")}
    conn.close()


def test_a_failing_downgrade_is_named_and_undone_whole_and_the_steps_before_it_stay_undone(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from appliance.storage import db

    ours = db.migration_files()
    broken = "DROP TABLE future_things;\nDROP TABLE no_such_table;\n"  # its first statement must not stay done
    as_firmware(monkeypatch, [*ours, *NEWER], {99: NEWER_DOWNS[99], 98: broken})
    open_station_db(tmp_path).close()
    as_firmware(monkeypatch, ours, {})
    with pytest.raises(JournalError, match=r"undoing 0098_future_table\.sql .* failed: no such table: no_such_table"):
        open_station_db(tmp_path)
    conn = sqlite3.connect(tmp_path / "journal.db")
    assert {r[0] for r in conn.execute("SELECT version FROM schema_migrations WHERE version > 97")} == {98}
    assert "future_flag" not in {r[1] for r in conn.execute("PRAGMA table_info(outbox)")}  # 0099 undone, kept
    assert conn.execute("SELECT count(*) FROM future_things").fetchone()[0] == 0  # 0098's step rolled back whole
    conn.close()


def test_downgrades_run_in_the_reverse_order_the_steps_were_applied_not_by_number(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Numbers belong to blocks, so a lower one can be applied later (a block built after 0099): 0097 changes
    0099's table, so undoing by number would drop the table before 0097's downgrade needs it."""
    from appliance.storage import db

    ours = db.migration_files()
    later = (97, "0097_later_block.sql", "ALTER TABLE future_things ADD COLUMN later TEXT;\n")
    downs = {**NEWER_DOWNS, 97: "ALTER TABLE future_things DROP COLUMN later;\n"}
    as_firmware(monkeypatch, [*ours, *NEWER], downs)
    open_station_db(tmp_path).close()
    as_firmware(monkeypatch, [*ours, later, *NEWER], downs)
    open_station_db(tmp_path).close()  # 0097 applied last
    as_firmware(monkeypatch, ours, {})
    open_station_db(tmp_path).close()
    conn = sqlite3.connect(tmp_path / "journal.db")
    assert conn.execute("SELECT count(*) FROM sqlite_master WHERE name = 'future_things'").fetchone()[0] == 0
    conn.close()


@pytest.mark.parametrize(
    "escape",
    [
        "COMMIT;\n",
        "SAVEPOINT s;\n",
        "ATTACH DATABASE '{outside}' AS other;\n",
        "PRAGMA synchronous=OFF;\n",
        "SELECT load_extension('/nonexistent');\n",
    ],
)
def test_a_stored_downgrade_cannot_leave_its_step(tmp_path: Path, monkeypatch: pytest.MonkeyPatch, escape: str) -> None:
    """Stored SQL changes our tables only: ending its transaction, another file, the connection's durability
    or an extension are refused, and the step stays whole (its first statement is rolled back too)."""
    from appliance.storage import db

    ours = db.migration_files()
    outside = tmp_path / "outside.db"
    down = NEWER_DOWNS[99].split("\n")[0] + "\n" + escape.format(outside=outside) + NEWER_DOWNS[99].split("\n")[1]
    as_firmware(monkeypatch, [*ours, *NEWER], {98: NEWER_DOWNS[98], 99: down})
    open_station_db(tmp_path / "data").close()
    as_firmware(monkeypatch, ours, {})
    with pytest.raises(JournalError, match=r"undoing 0099_future_columns\.sql .* failed: not authorized"):
        open_station_db(tmp_path / "data")
    conn = sqlite3.connect(tmp_path / "data" / "journal.db")
    assert "future_flag" in {r[1] for r in conn.execute("PRAGMA table_info(outbox)")}
    conn.close()
    assert not outside.exists()


def assert_reversible(
    monkeypatch: pytest.MonkeyPatch, directory: Path, files: list[tuple[int, str, str]], downs: dict[int, str]
) -> None:
    """For every migration with a downgrade: up then down gives back the schema before it."""
    for version in sorted(downs):
        before = [m for m in files if m[0] < version]
        as_firmware(monkeypatch, before, downs)
        expected = opened_schema(directory / str(version))
        as_firmware(monkeypatch, [m for m in files if m[0] <= version], downs)
        open_station_db(directory / str(version)).close()
        as_firmware(monkeypatch, before, downs)
        assert opened_schema(directory / str(version)) == expected, version  # the same journal, downgraded


def test_every_migration_from_first_reversible_ships_a_downgrade_that_undoes_it(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The rule that makes a rollback possible, on the real files (no migration is at FIRST_REVERSIBLE or
    later yet, so the check is the helper's on the test migrations until one is): each has its `.down.sql`,
    and up then down gives back the schema."""
    from appliance.storage import db

    ours, downs = db.migration_files(), db.downgrade_files()
    assert [v for v, _, _ in ours if v >= db.FIRST_REVERSIBLE and v not in downs] == []
    assert_reversible(monkeypatch, tmp_path / "ours", ours, downs)
    assert_reversible(monkeypatch, tmp_path / "newer", [*ours, *NEWER], {**downs, **NEWER_DOWNS})
    with pytest.raises(AssertionError):  # the helper notices a downgrade that does not undo its migration
        assert_reversible(monkeypatch, tmp_path / "wrong", [*ours, *NEWER], {99: "DROP TABLE future_things;\n"})


def test_a_downgrade_file_without_its_migration_is_a_packaging_error(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from appliance.storage import db

    entries = db._migration_entries()
    monkeypatch.setattr(db, "_migration_entries", lambda: [*entries, tmp_path / "0003_misnamed.down.sql"])
    (tmp_path / "0003_misnamed.down.sql").write_text("SELECT 1;\n")
    with pytest.raises(JournalError, match=r"downgrade 0003_misnamed\.down\.sql has no migration of its name"):
        db.downgrade_files()


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
    from appliance.storage import db

    good = db.migration_files()
    broken = [
        *good,
        (len(good) + 1, f"{len(good) + 1:04d}_broken.sql", "CREATE TABLE half (a);\nINSERT INTO nowhere VALUES (1);\n"),
    ]
    monkeypatch.setattr(db, "migration_files", lambda: broken)
    with pytest.raises(JournalError):
        open_station_db(tmp_path)
    monkeypatch.setattr(db, "migration_files", lambda: good)
    conn = open_station_db(tmp_path)
    tables = {r[0] for r in conn.execute("SELECT name FROM sqlite_master WHERE type='table'")}
    assert "half" not in tables  # the migration's first statement was rolled back with it
    conn.close()


def corrupt_outbox(data_dir: Path) -> None:
    """Damage the outbox b-tree's root page the way a bad sector would, leaving page 1 (the schema) intact."""
    db = Database(data_dir / "journal.db")
    page_size = db.execute("PRAGMA page_size").fetchone()[0]
    root = db.execute("SELECT rootpage FROM sqlite_master WHERE name = 'outbox'").fetchone()[0]
    db.close()
    with open(data_dir / "journal.db", "r+b") as file:
        file.seek((root - 1) * page_size)
        file.write(b"\xff" * 64)


def test_new_journal_carries_our_application_id(tmp_path: Path) -> None:
    open_station_db(tmp_path).close()
    assert Database(tmp_path / "journal.db").execute("PRAGMA application_id").fetchone()[0] == APPLICATION_ID


def test_journal_of_an_earlier_version_is_adopted(tmp_path: Path) -> None:
    """A journal written before the id existed (application_id 0) opens, keeps its rows and gets the id."""
    conn = open_station_db(tmp_path)
    conn.execute("INSERT INTO station_state (key, value, updated_at) VALUES ('probe', 'kept', 'x')")
    conn.execute("PRAGMA application_id = 0")
    conn.close()
    ro = open_read_only(tmp_path / "journal.db")  # the CLI reads it as it is
    ro.close()
    conn = open_station_db(tmp_path)
    assert conn.execute("PRAGMA application_id").fetchone()[0] == APPLICATION_ID
    assert conn.execute("SELECT value FROM station_state WHERE key = 'probe'").fetchone() == ("kept",)
    conn.close()


@pytest.mark.parametrize(
    ("setup", "reason"),
    [
        ("application-id", "its SQLite application_id is 0x0badcafe, ours is 0x4f43504a"),
        ("other-tables", "no schema_migrations table"),
        ("rails", "its schema_migrations table is another program's"),
    ],
)
def test_another_programs_database_is_refused_untouched(tmp_path: Path, setup: str, reason: str) -> None:
    db = Database(tmp_path / "journal.db")
    db["photos"].insert({"id": 1, "name": "cat.jpg"}, pk="id")
    if setup == "application-id":
        db.execute("PRAGMA application_id = 195939070")  # 0x0BADCAFE
    elif setup == "rails":
        db["schema_migrations"].insert({"version": "20240501120000"})
    db.close()
    before = (tmp_path / "journal.db").read_bytes()
    with pytest.raises(
        JournalError, match=re.escape(f"another program's SQLite database, not a station journal ({reason})")
    ):
        open_station_db(tmp_path)
    assert (tmp_path / "journal.db").read_bytes() == before  # not switched to WAL, not migrated, not marked
    assert not (tmp_path / "journal.db-wal").exists()
    with pytest.raises(JournalError, match=re.escape(f"not a journal ({reason})")):
        open_read_only(tmp_path / "journal.db")


def test_damaged_page_refused_at_start_pointing_to_verify(tmp_path: Path) -> None:
    build_journal(tmp_path).close()
    corrupt_outbox(tmp_path)
    with pytest.raises(JournalError) as info:
        open_station_db(tmp_path)
    assert "the journal is damaged" in str(info.value)
    assert f"appliance-journal --db {tmp_path / 'journal.db'} verify" in str(info.value)
    ro = open_read_only(tmp_path / "journal.db")  # and verify does find it
    try:
        assert any("quick_check" in v.problem for v in verify(ro))
    finally:
        ro.close()


def test_journal_from_before_0010_upgrades_and_keeps_its_queue(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """0010 drops outbox_tx (a duplicate of the UNIQUE (transaction_id, seq_no) index) from a journal in use:
    its queued messages stay queued, in order, and the seqNo lookups still run on an index."""
    from appliance.storage import db

    every = db.migration_files()
    monkeypatch.setattr(db, "migration_files", lambda: [m for m in every if m[0] < 10])
    build_journal(tmp_path).close()  # the firmware before 0010 wrote this journal
    old = sqlite3.connect(tmp_path / "journal.db")
    assert old.execute("SELECT count(*) FROM sqlite_master WHERE name = 'outbox_tx'").fetchone()[0] == 1
    queued_before = [(q.message_id, q.seq_no) for q in JournalStore(old).pending_page(0, 100)]
    old.close()
    monkeypatch.setattr(db, "migration_files", lambda: every)
    conn = open_station_db(tmp_path)
    assert conn.execute("SELECT count(*) FROM sqlite_master WHERE name = 'outbox_tx'").fetchone()[0] == 0
    assert [(q.message_id, q.seq_no) for q in JournalStore(conn).pending_page(0, 100)] == queued_before
    assert queued_before  # the fixture leaves TX-B's seqNo 3 (and more) pending
    plan = conn.execute(
        "EXPLAIN QUERY PLAN SELECT payload FROM outbox WHERE transaction_id = 'TX-B' AND seq_no = 2"
    ).fetchall()
    assert "USING INDEX sqlite_autoindex_outbox" in plan[0][3]
    conn.close()
    assert problems(tmp_path) == []


def test_journal_from_before_0011_upgrades_and_continues_its_transactions(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """0011 drops transactions.next_seq_no and meter_last_wh, which the firmware before it kept current on every
    append: an open transaction goes on with the next seqNo, and the energy shown is the one it showed before."""
    from appliance.journal import queries
    from appliance.journal.store import Append
    from appliance.storage import db

    every = db.migration_files()
    monkeypatch.setattr(db, "migration_files", lambda: [m for m in every if m[0] < 11])
    build_journal(tmp_path).close()
    old = sqlite3.connect(tmp_path / "journal.db")
    with old:  # what the firmware before 0011 had written into the two columns
        old.execute(
            "UPDATE transactions SET next_seq_no = (SELECT max(seq_no) + 1 FROM outbox o"
            " WHERE o.transaction_id = transactions.transaction_id), meter_last_wh = CASE transaction_id"
            " WHEN 'TX-A' THEN 3000 ELSE 1700 END"
        )
    shown_before = dict(old.execute("SELECT transaction_id, meter_last_wh - meter_start_wh FROM transactions"))
    old.close()
    monkeypatch.setattr(db, "migration_files", lambda: every)
    conn = open_station_db(tmp_path)
    columns = {row[1] for row in conn.execute("PRAGMA table_info(transactions)")}
    assert not columns & {"next_seq_no", "meter_last_wh"}
    assert (
        {t["transactionId"]: t["energyWh"] for t in queries.transactions(conn)}
        == shown_before
        == {
            "TX-A": 2000,
            "TX-B": 1200,
        }
    )
    [stored] = JournalStore(conn).append_batch(
        [
            Append(
                "TransactionEvent",
                {
                    "eventType": "Updated",
                    "timestamp": "2030-01-01T00:00:00.000Z",
                    "triggerReason": "MeterValuePeriodic",
                    "seqNo": 0,
                    "transactionInfo": {"transactionId": "TX-B"},
                },
            )
        ]
    )
    assert stored["seqNo"] == 4  # TX-B had 0..3
    conn.close()
    assert problems(tmp_path) == []
