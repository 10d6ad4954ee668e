"""`any_change`: one waiter for the next change of any of several watched values, none missed."""

from __future__ import annotations

import trio
import trio.testing

from appliance.util.watched import Watched, any_change


async def test_any_change_returns_at_the_first_set_of_any_value_and_leaves_no_waiter_behind() -> None:
    a, b = Watched(0), Watched("x")
    returned: list[str] = []

    async def waiter() -> None:
        await any_change(a, b)
        returned.append("woken")

    async with trio.open_nursery() as nursery:
        nursery.start_soon(waiter)
        await trio.testing.wait_all_tasks_blocked()
        a.set(0)  # an equal value is a signal too, as with wait_change
        a.set(1)
    assert returned == ["woken"]
    assert not a._joint and not b._joint  # the woken waiter unregistered from both

    async with trio.open_nursery() as nursery:
        nursery.start_soon(waiter)
        await trio.testing.wait_all_tasks_blocked()
        b.set("y")
    assert returned == ["woken", "woken"]


async def test_cancelling_a_waiter_unregisters_it() -> None:
    value = Watched(0)
    with trio.move_on_after(0.01):
        await any_change(value)
    assert not value._joint
