"""The one interface between the station logic and its hardware.

The station never touches a device directly: it reads `HardwareEvent`s from `Hardware.events` and calls the
few commands below. A backend (the in-process simulator, later serial devices) implements this and nothing
else, so the station logic is the same whatever drives it.
"""

from __future__ import annotations

import enum
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any, Protocol

import trio


class EVState(enum.Enum):
    """IEC 61851-1 control pilot states that matter to the station."""

    A = "A"  # no EV connected
    B = "B"  # EV connected, not asking for energy
    C = "C"  # EV connected and asking for energy (charging if the station offers it)


@dataclass(frozen=True)
class Plugged:
    evse_id: int


@dataclass(frozen=True)
class Unplugged:
    evse_id: int


@dataclass(frozen=True)
class EVStateChanged:
    """The EV moved between B and C (asking for energy or not) while plugged."""

    evse_id: int
    state: EVState


@dataclass(frozen=True)
class CardPresented:
    """An RFID card was presented; `evse_id` is the EVSE the user selected on the display, if any."""

    token: str
    evse_id: int | None
    token_type: str = "ISO14443"


@dataclass(frozen=True)
class FaultRaised:
    evse_id: int
    code: str


@dataclass(frozen=True)
class FaultCleared:
    evse_id: int


HardwareEvent = Plugged | Unplugged | EVStateChanged | CardPresented | FaultRaised | FaultCleared


@dataclass(frozen=True)
class MeterReading:
    """One reading of an EVSE's energy meter.

    Per-phase lists have one entry per phase in use (1 or 3). `energy_wh` is the import register: it never
    decreases for the life of the meter.
    """

    energy_wh: float
    power_w: float
    voltage_v: tuple[float, ...]
    current_a: tuple[float, ...]
    offered_current_a: float
    phases: int


@dataclass
class EvseLayout:
    """What the station maker built: one EVSE with one fixed-cable connector."""

    evse_id: int
    phases: int = 3
    max_current_a: float = 32.0
    nominal_voltage_v: float = 230.0
    connector_type: str = "cType2"

    @property
    def max_power_w(self) -> float:
        return self.phases * self.max_current_a * self.nominal_voltage_v


class Indication(enum.Enum):
    """What the station shows the user on the EVSE's display / LEDs."""

    IDLE = "idle"
    ACCEPTED = "accepted"
    REJECTED = "rejected"
    CHARGING = "charging"
    FAULTED = "faulted"
    UNAVAILABLE = "unavailable"


@dataclass
class StationSnapshot:
    """What the station logic knows about one EVSE, for `appliance sim status` and diagnostics."""

    evse_id: int
    connector_status: str = "Available"
    authorized_token: str | None = None
    transaction_id: str | None = None
    extra: dict[str, Any] = field(default_factory=dict)


StatusProvider = Callable[[], list[StationSnapshot]]


class Hardware(Protocol):
    """A hardware backend.

    `run` is the backend's long-running task (device readers, control socket …); the station starts it in its
    root nursery with `await nursery.start(hw.run)` and it calls `task_status.started()` once the devices are
    ready. Events are delivered on `events`, a bounded channel (back-pressure: the backend blocks rather than
    dropping an event).
    """

    layouts: list[EvseLayout]
    events: trio.MemoryReceiveChannel[HardwareEvent]

    async def run(self, *, task_status: trio.TaskStatus[None] = trio.TASK_STATUS_IGNORED) -> None: ...

    def ev_state(self, evse_id: int) -> EVState: ...

    def faulted(self, evse_id: int) -> str | None:
        """The active fault code on the EVSE, or None."""

    def read_meter(self, evse_id: int) -> MeterReading: ...

    def set_offered_current(self, evse_id: int, amps: float) -> None:
        """Offer up to `amps` per phase to the EV (0 = no energy); closes/opens the contactor accordingly."""

    def indicate(self, evse_id: int | None, indication: Indication) -> None:
        """Show the user something (None = every EVSE / the station's common display)."""

    def set_status_provider(self, provider: StatusProvider) -> None:
        """Give the backend a way to ask the station for its view (used by `appliance sim status`)."""
