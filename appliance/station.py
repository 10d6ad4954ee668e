"""The station: every part wired together and supervised by one root nursery.

Ownership, top down:

    Station.run (root nursery)
    ├── journal writer              (group commit; drains on shutdown)
    ├── hardware backend            (its devices, control socket …)
    ├── one EvseRunner per EVSE     (session state machine; samplers and timeouts as its children)
    ├── hardware event router       (hardware → EVSE runners; card taps → transactions block)
    └── Link.run                    (connect / reconnect forever)
        └── one session per connection: RPC receive + dispatch, ping loop,
            and after an accepted boot the online services (journal delivery, heartbeat, status …)

Cancelling the root scope (SIGTERM) unwinds all of it; the link's teardown sends a close frame.
"""

from __future__ import annotations

import functools
import logging
import sqlite3
import time
from dataclasses import dataclass

import trio

from appliance.blocks.auth_store import AuthCache, LocalList
from appliance.blocks.authorization import Authorizer
from appliance.blocks.availability import Availability, StatusReporter
from appliance.blocks.network import NetworkProfiles
from appliance.blocks.provisioning import Provisioning
from appliance.blocks.remote_control import RemoteControl
from appliance.blocks.reports import Reports
from appliance.blocks.transactions import Transactions
from appliance.clock import StationClock
from appliance.config import Config, ConfigError
from appliance.devicemodel import DeviceModel, FactoryValueError
from appliance.devicemodel.catalog import STORAGE_BYTES
from appliance.evse import hardware_events
from appliance.evse.connectors import Connectors
from appliance.evse.runner import EvseRunner
from appliance.hardware.base import Hardware, ShowsStationView
from appliance.journal.db import open_station_db
from appliance.journal.delivery import Delivery
from appliance.journal.journal import Journal
from appliance.journal.store import Append
from appliance.link.link import Link
from appliance.link.rpc import Dispatcher
from appliance.protocol import default_registry
from appliance.util.supervise import supervise
from appliance.util.watched import Watched

log = logging.getLogger("appliance.station")


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
            self.dm = DeviceModel.open(self.db, config.evses, config.variables, config.limits)
        except FactoryValueError as exc:
            self.db.close()
            raise ConfigError(f"{exc.section}.{exc.key}", exc.message) from exc
        self.state = StateStore(self.db)
        # The journal has its own connection: its writer runs in worker threads and must never interleave
        # transactions with the device model's.
        self.journal = Journal(open_station_db(config.station.data_dir))
        offset = float(self.state.get("clock_offset") or 0.0)
        self.clock = StationClock(offset, on_adjust=lambda off: self.state.put("clock_offset", repr(off)))
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
        self.status = StatusReporter(
            self.connectors, lambda: int(self.dm.get("OCPPCommCtrlr.OfflineThreshold"))  # type: ignore[arg-type]
        )
        self.network = NetworkProfiles(
            station_id=config.station.id, factory=config.csms, load=self.state.get, save=self.state.put,
            setting=self.dm.get, failures=lambda: self.link.backoff.failures, password=self._password,
        )
        self.network.register(self.dispatcher)
        self.dm.add_validator("OCPPCommCtrlr.NetworkConfigurationPriority", self.network.validate_priority)
        self.dm.bind_live("OCPPCommCtrlr.ActiveNetworkProfile", lambda: self.network.active_slot)
        self.link = Link(
            endpoint=self.network.endpoint,
            dispatcher=self.dispatcher,
            registry=self.registry,
            setting=self.dm.get,
            settings_changed=self.settings_changed,
            boot=self._boot,
        )
        self.delivery = Delivery(self.journal, self.dm.get)
        self.runners: dict[int, EvseRunner] = {}
        self.availability = Availability(self.state.get, self.state.put, [e.evse_id for e in config.evses],
                                         self.runners)
        for layout in config.evses:
            self.runners[layout.evse_id] = EvseRunner(
                layout, hardware=hardware, journal=self.journal, setting=self.dm.get,
                settings_changed=self.settings_changed, clock=self.clock, online=lambda: self.link.online,
                connectors=self.connectors,
                desired_operative=lambda e=layout.evse_id: self.availability.operative(e),
                station_in_transaction=lambda: any(r.state.tx is not None for r in self.runners.values()),
            )
        self.dispatcher.register("ChangeAvailability", self.availability.change)
        self.restart_reason: str | None = None
        self._root: trio.CancelScope | None = None
        self.authorizer = Authorizer(
            self.link, cache=AuthCache(self.db, capacity_bytes=STORAGE_BYTES), local_list=LocalList(self.db),
            clock=self.clock, setting=self.dm.get,
        )
        self.authorizer.register(self.dispatcher)
        self.transactions = Transactions(
            runners=self.runners, journal=self.journal, authorizer=self.authorizer, link=self.link,
            hardware=hardware, clock=self.clock, setting=self.dm.get,
        )
        self.transactions.register(self.dispatcher)
        self.delivery.on_response("TransactionEvent", self.transactions.on_transaction_event_answer)
        self.reports = Reports(device_model=self.dm, link=self.link, clock=self.clock, setting=self.dm.get)
        self.reports.register(self.dispatcher)
        self.remote = RemoteControl(
            runners=self.runners, journal=self.journal, link=self.link, hardware=hardware, clock=self.clock,
            provisioning=self.provisioning, status=self.status, setting=self.dm.get, restart=self.request_restart,
        )
        self.remote.register(self.dispatcher)
        self._bind_authorization_variables()
        # Order matters only for readability of the log: all start together right after the boot is accepted.
        self.link.add_online_service("delivery", self.delivery.service)
        self.link.add_online_service("heartbeat", self.provisioning.heartbeat_service)
        self.link.add_online_service("status", self.status.service)
        if isinstance(hardware, ShowsStationView):
            hardware.set_status_provider(
                lambda: hardware_events.snapshots(self.runners, self.connectors, lambda: self.link.online))

    # --- wiring helpers ------------------------------------------------------------------------------

    def _charging_station(self) -> dict:
        s = self.config.station
        info = {"model": s.model, "vendorName": s.vendor_name}
        if s.serial_number:
            info["serialNumber"] = s.serial_number
        if s.firmware_version:
            info["firmwareVersion"] = s.firmware_version
        return info

    def _password(self) -> str | None:
        """The basic-auth password: the one the CSMS set (SecurityCtrlr.BasicAuthPassword), else the factory one."""
        stored = self.dm.get("SecurityCtrlr.BasicAuthPassword")
        return str(stored) if stored else self.config.csms.basic_auth_password

    def _bind_live_variables(self) -> None:
        """Variables whose truth lives elsewhere (the config, the clock, the connectors) read it at request time."""
        station = self.config.station
        self.dm.bind_live("ChargingStation.Model", lambda: station.model)
        self.dm.bind_live("ChargingStation.VendorName", lambda: station.vendor_name)
        self.dm.bind_live("SecurityCtrlr.Identity", lambda: station.id)
        self.dm.bind_live("SecurityCtrlr.SecurityProfile", lambda: self.config.csms.security_profile)
        self.dm.bind_live("ClockCtrlr.DateTime", self.clock.iso)
        self.dm.bind_live("ChargingStation.AvailabilityState", self.connectors.station_status)
        for layout in self.config.evses:
            e = layout.evse_id
            self.dm.bind_live(f"EVSE[{e}].AvailabilityState", lambda e=e: self.connectors.evse_status(e))
            self.dm.bind_live(f"Connector[{e},1].AvailabilityState", lambda e=e: self.connectors.evse_status(e))

    def _bind_authorization_variables(self) -> None:
        self.dm.bind_live("AuthCacheCtrlr.Storage", self.authorizer.cache.used_bytes)
        self.dm.bind_live("LocalAuthListCtrlr.Entries", self.authorizer.local_list.count)
        self.dm.bind_live("LocalAuthListCtrlr.Storage", self.authorizer.local_list.used_bytes)

    async def stop(self) -> None:
        """Shut down cleanly: close the WebSocket with a close handshake, then cancel every task (the journal
        writer still commits what it was handed)."""
        # Shielded: a Reset's follow-up runs inside the very session this closes, and must still get to the
        # cancel below.
        with trio.CancelScope(shield=True):
            await self.link.shutdown()
        if self._root is not None:
            self._root.cancel()

    async def request_restart(self, reason: str) -> None:
        """End the run so the process can re-execute itself; the next boot reports `reason`."""
        self.state.put("next_boot_reason", reason)
        self.restart_reason = reason
        log.warning("restarting the station (%s)", reason)
        await self.stop()

    async def _journal_startup_event(self) -> None:
        """A critical security event for every start, queued like transaction messages (A04): ResetOrReboot
        after a reset the CSMS asked for (TC_B_21), StartupOfTheDevice otherwise."""
        reason = self.provisioning.boot_reason
        kind = "ResetOrReboot" if reason in ("RemoteReset", "ScheduledReset") else "StartupOfTheDevice"
        await self.journal.append(Append("SecurityEventNotification", {
            "type": kind, "timestamp": self.clock.iso(), "techInfo": f"boot reason {reason}",
        }))

    async def _boot(self, link: Link) -> None:
        await self.provisioning.boot(link)
        if self.state.get("next_boot_reason") is not None:
            self.state.put("next_boot_reason", None)  # consumed only once the CSMS has heard it

    # --- running -------------------------------------------------------------------------------------

    async def run(self, *, task_status: trio.TaskStatus[None] = trio.TASK_STATUS_IGNORED) -> None:
        try:
            async with trio.open_nursery() as nursery:
                self._root = nursery.cancel_scope
                await nursery.start(self.journal.run)
                await nursery.start(self.hardware.run)
                # Schemas compile on first use (tens of ms each); do it once, off the event loop.
                await trio.to_thread.run_sync(self.registry.compile_all)
                await self.transactions.recover()
                await self._journal_startup_event()
                for runner in self.runners.values():
                    await hardware_events.sync(self.hardware, runner)  # an EV still plugged in is plugged in
                    await nursery.start(runner.run)
                nursery.start_soon(supervise, "hardware events", lambda: hardware_events.route(
                    self.hardware, self.runners, self.transactions.on_card, nursery))
                nursery.start_soon(self.link.run, name="link")
                nursery.start_soon(supervise, "journal housekeeping", self._housekeeping)
                nursery.start_soon(supervise, "scheduled resets", self.remote.watch_idle)
                log.info("station %s running (%d EVSEs, data in %s)", self.config.station.id,
                         len(self.config.evses), self.config.station.data_dir)
                task_status.started()
        finally:
            self.journal.store.conn.close()
            self.db.close()

    async def _housekeeping(self) -> None:
        """Keep the journal bounded: prune old delivered messages, then checkpoint the WAL."""
        retention = self.config.journal
        while True:
            cutoff = time.time() - retention.retention_days * 86400
            older_than = time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(cutoff)) + ".000Z"
            removed = await self.journal.run_sync(
                functools.partial(self.journal.store.prune, keep_rows=retention.retention_rows, older_than=older_than)
            )
            if removed:
                log.info("journal: pruned %d delivered message(s)", removed)
            await self.journal.run_sync(lambda: self.journal.store.conn.execute("PRAGMA wal_checkpoint(TRUNCATE)"))
            await trio.sleep(HOUSEKEEPING_EVERY)


HOUSEKEEPING_EVERY = 3600.0
