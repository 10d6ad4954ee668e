"""Bounded background work that CSMS requests start: one job at a time, a few waiting, the rest refused.

A GetBaseReport is answered at once and its NotifyReports follow; log uploads and firmware updates work the same
way (a status answer, then long-running work). Unbounded, a CSMS that sends a thousand such requests makes the
station hold a thousand jobs and their state until each is done. Each kind of work therefore has one `JobQueue`:
a request is admitted only while fewer than 1 + `waiting` jobs are admitted; beyond that the handler answers
what the spec allows for a busy station (reports: Rejected). Admitted jobs run one at a time in the order of
admission (the oldest admitted ticket has the turn), and a waiting job holds only its request, not its output:
the job produces that when its turn comes.

A ticket frees its place exactly once: when its job ends (done, failed, or cancelled with the connection it
serves), or when the answer that announced it could not be sent (`Reply.abandon`), so a lost connection never
leaks a place. A handler therefore admits last: nothing awaited between `admit` and returning the Reply.
"""

from __future__ import annotations

import logging
from collections.abc import Awaitable, Callable, Hashable

import trio

log = logging.getLogger("appliance.jobs")

Job = Callable[[], Awaitable[None]]


class Ticket:
    """One admitted job: `run` is the request's follow-up, `release` gives up the place without running."""

    def __init__(self, queue: JobQueue, key: Hashable, job: Job) -> None:
        self._queue = queue
        self.key = key
        self._job = job
        self._released = False
        self.turn = trio.Event()

    async def run(self) -> None:
        """Wait for the job's turn, run it, free the place (also when cancelled or failing)."""
        if self._released:
            return
        try:
            await self.turn.wait()
            await self._job()
        finally:
            self.release()

    def release(self) -> None:
        if not self._released:
            self._released = True
            self._queue.forget(self.key)


class JobQueue:
    def __init__(self, name: str, *, waiting: int) -> None:
        self.name = name
        self.capacity = 1 + waiting
        self._admitted: dict[Hashable, Ticket] = {}  # in admission order: the first one has the turn

    def holds(self, key: Hashable) -> bool:
        """Is a job with this key (e.g. a requestId) running or waiting?"""
        return key in self._admitted

    @property
    def admitted(self) -> int:
        return len(self._admitted)

    def admit(self, key: Hashable, job: Job) -> Ticket | None:
        """A ticket for `job`, or None when the queue is full (or `key` is already admitted)."""
        if key in self._admitted or len(self._admitted) >= self.capacity:
            log.info("%s: refused %r (%d admitted, capacity %d)", self.name, key, len(self._admitted), self.capacity)
            return None
        ticket = Ticket(self, key, job)
        self._admitted[key] = ticket
        self._pass_turn()
        return ticket

    def forget(self, key: Hashable) -> None:
        self._admitted.pop(key, None)
        self._pass_turn()

    def _pass_turn(self) -> None:
        first = next(iter(self._admitted.values()), None)
        if first is not None:
            first.turn.set()
