"""An observable value: tasks wait for a condition on it instead of polling.

The link's state (offline / booting / accepted), a connector's status and "a device-model variable changed"
are all things several tasks wait on. Each change wakes every waiter, which re-checks its own predicate.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, Generic, TypeVar

import trio

T = TypeVar("T")


class Watched(Generic[T]):
    def __init__(self, value: T) -> None:
        self._value = value
        self._changed = trio.Event()
        #: Events of `any_change` waiters; None until one waits (most values never see one).
        self._joint: set[trio.Event] | None = None

    @property
    def value(self) -> T:
        return self._value

    def set(self, value: T) -> None:
        """Replace the value and wake every waiter (even if equal: a re-set is a signal too)."""
        self._value = value
        self._changed.set()
        self._changed = trio.Event()
        if self._joint:
            for event in self._joint:
                event.set()

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


async def any_change(*watched: Watched[Any]) -> None:
    """Return at the next `set` of any of `watched`.

    One task waits on one event; a nursery with a waiting task per value cost a task, a cancel scope and its
    status per value and waiter (~2 KiB each: a thousand stations in one process, `appliance fleet`, held seven
    such tasks each). The waiter is registered before the first checkpoint, so no `set` after the call is missed.
    """
    woken = trio.Event()
    for w in watched:
        if w._joint is None:
            w._joint = set()
        w._joint.add(woken)
    try:
        await woken.wait()
    finally:
        for w in watched:
            if w._joint is not None:
                w._joint.discard(woken)
