"""The journal as the rest of the station sees it: durable appends with group commit, and reads.

Every producer (EVSE sessions, samplers, security events) calls `await journal.append(...)`, which returns
only once the message is committed with synchronous=FULL. Appends go through a bounded channel to one writer
task; the writer takes whatever has queued up and commits it in one SQLite transaction, in a worker thread
(SQLite is blocking I/O). Under load many appends share one fsync (group commit); alone, an append costs one
commit. Nothing is acknowledged before its commit, so durability of acknowledged data is never weakened.

All SQL runs as jobs of the storage worker (`appliance.storage`), the one owner of the writer connection, so
the journal's transactions never interleave with the device model's and no commit ever blocks the event loop.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from typing import Any, TypeVar

import trio

from appliance.journal.store import Append, JournalStore
from appliance.storage import Storage, is_disk_full
from appliance.util.watched import Watched

log = logging.getLogger("appliance.journal")

T = TypeVar("T")

#: Appends waiting for the writer; producers block (back-pressure) when it is full.
APPEND_QUEUE = 256
#: At most this many messages per group commit, to bound one transaction's time.
MAX_BATCH = 512


class JournalFull(Exception):
    """The disk is full: nothing was written (the file is intact); the caller decides what to do."""


class _Pending:
    __slots__ = ("done", "error", "item", "result")

    def __init__(self, item: Append) -> None:
        self.item = item
        self.done = trio.Event()
        self.result: dict[str, Any] | None = None
        self.error: BaseException | None = None


class Journal:
    def __init__(self, storage: Storage) -> None:
        self.storage = storage
        self.store = JournalStore(storage.writer)
        self._send, self._receive = trio.open_memory_channel[_Pending](APPEND_QUEUE)
        #: Bumped after every commit that added messages; the delivery task waits on it.
        self.appended: Watched[int] = Watched(0)
        self.commits = 0
        self.appends = 0

    async def run(self, *, task_status: trio.TaskStatus[None] = trio.TASK_STATUS_IGNORED) -> None:
        """The writer task. Queued appends are committed even while the station shuts down."""
        task_status.started()
        async with self._receive:
            try:
                while True:
                    batch = [await self._receive.receive()]
                    batch += self._drain(MAX_BATCH - 1)
                    with trio.CancelScope(shield=True):  # a started commit always reports back
                        await self._commit(batch)
            finally:
                # Shutting down: what producers already handed over is committed before we go (shielded: a
                # SIGTERM must not turn an in-flight append into a lost one). Later sends see a closed channel.
                with trio.CancelScope(shield=True):
                    while leftover := self._drain(MAX_BATCH):
                        await self._commit(leftover)

    def _drain(self, limit: int) -> list[_Pending]:
        batch: list[_Pending] = []
        while len(batch) < limit:
            try:
                batch.append(self._receive.receive_nowait())
            except trio.WouldBlock:
                break
        return batch

    async def _commit(self, batch: list[_Pending]) -> None:
        try:
            stored = await self.run_sync(self.store.append_batch, [p.item for p in batch])
        except Exception as exc:
            error: BaseException = exc
            if is_disk_full(exc):
                log.critical("journal: disk full; %d message(s) NOT journaled", len(batch))
                error = JournalFull(str(exc))
            else:
                log.exception("journal: commit of %d message(s) failed", len(batch))
            for pending in batch:
                pending.error = error
                pending.done.set()
            return
        self.commits += 1
        self.appends += len(batch)
        for pending, payload in zip(batch, stored, strict=True):
            pending.result = payload
            pending.done.set()
        self.appended.set(self.appended.value + 1)

    async def append(self, item: Append) -> dict[str, Any]:
        """Journal one message durably; return the payload as stored (with its seqNo)."""
        pending = _Pending(item)
        await self._send.send(pending)
        with trio.CancelScope(shield=True):
            # The message is on its way to disk; its producer must learn the outcome even if cancelled.
            await pending.done.wait()
        if pending.error is not None:
            raise pending.error
        assert pending.result is not None
        return pending.result

    async def run_sync(self, fn: Callable[..., T], *args: Any) -> T:
        """Run journal SQL (a `store` method) on the storage worker; not abandoned on cancellation."""
        return await self.storage.run(fn, *args)

    # --- delivery bookkeeping -----------------------------------------------------------------------------

    async def record_failure(self, row_id: int, error: str) -> int:
        return await self.run_sync(self.store.record_failure, row_id, error)

    async def mark_dropped(self, row_id: int) -> None:
        await self.run_sync(self.store.mark_dropped, row_id)
