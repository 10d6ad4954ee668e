"""How `appliance run` starts the active slot: count a trial boot, roll back if needed, hand over to the slot.

`appliance run` calls `prepare` first thing after reading its config, so every start — the service manager's,
a Reset's re-exec, the restart after an install — goes through it. If the active slot's manifest names an
`entry` (e.g. `venv/bin/appliance` of a new release installed into the slot), the process becomes that
program (`os.execv`, same PID for the service manager) with the same arguments and `APPLIANCE_SLOT` set, so
the new program's own `appliance run` does not launch again. Without an entry the installed package runs the
slot itself and reports the slot's version.
"""

from __future__ import annotations

import logging
import os
from pathlib import Path

from appliance.firmware import slots

log = logging.getLogger("appliance.firmware.launch")

#: Set for a program started from a slot: "a" or "b".
SLOT_ENV = "APPLIANCE_SLOT"


def prepare(data_dir: Path, argv: list[str]) -> None:
    """Count this start and, if the active slot has its own program, execute it (does not return then)."""
    if os.environ.get(SLOT_ENV):
        return  # we are the slot's program: the launcher before us has counted this start
    fw_dir = slots.firmware_dir(data_dir)
    if not (fw_dir / slots.BOOT_FILE).exists():
        return  # factory firmware, never updated
    record = slots.count_boot(fw_dir)
    manifest = slots.slot_manifest(fw_dir, record.active)
    if manifest is None or manifest.entry is None or record.active is None:
        return
    program = slots.slot_dir(fw_dir, record.active) / "payload" / manifest.entry
    log.info("starting firmware %s from slot %s: %s", manifest.version, record.active, program)
    os.environ[SLOT_ENV] = record.active
    try:
        os.execv(program, [str(program), *argv])
    except OSError as exc:
        # Not startable counts like a crash: exit 1, the service manager restarts us and the next start counts
        # another trial boot, until the launcher rolls back.
        del os.environ[SLOT_ENV]
        raise SystemExit(f"firmware slot {record.active}: cannot start {program}: {exc}") from exc
