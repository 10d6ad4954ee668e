"""Shared steps of the Part 6 L cases (secure firmware update) and the firmware process tests.

A `FirmwareLab` is the OCTT's side: the manufacturer's root and signing certificates, images packed and signed
with the real `appliance.firmware` code, and real file servers (HTTP; HTTPS and FTP where a test asks). The
station is configured with the root as `[firmware] manufacturer_root_file` and short download timeouts.
"""

from __future__ import annotations

import contextlib
import datetime
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import trio

from appliance.firmware import launch
from appliance.lab.csms import LoopbackCsms
from appliance.station import Station
from tests.conformance.helpers import STATION_ID
from tests.firmware.pki import Manufacturer, Signer, make_image
from tests.firmware.servers import FileServer, http_server

NEW_VERSION = "2.0.0"


def iso(hours: float = 0.0, seconds: float = 0.0) -> str:
    """Now plus an offset, as an OCPP dateTime."""
    moment = datetime.datetime.now(datetime.UTC) + datetime.timedelta(hours=hours, seconds=seconds)
    return moment.strftime("%Y-%m-%dT%H:%M:%S.") + f"{moment.microsecond // 1000:03d}Z"


@dataclass
class FirmwareLab:
    directory: Path
    server: FileServer
    mfr: Manufacturer
    signer: Signer
    images: dict[str, Path] = field(default_factory=dict)

    def publish(self, name: str, path: Path) -> str:
        """Serve `path` as /`name`; its URL."""
        self.server.files[f"/{name}"] = path.read_bytes()
        return self.server.url(f"/{name}")

    def image(self, version: str = NEW_VERSION, **kw: Any) -> Path:
        if version not in self.images:
            self.images[version] = make_image(self.directory, version, **kw)
        return self.images[version]

    def request(
        self,
        location: str,
        path: Path,
        *,
        request_id: int = 1,
        signer: Signer | None = None,
        retrieve: str | None = None,
        install: str | None = None,
        **extra: Any,
    ) -> dict[str, Any]:
        """An UpdateFirmware payload signed by `signer` (default: the good one); Part 6's usual times."""
        by = signer or self.signer
        firmware = {
            "location": location,
            "retrieveDateTime": retrieve or iso(hours=-2),
            "signingCertificate": by.cert_pem,
            "signature": by.sign(path),
        }
        firmware["installDateTime"] = install or iso(hours=-2)
        return {"requestId": request_id, "firmware": firmware, **extra}

    def config_extra(self, **keys: Any) -> str:
        values = {
            "manufacturer_root_file": str(self.mfr.root_file),
            "connect_timeout": 2,
            "stall_timeout": 5,
            "transfer_timeout": 30,
            **keys,
        }
        lines = ["[firmware]"] + [f"{k} = {_toml(v)}" for k, v in values.items()]
        return "\n".join(lines) + "\n"


def _toml(value: Any) -> str:
    if isinstance(value, str):
        return '"' + value.replace("\\", "\\\\").replace('"', '\\"') + '"'
    return str(value).lower() if isinstance(value, bool) else str(value)


@contextlib.contextmanager
def firmware_lab(directory: Path, kind: str = "rsa") -> Iterator[FirmwareLab]:
    directory.mkdir(parents=True, exist_ok=True)
    with http_server() as server:
        mfr = Manufacturer(directory)
        yield FirmwareLab(directory, server, mfr, mfr.signer(kind))


def fw_statuses(csms: LoopbackCsms, since: int = 0) -> list[str]:
    return [p["status"] for p in csms.actions(STATION_ID, "FirmwareStatusNotification", since)]


def fw_payloads(csms: LoopbackCsms, since: int = 0) -> list[dict[str, Any]]:
    return csms.actions(STATION_ID, "FirmwareStatusNotification", since)


async def wait_fw_status(csms: LoopbackCsms, since: int, status: str, timeout: float = 20) -> None:
    try:
        await csms.trio.wait_for(
            lambda: status in fw_statuses(csms, since), timeout, what=f"FirmwareStatusNotification {status}"
        )
    except TimeoutError as exc:
        raise AssertionError(
            f"no FirmwareStatusNotification {status} within {timeout:g} s; statuses so far: {fw_statuses(csms, since)}"
        ) from exc


async def wait_restart(station: Station, timeout: float = 15) -> None:
    """The in-process station ended its run to restart (what the process does before re-executing), and the
    launcher's step at the next start (`appliance run` counts the trial boot) is played."""
    with trio.fail_after(timeout):
        while station.restart_reason is None:  # noqa: ASYNC110 - polling a plain attribute
            await trio.sleep(0.02)
    assert station.restart_reason == "FirmwareUpdate"


def relaunch(data_dir: Path) -> None:
    launch.prepare(data_dir, [])
