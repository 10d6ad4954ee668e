"""The physical world behind the bench's devices: EVs on EVSEs, contactors, loads and energy registers.

The board simulator changes it (pilot, contactor, faults), the meter simulator reads it; both run in threads
of their own, as real devices would, so every access holds the world's lock. The model is the simulated
backend's, simplified: energy flows only while the EV asks (pilot C), the contactor is closed and the board
offers at least 6 A; the power is min(what the EV wants, offered A × phases × V). Each phase has its own,
constant voltage (so a test can tell the phases apart), the current is P / (phases × V), and the register
integrates the power over `time.monotonic()`; it never decreases.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field

from appliance.hardware.base import EvseLayout
from appliance.hardware.serial.registers import RawReading

#: Per-phase voltage offsets from nominal, so L1, L2 and L3 differ (V).
PHASE_OFFSETS = (-0.4, 0.6, 1.3)


@dataclass
class EvseWorld:
    layout: EvseLayout
    energy_wh: float = 1000.0
    pilot: str = "A"
    cable_a: int | None = None  # a socket's cable rating (pp), None: fixed cable
    wish_w: float | None = None  # None: as much as offered
    offered_a: float = 0.0
    contactor_commanded: bool = False
    welded: bool = False
    faults: list[str] = field(default_factory=list)
    last_t: float | None = None
    #: A meter on a bench without a board: a fixed load it measures whatever the pilot says (None: the EV's).
    load_w: float | None = None

    @property
    def contactor_closed(self) -> bool:
        if self.welded:
            return True
        return self.contactor_commanded and self.pilot in "CD" and not self.faults and self.offered_a >= 6

    def power_w(self) -> float:
        if self.load_w is not None:
            return self.load_w
        if not self.contactor_closed or self.pilot not in "CD" or self.offered_a < 6:
            return 0.0
        limit = self.offered_a * self.layout.phases * self.layout.nominal_voltage_v
        return min(limit, self.wish_w) if self.wish_w is not None else limit

    def voltages(self) -> tuple[float, ...]:
        return tuple(round(self.layout.nominal_voltage_v + PHASE_OFFSETS[p], 1) for p in range(self.layout.phases))


class World:
    """Every EVSE's physical state; `change(evse_id, fn)` integrates the register before a change."""

    def __init__(
        self, layouts: list[EvseLayout], *, clock: Callable[[], float] = time.monotonic, start_wh: float = 1234.5
    ) -> None:
        self.lock = threading.RLock()
        self._clock = clock
        self.evses = {
            layout.evse_id: EvseWorld(layout, energy_wh=start_wh + 1000.0 * layout.evse_id) for layout in layouts
        }

    def _integrate(self, evse: EvseWorld) -> None:
        now = self._clock()
        if evse.last_t is not None and now > evse.last_t:
            evse.energy_wh += evse.power_w() * (now - evse.last_t) / 3600.0
        evse.last_t = now

    def change(self, evse_id: int, fn: Callable[[EvseWorld], object]) -> None:
        with self.lock:
            evse = self.evses[evse_id]
            self._integrate(evse)
            fn(evse)

    def reading(self, evse_id: int) -> RawReading:
        """What the EVSE's meter measures now."""
        with self.lock:
            evse = self.evses[evse_id]
            self._integrate(evse)
            power = evse.power_w()
            volts = evse.voltages()
            amps = tuple(power / evse.layout.phases / v for v in volts) if power else (0.0,) * len(volts)
            return RawReading(evse.energy_wh, sum(v * a for v, a in zip(volts, amps, strict=True)), volts, amps)
