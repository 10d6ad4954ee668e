"""One EVSE's supervised task: feeds its state machine, journals what it decides, drives the hardware.

Every change goes through `apply()` under the EVSE's lock: the state machine decides, the energy offer and
connector status follow, and each resulting TransactionEvent is built (timestamp, meter values, offline
flag) and committed to the journal before `apply()` returns — write ahead, then the delivery task sends.
The samplers (periodic, clock-aligned) and the EV-connection timeout are child tasks of this runner.
"""

from __future__ import annotations

import logging
import math
from collections.abc import Callable
from typing import Any

import trio

from appliance.clock import StationClock
from appliance.devicemodel import settings as keys
from appliance.devicemodel.settings import Seconds, Settings
from appliance.evse.connectors import Connectors
from appliance.evse.meter import meter_value
from appliance.evse.state import EvseState, TxEvent
from appliance.hardware.base import EvseHardware, EvseLayout
from appliance.journal.journal import Journal
from appliance.journal.store import Append, NewTransaction
from appliance.timetext import format_timestamp
from appliance.util.watched import Watched, any_change

log = logging.getLogger("appliance.evse")

#: Re-check the wall clock at least this often while waiting for an aligned boundary (clock jumps).
ALIGNED_RECHECK = 60.0


class EvseRunner:
    def __init__(
        self,
        layout: EvseLayout,
        *,
        hardware: EvseHardware,
        journal: Journal,
        settings: Settings,
        settings_changed: Watched[int],
        clock: StationClock,
        online: Callable[[], bool],
        connectors: Connectors,
        desired_operative: Callable[[], bool] = lambda: True,
        station_in_transaction: Callable[[], bool] | None = None,
    ) -> None:
        self.layout = layout
        self.evse_id = layout.evse_id
        self._hw = hardware
        self._journal = journal
        self._settings = settings
        self._settings_changed = settings_changed
        self._clock = clock
        self._online = online
        self._connectors = connectors
        self._desired_operative = desired_operative
        #: Is a transaction ongoing on any EVSE of the station (AlignedDataCtrlr.SendDuringIdle)?
        self._station_in_transaction = station_in_transaction or (lambda: self.state.tx is not None)
        # Born with the persisted availability: the EV an Inoperative EVSE finds at boot must not start a transaction.
        self.state = EvseState(self.evse_id, operative=desired_operative())
        self._lock = trio.Lock()
        self.changed: Watched[int] = Watched(0)
        self._authorized_at: float | None = None
        #: The most smart charging lets this EVSE offer now (amps per phase); None = no limit but the layout's.
        self.current_limit_a: float | None = None
        self._refresh_points()

    # --- the one way in --------------------------------------------------------------------------------

    async def apply(self, decide: Callable[[EvseState], list[TxEvent]], stamp: str | None = None) -> list[dict]:
        """Run one decision of the state machine and carry it out; return the journaled payloads.

        `stamp` dates the events (a clock-aligned sample carries its boundary time); default: now.
        """
        async with self._lock:
            self._refresh_points()
            had_auth = self.state.authorization is not None
            events = decide(self.state)
            wanted = self._desired_operative()
            if self.state.tx is None and self.state.operative != wanted:
                events += self.state.set_operative(wanted)  # a Scheduled ChangeAvailability takes effect now
            if self.state.authorization is not None and not had_auth:
                self._authorized_at = trio.current_time()
            # One instant for the whole decision: a status change and the TransactionEvent that caused or
            # followed it carry the same time (TC_G_11: Unavailable is not dated before the Ended).
            now = self._clock.iso()
            self._sync_outputs(now)
            stored = [await self._journal_event(event, stamp or now) for event in events]
        self.changed.set(self.changed.value + 1)
        return stored

    def _refresh_points(self) -> None:
        self.state.start_points = self._settings.members(keys.TX_START_POINT)
        self.state.stop_points = self._settings.members(keys.TX_STOP_POINT)

    def set_current_limit(self, amps: float | None) -> None:
        """Smart charging's limit for this EVSE; an offer already running follows at once (no decision needed)."""
        if amps == self.current_limit_a:
            return  # a real controller is written only when something changes
        self.current_limit_a = amps
        if self.state.offering:
            self._hw.set_offered_current(self.evse_id, self._offer())

    def _offer(self) -> float:
        limit = self.current_limit_a
        return self.layout.max_current_a if limit is None else max(0.0, min(self.layout.max_current_a, limit))

    def _sync_outputs(self, now: str) -> None:
        s = self.state
        self._hw.set_offered_current(self.evse_id, self._offer() if s.offering else 0.0)

        def mirror(connector: Any) -> None:
            connector.plugged = s.plugged
            connector.fault = s.fault
            connector.operative = s.operative

        self._connectors.update(self.evse_id, mirror, at=now)

    # --- building TransactionEvents ---------------------------------------------------------------------

    async def _journal_event(self, event: TxEvent, stamp: str | None = None) -> dict:
        now = stamp or self._clock.iso()
        payload: dict[str, Any] = {
            "eventType": event.event_type,
            "timestamp": now,
            "triggerReason": event.trigger_reason,
            "seqNo": 0,  # allocated by the journal in the same SQLite transaction
            "transactionInfo": {"transactionId": event.transaction_id, "chargingState": event.charging_state},
        }
        info = payload["transactionInfo"]
        if event.stopped_reason is not None:
            info["stoppedReason"] = event.stopped_reason
        if event.remote_start_id is not None:
            info["remoteStartId"] = event.remote_start_id
        if event.first or event.trigger_reason == "Trigger":
            # The Started event names its EVSE; so does a triggered one (TC_F_13/F_14 check evse.id), since the
            # CSMS asked for this EVSE's state and may not have seen the Started yet.
            payload["evse"] = {"id": self.evse_id, "connectorId": 1}
        if event.id_token is not None:
            payload["idToken"] = event.id_token
        # Explicit either way: false is the schema's default, but CSMSs exist that match on the field. The value is
        # journaled with the event, so a replay after an outage still says offline=true for what was made offline.
        payload["offline"] = not self._online()
        if event.trigger_reason in ("ChargingStateChanged", "Authorized", "CablePluggedIn") or event.first:
            payload["numberOfPhasesUsed"] = self.layout.phases
        meter = []
        if event.event_type == "Ended":
            meter = await self._journal.run_sync(self._journal.store.tx_meter_values, event.transaction_id)
        meter += self._meter_values(event, now)
        if meter:
            payload["meterValue"] = meter
        new_tx = None
        if event.first:
            new_tx = NewTransaction(event.transaction_id, self.evse_id, 1, event.id_token, event.remote_start_id)
        stored = await self._journal.append(
            Append("TransactionEvent", payload, new_transaction=new_tx, group_id_token=event.group_id_token)
        )
        log.info(
            "EVSE %d: TransactionEvent %s %s (%s) tx %s seqNo %d%s",
            self.evse_id,
            event.event_type,
            event.trigger_reason,
            event.charging_state,
            event.transaction_id,
            stored["seqNo"],
            " offline" if stored.get("offline") else "",
        )
        return stored

    def _meter_values(self, event: TxEvent, now: str) -> list[dict]:
        reading = self._hw.read_meter(self.evse_id)
        values: list[dict] = []
        if event.event_type == "Started":
            mv = meter_value(now, reading, self._settings.members(keys.TX_STARTED_MEASURANDS), "Transaction.Begin")
        elif event.event_type == "Ended":
            mv = meter_value(now, reading, self._settings.members(keys.TX_ENDED_MEASURANDS), "Transaction.End")
        elif event.trigger_reason == "MeterValuePeriodic":
            mv = meter_value(now, reading, self._settings.members(keys.TX_UPDATED_MEASURANDS), "Sample.Periodic")
        elif event.trigger_reason == "MeterValueClock":
            mv = meter_value(now, reading, self._settings.members(keys.ALIGNED_MEASURANDS), "Sample.Clock")
        elif event.trigger_reason == "Trigger":
            mv = meter_value(now, reading, self._settings.members(keys.TX_UPDATED_MEASURANDS), "Trigger")
        elif event.trigger_reason == "ChargingRateChanged":  # smart charging moved the offer: show the new one
            mv = meter_value(now, reading, self._settings.members(keys.TX_UPDATED_MEASURANDS), "Other")
        else:
            mv = None
        if mv is not None:
            values.append(mv)
        return values

    # --- tasks ---------------------------------------------------------------------------------------------

    async def run(self, *, task_status: trio.TaskStatus[None] = trio.TASK_STATUS_IGNORED) -> None:
        async with trio.open_nursery() as nursery:
            nursery.start_soon(self._periodic_sampler)
            nursery.start_soon(self._tx_ended_sampler)
            nursery.start_soon(self._aligned_sampler)
            nursery.start_soon(self._aligned_tx_ended_sampler)
            nursery.start_soon(self._connection_timeout_watch)
            task_status.started()

    async def _wait_for_tx(self) -> str:
        while self.state.tx is None:
            await self.changed.wait_change()
        return self.state.tx.transaction_id

    async def _sleep_during_tx(self, key: Seconds, tx_id: str, since: float) -> bool:
        """Sleep until `since + interval` (interval re-read on changes); False if the transaction ended."""
        while True:
            interval = self._settings.seconds(key)
            if interval <= 0:
                await self._either_change()
            else:
                with trio.move_on_at(since + interval) as due:
                    await self._either_change()
                if due.cancelled_caught:
                    return self.state.tx is not None and self.state.tx.transaction_id == tx_id
            if self.state.tx is None or self.state.tx.transaction_id != tx_id:
                return False

    async def _either_change(self) -> None:
        await any_change(self.changed, self._settings_changed)

    async def _periodic_sampler(self) -> None:
        """Updated(MeterValuePeriodic) every SampledDataCtrlr.TxUpdatedInterval during a transaction."""
        while True:
            tx_id = await self._wait_for_tx()
            since = trio.current_time()
            while await self._sleep_during_tx(keys.TX_UPDATED_INTERVAL, tx_id, since):
                since = trio.current_time()
                await self.apply(lambda s: s.periodic("MeterValuePeriodic"))

    async def _tx_ended_sampler(self) -> None:
        """Samples for the Ended event every SampledDataCtrlr.TxEndedInterval, kept durably in the journal."""
        while True:
            tx_id = await self._wait_for_tx()
            since = trio.current_time()
            while await self._sleep_during_tx(keys.TX_ENDED_INTERVAL, tx_id, since):
                since = trio.current_time()
                reading = self._hw.read_meter(self.evse_id)
                mv = meter_value(
                    self._clock.iso(), reading, self._settings.members(keys.TX_ENDED_MEASURANDS), "Sample.Periodic"
                )
                if mv is not None:
                    await self._journal.run_sync(self._journal.store.add_tx_meter_value, tx_id, mv)

    async def _next_boundary(self, key: Seconds, last: float) -> float:
        """Wait for the next wall-clock boundary of the interval `key` after `last`; return it.

        The boundary is computed from the station clock but waited for on Trio's monotonic clock, re-checked
        at least every minute, so a clock correction moves the next sample to the right boundary instead of
        firing early, late or twice.
        """
        while True:
            interval = self._settings.seconds(key)
            if interval <= 0:
                await self._settings_changed.wait_change()
                continue
            now = self._clock.timestamp()
            boundary: float = math.floor(now / interval + 1) * interval
            if boundary <= last:
                boundary = last + interval
            with trio.move_on_after(min(boundary - now, ALIGNED_RECHECK)):
                await self._settings_changed.wait_change()
                continue
            if self._clock.timestamp() + 0.0005 >= boundary:
                return boundary
            # not there yet (a long wait, or the clock moved back): compute again

    async def _aligned_sampler(self) -> None:
        """Clock-aligned samples on the wall-clock boundaries of AlignedDataCtrlr.Interval."""
        last = -math.inf
        while True:
            last = await self._next_boundary(keys.ALIGNED_INTERVAL, last)
            await self._aligned_sample(format_timestamp(last))

    async def _aligned_tx_ended_sampler(self) -> None:
        """AlignedDataCtrlr.TxEndedMeasurands on the boundaries of its TxEndedInterval, kept for the Ended event."""
        last = -math.inf
        while True:
            last = await self._next_boundary(keys.ALIGNED_TX_ENDED_INTERVAL, last)
            tx = self.state.tx
            if tx is None:
                continue
            reading = self._hw.read_meter(self.evse_id)
            mv = meter_value(
                format_timestamp(last),
                reading,
                self._settings.members(keys.ALIGNED_TX_ENDED_MEASURANDS),
                "Sample.Clock",
            )
            if mv is not None:
                await self._journal.run_sync(self._journal.store.add_tx_meter_value, tx.transaction_id, mv)

    async def _aligned_sample(self, stamp: str) -> None:
        """A clock-aligned reading: in the EVSE's transaction as an Updated event, else a MeterValuesRequest.

        With AlignedDataCtrlr.SendDuringIdle true the station "SHALL NOT send clock aligned meter values when a
        transaction is ongoing" (Part 2 appendix): a station-wide condition, so an idle EVSE stays silent too
        while another EVSE has a transaction (TC_J_06).
        """
        if self._settings.flag(keys.ALIGNED_SEND_DURING_IDLE) and self._station_in_transaction():
            return
        if self.state.tx is not None:
            await self.apply(lambda s: s.periodic("MeterValueClock"), stamp)
        else:
            reading = self._hw.read_meter(self.evse_id)
            mv = meter_value(stamp, reading, self._settings.members(keys.ALIGNED_MEASURANDS), "Sample.Clock")
            if mv is not None:
                await self._journal.append(Append("MeterValues", {"evseId": self.evse_id, "meterValue": [mv]}))

    async def _connection_timeout_watch(self) -> None:
        """An authorization without an EV lapses after TxCtrlr.EVConnectionTimeOut."""
        while True:
            s = self.state
            if s.authorization is None or s.plugged or self._authorized_at is None:
                await self._either_change()
                continue
            deadline = self._authorized_at + self._settings.seconds(keys.EV_CONNECTION_TIMEOUT)
            with trio.move_on_at(deadline) as expired:
                await self._either_change()
            if expired.cancelled_caught:
                await self.apply(lambda s: s.connection_timeout())
