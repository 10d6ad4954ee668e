"""A handler's follow-up and the answer before it, over a real WebSocket on loopback: when the answer cannot be
sent (the connection is gone), the follow-up never runs and what was set aside for it is given back
(`Reply.abandon`), so a JobQueue place is not lost with the connection."""

from __future__ import annotations

import contextlib
import json

import trio
from trio_websocket import ConnectionClosed, WebSocketConnection, WebSocketRequest, open_websocket_url, serve_websocket

from appliance.link.rpc import Dispatcher, Reply, RpcSession
from appliance.protocol import default_registry
from appliance.protocol.session import Session
from appliance.util.jobs import JobQueue

REQUEST = [2, "m1", "GetBaseReport", {"requestId": 1, "reportBase": "FullInventory"}]


async def run_session(*, close_before_answer: bool) -> tuple[JobQueue, list[str], list[object]]:
    """A station-side RpcSession whose GetBaseReport handler admits a job; the peer sends one GetBaseReport."""
    registry = default_registry()
    dispatcher = Dispatcher(registry)
    queue = JobQueue("test", waiting=0)
    ran: list[str] = []
    received: list[object] = []
    station: dict[str, WebSocketConnection] = {}

    async def job() -> None:
        ran.append("job")

    async def handler(payload: dict) -> Reply:
        if close_before_answer:  # the connection goes while the request is handled (shielded: finish handling)
            with trio.CancelScope(shield=True):
                await station["ws"].aclose()
        ticket = queue.admit(payload["requestId"], job)  # nothing awaited from here to the return: no leak here
        assert ticket is not None
        return Reply({"status": "Accepted"}, then=ticket.run, abandon=ticket.release)

    dispatcher.register("GetBaseReport", handler)

    async def peer(request: WebSocketRequest) -> None:
        ws = await request.accept()
        await ws.send_message(json.dumps(REQUEST))
        with contextlib.suppress(ConnectionClosed):
            received.append(json.loads(await ws.get_message()))
            await ws.aclose()

    async with trio.open_nursery() as nursery:
        server = await nursery.start(serve_websocket, peer, "127.0.0.1", 0, None)
        async with open_websocket_url(f"ws://127.0.0.1:{server.port}/") as ws:
            station["ws"] = ws
            with trio.fail_after(10), contextlib.suppress(ConnectionClosed, BaseExceptionGroup):
                session = Session()
                session.connected()
                await RpcSession(ws, dispatcher, registry, lambda: 5, session).run()
        nursery.cancel_scope.cancel()
    return queue, ran, received


async def test_answer_sent_then_follow_up_runs() -> None:
    queue, ran, received = await run_session(close_before_answer=False)
    assert received == [[3, "m1", {"status": "Accepted"}]]
    assert ran == ["job"] and queue.admitted == 0


async def test_answer_not_sent_follow_up_abandoned() -> None:
    queue, ran, received = await run_session(close_before_answer=True)
    assert received == []
    assert ran == [], "no follow-up for an answer the CSMS never got"
    assert queue.admitted == 0, "the place set aside for it is free again"
