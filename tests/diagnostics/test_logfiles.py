"""The station's own log files: logfmt lines as on stderr, rotated within their bound, private; and the
DiagnosticsLog export cut to a window in station time."""

from __future__ import annotations

import contextlib
import logging
import stat
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path

import trio

from appliance import logsetup
from appliance.diagnostics.logfiles import DiagnosticsLog, line_time


@contextlib.contextmanager
def info_logging() -> Iterator[None]:
    """The root logger at INFO for the block, then back to its level."""
    root = logging.getLogger()
    old_level = root.level
    root.setLevel(logging.INFO)
    try:
        yield
    finally:
        root.setLevel(old_level)


def test_lines_are_logfmt_private_and_rotated_within_the_bound(tmp_path: Path) -> None:
    directory = tmp_path / "logs"
    with info_logging(), logsetup.file_log(directory, max_bytes=4096, count=3):
        for n in range(400):
            logging.getLogger("appliance.test").info("line %d of the rotation test", n)
        try:
            raise ValueError("boom")
        except ValueError:
            logging.getLogger("appliance.test").exception("with a traceback")
    files = logsetup.log_files(directory)
    assert [p.name for p in files] == ["appliance.log.2", "appliance.log.1", "appliance.log"]
    assert sum(p.stat().st_size for p in files) <= 3 * 4096 + 200
    assert stat.S_IMODE(directory.stat().st_mode) == 0o700
    assert all(stat.S_IMODE(p.stat().st_mode) == 0o600 for p in files)
    last = files[-1].read_text().splitlines()
    assert last[-1].startswith("ts=") and "level=error logger=appliance.test" in last[-1]
    assert 'exc="Traceback' in last[-1] and "ValueError: boom" in last[-1]
    assert "line 399 of the rotation test" in last[-2]
    assert line_time(last[-1]) is not None


def test_a_single_file_starts_again_at_its_bound(tmp_path: Path) -> None:
    """`file_count = 1` keeps one file, emptied when the next line would take it to `max_bytes` (RotatingFileHandler
    with backupCount 0 never rotated it: the file grew without bound)."""
    directory = tmp_path / "logs"
    with info_logging(), logsetup.file_log(directory, max_bytes=4096, count=1):
        for n in range(400):
            logging.getLogger("appliance.test").info("line %d of the single-file test", n)
    assert [p.name for p in directory.iterdir()] == ["appliance.log"]
    assert 3000 < (directory / "appliance.log").stat().st_size < 4096
    lines = (directory / "appliance.log").read_text().splitlines()
    assert lines[0].startswith("ts=") and "line 399 of the single-file test" in lines[-1]


def test_export_filters_by_station_time(tmp_path: Path) -> None:
    directory = tmp_path / "logs"
    directory.mkdir()
    (directory / "appliance.log.1").write_text(
        "ts=2026-12-01T10:00:00.000Z level=info logger=a msg=early\n"
        "ts=2026-12-01T11:00:00.500Z level=info logger=a msg=middle\n"
    )
    (directory / "appliance.log").write_text(
        "ts=2026-12-01T12:00:00.000Z level=info logger=a msg=late\n"
        "ts=2026-12-01T13:00:00.000Z level=info logger=a msg=half-writ"
    )  # no newline: being written
    offset = 3600.0  # the station clock is an hour ahead of the host's
    source = DiagnosticsLog(directory, lambda: offset)
    at = datetime(2026, 12, 1, tzinfo=UTC)
    out = tmp_path / "bundle.log"
    assert source.export_sync(out, at + timedelta(hours=12), at + timedelta(hours=13)) == 2
    assert [line.split("msg=")[1] for line in out.read_text().splitlines()] == ["middle", "late"]
    assert source.export_sync(out, None, None) == 3
    assert source.export_sync(out, at + timedelta(hours=14), None) == 0


async def test_stations_in_separate_log_scopes_each_get_only_their_own_records(tmp_path: Path) -> None:
    """Two stations in one process (`appliance fleet`): each file gets the records of its own tasks — the task
    that opened it, its siblings and children, and worker threads they start — and not the other's; a file
    opened outside any scope (a station on its own) still gets every record of the process."""
    log = logging.getLogger("appliance.test.scopes")
    root = logging.getLogger()
    old_level = root.level
    root.setLevel(logging.INFO)
    opened = {"A": trio.Event(), "B": trio.Event()}
    done = trio.Event()

    async def sibling(name: str) -> None:
        log.info("station %s: from a sibling task", name)

    async def station(name: str) -> None:
        logsetup.separate_logs()

        async def diagnostics() -> None:  # the block that keeps the file, as in Station.run
            with logsetup.file_log(tmp_path / name, max_bytes=65536, count=2):
                opened[name].set()
                await done.wait()

        async with trio.open_nursery() as nursery:
            nursery.start_soon(diagnostics)
            await opened[name].wait()
            log.info("station %s: from its root task", name)
            nursery.start_soon(sibling, name)
            await trio.to_thread.run_sync(log.info, "station %s: from a worker thread", name)
            await trio.sleep(0.1)

    try:
        with logsetup.file_log(tmp_path / "everything", max_bytes=65536, count=2):
            async with trio.open_nursery() as nursery:
                nursery.start_soon(station, "A")
                nursery.start_soon(station, "B")
                await opened["A"].wait()
                await opened["B"].wait()
                await trio.sleep(0.3)
                log.info("the process itself, outside every station")
                done.set()
    finally:
        root.setLevel(old_level)

    def messages(name: str) -> list[str]:
        text = (tmp_path / name / logsetup.LOG_FILE).read_text()
        return sorted(line.split("msg=", 1)[1] for line in text.splitlines() if "appliance.test.scopes" in line)

    for name, other in (("A", "B"), ("B", "A")):
        assert messages(name) == sorted(
            f'"station {name}: {where}"'
            for where in ("from its root task", "from a sibling task", "from a worker thread")
        )
        assert not any(f"station {other}" in m for m in messages(name))
    everything = messages("everything")
    assert len(everything) == 7 and '"the process itself, outside every station"' in everything
