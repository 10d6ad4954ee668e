"""The cheapest possible peers on either side of the link, so benchmarks can print a limit beside a figure.

A benchmark that says "replay takes 18 s" does not say whose time that is: the station's, the `ocpp`
library's validation, or the loopback itself. These two peers do the least an OCPP-J peer can do — parse the
frame's id, write a canned answer — on trio-websocket, in their own thread, so the same measurement run
against them shows the floor:

* `FastCsms` accepts any station and answers every CALL at once with the smallest valid payload for its action
  (BootNotification Accepted, Heartbeat with the time, everything else `{}`), counting what it acknowledged.
  Replaying the journal against it shows the station's own cost per event.
* `EchoStation` is a station that answers every CALL from a CSMS with a canned CALLRESULT; measured at the
  `LoopbackCsms` exactly as the real station is, it gives the CSMS stack's and the loopback's share of a call.

Lab equipment: the firmware never imports this module.
"""

from __future__ import annotations

import base64
import json
import threading
import time
from collections.abc import Callable
from typing import Any

import trio
from trio_websocket import (
    ConnectionClosed,
    WebSocketConnection,
    WebSocketRequest,
    open_websocket_url,
    serve_websocket,
)

SUBPROTOCOL = "ocpp2.0.1"


def _utc_now() -> str:
    return time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())


def _csms_answer(action: str) -> dict[str, Any]:
    if action == "BootNotification":
        return {"currentTime": _utc_now(), "interval": 300, "status": "Accepted"}
    if action == "Heartbeat":
        return {"currentTime": _utc_now()}
    if action == "Authorize":
        return {"idTokenInfo": {"status": "Accepted"}}
    return {}


class _Threaded:
    """Runs `self._main` in a Trio loop of its own thread until `stop()`."""

    def __init__(self) -> None:
        self._thread = threading.Thread(target=self._thread_main, name=type(self).__name__, daemon=True)
        self._ready = threading.Event()
        self._token: trio.lowlevel.TrioToken | None = None
        self._cancel: trio.CancelScope | None = None
        self._error: BaseException | None = None

    def start(self) -> None:
        self._thread.start()
        if not self._ready.wait(10):
            raise RuntimeError(f"{type(self).__name__} did not start")
        if self._error is not None:
            raise self._error

    def stop(self) -> None:
        if self._token is not None and self._cancel is not None:
            trio.from_thread.run_sync(self._cancel.cancel, trio_token=self._token)
        self._thread.join(10)

    def _thread_main(self) -> None:
        try:
            trio.run(self._guarded)
        except BaseException as error:  # reported to the starting thread
            self._error = error
            self._ready.set()

    async def _guarded(self) -> None:
        self._token = trio.lowlevel.current_trio_token()
        with trio.CancelScope() as self._cancel:
            await self._main(self._ready.set)

    async def _main(self, ready: Callable[[], None]) -> None:
        raise NotImplementedError


class FastCsms(_Threaded):
    """A CSMS that validates nothing and answers at once; `acknowledged[action]` counts its answers."""

    def __init__(self) -> None:
        super().__init__()
        self.port = 0
        self.acknowledged: dict[str, int] = {}
        self._lock = threading.Lock()

    def url(self) -> str:
        return f"ws://127.0.0.1:{self.port}/ocpp"

    def count(self, action: str) -> int:
        with self._lock:
            return self.acknowledged.get(action, 0)

    async def _main(self, ready: Callable[[], None]) -> None:
        async with trio.open_nursery() as nursery:
            server = await nursery.start(serve_websocket, self._handle, "127.0.0.1", 0, None)
            self.port = server.port
            ready()

    async def _handle(self, request: WebSocketRequest) -> None:
        ws = await request.accept(subprotocol=SUBPROTOCOL)
        try:
            while True:
                frame = json.loads(await ws.get_message())
                if frame[0] != 2:
                    continue
                await ws.send_message(json.dumps([3, frame[1], _csms_answer(frame[2])]))
                with self._lock:
                    self.acknowledged[frame[2]] = self.acknowledged.get(frame[2], 0) + 1
        except ConnectionClosed:
            pass


def _station_answer(action: str, payload: dict[str, Any]) -> dict[str, Any]:
    """A valid answer of the right shape: GetVariables gets one result per requested item."""
    if action == "GetVariables":
        return {
            "getVariableResult": [
                {
                    "attributeStatus": "Accepted",
                    "attributeValue": "1",
                    "component": item["component"],
                    "variable": item["variable"],
                }
                for item in payload["getVariableData"]
            ]
        }
    return {}


class EchoStation(_Threaded):
    """A station that connects to `url` + `/station_id` (basic auth) and answers every CALL at once."""

    def __init__(self, url: str, station_id: str, password: str) -> None:
        super().__init__()
        self._url = f"{url.rstrip('/')}/{station_id}"
        token = base64.b64encode(f"{station_id}:{password}".encode()).decode("ascii")
        self._headers = [(b"Authorization", f"Basic {token}".encode("ascii"))]

    async def _main(self, ready: Callable[[], None]) -> None:
        async with open_websocket_url(self._url, subprotocols=[SUBPROTOCOL], extra_headers=self._headers) as ws:
            ready()
            await self._answer(ws)

    async def _answer(self, ws: WebSocketConnection) -> None:
        try:
            while True:
                frame = json.loads(await ws.get_message())
                if frame[0] == 2:
                    await ws.send_message(json.dumps([3, frame[1], _station_answer(frame[2], frame[3])]))
        except ConnectionClosed:
            pass
