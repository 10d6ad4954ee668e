"""Installers: what turns a verified image into the firmware that runs after the restart.

Chosen by `[firmware] installer` from `INSTALLERS` (a name → factory registry; config.py refuses a name that is
not in it). Each does three things the firmware block calls in order: `install` (the image into a place the
station does not run from), `activate` (make it the one the next start runs — the last step before the restart)
and, after the restart and the CSMS's acceptance of the boot, `outcome` (did the new firmware come up?).

* `slots` — the built-in A/B slots (`slots.py`): unpack and verify into the inactive slot, switch with a trial;
  the launcher rolls back a version that never gets its boot accepted.
* `command` — an external updater (RAUC, SWUpdate, Mender …): `install_command` with the image's path appended;
  exit status 0 means installed, anything else InstallationFailed. The updater owns its own A/B and rollback.
"""

from __future__ import annotations

import logging
import shlex
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Protocol

import trio

from appliance.firmware import image, slots
from appliance.firmware.update import UpdateRecord

if TYPE_CHECKING:
    from appliance.config import FirmwareConfig

log = logging.getLogger("appliance.firmware.install")

#: How much of an install command's output is kept for the log.
OUTPUT_TAIL = 2000


@dataclass(frozen=True)
class Installed:
    """`install` succeeded: where the image went and its version, if the installer knows them."""

    slot: str | None = None
    version: str | None = None


class InstallFailed(Exception):
    """`install` failed; `status` is the FirmwareStatus to report (InstallVerificationFailed or
    InstallationFailed) and the message says why."""

    def __init__(self, status: str, reason: str) -> None:
        super().__init__(reason)
        self.status = status


class Installer(Protocol):
    async def install(self, image_path: Path, record: UpdateRecord) -> Installed: ...

    async def activate(self, record: UpdateRecord) -> None: ...

    async def activated(self, record: UpdateRecord) -> bool:
        """Whether `activate` already happened for this update (a power cut came right after it)."""
        ...

    async def outcome(self, record: UpdateRecord) -> tuple[str, str]:
        """After the restart: ("Installed" | "InstallationFailed", detail)."""
        ...


class SlotInstaller:
    def __init__(self, data_dir: Path, max_boots: int) -> None:
        self._dir = slots.firmware_dir(data_dir)
        self._max_boots = max_boots

    async def install(self, image_path: Path, record: UpdateRecord) -> Installed:
        try:
            slot, manifest = await trio.to_thread.run_sync(slots.install_into_inactive, self._dir, image_path)
        except image.ImageError as exc:
            raise InstallFailed("InstallVerificationFailed", str(exc)) from exc
        except OSError as exc:
            raise InstallFailed("InstallationFailed", f"cannot write the slot: {exc}") from exc
        log.info("firmware %s installed into slot %s", manifest.version, slot)
        return Installed(slot, manifest.version)

    async def activate(self, record: UpdateRecord) -> None:
        assert record.target_slot is not None
        await trio.to_thread.run_sync(
            slots.switch_to, self._dir, record.target_slot, record.request_id, self._max_boots
        )

    async def activated(self, record: UpdateRecord) -> bool:
        boot = await trio.to_thread.run_sync(slots.read_boot, self._dir)
        trial, rolled = boot.trial or {}, boot.rolled_back or {}
        return record.request_id in (trial.get("requestId"), rolled.get("requestId"))

    async def outcome(self, record: UpdateRecord) -> tuple[str, str]:
        boot = await trio.to_thread.run_sync(slots.read_boot, self._dir)
        rolled = boot.rolled_back
        if rolled is not None and rolled.get("requestId") == record.request_id:
            await trio.to_thread.run_sync(slots.clear_rolled_back, self._dir)
            return "InstallationFailed", f"rolled back: {rolled.get('reason')}"
        if boot.active == record.target_slot and record.target_slot is not None:
            await trio.to_thread.run_sync(slots.commit_trial, self._dir)
            return "Installed", f"firmware {record.target_version} runs from slot {record.target_slot}"
        return "InstallationFailed", f"slot {record.target_slot} is not the active one after the restart"


class CommandInstaller:
    def __init__(self, command: list[str], timeout: float) -> None:
        self._command = command
        self._timeout = timeout

    async def install(self, image_path: Path, record: UpdateRecord) -> Installed:
        argv = [*self._command, str(image_path)]
        log.info("running the install command: %s", shlex.join(argv))
        with trio.move_on_after(self._timeout) as scope:
            try:
                result = await trio.run_process(argv, capture_stdout=True, capture_stderr=True, check=False)
            except OSError as exc:
                raise InstallFailed("InstallationFailed", f"cannot run {argv[0]}: {exc}") from exc
        if scope.cancelled_caught:
            raise InstallFailed("InstallationFailed", f"the install command did not finish in {self._timeout:g} s")
        output = (result.stdout + result.stderr).decode(errors="replace")[-OUTPUT_TAIL:]
        if result.returncode != 0:
            raise InstallFailed(
                "InstallationFailed", f"the install command exited with {result.returncode}: {output.strip()}"
            )
        log.info("the install command succeeded: %s", output.strip())
        return Installed()

    async def activate(self, record: UpdateRecord) -> None:
        """The updater has already switched its own boot target."""

    async def activated(self, record: UpdateRecord) -> bool:
        return False  # re-running an updater on the same image is safe (RAUC, SWUpdate, Mender all are)

    async def outcome(self, record: UpdateRecord) -> tuple[str, str]:
        return "Installed", "the install command succeeded and the station restarted"


def _slots(config: FirmwareConfig, data_dir: Path) -> Installer:
    return SlotInstaller(data_dir, config.trial_boots)


def _command(config: FirmwareConfig, data_dir: Path) -> Installer:
    assert config.install_command is not None  # config.py requires it for this installer
    return CommandInstaller(shlex.split(config.install_command), config.install_timeout)


#: `[firmware] installer` name → factory.
INSTALLERS: dict[str, Callable[[FirmwareConfig, Path], Installer]] = {"slots": _slots, "command": _command}
