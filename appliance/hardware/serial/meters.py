"""Energy meters on Modbus buses: polled in turn, readings checked for physical sense, losses reported.

Why the plausibility check: a register map that is off by one register, or a meter of another model at the
configured unit id, answers just fine — with numbers that look like numbers. A reading is refused (logged with
what is wrong, the last good one stays current) when

* a value is not finite, a voltage is negative or above 1.5 × nominal, a current negative or above 1.5 × the
  EVSE's maximum, the power outside ±1.5 × the EVSE's maximum power;
* the import register is negative, goes backwards, or grew by more than the EVSE's maximum power could have
  delivered since the last good reading (plus 10 Wh for the meter's own resolution).

`meter_failures` failed polls in a row (no answer, Modbus exception, the port gone, or refused readings) make
the meter lost: `DeviceFault(evse, "Meter", cause)`; the first good reading afterwards `DeviceRecovered`.
Each bus is one task polling its meters one after another every `poll_interval_s` (RS-485 is half duplex).
"""

from __future__ import annotations

import logging
import math
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from datetime import UTC, datetime

import trio

from appliance.hardware.base import DeviceFault, DeviceRecovered, EvseLayout, HardwareEvent
from appliance.hardware.serial.modbus import ModbusBus, ModbusFailure
from appliance.hardware.serial.registers import RawReading
from appliance.hardware.serial.settings import MeterSettings

log = logging.getLogger("appliance.hardware.serial")

METER = "Meter"
#: Meter resolution and rounding slack the energy-jump check allows on top of the physics.
ENERGY_SLACK_WH = 10.0


class Implausible(ValueError):
    """A reading no meter on this EVSE can have shown (the message says which value and why)."""


@dataclass(frozen=True)
class Sample:
    """A reading accepted from the meter and when it was taken."""

    raw: RawReading
    taken_at: float
    taken_utc: datetime


def check_reading(raw: RawReading, layout: EvseLayout, previous: Sample | None, now: float) -> None:
    """Refuse what is physically impossible for this EVSE (see the module docstring); Implausible."""
    values = [raw.energy_wh, raw.power_w, *raw.voltage_v, *raw.current_a]
    if not all(math.isfinite(v) for v in values):
        raise Implausible("a value is not a finite number")
    v_max = 1.5 * layout.nominal_voltage_v
    for phase, volts in enumerate(raw.voltage_v, 1):
        if not 0 <= volts <= v_max:
            raise Implausible(f"L{phase} voltage {volts:g} V outside 0-{v_max:g} V")
    i_max = 1.5 * layout.max_current_a
    for phase, amps in enumerate(raw.current_a, 1):
        if not 0 <= amps <= i_max:
            raise Implausible(f"L{phase} current {amps:g} A outside 0-{i_max:g} A")
    p_max = 1.5 * layout.max_power_w
    if abs(raw.power_w) > p_max:
        raise Implausible(f"power {raw.power_w:g} W beyond ±{p_max:g} W")
    if raw.energy_wh < 0:
        raise Implausible(f"energy register {raw.energy_wh:g} Wh is negative")
    if previous is not None:
        before = previous.raw.energy_wh
        if raw.energy_wh < before:
            raise Implausible(f"energy register went backwards ({before:.3f} → {raw.energy_wh:.3f} Wh)")
        most = p_max * max(now - previous.taken_at, 0.0) / 3600.0 + ENERGY_SLACK_WH
        if raw.energy_wh - before > most:
            raise Implausible(
                f"energy register jumped by {raw.energy_wh - before:.1f} Wh in "
                f"{now - previous.taken_at:.1f} s (at most {most:.1f} Wh possible)"
            )


class MeterPoint:
    """One EVSE's meter: its last good sample and whether it is lost."""

    def __init__(self, settings: MeterSettings, layout: EvseLayout, failures_to_fault: int) -> None:
        self.settings = settings
        self.layout = layout
        self.sample: Sample | None = None
        self.lost = False
        self._failures = 0
        self._failures_to_fault = failures_to_fault
        self._last_problem = ""

    @property
    def name(self) -> str:
        s = self.settings
        return f"meter of EVSE {s.evse_id} ({s.register_map.name}, unit {s.unit} on bus {s.bus})"

    async def poll(self, bus: ModbusBus, emit: Callable[[HardwareEvent], Awaitable[None]]) -> None:
        regmap = self.settings.register_map
        phases = self.layout.phases
        try:
            registers: dict[int, int] = {}
            for address, count in regmap.reads(phases):
                values = await bus.read(self.settings.unit, regmap.function, address, count)
                registers.update(zip(range(address, address + count), values, strict=True))
            raw = regmap.decode(registers, phases)
            now = trio.current_time()
            check_reading(raw, self.layout, self.sample, now)
        except (ModbusFailure, Implausible) as exc:
            cause = (
                f"Modbus exception: {exc}"
                if isinstance(exc, ModbusFailure) and exc.kind == "exception"
                else f"implausible reading: {exc}"
                if isinstance(exc, Implausible)
                else str(exc)
            )
            await self._failed(cause, emit)
            return
        self.sample = Sample(raw, now, datetime.now(UTC))
        self._failures = 0
        self._last_problem = ""
        if self.lost:
            self.lost = False
            log.warning("%s answers again: %.3f Wh", self.name, raw.energy_wh)
            await emit(DeviceRecovered(self.settings.evse_id, METER))

    async def _failed(self, cause: str, emit: Callable[[HardwareEvent], Awaitable[None]]) -> None:
        self._failures += 1
        if cause != self._last_problem:  # one line per kind of problem, not one per poll
            log.warning("%s: %s", self.name, cause)
            self._last_problem = cause
        if not self.lost and self._failures >= self._failures_to_fault:
            self.lost = True
            log.error("%s lost after %d failed polls: %s", self.name, self._failures, cause)
            await emit(DeviceFault(self.settings.evse_id, METER, cause, stopped_reason="Other"))


async def poll_bus(
    bus: ModbusBus,
    meters: list[MeterPoint],
    interval: float,
    emit: Callable[[HardwareEvent], Awaitable[None]],
    task_status: trio.TaskStatus[None] = trio.TASK_STATUS_IGNORED,
) -> None:
    """Poll every meter of the bus each `interval` (started() after the first round: readings exist)."""
    started = False
    while True:
        round_start = trio.current_time()
        for meter in meters:
            await meter.poll(bus, emit)
        if not started:
            started = True
            task_status.started()
        await trio.sleep_until(round_start + interval)
