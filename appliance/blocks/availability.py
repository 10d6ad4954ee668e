"""Functional block G (availability): connector status and StatusNotification.

A connector's status is derived, never stored: Faulted beats Unavailable beats Occupied beats Available.
The reporter sends a StatusNotification whenever the status the CSMS last acknowledged differs from the
current one, so a change while offline is reported on reconnection without queueing stale intermediate
states. After a (re)boot, or an outage longer than OCPPCommCtrlr.OfflineThreshold, every connector is
reported again (TC_B_51/B_52); after a shorter outage only the changed ones.
"""

from __future__ import annotations

import functools
import json
import logging
from collections.abc import Callable, Mapping

import trio

from appliance.blocks.base import Block, TriggerHandler, TriggerRequest
from appliance.devicemodel.model import Provider
from appliance.evse.connectors import Connectors
from appliance.link.link import Link, OnlineService
from appliance.link.rpc import CallErrorReply, CallTimeout, Handler, Reply
from appliance.storage import StateStore

log = logging.getLogger("appliance.availability")


class StatusReporter(Block):
    """Connector status (G01–G04): StatusNotification for every change the CSMS has not acknowledged yet."""

    def __init__(self, connectors: Connectors, offline_threshold: Callable[[], float]) -> None:
        self._connectors = connectors
        self._offline_threshold = offline_threshold
        self._acknowledged: dict[tuple[int, int], str] = {}
        self._forced: set[tuple[int, int]] = set()  # TriggerMessage: send these even if acknowledged
        self._booted = False

    async def service(self, link: Link) -> None:
        if not self._booted or link.last_offline_duration > self._offline_threshold():
            self._acknowledged.clear()  # report every connector
        self._booted = True
        while True:
            version = self._connectors.changed.value
            for key, state in sorted(self._connectors.by_key.items()):
                status = state.status
                if self._acknowledged.get(key) == status and key not in self._forced:
                    continue
                self._forced.discard(key)
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

    def online_services(self) -> Mapping[str, OnlineService]:
        return {"status": self.service}

    def triggers(self) -> Mapping[str, TriggerHandler]:
        return {"StatusNotification": self._trigger}

    def live_variables(self) -> Mapping[str, Provider]:
        live: dict[str, Provider] = {"ChargingStation.AvailabilityState": self._connectors.station_status}
        for evse_id, connector_id in self._connectors.by_key:
            status = functools.partial(self._connectors.evse_status, evse_id)
            live[f"EVSE[{evse_id}].AvailabilityState"] = status
            live[f"Connector[{evse_id},{connector_id}].AvailabilityState"] = status
        return live

    async def _trigger(self, request: TriggerRequest) -> Reply:
        async def send() -> None:
            self.trigger(request.evse_id, request.connector_id)

        return Reply({"status": "Accepted"}, then=send)

    def trigger(self, evse_id: int | None = None, connector_id: int | None = None) -> None:
        """TriggerMessage(StatusNotification): forget what the CSMS acknowledged so it is sent again."""
        for key in self._connectors.by_key:
            if (evse_id is None or key[0] == evse_id) and (connector_id is None or key[1] == connector_id):
                self._forced.add(key)
        self._connectors.changed.set(self._connectors.changed.value + 1)


class Availability(Block):
    """ChangeAvailability (G03–G05): Operative / Inoperative for the station, an EVSE or a connector.

    The setting is persisted at once (an Inoperative EVSE stays Unavailable after a power cut, TC_G_18/19/21),
    but an EVSE with a running transaction only becomes Unavailable when it ends (answer Scheduled); its
    runner applies the change then (`EvseRunner(desired_operative=…)`).
    """

    KEY = "availability"

    def __init__(self, state: StateStore, evse_ids: list[int], runners: dict) -> None:
        self._state = state
        self._runners = runners
        raw = state.get(self.KEY)
        stored = json.loads(raw) if raw else {}
        self.station = bool(stored.get("station", True))
        self.evse = {e: bool(stored.get("evse", {}).get(str(e), True)) for e in evse_ids}
        self.connector = {e: bool(stored.get("connector", {}).get(str(e), True)) for e in evse_ids}

    def operative(self, evse_id: int) -> bool:
        return self.station and self.evse[evse_id] and self.connector[evse_id]

    async def _persist(self) -> None:
        await self._state.put(
            self.KEY,
            json.dumps(
                {
                    "station": self.station,
                    "evse": {str(e): v for e, v in self.evse.items()},
                    "connector": {str(e): v for e, v in self.connector.items()},
                }
            ),
        )

    def handlers(self) -> Mapping[str, Handler]:
        return {"ChangeAvailability": self.change}

    async def change(self, payload: dict) -> dict:
        operative = payload["operationalStatus"] == "Operative"
        evse = payload.get("evse")
        if evse is None or evse["id"] == 0:
            self.station = operative
            affected = list(self.evse)
        else:
            evse_id, connector_id = evse["id"], evse.get("connectorId")
            if evse_id not in self.evse or connector_id not in (None, 1):
                return {"status": "Rejected", "statusInfo": {"reasonCode": "UnknownEvse"}}
            if connector_id is None:
                self.evse[evse_id] = operative
            else:
                self.connector[evse_id] = operative
            affected = [evse_id]
        await self._persist()
        scheduled = False
        for evse_id in affected:
            runner = self._runners[evse_id]
            wanted = self.operative(evse_id)
            if runner.state.tx is not None and not wanted:
                scheduled = True  # applied by the runner when the transaction ends
                continue
            await runner.apply(lambda s, wanted=wanted: s.set_operative(wanted) if s.operative != wanted else [])
        log.info(
            "ChangeAvailability %s for %s: %s",
            payload["operationalStatus"],
            evse or "the station",
            "Scheduled" if scheduled else "Accepted",
        )
        return {"status": "Scheduled" if scheduled else "Accepted"}
