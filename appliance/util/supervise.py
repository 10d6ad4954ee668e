"""Restart-with-back-off for the station's long-lived tasks.

Trio has no "restart on failure": a supervisor is a loop in the parent. A task that crashes is logged with
its traceback and restarted after a growing delay; one that keeps crashing quickly is a bug the station
cannot recover from, so after `max_rapid_failures` in a row the error propagates, the root nursery
unwinds and the process exits non-zero for the service manager to restart it (the journal makes that
safe).
"""

from __future__ import annotations

import logging
from collections.abc import Awaitable, Callable

import trio

log = logging.getLogger("appliance.supervisor")


class GaveUp(Exception):
    """A supervised task failed too often in a row."""


async def supervise(
    name: str,
    task: Callable[[], Awaitable[None]],
    *,
    first_delay: float = 1.0,
    max_delay: float = 60.0,
    max_rapid_failures: int = 5,
    healthy_after: float = 60.0,
) -> None:
    """Run `task` until it returns; restart it after each exception (cancellation passes through)."""
    delay = first_delay
    rapid = 0
    while True:
        started = trio.current_time()
        try:
            await task()
            return
        except Exception as exc:
            if trio.current_time() - started >= healthy_after:
                rapid, delay = 0, first_delay
            rapid += 1
            if rapid >= max_rapid_failures:
                log.critical("%s failed %d times in a row; giving up", name, rapid, exc_info=True)
                raise GaveUp(f"{name} failed {rapid} times in a row") from exc
            log.error("%s failed; restarting in %.1f s", name, delay, exc_info=True)
        await trio.sleep(delay)
        delay = min(delay * 2, max_delay)
