"""A CSMS that hangs up during the WebSocket handshake fails the attempt at once, and the back-off applies.

The peer is a real TCP server on loopback that accepts and then closes, either at once or after reading the
HTTP upgrade request. Time is Trio's MockClock with an autojump threshold of half a real second: a loopback
close arrives in microseconds, so the clock only jumps when the station really waits on a timer. Before the
fix, the attempt waited for its 30 s connect timeout (the clock jumped there and the attempt ended in
TooSlowError); now it ends with HandshakeFailed at the same virtual instant.
"""

from __future__ import annotations

import functools
import math
from collections.abc import AsyncIterator, Awaitable, Callable

import pytest
import trio
from trio.testing import MockClock

from appliance.devicemodel.settings import Settings
from appliance.link.link import BYTES_PER_MESSAGE, Link
from appliance.link.rpc import Dispatcher
from appliance.link.transport import Endpoint, HandshakeFailed, open_websocket
from appliance.protocol import default_registry
from appliance.util.watched import Watched

CONNECT_TIMEOUT = 30.0
SETTINGS: dict[str, object] = {
    "OCPPCommCtrlr.RetryBackOffWaitMinimum": 3,
    "OCPPCommCtrlr.RetryBackOffRandomRange": 0,
    "OCPPCommCtrlr.RetryBackOffRepeatTimes": 2,
    "OCPPCommCtrlr.WebSocketPingInterval": 0,
    "OCPPCommCtrlr.MessageTimeout[Default]": int(CONNECT_TIMEOUT),
    **{key.path: 1000 for key in BYTES_PER_MESSAGE},
}


@pytest.fixture
def clock() -> MockClock:
    return MockClock(autojump_threshold=0.5)


async def close_at_once(stream: trio.SocketStream) -> None:
    await stream.aclose()


async def close_after_request(stream: trio.SocketStream) -> None:
    request = b""
    while b"\r\n\r\n" not in request:
        chunk = await stream.receive_some(4096)
        if not chunk:
            return  # the test is over and the station stopped mid-request
        request += chunk
    assert request.startswith(b"GET /CS001 HTTP/1.1"), request[:40]
    await stream.aclose()


class HangingUpCsms:
    """Accepts TCP, then closes as `behaviour` says; counts the attempts."""

    def __init__(self, behaviour: Callable[[trio.SocketStream], Awaitable[None]]) -> None:
        self.behaviour = behaviour
        self.accepted: list[float] = []
        self.port = 0
        self._changed = trio.Event()

    async def handle(self, stream: trio.SocketStream) -> None:
        self.accepted.append(trio.current_time())
        self._changed.set()
        await self.behaviour(stream)

    async def wait_attempts(self, count: int) -> None:
        # No polling: under the MockClock every idle poll would cost half a real second.
        while len(self.accepted) < count:
            self._changed = trio.Event()
            await self._changed.wait()


@pytest.fixture(params=[close_at_once, close_after_request], ids=["after-accept", "after-request"])
async def server(request: pytest.FixtureRequest) -> AsyncIterator[HangingUpCsms]:
    csms = HangingUpCsms(request.param)
    async with trio.open_nursery() as nursery:
        [listener] = await nursery.start(functools.partial(trio.serve_tcp, csms.handle, 0, host="127.0.0.1"))
        csms.port = listener.socket.getsockname()[1]
        yield csms
        nursery.cancel_scope.cancel()


def endpoint(csms: HangingUpCsms) -> Endpoint:
    return Endpoint(url=f"ws://127.0.0.1:{csms.port}/", station_id="CS001", security_profile=0, password=None)


def leaves(exc: BaseException) -> list[BaseException]:
    if isinstance(exc, BaseExceptionGroup):
        return [leaf for inner in exc.exceptions for leaf in leaves(inner)]
    return [exc]


async def test_attempt_fails_at_once_with_a_clear_reason(server: HangingUpCsms, clock: MockClock) -> None:
    start = trio.current_time()
    with pytest.raises(BaseException) as caught:  # an exception group, unpacked below
        async with open_websocket(endpoint(server), connect_timeout=CONNECT_TIMEOUT, dead_after=CONNECT_TIMEOUT):
            pytest.fail("the handshake cannot succeed")
    assert [type(leaf) for leaf in leaves(caught.value)] == [HandshakeFailed], caught.value
    assert "closed the connection during the WebSocket handshake" in str(leaves(caught.value)[0])
    assert trio.current_time() - start < 1, "no timer was waited on"
    assert len(server.accepted) == 1


async def test_back_off_applies_between_attempts(server: HangingUpCsms, clock: MockClock) -> None:
    async def never_boots(link: Link) -> None:
        raise AssertionError("no session can start")

    link = Link(
        dispatcher=Dispatcher(default_registry()),
        registry=default_registry(),
        settings=Settings(SETTINGS.__getitem__),
        settings_changed=Watched(0),
    )
    async with trio.open_nursery() as nursery:
        nursery.start_soon(link.run, lambda: endpoint(server), never_boots)
        with trio.fail_after(60):  # virtual seconds: four 30 s timeouts would not fit
            await server.wait_attempts(5)
        nursery.cancel_scope.cancel()
    gaps = [later - earlier for earlier, later in zip(server.accepted, server.accepted[1:], strict=False)]
    # Part 4 §5.3 with WaitMinimum 3, RandomRange 0, RepeatTimes 2: 3, 6, 12, then 12 again.
    assert [math.floor(gap) for gap in gaps] == [3, 6, 12, 12], gaps
    assert link.backoff.failures >= 4
