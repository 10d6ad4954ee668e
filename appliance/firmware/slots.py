"""The A/B slots under `data_dir/firmware` and the boot record that says which one runs.

    data_dir/firmware/
      boot.json        the boot record (below); replaced atomically (temporary file, fsync, rename, dir fsync)
      slots/a/, b/     an installed image each: manifest.json + payload/ (image.unpack)
      download/        images being downloaded and verified

A slot holds one unpacked, verified image. The *factory* firmware is the installed package itself (no slot):
`active` null. The boot record is the station's bootloader environment (like U-Boot's `bootcount` /
`upgrade_available`): it is read before the station opens its database, by the launcher (`launch.prepare`,
run by `appliance run` before anything else), which is why it is a file of its own and not a database row.

    {"active": "b", "previous": "a",
     "trial": {"slot": "b", "requestId": 7, "boots": 1, "maxBoots": 3} | null,
     "rolledBack": {"slot": "b", "requestId": 7, "reason": "…"} | null}

Installing switches `active` to the new slot with a `trial`. Every start of a trial slot counts a boot; the
firmware block clears `trial` once the CSMS has accepted the new version's BootNotification. A trial slot that
has been started `maxBoots` times without that (it crashes, hangs, cannot reach its boot) is abandoned: the
launcher restores `previous` and records `rolledBack`, which the old version reports as InstallationFailed.
"""

from __future__ import annotations

import json
import logging
import os
import shutil
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from appliance.firmware import image
from appliance.storage.db import fsync_dir

log = logging.getLogger("appliance.firmware.slots")

SLOTS = ("a", "b")
BOOT_FILE = "boot.json"


def firmware_dir(data_dir: Path) -> Path:
    return data_dir / "firmware"


@dataclass
class BootRecord:
    active: str | None = None
    previous: str | None = None
    trial: dict[str, Any] | None = None
    rolled_back: dict[str, Any] | None = field(default=None)

    def inactive(self) -> str:
        return "b" if self.active == "a" else "a"


def read_boot(fw_dir: Path) -> BootRecord:
    """The boot record; a missing one is the factory state, a damaged one is logged and treated as factory."""
    path = fw_dir / BOOT_FILE
    try:
        raw = json.loads(path.read_text())
        record = BootRecord(raw.get("active"), raw.get("previous"), raw.get("trial"), raw.get("rolledBack"))
        if record.active not in (None, *SLOTS) or record.previous not in (None, *SLOTS):
            raise ValueError(f"unknown slot in {raw}")
        return record
    except FileNotFoundError:
        return BootRecord()
    except (OSError, ValueError, AttributeError) as exc:
        log.error("firmware boot record %s is unusable (%s): starting the factory firmware", path, exc)
        return BootRecord()


def write_boot(fw_dir: Path, record: BootRecord) -> None:
    fw_dir.mkdir(mode=0o700, parents=True, exist_ok=True)
    data = asdict(record)
    data["rolledBack"] = data.pop("rolled_back")
    tmp = fw_dir / (BOOT_FILE + ".tmp")
    with open(tmp, "w") as f:
        json.dump(data, f)
        f.flush()
        os.fsync(f.fileno())
    os.replace(tmp, fw_dir / BOOT_FILE)
    fsync_dir(fw_dir)


def slot_dir(fw_dir: Path, slot: str) -> Path:
    return fw_dir / "slots" / slot


def slot_manifest(fw_dir: Path, slot: str | None) -> image.Manifest | None:
    """The manifest of an installed slot (None for the factory firmware or an empty/incomplete slot)."""
    if slot is None:
        return None
    try:
        return image.Manifest.parse((slot_dir(fw_dir, slot) / image.MANIFEST).read_bytes())
    except (OSError, image.ImageError):
        return None


def running_version(data_dir: Path) -> str | None:
    """The version of the slot that runs (None: the factory firmware, whose version is in the config)."""
    manifest = slot_manifest(firmware_dir(data_dir), read_boot(firmware_dir(data_dir)).active)
    return manifest.version if manifest else None


def install_into_inactive(fw_dir: Path, image_path: Path) -> tuple[str, image.Manifest]:
    """Unpack `image_path` into the inactive slot (emptied first); the slot and its manifest. ImageError if the
    image is damaged — the active slot is never touched."""
    record = read_boot(fw_dir)
    slot = record.inactive()
    target = slot_dir(fw_dir, slot)
    if target.exists():
        shutil.rmtree(target)
    free, need = shutil.disk_usage(fw_dir).free, image_path.stat().st_size
    if free < need:  # an unpacked slot is about as large as its image
        raise OSError(f"not enough free space for the slot: {free} bytes free, {need} needed")
    target.mkdir(mode=0o700, parents=True)
    manifest = image.unpack(image_path, target)
    fsync_dir(target)
    return slot, manifest


def switch_to(fw_dir: Path, slot: str, request_id: int, max_boots: int) -> None:
    """Make `slot` the active one, on trial: the launcher counts its starts until the firmware block commits."""
    record = read_boot(fw_dir)
    if record.active != slot:
        record.previous = record.active
    record.active = slot
    record.trial = {"slot": slot, "requestId": request_id, "boots": 0, "maxBoots": max_boots}
    record.rolled_back = None
    write_boot(fw_dir, record)


def commit_trial(fw_dir: Path) -> None:
    """The new version has been accepted by the CSMS: it stays."""
    record = read_boot(fw_dir)
    if record.trial is not None:
        record.trial = None
        write_boot(fw_dir, record)


def clear_rolled_back(fw_dir: Path) -> None:
    record = read_boot(fw_dir)
    if record.rolled_back is not None:
        record.rolled_back = None
        write_boot(fw_dir, record)


def count_boot(fw_dir: Path) -> BootRecord:
    """One start: a trial slot's boot is counted, and after its last allowed boot the previous slot restored."""
    record = read_boot(fw_dir)
    trial = record.trial
    if trial is None:
        return record
    trial["boots"] = int(trial.get("boots", 0)) + 1
    if trial["boots"] > int(trial.get("maxBoots", 3)):
        reason = (
            f"version in slot {trial['slot']} was started {trial['boots'] - 1} times and never had its boot accepted"
        )
        log.error("firmware rollback: %s; restoring %s", reason, record.previous or "the factory firmware")
        record.rolled_back = {"slot": trial["slot"], "requestId": trial.get("requestId"), "reason": reason}
        record.active, record.previous, record.trial = record.previous, None, None
    write_boot(fw_dir, record)
    return record
