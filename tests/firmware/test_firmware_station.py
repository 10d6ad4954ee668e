"""The firmware block in a running station, beyond Part 6: a download that stalls mid-file ends within the stall
timeout and is retried; an image over the size cap is refused without filling the disk; a reused requestId is a
new update; a power cut between a final status and its security event does not lose the event."""

from __future__ import annotations

from pathlib import Path

import pytest
import trio

from appliance.firmware.update import UpdateRecord
from appliance.firmware.update import _save as save_update
from appliance.journal.store import Append, JournalStore
from appliance.lab.csms import LoopbackCsms
from appliance.storage import transaction
from appliance.storage.db import open_station_db
from tests.conformance.firmware_helpers import firmware_lab, fw_statuses, iso, wait_fw_status
from tests.conformance.helpers import STATION_ID
from tests.conformance.remote_helpers import call, security_events, station_up


def _files(directory: Path) -> list[str]:
    return sorted(p.name for p in directory.iterdir()) if directory.exists() else []


async def test_stalled_download_is_retried(csms: LoopbackCsms, data_dir: Path) -> None:
    with firmware_lab(data_dir / "lab") as lab:
        image = lab.image(size=200_000)
        location = lab.publish("fw.img", image)
        lab.server.stall_after["/fw.img"] = 50_000  # the first attempt gets a quarter, then silence
        lab.server.stall_first["/fw.img"] = 1
        async with station_up(csms, data_dir, extra=lab.config_extra(stall_timeout=0.5)):
            mark = csms.mark()
            payload = lab.request(location, image, install=iso(hours=1), retries=1, retryInterval=0)
            assert (await call(csms, "UpdateFirmware", payload))["status"] == "Accepted"
            await wait_fw_status(csms, mark, "InstallScheduled", timeout=10)
            assert fw_statuses(csms, mark) == ["Downloading", "Downloaded", "SignatureVerified", "InstallScheduled"]
            assert lab.server.requests["/fw.img"] == 2  # the stalled attempt, then the retry
            assert _files(data_dir / "firmware" / "download") == ["update-1.img"]  # no partial file left


async def test_image_over_the_cap_is_refused(csms: LoopbackCsms, data_dir: Path) -> None:
    with firmware_lab(data_dir / "lab") as lab:
        image = lab.image(size=200_000)
        location = lab.publish("fw.img", image)
        async with station_up(csms, data_dir, extra=lab.config_extra(max_image_bytes=100_000)):
            mark = csms.mark()
            payload = lab.request(location, image, retries=0)
            assert (await call(csms, "UpdateFirmware", payload))["status"] == "Accepted"
            await wait_fw_status(csms, mark, "DownloadFailed")
            assert fw_statuses(csms, mark) == ["Downloading", "DownloadFailed"]
            assert _files(data_dir / "firmware" / "download") == []


async def test_a_reused_request_id_is_a_new_update(csms: LoopbackCsms, data_dir: Path) -> None:
    """CSMSs exist that send requestId 1 every time: an earlier update's final status under the same id must not
    end the new one before it began."""
    with firmware_lab(data_dir / "lab") as lab:
        image = lab.image()
        location = lab.publish("fw.img", image)
        async with station_up(csms, data_dir, extra=lab.config_extra()):
            mark = csms.mark()
            bad = lab.request(location, image)
            bad["firmware"]["signature"] = lab.mfr.signer().sign(image)  # a real signature, another key
            assert (await call(csms, "UpdateFirmware", bad))["status"] == "Accepted"
            await csms.trio.wait_for(  # the update is over once its event is out and the record gone
                lambda: any(e["type"] == "InvalidFirmwareSignature" for e in security_events(csms, mark)),
                10,
                what="security event InvalidFirmwareSignature",
            )
            await _until_idle(csms)
            mark = csms.mark()
            good = lab.request(location, image, install=iso(hours=1))
            assert good["requestId"] == bad["requestId"]
            assert (await call(csms, "UpdateFirmware", good))["status"] == "Accepted"
            await wait_fw_status(csms, mark, "InstallScheduled")
            assert fw_statuses(csms, mark) == ["Downloading", "Downloaded", "SignatureVerified", "InstallScheduled"]


async def _until_idle(csms: LoopbackCsms) -> None:
    """Ask (TriggerMessage) until the station reports its firmware state Idle."""
    with trio.fail_after(10):
        while True:
            mark = csms.mark()
            await call(csms, "TriggerMessage", {"requestedMessage": "FirmwareStatusNotification"})
            await csms.trio.wait_for(lambda m=mark: fw_statuses(csms, m), 5, what="the triggered status")
            if fw_statuses(csms, mark)[-1] == "Idle":
                return
            await trio.sleep(0.05)


@pytest.mark.parametrize("event_journaled", [False, True])
async def test_a_power_cut_between_a_final_status_and_its_event(
    csms: LoopbackCsms, data_dir: Path, event_journaled: bool
) -> None:
    """What a power cut right after journaling InvalidSignature leaves (the status journaled, the record not yet
    removed, the security event perhaps not journaled): the next start raises the event once, after the status,
    and the station is Idle."""
    conn = open_station_db(data_dir)
    with transaction(conn):
        items = [Append("FirmwareStatusNotification", {"status": "InvalidSignature", "requestId": 7})]
        if event_journaled:
            event = {"type": "InvalidFirmwareSignature", "timestamp": "2026-01-01T00:00:00.000Z", "techInfo": "x"}
            items.append(Append("SecurityEventNotification", event))
        JournalStore(conn).append_batch(items)
        save_update(conn, UpdateRecord(7, "InvalidSignature", {"firmware": {}}))
    conn.close()
    with firmware_lab(data_dir / "lab") as lab:
        mark = csms.mark()
        async with station_up(csms, data_dir, extra=lab.config_extra()):
            await csms.trio.wait_for(
                lambda: any(e["type"] == "InvalidFirmwareSignature" for e in security_events(csms, mark)),
                10,
                what="security event InvalidFirmwareSignature",
            )
            await call(csms, "TriggerMessage", {"requestedMessage": "FirmwareStatusNotification"})
            await wait_fw_status(csms, mark, "Idle")
            kinds = [
                (f.action, f.payload.get("status", f.payload.get("type")))
                for f in csms.frames_snapshot(STATION_ID, mark)
                if f.direction == "in"
                and f.is_call
                and f.action in ("FirmwareStatusNotification", "SecurityEventNotification")
                and f.payload.get("type") != "StartupOfTheDevice"
            ]
            assert kinds == [
                ("FirmwareStatusNotification", "InvalidSignature"),
                ("SecurityEventNotification", "InvalidFirmwareSignature"),
                ("FirmwareStatusNotification", "Idle"),
            ]
