"""The station: every part wired together and supervised by one root nursery.

Ownership, top down:

    Station.run (root nursery)
    ├── hardware backend            (its devices, control socket …)
    ├── hardware event router       (hardware → connectors / EVSE sessions)
    └── Link.run                    (connect / reconnect forever)
        └── one session per connection: RPC receive + dispatch, ping loop,
            and after an accepted boot the online services (heartbeat, status reporting …)

Cancelling the root scope (SIGTERM) unwinds all of it; the link's teardown sends a close frame.
"""

from __future__ import annotations

import logging
import sqlite3
from dataclasses import dataclass

import trio

from appliance.blocks.availability import Connectors, StatusReporter
from appliance.blocks.provisioning import Provisioning
from appliance.clock import StationClock
from appliance.config import Config, ConfigError
from appliance.devicemodel import DeviceModel, FactoryValueError
from appliance.hardware.base import (
    CardPresented,
    EVState,
    EVStateChanged,
    FaultCleared,
    FaultRaised,
    Hardware,
    HardwareEvent,
    Plugged,
    StationSnapshot,
    Unplugged,
)
from appliance.journal.db import open_station_db
from appliance.link.link import Link
from appliance.link.rpc import Dispatcher
from appliance.link.transport import Endpoint
from appliance.protocol import default_registry
from appliance.util.supervise import supervise
from appliance.util.watched import Watched

log = logging.getLogger("appliance.station")


def mask_token(token: str) -> str:
    """idTokens are personal data: show only the last four characters in logs."""
    return "*" * max(len(token) - 4, 0) + token[-4:]


@dataclass
class StateStore:
    """Tiny durable key/value facts about the station (table station_state)."""

    conn: sqlite3.Connection

    def get(self, key: str) -> str | None:
        row = self.conn.execute("SELECT value FROM station_state WHERE key = ?", (key,)).fetchone()
        return row[0] if row else None

    def put(self, key: str, value: str | None) -> None:
        if value is None:
            self.conn.execute("DELETE FROM station_state WHERE key = ?", (key,))
        else:
            self.conn.execute(
                "INSERT INTO station_state (key, value, updated_at) "
                "VALUES (?, ?, strftime('%Y-%m-%dT%H:%M:%fZ','now')) "
                "ON CONFLICT(key) DO UPDATE SET value = excluded.value, updated_at = excluded.updated_at",
                (key, value),
            )


class Station:
    def __init__(self, config: Config, hardware: Hardware) -> None:
        self.config = config
        self.hardware = hardware
        self.db = open_station_db(config.station.data_dir)
        try:
            self.dm = DeviceModel.open(self.db, config.evses, config.variables)
        except FactoryValueError as exc:
            self.db.close()
            raise ConfigError(f"variables.{exc.key}", exc.message) from exc
        self.state = StateStore(self.db)
        self.clock = StationClock()
        self.settings_changed: Watched[int] = Watched(0)
        self.dm.add_listener(lambda path, value: self.settings_changed.set(self.settings_changed.value + 1))
        self.registry = default_registry()
        self.dispatcher = Dispatcher(self.registry)
        self.connectors = Connectors([e.evse_id for e in config.evses], self.clock)
        self._bind_live_variables()

        boot_reason = self.state.get("next_boot_reason") or "PowerUp"
        self.provisioning = Provisioning(
            device_model=self.dm,
            clock=self.clock,
            charging_station=self._charging_station(),
            boot_reason=boot_reason,
            settings_changed=self.settings_changed,
            on_password_change=lambda: self.link.reconnect("BasicAuthPassword changed"),
        )
        self.provisioning.register(self.dispatcher)
        self.status = StatusReporter(self.connectors, lambda: int(self.dm.get("OCPPCommCtrlr.OfflineThreshold")))
        self.link = Link(
            endpoint=self._endpoint,
            dispatcher=self.dispatcher,
            registry=self.registry,
            setting=self.dm.get,
            settings_changed=self.settings_changed,
            boot=self._boot,
        )
        self.link.add_online_service("heartbeat", self.provisioning.heartbeat_service)
        self.link.add_online_service("status", self.status.service)
        hardware.set_status_provider(self.snapshots)

    # --- wiring helpers ------------------------------------------------------------------------------

    def _charging_station(self) -> dict:
        s = self.config.station
        info = {"model": s.model, "vendorName": s.vendor_name}
        if s.serial_number:
            info["serialNumber"] = s.serial_number
        if s.firmware_version:
            info["firmwareVersion"] = s.firmware_version
        return info

    def _endpoint(self) -> Endpoint:
        csms = self.config.csms
        stored = self.dm.get("SecurityCtrlr.BasicAuthPassword")
        return Endpoint(
            url=csms.url,
            station_id=self.config.station.id,
            security_profile=csms.security_profile,
            password=str(stored) if stored else csms.basic_auth_password,
            ca_file=csms.ca_file,
        )

    def _bind_live_variables(self) -> None:
        self.dm.bind_live("ClockCtrlr.DateTime", self.clock.iso)
        self.dm.bind_live("ChargingStation.AvailabilityState", self.connectors.station_status)
        for layout in self.config.evses:
            e = layout.evse_id
            self.dm.bind_live(f"EVSE[{e}].AvailabilityState", lambda e=e: self.connectors.evse_status(e))
            self.dm.bind_live(f"Connector[{e},1].AvailabilityState", lambda e=e: self.connectors.evse_status(e))

    async def _boot(self, link: Link) -> None:
        await self.provisioning.boot(link)
        if self.state.get("next_boot_reason") is not None:
            self.state.put("next_boot_reason", None)  # consumed only once the CSMS has heard it

    def snapshots(self) -> list[StationSnapshot]:
        return [
            StationSnapshot(evse_id=key[0], connector_status=c.status)
            for key, c in sorted(self.connectors.by_key.items())
        ]

    # --- running -------------------------------------------------------------------------------------

    async def run(self, *, task_status: trio.TaskStatus[None] = trio.TASK_STATUS_IGNORED) -> None:
        try:
            async with trio.open_nursery() as nursery:
                await nursery.start(self.hardware.run)
                for layout in self.config.evses:
                    e = layout.evse_id
                    ev = self.hardware.ev_state(e)
                    fault = self.hardware.faulted(e)
                    self.connectors.update(e, lambda c, ev=ev, fault=fault: _apply_hw(c, ev, fault))
                nursery.start_soon(supervise, "hardware events", self._route_hardware_events)
                nursery.start_soon(self.link.run, name="link")
                log.info("station %s running (%d EVSEs, data in %s)", self.config.station.id,
                         len(self.config.evses), self.config.station.data_dir)
                task_status.started()
        finally:
            self.db.close()

    async def _route_hardware_events(self) -> None:
        async for event in self.hardware.events:
            self.on_hardware_event(event)

    def on_hardware_event(self, event: HardwareEvent) -> None:
        match event:
            case Plugged(evse_id=e):
                self.connectors.update(e, lambda c: setattr(c, "plugged", True))
            case Unplugged(evse_id=e):
                self.connectors.update(e, lambda c: setattr(c, "plugged", False))
            case FaultRaised(evse_id=e, code=code):
                self.connectors.update(e, lambda c: setattr(c, "fault", code))
            case FaultCleared(evse_id=e):
                self.connectors.update(e, lambda c: setattr(c, "fault", None))
            case CardPresented(token=token, evse_id=e):
                log.info("card %s presented (EVSE %s)", mask_token(token), e)
            case EVStateChanged(evse_id=e, state=state):
                log.info("EVSE %d: EV state %s", e, state.value)


def _apply_hw(connector, ev: EVState, fault: str | None) -> None:  # type: ignore[no-untyped-def]
    connector.plugged = ev is not EVState.A
    connector.fault = fault
