"""Structured log lines on stderr (logfmt), one event per line, for journald and for people.

    ts=2026-11-24T01:42:00.123Z level=info logger=appliance.link msg="connected to ws://…/CS001"

Tracebacks go into an `exc=` field with newlines escaped, so one event stays one line and a log shipper
never splits it.
"""

from __future__ import annotations

import contextlib
import logging
import logging.handlers
import os
import queue
import sys
from collections.abc import Iterator
from pathlib import Path

from appliance.timetext import format_timestamp


def _quote(value: str) -> str:
    if value and not any(c in value for c in ' "=\n\\'):
        return value
    return '"' + value.replace("\\", "\\\\").replace('"', '\\"').replace("\n", "\\n") + '"'


class LogfmtFormatter(logging.Formatter):
    def format(self, record: logging.LogRecord) -> str:
        stamp = format_timestamp(record.created)
        parts = [
            f"ts={stamp}",
            f"level={record.levelname.lower()}",
            f"logger={record.name}",
            f"msg={_quote(record.getMessage())}",
        ]
        if record.exc_info:
            parts.append(f"exc={_quote(self.formatException(record.exc_info))}")
        return " ".join(parts)


def configure(level: str = "INFO") -> None:
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(LogfmtFormatter())
    root = logging.getLogger()
    root.handlers[:] = [handler]
    root.setLevel(level)
    # The libraries' own chatter (every frame) is only useful when debugging them.
    for noisy in ("trio-websocket", "websockets", "ocpp"):
        logging.getLogger(noisy).setLevel(max(logging.WARNING, root.level))


# --- the station's own log files (DiagnosticsLog, N01) ----------------------------------------------------------

#: The current file in the log directory; rotated copies are `appliance.log.1` (newest) … `.N` (oldest).
LOG_FILE = "appliance.log"
#: Records waiting for the file writer thread; beyond this they are dropped (and counted), never awaited.
FILE_QUEUE = 10_000


class _PrivateRotatingFile(logging.handlers.RotatingFileHandler):
    """A RotatingFileHandler whose files are created 0600: log lines name EVSEs, masked tokens and URLs."""

    def _open(self):  # type: ignore[no-untyped-def]  # stdlib signature
        fd = os.open(self.baseFilename, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o600)
        return open(fd, self.mode.replace("w", "a"), encoding=self.encoding, errors=self.errors)


class _DroppingQueueHandler(logging.handlers.QueueHandler):
    """Hands records to the file thread without waiting: a slow or full disk never stalls the event loop."""

    def __init__(self, records: queue.Queue[logging.LogRecord]) -> None:
        super().__init__(records)
        self.dropped = 0

    def enqueue(self, record: logging.LogRecord) -> None:
        try:
            self.queue.put_nowait(record)
        except queue.Full:
            self.dropped += 1


@contextlib.contextmanager
def file_log(directory: Path, *, max_bytes: int, count: int) -> Iterator[Path]:
    """Also write every log line (logfmt, as on stderr) to rotated files in `directory` while the block runs.

    At most `count` files of `max_bytes` each are kept (the oldest is deleted on rotation), so the logs never
    take more than count × max_bytes of the data directory. The files are written by a thread of their own
    (QueueHandler/QueueListener): the Trio thread only queues a record. Yields the current file's path.
    """
    directory.mkdir(mode=0o700, parents=True, exist_ok=True)
    path = directory / LOG_FILE
    target = _PrivateRotatingFile(path, maxBytes=max_bytes, backupCount=max(count - 1, 0), encoding="utf-8", delay=True)
    target.setFormatter(logging.Formatter("%(message)s"))
    records: queue.Queue[logging.LogRecord] = queue.Queue(FILE_QUEUE)
    handler = _DroppingQueueHandler(records)
    # QueueHandler.prepare formats the record before queueing it: the line is the logfmt line, exc= included.
    handler.setFormatter(LogfmtFormatter())
    listener = logging.handlers.QueueListener(records, target, respect_handler_level=False)
    root = logging.getLogger()
    listener.start()
    root.addHandler(handler)
    try:
        yield path
    finally:
        root.removeHandler(handler)
        listener.stop()  # writes what is queued, then ends the thread
        target.close()
        if handler.dropped:
            logging.getLogger("appliance.logsetup").warning(
                "%d log line(s) not written to %s: the file writer fell behind", handler.dropped, path
            )


def log_files(directory: Path) -> list[Path]:
    """The station's log files in `directory`, oldest first (`appliance.log.N` … `appliance.log`)."""
    rotated = []
    for candidate in directory.glob(LOG_FILE + ".*"):
        suffix = candidate.name[len(LOG_FILE) + 1 :]
        if suffix.isdigit():
            rotated.append((int(suffix), candidate))
    files = [p for _, p in sorted(rotated, reverse=True)]
    current = directory / LOG_FILE
    if current.exists():
        files.append(current)
    return files
