"""The RFID reader: one line per presented card, the UID in hex (`04A1B2C3` CR LF), turned into CardPresented.

What a real reader does that the station must cope with:

* it repeats the card every second or so while it lies on the reader: the same UID within `debounce_s` of its
  last sighting is the same presentation (the window slides while it is repeated, so a card left lying there
  is one tap; lift it for longer than `debounce_s` and it is a new one);
* line noise, a reader booting, or a reader of another kind sends garbage: a line that is not 4, 7 or 10 bytes
  of hex (8, 14 or 20 hex digits), or over 64 bytes, is logged (its length, never its text) and ignored. Five
  such lines within ten seconds mean the reader is not what we think it is: `DeviceFault(None, "CardReader")`
  until ten quiet seconds or a good line;
* the port disappears (USB unplugged): `DeviceFault`, then re-opened with back-off until it is back
  (`DeviceRecovered`).

EVSE selection, the certified station's UI rule: a card authorizes for the EVSE the user selected first. A
reader mounted at one EVSE (`evse`) selects that one; otherwise the controller board's display reports the
user's choice (`SEL`, see line_protocol), valid for `selection_timeout_s` and used by one card. A card without
a selection goes on with `evse_id` None: the station then lets it stop its own session, takes the single EVSE
of a one-EVSE station, or asks the user to select one.
"""

from __future__ import annotations

import logging
import re
from collections.abc import Awaitable, Callable

import trio

from appliance.hardware.base import CardPresented, DeviceFault, DeviceRecovered, HardwareEvent
from appliance.hardware.serial.ports import Backoff, LinePort, PortLost
from appliance.hardware.serial.settings import ReaderSettings
from appliance.util.redact import mask

log = logging.getLogger("appliance.hardware.serial")

READER = "CardReader"
MAX_LINE = 64
_UID = re.compile(r"(?:[0-9A-Fa-f]{8}|[0-9A-Fa-f]{14}|[0-9A-Fa-f]{20})")
GARBAGE_LIMIT = 5
GARBAGE_WINDOW_S = 10.0


class CardReaderDevice:
    def __init__(
        self, settings: ReaderSettings, emit: Callable[[HardwareEvent], Awaitable[None]], *, reopen_max_s: float = 30.0
    ) -> None:
        self.settings = settings
        self._emit = emit
        self._port = LinePort(settings.port, max_line=MAX_LINE)
        self._backoff = Backoff(maximum=reopen_max_s)
        self._last_seen: dict[str, float] = {}
        self._selection: tuple[int, float] | None = None
        self._garbage: list[float] = []
        self.lost: str | None = None  # why the reader is out of service, None while it works

    def select(self, evse_id: int) -> None:
        """The user chose an EVSE on the display: the next card is for it (within selection_timeout_s)."""
        self._selection = (evse_id, trio.current_time())
        log.info("EVSE %d selected for the next card", evse_id)

    async def run(self, task_status: trio.TaskStatus[None] = trio.TASK_STATUS_IGNORED) -> None:
        """Read cards forever, re-opening the port with back-off; started() after the first attempt."""
        started = False
        try:
            async with trio.open_nursery() as nursery:
                nursery.start_soon(self._quiet_watch)
                while True:
                    try:
                        await self._port.open()
                        self._backoff.reset()
                        if self.lost is not None and not self._garbage_now():
                            await self._recover()
                        log.info("card reader on %s open", self.settings.port.url)
                        if not started:
                            started = True
                            task_status.started()
                        await self._read_lines()
                    except PortLost as exc:
                        await self._lose(str(exc))
                    if not started:
                        started = True
                        task_status.started()
                    await trio.sleep(self._backoff.next_delay())
        finally:
            self._port.close()

    async def _read_lines(self) -> None:
        async for line in self._port.lines():
            now = trio.current_time()
            if line is None:
                await self._refuse(f"a line over {MAX_LINE} bytes", now)
                continue
            text = line.decode("ascii", "replace").strip()
            if not _UID.fullmatch(text):
                await self._refuse(f"a {len(line)}-byte line that is not a card UID (8, 14 or 20 hex digits)", now)
                continue
            uid = text.upper()
            if self.lost is not None:
                self._garbage.clear()
                await self._recover()
            last = self._last_seen.get(uid)
            self._last_seen[uid] = now
            self._forget_old(now)
            if last is not None and now - last < self.settings.debounce_s:
                log.debug("card %s still on the reader", mask(uid))
                continue
            evse = self._selected(now)
            log.info("card %s presented%s", mask(uid), f" for EVSE {evse}" if evse is not None else "")
            await self._emit(CardPresented(uid, evse, "ISO14443"))

    def _selected(self, now: float) -> int | None:
        if self.settings.evse is not None:
            return self.settings.evse
        selection, self._selection = self._selection, None
        if selection is not None and now - selection[1] <= self.settings.selection_timeout_s:
            return selection[0]
        return None

    def _forget_old(self, now: float) -> None:
        if len(self._last_seen) > 64:  # bounded: only recent cards matter for the debounce
            self._last_seen = {uid: t for uid, t in self._last_seen.items() if now - t < self.settings.debounce_s}

    async def _refuse(self, what: str, now: float) -> None:
        log.warning("card reader on %s: ignored %s", self.settings.port.url, what)
        self._garbage = [t for t in self._garbage if now - t < GARBAGE_WINDOW_S] + [now]
        if len(self._garbage) >= GARBAGE_LIMIT and self.lost is None:
            await self._lose(f"garbage: {len(self._garbage)} unreadable lines within {GARBAGE_WINDOW_S:g} s")

    def _garbage_now(self) -> bool:
        now = trio.current_time()
        return any(now - t < GARBAGE_WINDOW_S for t in self._garbage)

    async def _quiet_watch(self) -> None:
        """A reader that was lost to garbage is back once it has been quiet for the garbage window."""
        while True:
            await trio.sleep(1.0)
            if self.lost is not None and self._garbage and not self._garbage_now():
                self._garbage.clear()
                await self._recover()

    async def _lose(self, cause: str) -> None:
        if self.lost is None:
            self.lost = cause
            log.error("card reader out of service: %s", cause)
            await self._emit(DeviceFault(None, READER, cause))

    async def _recover(self) -> None:
        log.warning("card reader back in service (was: %s)", self.lost)
        self.lost = None
        await self._emit(DeviceRecovered(None, READER))
