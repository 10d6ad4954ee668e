"""A power cut at every I/O of a schema change: the migrations newer firmware applies (each storing its
downgrade) and the downgrades the older firmware runs after a rollback. The next boot must find every step
done or not done — a migration never without its stored downgrade, a downgrade never half run — and the
production open must then finish the job with every queued message kept.

The change runs through the lossy VFS on the production `migrate` (apsw, duck-typed like the journal
experiment); the cut lands before each mutating I/O in turn, from the first to past the last, with every
unsynced write dropped, and for each position again with a random half of them kept.
"""

from __future__ import annotations

import shutil
from pathlib import Path

import apsw
import pytest

from appliance.journal.store import JournalStore
from appliance.lab.powercut.experiment import ApswConnection, open_journal
from appliance.lab.powercut.lossyvfs import Disk, LossyVFS, write_image
from appliance.storage import db
from appliance.storage.db import DB_NAME, open_station_db
from tests.journal.test_verify import build_journal, problems
from tests.storage.test_db import NEWER, NEWER_DOWNS, as_firmware, opened_schema, schema

#: More I/O positions than either change makes (the loop stops at the first cut that lands after the end).
MAX_CUTS = 400


def cut_during_migrate(source: Path, work: Path, cut: int, keep_fraction: float) -> Path | None:
    """Run `migrate` (as the firmware `as_firmware` made this process) on a copy of `source` through the lossy
    VFS with the power cut before mutating I/O number `cut`; the directory the next boot finds, or None when
    the change ended before the cut."""
    live = work / f"live-{cut}-{keep_fraction}"
    shutil.copytree(source, live)
    disk = Disk(keep_fraction=keep_fraction)
    vfs = LossyVFS(disk)
    try:
        conn = open_journal(live / DB_NAME, vfs=vfs.name, synchronous="full")
        try:
            disk.arm(cut)
            db.migrate(conn)  # type: ignore[arg-type]  # the production code, duck-typed
        finally:
            conn.close()
    finally:
        vfs.unregister()
    shutil.rmtree(live)
    if disk.image is None:
        return None
    boot = work / f"boot-{cut}-{keep_fraction}"
    write_image(disk.image, boot)
    return boot


def newer_state(boot: Path) -> tuple[frozenset[int], frozenset[int]]:
    """The newer firmware's versions the cut left recorded, and those with a stored downgrade."""
    conn = ApswConnection(apsw.Connection(str(boot / DB_NAME)))
    try:
        assert conn.execute("PRAGMA integrity_check").fetchall() == [("ok",)]
        applied = frozenset(r[0] for r in conn.execute("SELECT version FROM schema_migrations WHERE version > 97"))
        tables = {r[0] for r in conn.execute("SELECT name FROM sqlite_master WHERE type = 'table'")}
        stored = (
            frozenset(r[0] for r in conn.execute("SELECT version FROM schema_downgrades WHERE version > 97"))
            if "schema_downgrades" in tables
            else frozenset()
        )
        return applied, stored
    finally:
        conn.close()


@pytest.mark.parametrize("keep_fraction", [0.0, 0.5])
def test_a_power_cut_anywhere_in_a_downgrade_leaves_whole_steps(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, keep_fraction: float
) -> None:
    ours, our_downs = db.migration_files(), db.downgrade_files()
    expected = opened_schema(tmp_path / "fresh")
    as_firmware(monkeypatch, [*ours, *NEWER], {**our_downs, **NEWER_DOWNS})
    newer = build_journal(tmp_path / "newer")  # the newer firmware's journal, with its queue
    queued = [(q.message_id, q.seq_no) for q in JournalStore(newer).pending_page(0, 100)]
    newer.close()

    seen = set()
    for cut in range(MAX_CUTS):
        as_firmware(monkeypatch, ours, our_downs)  # the rolled-back firmware
        boot = cut_during_migrate(tmp_path / "newer", tmp_path, cut, keep_fraction)
        if boot is None:
            break
        applied, stored = newer_state(boot)
        assert applied == stored, f"cut {cut}: a step without its downgrade, or a downgrade without its step"
        assert applied in ({98, 99}, {98}, set()), f"cut {cut}: 0099 undone after 0098: {sorted(applied)}"
        seen.add(applied)
        conn = open_station_db(boot)  # the next boot finishes the downgrade
        assert schema(conn) == expected, cut
        assert [(q.message_id, q.seq_no) for q in JournalStore(conn).pending_page(0, 100)] == queued, cut
        conn.close()
        assert problems(boot) == [], cut
        shutil.rmtree(boot)
    else:
        pytest.fail(f"the downgrade made more than {MAX_CUTS} writes")
    assert seen == {frozenset({98, 99}), frozenset({98}), frozenset()}, "some cut positions were never reached"


@pytest.mark.parametrize("keep_fraction", [0.0, 0.5])
def test_a_power_cut_anywhere_in_a_migration_never_leaves_it_without_its_downgrade(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, keep_fraction: float
) -> None:
    """The newer firmware's first start, cut: whatever it applied has its way back stored with it."""
    ours, our_downs = db.migration_files(), db.downgrade_files()
    build_journal(tmp_path / "ours").close()
    as_firmware(monkeypatch, [*ours, *NEWER], {**our_downs, **NEWER_DOWNS})
    expected = opened_schema(tmp_path / "fresh")

    seen = set()
    for cut in range(MAX_CUTS):
        boot = cut_during_migrate(tmp_path / "ours", tmp_path, cut, keep_fraction)
        if boot is None:
            break
        applied, stored = newer_state(boot)
        assert applied == stored, f"cut {cut}: applied {sorted(applied)}, downgrades stored {sorted(stored)}"
        seen.add(applied)
        conn = open_station_db(boot)
        assert schema(conn) == expected, cut
        conn.close()
        assert problems(boot) == [], cut
        shutil.rmtree(boot)
    else:
        pytest.fail(f"the migration made more than {MAX_CUTS} writes")
    assert seen == {frozenset(), frozenset({98}), frozenset({98, 99})}, "some cut positions were never reached"
