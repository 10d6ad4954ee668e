"""The firmware update as a real station process: the restart re-executes the process and the launcher starts the
active slot (its own program, if the image has one); a SIGKILL in every stage resumes or fails cleanly after the
restart, with the journal intact and no status repeated after the CSMS acknowledged it; a new version that
crashes at start is rolled back by the launcher and reported InstallationFailed."""

from __future__ import annotations

import contextlib
import json
import os
import signal
import sys
from collections.abc import AsyncIterator
from pathlib import Path

import pytest
import trio

from appliance.firmware import slots
from appliance.lab.csms import LoopbackCsms
from appliance.lab.process import StationProcess
from tests.conformance.firmware_helpers import NEW_VERSION, FirmwareLab, firmware_lab, fw_statuses, iso, wait_fw_status
from tests.conformance.remote_helpers import (
    START_TIMEOUT,
    call,
    incarnations,
    journal,
    security_events,
    wait_boot,
    write_config,
)

SUCCESS = ["Downloading", "Downloaded", "SignatureVerified", "Installing", "InstallRebooting", "Installed"]


@pytest.fixture
def lab(data_dir: Path) -> FirmwareLab:
    with firmware_lab(data_dir / "lab") as lab:
        yield lab  # type: ignore[misc]


def _start(config_path: Path) -> StationProcess:
    proc = StationProcess(config_path, config_path.parent / "station.log")
    proc.start()
    return proc


async def _wait_incarnation(proc: StationProcess, count: int, timeout: float = START_TIMEOUT) -> None:
    with trio.fail_after(timeout):
        while incarnations(proc) < count:  # noqa: ASYNC110 - polling a log file
            await trio.sleep(0.05)


async def _boot_after(csms: LoopbackCsms, mark: int) -> dict:
    return await wait_boot(csms, mark, START_TIMEOUT)


async def _journal_intact(config_path: Path) -> None:
    code, report = await journal(config_path, "verify")
    assert code == 0 and report["ok"], report


def _kill(proc: StationProcess) -> None:
    if proc.proc is not None and proc.proc.poll() is None:
        proc.kill()


async def test_slot_program_is_launched_and_reports_its_version(
    csms: LoopbackCsms, data_dir: Path, lab: FirmwareLab
) -> None:
    """An image whose entry is a program: after the install the launcher hands the process over to it (same PID),
    it boots with reason FirmwareUpdate and the image's version, then Installed and FirmwareUpdated."""
    entry = f'#!/bin/sh\n# the new release\'s start script\nexec {sys.executable} -m appliance "$@"\n'
    image = lab.image(entry_script=entry)
    config_path = write_config(data_dir, csms.url, extra=lab.config_extra())
    proc = _start(config_path)
    try:
        await _boot_after(csms, 0)
        pid = proc.proc.pid if proc.proc else None
        mark = csms.mark()
        answer = await call(csms, "UpdateFirmware", lab.request(lab.publish("fw.img", image), image))
        assert answer["status"] == "Accepted"
        await wait_fw_status(csms, mark, "InstallRebooting")
        boot = await _boot_after(csms, csms.mark())  # delivered before the restart, so the boot comes after it
        assert boot["reason"] == "FirmwareUpdate" and boot["chargingStation"]["firmwareVersion"] == NEW_VERSION
        await wait_fw_status(csms, mark, "Installed", timeout=START_TIMEOUT)
        await csms.trio.wait_for(
            lambda: any(e["type"] == "FirmwareUpdated" for e in security_events(csms, mark)), 10, what="FirmwareUpdated"
        )
        assert fw_statuses(csms, mark) == SUCCESS
        assert proc.proc is not None and proc.proc.pid == pid and proc.proc.poll() is None
        assert "starting firmware 2.0.0 from slot a" in proc.log()
        record = json.loads((data_dir / "firmware" / "boot.json").read_text())
        assert record["active"] == "a" and record["trial"] is None
    finally:
        _kill(proc)
    await _journal_intact(config_path)


@contextlib.asynccontextmanager
async def _rolled_back(
    csms: LoopbackCsms, data_dir: Path, lab: FirmwareLab, version: str, entry_script: str
) -> AsyncIterator[StationProcess]:
    """Install a new version that exits 3 at every start; the service manager (this test) restarts it; after
    `trial_boots` (2) starts without an accepted boot the launcher restores the previous firmware, which must boot
    and report InstallationFailed. Yields the old version's process; its journal is checked afterwards."""
    image = lab.image(version, entry_script=entry_script)
    config_path = write_config(data_dir, csms.url, extra=lab.config_extra(trial_boots=2))
    proc = _start(config_path)
    try:
        await _boot_after(csms, 0)
        mark = csms.mark()
        await call(csms, "UpdateFirmware", lab.request(lab.publish("fw.img", image), image))
        await wait_fw_status(csms, mark, "InstallRebooting")
        reboot_mark = csms.mark()
        exits = []
        for _ in range(2):  # the re-exec into the new version, then the "service manager"'s first restart
            assert proc.proc is not None
            exits.append(await trio.to_thread.run_sync(proc.proc.wait, 20))
            proc = _start(config_path)
        assert exits == [3, 3]
        boot = await _boot_after(csms, reboot_mark)
        assert boot["chargingStation"]["firmwareVersion"] == "1.0.0"  # the old version runs
        await wait_fw_status(csms, mark, "InstallationFailed", timeout=START_TIMEOUT)
        assert fw_statuses(csms, mark) == [*SUCCESS[:-1], "InstallationFailed"]
        yield proc
    finally:
        _kill(proc)
    await _journal_intact(config_path)


async def test_new_version_that_crashes_is_rolled_back(csms: LoopbackCsms, data_dir: Path, lab: FirmwareLab) -> None:
    entry = "#!/bin/sh\necho 'new firmware: cannot start' >&2\nexit 3\n"
    async with _rolled_back(csms, data_dir, lab, "6.6.6", entry) as proc:
        assert slots.running_version(data_dir) is None
        assert "firmware rollback" in proc.log()


#: What the new version of the rollback test does before it fails: it migrates the station's journal, as every
#: new release with a migration does at its first start, storing that migration's downgrade with it.
NEWER_FIRMWARE = """
import sys
from pathlib import Path
from appliance.storage import db
ours = db.migration_files()
db.migration_files = lambda: [*ours, (99, "0099_newer_firmware.sql",
    "CREATE TABLE newer_things (a);\\nALTER TABLE outbox ADD COLUMN newer_flag INTEGER NOT NULL DEFAULT 0;\\n")]
db.downgrade_files = lambda: {99: "ALTER TABLE outbox DROP COLUMN newer_flag;\\nDROP TABLE newer_things;\\n"}
db.open_station_db(Path(sys.argv[1])).close()
"""


async def test_a_rolled_back_version_that_migrated_the_journal_leaves_it_usable(
    csms: LoopbackCsms, data_dir: Path, lab: FirmwareLab
) -> None:
    """The new version migrates the journal, then fails its trial boots; the previous version, which does not
    know that migration, undoes it with the downgrade the new one stored, boots and reports InstallationFailed
    (it used to exit 2 on "a journal written by newer firmware", on every start after the rollback)."""
    script = data_dir / "newer_firmware.py"
    script.write_text(NEWER_FIRMWARE)
    entry = f"#!/bin/sh\n{sys.executable} {script} {data_dir} || exit 4\necho 'new firmware: fails' >&2\nexit 3\n"
    async with _rolled_back(csms, data_dir, lab, "6.6.7", entry) as proc:
        assert "0099_newer_firmware.sql undone with the downgrade newer firmware stored" in proc.log()


@pytest.mark.parametrize("stage", ["downloading", "downloaded", "installing", "rebooting"])
async def test_sigkill_in_every_stage(csms: LoopbackCsms, data_dir: Path, lab: FirmwareLab, stage: str) -> None:
    image = lab.image()
    location = lab.publish("fw.img", image)
    keys: dict = {}
    install = None
    pid_file, mark_file = data_dir / "installer.pid", data_dir / "installer.ran"
    if stage == "downloading":
        lab.server.delay["/fw.img"] = 30
    elif stage == "downloaded":
        install = iso(seconds=12)  # the image waits on disk for its install time (the restart comes within it)
    elif stage == "installing":
        script = f"if [ -e {mark_file} ]; then exit 0; fi; touch {mark_file}; echo $$ > {pid_file}; exec sleep 30"
        keys = {"installer": "command", "install_command": f"/bin/sh -c '{script}' installer"}
    config_path = write_config(data_dir, csms.url, extra=lab.config_extra(**keys))
    proc = _start(config_path)
    try:
        await _boot_after(csms, 0)
        mark = csms.mark()
        answer = await call(csms, "UpdateFirmware", lab.request(location, image, install=install))
        assert answer["status"] == "Accepted"
        if stage == "downloading":
            await wait_fw_status(csms, mark, "Downloading")
        elif stage == "downloaded":
            await wait_fw_status(csms, mark, "InstallScheduled")
        elif stage == "installing":
            await wait_fw_status(csms, mark, "Installing")
            with trio.fail_after(10):
                while not pid_file.exists():  # noqa: ASYNC110 - the installer writes its pid
                    await trio.sleep(0.05)
        else:
            await wait_fw_status(csms, mark, "InstallRebooting")
            csms.refuse_connections(True)  # the new version starts but cannot reach its boot
            await _wait_incarnation(proc, 2)
            await trio.sleep(0.5)
        await trio.sleep(0.3)  # let the CSMS's acknowledgement of the last status be recorded as delivered
        _kill(proc)
        if stage == "installing":
            os.kill(int(pid_file.read_text()), signal.SIGKILL)  # the updater died with the power
        lab.server.delay.clear()
        lab.server.hurry.set()
        csms.refuse_connections(False)
        before_restart = csms.mark()
        proc = _start(config_path)
        await wait_fw_status(csms, mark, "Installed", timeout=3 * START_TIMEOUT)
        statuses = fw_statuses(csms, mark)
        expected = list(SUCCESS)
        if stage == "downloaded":
            expected.insert(3, "InstallScheduled")
        assert statuses == expected, statuses  # every status once: none repeated after its acknowledgement
        boots = csms.actions("CS001", "BootNotification", before_restart)
        assert boots and boots[0]["reason"] in ("FirmwareUpdate", "PowerUp")
        if stage == "rebooting":
            assert boots[0]["reason"] == "FirmwareUpdate" and boots[0]["chargingStation"]["firmwareVersion"] == "2.0.0"
    finally:
        _kill(proc)
    await _journal_intact(config_path)
