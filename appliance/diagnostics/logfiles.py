"""DiagnosticsLog: the station's own rotated log files (logsetup.file_log), cut to a time window for GetLog.

The files hold logfmt lines stamped with the host clock (`ts=…Z`); a GetLog's oldestTimestamp/latestTimestamp are
in the CSMS's time, which the station clock follows with an offset. Each line is therefore compared after adding
the clock offset, so "the last hour" means the CSMS's last hour even on a host whose clock is off.

Export reads the files oldest first and writes the lines inside the window to one plain-text file (logfmt, one
event per line, as journald shows them). It is blocking file I/O: callers run it in a worker thread. Its size is
bounded by the files' own bound (file_count × file_max_bytes).
"""

from __future__ import annotations

import functools
import time
from collections.abc import Callable, Iterator
from datetime import UTC, datetime
from pathlib import Path

import trio

from appliance import logsetup

_STAMP = len("ts=2026-12-02T00:35:30.123Z")


def line_time(line: str) -> float | None:
    """The host-clock POSIX time of a logfmt line, or None when it does not start with a `ts=` stamp."""
    if not line.startswith("ts=") or len(line) < _STAMP or line[_STAMP - 1] != "Z":
        return None
    try:
        whole = time.strptime(line[3:22], "%Y-%m-%dT%H:%M:%S")
        millis = int(line[23:26])
    except ValueError:
        return None
    return float(_timegm(whole)) + millis / 1000


def _timegm(moment: time.struct_time) -> int:
    return int(datetime(*moment[:6], tzinfo=UTC).timestamp())


class DiagnosticsLog:
    """The station's log files in `directory`, exported for a GetLog of logType DiagnosticsLog."""

    def __init__(self, directory: Path, clock_offset: Callable[[], float]) -> None:
        self.directory = directory
        self._offset = clock_offset

    def lines(self, oldest: datetime | None, latest: datetime | None) -> Iterator[str]:
        """Every complete line stamped inside [oldest, latest] (station time), oldest file first. A line without
        a stamp (never written by our formatter) goes with the line before it."""
        offset = self._offset()
        low = oldest.timestamp() if oldest is not None else None
        high = latest.timestamp() if latest is not None else None
        keep = False
        for path in logsetup.log_files(self.directory):
            try:
                handle = path.open(encoding="utf-8", errors="replace")
            except FileNotFoundError:  # rotated away between listing and opening
                continue
            with handle:
                for line in handle:
                    if not line.endswith("\n"):
                        break  # the writer thread is in the middle of this one
                    stamp = line_time(line)
                    if stamp is not None:
                        moment = stamp + offset
                        keep = (low is None or moment >= low) and (high is None or moment <= high)
                    if keep:
                        yield line

    def export_sync(self, path: Path, oldest: datetime | None, latest: datetime | None) -> int:
        """Write the window's lines to `path`; the number of lines written (0: nothing to send)."""
        count = 0
        with path.open("w", encoding="utf-8") as out:
            for line in self.lines(oldest, latest):
                out.write(line)
                count += 1
        return count

    async def export(self, path: Path, oldest: datetime | None, latest: datetime | None) -> int:
        """`export_sync` in a worker thread (the same shape as the security log's export)."""
        return await trio.to_thread.run_sync(functools.partial(self.export_sync, path, oldest, latest))
