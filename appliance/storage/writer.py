"""The one storage discipline: every durable write is a job on one worker thread that owns the writer connection.

Why a dedicated thread and not `trio.to_thread` on the event loop's side: a SQLite COMMIT with
synchronous=FULL is an fsync (milliseconds, seconds on a sick SD card), and a write that meets another writer's
lock waits up to `busy_timeout` (5 s). Either would freeze every EVSE, the ping loop and the CSMS link if it ran
on the Trio thread. Here the Trio side only queues a job and sleeps on an event the worker sets through the Trio
token when it is done, so the event loop is never blocked by the disk. One thread with one connection also
serialises every writer (journal group commits, device model, authorization data, station state) without a
lock: jobs run one after another in the order they were queued, and no two transactions can interleave.

Reads that must be fast are served from memory by their owners (the device model, the authorization cache and
list, the certificate store), each copy published by the storage job that changed the table; everything else is
read by a job too. There is no second connection on the Trio thread: each one parses the whole schema (~115 KiB
of SQLite heap), which a thousand stations in one fleet would pay a thousand times, and the copies answer
faster than a query would.

Cancellation: a queued job is never abandoned. The caller's wait is shielded, because the job may already be
committing; returning before it finished would report a write as failed that is in fact on disk.
"""

from __future__ import annotations

import contextlib
import functools
import logging
import queue
import sqlite3
import threading
from collections.abc import Callable
from pathlib import Path
from typing import Any, TypeVar

import trio

from appliance.storage.db import DB_NAME, open_station_db, transaction

log = logging.getLogger("appliance.storage")

T = TypeVar("T")
_STOP = None


class StorageClosed(Exception):
    """A write after `close()`: a bug in the caller's shutdown order, never a silent hang."""


class StorageWorker:
    """One thread that runs storage jobs one after another, in the order they were queued.

    A station owns one (`Storage` makes it). Many virtual stations in one process (`appliance fleet`) share a
    few, so a thousand journals do not cost a thousand threads: jobs of one `Storage` still run in order, on
    one thread, so its transactions never interleave.
    """

    def __init__(self, name: str = "storage-writer") -> None:
        self._jobs: queue.SimpleQueue[Callable[[], None] | None] = queue.SimpleQueue()
        self._thread = threading.Thread(target=self._work, name=name, daemon=True)

    def start(self) -> None:
        self._thread.start()

    @property
    def alive(self) -> bool:
        return self._thread.is_alive()

    def submit(self, job: Callable[[], None]) -> None:
        """Queue `job`; it must not raise (a `Storage.run` job hands its outcome back itself)."""
        self._jobs.put(job)

    def stop(self) -> None:
        """Run what is queued, then end the thread. Safe to call twice."""
        if self._thread.is_alive():
            self._jobs.put(_STOP)
            self._thread.join()

    def _work(self) -> None:
        while (job := self._jobs.get()) is not _STOP:
            job()


class Storage:
    """The station database's one connection and the worker thread its jobs run on.

    Use `await Storage.open(...)`, or wrap an already opened connection with `Storage(conn, path)` and `start()`.
    Pass `worker` to share one worker thread between several stations' storages, and to `open` `cache_kib` and
    `cached_statements` to bound the connection's page cache and prepared statements (see `open_station_db`).
    """

    def __init__(
        self,
        conn: sqlite3.Connection,
        path: Path,
        worker: StorageWorker | None = None,
    ) -> None:
        self.path = path
        self._conn = conn
        self._owns_worker = worker is None
        self._worker = StorageWorker() if worker is None else worker
        self._closed = False

    @classmethod
    async def open(
        cls,
        data_dir: Path,
        worker: StorageWorker | None = None,
        *,
        cache_kib: int | None = None,
        cached_statements: int | None = None,
    ) -> Storage:
        """Open (creating and migrating if needed) the station database, off the event loop."""
        bounds = {"cache_kib": cache_kib, "cached_statements": cached_statements}
        conn = await trio.to_thread.run_sync(functools.partial(open_station_db, data_dir, **bounds))
        storage = cls(conn, data_dir / DB_NAME, worker)
        storage.start()
        return storage

    def start(self) -> None:
        if self._owns_worker:
            self._worker.start()

    def close(self) -> None:
        """Finish the queued jobs, then close the connection. Safe to call twice."""
        if self._closed:
            return
        self._closed = True
        if self._owns_worker:
            self._worker.stop()
        elif self._worker.alive:
            # A shared worker goes on for the others: wait until it reached our last job.
            reached = threading.Event()
            self._worker.submit(reached.set)
            reached.wait()
        self._conn.close()

    async def run(self, fn: Callable[..., T], *args: Any) -> T:
        """Run `fn(*args)` on the worker thread (it may use `writer`); its result or exception."""
        token = trio.lowlevel.current_trio_token()
        done = trio.Event()
        results: list[T] = []
        errors: list[BaseException] = []  # handed to the caller, re-raised there

        def finished() -> None:
            done.set()

        def job() -> None:
            try:
                results.append(fn(*args))
            except BaseException as exc:
                errors.append(exc)
            with contextlib.suppress(trio.RunFinishedError):  # the caller's run is gone; nobody waits any more
                token.run_sync_soon(finished)

        if self._closed or not self._worker.alive:
            raise StorageClosed(f"{self.path}: the storage worker has stopped")
        self._worker.submit(job)
        with trio.CancelScope(shield=True):
            await done.wait()
        if errors:
            raise errors[0]
        return results[0]

    def submit(self, job: Callable[[], None]) -> None:
        """Queue `job` on the worker without waiting for it; it must not raise and hands back its own outcome.

        For callers that batch their own work and wake their waiters themselves (the journal's group commit).
        """
        if self._closed or not self._worker.alive:
            raise StorageClosed(f"{self.path}: the storage worker has stopped")
        self._worker.submit(job)

    async def write(self, fn: Callable[..., T], *args: Any) -> T:
        """Run `fn(*args)` inside one write transaction on the worker thread: all of it is durable, or none."""

        def in_transaction() -> T:
            with transaction(self._conn):
                return fn(*args)

        return await self.run(in_transaction)

    def checkpoint(self) -> None:
        """Fold the WAL back into the database file (a job: run it with `run`)."""
        self._conn.execute("PRAGMA wal_checkpoint(TRUNCATE)").fetchall()  # read to the end: no statement left open

    @property
    def writer(self) -> sqlite3.Connection:
        """The writer connection. Only for functions that run as jobs (`run`/`write`), never on the Trio thread."""
        return self._conn
