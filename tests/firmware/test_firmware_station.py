"""The firmware block in a running station, beyond Part 6: a download that stalls mid-file ends within the stall
timeout and is retried; an image over the size cap is refused without filling the disk."""

from __future__ import annotations

from pathlib import Path

from appliance.lab.csms import LoopbackCsms
from tests.conformance.firmware_helpers import firmware_lab, fw_statuses, iso, wait_fw_status
from tests.conformance.remote_helpers import call, station_up


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
