"""Structured log lines on stderr (logfmt), one event per line, for journald and for people.

    ts=2026-11-24T01:42:00.123Z level=info logger=appliance.link msg="connected to ws://…/CS001"

Tracebacks go into an `exc=` field with newlines escaped, so one event stays one line and a log shipper
never splits it.
"""

from __future__ import annotations

import contextlib
import contextvars
import itertools
import logging
import os
import queue
import sys
import threading
import time
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
#: Lines waiting for the file writer thread (all files of the process); beyond this they are dropped (and
#: counted per file), never awaited.
FILE_QUEUE = 10_000


class _File:
    """One open `file_log`: its current file and rotated copies, written by the writer thread only, and the lines
    it lost.

    The rotation is RotatingFileHandler's (rotate before a line would take the current file to `max_bytes`;
    `.1` … `.{count-1}` shift up, the oldest is replaced), kept here because `logging.handlers` loads `pickle` and
    socket handlers a station never uses (~0.5 MB of RSS), and so that `count = 1` truncates the one file rather
    than letting it grow (with backupCount 0 the stdlib handler never removes anything). Files are created 0600:
    log lines name EVSEs, masked tokens and URLs. Each line is one `write` on an O_APPEND descriptor, as
    unbuffered as the handler's flush after every record.
    """

    __slots__ = ("_failing", "_fd", "_size", "count", "dropped", "max_bytes", "path")

    def __init__(self, path: Path, max_bytes: int, count: int) -> None:
        self.path = path
        self.max_bytes = max_bytes
        self.count = count
        self.dropped = 0
        self._fd: int | None = None  # opened by the first line, as with delay=True
        self._size = 0
        self._failing = False

    def write(self, line: str) -> None:
        data = (line + "\n").encode("utf-8", "backslashreplace")
        try:
            if self._fd is None:
                self._open()
            if self._size and self._size + len(data) >= self.max_bytes:
                self._rotate()
            assert self._fd is not None
            os.write(self._fd, data)
            self._size += len(data)
            self._failing = False
        except OSError as exc:  # a full or failing disk loses the line, never the writer thread
            self.dropped += 1
            if not self._failing:  # said once on stderr (logging it would queue another line for this file)
                self._failing = True
                problem = _quote(f"cannot write {self.path}: {exc}")
                print(
                    f"ts={format_timestamp(time.time())} level=error logger=appliance.logsetup msg={problem}",
                    file=sys.stderr,
                )

    def _open(self, flags: int = 0) -> None:
        self._fd = os.open(self.path, os.O_WRONLY | os.O_APPEND | os.O_CREAT | flags, 0o600)
        self._size = os.fstat(self._fd).st_size

    def _rotate(self) -> None:
        self.close()
        names = [self.path, *(self.path.with_name(f"{self.path.name}.{n}") for n in range(1, self.count))]
        for newer, older in reversed(list(itertools.pairwise(names))):  # the oldest first: it is replaced
            if newer.exists():
                os.replace(newer, older)
        self._open(os.O_TRUNC)  # a new file, or with count = 1 the only one, emptied

    def close(self) -> None:
        if self._fd is not None:
            os.close(self._fd)
            self._fd = None


class LogScope:
    """The records of one station among several in a process: those logged in its tasks go to its file only.

    Held in a context variable (`separate_logs`); Trio tasks and `trio.to_thread` calls inherit the context they
    are started from, so every task a station starts from its root logs in its scope.
    """

    __slots__ = ("file",)

    def __init__(self) -> None:
        self.file: _File | None = None


_scope: contextvars.ContextVar[LogScope | None] = contextvars.ContextVar("appliance_log_scope", default=None)


def separate_logs() -> LogScope:
    """From here on, the current task and every task or thread it starts log into the file that a station run
    from them opens (`file_log`), and into no other station's.

    For many stations in one process (`appliance fleet`): without it each station's file would receive every
    record of the process. A station on its own never calls it: its file receives every record, as it should.
    """
    scope = LogScope()
    _scope.set(scope)
    return scope


class _Router(logging.Handler):
    """The one root handler behind every open `file_log`: formats each record once and queues the line for the
    file writer thread — to every file opened outside a scope, and to the file of the record's scope.

    Queueing never waits: a slow or full disk never stalls the event loop (a full queue drops the line and
    counts it). One writer thread serves every file of the process, so a thousand stations do not cost a
    thousand threads.
    """

    def __init__(self) -> None:
        super().__init__()
        self.setFormatter(LogfmtFormatter())
        self.everywhere: tuple[_File, ...] = ()  # replaced whole, so `emit` in any thread reads a consistent one
        self.lines: queue.Queue[tuple[_File, str | threading.Event] | None] = queue.Queue(FILE_QUEUE)
        self.files = 0
        self._thread: threading.Thread | None = None
        self._lock = threading.Lock()

    def emit(self, record: logging.LogRecord) -> None:
        scope = _scope.get()
        targets = self.everywhere
        if scope is not None and scope.file is not None:
            targets = (*targets, scope.file)
        if not targets:
            return
        line = self.format(record)  # the whole logfmt line, exc= included
        for file in targets:
            try:
                self.lines.put_nowait((file, line))
            except queue.Full:
                file.dropped += 1

    def attach(self, file: _File, scope: LogScope | None) -> None:
        with self._lock:
            self.files += 1
            if self._thread is None:
                self._thread = threading.Thread(target=self._write, name="log-files", daemon=True)
                self._thread.start()
            if self not in logging.getLogger().handlers:
                logging.getLogger().addHandler(self)
            if scope is None:
                self.everywhere = (*self.everywhere, file)
            else:
                scope.file = file

    def detach(self, file: _File, scope: LogScope | None) -> None:
        """No new lines for `file`; return once the ones queued before are written."""
        with self._lock:
            if scope is None:
                self.everywhere = tuple(f for f in self.everywhere if f is not file)
            elif scope.file is file:
                scope.file = None
        written = threading.Event()
        self.lines.put((file, written))
        written.wait()
        with self._lock:
            self.files -= 1
            if self.files == 0 and self._thread is not None:
                logging.getLogger().removeHandler(self)
                self.lines.put(None)
                self._thread.join()
                self._thread = None

    def _write(self) -> None:
        while (item := self.lines.get()) is not None:
            file, line = item
            if isinstance(line, threading.Event):
                line.set()
            else:
                file.write(line)


_router = _Router()


@contextlib.contextmanager
def file_log(directory: Path, *, max_bytes: int, count: int) -> Iterator[Path]:
    """Also write log lines (logfmt, as on stderr) to rotated files in `directory` while the block runs.

    Opened outside a `separate_logs` scope (a station on its own), the file receives every record of the
    process; opened inside one, only the records logged in that scope. At most `count` files of `max_bytes`
    each are kept (the oldest is deleted on rotation), so the logs never take more than count × max_bytes of the
    data directory. The files are written by a thread of their own: the caller's thread only formats a record
    and queues the line. Yields the current file's path.
    """
    directory.mkdir(mode=0o700, parents=True, exist_ok=True)
    file = _File(directory / LOG_FILE, max_bytes, count)
    scope = _scope.get()
    _router.attach(file, scope)
    try:
        yield file.path
    finally:
        _router.detach(file, scope)  # writes what is queued for this file
        file.close()
        if file.dropped:
            logging.getLogger("appliance.logsetup").warning(
                "%d log line(s) not written to %s: the file writer fell behind or the disk failed",
                file.dropped,
                file.path,
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
