"""Simulated hardware: EVs, an RFID reader, faults and energy meters that behave like the real thing.

Why it exists: the station logic must be exercised end to end (demo, acceptance tests, people poking at it)
without a car. `SimHardware` implements `Hardware` exactly as a device backend would; what a real backend
reads from the pilot line, the card reader and the meter, the simulator takes from its control socket
(`appliance.hardware.sim.control`, driven by `appliance sim …`) and from a small physical model.

The physical model, per EVSE:

* EV state A (nothing plugged), B (plugged, not asking) or C (asking for energy), and the power the EV wants
  (`charge --watts`, default: the EVSE's maximum).
* Power flows only in state C, with no fault, while the station offers current (`set_offered_current` > 0,
  i.e. the contactor is closed): ``P = min(EV's wish, offered A * phases * nominal V)``. That mean power is
  what the energy register integrates. A reading adds a deterministic ±1 % voltage ripple per phase (two slow
  sines of the clock), and per-phase current follows from it: an EV limited by the offered current draws
  exactly that current (P then rides on the voltage), an EV that regulates its own power draws
  ``P / (phases * V)``, never more than offered. So ``sum(V * I) ≈ P`` and ``I ≤ offered`` in every reading.
* The energy register is integrated piecewise with the clock (`trio.current_time` by default, so MockClock
  drives it in tests): on every reading and before every change of EV state, offered current or fault, at the
  old power. It starts at a seeded few kWh and never decreases.

The physical state survives restarts of the station (a Reset, a firmware restart, kill -9): the EV stays
plugged in, asking for the power it asked for, faults stay raised, a silent controller stays silent, and the
register goes on from where it was (`appliance.hardware.sim.state` has the files and why there are two). A
command's state change is written before its event is delivered; while energy flows the register is rewritten
at most every `persist_interval_s` seconds, on clean exit, and at once when the power rises. So that a crash
can never make the register go backwards, a running simulator writes not the current value but a *lease*: the
value plus ``power * 3 * persist_interval_s``, which no reading can exceed before the next write lands. After a
crash the register therefore restarts a few Wh ahead (at most ~40 Wh at 22 kW with the default 2 s); after a
clean exit it restarts exactly where it was. When the simulator stops it opens every contactor (the station is
powering down), so readings taken after `run` has returned do not exceed what was saved. The offered current
is not kept: it is the station's to set again after its restart.

A silent controller (`silence`, `revive`): the EVSE's controller board stops answering. The station hears
`DeviceFault` and nothing else from that EVSE — the EV may still be plugged or unplugged (the world goes on,
the events are not delivered), the contactor drops out (the board's watchdog) and the meter behind it repeats
its last register. `revive` delivers `DeviceRecovered`; the station then re-reads the EV and fault state.

Refusals (each a `CommandRefused` carrying a message for the person at the terminal): unknown EVSE, plug when
plugged, charge/suspend/unplug with nothing plugged, suspend when not charging, watts not a finite number in
(0, 1 MW], fault when already faulted (clear first), clear with no fault, silence when silent, revive when
not silent, token empty, longer than 36 characters (OCPP IdToken) or not printable ASCII without spaces, fault
code empty, longer than 50 or not printable ASCII. A token that is not hex is passed on (as ISO14443): real
readers only produce hex UIDs, but people type "TAG1" and the station must cope with whatever a CSMS-side token
list contains anyway. `charge` while already charging changes the EV's wish (no event, the EV state is
unchanged).

Event delivery applies back-pressure: a command waits for room in the bounded `events` channel rather than
dropping its event, and the state change is visible (`ev_state`, `status`) before the event is received, so
the station sees a consistent world when it handles it. Events from concurrent commands keep their order.
"""

from __future__ import annotations

import logging
import math
import random
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import trio

from appliance.hardware.base import (
    CardPresented,
    DeviceFault,
    DeviceRecovered,
    EvseLayout,
    EVState,
    EVStateChanged,
    FaultCleared,
    FaultRaised,
    HardwareEvent,
    Indication,
    MeterReading,
    Plugged,
    StationSnapshot,
    StatusProvider,
    Unplugged,
)
from appliance.hardware.sim import control
from appliance.hardware.sim.control import CommandRefused
from appliance.hardware.sim.state import (
    MAX_EV_WATTS,
    MAX_FAULT_CODE_CHARS,
    EvseRecord,
    StateFiles,
    files_for,
    printable_ascii,
    valid_fault_code,
)
from appliance.util.redact import mask

LOG = logging.getLogger("appliance.hardware.sim")

DEFAULT_EVENTS_BUFFER = 64
DEFAULT_PERSIST_INTERVAL_S = 2.0
#: How far ahead of the register the persisted lease reaches, in persist intervals (see module docstring).
LEASE_INTERVALS = 3.0
MAX_TOKEN_CHARS = 36  # OCPP IdTokenType.idToken
DEFAULT_FAULT_CODE = "SimulatedFault"
TOKEN_TYPE = "ISO14443"
#: The device `silence` takes away (the EVSE's controller board, with the pilot, contactor and meter behind it).
CONTROLLER = "ChargeController"
#: Ripple amplitudes of the two sines; their sum stays within ±1 % of nominal.
_RIPPLE = ((0.007, 53.0), (0.003, 9.7))


def _floor_centi(amps: float) -> float:
    """Round a current down to 10 mA, so a reading never shows more than the offered current."""
    return math.floor(amps * 100.0 + 1e-9) / 100.0


def _ceil_milli(value: float) -> float:
    """Round up to 1 mWh, so a persisted value is never below what a reading (rounded to 1 mWh) showed."""
    return math.ceil(value * 1000.0 - 1e-6) / 1000.0


@dataclass
class _EvseSim:
    """The simulated physical world behind one EVSE."""

    layout: EvseLayout
    energy_wh: float
    ev_state: EVState = EVState.A
    requested_w: float | None = None  # None: as much as the EVSE can give
    offered_a: float = 0.0
    fault: str | None = None
    silent: bool = False
    indication: Indication | None = None
    last_integrated: float | None = None

    def record(self, energy_wh: float) -> EvseRecord:
        return EvseRecord(energy_wh, self.ev_state, self.requested_w, self.fault, self.silent)


class SimHardware:
    """The simulated backend (see the module docstring for the model and the persisted state).

    It has every capability of `appliance.hardware.base.Hardware`, plus `set_status_provider` (the station's
    view for `status`) and the commands of its control socket.
    """

    def __init__(
        self,
        layouts: list[EvseLayout],
        socket_path: Path,
        *,
        clock: Callable[[], float] = trio.current_time,
        events_buffer: int = DEFAULT_EVENTS_BUFFER,
        persist_interval_s: float = DEFAULT_PERSIST_INTERVAL_S,
        state_dir: Path | None = None,
        seed: int = 0,
    ) -> None:
        """`state_dir` keeps the physical state (the station's data directory; default: the socket's)."""
        ids = [layout.evse_id for layout in layouts]
        if not layouts or len(set(ids)) != len(ids):
            raise ValueError(f"EVSE layouts need distinct ids, got {ids}")
        self.layouts = list(layouts)
        self.socket_path = Path(socket_path)
        self.state_file, self.meter_file = files_for(
            Path(state_dir) if state_dir is not None else self.socket_path.parent, self.socket_path
        )
        self._files = StateFiles(self.state_file, self.meter_file)
        self._clock = clock
        self._persist_interval_s = persist_interval_s
        self._send, self.events = trio.open_memory_channel[HardwareEvent](events_buffer)
        stored = self._files.load(ids)
        self._evses: dict[int, _EvseSim] = {}
        for layout in self.layouts:
            start = stored.registers.get(layout.evse_id)
            if start is None:
                start = round(random.Random(f"appliance-sim/{seed}/{layout.evse_id}").uniform(1500, 6000), 1)
            evse = _EvseSim(layout, start)
            physical = stored.physical.get(layout.evse_id)
            if physical is not None:
                evse.ev_state, evse.requested_w = physical.ev_state, physical.requested_w
                evse.fault, evse.silent = physical.fault, physical.silent
            self._evses[layout.evse_id] = evse
        self._status_provider: StatusProvider | None = None
        self._common_indication: Indication | None = None
        self._stopped = False
        self._persisted: dict[int, EvseRecord] | None = None
        self._persist_kick = trio.Event()
        self._write_lock = trio.Lock()  # writes land in the order their snapshots were taken

    # ------------------------------------------------------------------------------------- Hardware API

    async def run(self, *, task_status: trio.TaskStatus[None] = trio.TASK_STATUS_IGNORED) -> None:
        """Serve the control socket and persist the register until cancelled; started() once listening.

        A control socket that cannot be set up raises (ControlSocketError, naming the path) before started(),
        unwrapped, so `await nursery.start(hw.run)` reports it plainly. On the way out (also on
        cancellation) the socket file is removed and the exact state is saved. A controller that was silent
        when the simulator last stopped is reported (`DeviceFault`) as soon as the station reads events.
        """
        listener = await control.open_listener(self.socket_path)  # errors surface raw from nursery.start
        self._stopped = False
        try:
            async with trio.open_nursery() as nursery:
                nursery.start_soon(control.serve, self, listener)
                nursery.start_soon(self._persist_loop)
                for evse in self._evses.values():
                    if evse.silent:
                        nursery.start_soon(self._send.send, DeviceFault(evse.layout.evse_id, CONTROLLER, "silent"))
                LOG.info(
                    "simulated hardware ready: %s",
                    ", ".join(
                        f"EVSE {e.layout.evse_id} {e.layout.phases}x{e.layout.max_current_a:g} A "
                        f"register {e.energy_wh:.1f} Wh EV {e.ev_state.value}"
                        f"{' fault ' + e.fault if e.fault else ''}{' silent' if e.silent else ''}"
                        for e in self._evses.values()
                    ),
                )
                task_status.started()
        finally:
            listener.close()
            self._stop()

    def ev_state(self, evse_id: int) -> EVState:
        return self._evse(evse_id).ev_state

    def faulted(self, evse_id: int) -> str | None:
        return self._evse(evse_id).fault

    def read_meter(self, evse_id: int) -> MeterReading:
        evse = self._evse(evse_id)
        now = self._clock()
        self._integrate(evse, now)
        layout = evse.layout
        voltages = tuple(round(v, 1) for v in self._voltages(evse, now))
        power = self._mean_power_w(evse)
        if power > 0:
            if (
                evse.requested_w is not None
                and evse.requested_w < evse.offered_a * layout.phases * layout.nominal_voltage_v
            ):
                per_phase_w = evse.requested_w / layout.phases
                currents = tuple(_floor_centi(min(per_phase_w / v, evse.offered_a)) for v in voltages)
            else:
                currents = tuple(_floor_centi(evse.offered_a) for _ in voltages)
        else:
            currents = tuple(0.0 for _ in voltages)
        actual_w = round(sum(v * i for v, i in zip(voltages, currents, strict=True)), 1)
        return MeterReading(
            energy_wh=round(evse.energy_wh, 3),
            power_w=actual_w,
            voltage_v=voltages,
            current_a=currents,
            offered_current_a=evse.offered_a,
            phases=layout.phases,
            taken_at=now,
            taken_utc=datetime.now(UTC),
        )

    def offered_current(self, evse_id: int) -> float:
        return self._evse(evse_id).offered_a

    def set_offered_current(self, evse_id: int, amps: float) -> None:
        evse = self._evse(evse_id)
        if evse.silent:
            LOG.debug("EVSE %d: controller silent; offer of %r A not heard", evse_id, amps)
            return
        try:
            wanted = float(amps)
        except (TypeError, ValueError):
            wanted = math.nan
        if not math.isfinite(wanted):
            LOG.warning("EVSE %d: offered current %r is not a number; offering 0 A", evse_id, amps)
            wanted = 0.0
        clamped = min(max(wanted, 0.0), evse.layout.max_current_a)
        if clamped != wanted:
            LOG.warning("EVSE %d: offered %.1f A clamped to %.1f A", evse_id, wanted, clamped)
        if clamped == evse.offered_a:
            return
        self._integrate(evse, self._clock())
        was_closed = evse.offered_a > 0
        evse.offered_a = clamped
        if (clamped > 0) != was_closed:
            LOG.info("EVSE %d: contactor %s (%.1f A offered)", evse_id, "closed" if clamped > 0 else "opened", clamped)
        else:
            LOG.debug("EVSE %d: %.1f A offered", evse_id, clamped)
        self._kick_persist()

    def indicate(self, evse_id: int | None, indication: Indication) -> None:
        if evse_id is None:
            self._common_indication = indication
            for evse in self._evses.values():
                evse.indication = indication
            LOG.info("display (all EVSEs): %s", indication.value)
            return
        target = self._evses.get(evse_id)
        if target is None:
            LOG.warning("indication %s for unknown EVSE %r ignored", indication.value, evse_id)
            return
        target.indication = indication
        LOG.info("display EVSE %d: %s", evse_id, indication.value)

    def set_status_provider(self, provider: StatusProvider) -> None:
        self._status_provider = provider

    # --------------------------------------------------------------------------------- simulated world

    async def plug(self, evse_id: int) -> tuple[str | None, dict[str, Any]]:
        """An EV is connected (state B). Returns the emitted event's name (None: not delivered, the controller
        is silent) and the EVSE's resulting state."""
        evse = self._command_evse(evse_id)
        if evse.ev_state is not EVState.A:
            raise CommandRefused(f"EVSE {evse_id} already has an EV plugged in (state {evse.ev_state.value})")
        self._set_ev_state(evse, EVState.B)
        evse.requested_w = None
        LOG.info("sim: EV plugged into EVSE %d", evse_id)
        return await self._emit(Plugged(evse_id), evse)

    async def charge(self, evse_id: int, watts: float | None = None) -> tuple[str | None, dict[str, Any]]:
        """The EV asks for energy (state C), up to `watts` (default: all the EVSE can give).

        Already charging: only the EV's wish changes, and no event is emitted.
        """
        evse = self._command_evse(evse_id)
        if watts is not None and (not math.isfinite(watts) or not 0 < watts <= MAX_EV_WATTS):
            raise CommandRefused(f"watts must be a number above 0 and at most {MAX_EV_WATTS:.0f}, got {watts}")
        if evse.ev_state is EVState.A:
            raise CommandRefused(f"EVSE {evse_id} has no EV plugged in (plug it first)")
        self._integrate(evse, self._clock())
        evse.requested_w = watts
        wish = f"{watts:.0f} W" if watts is not None else "as much as offered"
        if evse.ev_state is EVState.C:
            LOG.info("sim: EV on EVSE %d now wants %s", evse_id, wish)
            await self._persist_now()
            return None, self.evse_status(evse_id)
        self._set_ev_state(evse, EVState.C)
        LOG.info("sim: EV on EVSE %d asks for energy (%s)", evse_id, wish)
        return await self._emit(EVStateChanged(evse_id, EVState.C), evse)

    async def suspend(self, evse_id: int) -> tuple[str | None, dict[str, Any]]:
        """The EV stops asking for energy but stays connected (C → B)."""
        evse = self._command_evse(evse_id)
        if evse.ev_state is EVState.A:
            raise CommandRefused(f"EVSE {evse_id} has no EV plugged in")
        if evse.ev_state is EVState.B:
            raise CommandRefused(f"the EV on EVSE {evse_id} is not asking for energy (state B)")
        self._set_ev_state(evse, EVState.B)
        LOG.info("sim: EV on EVSE %d suspends charging", evse_id)
        return await self._emit(EVStateChanged(evse_id, EVState.B), evse)

    async def unplug(self, evse_id: int) -> tuple[str | None, dict[str, Any]]:
        """The EV is disconnected, also in the middle of charging (it drives away)."""
        evse = self._command_evse(evse_id)
        if evse.ev_state is EVState.A:
            raise CommandRefused(f"EVSE {evse_id} has no EV plugged in")
        self._set_ev_state(evse, EVState.A)
        evse.requested_w = None
        LOG.info("sim: EV unplugged from EVSE %d", evse_id)
        return await self._emit(Unplugged(evse_id), evse)

    async def tap(self, token: str, evse_id: int | None = None) -> dict[str, Any]:
        """An RFID card is presented, with `evse_id` selected on the display first (or none)."""
        if not token or len(token) > MAX_TOKEN_CHARS or not printable_ascii(token):
            raise CommandRefused(
                f"token must be 1 to {MAX_TOKEN_CHARS} printable ASCII characters without spaces, got {token!r}"
            )
        if evse_id is not None:
            self._command_evse(evse_id)
        LOG.info("sim: card %s presented%s", mask(token), f" at EVSE {evse_id}" if evse_id is not None else "")
        await self._send.send(CardPresented(token, evse_id, TOKEN_TYPE))
        return {"token": token, "tokenType": TOKEN_TYPE, "evseId": evse_id, "event": "CardPresented"}

    async def raise_fault(self, evse_id: int, code: str | None = None) -> tuple[str | None, dict[str, Any]]:
        """A hardware fault appears on the EVSE; no energy flows until it clears."""
        evse = self._command_evse(evse_id)
        code = DEFAULT_FAULT_CODE if code is None else code
        if not valid_fault_code(code):
            raise CommandRefused(
                f"fault code must be 1 to {MAX_FAULT_CODE_CHARS} printable ASCII characters, got {code!r}"
            )
        if evse.fault is not None:
            raise CommandRefused(f"EVSE {evse_id} is already faulted ({evse.fault}); clear it first")
        self._integrate(evse, self._clock())
        evse.fault = code
        LOG.info("sim: fault %s on EVSE %d", code, evse_id)
        return await self._emit(FaultRaised(evse_id, code), evse)

    async def clear_fault(self, evse_id: int) -> tuple[str | None, dict[str, Any]]:
        """The EVSE's fault goes away."""
        evse = self._command_evse(evse_id)
        if evse.fault is None:
            raise CommandRefused(f"EVSE {evse_id} has no fault to clear")
        self._integrate(evse, self._clock())
        LOG.info("sim: fault %s on EVSE %d cleared", evse.fault, evse_id)
        evse.fault = None
        self._kick_persist()
        return await self._emit(FaultCleared(evse_id), evse)

    async def silence(self, evse_id: int) -> tuple[str | None, dict[str, Any]]:
        """The EVSE's controller stops answering: `DeviceFault`, contactor open, no more events from it."""
        evse = self._command_evse(evse_id)
        if evse.silent:
            raise CommandRefused(f"the controller of EVSE {evse_id} is already silent (revive it first)")
        self._integrate(evse, self._clock())
        evse.offered_a = 0.0  # its watchdog drops the contactor
        evse.silent = True
        LOG.info("sim: the controller of EVSE %d goes silent", evse_id)
        return await self._emit(DeviceFault(evse_id, CONTROLLER, "no answer from the controller"), evse)

    async def revive(self, evse_id: int) -> tuple[str | None, dict[str, Any]]:
        """The EVSE's controller answers again: `DeviceRecovered`; the station re-reads its state."""
        evse = self._command_evse(evse_id)
        if not evse.silent:
            raise CommandRefused(f"the controller of EVSE {evse_id} is not silent")
        evse.silent = False
        LOG.info("sim: the controller of EVSE %d answers again", evse_id)
        return await self._emit(DeviceRecovered(evse_id, CONTROLLER), evse)

    def status(self) -> dict[str, Any]:
        """Every EVSE's hardware state plus the station's view of it (for `appliance sim status`)."""
        snapshots = self._snapshots()
        return {
            "evses": [self._evse_status(evse_id, snapshots.get(evse_id)) for evse_id in self._evses],
            "indication": self._common_indication.value if self._common_indication else None,
        }

    def evse_status(self, evse_id: int) -> dict[str, Any]:
        """One EVSE's entry of `status`."""
        return self._evse_status(evse_id, self._snapshots().get(evse_id))

    # ------------------------------------------------------------------------------------------ helpers

    def _evse(self, evse_id: int) -> _EvseSim:
        try:
            return self._evses[evse_id]
        except KeyError:
            raise KeyError(f"no EVSE {evse_id!r} (known: {sorted(self._evses)})") from None

    def _command_evse(self, evse_id: int) -> _EvseSim:
        evse = self._evses.get(evse_id)
        if evse is None:
            known = ", ".join(str(i) for i in self._evses)
            raise CommandRefused(f"unknown EVSE {evse_id} (this station has EVSE {known})")
        return evse

    def _set_ev_state(self, evse: _EvseSim, state: EVState) -> None:
        self._integrate(evse, self._clock())
        evse.ev_state = state
        self._kick_persist()

    async def _emit(self, event: HardwareEvent, evse: _EvseSim) -> tuple[str | None, dict[str, Any]]:
        """Persist the changed world, then deliver its event (none from a silent controller but its own)."""
        await self._persist_now()
        if evse.silent and not isinstance(event, DeviceFault):
            LOG.info("sim: EVSE %d's controller is silent; %s not reported", evse.layout.evse_id, type(event).__name__)
            return None, self.evse_status(evse.layout.evse_id)
        # Waits for room rather than dropping: a lost Unplugged would leave a transaction open forever.
        await self._send.send(event)
        return type(event).__name__, self.evse_status(evse.layout.evse_id)

    def _mean_power_w(self, evse: _EvseSim) -> float:
        if (
            self._stopped
            or evse.silent
            or evse.ev_state is not EVState.C
            or evse.fault is not None
            or evse.offered_a <= 0
        ):
            return 0.0
        layout = evse.layout
        limit = evse.offered_a * layout.phases * layout.nominal_voltage_v
        wish = layout.max_power_w if evse.requested_w is None else evse.requested_w
        return min(wish, limit)

    def _integrate(self, evse: _EvseSim, now: float) -> None:
        """Bring the register up to `now` at the power that flowed since the last integration."""
        if evse.last_integrated is not None and now > evse.last_integrated:
            evse.energy_wh += self._mean_power_w(evse) * (now - evse.last_integrated) / 3600.0
        if evse.last_integrated is None or now > evse.last_integrated:
            evse.last_integrated = now

    def _voltages(self, evse: _EvseSim, now: float) -> tuple[float, ...]:
        nominal = evse.layout.nominal_voltage_v
        out = []
        for phase in range(evse.layout.phases):
            ripple = sum(
                amplitude * math.sin(2 * math.pi * now / period + 2.1 * phase + 0.9 * evse.layout.evse_id + k)
                for k, (amplitude, period) in enumerate(_RIPPLE)
            )
            out.append(nominal * (1.0 + ripple))
        return tuple(out)

    def _snapshots(self) -> dict[int, StationSnapshot]:
        if self._status_provider is None:
            return {}
        try:
            return {snapshot.evse_id: snapshot for snapshot in self._status_provider()}
        except Exception:  # the station's view is a nicety; the hardware state must still be reported
            LOG.exception("status provider failed")
            return {}

    def _evse_status(self, evse_id: int, snapshot: StationSnapshot | None) -> dict[str, Any]:
        evse = self._evses[evse_id]
        reading = self.read_meter(evse_id)
        return {
            "evseId": evse_id,
            "connectorStatus": snapshot.connector_status if snapshot else "Unknown",
            "evState": evse.ev_state.value,
            "authorizedToken": snapshot.authorized_token if snapshot else None,
            "transactionId": snapshot.transaction_id if snapshot else None,
            "energyWh": reading.energy_wh,
            "powerW": reading.power_w,
            "voltageV": list(reading.voltage_v),
            "currentA": list(reading.current_a),
            "fault": evse.fault,
            "silent": evse.silent,
            "offeredCurrentA": evse.offered_a,
            "contactorClosed": evse.offered_a > 0,
            "requestedW": evse.requested_w,
            "maxCurrentA": evse.layout.max_current_a,
            "phases": evse.layout.phases,
            "indication": evse.indication.value if evse.indication else None,
            "station": dict(snapshot.extra) if snapshot else {},
        }

    # ------------------------------------------------------------------------------------- persistence

    def _snapshot(self, *, lease: bool = True) -> dict[int, EvseRecord]:
        """What to persist now: the physical state, each register plus (with `lease`) what it can grow until
        the write after next."""
        now = self._clock()
        lease_s = LEASE_INTERVALS * self._persist_interval_s if lease else 0.0
        records = {}
        for evse_id, evse in self._evses.items():
            self._integrate(evse, now)
            records[evse_id] = evse.record(_ceil_milli(evse.energy_wh + self._mean_power_w(evse) * lease_s / 3600.0))
        return records

    async def _write(self, records: dict[int, EvseRecord]) -> None:
        if await trio.to_thread.run_sync(self._files.save, records):
            self._persisted = records

    async def _persist_now(self) -> None:
        """Write the state as it is now, before a command's event goes out (a restart must find it)."""
        async with self._write_lock:
            await self._write(self._snapshot())
        self._kick_persist()  # the change may have set power flowing: the loop decides its next wake again

    def _kick_persist(self) -> None:
        """Wake the persist loop if the power may have risen beyond what the persisted lease covers."""
        self._persist_kick.set()

    async def _persist_loop(self) -> None:
        """Write the lease every interval while it moves, and at once when a state change outgrows it.

        Every change of the world kicks it (`_kick_persist`, `_persist_now`), so while no power flows and the
        state on disk is current it waits for a kick alone.

        Kicks that do not need a bigger lease wait for the interval, so a station that adjusts the offered
        current often cannot wear out the flash.
        """
        deadline = trio.current_time()
        while True:
            self._persist_kick = trio.Event()  # a kick from here on wakes the wait below
            async with self._write_lock:
                records = self._snapshot()
                due = trio.current_time() >= deadline
                persisted = self._persisted
                outgrown = persisted is None or any(
                    persisted.get(evse_id) is None or record.energy_wh > persisted[evse_id].energy_wh
                    for evse_id, record in records.items()
                )
                if outgrown or (due and records != persisted):
                    await self._write(records)
            if due:
                deadline = trio.current_time() + self._persist_interval_s
            # Nothing flows and all is on disk: nothing can change without a kick, so sleep until one (an
            # idle station must not wake every interval to find the same state; idle CPU is a target).
            settled = self._persisted == records and not any(self._mean_power_w(e) > 0 for e in self._evses.values())
            with trio.move_on_at(math.inf if settled else deadline):
                await self._persist_kick.wait()

    def _stop(self) -> None:
        """Power down: integrate up to now, open every contactor, save the exact state (EVs stay plugged)."""
        now = self._clock()
        for evse in self._evses.values():
            self._integrate(evse, now)
        self._stopped = True
        for evse in self._evses.values():
            evse.offered_a = 0.0
        exact = self._snapshot(lease=False)
        if self._files.save(exact):
            self._persisted = exact
        LOG.info(
            "simulated hardware stopped; state saved: %s",
            ", ".join(f"EVSE {i} {r.energy_wh:.3f} Wh EV {r.ev_state.value}" for i, r in exact.items()),
        )
