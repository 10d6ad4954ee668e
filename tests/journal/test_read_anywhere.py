"""`appliance-journal` reads without write access: a read-only directory or mount, another user, after a clean
stop, beside a running station, on a crash image; and where a permission is missing it says which one.

Each case is real: chmod, a private read-only bind mount, and the reader run as `nobody` when we are root
(tests/permissions.py); the journal is written by the production store (`build_journal`).
"""

from __future__ import annotations

import json
import shutil
import sqlite3
from collections.abc import Iterator
from pathlib import Path

import pytest

from appliance.journal.cli import main
from appliance.storage.db import DB_NAME
from tests.journal.test_verify import build_journal
from tests.permissions import as_other_user, read_only_mount, run_python, shared_dir

MESSAGES = 10  # what build_journal journals


@pytest.fixture
def shared() -> Iterator[Path]:
    with shared_dir() as path:
        yield path


def read(prefix: list[str], where: Path, *args: str) -> tuple[int, str, str]:
    done = run_python(prefix, "appliance.journal.cli", "--db", str(where), *(args or ("summary", "--json")))
    return done.returncode, done.stdout, done.stderr


def messages(out: str) -> int:
    return json.loads(out)["messages"]


def sidecars(directory: Path) -> set[str]:
    return {p.name for p in directory.iterdir() if p.name.startswith(f"{DB_NAME}-")}


def crash_image(source: Path, target: Path) -> None:
    """What a power cut leaves: journal.db, -wal and -shm as they are while the writer is idle but open."""
    target.mkdir()
    for name in (DB_NAME, f"{DB_NAME}-wal", f"{DB_NAME}-shm"):
        shutil.copyfile(source / name, target / name)


def grant_read(directory: Path) -> None:
    """The station keeps its journal private (0600, the data dir 0700: it holds the basic-auth password); reading
    it as another user needs the operator to grant that user read access on purpose, as done here."""
    for name in {DB_NAME} | sidecars(directory):
        (directory / name).chmod(0o644)


def one_error_line(code: int, out: str, err: str) -> str:
    assert code == 2, (out, err)
    assert out == "" and "Traceback" not in err
    lines = err.strip().splitlines()
    assert len(lines) == 1, err
    return lines[0]


def test_clean_stop_in_a_read_only_directory_as_another_user(shared: Path) -> None:
    data = shared / "data"
    build_journal(data).close()  # a clean stop: the -wal and -shm are gone
    assert sidecars(data) == set()
    grant_read(data)
    data.chmod(0o555)
    code, out, err = read(as_other_user(), data)
    assert code == 0, err
    assert messages(out) == MESSAGES
    assert sidecars(data) == set()  # immutable: nothing created, nothing left for the station to trip over


def test_clean_stop_as_root_leaves_no_files_the_station_cannot_write(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """`mode=ro` would create -wal/-shm owned by whoever reads (root) that the station user could not open."""
    build_journal(tmp_path).close()
    for command in (["summary"], ["verify"], ["export"]):
        assert main(["--db", str(tmp_path), *command]) == 0
    capsys.readouterr()
    assert sidecars(tmp_path) == set()


def test_beside_a_running_station_as_another_user(shared: Path) -> None:
    data = shared / "data"
    writer = build_journal(data)  # stays open, as the running station's connection
    try:
        grant_read(data)
        data.chmod(0o555)
        code, out, err = read(as_other_user(), data)
        assert code == 0, err
        assert messages(out) == MESSAGES
        writer.execute("DELETE FROM outbox WHERE action = 'StatusNotification'")  # a commit after the first read
        code, out, err = read(as_other_user(), data)
        assert code == 0, err
        assert messages(out) == MESSAGES - 1  # read through the live WAL, not a stale main file
    finally:
        data.chmod(0o755)
        writer.close()


def test_crash_image_reads_its_wal_as_another_user(shared: Path) -> None:
    live = shared / "live"
    writer = build_journal(live)
    try:
        crash_image(live, shared / "crashed")
    finally:
        writer.close()
    crashed = shared / "crashed"
    # Not vacuous: the main file alone does not hold the messages; they are only in the WAL.
    main_only = sqlite3.connect(f"{(crashed / DB_NAME).as_uri()}?immutable=1", uri=True)
    with pytest.raises(sqlite3.OperationalError, match="no such table"):
        main_only.execute("SELECT count(*) FROM outbox").fetchone()
    main_only.close()
    crashed.chmod(0o555)
    for name in sidecars(crashed) | {DB_NAME}:
        (crashed / name).chmod(0o444)
    code, out, err = read(as_other_user(), crashed)
    assert code == 0, err
    assert messages(out) == MESSAGES
    code, out, err = read(as_other_user(), crashed, "verify")
    assert code == 0 and out.startswith("OK"), out + err


def test_read_only_mount(shared: Path) -> None:
    clean = shared / "clean"
    build_journal(clean).close()
    writer = build_journal(shared / "live")
    try:
        crash_image(shared / "live", shared / "crashed")
    finally:
        writer.close()
    prefix = read_only_mount(shared)
    for where in (clean, shared / "crashed"):
        code, out, err = read(prefix, where)
        assert code == 0, err
        assert messages(out) == MESSAGES
    assert sidecars(clean) == set()


@pytest.mark.parametrize(
    ("lock", "names"),
    [
        ("file", f"{DB_NAME}: permission denied: no read permission on this file"),
        ("wal", f"{DB_NAME}-wal: permission denied: no read permission on this file"),
        ("directory", "permission denied: no search (x) permission on the directory"),
        ("no-shm", "its -wal file has no -shm index beside it and this user may not create one"),
    ],
)
def test_missing_permission_is_named(shared: Path, lock: str, names: str) -> None:
    live = shared / "live"
    writer = build_journal(live)
    try:
        crash_image(live, shared / "data")
    finally:
        writer.close()
    data = shared / "data"
    if lock == "file":
        (data / DB_NAME).chmod(0o600)
    elif lock == "wal":
        (data / f"{DB_NAME}-wal").chmod(0o600)
    elif lock == "directory":
        data.chmod(0o700)
    else:
        (data / f"{DB_NAME}-shm").unlink()
        data.chmod(0o555)
    prefix = as_other_user()
    if not prefix and lock != "no-shm":
        pytest.skip("not root: the journal's owner is this user, so owner-only modes do not refuse it")
    line = one_error_line(*read(prefix, data))
    assert line.startswith("appliance-journal: ")
    assert names in line
    if lock == "directory":
        assert str(data) in line
