"""An observable value: tasks wait for a condition on it instead of polling.

The link's state (offline / booting / accepted), a connector's status and "a device-model variable changed"
are all things several tasks wait on. Each change wakes every waiter, which re-checks its own predicate.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Generic, TypeVar

import trio

T = TypeVar("T")


class Watched(Generic[T]):
    def __init__(self, value: T) -> None:
        self._value = value
        self._changed = trio.Event()

    @property
    def value(self) -> T:
        return self._value

    def set(self, value: T) -> None:
        """Replace the value and wake every waiter (even if equal: a re-set is a signal too)."""
        self._value = value
        self._changed.set()
        self._changed = trio.Event()

    async def wait_change(self) -> T:
        """Wait for the next `set` and return the new value."""
        await self._changed.wait()
        return self._value

    async def wait_until(self, predicate: Callable[[T], bool]) -> T:
        """Return as soon as `predicate(value)` holds (at once if it already does)."""
        while not predicate(self._value):
            await self._changed.wait()
        return self._value

    async def wait_change_from(self, seen: T) -> T:
        """Return as soon as the value differs from `seen`, read earlier (at once if it already does): unlike
        `wait_change`, a change made between reading and waiting is not missed."""
        return await self.wait_until(lambda value: value != seen)
