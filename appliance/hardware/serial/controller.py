"""The charge controller board: control pilot, proximity, contactor and faults of every EVSE, over one port.

The board speaks the line protocol of `line_protocol` (the README documents it for board makers). It sends an
`ST` line per EVSE on every change and at least once a second; that stream is its heartbeat. From it:

* pilot A → no EV, B → connected, C and D (ventilation asked) → asking for energy: `Plugged`, `Unplugged`,
  `EVStateChanged` on changes. E (pilot shorted, no power) and F (the board's own error) are faults
  (`PilotStateE`/`PilotStateF`) with the EV's last state kept;
* `f=` codes are hardware faults: `FaultRaised` (an RCD trip, an over-current or an emergency stop ends an
  ongoing transaction at once, GroundFault / OvercurrentFault / EmergencyStop; any other code ends it with
  Other), `FaultCleared` once the board reports none;
* the contactor feedback `k=` is checked against what we commanded: closed for longer than
  `contactor_timeout_s` after we opened it is `ContactorWelded`, still open that long after we closed it (with
  the EV asking and no fault) is `ContactorFailure`;
* `pp=` (a socket's cable rating) caps the offered current.

The station's side: `set_offered_current` becomes `CUR` (PWM duty, below 6 A nothing is offered: IEC 61851
has no smaller duty) and `CON`, sent at once and again with every `HB` (each second), so a board that
restarted is told again; its watchdog opens the contactors if our heartbeat stops.

The board is lost — `DeviceFault(evse, "ChargeController")` for each of its EVSEs, the transaction ended —
when no valid line came for `heartbeat_timeout_s`, when five garbage lines arrive within that window, or when
its port disappears (re-opened with back-off). It is back (`DeviceRecovered`, the station re-reads
`ev_state` and `faulted`) once every EVSE has reported a fresh status and no garbage came for a window.
"""

from __future__ import annotations

import logging
from collections.abc import Awaitable, Callable
from dataclasses import dataclass

import trio

from appliance.hardware.base import (
    DeviceFault,
    DeviceRecovered,
    EvseLayout,
    EVState,
    EVStateChanged,
    FaultCleared,
    FaultRaised,
    HardwareEvent,
    Plugged,
    Unplugged,
)
from appliance.hardware.serial import line_protocol as lp
from appliance.hardware.serial.ports import Backoff, LinePort, PortLost
from appliance.hardware.serial.settings import ControllerSettings

log = logging.getLogger("appliance.hardware.serial")

CONTROLLER = "ChargeController"
HEARTBEAT_EVERY_S = 1.0
GARBAGE_LIMIT = 5
MIN_OFFER_A = 6.0  # IEC 61851-1: no PWM duty offers less


@dataclass
class _Evse:
    layout: EvseLayout
    status: lp.Status | None = None
    fresh: bool = False  # a status arrived since the board was lost
    ev: EVState = EVState.A  # what the station was told
    fault: str | None = None  # what the station was told
    offered_a: float = 0.0
    mismatch_since: float | None = None
    contactor_fault: str | None = None

    def current_ev(self) -> EVState:
        if self.status is None:
            return self.ev
        pilot = self.status.pilot
        if pilot == "A":
            return EVState.A
        if pilot == "B":
            return EVState.B
        if pilot in "CD":
            return EVState.C
        return self.ev  # E/F: a fault; the EV is where it was

    def current_fault(self) -> str | None:
        if self.status is not None and self.status.faults:
            return self.status.faults[0]
        if self.contactor_fault is not None:
            return self.contactor_fault
        if self.status is not None and self.status.pilot in "EF":
            return f"PilotState{self.status.pilot}"
        return None


class ControllerBoard:
    def __init__(
        self,
        settings: ControllerSettings,
        layouts: list[EvseLayout],
        emit: Callable[[HardwareEvent], Awaitable[None]],
        *,
        on_select: Callable[[int], None],
        reopen_max_s: float = 30.0,
    ) -> None:
        self.settings = settings
        self._evses = {layout.evse_id: _Evse(layout) for layout in layouts}
        self._emit = emit
        self._on_select = on_select
        self._port = LinePort(settings.port, max_line=lp.MAX_LINE)
        self._backoff = Backoff(maximum=reopen_max_s)
        self._kick = trio.Event()
        self._last_valid = 0.0
        self._garbage: list[float] = []
        self._heartbeat = 0
        self._ready = trio.Event()
        self.lost: str | None = None

    # ---------------------------------------------------------------------------------- capability

    def ev_state(self, evse_id: int) -> EVState:
        return self._evses[evse_id].current_ev()

    def faulted(self, evse_id: int) -> str | None:
        return self._evses[evse_id].current_fault()

    def offered_current(self, evse_id: int) -> float:
        return self._evses[evse_id].offered_a

    def set_offered_current(self, evse_id: int, amps: float) -> None:
        evse = self._evses[evse_id]
        try:
            wanted = float(amps)
        except (TypeError, ValueError):
            wanted = 0.0
        if wanted != wanted or wanted < 0:  # NaN or negative: nothing
            wanted = 0.0
        cap = evse.layout.max_current_a
        if evse.status is not None and evse.status.cable_a is not None:
            cap = min(cap, float(evse.status.cable_a))
        offer = min(wanted, cap)
        if 0 < offer < MIN_OFFER_A:
            log.info(
                "EVSE %d: %.1f A is below the %.0f A a pilot can offer; offering none", evse_id, offer, MIN_OFFER_A
            )
            offer = 0.0
        if offer != evse.offered_a:
            if (offer > 0) != (evse.offered_a > 0):
                evse.mismatch_since = None
                log.info("EVSE %d: contactor %s (%.1f A offered)", evse_id, "close" if offer > 0 else "open", offer)
            evse.offered_a = offer
            self._kick.set()

    # ---------------------------------------------------------------------------------- running

    async def run(self, task_status: trio.TaskStatus[None] = trio.TASK_STATUS_IGNORED) -> None:
        """Talk to the board forever; started() once every EVSE reported (or the board proved silent)."""
        self._last_valid = trio.current_time()
        async with trio.open_nursery() as nursery:
            nursery.start_soon(self._connection_loop)
            nursery.start_soon(self._watchdog)
            with trio.move_on_after(self.settings.heartbeat_timeout_s + 0.5):
                await self._ready.wait()
            task_status.started()

    async def _connection_loop(self) -> None:
        try:
            while True:
                try:
                    await self._port.open()
                    self._backoff.reset()
                    log.info("charge controller on %s open", self.settings.port.url)
                    async with trio.open_nursery() as nursery:
                        nursery.start_soon(self._writer)
                        await self._read_lines()
                except* PortLost as lost:  # from the writer or the reader (the other one is cancelled)
                    await self._lose(str(lost.exceptions[0]))
                await trio.sleep(self._backoff.next_delay())
        finally:
            self._port.close()

    async def _writer(self) -> None:
        while True:
            self._heartbeat += 1
            self._port.write_line(lp.format_heartbeat(self._heartbeat))
            for evse_id, evse in self._evses.items():
                self._port.write_line(lp.format_current(evse_id, evse.offered_a))
                self._port.write_line(lp.format_contactor(evse_id, evse.offered_a > 0))
            self._kick = trio.Event()
            with trio.move_on_after(HEARTBEAT_EVERY_S):
                await self._kick.wait()

    async def _read_lines(self) -> None:
        async for raw in self._port.lines():
            now = trio.current_time()
            if raw is None:
                await self._refuse("a line over 128 bytes", now)
                continue
            try:
                line = lp.parse_board_line(raw)
            except lp.ProtocolError as exc:
                await self._refuse(f"a {len(raw)}-byte line: {exc}", now)
                continue
            if isinstance(line, lp.Status) and line.evse_id not in self._evses:
                await self._refuse(f"a status for EVSE {line.evse_id}, which this station does not have", now)
                continue
            self._last_valid = now
            await self._handle(line, now)

    async def _handle(self, line: lp.BoardLine, now: float) -> None:
        match line:
            case lp.Status():
                evse = self._evses[line.evse_id]
                evse.status, evse.fresh = line, True
                self._check_contactor(evse, now)
                if self.lost is not None:
                    await self._maybe_recover(now)
                elif not self._ready.is_set():
                    evse.ev, evse.fault = evse.current_ev(), evse.current_fault()  # the station syncs at start
                    if all(e.status is not None for e in self._evses.values()):
                        self._ready.set()
                else:
                    await self._report(evse)
            case lp.Select(evse_id=evse_id):
                if evse_id in self._evses:
                    self._on_select(evse_id)
            case lp.Hello(text=text):
                log.warning("charge controller (re)started: %s", text)
                for evse in self._evses.values():
                    evse.contactor_fault = None
                self._kick.set()  # tell it everything again now
            case lp.BoardError(text=text):
                log.warning("charge controller refused a command: %s", text)

    def _check_contactor(self, evse: _Evse, now: float) -> None:
        assert evse.status is not None
        commanded = evse.offered_a > 0
        asking = evse.status.pilot in "CD" and not evse.status.faults
        expected = commanded and asking
        mismatch = evse.status.contactor != expected and (evse.status.contactor or commanded)
        if not mismatch:
            evse.mismatch_since = None
            # Welded clears when the contact reads open; a contactor that failed to close stays suspect until the
            # EV has left (or the board restarts).
            if (evse.contactor_fault == "ContactorWelded" and not evse.status.contactor) or (
                evse.contactor_fault == "ContactorFailure" and evse.status.pilot == "A"
            ):
                log.warning("EVSE %d: contactor follows again", evse.layout.evse_id)
                evse.contactor_fault = None
            return
        if evse.mismatch_since is None:
            evse.mismatch_since = now
        elif now - evse.mismatch_since >= self.settings.contactor_timeout_s and evse.contactor_fault is None:
            evse.contactor_fault = "ContactorWelded" if evse.status.contactor else "ContactorFailure"
            log.error(
                "EVSE %d: %s (contactor %s, commanded %s for %.1f s)",
                evse.layout.evse_id,
                evse.contactor_fault,
                "closed" if evse.status.contactor else "open",
                "closed" if commanded else "open",
                now - evse.mismatch_since,
            )

    async def _report(self, evse: _Evse) -> None:
        """Tell the station what changed since it was last told, in the order a person would see it."""
        evse_id = evse.layout.evse_id
        ev, fault = evse.current_ev(), evse.current_fault()
        if fault != evse.fault and fault is not None:
            evse.fault = fault
            log.error("EVSE %d: fault %s reported by the charge controller", evse_id, fault)
            await self._emit(FaultRaised(evse_id, fault, stopped_reason=lp.STOP_REASONS.get(fault, "Other")))
        if ev != evse.ev:
            before, evse.ev = evse.ev, ev
            if before is EVState.A:
                await self._emit(Plugged(evse_id))
                if ev is EVState.C:
                    await self._emit(EVStateChanged(evse_id, EVState.C))
            elif ev is EVState.A:
                await self._emit(Unplugged(evse_id))
            else:
                await self._emit(EVStateChanged(evse_id, ev))
        if fault is None and evse.fault is not None:
            log.warning("EVSE %d: fault %s cleared", evse_id, evse.fault)
            evse.fault = None
            await self._emit(FaultCleared(evse_id))

    async def _refuse(self, what: str, now: float) -> None:
        log.warning("charge controller on %s: ignored %s", self.settings.port.url, what)
        window = self.settings.heartbeat_timeout_s
        self._garbage = [t for t in self._garbage if now - t < window] + [now]
        if len(self._garbage) >= GARBAGE_LIMIT:
            await self._lose(f"garbage: {len(self._garbage)} unreadable lines within {window:g} s")

    async def _watchdog(self) -> None:
        timeout = self.settings.heartbeat_timeout_s
        while True:
            silent_for = trio.current_time() - self._last_valid
            if silent_for >= timeout:
                await self._lose(f"silent: no status for {silent_for:.1f} s (heartbeat lost)")
                await trio.sleep(timeout / 4)
            else:
                await trio.sleep(timeout - silent_for + 0.01)

    async def _lose(self, cause: str) -> None:
        if self.lost is not None:
            return
        self.lost = cause
        self._ready.set()  # the station can start; it hears the fault
        for evse in self._evses.values():
            evse.fresh = False
        log.error("charge controller on %s lost: %s", self.settings.port.url, cause)
        for evse_id in self._evses:
            await self._emit(DeviceFault(evse_id, CONTROLLER, cause, stopped_reason="Other"))

    async def _maybe_recover(self, now: float) -> None:
        if not all(e.fresh for e in self._evses.values()):
            return
        if any(now - t < self.settings.heartbeat_timeout_s for t in self._garbage):
            return
        log.warning("charge controller on %s answers again (was: %s)", self.settings.port.url, self.lost)
        self.lost = None
        self._garbage.clear()
        for evse_id, evse in self._evses.items():
            evse.ev, evse.fault = evse.current_ev(), evse.current_fault()  # the station re-reads these
            await self._emit(DeviceRecovered(evse_id, CONTROLLER))
