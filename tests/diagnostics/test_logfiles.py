"""The station's own log files: logfmt lines as on stderr, rotated within their bound, private; and the
DiagnosticsLog export cut to a window in station time."""

from __future__ import annotations

import logging
import stat
from datetime import UTC, datetime, timedelta
from pathlib import Path

from appliance import logsetup
from appliance.diagnostics.logfiles import DiagnosticsLog, line_time


def test_lines_are_logfmt_private_and_rotated_within_the_bound(tmp_path: Path) -> None:
    directory = tmp_path / "logs"
    root = logging.getLogger()
    old_level = root.level
    root.setLevel(logging.INFO)
    try:
        with logsetup.file_log(directory, max_bytes=4096, count=3):
            for n in range(400):
                logging.getLogger("appliance.test").info("line %d of the rotation test", n)
            try:
                raise ValueError("boom")
            except ValueError:
                logging.getLogger("appliance.test").exception("with a traceback")
    finally:
        root.setLevel(old_level)
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
