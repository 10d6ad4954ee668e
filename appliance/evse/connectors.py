"""Every connector's state, derived from its EVSE: Faulted beats Unavailable beats Occupied beats Available.

Why it lives with the EVSE code: the EVSE runners write it (`EvseRunner._sync_outputs` mirrors plug, fault and
operative state into it) and the availability block only reads it to report StatusNotification, so the
dependency points from the blocks down to the EVSE layer, never back up.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from dataclasses import dataclass, field

from appliance.clock import StationClock
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

    def update(
        self, evse_id: int, mutate: Callable[[ConnectorState], None], connector_id: int = 1, at: str | None = None
    ) -> None:
        """Apply `mutate`; a changed status begins `at` (station clock ISO time; default now)."""
        state = self.by_key[(evse_id, connector_id)]
        mutate(state)
        if state.status != state.last_status:
            log.info("EVSE %d connector %d: %s -> %s", evse_id, connector_id, state.last_status, state.status)
            state.last_status = state.status
            state.since = at or self._clock.iso()
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
