"""The loopback CSMS's blocking methods as Trio coroutines.

A Trio test must never call a blocking method directly: it would freeze the Trio loop — and with it the
station under test when both run in the same process — until the CSMS times out. Each coroutine here runs its
method in a Trio worker thread. Cancellation waits for the method to return (each is bounded by its own
timeout), so no thread outlives the test.
"""

from __future__ import annotations

import functools
from collections.abc import Callable
from typing import TYPE_CHECKING, Any, TypeVar

import trio

if TYPE_CHECKING:
    from .records import ConnectionRecord
    from .server import LoopbackCsms

T = TypeVar("T")


class TrioCsms:
    """`csms.trio`: e.g. `await csms.trio.call("CS001", "Reset", {"type": "Immediate"})`.

    Only the methods that wait are here; the non-blocking ones (`frames`, `violations`, `set_response`, …)
    are called on the LoopbackCsms itself.
    """

    def __init__(self, csms: LoopbackCsms) -> None:
        self.csms = csms

    @staticmethod
    async def _run(fn: Callable[..., T], *args: Any, **kwargs: Any) -> T:
        return await trio.to_thread.run_sync(functools.partial(fn, *args, **kwargs))

    async def call(self, station_id: str, action: str, payload: Any, timeout: float = 10, **kw: Any) -> dict[str, Any]:
        return await self._run(self.csms.call, station_id, action, payload, timeout, **kw)

    async def send_raw(self, station_id: str, text: str) -> None:
        await self._run(self.csms.send_raw, station_id, text)

    async def disconnect(self, station_id: str, code: int = 1000, reason: str = "") -> bool:
        return await self._run(self.csms.disconnect, station_id, code, reason)

    async def restart(self, down_for: float = 0, **kw: Any) -> None:
        await self._run(self.csms.restart, down_for, **kw)

    async def wait_for(self, predicate: Callable[[], T | None], timeout: float = 10, **kw: Any) -> T:
        return await self._run(self.csms.wait_for, predicate, timeout, **kw)

    async def wait_connected(self, station_id: str, timeout: float = 10) -> ConnectionRecord:
        return await self._run(self.csms.wait_connected, station_id, timeout)

    async def wait_disconnected(self, station_id: str, timeout: float = 10) -> None:
        await self._run(self.csms.wait_disconnected, station_id, timeout)

    async def wait_action(self, station_id: str, action: str, timeout: float = 10, **kw: Any) -> list[dict[str, Any]]:
        return await self._run(self.csms.wait_action, station_id, action, timeout, **kw)
