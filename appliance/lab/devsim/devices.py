"""The bench's RFID reader and charge controller board, each in a thread of its own like a real device.

`ReaderSim` writes what a reader writes: one line per card (`04A1B2C3` CR LF), repeated while the card lies on
it (`hold`), or whatever bytes a test wants (`garbage`). `BoardSim` plays the charge controller board of
`appliance.hardware.serial.line_protocol`: it reports every EVSE's pilot, cable, contactor and faults (on a
change and every `status_every` seconds), obeys CUR/CON, and opens the contactors when the station's
heartbeat stops for `watchdog_s` (its watchdog). The people-side of the bench — plug, charge, fault, press
the EVSE button, go silent, babble, pull the port — are its methods; all of them return at once (they only
change state or write a few bytes), so a Trio test may call them directly.
"""

from __future__ import annotations

import contextlib
import logging
import threading
import time

from appliance.hardware.serial import line_protocol as lp
from appliance.lab.devsim.endpoint import Endpoint
from appliance.lab.devsim.world import EvseWorld, World

log = logging.getLogger("appliance.lab.devsim")


class _Device:
    """A thread that reads what the station sends (and accepts its TCP connection) until `close()`."""

    def __init__(self, endpoint: Endpoint, name: str) -> None:
        self.endpoint = endpoint
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._loop, name=name, daemon=True)

    def start(self) -> None:
        self._thread.start()

    def _loop(self) -> None:
        while not self._stop.is_set():
            data = self.endpoint.read(0.05)
            self.received(data)
            self.tick(time.monotonic())

    def received(self, data: bytes) -> None:
        """Bytes from the station (b"" when none came)."""

    def tick(self, now: float) -> None:
        """Called about every 50 ms."""

    def disconnect(self) -> None:
        """Pull the device's serial cable: the station's port disappears."""
        self.endpoint.unplug()

    def reconnect(self) -> None:
        """Plug the device's serial cable back in (the same port name)."""
        self.endpoint.plug()

    def close(self) -> None:
        self._stop.set()
        if self._thread.is_alive():
            self._thread.join(2)
        self.endpoint.close()


class ReaderSim(_Device):
    def __init__(self, endpoint: Endpoint) -> None:
        super().__init__(endpoint, "devsim-reader")
        self._holds: list[tuple[str, float, float, float]] = []  # uid, until, every, next
        self._lock = threading.Lock()

    def present(self, uid: str) -> None:
        """A card is held to the reader for one read."""
        self.endpoint.write(uid.encode("ascii") + b"\r\n")

    def hold(self, uid: str, seconds: float, every: float = 0.5) -> None:
        """The card lies on the reader for `seconds`: its line repeats every `every` seconds."""
        self.present(uid)
        now = time.monotonic()
        with self._lock:
            self._holds.append((uid, now + seconds, every, now + every))

    def garbage(self, data: bytes) -> None:
        self.endpoint.write(data)

    def tick(self, now: float) -> None:
        with self._lock:
            holds, self._holds = self._holds, []
            for uid, until, every, due in holds:
                if now >= due:
                    self.present(uid)
                    due = now + every
                if now < until:
                    self._holds.append((uid, until, every, due))


class BoardSim(_Device):
    def __init__(self, endpoint: Endpoint, world: World, *, status_every: float = 0.5, watchdog_s: float = 3.0) -> None:
        super().__init__(endpoint, "devsim-board")
        self.world = world
        self.status_every = status_every
        self.watchdog_s = watchdog_s
        self.silent = False
        self._buffer = b""
        self._last_hb = time.monotonic()
        self._heard_at: float | None = None  # the station's last heartbeat
        self._next_status = 0.0
        self._sent: dict[int, str] = {}
        self.watchdog_tripped = False
        #: the PWM duty cycle the board puts on each EVSE's pilot for the offered current (IEC 61851-1)
        self.pwm_percent: dict[int, float] = dict.fromkeys(world.evses, 100.0)

    # --- what people do -------------------------------------------------------------------------

    def plug(self, evse_id: int, cable_a: int | None = None) -> None:
        """An EV is connected (pilot B); `cable_a`: a socket's cable rating."""
        self._set(evse_id, pilot="B", cable_a=cable_a, wish_w=None)

    def unplug(self, evse_id: int) -> None:
        """The EV leaves (pilot A)."""
        self._set(evse_id, pilot="A", wish_w=None, cable_a=None)

    def charge(self, evse_id: int, watts: float | None = None) -> None:
        self._set(evse_id, pilot="C", wish_w=watts)

    def suspend(self, evse_id: int) -> None:
        self._set(evse_id, pilot="B")

    def pilot(self, evse_id: int, state: str) -> None:
        self._set(evse_id, pilot=state)

    def fault(self, evse_id: int, code: str) -> None:
        self.world.change(evse_id, lambda e: e.faults.append(code) if code not in e.faults else None)
        self._next_status = 0.0

    def clear(self, evse_id: int, code: str | None = None) -> None:
        def apply(e: EvseWorld) -> None:
            e.faults[:] = [f for f in e.faults if code is not None and f != code]

        self.world.change(evse_id, apply)
        self._next_status = 0.0

    def weld(self, evse_id: int, welded: bool = True) -> None:
        self._set(evse_id, welded=welded)

    def select(self, evse_id: int) -> None:
        """The user presses the EVSE's button on the display."""
        self._write(f"SEL {evse_id}")

    def silence(self) -> None:
        """The board's firmware hangs: no more lines, no commands obeyed, the contactor coils drop."""
        self.silent = True
        for evse_id in self.world.evses:
            self._set(evse_id, contactor_commanded=False)

    def revive(self) -> None:
        """The board restarts: HELLO, then statuses."""
        self.silent = False
        self._sent.clear()
        self._write("HELLO devsim-board 1.0")
        self._next_status = 0.0

    def babble(self, lines: int = 6) -> None:
        """Line noise: lines that are not the protocol."""
        for i in range(lines):
            self.endpoint.write(b"\x13\xfe?ST 9 cp=Q%d\r\n" % i)

    def station_heard_within(self, seconds: float) -> bool:
        """Has the station's heartbeat come in the last `seconds` (is a station running and talking to us)?"""
        return self._heard_at is not None and time.monotonic() - self._heard_at <= seconds

    # --- the board's firmware -------------------------------------------------------------------

    def _set(self, evse_id: int, **values: object) -> None:
        def apply(e: EvseWorld) -> None:
            for key, value in values.items():
                setattr(e, key, value)

        self.world.change(evse_id, apply)
        self._next_status = 0.0

    def _write(self, line: str) -> None:
        self.endpoint.write(line.encode("ascii") + b"\r\n")

    def received(self, data: bytes) -> None:
        if not data:
            return
        self._buffer += data
        *lines, self._buffer = self._buffer.replace(b"\r", b"\n").split(b"\n")
        self._buffer = self._buffer[-256:]
        if self.silent:
            return
        for raw in lines:
            if not raw:
                continue
            try:
                command = lp.parse_station_line(raw)
            except lp.ProtocolError as exc:
                self._write(f"ERR {exc}")
                continue
            if command.verb == "HB":
                self._last_hb = self._heard_at = time.monotonic()
                if self.watchdog_tripped:
                    self.watchdog_tripped = False
                continue
            evse_id = command.evse_id
            if evse_id not in self.world.evses:
                self._write(f"ERR no EVSE {evse_id}")
                continue
            if command.verb == "CUR":
                self.pwm_percent[evse_id] = lp.pwm_duty_percent(command.value)
                self._set(evse_id, offered_a=command.value)
            else:
                self._set(evse_id, contactor_commanded=command.value == 1)

    def tick(self, now: float) -> None:
        if self.silent:
            return
        if now - self._last_hb > self.watchdog_s and not self.watchdog_tripped:
            self.watchdog_tripped = True
            for evse_id in self.world.evses:
                self._set(evse_id, contactor_commanded=False, offered_a=0.0)
                self.pwm_percent[evse_id] = 100.0
        periodic = now >= self._next_status
        if periodic:
            self._next_status = now + self.status_every
        with self.world.lock:
            statuses = {
                i: lp.format_status(lp.Status(i, e.pilot, e.cable_a, e.contactor_closed, tuple(e.faults)))
                for i, e in self.world.evses.items()
            }
        for evse_id, line in statuses.items():
            if periodic or self._sent.get(evse_id) != line:
                self._sent[evse_id] = line
                with contextlib.suppress(OSError):
                    self._write(line)
