"""The station: its parts built in dependency order, its functional blocks wired in one loop, one root nursery.

Ownership, top down:

    Station.run (root nursery)
    ├── storage worker thread       (the one writer connection; every durable write is a job on it)
    ├── journal writer              (group commit; drains on shutdown)
    ├── hardware backend            (its devices, control socket …)
    ├── each block's own task       (transactions: power-loss recovery; security: the startup event; resets …)
    ├── one EvseRunner per EVSE     (session state machine; samplers and timeouts as its children)
    ├── hardware event router       (evse/hardware_events: hardware → EVSE runners; cards → transactions)
    └── Link.run                    (connect / reconnect forever)
        └── one session per connection: RPC receive + dispatch, ping loop,
            and after an accepted boot the blocks' online services (journal delivery, heartbeat, status …)

Nothing is built before `run`: opening the database, migrating it and loading the device model are disk work,
done by the storage worker so the event loop never waits for a disk. The parts exist once `run` has reported
started. Cancelling the root scope (SIGTERM) unwinds all of it; the link's teardown sends a close frame.
"""

from __future__ import annotations

import functools
import logging
import time

import trio

from appliance.blocks.auth_store import AuthCache, LocalList
from appliance.blocks.authorization import Authorizer
from appliance.blocks.availability import Availability, StatusReporter
from appliance.blocks.base import Block
from appliance.blocks.certificates import Certificates
from appliance.blocks.customer_info import CustomerInformation
from appliance.blocks.diagnostics import Diagnostics, LogFiles
from appliance.blocks.firmware import FirmwareUpdates, InstallHold
from appliance.blocks.network import NetworkProfiles
from appliance.blocks.provisioning import Provisioning
from appliance.blocks.remote_control import RemoteControl
from appliance.blocks.reports import Reports
from appliance.blocks.security import SecurityEvents
from appliance.blocks.smart_charging import SmartCharging
from appliance.blocks.transactions import Transactions
from appliance.blocks.trigger import TriggerMessages
from appliance.certs.identity import StationIdentity
from appliance.certs.store import CSMS_ROOT, MANUFACTURER_ROOT, CertificateStore
from appliance.clock import StationClock
from appliance.config import Config, ConfigError
from appliance.devicemodel import DeviceModel, FactoryValueError
from appliance.devicemodel import settings as keys
from appliance.devicemodel.catalog import STORAGE_BYTES
from appliance.diagnostics.logfiles import DiagnosticsLog
from appliance.evse import hardware_events
from appliance.evse.connectors import Connectors
from appliance.evse.device_notify import DeviceNotifications
from appliance.evse.runner import EvseRunner
from appliance.firmware import slots
from appliance.firmware.installers import INSTALLERS
from appliance.hardware.base import Hardware, ShowsStationView
from appliance.journal.delivery import Delivery
from appliance.journal.journal import Journal
from appliance.link.link import Link
from appliance.link.rpc import Dispatcher
from appliance.protocol import default_registry
from appliance.security.tls import TlsTrust
from appliance.storage import StateStore, Storage, StorageWorker
from appliance.timetext import format_timestamp
from appliance.util.supervise import supervise
from appliance.util.watched import Watched

log = logging.getLogger("appliance.station")

#: Migrations of the core parts (device model, station state, journal); every other one belongs to a block.
CORE_MIGRATIONS = (
    "0001_device_model.sql",
    "0002_station_state.sql",
    "0003_journal.sql",
    "0010_drop_outbox_tx_index.sql",
    "0011_transaction_row_without_copies.sql",
)
HOUSEKEEPING_EVERY = 3600.0


class Station:
    storage: Storage
    state: StateStore
    dm: DeviceModel
    clock: StationClock
    journal: Journal
    link: Link
    connectors: Connectors
    runners: dict[int, EvseRunner]
    provisioning: Provisioning
    network: NetworkProfiles
    security: SecurityEvents
    tls_trust: TlsTrust
    authorizer: Authorizer
    transactions: Transactions
    certificate_store: CertificateStore
    identity: StationIdentity
    smart_charging: SmartCharging
    blocks: list[Block]

    def __init__(
        self,
        config: Config,
        hardware: Hardware,
        *,
        storage_worker: StorageWorker | None = None,
        cache_kib: int | None = None,
        cached_statements: int | None = None,
    ) -> None:
        """`storage_worker`, `cache_kib` and `cached_statements` are for many stations in one process (`appliance
        fleet`): a shared storage thread, a capped SQLite page cache and statement cache. A station on its own
        leaves them at their defaults."""
        self.config = config
        self.hardware = hardware
        self._storage_worker = storage_worker
        self._storage_bounds = {"cache_kib": cache_kib, "cached_statements": cached_statements}
        self.restart_reason: str | None = None
        self._root: trio.CancelScope | None = None
        self._opened = False

    # --- building ------------------------------------------------------------------------------------

    async def open(self) -> None:
        """The core parts, in dependency order; no part refers to one built after it.

        `run` opens the station itself; a caller that must tell a config or journal problem (exit 2) from a
        runtime failure calls this first. Raises ConfigError or JournalError.
        """
        if self._opened:
            return
        self._opened = True
        config = self.config
        self.storage = await Storage.open(config.station.data_dir, self._storage_worker, **self._storage_bounds)
        try:
            self.dm = await DeviceModel.open(self.storage, config.evses, config.variables, config.limits)
        except FactoryValueError as exc:
            self.storage.close()
            raise ConfigError(f"{exc.section}.{exc.key}", exc.message) from exc
        self.state = await StateStore.open(self.storage)
        await self._open_certificates()
        self.clock = StationClock(
            float(self.state.get("clock_offset") or 0.0),
            on_adjust=lambda offset: self.state.put("clock_offset", repr(offset)),
        )
        self.settings_changed: Watched[int] = Watched(0)
        self.dm.add_listener(lambda path, value: self.settings_changed.set(self.settings_changed.value + 1))
        self.journal = Journal(self.storage)
        self.registry = default_registry()
        self.dispatcher = Dispatcher(self.registry)
        self.link = Link(
            dispatcher=self.dispatcher,
            registry=self.registry,
            settings=self.dm.settings,
            settings_changed=self.settings_changed,
        )
        self.connectors = Connectors([e.evse_id for e in config.evses], self.clock)
        self.delivery = Delivery(self.journal, self.dm.settings)
        # Firmware update block: the version of the active slot.
        self.running_version = await trio.to_thread.run_sync(slots.running_version, config.station.data_dir)
        # security block: what TLS trusts and presents (the client certificate only on profile-3 connections,
        # also after an upgrade from 2); the certificate store rebinds these callables.
        self.tls_trust = TlsTrust.from_files(config.csms.ca_file, config.security.client_identity)
        # certificates block: TLS trusts the store's CSMS roots and presents the station's current certificate
        self.tls_trust.csms_roots = functools.partial(self.certificate_store.trusted_pem, CSMS_ROOT)
        self.tls_trust.client_identity = self.identity.client_identity

    async def _open_certificates(self) -> None:
        """certificates block: the trusted roots and the station's own TLS identity, read before anything
        connects; an unreadable factory file is a ConfigError naming its key."""
        config = self.config
        try:
            self.certificate_store = await CertificateStore.open(
                self.storage,
                {
                    CSMS_ROOT: ("csms.ca_file", config.csms.ca_file),
                    MANUFACTURER_ROOT: ("firmware.manufacturer_root_file", config.firmware.manufacturer_root_file),
                },
                capacity=self._certificate_capacity,
            )
            self.identity = await StationIdentity.open(
                self.storage,
                self.state,
                config.station.data_dir,
                config.security.client_cert_file,
                config.security.client_key_file,
            )
        except ConfigError:
            self.storage.close()
            raise

    def _certificate_capacity(self) -> int | None:
        limit = self.dm.resolve("SecurityCtrlr.CertificateEntries")[0].characteristics.max_limit
        return None if limit is None else int(limit)

    def _slot_profile(self, slot: int) -> int | None:
        """The security profile of a network slot (certificates block: profile 3 needs a station certificate)."""
        if slot == 1:
            return self.config.csms.security_profile
        data = self.network.profiles.get(slot)
        return None if data is None else int(data["securityProfile"])

    def _build_blocks(self) -> list[Block]:
        """Every functional block, built from the core parts and from the blocks before it."""
        config, dm, link, clock, journal, hw = self.config, self.dm, self.link, self.clock, self.journal, self.hardware
        evse_ids = [e.evse_id for e in config.evses]
        self.provisioning = Provisioning(
            device_model=dm,
            link=link,
            state=self.state,
            clock=clock,
            charging_station=self._charging_station(),
            settings_changed=self.settings_changed,
        )
        self.network = NetworkProfiles(
            station_id=config.station.id,
            factory=config.csms,
            state=self.state,
            settings=dm.settings,
            failures=lambda: link.backoff.failures,
            password=self._password,
            trust=self.tls_trust,
            set_priority=functools.partial(dm.set_internal, "OCPPCommCtrlr.NetworkConfigurationPriority"),
        )
        self.security = SecurityEvents(
            journal=journal,
            clock=clock,
            boot_reason=self.provisioning.boot_reason,
            storage=self.storage,
            link=link,
            settings=dm.settings,
        )
        dm.add_listener(self.security.setting_changed)
        clock.add_listener(self.security.clock_moved)
        status = StatusReporter(self.connectors, lambda: dm.settings.seconds(keys.OFFLINE_THRESHOLD))
        self.runners = {}
        availability = Availability(self.state, evse_ids, self.runners)
        self.firmware_hold = InstallHold()  # firmware update: idle EVSEs Unavailable before an install
        for layout in config.evses:
            self.runners[layout.evse_id] = EvseRunner(
                layout,
                hardware=hw,
                journal=journal,
                settings=dm.settings,
                settings_changed=self.settings_changed,
                clock=clock,
                online=lambda: link.online,
                connectors=self.connectors,
                desired_operative=functools.partial(self._operative, availability, layout.evse_id),
                station_in_transaction=self._in_transaction,
            )
        self.authorizer = Authorizer(
            link,
            cache=AuthCache(self.storage, capacity_bytes=STORAGE_BYTES),
            local_list=LocalList(self.storage),
            clock=clock,
            settings=dm.settings,
        )
        # smart charging block: before transactions, which hands it a RequestStartTransaction's TxProfile
        entries = dm.resolve("SmartChargingCtrlr.Entries[ChargingProfiles]")[0].characteristics.max_limit
        self.smart_charging = SmartCharging(
            storage=self.storage,
            runners=self.runners,
            layouts=config.evses,
            link=link,
            clock=clock,
            settings=dm.settings,
            settings_changed=self.settings_changed,
            max_entries=int(entries or 0),
        )
        self.transactions = Transactions(
            runners=self.runners,
            journal=journal,
            authorizer=self.authorizer,
            link=link,
            hardware=hw,
            clock=clock,
            settings=dm.settings,
            charging_profiles=self.smart_charging,
        )
        self.triggers = TriggerMessages(self.connectors)
        # --- logs and customer information (N01, N09/N10)
        log_files = LogFiles(config.station.data_dir / "logs", config.log_file_max_bytes, config.log_file_count)
        self.diagnostics = Diagnostics(
            station_id=config.station.id,
            data_dir=config.station.data_dir,
            journal=journal,
            storage=self.storage,
            link=link,
            files=log_files,
            extra_roots=lambda: self.tls_trust.csms_roots(),
            sources={
                "DiagnosticsLog": DiagnosticsLog(log_files.directory, lambda: clock.offset),
                "SecurityLog": self.security.log,
            },
        )
        self.customer_info = CustomerInformation(
            storage=self.storage,
            cache=self.authorizer.cache,
            local_list=self.authorizer.local_list,
            link=link,
            clock=clock,
            settings=dm.settings,
        )
        self.device_notifications = DeviceNotifications(journal=journal, clock=clock)  # serial hardware (issue 12)
        return [
            self.provisioning,
            self.network,
            status,
            availability,
            self.authorizer,
            self.transactions,
            self.smart_charging,
            Reports(device_model=dm, link=link, clock=clock, settings=dm.settings),
            RemoteControl(
                runners=self.runners,
                journal=journal,
                link=link,
                hardware=hw,
                clock=clock,
                settings=dm.settings,
                restart=self.request_restart,
            ),
            self.security,
            Certificates(
                store=self.certificate_store,
                identity=self.identity,
                link=link,
                clock=clock,
                settings=dm.settings,
                security_events=self.security,
                common_name=config.station.serial_number or config.station.id,
                slot_profile=self._slot_profile,
            ),
            self.triggers,
            FirmwareUpdates(
                storage=self.storage,
                journal=journal,
                link=link,
                clock=clock,
                settings=dm.settings,
                runners=self.runners,
                hold=self.firmware_hold,
                security_events=self.security,
                manufacturer_roots=functools.partial(self.certificate_store.trusted, MANUFACTURER_ROOT),
                installer=INSTALLERS[config.firmware.installer](config.firmware, config.station.data_dir),
                config=config.firmware,
                data_dir=config.station.data_dir,
                restart=self.request_restart,
            ),
            self.diagnostics,
            self.customer_info,
        ]

    def _wire(self, blocks: list[Block]) -> None:
        """Register what every block offers; the only place blocks meet the dispatcher, link and device model."""
        self._bind_live_variables()
        for block in blocks:
            for action, handler in block.handlers().items():
                self.dispatcher.register(action, handler)
            for name, service in block.online_services().items():
                self.link.add_online_service(name, service)
            for message, trigger in block.triggers().items():
                self.triggers.register(message, trigger)
            for action, hook in block.response_hooks().items():
                self.delivery.on_response(action, hook)
            for path, provider in block.live_variables().items():
                self.dm.bind_live(path, provider)
            for path, validator in block.validators().items():
                self.dm.add_validator(path, validator)
        self.link.add_online_service("delivery", self.delivery.service)
        if isinstance(self.hardware, ShowsStationView):
            self.hardware.set_status_provider(
                lambda: hardware_events.snapshots(self.runners, self.connectors, lambda: self.link.online)
            )

    def _operative(self, availability: Availability, evse_id: int) -> bool:
        """The availability an idle EVSE should have: ChangeAvailability's; Unavailable before a firmware install."""
        return availability.operative(evse_id) and not self.firmware_hold.active

    async def _boot(self, link: Link) -> None:
        """Each connection's boot: BootNotification until Accepted, then (network block) an upgraded security
        profile becomes the floor, before any online service runs."""
        await self.provisioning.boot(link)
        await self.network.accepted(link)

    def _in_transaction(self) -> bool:
        """A transaction runs on some EVSE (AlignedDataCtrlr.SendDuringIdle looks at the whole station)."""
        return any(r.state.tx is not None for r in self.runners.values())

    def _charging_station(self) -> dict:
        s = self.config.station
        info = {"model": s.model, "vendorName": s.vendor_name}
        if s.serial_number:
            info["serialNumber"] = s.serial_number
        version = self.running_version or s.firmware_version  # an installed slot's version wins (firmware update)
        if version:
            info["firmwareVersion"] = version
        return info

    def _password(self) -> str | None:
        """The basic-auth password: the one the CSMS set (SecurityCtrlr.BasicAuthPassword), else the factory one."""
        return self.dm.settings.text(keys.BASIC_AUTH_PASSWORD) or self.config.csms.basic_auth_password

    def _bind_live_variables(self) -> None:
        """Variables whose truth lives in the config or the clock are read from there at request time."""
        station = self.config.station
        self.dm.bind_live("ChargingStation.Model", lambda: station.model)
        self.dm.bind_live("ChargingStation.VendorName", lambda: station.vendor_name)
        self.dm.bind_live("SecurityCtrlr.Identity", lambda: station.id)
        self.dm.bind_live("ClockCtrlr.DateTime", self.clock.iso)

    # --- stopping ------------------------------------------------------------------------------------

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
        await self.provisioning.restart_with_reason(reason)
        self.restart_reason = reason
        log.warning("restarting the station (%s)", reason)
        await self.stop()

    # --- running -------------------------------------------------------------------------------------

    async def run(self, *, task_status: trio.TaskStatus[None] = trio.TASK_STATUS_IGNORED) -> None:
        await self.open()
        try:
            self.blocks = self._build_blocks()
            self._wire(self.blocks)
            async with trio.open_nursery() as nursery:
                self._root = nursery.cancel_scope
                await nursery.start(self.hardware.run)
                # Schemas compile per action on first use, off the event loop (`appliance.link.rpc`).
                for block in self.blocks:
                    await nursery.start(block.run)
                for runner in self.runners.values():
                    await hardware_events.sync(self.hardware, runner)  # an EV still plugged in is plugged in
                    await nursery.start(runner.run)
                nursery.start_soon(
                    supervise,
                    "hardware events",
                    lambda: hardware_events.route(
                        self.hardware,
                        self.runners,
                        self.transactions.on_card,
                        nursery,
                        self.device_notifications.notify,
                    ),
                )
                nursery.start_soon(self.link.run, self.network.endpoint, self._boot, name="link")
                nursery.start_soon(supervise, "journal housekeeping", self._housekeeping)
                log.info(
                    "station %s running (%d EVSEs, data in %s)",
                    self.config.station.id,
                    len(self.config.evses),
                    self.config.station.data_dir,
                )
                task_status.started()
        finally:
            self.storage.close()

    async def _housekeeping(self) -> None:
        """Keep the journal bounded: prune old delivered messages, then checkpoint the WAL."""
        retention = self.config.journal
        while True:
            cutoff = time.time() - retention.retention_days * 86400
            older_than = format_timestamp(cutoff)
            removed = await self.journal.run_sync(
                functools.partial(self.journal.store.prune, keep_rows=retention.retention_rows, older_than=older_than)
            )
            if removed:
                log.info("journal: pruned %d delivered message(s)", removed)
            await self.storage.run(self.storage.checkpoint)
            await trio.sleep(HOUSEKEEPING_EVERY)
