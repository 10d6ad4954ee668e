"""The station clock: the host's UTC clock corrected by the CSMS's currentTime (ClockCtrlr.TimeSource Heartbeat).

The station has no trusted time of its own, so the offset between the host clock and the CSMS's
BootNotification/Heartbeat `currentTime` is applied to every timestamp we produce. Only wall-clock *stamps*
use this; every duration and timer in the station runs on Trio's monotonic clock, so a clock jump never
shortens or stretches an interval.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Awaitable, Callable
from datetime import UTC, datetime

# Time as text lives in `appliance.timetext`; the two the station uses most are importable from here too.
from appliance.timetext import format_iso, parse_iso

__all__ = ["StationClock", "format_iso", "parse_iso"]

log = logging.getLogger("appliance.clock")


class StationClock:
    def __init__(self, offset: float = 0.0, on_adjust: Callable[[float], Awaitable[None]] | None = None) -> None:
        self.offset = offset  # seconds to add to the host clock (restored at boot from the last known one)
        self._on_adjust = on_adjust
        self._listeners: list[Callable[[float], None]] = []

    def add_listener(self, listener: Callable[[float], None]) -> None:
        """Call `listener(jump)` after every adjustment to the CSMS's time (security: SettingSystemTime)."""
        self._listeners.append(listener)

    def timestamp(self) -> float:
        return time.time() + self.offset

    def now(self) -> datetime:
        return datetime.fromtimestamp(self.timestamp(), UTC)

    def iso(self) -> str:
        return format_iso(self.now())

    async def adjust(self, csms_time: str) -> float:
        """Adopt the CSMS's time; return the jump in seconds (the listeners hear it too: SettingSystemTime).

        A jump of a second or more is persisted (awaited) so the next boot starts from the corrected time.
        """
        try:
            target = parse_iso(csms_time).timestamp()
        except ValueError:
            log.warning("ignoring unparseable currentTime %r from CSMS", csms_time)
            return 0.0
        jump = target - self.timestamp()
        self.offset = target - time.time()
        for listener in self._listeners:
            listener(jump)
        if abs(jump) >= 1:
            log.info("station clock moved by %+.3f s to follow the CSMS", jump)
            if self._on_adjust is not None:
                await self._on_adjust(self.offset)
        return jump
