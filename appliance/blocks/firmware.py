"""Functional block L (firmware management): UpdateFirmware, FirmwareStatusNotification, and the update itself.

One update at a time. A new UpdateFirmware cancels the running one while nothing has been written to a slot yet
(scheduled, downloading, downloaded, verified, waiting to install): the new request is checked first (one that
would be refused leaves the running update alone), then the running one is cancelled — its transfer interrupted,
its image removed, its hold on the connectors released — and the answer is AcceptedCanceled (L01.FR.24,
TC_L_10). Once Installing has begun it cannot be cancelled: the new request is Rejected (UpdateInProgress). Its
course, each step a FirmwareStatusNotification with the requestId, journaled before
it is sent (the delivery loop sends it once the boot is accepted, so none is lost to a cable or a power cut):

    UpdateFirmware ─ signing certificate checked against the ManufacturerRootCertificates (before any download)
                     ✗ InvalidCertificate + security event InvalidFirmwareSigningCertificate
    [DownloadScheduled until retrieveDateTime] → Downloading (retries + 1 attempts, retryInterval apart)
                     ✗ DownloadFailed
    Downloaded → signature over the file ✗ InvalidSignature + security event InvalidFirmwareSignature
    SignatureVerified → [InstallScheduled until installDateTime, or while a transaction runs]
    Installing (every idle connector Unavailable unless AllowNewSessionsPendingFirmwareUpdate; all EVSEs idle)
                     ✗ InstallVerificationFailed / InstallationFailed (connectors back, old firmware keeps running)
    InstallRebooting → restart (boot reason FirmwareUpdate) → BootNotification with the new firmwareVersion,
    Accepted → Installed + security event FirmwareUpdated, or InstallationFailed after a rollback.

The stage, the request, the download attempts and the image's path are in the database (`firmware.update`)
before the station acts on them, so after a power cut the update resumes where it was (a download starts
again and counts as an attempt; an interrupted install is redone from the verified image; after the restart
the outcome is decided from the slots' boot record) — never a station stuck in Installing. A status is never
journaled twice in a row for the same request, so a restart between journaling a status and recording the
stage does not repeat it.
"""

from __future__ import annotations

import logging
import ssl
from collections.abc import Awaitable, Callable, Mapping
from pathlib import Path
from typing import TYPE_CHECKING, Any

import trio

from appliance.blocks.base import Block, TriggerHandler, TriggerRequest
from appliance.blocks.security import SecurityEvents
from appliance.clock import StationClock, parse_iso
from appliance.config import FirmwareConfig
from appliance.devicemodel import settings as keys
from appliance.devicemodel.settings import Settings
from appliance.evse.runner import EvseRunner
from appliance.firmware import download, signing, slots
from appliance.firmware.installers import Installer, InstallFailed
from appliance.firmware.update import UpdateRecord, UpdateStore
from appliance.journal.journal import Journal
from appliance.journal.store import Append
from appliance.link.link import Link, OnlineService
from appliance.link.rpc import CallFailed, Handler, Reply
from appliance.storage import Storage
from appliance.util.supervise import supervise

if TYPE_CHECKING:
    from appliance.certs.crypto import x509

log = logging.getLogger("appliance.firmware")

#: Statuses after which the update is over.
FINAL = ("Installed", "DownloadFailed", "InvalidSignature", "InstallVerificationFailed", "InstallationFailed")
#: Stages a new UpdateFirmware may cancel: nothing has been written to a slot yet.
CANCELLABLE = ("Accepted", "DownloadScheduled", "Downloading", "Downloaded", "SignatureVerified", "InstallScheduled")
#: The security event each of these final statuses is followed by (L01 step 9 after InvalidSignature; L01 after
#: Installed).
EVENT_AFTER = {"InvalidSignature": "InvalidFirmwareSignature", "Installed": "FirmwareUpdated"}
#: When the CSMS leaves them out (L01: "left to the Charging Station").
DEFAULT_RETRIES = 2
DEFAULT_RETRY_INTERVAL = 30


class InstallHold:
    """While set, every EVSE without a transaction is Unavailable (wired into the runners' desired
    availability), so no new session starts before the install."""

    def __init__(self) -> None:
        self.active = False


class FirmwareUpdates(Block):
    migrations = ("0008_firmware.sql",)

    def __init__(
        self,
        *,
        storage: Storage,
        journal: Journal,
        link: Link,
        clock: StationClock,
        settings: Settings,
        runners: dict[int, EvseRunner],
        hold: InstallHold,
        security_events: SecurityEvents,
        manufacturer_roots: Callable[[], list[x509.Certificate]],
        installer: Installer,
        config: FirmwareConfig,
        data_dir: Path,
        restart: Callable[[str], Awaitable[None]],
    ) -> None:
        self._store = UpdateStore(storage)
        self._journal = journal
        self._link = link
        self._clock = clock
        self._settings = settings
        self._runners = runners
        self._hold = hold
        self._events = security_events
        self._roots = manufacturer_roots
        self._installer = installer
        self._config = config
        self._download_dir = slots.firmware_dir(data_dir) / "download"
        self._restart = restart
        self._record: UpdateRecord | None = None
        self._wake = trio.Event()
        #: The running update's scope (a new UpdateFirmware cancels it), and set when the worker has left it.
        self._scope: trio.CancelScope | None = None
        self._left = trio.Event()
        self._accepted = trio.Event()

    # --- what the block offers ---------------------------------------------------------------------------

    def handlers(self) -> Mapping[str, Handler]:
        return {"UpdateFirmware": self._update_firmware}

    def triggers(self) -> Mapping[str, TriggerHandler]:
        return {"FirmwareStatusNotification": self._trigger}

    def online_services(self) -> Mapping[str, OnlineService]:
        return {"firmware": self._boot_accepted}

    async def run(self, *, task_status: trio.TaskStatus[None] = trio.TASK_STATUS_IGNORED) -> None:
        self._record = await self._store.load()
        if self._record is not None:
            log.info("resuming firmware update %d at %s", self._record.request_id, self._record.stage)
        task_status.started()
        await supervise("firmware update", self._worker)

    async def _boot_accepted(self, link: Link) -> None:
        self._accepted.set()

    # --- the CSMS's requests -----------------------------------------------------------------------------

    @property
    def status(self) -> str:
        """The status a TriggerMessage reports (L01.FR.25/26): Idle, or the last one of the running update."""
        record = self._record
        if record is None or record.stage in FINAL:  # over: its record goes a moment after its final status
            return "Idle"
        if record.stage == "Accepted":  # accepted, its first status about to go
            retrieve = parse_iso(record.request["firmware"]["retrieveDateTime"]).timestamp()
            return "DownloadScheduled" if retrieve > self._clock.timestamp() else "Downloading"
        return record.stage

    async def _trigger(self, request: TriggerRequest) -> Reply:
        payload: dict[str, Any] = {"status": self.status}
        if self._record is not None and payload["status"] != "Idle":
            payload["requestId"] = self._record.request_id

        async def send() -> None:
            try:
                await self._link.call("FirmwareStatusNotification", payload)
            except CallFailed as exc:
                log.warning("triggered FirmwareStatusNotification not delivered: %s", exc)

        return Reply({"status": "Accepted"}, then=send)

    async def _update_firmware(self, payload: dict) -> dict | Reply:
        firmware = payload["firmware"]
        request_id = payload["requestId"]
        running = self._record
        if running is not None and running.stage not in CANCELLABLE:
            log.warning(
                "UpdateFirmware %d rejected: update %d is %s and cannot be cancelled any more",
                request_id,
                running.request_id,
                running.stage,
            )
            return {
                "status": "Rejected",
                "statusInfo": {
                    "reasonCode": "UpdateInProgress",
                    "additionalInfo": f"update {running.request_id} is {running.stage}: it cannot be cancelled",
                },
            }
        if not firmware.get("signingCertificate") or not firmware.get("signature"):
            return {
                "status": "Rejected",
                "statusInfo": {"reasonCode": "NotSigned", "additionalInfo": "only signed firmware is installed"},
            }
        problem = download.check_url(firmware["location"])
        if problem:
            return {
                "status": "Rejected",
                "statusInfo": {"reasonCode": "InvalidLocation", "additionalInfo": problem[:500]},
            }
        try:
            chain = signing.load_chain(firmware["signingCertificate"])
            signing.check_chain(chain, self._roots(), self._clock.now())
        except signing.CertificateProblem as exc:
            log.warning("UpdateFirmware %d: signing certificate refused: %s", request_id, exc)
            await self._events.raise_event("InvalidFirmwareSigningCertificate", str(exc)[:255])
            return {
                "status": "InvalidCertificate",
                "statusInfo": {"reasonCode": "InvalidCertificate", "additionalInfo": str(exc)[:500]},
            }
        request = {
            "firmware": firmware,
            "retries": payload.get("retries", DEFAULT_RETRIES),
            "retryInterval": payload.get("retryInterval", DEFAULT_RETRY_INTERVAL),
        }
        if running is not None:
            await self._cancel(running)
        record = UpdateRecord(request_id, "Accepted", request)
        await self._store.save(record)  # durable before the CSMS hears Accepted (replacing a cancelled one's)
        self._record = record
        log.info("UpdateFirmware %d accepted: %s", request_id, download._shown(firmware["location"]))

        async def start() -> None:
            self._wake.set()

        status = "Accepted" if running is None else "AcceptedCanceled"
        return Reply({"status": status}, then=start, abandon=self._wake.set)

    async def _cancel(self, running: UpdateRecord) -> None:
        """Stop the running update (L01.FR.24) and tidy what it leaves: its image, its hold on the connectors."""
        log.warning("firmware update %d cancelled at %s by a new UpdateFirmware", running.request_id, running.stage)
        self._record = None  # the worker, once out of the update, waits for the next one
        scope, left = self._scope, self._left
        with trio.CancelScope(shield=True):  # a moment: the download thread's socket is shut down at once
            if scope is not None:
                scope.cancel()
                await left.wait()
            self._record = None  # again: a status the update was journaling when cancelled may have set it back
            await trio.to_thread.run_sync(self._remove_images, running)
            await self._release()

    def _remove_images(self, running: UpdateRecord) -> None:
        for image in (running.image_path, str(self._download_dir / f"update-{running.request_id}.img")):
            if image:
                Path(image).unlink(missing_ok=True)

    # --- the update --------------------------------------------------------------------------------------

    async def _worker(self) -> None:
        while True:
            if self._record is None:
                await self._wake.wait()
                self._wake = trio.Event()
                continue
            self._left = trio.Event()
            with trio.CancelScope() as scope:
                self._scope = scope
                await self._carry_out()
            self._scope = None
            self._left.set()
            if scope.cancelled_caught:  # the canceller installs the next update and wakes us
                await self._wake.wait()
                self._wake = trio.Event()

    async def _carry_out(self) -> None:
        record = self._record
        assert record is not None
        last = await self._store.last_journaled_status(record.request_id)
        # A record still at Accepted has journaled nothing yet: a final status of its requestId belongs to an
        # earlier update (CSMSs exist that send requestId 1 every time).
        if record.stage != "Accepted" and last in FINAL:
            # A restart came after the last status and before the record was removed; perhaps also before
            # the security event that follows the status was journaled.
            kind = EVENT_AFTER.get(last)
            if kind is not None and not await self._store.event_after_status(record.request_id, last, kind):
                log.warning(
                    "firmware update %d: restarted between %s and its security event %s; raising it now",
                    record.request_id,
                    last,
                    kind,
                )
                await self._events.raise_event(kind, f"requestId {record.request_id}: {last} (before a restart)")
            await self._end()
            return
        if record.stage in ("Accepted", "DownloadScheduled", "Downloading") and not await self._download():
            return
        if self._stage == "Downloaded" and not await self._verify():
            return
        if self._stage in ("SignatureVerified", "InstallScheduled", "Installing") and not await self._install():
            return
        if self._stage == "InstallRebooting":
            await self._complete()

    @property
    def _stage(self) -> str | None:
        return self._record.stage if self._record else None

    async def _status(self, status: str, **changes: Any) -> None:
        """Journal `status` (unless it is already the last one journaled for this request), then record it."""
        record = self._record
        assert record is not None
        if await self._store.last_journaled_status(record.request_id) != status:
            await self._journal.append(
                Append("FirmwareStatusNotification", {"status": status, "requestId": record.request_id})
            )
        log.info("firmware update %d: %s", record.request_id, status)
        self._record = record.at(status, **changes)
        await self._store.save(self._record)

    async def _end(self) -> None:
        record = self._record
        self._record = None
        await self._store.clear()
        if record is not None and record.image_path:
            await trio.to_thread.run_sync(lambda: Path(record.image_path or "").unlink(missing_ok=True))
        await self._release()

    async def _wait_until(self, moment: str) -> bool:
        """Sleep until the station clock reaches `moment`; whether there was anything to wait for."""
        target = parse_iso(moment).timestamp()
        if target <= self._clock.timestamp():
            return False
        # Re-read the clock every minute: the CSMS may set it meanwhile.
        while (left := target - self._clock.timestamp()) > 0:  # noqa: ASYNC110 - waiting on the wall clock
            await trio.sleep(min(left, 60))
        return True

    async def _download(self) -> bool:
        record = self._record
        assert record is not None
        firmware = record.request["firmware"]
        if parse_iso(firmware["retrieveDateTime"]).timestamp() > self._clock.timestamp():
            await self._status("DownloadScheduled")
            await self._wait_until(firmware["retrieveDateTime"])
        allowed = int(record.request["retries"]) + 1
        interval = float(record.request["retryInterval"])
        target = self._download_dir / f"update-{record.request_id}.img"
        await trio.to_thread.run_sync(self._make_download_dir)
        limits = download.Limits(
            self._config.connect_timeout,
            self._config.stall_timeout,
            self._config.transfer_timeout,
            self._config.max_image_bytes,
            self._config.reserve_bytes,
        )
        while True:
            record = self._record
            assert record is not None
            if record.attempts >= allowed:
                log.error("firmware update %d: download failed after %d attempt(s)", record.request_id, allowed)
                await self._status("DownloadFailed")
                await self._end()
                return False
            attempt = record.attempts + 1
            self._record = record.at(record.stage, attempts=attempt)
            await self._store.save(self._record)  # counted before it begins: a power cut cannot reset it
            await self._status("Downloading")
            try:
                size = await download.download(
                    firmware["location"], target, limits, ssl_context=self._ssl_context, attempt_no=attempt
                )
            except download.DownloadError as exc:
                log.warning(
                    "firmware update %d: download attempt %d of %d failed: %s", record.request_id, attempt, allowed, exc
                )
                if attempt < allowed:
                    await trio.sleep(interval)
                continue
            log.info("firmware update %d: downloaded %d bytes", record.request_id, size)
            await self._status("Downloaded", image_path=str(target))
            return True

    def _make_download_dir(self) -> None:
        """data_dir/firmware and its download directory, readable by the station's user only."""
        for directory in (self._download_dir.parent, self._download_dir):
            directory.mkdir(mode=0o700, exist_ok=True)

    def _ssl_context(self) -> ssl.SSLContext:
        """For HTTPS downloads (called in the download thread: reading the CA file is disk work)."""
        ca = self._config.ca_file
        return ssl.create_default_context(cafile=str(ca) if ca else None)

    async def _verify(self) -> bool:
        record = self._record
        assert record is not None and record.image_path is not None
        firmware = record.request["firmware"]
        certificate = signing.load_chain(firmware["signingCertificate"])[0]
        image_path = Path(record.image_path)
        valid = await trio.to_thread.run_sync(
            lambda: image_path.is_file() and signing.verify_signature(certificate, firmware["signature"], image_path)
        )
        if not valid:
            log.error("firmware update %d: the signature does not match the downloaded file", record.request_id)
            await self._status("InvalidSignature")
            await self._events.raise_event(
                "InvalidFirmwareSignature", f"requestId {record.request_id}: signature does not match the image"
            )
            await self._end()
            return False
        await self._status("SignatureVerified")
        return True

    async def _install(self) -> bool:
        record = self._record
        assert record is not None and record.image_path is not None
        install_at = record.request["firmware"].get("installDateTime")
        if install_at and parse_iso(install_at).timestamp() > self._clock.timestamp():
            await self._status("InstallScheduled")
            await self._wait_until(install_at)
        if not self._settings.flag(keys.ALLOW_NEW_SESSIONS_PENDING_FIRMWARE_UPDATE):
            await self._apply_hold(True)
        if self._busy() and self._stage not in ("InstallScheduled", "Installing"):
            await self._status("InstallScheduled")  # waiting for the transactions (TC_L_15)
        await self._wait_idle()
        await self._apply_hold(True)  # nothing new may start now, whatever the setting
        record = self._record
        assert record is not None and record.image_path is not None
        if record.stage == "Installing" and await self._installer.activated(record):
            self._record = record.at("InstallRebooting")  # the restart came right after activation
            await self._store.save(self._record)
            return True
        await self._status("Installing")
        try:
            installed = await self._installer.install(Path(record.image_path), record)
        except InstallFailed as exc:
            log.error("firmware update %d: %s: %s", record.request_id, exc.status, exc)
            await self._status(exc.status)
            await self._end()
            return False
        assert self._record is not None
        self._record = self._record.at("Installing", target_slot=installed.slot, target_version=installed.version)
        await self._store.save(self._record)
        await self._installer.activate(self._record)
        await self._status("InstallRebooting")
        await self._drain_journal()
        await self._restart("FirmwareUpdate")
        return False

    async def _complete(self) -> None:
        """After the restart: once the CSMS has accepted the boot, the outcome."""
        await self._accepted.wait()
        record = self._record
        assert record is not None
        status, detail = await self._installer.outcome(record)
        log.log(
            logging.INFO if status == "Installed" else logging.ERROR,
            "firmware update %d: %s (%s)",
            record.request_id,
            status,
            detail,
        )
        await self._status(status)
        if status == "Installed":
            await self._events.raise_event("FirmwareUpdated", detail[:255])
        await self._end()

    # --- connectors and transactions ---------------------------------------------------------------------

    def _busy(self) -> bool:
        return any(r.state.tx is not None for r in self._runners.values())

    async def _apply_hold(self, on: bool) -> None:
        self._hold.active = on
        for runner in self._runners.values():
            await runner.apply(lambda s: [])  # the runner applies the wanted availability when idle

    async def _release(self) -> None:
        if self._hold.active:
            await self._apply_hold(False)

    async def _wait_idle(self) -> None:
        while self._busy():
            log.info(
                "firmware install waits for %d transaction(s) to end",
                sum(r.state.tx is not None for r in self._runners.values()),
            )
            async with trio.open_nursery() as nursery:
                for runner in self._runners.values():

                    async def changed(r: EvseRunner = runner) -> None:
                        await r.changed.wait_change()
                        nursery.cancel_scope.cancel()

                    nursery.start_soon(changed)

    async def _drain_journal(self) -> None:
        """Give the delivery task a moment to hand InstallRebooting to the CSMS before the restart (bounded)."""
        with trio.move_on_after(self._settings.seconds(keys.MESSAGE_TIMEOUT)):
            while self._link.online and await self._journal.run_sync(self._journal.store.pending_count) > 0:  # noqa: ASYNC110
                await trio.sleep(0.05)
