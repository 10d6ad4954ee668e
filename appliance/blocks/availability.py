"""Functional block G (availability): connector status and StatusNotification.

A connector's status is derived, never stored: Faulted beats Unavailable beats Occupied beats Available.
The reporter sends a StatusNotification whenever the status the CSMS last acknowledged differs from the
current one, so a change while offline is reported on reconnection without queueing stale intermediate
states. After a (re)boot, or an outage longer than OCPPCommCtrlr.OfflineThreshold, every connector is
reported again (TC_B_51/B_52); after a shorter outage only the changed ones.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from dataclasses import dataclass, field

import trio

from appliance.clock import StationClock
from appliance.link.link import Link
from appliance.link.rpc import CallErrorReply, CallTimeout
from appliance.util.watched import Watched

log = logging.getLogger("appliance.availability")


@dataclass
class ConnectorState:
    evse_id: int
    connector_id: int = 1
    plugged: bool = False
    fault: str | None = None
    operative: bool = True
    since: str = ""  # when the current status began (station clock, ISO 8601 Z)
    last_status: str = field(default="", repr=False)

    @property
    def status(self) -> str:
        if self.fault is not None:
            return "Faulted"
        if not self.operative:
            return "Unavailable"
        if self.plugged:
            return "Occupied"
        return "Available"


class Connectors:
    """Every connector's state, plus a signal that wakes whoever reports it."""

    def __init__(self, evse_ids: list[int], clock: StationClock) -> None:
        self._clock = clock
        self.by_key = {(e, 1): ConnectorState(e, 1, since=clock.iso()) for e in evse_ids}
        for state in self.by_key.values():
            state.last_status = state.status
        self.changed: Watched[int] = Watched(0)

    def get(self, evse_id: int, connector_id: int = 1) -> ConnectorState:
        return self.by_key[(evse_id, connector_id)]

    def update(self, evse_id: int, mutate: Callable[[ConnectorState], None], connector_id: int = 1) -> None:
        state = self.by_key[(evse_id, connector_id)]
        mutate(state)
        if state.status != state.last_status:
            log.info("EVSE %d connector %d: %s -> %s", evse_id, connector_id, state.last_status, state.status)
            state.last_status = state.status
            state.since = self._clock.iso()
            self.changed.set(self.changed.value + 1)

    def evse_status(self, evse_id: int) -> str:
        """An EVSE's AvailabilityState: that of its (single) connector."""
        return self.get(evse_id).status

    def station_status(self) -> str:
        statuses = {s.status for s in self.by_key.values()}
        if statuses == {"Faulted"}:
            return "Faulted"
        if statuses == {"Unavailable"}:
            return "Unavailable"
        return "Occupied" if "Occupied" in statuses else "Available"


class StatusReporter:
    def __init__(self, connectors: Connectors, offline_threshold: Callable[[], int]) -> None:
        self._connectors = connectors
        self._offline_threshold = offline_threshold
        self._acknowledged: dict[tuple[int, int], str] = {}
        self._booted = False

    async def service(self, link: Link) -> None:
        if not self._booted or link.last_offline_duration > self._offline_threshold():
            self._acknowledged.clear()  # report every connector
        self._booted = True
        while True:
            version = self._connectors.changed.value
            for key, state in sorted(self._connectors.by_key.items()):
                status = state.status
                if self._acknowledged.get(key) == status:
                    continue
                payload = {
                    "timestamp": state.since,
                    "connectorStatus": status,
                    "evseId": state.evse_id,
                    "connectorId": state.connector_id,
                }
                try:
                    await link.call("StatusNotification", payload)
                except (CallTimeout, CallErrorReply) as exc:
                    log.warning("StatusNotification for EVSE %d not acknowledged: %s", state.evse_id, exc)
                    await trio.sleep(5)
                    break
                self._acknowledged[key] = status
            else:
                if self._connectors.changed.value == version:
                    await self._connectors.changed.wait_change()

    def trigger(self, evse_id: int | None = None, connector_id: int | None = None) -> None:
        """TriggerMessage(StatusNotification): forget what the CSMS acknowledged so it is sent again."""
        for key in list(self._acknowledged):
            if (evse_id is None or key[0] == evse_id) and (connector_id is None or key[1] == connector_id):
                del self._acknowledged[key]
        self._connectors.changed.set(self._connectors.changed.value + 1)
