"""Issue 3 (d): a power cut that drops every write not yet fsynced must not lose an acknowledged journal write.

SIGKILL cannot test this (the page cache survives, so FULL, NORMAL and OFF all pass); the lossy VFS can. The
journal's real write path (JournalStore on the real migrations, WAL + synchronous=FULL as `open_station_db`
sets them) runs a realistic stream until a power cut at a random point, then the next boot is judged (see
appliance/lab/powercut/experiment.py). Two models of the cut: every unsynced write dropped, and a random half of
them kept.

The negative control runs the same thing with synchronous=NORMAL, which SQLite documents as "consistent but
not durable" in WAL mode: it must lose acknowledged commits (else this test has no teeth) and must still never
corrupt or tear anything. A second control hands in a store whose group commit is not atomic.

Seeded and reproducible: POWERCUT_SEED / POWERCUT_TRIALS choose the seeds (default 0..49); a failing trial
prints the command that replays it (tools/powercut.py).
"""

from __future__ import annotations

import os
import random
from collections.abc import Sequence
from pathlib import Path

import apsw
import pytest

from appliance.journal.store import Append, JournalStore
from appliance.journal.verify import verify, verify_report
from appliance.lab.powercut.experiment import (
    ApswConnection,
    ExpectedRow,
    Judge,
    Op,
    Recovered,
    Tally,
    Workload,
    open_journal,
    run_trial,
    run_trials,
)
from appliance.lab.powercut.lossyvfs import Disk, LossyVFS
from appliance.storage.db import DB_NAME, migrate

TRIALS = int(os.environ.get("POWERCUT_TRIALS", "50"))
FIRST_SEED = int(os.environ.get("POWERCUT_SEED", "0"))
SEEDS = range(FIRST_SEED, FIRST_SEED + TRIALS)


def _failures(tally: Tally, mode: str, keep: float) -> str:
    lines = [tally.line()]
    for result in tally.failures[:8]:
        lines.append(result.summary())
        lines += [f"    {p}" for p in [*result.corrupt, *result.problems, *(f"lost {op}" for op in result.lost)][:6]]
        lines.append(
            f"    replay: python tools/powercut.py --mode {mode} --keep-unsynced {keep} "
            f"--seed {result.seed} --trials 1 -v"
        )
    return "\n".join(lines)


# --- the disk model itself ---------------------------------------------------------------------------------


def test_disk_keeps_exactly_what_was_synced() -> None:
    disk = Disk()
    disk.opened("/d/journal.db", existed=False, dirsync=False)
    disk.written("/d/journal.db", 0, b"aaaa")
    disk.synced("/d/journal.db")
    disk.written("/d/journal.db", 2, b"bb")
    disk.truncated("/d/journal.db", 3)
    assert disk.files["/d/journal.db"].volatile() == b"aab"  # what the running process sees
    assert disk.snapshot() == {}  # synced data, but nobody synced the directory: the file is not there
    disk.sync_dir()  # what open_station_db's fsync_dir does
    assert disk.snapshot() == {"/d/journal.db": b"aaaa"}

    disk.opened("/d/journal.db-wal", existed=False, dirsync=True)
    disk.written("/d/journal.db-wal", 0, b"w")
    disk.synced("/d/journal.db-wal")  # SQLite's first WAL sync also syncs the directory
    assert disk.snapshot()["/d/journal.db-wal"] == b"w"
    disk.deleted("/d/journal.db-wal")  # a delete is durable at once
    assert "/d/journal.db-wal" not in disk.snapshot()


def test_partial_flush_keeps_a_random_subset_in_order() -> None:
    disk = Disk(keep_fraction=1.0)
    disk.opened("/d/f", existed=False, dirsync=False)
    disk.written("/d/f", 0, b"xx")
    disk.written("/d/f", 4, b"yy")
    assert disk.snapshot() == {"/d/f": b"xx\0\0yy"}  # everything kept (even the unsynced directory entry)
    half = Disk(keep_fraction=0.5, rng=random.Random(1))
    half.opened("/d/f", existed=False, dirsync=False)
    half.sync_dir()
    for i in range(64):
        half.written("/d/f", i, b"z")
    assert 0 < half.snapshot()["/d/f"].count(b"z") < 64  # some of the unsynced writes made it, not all


def test_the_model_tracks_the_page_cache_and_full_syncs_every_commit(tmp_path: Path) -> None:
    """The model's view (durable image + unsynced ops) is byte-for-byte the real file; FULL leaves no WAL debt.

    Only a truncate may stay unsynced: `wal_checkpoint(TRUNCATE)` does not sync it (wal.c), which is safe because
    a WAL that comes back holds only frames already copied into the synced database file.
    """
    disk = Disk()
    vfs = LossyVFS(disk)
    db = open_journal(tmp_path / DB_NAME, vfs=vfs.name, synchronous="full")
    try:
        disk.sync_dir()
        migrate(db)  # type: ignore[arg-type]
        workload = Workload(JournalStore(db), db, random.Random(7))  # type: ignore[arg-type]
        wal = next(p for p in disk.files if p.endswith("-wal"))
        for _ in range(300):
            op = workload.step()
            unsynced = [o for o in disk.files[wal].pending if not isinstance(o, int)] if wal in disk.files else []
            assert unsynced == [], f"{op.describe()} returned with unsynced WAL writes under synchronous=FULL"
        for path, tracked in disk.files.items():
            assert tracked.volatile() == Path(path).read_bytes(), path
        assert disk.io_ops > 300
    finally:
        db.close()
        vfs.unregister()


def test_adapter_behaves_like_sqlite3() -> None:
    db = ApswConnection(apsw.Connection(":memory:"))
    db.execute("CREATE TABLE t (x INTEGER)")
    assert db.execute("INSERT INTO t VALUES (1), (2), (3)").rowcount == 3
    assert db.execute("DELETE FROM t WHERE x > ?", (1,)).rowcount == 2
    assert db.execute("SELECT x FROM t").rowcount == -1
    rows = db.execute("UPDATE t SET x = x + 1 RETURNING x")
    assert (rows.fetchone(), rows.fetchone(), rows.fetchall()) == ((2,), None, [])
    db.execute("BEGIN")
    assert db.in_transaction
    db.execute("ROLLBACK")
    db.close()


def test_verify_through_the_adapter_is_not_vacuous(tmp_path: Path) -> None:
    """`verify` must really read the journal through the adapter: a hole punched in a transaction is reported."""
    db = open_journal(tmp_path / DB_NAME, vfs=None, synchronous="full")
    try:
        migrate(db)  # type: ignore[arg-type]
        workload = Workload(JournalStore(db), db, random.Random(3))  # type: ignore[arg-type]
        while db.execute("SELECT count(*) FROM outbox WHERE seq_no = 2").fetchone() == (0,):
            workload.step()
        assert verify_report(db)["ok"], verify_report(db)  # type: ignore[arg-type]
        assert verify_report(db)["checked"]["messages"] > 2  # type: ignore[arg-type]
        db.execute("DELETE FROM outbox WHERE seq_no = 1")
        assert any("gap" in v.problem for v in verify(db))  # type: ignore[arg-type]
    finally:
        db.close()


# --- the judge, on hand-made outcomes --------------------------------------------------------------------


def _append(index: int, *ids: int) -> Op:
    rows = {i: ExpectedRow(f"m{i}", "MeterValues", None, None, f'{{"n":{i}}}', {"n": i}) for i in ids}
    return Op(index, "append", rows=rows)


def _recovered(*ids: int, outcome: dict[int, str] | None = None) -> Recovered:
    outcome = outcome or {}
    return Recovered(
        outbox={i: (f"m{i}", "MeterValues", None, None, f'{{"n":{i}}}', outcome.get(i), 0) for i in ids},
        has_schema=True,
    )


@pytest.mark.parametrize(
    ("found", "delivered", "lost", "problem"),
    [
        ((1, 2), True, [], None),
        ((1,), True, ["#2 append ids [2]"], None),
        ((1, 2), False, ["#1 mark_delivered 1"], "not a prefix"),  # #2 survived although #1 did not
        ((1, 2, 9), True, [], "phantom outbox row 9"),
    ],
)
def test_judge(found: Sequence[int], delivered: bool, lost: list[str], problem: str | None) -> None:
    ops = [_append(0, 1), Op(1, "delivered", target=1), _append(2, 2)]
    judge = Judge(ops, None, _recovered(*found, outcome={1: "delivered"} if delivered else {}))
    assert [op.describe() for op in judge.run()] == lost
    assert any(problem in p for p in judge.problems) if problem else judge.problems == []


def test_judge_sees_a_torn_batch_and_a_changed_payload() -> None:
    recovered = _recovered(1)
    recovered.outbox[2] = ("m2", "MeterValues", None, None, '{"n":20}', None, 0)
    judge = Judge([], _append(0, 1, 2, 3), recovered)
    judge.run()
    assert any("batch torn" in p for p in judge.problems)
    assert any("row 2 differs" in p for p in judge.problems)


# --- the experiment ----------------------------------------------------------------------------------------


def test_a_trial_is_reproducible() -> None:
    first, again = run_trial(11, "normal", keep_fraction=0.5), run_trial(11, "normal", keep_fraction=0.5)
    assert (first.acked_ops, first.cut_at_io, first.inflight, first.lost) == (
        again.acked_ops,
        again.cut_at_io,
        again.inflight,
        again.lost,
    )


@pytest.mark.parametrize("keep", [0.0, 0.5], ids=["unsynced-dropped", "random-half-kept"])
def test_full_survives_power_cuts(keep: float) -> None:
    tally = run_trials(SEEDS, "full", keep_fraction=keep)
    print(f"synchronous=FULL keep-unsynced={keep}: {tally.line()}")
    assert tally.failures == [], _failures(tally, "full", keep)
    assert tally.acked_commits > 50 * tally.trials
    # The cut must usually find something to drop, or this would only test clean shutdowns.
    assert tally.cuts_mid_write >= tally.trials * 0.7, tally.line()


@pytest.mark.parametrize("keep", [0.0, 0.5], ids=["unsynced-dropped", "random-half-kept"])
def test_negative_control_normal_loses_acked_commits_but_stays_consistent(keep: float) -> None:
    tally = run_trials(SEEDS, "normal", keep_fraction=keep)
    print(
        f"synchronous=NORMAL keep-unsynced={keep}: {tally.line()} "
        f"-> {tally.trials_with_loss / tally.trials:.0%} of trials lost an acked commit"
    )
    assert tally.trials_with_loss >= 1, f"NORMAL lost nothing: the harness has no teeth. {tally.line()}"
    assert tally.corrupt == 0 and tally.inconsistent == 0, _failures(
        Tally(failures=[r for r in tally.failures if r.corrupt or r.problems]), "normal", keep
    )


class CommitPerItemStore(JournalStore):
    """A deliberately broken group commit: each message of a batch commits on its own."""

    def append_batch(self, items: Sequence[Append]) -> list[dict]:
        stored: list[dict] = []
        for item in items:
            stored += super().append_batch([item])
        return stored


def test_negative_control_a_non_atomic_group_commit_is_caught() -> None:
    tally = run_trials(SEEDS, "full", store_class=CommitPerItemStore)
    torn = [r for r in tally.failures if any("batch torn" in p for p in r.problems)]
    assert torn, f"a cut inside a non-atomic batch was never seen: {tally.line()}"
