"""The journal as the rest of the station sees it: durable appends with group commit, and reads.

Every producer (EVSE sessions, samplers, security events) calls `await journal.append(...)`, which returns
only once the message is committed with synchronous=FULL. Nothing is acknowledged before its commit, so
durability of acknowledged data is never weakened.

Group commit without a writer task: an append puts itself on a queue and, if no commit job is already on its
way, hands the storage worker (`appliance.storage`, the one owner of the writer connection) a job that commits
*everything queued when it runs* in one SQLite transaction, then wakes all of that batch's producers with one
call into Trio. Alone, an append costs one commit and the two thread hops that cannot be avoided (to the
worker, back to Trio); under load, the appends that arrive while one commit is on the disk share the next.
An earlier design sent each append through a memory channel to a writer task that called the worker and set
an event per append: three more task switches per round, about a fifth of a single producer's time.

All SQL runs as jobs of the storage worker, so the journal's transactions never interleave with the device
model's and no commit ever blocks the event loop.
"""

from __future__ import annotations

import collections
import contextlib
import logging
from collections.abc import Callable
from typing import Any, TypeVar

import outcome
import trio

from appliance.journal.store import Append, JournalStore
from appliance.storage import Storage, is_disk_full
from appliance.util.watched import Watched

log = logging.getLogger("appliance.journal")

T = TypeVar("T")

#: Appends waiting for their commit; more producers wait (back-pressure) before queueing.
APPEND_QUEUE = 256
#: At most this many messages per group commit, to bound one transaction's time.
MAX_BATCH = 512


class JournalFull(Exception):
    """The disk is full: nothing was written (the file is intact); the caller decides what to do."""


class _Pending:
    """One append on its way: filled in by the storage worker, handed back to its task on the Trio thread."""

    __slots__ = ("item", "outcome", "task")

    def __init__(self, item: Append, task: trio.lowlevel.Task) -> None:
        self.item = item
        self.task = task
        self.outcome: outcome.Outcome[dict[str, Any]] | None = None


def _never_abandon(_: object) -> trio.lowlevel.Abort:
    # The message is on its way to disk; its producer must learn the outcome even if cancelled.
    return trio.lowlevel.Abort.FAILED


class Journal:
    def __init__(self, storage: Storage) -> None:
        self.storage = storage
        self.store = JournalStore(storage.writer)
        #: Appends waiting for the next commit job; appended on the Trio thread, taken on the worker thread
        #: (deque's append and popleft are atomic).
        self._queued: collections.deque[_Pending] = collections.deque()
        #: A commit job is queued on the worker and has not started yet: it will take what is queued now.
        self._job_queued = False
        self._room = trio.Semaphore(APPEND_QUEUE)
        self._token: trio.lowlevel.TrioToken | None = None
        #: Bumped after every commit that added messages; the delivery task waits on it.
        self.appended: Watched[int] = Watched(0)
        self.commits = 0
        self.appends = 0

    async def append(self, item: Append) -> dict[str, Any]:
        """Journal one message durably; return the payload as stored (with its seqNo)."""
        await trio.lowlevel.checkpoint_if_cancelled()  # a cancelled producer appends nothing
        try:
            self._room.acquire_nowait()
        except trio.WouldBlock:
            await self._room.acquire()  # back-pressure: APPEND_QUEUE appends are already waiting
        try:
            pending = _Pending(item, trio.lowlevel.current_task())
            self._token = trio.lowlevel.current_trio_token()
            self._queued.append(pending)
            if not self._job_queued:
                self._job_queued = True
                try:
                    self.storage.submit(self._commit_queued)
                except BaseException:
                    self._job_queued = False
                    self._queued.remove(pending)
                    raise
            stored: dict[str, Any] = await trio.lowlevel.wait_task_rescheduled(_never_abandon)  # raises its error
        finally:
            self._room.release()
        return stored

    # --- on the storage worker's thread ---------------------------------------------------------------------

    def _commit_queued(self) -> None:
        """Commit everything queued, MAX_BATCH per transaction, and hand each batch back to Trio at once."""
        self._job_queued = False  # before taking: an append queued after this line submits the next job
        queued = self._queued
        while queued:
            batch: list[_Pending] = []
            while queued and len(batch) < MAX_BATCH:
                batch.append(queued.popleft())
            try:
                stored = self.store.append_batch([p.item for p in batch])
            except BaseException as exc:  # whatever it is, the producers hear it (and the worker lives on)
                error: BaseException = exc
                if is_disk_full(exc):
                    log.critical("journal: disk full; %d message(s) NOT journaled", len(batch))
                    error = JournalFull(str(exc))
                else:
                    log.exception("journal: commit of %d message(s) failed", len(batch))
                for pending in batch:
                    pending.outcome = outcome.Error(error)
            else:
                for pending, payload in zip(batch, stored, strict=True):
                    pending.outcome = outcome.Value(payload)
            assert self._token is not None
            with contextlib.suppress(trio.RunFinishedError):  # the producers' run is gone; nobody waits any more
                self._token.run_sync_soon(self._settled, batch)

    # --- back on the Trio thread ----------------------------------------------------------------------------

    def _settled(self, batch: list[_Pending]) -> None:
        committed = False
        for pending in batch:
            assert pending.outcome is not None
            committed = committed or isinstance(pending.outcome, outcome.Value)
            trio.lowlevel.reschedule(pending.task, pending.outcome)
        if committed:
            self.commits += 1
            self.appends += len(batch)
            self.appended.set(self.appended.value + 1)

    async def run_sync(self, fn: Callable[..., T], *args: Any) -> T:
        """Run journal SQL (a `store` method) on the storage worker; not abandoned on cancellation."""
        return await self.storage.run(fn, *args)

    # --- delivery bookkeeping -----------------------------------------------------------------------------

    async def record_failure(self, row_id: int, error: str) -> int:
        return await self.run_sync(self.store.record_failure, row_id, error)

    async def mark_dropped(self, row_id: int) -> None:
        await self.run_sync(self.store.mark_dropped, row_id)
