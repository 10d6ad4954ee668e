"""Part 6 L (secure firmware update, L01) and TC_F_19 (TriggerMessage FirmwareStatusNotification while
downloading), against the real loopback CSMS and real file servers (HTTP, HTTPS, FTP in their own threads).

The station under test uses the built-in `slots` installer. "Reboot before activation" is a real end of the
station's run (the process would re-execute, tests/firmware/test_firmware_process.py shows that), then the
launcher step of the next start, then the next incarnation on the same data directory: it boots with reason
FirmwareUpdate and the image's version, then reports Installed and the security event FirmwareUpdated.
Not applicable: TC_L_11 (for stations that cannot cancel an update: this one cancels, TC_L_10), TC_L_12/13
(for stations that cannot download during a transaction: this one downloads and verifies at once and only the
install waits, TC_L_14/15), TC_L_16 (for stations that install during a transaction: this one cannot).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
import trio
import trustme

from appliance.firmware import slots
from appliance.lab.csms import LoopbackCsms
from tests.conformance.firmware_helpers import (
    NEW_VERSION,
    FirmwareLab,
    firmware_lab,
    fw_payloads,
    fw_statuses,
    iso,
    relaunch,
    wait_fw_status,
    wait_restart,
)
from tests.conformance.helpers import STATION_ID
from tests.conformance.remote_helpers import (
    AUTH_ONLINE,
    HardwareDriver,
    call,
    energy_transfer_started,
    incarnation,
    last_status,
    security_events,
    station_up,
    wait_boot,
)
from tests.firmware.servers import ftp_server, http_server
from tests.harness import make_config

SUCCESS = ["Downloading", "Downloaded", "SignatureVerified", "Installing", "InstallRebooting"]


@pytest.fixture
def lab(data_dir: Path) -> Any:
    with firmware_lab(data_dir / "lab") as lab:
        yield lab


def _lab_dir(data_dir: Path) -> Path:
    (data_dir / "lab").mkdir(exist_ok=True)
    return data_dir / "lab"


@pytest.fixture
def lab_dir(data_dir: Path) -> Path:
    return _lab_dir(data_dir)


def _config(csms: LoopbackCsms, data_dir: Path, lab: FirmwareLab, variables: dict | None = None, **keys: Any) -> Any:
    return make_config(data_dir, csms, variables=variables, extra=lab.config_extra(**keys))


async def _update(csms: LoopbackCsms, payload: dict[str, Any]) -> dict[str, Any]:
    return await call(csms, "UpdateFirmware", payload)


async def _after_reboot(csms: LoopbackCsms, data_dir: Path, config: Any, mark: int, version: str = NEW_VERSION) -> None:
    """The station's next start after InstallRebooting: boot reason FirmwareUpdate and the new version, every
    connector Available again, then Installed and FirmwareUpdated."""
    relaunch(data_dir)
    async with incarnation(csms, config, since=mark):
        boot = await wait_boot(csms, mark)
        assert boot["reason"] == "FirmwareUpdate"
        assert boot["chargingStation"]["firmwareVersion"] == version
        await wait_fw_status(csms, mark, "Installed")
        await csms.trio.wait_for(
            lambda: any(e["type"] == "FirmwareUpdated" for e in security_events(csms, mark)),
            10,
            what="security event FirmwareUpdated",
        )
        assert set(last_status(csms, mark).values()) == {"Available"}
    assert slots.running_version(data_dir) == version


async def _install_flow(
    csms: LoopbackCsms, data_dir: Path, lab: FirmwareLab, location: str, config: Any | None = None
) -> None:
    config = config or _config(csms, data_dir, lab)
    async with incarnation(csms, config) as station:
        mark = csms.mark()
        answer = await _update(csms, lab.request(location, lab.image()))
        assert answer["status"] == "Accepted"
        await wait_fw_status(csms, mark, "InstallRebooting")
        await wait_restart(station)
        assert fw_statuses(csms, mark) == SUCCESS
        assert all(p["requestId"] == 1 for p in fw_payloads(csms, mark))
        # Before installing, every idle connector went Unavailable (step 9).
        assert {(s["evseId"], s["connectorStatus"]) for s in csms.actions(STATION_ID, "StatusNotification", mark)} >= {
            (1, "Unavailable"),
            (2, "Unavailable"),
        }
        reboot_mark = csms.mark()
    await _after_reboot(csms, data_dir, config, reboot_mark)
    assert fw_statuses(csms, mark) == [*SUCCESS, "Installed"]


async def test_TC_L_01_installation_successful_http(csms: LoopbackCsms, data_dir: Path, lab: FirmwareLab) -> None:
    await _install_flow(csms, data_dir, lab, lab.publish("fw.img", lab.image()))


async def test_TC_L_01_installation_successful_https(csms: LoopbackCsms, data_dir: Path, lab: FirmwareLab) -> None:
    ca = trustme.CA()
    ca_file = data_dir / "lab" / "files-ca.pem"
    ca.cert_pem.write_to_path(str(ca_file))
    with http_server(tls=ca) as https:
        https.files["/fw.img"] = lab.image().read_bytes()
        await _install_flow(
            csms, data_dir, lab, https.url("/fw.img"), _config(csms, data_dir, lab, ca_file=str(ca_file))
        )


async def test_TC_L_01_installation_successful_ftp(csms: LoopbackCsms, data_dir: Path, lab: FirmwareLab) -> None:
    root = data_dir / "lab" / "ftp"
    root.mkdir()
    (root / "fw.img").write_bytes(lab.image().read_bytes())
    with ftp_server(root) as ftp:
        await _install_flow(csms, data_dir, lab, ftp.url("fw.img", user="fw"))


async def test_TC_L_01_ecdsa_signed(csms: LoopbackCsms, data_dir: Path) -> None:
    with firmware_lab(_lab_dir(data_dir), kind="ec") as lab:
        await _install_flow(csms, data_dir, lab, lab.publish("fw.img", lab.image()))


async def test_TC_L_02_install_scheduled(csms: LoopbackCsms, data_dir: Path, lab: FirmwareLab) -> None:
    config = _config(csms, data_dir, lab)
    async with incarnation(csms, config) as station:
        mark = csms.mark()
        location = lab.publish("fw.img", lab.image())
        answer = await _update(csms, lab.request(location, lab.image(), install=iso(seconds=3)))
        assert answer["status"] == "Accepted"
        await wait_fw_status(csms, mark, "InstallScheduled")
        assert fw_statuses(csms, mark) == ["Downloading", "Downloaded", "SignatureVerified", "InstallScheduled"]
        # Triggered status while scheduled: the true current one, with its requestId.
        trigger_mark = csms.mark()
        await call(csms, "TriggerMessage", {"requestedMessage": "FirmwareStatusNotification"})
        await csms.trio.wait_for(lambda: fw_payloads(csms, trigger_mark), 5, what="triggered status")
        assert fw_payloads(csms, trigger_mark)[0] == {"status": "InstallScheduled", "requestId": 1}
        await wait_fw_status(csms, mark, "InstallRebooting", timeout=15)
        await wait_restart(station)
        reboot_mark = csms.mark()
    await _after_reboot(csms, data_dir, config, reboot_mark)


async def test_TC_L_03_download_scheduled(csms: LoopbackCsms, data_dir: Path, lab: FirmwareLab) -> None:
    config = _config(csms, data_dir, lab)
    async with incarnation(csms, config) as station:
        mark = csms.mark()
        location = lab.publish("fw.img", lab.image())
        answer = await _update(csms, lab.request(location, lab.image(), retrieve=iso(seconds=2)))
        assert answer["status"] == "Accepted"
        await wait_fw_status(csms, mark, "DownloadScheduled")
        assert lab.server.requests["/fw.img"] == 0  # nothing fetched before retrieveDateTime
        await wait_fw_status(csms, mark, "InstallRebooting")
        await wait_restart(station)
        assert fw_statuses(csms, mark) == ["DownloadScheduled", *SUCCESS]
        reboot_mark = csms.mark()
    await _after_reboot(csms, data_dir, config, reboot_mark)


@pytest.mark.parametrize("why", ["foreign root", "expired"])
async def test_TC_L_05_invalid_certificate(csms: LoopbackCsms, data_dir: Path, lab: FirmwareLab, why: str) -> None:
    from tests.firmware.pki import Manufacturer

    signer = (
        Manufacturer(data_dir / "lab", "Stranger Root").signer()
        if why == "foreign root"
        else lab.mfr.signer(days=(-10, -1))
    )
    async with station_up(csms, data_dir, extra=lab.config_extra()):
        mark = csms.mark()
        location = lab.publish("fw.img", lab.image())
        answer = await _update(csms, lab.request(location, lab.image(), signer=signer))
        assert answer["status"] in ("InvalidCertificate", "RevokedCertificate")
        await csms.trio.wait_for(
            lambda: any(e["type"] == "InvalidFirmwareSigningCertificate" for e in security_events(csms, mark)),
            5,
            what="security event InvalidFirmwareSigningCertificate",
        )
        assert lab.server.requests["/fw.img"] == 0  # checked before anything is downloaded
        assert fw_statuses(csms, mark) == []


async def test_TC_L_06_invalid_signature(csms: LoopbackCsms, data_dir: Path, lab: FirmwareLab) -> None:
    async with station_up(csms, data_dir, extra=lab.config_extra()):
        mark = csms.mark()
        location = lab.publish("fw.img", lab.image())
        payload = lab.request(location, lab.image())
        payload["firmware"]["signature"] = lab.mfr.signer().sign(lab.image())  # a real signature, another key
        assert (await _update(csms, payload))["status"] == "Accepted"
        await wait_fw_status(csms, mark, "InvalidSignature")
        await csms.trio.wait_for(
            lambda: any(e["type"] == "InvalidFirmwareSignature" for e in security_events(csms, mark)),
            5,
            what="security event InvalidFirmwareSignature",
        )
        assert fw_statuses(csms, mark) == ["Downloading", "Downloaded", "InvalidSignature"]
        await _idle_again(csms)


async def _idle_again(csms: LoopbackCsms) -> None:
    """After a failed update the station is Idle again and takes the next update request."""
    mark = csms.mark()
    await call(csms, "TriggerMessage", {"requestedMessage": "FirmwareStatusNotification"})
    await csms.trio.wait_for(lambda: fw_payloads(csms, mark), 5, what="triggered status")
    assert fw_payloads(csms, mark)[0] == {"status": "Idle"}


async def test_TC_L_07_download_failed_after_retries(csms: LoopbackCsms, data_dir: Path, lab: FirmwareLab) -> None:
    async with station_up(csms, data_dir, extra=lab.config_extra()):
        mark = csms.mark()
        location = lab.publish("fw.img", lab.image()) + "_does_not_exist"
        answer = await _update(csms, lab.request(location, lab.image(), retries=2, retryInterval=0))
        assert answer["status"] == "Accepted"
        await wait_fw_status(csms, mark, "DownloadFailed")
        assert fw_statuses(csms, mark) == ["Downloading", "DownloadFailed"]
        assert lab.server.requests["/fw.img_does_not_exist"] == 3  # 2 retries = 3 attempts
        await _idle_again(csms)


@pytest.mark.parametrize("what", ["foreign file", "damaged image"])
async def test_TC_L_08_install_verification_failed(
    csms: LoopbackCsms, data_dir: Path, lab: FirmwareLab, what: str
) -> None:
    """Correctly signed, but not a sound image: InstallVerificationFailed, connectors back, no restart, the old
    version keeps running."""
    bad = data_dir / "lab" / "bad.img"
    if what == "foreign file":
        bad.write_bytes(b"MZ\x90\x00" + bytes(10_000))
    else:
        data = bytearray(lab.image().read_bytes())
        data[data.find(bytes(range(256))) + 10] ^= 0x01
        bad.write_bytes(bytes(data))
    async with station_up(csms, data_dir, extra=lab.config_extra()) as station:
        mark = csms.mark()
        answer = await _update(csms, lab.request(lab.publish("bad.img", bad), bad))
        assert answer["status"] == "Accepted"
        await wait_fw_status(csms, mark, "InstallVerificationFailed")
        assert fw_statuses(csms, mark) == [
            "Downloading",
            "Downloaded",
            "SignatureVerified",
            "Installing",
            "InstallVerificationFailed",
        ]
        await csms.trio.wait_for(
            lambda: set(last_status(csms, mark).values()) == {"Available"}, 5, what="connectors Available again"
        )
        assert station.restart_reason is None
        assert slots.running_version(data_dir) is None  # still the factory firmware
        await _idle_again(csms)


async def test_TC_L_10_accepted_canceled(csms: LoopbackCsms, data_dir: Path, lab: FirmwareLab) -> None:
    """TC_L_10_CS (L01.FR.24): a second UpdateFirmware while the first downloads → AcceptedCanceled; the first
    download ends (its partial file removed) and the second update runs its whole course: Downloading, Downloaded,
    SignatureVerified, Installing, InstallRebooting, then after the restart Installed — every status carrying the
    second requestId."""
    config = _config(csms, data_dir, lab)
    async with incarnation(csms, config) as station:
        mark = csms.mark()
        old = lab.publish("old.img", lab.image())
        lab.server.delay["/old.img"] = 30  # never hurried: only the cancellation ends this download
        assert (await _update(csms, lab.request(old, lab.image())))["status"] == "Accepted"
        await wait_fw_status(csms, mark, "Downloading")
        await csms.trio.wait_for(lambda: lab.server.requests["/old.img"] == 1, 5, what="the first GET")
        second_mark = csms.mark()
        location = lab.publish("fw.img", lab.image())
        second = await _update(csms, lab.request(location, lab.image(), request_id=2))
        assert second["status"] == "AcceptedCanceled", second
        await wait_fw_status(csms, second_mark, "InstallRebooting")
        await wait_restart(station)
        assert fw_statuses(csms, second_mark) == SUCCESS
        assert {p["requestId"] for p in fw_payloads(csms, second_mark)} == {2}
        assert lab.server.requests["/old.img"] == 1  # the cancelled update was not retried
        assert not any((data_dir / "firmware" / "download").glob("update-1.*"))  # nor left behind
        reboot_mark = csms.mark()
    await _after_reboot(csms, data_dir, config, reboot_mark)


async def test_an_install_under_way_cannot_be_cancelled(csms: LoopbackCsms, data_dir: Path, lab: FirmwareLab) -> None:
    """Beyond TC_L_10: once the image is being installed, a new UpdateFirmware is Rejected (UpdateInProgress) and
    the first update goes on to its end (here the updater fails: InstallationFailed)."""
    go = data_dir / "installer.go"
    script = f"while [ ! -e {go} ]; do sleep 0.05; done; exit 1"
    config = _config(csms, data_dir, lab, installer="command", install_command=f"/bin/sh -c '{script}' installer")
    async with incarnation(csms, config):
        mark = csms.mark()
        location = lab.publish("fw.img", lab.image())
        assert (await _update(csms, lab.request(location, lab.image())))["status"] == "Accepted"
        await wait_fw_status(csms, mark, "Installing")
        second = await _update(csms, lab.request(location, lab.image(), request_id=2))
        assert second["status"] == "Rejected" and second["statusInfo"]["reasonCode"] == "UpdateInProgress"
        go.touch()
        await wait_fw_status(csms, mark, "InstallationFailed")
        assert fw_statuses(csms, mark) == [
            "Downloading",
            "Downloaded",
            "SignatureVerified",
            "Installing",
            "InstallationFailed",
        ]
        assert all(p["requestId"] == 1 for p in fw_payloads(csms, mark))


async def test_TC_L_15_install_waits_for_the_transaction(csms: LoopbackCsms, data_dir: Path, lab: FirmwareLab) -> None:
    """AllowNewSessionsPendingFirmwareUpdate false: InstallScheduled while EVSE 1 charges, the idle EVSE 2 goes
    Unavailable at once, EVSE 1 when its transaction ends; then Installing, the restart, Installed."""
    config = _config(csms, data_dir, lab, variables={**AUTH_ONLINE})
    async with incarnation(csms, config) as station:
        driver = HardwareDriver(station)
        await energy_transfer_started(csms, driver, 1)
        mark = csms.mark()
        location = lab.publish("fw.img", lab.image())
        assert (await _update(csms, lab.request(location, lab.image())))["status"] == "Accepted"
        await wait_fw_status(csms, mark, "InstallScheduled")
        await csms.trio.wait_for(
            lambda: last_status(csms, mark).get((2, 1)) == "Unavailable", 5, what="idle EVSE 2 Unavailable"
        )
        await trio.sleep(0.5)
        assert "Installing" not in fw_statuses(csms, mark)  # not while the transaction runs
        await driver.plug(2)  # a new EV on the Unavailable EVSE starts nothing
        await driver.unplug(1)  # ParkingBayUnoccupied: the transaction ends
        await wait_fw_status(csms, mark, "InstallRebooting")
        assert fw_statuses(csms, mark) == [
            "Downloading",
            "Downloaded",
            "SignatureVerified",
            "InstallScheduled",
            "Installing",
            "InstallRebooting",
        ]
        assert last_status(csms, mark).get((1, 1)) == "Unavailable"
        started = [e for e in csms.actions(STATION_ID, "TransactionEvent", mark) if e["eventType"] == "Started"]
        assert started == []
        await driver.unplug(2)
        await wait_restart(station)
        reboot_mark = csms.mark()
    await _after_reboot(csms, data_dir, config, reboot_mark)


async def test_TC_L_14_new_sessions_allowed_pending_install(
    csms: LoopbackCsms, data_dir: Path, lab: FirmwareLab
) -> None:
    """AllowNewSessionsPendingFirmwareUpdate true: InstallScheduled while EVSE 1 charges, a second session may
    start on EVSE 2; the install begins when both have ended."""
    config = _config(
        csms, data_dir, lab, variables={**AUTH_ONLINE, "ChargingStation.AllowNewSessionsPendingFirmwareUpdate": True}
    )
    async with incarnation(csms, config) as station:
        driver = HardwareDriver(station)
        await energy_transfer_started(csms, driver, 1)
        mark = csms.mark()
        location = lab.publish("fw.img", lab.image())
        assert (await _update(csms, lab.request(location, lab.image())))["status"] == "Accepted"
        await wait_fw_status(csms, mark, "InstallScheduled")
        await energy_transfer_started(csms, driver, 2)  # allowed while the update waits
        assert "Unavailable" not in [s["connectorStatus"] for s in csms.actions(STATION_ID, "StatusNotification", mark)]
        await driver.unplug(1)
        await trio.sleep(0.5)
        assert "Installing" not in fw_statuses(csms, mark)  # the second transaction still runs
        await driver.unplug(2)
        await wait_fw_status(csms, mark, "InstallRebooting")
        await wait_restart(station)
        reboot_mark = csms.mark()
    await _after_reboot(csms, data_dir, config, reboot_mark)


async def test_TC_L_18_unsigned_request(csms: LoopbackCsms, data_dir: Path, lab: FirmwareLab) -> None:
    async with station_up(csms, data_dir, extra=lab.config_extra()):
        mark = csms.mark()
        location = lab.publish("fw.img", lab.image())
        payload = lab.request(location, lab.image())
        del payload["firmware"]["signingCertificate"], payload["firmware"]["signature"]
        answer = await _update(csms, payload)
        assert answer["status"] in ("Rejected", "InvalidCertificate")
        await trio.sleep(0.3)
        assert lab.server.requests["/fw.img"] == 0 and fw_statuses(csms, mark) == []


async def test_TC_F_19_trigger_while_downloading(csms: LoopbackCsms, data_dir: Path, lab: FirmwareLab) -> None:
    async with station_up(csms, data_dir, extra=lab.config_extra()):
        mark = csms.mark()
        location = lab.publish("fw.img", lab.image())
        lab.server.delay["/fw.img"] = 10
        answer = await _update(
            csms, lab.request(location, lab.image(), request_id=42, install=iso(hours=1))
        )  # stays InstallScheduled afterwards
        assert answer["status"] == "Accepted"
        await wait_fw_status(csms, mark, "Downloading")
        trigger_mark = csms.mark()
        answer = await call(csms, "TriggerMessage", {"requestedMessage": "FirmwareStatusNotification"})
        assert answer["status"] == "Accepted"
        await csms.trio.wait_for(lambda: fw_payloads(csms, trigger_mark), 5, what="triggered status")
        assert fw_payloads(csms, trigger_mark)[0] == {"status": "Downloading", "requestId": 42}
        lab.server.hurry.set()
        await wait_fw_status(csms, mark, "InstallScheduled")
