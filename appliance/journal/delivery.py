"""Delivering the journal to the CSMS: one message at a time, in journal order, marked only when answered.

Runs as an online service, so it starts right after each accepted boot — before anything new can overtake
what was queued — and stops with the connection. A CALLERROR or a missing answer is a failed attempt
(counted in the journal, so a restart does not reset it); the next try waits
MessageAttemptInterval[TransactionEvent] × attempts so far. After MessageAttempts[TransactionEvent] failed
attempts the message is dropped (Part 2 E13/E14; TC_E_41, E_42, E_50, E_51) and the queue moves on. A lost
connection is not a failed attempt: the message stays first in line for the next connection.

Throughput: OCPP-J allows one outstanding CALL, so a backlog drains at one round trip per message. To keep
our share of that round trip small, pending rows are read in pages, and the "delivered" marks of answered
messages are committed by a companion task — several per fsync — while the next message is already on the
wire. A mark is still written only after its answer arrived; a power cut before its commit makes that one
message go again (at-least-once, which is what OCPP's seqNo de-duplication expects). A mark that meets the
write lock held past `busy_timeout` (another program on the journal) is retried, never given up: giving up
would end the service and send every answered-but-unmarked message again.
"""

from __future__ import annotations

import logging
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
        send_marks, receive_marks = trio.open_memory_channel[int](PAGE)
        async with trio.open_nursery() as nursery:
            nursery.start_soon(self._mark_delivered, receive_marks)
            async with send_marks:
                await self._deliver_all(link, send_marks)

    async def _deliver_all(self, link: Link, marks: trio.MemorySendChannel[int]) -> None:
        after = 0  # journal id of the last message answered in this session (its mark may still be in flight)
        while True:
            seen = self._journal.appended.value
            page = await self._journal.run_sync(self._journal.store.pending_page, after, PAGE)
            if not page:
                await self._journal.appended.wait_change_from(seen)
                continue
            for item in page:
                if not await self._deliver(link, item, marks):
                    break  # retry this message: read the page again from it
                after = item.id

    async def _deliver(self, link: Link, item: Queued, marks: trio.MemorySendChannel[int]) -> bool:
        """Send one message; True once it is settled (answered or dropped), False to try it again."""
        try:
            answer = await link.call(item.action, item.payload, message_id=item.message_id)
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
        try:
            marks.send_nowait(item.id)
        except trio.WouldBlock:
            with trio.CancelScope(shield=True):
                await self._journal.run_sync(self._journal.store.mark_delivered_many, [item.id])
        hook = self._hooks.get(item.action)
        if hook is not None:
            await hook(item, answer)
        return True

    async def _mark_delivered(self, marks: trio.MemoryReceiveChannel[int]) -> None:
        """Commit delivered marks, as many per transaction as have arrived; flush all before going away."""

        def drain() -> list[int]:
            batch: list[int] = []
            while True:
                try:
                    batch.append(marks.receive_nowait())
                except (trio.WouldBlock, trio.EndOfChannel):
                    return batch

        async def commit(batch: list[int]) -> None:
            with trio.CancelScope(shield=True):  # an answered message's mark is never abandoned
                for tries in range(1, BUSY_TRIES + 1):
                    try:
                        await self._journal.run_sync(self._journal.store.mark_delivered_many, batch)
                        return
                    except Exception as exc:
                        if not is_busy(exc) or tries == BUSY_TRIES:
                            raise
                        log.warning(
                            "journal locked by another program; %d delivered mark(s) retried in %.1f s",
                            len(batch),
                            BUSY_RETRY,
                        )
                    await trio.sleep(BUSY_RETRY)

        async with marks:
            try:
                while True:
                    try:
                        first = await marks.receive()
                    except trio.EndOfChannel:
                        return
                    await commit([first, *drain()])
            finally:
                if leftover := drain():
                    await commit(leftover)
