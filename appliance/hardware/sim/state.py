"""The simulator's physical state on disk: what a real installation keeps while its firmware restarts.

A car stays plugged in while the station reboots, a tripped fault stays tripped, and an energy meter keeps its
register. So the simulator writes, per EVSE, the EV's pilot state and the power it asks for, the fault code, a
silent controller, and the meter register to ``<socket stem>.state.json`` in the station's data directory,
and the registers alone once more to ``<socket stem>.meter.json``.

Why two files: the register must never go backwards (CONTRACT: simulated hardware), not even when a person
or a broken disk damages the state file. Each file is replaced atomically (temporary file, fsync, rename,
directory fsync), one after the other, so at any moment at least one holds a register no lower than the last
one written; on loading, each EVSE's register is the larger of the two copies. A damaged file (not JSON, wrong
shape, a bad entry) is logged and ignored — the EVSE starts empty, or from its seed register if no copy is
readable — and never stops the station.

Format (``"format": 1``)::

    {"format": 1, "evses": {"1": {"energyWh": 4821.337, "evState": "C", "requestedW": 7400.0,
                                  "fault": null, "silent": false}}}

The meter file has the same shape with only ``energyWh``; it is the file earlier versions wrote, so an
upgraded installation keeps its registers.
"""

from __future__ import annotations

import json
import logging
import math
import os
import threading
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from appliance.hardware.base import EVState

LOG = logging.getLogger("appliance.hardware.sim")

FILE_FORMAT = 1
MAX_EV_WATTS = 1_000_000.0
MAX_FAULT_CODE_CHARS = 50


def printable_ascii(text: str) -> bool:
    return all("!" <= ch <= "~" for ch in text)


def valid_fault_code(code: str) -> bool:
    return 0 < len(code) <= MAX_FAULT_CODE_CHARS and printable_ascii(code)


@dataclass(frozen=True)
class EvseRecord:
    """One EVSE's physical state as persisted (the register is the value to restart from)."""

    energy_wh: float
    ev_state: EVState = EVState.A
    requested_w: float | None = None
    fault: str | None = None
    silent: bool = False

    def to_json(self) -> dict[str, Any]:
        return {
            "energyWh": self.energy_wh,
            "evState": self.ev_state.value,
            "requestedW": self.requested_w,
            "fault": self.fault,
            "silent": self.silent,
        }


@dataclass(frozen=True)
class Loaded:
    """What a start finds: each EVSE's register (the larger copy) and the physical state, where readable."""

    registers: dict[int, float]
    physical: dict[int, EvseRecord]


def files_for(state_dir: Path, socket_path: Path) -> tuple[Path, Path]:
    """(state file, meter file) of the simulator serving `socket_path`, kept in `state_dir`."""
    stem = socket_path.stem
    return state_dir / f"{stem}.state.json", state_dir / f"{stem}.meter.json"


def _register(value: Any) -> float | None:
    if isinstance(value, int | float) and not isinstance(value, bool) and math.isfinite(value) and value >= 0:
        return float(value)
    return None


def _physical(entry: dict[str, Any], register: float) -> EvseRecord | None:
    """The EVSE's state from a state-file entry, or None when any field is not what this version writes."""
    try:
        ev_state = EVState(entry.get("evState"))
    except ValueError:
        return None
    requested = entry.get("requestedW")
    if requested is not None and (_register(requested) is None or not 0 < requested <= MAX_EV_WATTS):
        return None
    fault = entry.get("fault")
    if fault is not None and not (isinstance(fault, str) and valid_fault_code(fault)):
        return None
    silent = entry.get("silent", False)
    if not isinstance(silent, bool):
        return None
    return EvseRecord(register, ev_state, None if requested is None else float(requested), fault, silent)


class StateFiles:
    """Reads and atomically replaces the two files; `save` runs in worker threads (one at a time)."""

    def __init__(self, state_path: Path, meter_path: Path) -> None:
        self.state_path = state_path
        self.meter_path = meter_path
        self._lock = threading.Lock()
        self._failing = False

    # --- loading --------------------------------------------------------------------------------------

    def _read(self, path: Path) -> dict[str, Any] | None:
        """The file's `evses` table, or None when it is missing or damaged (logged)."""
        try:
            raw = json.loads(path.read_text(encoding="utf-8"))
        except FileNotFoundError:
            return None
        except (OSError, ValueError) as exc:
            LOG.error("sim state file %s unreadable (%s); ignoring it", path, exc)
            return None
        evses = raw.get("evses") if isinstance(raw, dict) else None
        if not isinstance(evses, dict):
            LOG.error("sim state file %s has no 'evses' table; ignoring it", path)
            return None
        return evses

    def load(self, evse_ids: list[int]) -> Loaded:
        """Never raises: whatever cannot be read is logged and left out."""
        registers: dict[int, float] = {}
        physical: dict[int, EvseRecord] = {}
        entries: dict[int, dict[str, Any]] = {}
        for path in (self.state_path, self.meter_path):
            evses = self._read(path) or {}
            for evse_id in evse_ids:
                entry = evses.get(str(evse_id))
                if entry is None:
                    continue
                value = _register(entry.get("energyWh")) if isinstance(entry, dict) else None
                if value is None:
                    LOG.error("sim state file %s: bad entry for EVSE %d: %r; ignored", path, evse_id, entry)
                    continue
                registers[evse_id] = max(value, registers.get(evse_id, 0.0))
                if path == self.state_path:
                    entries[evse_id] = entry
        for evse_id, entry in entries.items():
            record = _physical(entry, registers[evse_id])
            if record is None:
                LOG.error(
                    "sim state file %s: bad physical state for EVSE %d: %r; the EVSE starts empty",
                    self.state_path,
                    evse_id,
                    entry,
                )
            else:
                physical[evse_id] = record
        return Loaded(registers, physical)

    # --- saving ---------------------------------------------------------------------------------------

    def save(self, records: dict[int, EvseRecord]) -> bool:
        """Replace the state file, then the meter file; False (logged once per failure streak) on OSError."""
        state = {
            "format": FILE_FORMAT,
            "about": "physical state of the simulated hardware (appliance.hardware.sim)",
            "evses": {str(i): r.to_json() for i, r in sorted(records.items())},
        }
        meter = {
            "format": FILE_FORMAT,
            "about": "energy registers of the simulated meters (appliance.hardware.sim); never decrease",
            "evses": {str(i): {"energyWh": r.energy_wh} for i, r in sorted(records.items())},
        }
        try:
            with self._lock:
                _replace(self.state_path, state)
                _replace(self.meter_path, meter)
        except OSError as exc:
            if not self._failing:
                LOG.error(
                    "cannot persist the simulated hardware's state to %s: %s (a restart may lose it)",
                    self.state_path,
                    exc,
                )
            self._failing = True
            return False
        if self._failing:
            LOG.info("simulated hardware state persisted again to %s", self.state_path)
        self._failing = False
        return True


def _replace(path: Path, payload: dict[str, Any]) -> None:
    """Write `payload` to `path` atomically and durably: temp file, fsync, rename, fsync the directory."""
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(path.name + ".tmp")
    with open(tmp, "w", encoding="utf-8") as handle:
        json.dump(payload, handle, indent=1)
        handle.write("\n")
        handle.flush()
        os.fsync(handle.fileno())
    os.replace(tmp, path)
    directory = os.open(path.parent, os.O_RDONLY)
    try:
        os.fsync(directory)
    finally:
        os.close(directory)
