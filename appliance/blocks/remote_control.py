"""Functional blocks B and F (remote control): Reset, TriggerMessage, UnlockConnector, DataTransfer.

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
from collections.abc import Awaitable, Callable
from typing import Any

import trio

from appliance.blocks.availability import StatusReporter
from appliance.blocks.provisioning import Provisioning
from appliance.clock import StationClock
from appliance.evse.meter import meter_value
from appliance.evse.runner import EvseRunner
from appliance.hardware.base import Hardware
from appliance.journal.journal import Journal
from appliance.journal.store import Append
from appliance.link.link import Link
from appliance.link.rpc import CallFailed, Dispatcher, Reply

log = logging.getLogger("appliance.remote")

#: Vendor extensions for DataTransfer: vendorId → messageId → handler(data) → (status, data or None).
VendorHandler = Callable[[Any], Awaitable[tuple[str, Any]]]


async def _ping(data: Any) -> tuple[str, Any]:
    """org.appliance / Ping: a harmless round trip a CSMS can use to check vendor messaging."""
    return "Accepted", {"pong": data}


class RemoteControl:
    def __init__(
        self,
        *,
        runners: dict[int, EvseRunner],
        journal: Journal,
        link: Link,
        hardware: Hardware,
        clock: StationClock,
        provisioning: Provisioning,
        status: StatusReporter,
        setting: Callable[[str], Any],
        restart: Callable[[str], Awaitable[None]],
    ) -> None:
        self._runners = runners
        self._journal = journal
        self._link = link
        self._hw = hardware
        self._clock = clock
        self._provisioning = provisioning
        self._status = status
        self._setting = setting
        self._restart = restart
        self.vendors: dict[str, dict[str, VendorHandler]] = {"org.appliance": {"Ping": _ping}}
        self._pending_reset: str | None = None  # station reset waiting for idle (OnIdle, Scheduled)
        self._pending_evse_resets: set[int] = set()

    def register(self, dispatcher: Dispatcher) -> None:
        dispatcher.register("Reset", self._reset)
        dispatcher.register("TriggerMessage", self._trigger)
        dispatcher.register("UnlockConnector", self._unlock)
        dispatcher.register("DataTransfer", self._data_transfer)

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
        await self._drain_journal(float(self._setting("OCPPCommCtrlr.MessageTimeout[Default]")))
        await self._restart(reason)

    async def _drain_journal(self, limit: float) -> None:
        """Give the delivery task a moment to hand the last events to the CSMS before we go (bounded)."""
        with trio.move_on_after(limit):
            while self._link.online and await self._journal.run_sync(self._journal.store.pending_count):  # noqa: ASYNC110
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
        async with trio.open_nursery() as nursery:
            for runner in self._runners.values():
                async def wait(r: EvseRunner = runner) -> None:
                    await r.changed.wait_change()
                    nursery.cancel_scope.cancel()

                nursery.start_soon(wait)

    # --- TriggerMessage ----------------------------------------------------------------------------------

    async def _trigger(self, payload: dict) -> dict | Reply:
        what = payload["requestedMessage"]
        evse = payload.get("evse")
        evse_id = evse["id"] if evse else None
        if evse_id is not None and evse_id != 0 and evse_id not in self._runners:
            return {"status": "Rejected", "statusInfo": {"reasonCode": "UnknownEvse"}}
        connector_id = evse.get("connectorId") if evse else None
        if connector_id is not None and not self._status.has_connector(evse_id or 0, connector_id):
            # A connector the station does not have (EVSE 0, the station itself, has none): nothing to report.
            return {"status": "Rejected", "statusInfo": {"reasonCode": "UnknownConnectorId"}}
        targets = [self._runners[evse_id]] if evse_id else list(self._runners.values())
        accepted = {"status": "Accepted"}
        if what == "BootNotification":
            return accepted if self._provisioning.trigger_boot() else {"status": "Rejected"}
        if what == "Heartbeat":
            return Reply(accepted, then=self._send_heartbeat)
        if what == "StatusNotification":
            return Reply(accepted, then=lambda: self._trigger_status(evse_id, connector_id))
        if what == "MeterValues":
            if not self._setting("AlignedDataCtrlr.Measurands"):
                # The triggered MeterValues carries AlignedDataCtrlr.Measurands (F06.FR.06); with none configured
                # there is nothing to send, and an Accepted followed by silence would mislead the CSMS.
                return {"status": "Rejected", "statusInfo": {"reasonCode": "MissingDevModelInfo",
                                                             "additionalInfo": "AlignedDataCtrlr.Measurands is empty"}}
            return Reply(accepted, then=lambda: self._trigger_meter_values(targets))
        if what == "TransactionEvent":
            if not any(r.state.tx is not None for r in targets):
                return {"status": "Rejected", "statusInfo": {"reasonCode": "NoTransaction"}}
            return Reply(accepted, then=lambda: self._trigger_transaction_events(targets))
        if what in ("FirmwareStatusNotification", "LogStatusNotification"):
            # No firmware update or log upload is in progress in this build: the status is Idle.
            return Reply(accepted, then=lambda: self._send_idle(what))
        return {"status": "NotImplemented"}

    async def _send_heartbeat(self) -> None:
        answer = await self._link.call("Heartbeat", {})
        self._clock.adjust(answer["currentTime"])

    async def _trigger_status(self, evse_id: int | None, connector_id: int | None) -> None:
        self._status.trigger(evse_id or None, connector_id)

    async def _trigger_meter_values(self, runners: list[EvseRunner]) -> None:
        for runner in runners:
            reading = self._hw.read_meter(runner.evse_id)
            mv = meter_value(self._clock.iso(), reading, self._setting("AlignedDataCtrlr.Measurands"), "Trigger")
            if mv is not None:
                await self._journal.append(Append("MeterValues", {"evseId": runner.evse_id, "meterValue": [mv]}))

    async def _trigger_transaction_events(self, runners: list[EvseRunner]) -> None:
        for runner in runners:
            await runner.apply(lambda s: s.trigger())

    async def _send_idle(self, action: str) -> None:
        try:
            await self._link.call(action, {"status": "Idle"})
        except CallFailed as exc:
            log.warning("%s not delivered: %s", action, exc)

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
