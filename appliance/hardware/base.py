"""The interface between the station logic and its hardware, as capabilities a backend composes.

The station never touches a device directly. A backend (the simulator, later serial devices) offers:

* `CardReader` — RFID cards presented (`CardPresented` events);
* `Meter` — energy readings, each stamped with when it was taken;
* `ChargeController` — the control pilot (`EVState`, plug events), the contactor and the current offered to
  the EV (`set_offered_current`: the one knob smart charging will turn), hardware faults;
* `Display` — what the user is shown.

Why capabilities rather than one interface: real stations buy these from different vendors (a reader on one
serial port, a meter on a Modbus line, the pilot on the controller board), and the code that consumes them
(the EVSE runner, the transactions block) should name only the part it needs. Every capability delivers its
events on the backend's one `events` channel so their order is kept (a plug before the card that follows it).

A device that stops answering is not an EVSE fault code but a lost device: `DeviceFault` / `DeviceRecovered`
tell the station, which reports the EVSE Faulted until the device answers again.

What the station tells the backend about itself (`StatusProvider`, for `appliance sim status`) is not part of
the generic interface: only a backend that shows it (the simulator) implements `ShowsStationView`.
"""

from __future__ import annotations

import enum
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any, Protocol, runtime_checkable

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
    #: serial backend (issue 12): set when the fault ends an ongoing transaction at once (AbnormalCondition,
    #: this stoppedReason), e.g. an RCD trip (GroundFault); None: it only suspends the energy.
    stopped_reason: str | None = None


@dataclass(frozen=True)
class FaultCleared:
    evse_id: int


@dataclass(frozen=True)
class DeviceFault:
    """A device stopped answering (`device` names it, e.g. "ChargeController"); `evse_id` None: a station-wide
    device such as the card reader. Until `DeviceRecovered`, nothing it reported is current."""

    evse_id: int | None
    device: str
    reason: str = ""
    #: serial backend (issue 12): as for FaultRaised — a lost meter or controller ends the transaction.
    stopped_reason: str | None = None


@dataclass(frozen=True)
class DeviceRecovered:
    """The device answers again; the station re-reads its state (`ChargeController.ev_state`, `faulted`)."""

    evse_id: int | None
    device: str


HardwareEvent = (
    Plugged | Unplugged | EVStateChanged | CardPresented | FaultRaised | FaultCleared | DeviceFault | DeviceRecovered
)


@dataclass(frozen=True)
class MeterReading:
    """One reading of an EVSE's energy meter.

    Per-phase lists have one entry per phase in use (1 or 3). `energy_wh` is the import register: it never
    decreases for the life of the meter. `taken_at` (the backend's monotonic clock, `trio.current_time`) and
    `taken_utc` say when it was taken, so a sampler that waited for it can tell how old it is.
    """

    energy_wh: float
    power_w: float
    voltage_v: tuple[float, ...]
    current_a: tuple[float, ...]
    offered_current_a: float
    phases: int
    taken_at: float
    taken_utc: datetime


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


class EventSource(Protocol):
    """A bounded channel of what the devices report (back-pressure: the backend blocks rather than drops)."""

    events: trio.MemoryReceiveChannel[HardwareEvent]


class CardReader(EventSource, Protocol):
    """Delivers `CardPresented` (and `DeviceFault(None, "CardReader")` when the reader goes silent)."""


class Meter(Protocol):
    def read_meter(self, evse_id: int) -> MeterReading:
        """The EVSE's meter now (a silent meter repeats its last register with no power)."""


class ChargeController(EventSource, Protocol):
    """The pilot line, the contactor and the offered current; delivers plug, EV-state and fault events."""

    def ev_state(self, evse_id: int) -> EVState: ...

    def faulted(self, evse_id: int) -> str | None:
        """The active fault code on the EVSE, or None."""

    def set_offered_current(self, evse_id: int, amps: float) -> None:
        """Offer up to `amps` per phase to the EV (0 = no energy); closes/opens the contactor accordingly.

        The station passes its limit down on every change; smart charging will pass a lower one."""

    def offered_current(self, evse_id: int) -> float:
        """What the controller is offering now (after its own clamping to the EVSE's maximum)."""


class Display(Protocol):
    def indicate(self, evse_id: int | None, indication: Indication) -> None:
        """Show the user something (None = every EVSE / the station's common display)."""


class EvseHardware(Meter, ChargeController, Protocol):
    """What one EVSE's runner drives: its meter and its charge controller."""


class Hardware(CardReader, Meter, ChargeController, Display, Protocol):
    """A whole backend: every capability plus its lifetime.

    `run` is the backend's long-running task (device readers, control socket …); the station starts it in its
    root nursery with `await nursery.start(hw.run)` and it calls `task_status.started()` once the devices are
    ready.
    """

    layouts: list[EvseLayout]

    async def run(self, *, task_status: trio.TaskStatus[None] = trio.TASK_STATUS_IGNORED) -> None: ...


@dataclass
class StationSnapshot:
    """What the station logic knows about one EVSE, for `appliance sim status` and diagnostics."""

    evse_id: int
    connector_status: str = "Available"
    authorized_token: str | None = None
    transaction_id: str | None = None
    extra: dict[str, Any] = field(default_factory=dict)


StatusProvider = Callable[[], list[StationSnapshot]]


@runtime_checkable
class ShowsStationView(Protocol):
    """A backend that shows the station's view next to the hardware's (the simulator's `status`)."""

    def set_status_provider(self, provider: StatusProvider) -> None: ...
