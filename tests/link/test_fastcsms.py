"""The benchmarks' fast CSMS (`appliance.lab.fastpeers`) on its raw-socket WebSocket (`appliance.lab.rawws`):
a real station's link must get valid answers from it, or the replay figures measured against it mean nothing."""

from __future__ import annotations

import json
from collections.abc import Iterator

import pytest
import trio
from trio_websocket import open_websocket_url

from appliance.lab.fastpeers import FastCsms
from appliance.lab.rawws import CLOSE, PING, PONG, TEXT, connect_ws
from appliance.protocol import CallResult, decode, default_registry


@pytest.fixture
def csms() -> Iterator[FastCsms]:
    server = FastCsms()
    server.start()
    try:
        yield server
    finally:
        server.stop()


def test_fast_csms_answers_a_trio_websocket_client_with_schema_valid_results(csms: FastCsms) -> None:
    calls = [
        ("BootNotification", {"reason": "PowerUp", "chargingStation": {"model": "m", "vendorName": "v"}}),
        ("Heartbeat", {}),
        ("Authorize", {"idToken": {"idToken": "T", "type": "ISO14443"}}),
        (
            "StatusNotification",
            {"timestamp": "2026-01-01T00:00:00Z", "connectorStatus": "Available", "evseId": 1, "connectorId": 1},
        ),
    ]

    async def main() -> list[str]:
        async with open_websocket_url(csms.url() + "/ST1", subprotocols=["ocpp2.0.1"]) as ws:
            assert ws.subprotocol == "ocpp2.0.1"
            answers = []
            for n, (action, payload) in enumerate(calls):
                await ws.send_message(json.dumps([2, f"id-{n}", action, payload]))
                answers.append(await ws.get_message())
            await ws.ping(b"p")
            return answers

    for n, ((action, _), text) in enumerate(zip(calls, trio.run(main), strict=True)):
        frame = decode(text)
        assert isinstance(frame, CallResult) and frame.message_id == f"id-{n}"
        default_registry().validate_response(action, frame.payload)
        assert csms.count(action) == 1


def test_raw_peer_gets_pongs_and_a_close_echo(csms: FastCsms) -> None:
    peer = connect_ws("127.0.0.1", csms.port, "/ocpp/ST2")
    peer.send(b"ping-data", PING)
    assert peer.receive()[:2] == (PONG, b"ping-data")
    peer.send(b'[2,"x","DataTransfer",{"vendorId":"v"}]')
    assert peer.receive()[:2] == (TEXT, b'[3,"x",{}]')
    peer.send(b"\x03\xe8", CLOSE)
    assert peer.receive()[:2] == (CLOSE, b"\x03\xe8")
    peer.sock.close()
