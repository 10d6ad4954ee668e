"""Delivering the journal to the CSMS: one message at a time, in journal order, marked only when answered.

Runs as an online service, so it starts right after each accepted boot — before anything new can overtake
what was queued — and stops with the connection. A CALLERROR or a missing answer is a failed attempt
(counted in the journal, so a restart does not reset it); the next try waits
MessageAttemptInterval[TransactionEvent] × attempts so far. After MessageAttempts[TransactionEvent] failed
attempts the message is dropped (Part 2 E13/E14; TC_E_41, E_42, E_50, E_51) and the queue moves on. A lost
connection is not a failed attempt: the message stays first in line for the next connection.

Throughput: OCPP-J allows one outstanding CALL, so a backlog drains at one round trip per message. To keep
our share of that round trip small, nothing per message crosses to the storage thread and back: pending rows
are read in pages (one hop per PAGE messages), and the "delivered" marks of answered messages are collected
and handed to the storage worker as one fire-and-forget job per MARK_BATCH answers (or MARK_DELAY, whichever
comes first, and always before the next page is read), which commits them in one transaction while the next
messages are already on the wire. No task waits for those commits except the end of the service, which waits
for all of them, so the next connection never resends what this one had answered.

A mark is still written only after its answer arrived. A power cut before its commit makes the answered
messages of that batch (at most MARK_BATCH, at most MARK_DELAY old) go again after the restart: at-least-once,
which is what OCPP's seqNo de-duplication expects and what the journal verifier allows (it checks the journal,
where a resend is the same row, never a second one; the CSMS de-duplicates by transactionId + seqNo). A mark
that meets the write lock held past `busy_timeout` (another program on the journal) is retried on the worker,
never given up lightly: giving up would end the service and send every answered-but-unmarked message again.
"""

from __future__ import annotations

import functools
import logging
import time
from collections.abc import Awaitable, Callable
from typing import Any

import trio

from appliance.devicemodel import settings as keys
from appliance.devicemodel.settings import Settings
from appliance.journal.journal import Journal
from appliance.journal.store import Queued
from appliance.link.link import Link
from appliance.link.rpc import CallErrorReply, CallTimeout
from appliance.storage import is_busy

log = logging.getLogger("appliance.delivery")

ResponseHook = Callable[[Queued, dict[str, Any]], Awaitable[None]]
PAGE = 200
#: Pause before retrying a mark that found the journal locked (busy_timeout already waited 5 s each time), and
#: how many tries in all: a lock held for about a minute is outlasted; one held for ever ends the service (the
#: unmarked messages then go again) rather than hanging a shutdown.
BUSY_RETRY = 0.5
BUSY_TRIES = 10
#: Delivered marks per commit during a backlog, and the longest an answered message waits for its mark's
#: commit to start: what a power cut in the middle of a replay can make go again (the torture harness allows a
#: mark to be missing for an answer up to 1 s before a kill).
MARK_BATCH = 100
MARK_DELAY = 0.05


class _Marks:
    """Delivered marks on their way to the journal: collected on the Trio thread, committed by the storage worker.

    The worker runs jobs in the order they were queued, so a page read queued after `flush` sees the marks.
    """

    def __init__(self, journal: Journal) -> None:
        self._journal = journal
        self._ids: list[int] = []
        #: Set while marks wait to be handed over.
        self._waiting = trio.Event()
        #: Set by the worker when a commit failed for good; raised on the Trio side at the next mark.
        self.failure: BaseException | None = None

    def add(self, row_id: int) -> None:
        """Mark `row_id` delivered (its answer has arrived). No checkpoint: nothing can come between."""
        self.raise_failure()
        if not self._ids:
            self._waiting.set()
        self._ids.append(row_id)
        if len(self._ids) >= MARK_BATCH:
            self.flush()

    async def keep_fresh(self) -> None:
        """Flush marks MARK_DELAY after the first of them arrived, however long the next answer takes."""
        while True:
            await self._waiting.wait()
            await trio.sleep(MARK_DELAY)
            self.flush()

    def flush(self) -> None:
        """Hand what was collected to the storage worker, without waiting for the commit."""
        if self._ids:
            batch, self._ids = self._ids, []
            self._waiting = trio.Event()
            self._journal.storage.submit(functools.partial(self._commit, batch))

    async def settle(self) -> None:
        """Flush, then wait until every mark handed over so far is committed (never abandoned)."""
        self.flush()
        with trio.CancelScope(shield=True):
            await self._journal.run_sync(lambda: None)  # jobs run in order: ours are done when this one is

    def raise_failure(self) -> None:
        if self.failure is not None:
            raise self.failure

    def _commit(self, batch: list[int]) -> None:
        """On the storage worker: commit `batch`, retrying while another program holds the write lock."""
        for tries in range(1, BUSY_TRIES + 1):
            try:
                self._journal.store.mark_delivered_many(batch)
                return
            except Exception as exc:
                if not is_busy(exc) or tries == BUSY_TRIES:
                    log.exception("journal: %d delivered mark(s) not committed; they will be sent again", len(batch))
                    self.failure = exc
                    return
                log.warning(
                    "journal locked by another program; %d delivered mark(s) retried in %.1f s", len(batch), BUSY_RETRY
                )
            time.sleep(BUSY_RETRY)  # the worker waits: every other writer would meet the same lock


class Delivery:
    def __init__(self, journal: Journal, settings: Settings) -> None:
        self._journal = journal
        self._settings = settings
        self._hooks: dict[str, ResponseHook] = {}

    def on_response(self, action: str, hook: ResponseHook) -> None:
        """Let a functional block act on the CSMS's answer (e.g. idTokenInfo of a TransactionEvent)."""
        self._hooks[action] = hook

    def _max_attempts(self) -> int:
        return max(1, self._settings.integer(keys.TX_MESSAGE_ATTEMPTS))

    def _interval(self) -> float:
        return self._settings.seconds(keys.TX_MESSAGE_ATTEMPT_INTERVAL)

    async def service(self, link: Link) -> None:
        marks = _Marks(self._journal)
        try:
            async with trio.open_nursery() as nursery:
                nursery.start_soon(marks.keep_fresh)
                await self._deliver_all(link, marks)  # returns only by cancellation or an error
        finally:
            await marks.settle()  # shielded: the next connection must not resend what this one had answered
        marks.raise_failure()

    async def _deliver_all(self, link: Link, marks: _Marks) -> None:
        after = 0  # journal id of the last message answered in this session (its mark may still be in flight)
        while True:
            seen = self._journal.appended.value
            marks.flush()  # queued before the read, so committed before it: pending_count agrees afterwards
            page = await self._journal.run_sync(self._journal.store.pending_page, after, PAGE)
            if not page:
                await self._journal.appended.wait_change_from(seen)
                continue
            for item in page:
                if not await self._deliver(link, item, marks):
                    break  # retry this message: read the page again from it
                after = item.id

    async def _deliver(self, link: Link, item: Queued, marks: _Marks) -> bool:
        """Send one message; True once it is settled (answered or dropped), False to try it again."""
        try:
            # The frame is built around the text as journaled (the payload was decoded from it, and is still
            # validated): no second serialisation per event.
            answer = await link.call(
                item.action, item.payload, message_id=item.message_id, payload_text=item.payload_text or None
            )
        except (CallTimeout, CallErrorReply) as exc:
            attempts = await self._journal.record_failure(item.id, str(exc))
            if attempts >= self._max_attempts():
                log.error(
                    "dropping %s %s (tx %s seqNo %s) after %d failed attempts: %s",
                    item.action,
                    item.message_id,
                    item.transaction_id,
                    item.seq_no,
                    attempts,
                    exc,
                )
                await self._journal.mark_dropped(item.id)
                return True
            wait = self._interval() * attempts
            log.warning(
                "%s %s failed (%s); attempt %d of %d in %.0f s",
                item.action,
                item.message_id,
                exc,
                attempts + 1,
                self._max_attempts(),
                wait,
            )
            await trio.sleep(wait)
            return False
        # No checkpoint between the answer and handing over its mark: a cancellation here must not lose it.
        marks.add(item.id)
        hook = self._hooks.get(item.action)
        if hook is not None:
            await hook(item, answer)
        return True
