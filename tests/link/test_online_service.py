"""An online service whose own nursery wraps the link's loss in an exception group ends quietly (found by the
fuzzer: journal delivery logged "online service delivery failed" with a traceback on every link loss)."""

from __future__ import annotations

import logging

import pytest
import trio

from appliance.devicemodel.settings import Settings
from appliance.link.link import BYTES_PER_MESSAGE, Link
from appliance.link.rpc import Dispatcher, LinkDown
from appliance.protocol import default_registry
from appliance.util.watched import Watched

SETTINGS = {"OCPPCommCtrlr.MessageTimeout[Default]": 5, **{key.path: 1000 for key in BYTES_PER_MESSAGE}}


def make_link() -> Link:
    """A link that never connects: these tests drive `_run_service` directly."""
    return Link(
        dispatcher=Dispatcher(default_registry()),
        registry=default_registry(),
        settings=Settings(SETTINGS.__getitem__),
        settings_changed=Watched(0),
    )


async def test_link_down_inside_a_group_ends_the_service_quietly(caplog: pytest.LogCaptureFixture) -> None:
    calls = 0

    async def service(link: Link) -> None:
        nonlocal calls
        calls += 1
        async with trio.open_nursery() as nursery:
            nursery.start_soon(trio.sleep_forever)
            raise LinkDown("not connected")

    with trio.fail_after(5):
        await make_link()._run_service("delivery", service)
    assert calls == 1, "not restarted"
    assert [r for r in caplog.records if r.levelno >= logging.ERROR] == []


async def test_a_real_failure_inside_a_group_is_still_logged_and_restarted(
    caplog: pytest.LogCaptureFixture, autojump_clock: trio.testing.MockClock
) -> None:
    calls = 0

    async def service(link: Link) -> None:
        nonlocal calls
        calls += 1
        if calls == 1:
            async with trio.open_nursery():
                raise ValueError("a bug")

    await make_link()._run_service("delivery", service)
    assert calls == 2, "restarted after the crash"
    assert "online service delivery failed" in caplog.text
