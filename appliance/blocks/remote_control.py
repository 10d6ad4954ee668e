"""Functional blocks B and F (remote control): Reset, UnlockConnector, DataTransfer.

Reset (B11/B12): a station reset is a real restart of the process. Running transactions end first
(Immediate: triggerReason ResetCommand, stoppedReason ImmediateReset) or are waited for (OnIdle: answer
Scheduled, restart when the last one ends). Before the restart the next BootNotification reason is made
durable, the journal is flushed and the WebSocket closed; the process then re-executes itself and, after
its BootNotification, reports a ResetOrReboot security event. A reset of one EVSE (AllowReset) ends or
waits for that EVSE's transaction and clears its session, without touching the other EVSE or the
connection.
"""

from __future__ import annotations

import logging
from collections.abc import Awaitable, Callable, Mapping
from typing import Any

import trio

from appliance.blocks.base import Block
from appliance.clock import StationClock
from appliance.devicemodel import settings as keys
from appliance.devicemodel.settings import Settings
from appliance.evse.runner import EvseRunner
from appliance.hardware.base import Hardware
from appliance.journal.journal import Journal
from appliance.link.link import Link
from appliance.link.rpc import Handler, Reply
from appliance.util.supervise import supervise
from appliance.util.watched import any_change

log = logging.getLogger("appliance.remote")

#: Vendor extensions for DataTransfer: vendorId → messageId → handler(data) → (status, data or None).
VendorHandler = Callable[[Any], Awaitable[tuple[str, Any]]]


async def _ping(data: Any) -> tuple[str, Any]:
    """org.appliance / Ping: a harmless round trip a CSMS can use to check vendor messaging."""
    return "Accepted", {"pong": data}


class RemoteControl(Block):
    def __init__(
        self,
        *,
        runners: dict[int, EvseRunner],
        journal: Journal,
        link: Link,
        hardware: Hardware,
        clock: StationClock,
        settings: Settings,
        restart: Callable[[str], Awaitable[None]],
    ) -> None:
        self._runners = runners
        self._journal = journal
        self._link = link
        self._hw = hardware
        self._clock = clock
        self._settings = settings
        self._restart = restart
        self.vendors: dict[str, dict[str, VendorHandler]] = {"org.appliance": {"Ping": _ping}}
        self._pending_reset: str | None = None  # station reset waiting for idle (OnIdle, Scheduled)
        self._pending_evse_resets: set[int] = set()

    def handlers(self) -> Mapping[str, Handler]:
        return {
            "Reset": self._reset,
            "UnlockConnector": self._unlock,
            "DataTransfer": self._data_transfer,
        }

    async def run(self, *, task_status: trio.TaskStatus[None] = trio.TASK_STATUS_IGNORED) -> None:
        """Scheduled (OnIdle) resets: restart once the last transaction they wait for has ended."""
        task_status.started()
        await supervise("scheduled resets", self.watch_idle)

    # --- Reset ---------------------------------------------------------------------------------------

    async def _reset(self, payload: dict) -> dict | Reply:
        evse_id = payload.get("evseId")
        immediate = payload["type"] == "Immediate"
        if evse_id is not None and evse_id != 0:
            runner = self._runners.get(evse_id)
            if runner is None:
                return {"status": "Rejected", "statusInfo": {"reasonCode": "UnknownEvse"}}
            if runner.state.tx is not None and not immediate:
                self._pending_evse_resets.add(evse_id)
                return {"status": "Scheduled"}
            return Reply({"status": "Accepted"}, then=lambda: self._reset_evse(runner))
        busy = [r for r in self._runners.values() if r.state.tx is not None]
        if busy and not immediate:
            self._pending_reset = "ScheduledReset"
            log.info("Reset OnIdle scheduled: waiting for %d transaction(s) to end", len(busy))
            return {"status": "Scheduled"}
        return Reply({"status": "Accepted"}, then=lambda: self._reset_station("RemoteReset"))

    async def _reset_evse(self, runner: EvseRunner) -> None:
        log.info("EVSE %d reset", runner.evse_id)
        await runner.apply(lambda s: s.end_now("ResetCommand", "ImmediateReset"))
        await runner.apply(lambda s: s.reset_session())

    async def _reset_station(self, reason: str) -> None:
        for runner in self._runners.values():
            await runner.apply(lambda s: s.end_now("ResetCommand", "ImmediateReset"))
        await self._drain_journal(self._settings.seconds(keys.MESSAGE_TIMEOUT))
        await self._restart(reason)

    async def _drain_journal(self, limit: float) -> None:
        """Give the delivery task a moment to hand the last events to the CSMS before we go (bounded)."""
        with trio.move_on_after(limit):
            while self._link.online and await self._journal.run_sync(self._journal.store.pending_count) > 0:  # noqa: ASYNC110
                await trio.sleep(0.05)  # a short, bounded poll of the journal's own count

    async def watch_idle(self) -> None:
        """Carry out scheduled resets when their transactions have ended (runs in the station's nursery)."""
        while True:
            for evse_id in list(self._pending_evse_resets):
                runner = self._runners[evse_id]
                if runner.state.tx is None:
                    self._pending_evse_resets.discard(evse_id)
                    await self._reset_evse(runner)
            if self._pending_reset and all(r.state.tx is None for r in self._runners.values()):
                reason, self._pending_reset = self._pending_reset, None
                await self._reset_station(reason)
            await self._any_change()

    async def _any_change(self) -> None:
        await any_change(*(r.changed for r in self._runners.values()))

    # --- TriggerMessage ----------------------------------------------------------------------------------

    # --- UnlockConnector, DataTransfer ---------------------------------------------------------------------

    async def _unlock(self, payload: dict) -> dict:
        runner = self._runners.get(payload["evseId"])
        if runner is None or payload["connectorId"] != 1:
            return {"status": "UnknownConnector"}
        if runner.state.tx is not None and runner.state.authorization is not None:
            return {"status": "OngoingAuthorizedTransaction"}
        # A fixed cable has no lock to open: say so rather than pretend (F05 applies to sockets only).
        return {"status": "UnlockFailed", "statusInfo": {"reasonCode": "FixedCable"}}

    async def _data_transfer(self, payload: dict) -> dict:
        handlers = self.vendors.get(payload["vendorId"])
        if handlers is None:
            return {"status": "UnknownVendorId"}
        handler = handlers.get(payload.get("messageId", ""))
        if handler is None:
            return {"status": "UnknownMessageId"}
        status, data = await handler(payload.get("data"))
        answer: dict[str, Any] = {"status": status}
        if data is not None:
            answer["data"] = data
        return answer
