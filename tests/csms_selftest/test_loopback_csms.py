"""The loopback CSMS checks stations for us, so it is checked first — against hand-written frames.

Each test plays the station by hand over trio-websocket (never through the station's own code), so a bug in
`appliance.link` or `appliance.protocol` cannot hide a bug in the checker or the other way round. Blocking
CSMS methods are called from Trio through `csms.trio` (a worker thread), as station tests will.
"""

from __future__ import annotations

import base64
import json
import ssl
import threading
import time
from collections.abc import AsyncIterator, Iterator
from contextlib import asynccontextmanager
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
import trio
import trustme
from ocpp.v201 import call as ocpp_call
from trio_websocket import ConnectionClosed, ConnectionRejected, WebSocketConnection, open_websocket_url
from websockets.exceptions import ConnectionClosedOK
from websockets.sync.client import connect as sync_connect

from appliance.lab.csms import (
    NO_ANSWER,
    CsmsCallError,
    CsmsCallTimeout,
    CsmsError,
    Delayed,
    InvalidCsmsRequest,
    InvalidStationResponse,
    LoopbackCsms,
    StationCallError,
    StationNotConnected,
)

STATION = "CS001"
PASSWORD = "0123456789abcdef-pw"


def now() -> str:
    return datetime.now(UTC).isoformat(timespec="seconds").replace("+00:00", "Z")


BOOT = {"reason": "PowerUp", "chargingStation": {"model": "Hand", "vendorName": "Tests"}}


def basic(user: str, password: str) -> tuple[bytes, bytes]:
    return (b"Authorization", b"Basic " + base64.b64encode(f"{user}:{password}".encode()))


class HandStation:
    """A station played by hand: raw OCPP-J arrays over a trio-websocket connection."""

    def __init__(self, ws: WebSocketConnection) -> None:
        self.ws = ws
        self._next_id = 0

    async def send(self, frame: Any) -> None:
        await self.ws.send_message(frame if isinstance(frame, str | bytes) else json.dumps(frame))

    async def recv(self, timeout: float = 5) -> Any:
        with trio.fail_after(timeout):
            return json.loads(await self.ws.get_message())

    async def call(self, action: str, payload: dict[str, Any]) -> list[Any]:
        """Send a CALL and return the CSMS's answer (CALLRESULT or CALLERROR frame)."""
        self._next_id += 1
        message_id = f"hand-{self._next_id}"
        await self.send([2, message_id, action, payload])
        reply = await self.recv()
        assert reply[1] == message_id, reply
        return reply


@asynccontextmanager
async def station(
    csms: LoopbackCsms,
    station_id: str = STATION,
    *,
    password: str | None = PASSWORD,
    subprotocols: list[str] | None = None,
    url: str | None = None,
    ssl_context: ssl.SSLContext | None = None,
) -> AsyncIterator[HandStation]:
    headers = [basic(station_id, password)] if password is not None else []
    async with open_websocket_url(
        url or f"{csms.url}/{station_id}",
        ssl_context,
        subprotocols=["ocpp2.0.1"] if subprotocols is None else subprotocols,
        extra_headers=headers,
        connect_timeout=5,
        disconnect_timeout=2,
    ) as ws:
        yield HandStation(ws)


@pytest.fixture
def csms() -> Iterator[LoopbackCsms]:
    # A short close timeout: trio-websocket keeps a refused client's socket open, and stop() waits this long.
    with LoopbackCsms(passwords={STATION: PASSWORD, "CS002": PASSWORD}, close_timeout=0.5) as server:
        yield server


# ---- transport: handshake, auth, subprotocol ---------------------------------------------------------------


async def test_boot_accepted_over_basic_auth_and_recorded(csms: LoopbackCsms) -> None:
    assert csms.url == f"ws://127.0.0.1:{csms.port}/ocpp"
    async with station(csms) as cs:
        assert cs.ws.subprotocol == "ocpp2.0.1"
        reply = await cs.call("BootNotification", BOOT)
        assert reply[0] == 3
        assert reply[2]["status"] == "Accepted"
        assert reply[2]["interval"] == 300
        assert reply[2]["currentTime"].endswith("Z")
        sent = datetime.fromisoformat(reply[2]["currentTime"].replace("Z", "+00:00"))
        assert abs(sent - datetime.now(UTC)) < timedelta(seconds=5)

        record = await csms.trio.wait_connected(STATION)
        assert record.auth_username == STATION and record.auth_ok is True
        assert record.subprotocol == "ocpp2.0.1" and record.http_status == 101
        assert record.offered_subprotocols == ("ocpp2.0.1",)
        assert record.remote is not None and record.remote[0] == "127.0.0.1"
        assert csms.is_connected(STATION)
        assert PASSWORD not in repr(csms.connections)

    frames = csms.frames_snapshot(STATION)
    assert [(f.direction, f.message_type, f.action) for f in frames] == [
        ("in", 2, "BootNotification"),
        ("out", 3, "BootNotification"),
    ]
    assert frames[0].payload == BOOT and frames[0].message_id == "hand-1"
    assert frames[0].monotonic <= frames[1].monotonic
    assert csms.boot_status(STATION) == "Accepted"
    assert csms.violations == []
    await csms.trio.wait_disconnected(STATION)
    assert csms.connections[-1].close_initiator == "station" and csms.connections[-1].close_code == 1000


@pytest.mark.parametrize(
    ("user", "password", "status"),
    [
        (STATION, "wrong-password-123", 401),
        ("CS002", PASSWORD, 401),  # a valid pair, but the username must be the station id of the URL
        (None, None, 401),
    ],
)
async def test_bad_credentials_get_401(csms: LoopbackCsms, user: str | None, password: str | None, status: int) -> None:
    headers = [basic(user, password)] if user is not None and password is not None else []
    with pytest.raises(ConnectionRejected) as rejected:
        async with open_websocket_url(f"{csms.url}/{STATION}", subprotocols=["ocpp2.0.1"], extra_headers=headers):
            pass
    assert rejected.value.status_code == status
    assert (b"www-authenticate", b'Basic realm="ocpp", charset="UTF-8"') in [
        (k.lower(), v) for k, v in rejected.value.headers
    ]
    record = csms.connections[-1]
    assert record.http_status == status and record.auth_ok is False and not record.accepted
    assert record.auth_username == user
    assert "wrong-password" not in repr(record)


async def test_unknown_station_and_wrong_path_get_404(csms: LoopbackCsms) -> None:
    for url in (f"{csms.url}/CS999", f"ws://127.0.0.1:{csms.port}/other/{STATION}", f"{csms.url}//{STATION}"):
        with pytest.raises(ConnectionRejected) as rejected:
            async with station(csms, url=url):
                pass
        assert rejected.value.status_code == 404, url
    assert [c.http_status for c in csms.connections] == [404, 404, 404]


async def test_no_auth_when_no_passwords() -> None:
    with LoopbackCsms() as open_csms:
        async with station(open_csms, password=None) as cs:
            assert (await cs.call("BootNotification", BOOT))[2]["status"] == "Accepted"
        assert open_csms.connections[0].auth_ok is None


@pytest.mark.parametrize("offered", [[], ["ocpp1.6"]])
async def test_missing_subprotocol_is_refused(csms: LoopbackCsms, offered: list[str]) -> None:
    # Part 4 §3.2: complete the handshake without Sec-WebSocket-Protocol, then close at once.
    async with station(csms, subprotocols=offered) as cs:
        assert cs.ws.subprotocol is None
        with pytest.raises(ConnectionClosed) as closed:
            await cs.recv()
        assert closed.value.reason.code == 1002
    record = csms.connections[-1]
    assert record.subprotocol is None and not record.accepted and record.rejected
    assert record.offered_subprotocols == tuple(offered)
    assert not csms.is_connected(STATION)


async def test_refuse_connections_answers_503_and_spares_open_ones(csms: LoopbackCsms) -> None:
    async with station(csms) as cs:
        await cs.call("BootNotification", BOOT)
        csms.refuse_connections(True)
        with pytest.raises(ConnectionRejected) as rejected:
            async with station(csms, "CS002"):
                pass
        assert rejected.value.status_code == 503
        assert (await cs.call("Heartbeat", {}))[0] == 3  # the open connection is untouched
        csms.refuse_connections(False)
        async with station(csms, "CS002") as second:
            assert (await second.call("BootNotification", BOOT))[2]["status"] == "Accepted"


async def test_tls_wss(tmp_path: Any) -> None:
    ca = trustme.CA()
    server_context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    ca.issue_cert("127.0.0.1").configure_cert(server_context)
    client_context = ssl.create_default_context()
    ca.configure_trust(client_context)
    with LoopbackCsms(passwords={STATION: PASSWORD}, ssl_context=server_context) as tls_csms:
        assert tls_csms.url.startswith("wss://127.0.0.1:")
        async with station(tls_csms, ssl_context=client_context) as cs:
            assert (await cs.call("BootNotification", BOOT))[2]["status"] == "Accepted"


# ---- boot script and the not-yet-accepted rules ------------------------------------------------------------


async def test_boot_script_pending_then_accepted_and_last_repeats() -> None:
    with LoopbackCsms(boot_responses=[("Pending", 5), ("Accepted", 60)]) as scripted:
        async with station(scripted, password=None) as cs:
            first = await cs.call("BootNotification", BOOT)
            assert (first[2]["status"], first[2]["interval"]) == ("Pending", 5)
            assert scripted.boot_status(STATION) == "Pending"

            # While Pending the station may not start its own traffic: the CSMS refuses and records it.
            refused = await cs.call(
                "StatusNotification",
                {"timestamp": now(), "connectorStatus": "Available", "evseId": 1, "connectorId": 1},
            )
            assert refused[0] == 4 and refused[2] == "SecurityError"
            assert [(v.kind, v.action) for v in scripted.violations] == [("not-accepted", "StatusNotification")]

            second = await cs.call("BootNotification", BOOT)
            third = await cs.call("BootNotification", BOOT)
            assert (second[2]["status"], second[2]["interval"]) == ("Accepted", 60)
            assert (third[2]["status"], third[2]["interval"]) == ("Accepted", 60)
            assert (await cs.call("Heartbeat", {}))[0] == 3

            scripted.set_boot_responses([("Rejected", 30)])
            assert (await cs.call("BootNotification", BOOT))[2]["status"] == "Rejected"
            assert (await cs.call("Heartbeat", {}))[2] == "SecurityError"
        assert len(scripted.actions(STATION, "BootNotification")) == 4


async def test_pending_station_may_answer_what_the_csms_asks_for() -> None:
    with LoopbackCsms(boot_responses=[("Pending", 5)]) as scripted:
        async with station(scripted, password=None) as cs, trio.open_nursery() as nursery:
            await cs.call("BootNotification", BOOT)

            async def answer_get_base_report() -> None:
                request = await cs.recv()
                await cs.send([3, request[1], {"status": "Accepted"}])

            nursery.start_soon(answer_get_base_report)
            await scripted.trio.call(STATION, "GetBaseReport", {"requestId": 7, "reportBase": "SummaryInventory"})
            report = {"requestId": 7, "generatedAt": now(), "seqNo": 0}
            assert (await cs.call("NotifyReport", report))[0] == 3
        assert scripted.violations == []


# ---- CSMS → station calls ----------------------------------------------------------------------------------


async def test_call_round_trip_against_a_hand_written_responder(csms: LoopbackCsms) -> None:
    get_variables = {"getVariableData": [{"component": {"name": "OCPPCommCtrlr"}, "variable": {"name": "X"}}]}
    answer = {
        "getVariableResult": [
            {
                "attributeStatus": "Accepted",
                "attributeValue": "60",
                "component": {"name": "OCPPCommCtrlr"},
                "variable": {"name": "X"},
            }
        ]
    }
    seen: list[Any] = []

    async with station(csms) as cs, trio.open_nursery() as nursery:
        await cs.call("BootNotification", BOOT)

        async def respond() -> None:
            while True:
                request = await cs.recv(timeout=30)
                seen.append(request)
                _, message_id, action, _payload = request
                if action == "GetVariables":
                    await cs.send([3, message_id, answer])
                elif action == "Reset":
                    await cs.send([3, message_id, {"status": "Accepted"}])
                elif action == "SetDisplayMessage":
                    await cs.send([4, message_id, "NotSupported", "no display", {}])
                elif action == "ClearCache":
                    await cs.send([3, message_id, {"status": "Maybe"}])  # not in the enum
                # UnlockConnector: never answered

        nursery.start_soon(respond)
        # The plain way from Trio: a worker thread, so the Trio loop (and this responder) keeps running.
        result = await trio.to_thread.run_sync(lambda: csms.call(STATION, "GetVariables", get_variables))
        assert result == answer
        # The same through the adapter, with an ocpp library request object.
        assert await csms.trio.call(STATION, "Reset", ocpp_call.Reset(type="Immediate")) == {"status": "Accepted"}

        with pytest.raises(StationCallError) as error:
            await csms.trio.call(
                STATION,
                "SetDisplayMessage",
                {
                    "message": {
                        "id": 1,
                        "priority": "NormalCycle",
                        "message": {"format": "UTF8", "content": "hi"},
                    }
                },
            )
        assert error.value.code == "NotSupported" and error.value.description == "no display"

        with pytest.raises(InvalidStationResponse):
            await csms.trio.call(STATION, "ClearCache", {})
        assert [(v.kind, v.action, v.direction) for v in csms.violations] == [("schema", "ClearCache", "in")]

        with pytest.raises(CsmsCallTimeout):
            await csms.trio.call(STATION, "UnlockConnector", {"evseId": 1, "connectorId": 1}, timeout=0.3)

        with pytest.raises(InvalidCsmsRequest):
            await csms.trio.call(STATION, "Reset", {"type": "Sometime"})
        with pytest.raises(StationNotConnected):
            await csms.trio.call("CS002", "Reset", {"type": "Immediate"})
        nursery.cancel_scope.cancel()

    assert [request[2] for request in seen] == [
        "GetVariables",
        "Reset",
        "SetDisplayMessage",
        "ClearCache",
        "UnlockConnector",
    ]
    outgoing = [f for f in csms.frames if f.direction == "out" and f.is_call]
    assert [f.action for f in outgoing] == [request[2] for request in seen]
    answers = [f for f in csms.frames if f.direction == "in" and not f.is_call]
    assert [f.action for f in answers] == ["GetVariables", "Reset", "SetDisplayMessage", "ClearCache"]
    assert answers[2].error_code == "NotSupported"


async def test_send_raw_and_the_answer_are_recorded(csms: LoopbackCsms) -> None:
    async with station(csms) as cs:
        await cs.call("BootNotification", BOOT)
        mark = csms.mark()
        broken = '[2,"raw-1","Reset",{"type":'
        await csms.trio.send_raw(STATION, broken)
        assert await cs.ws.get_message() == broken
        await cs.send([4, "-1", "RpcFrameworkError", "", {}])
        await csms.trio.wait_for(lambda: len(csms.frames_snapshot(STATION, since=mark)) == 2)
        out, back = csms.frames_snapshot(STATION, since=mark)
        assert (out.direction, out.raw, out.parsed) == ("out", broken, None)
        assert (back.direction, back.error_code) == ("in", "RpcFrameworkError")
        assert csms.violations == []  # a CALLERROR answering our garbage is the right thing to do


async def test_disconnect_and_replaced_connection(csms: LoopbackCsms) -> None:
    async with station(csms) as cs:
        await cs.call("BootNotification", BOOT)
        assert await csms.trio.disconnect(STATION, 1000, "bye")
        with pytest.raises(ConnectionClosed) as closed:
            await cs.recv()
        assert closed.value.reason.code == 1000
    await csms.trio.wait_disconnected(STATION)
    assert csms.connections[-1].close_initiator == "csms"
    assert not await csms.trio.disconnect(STATION)

    async with station(csms) as old:
        await csms.trio.wait_connected(STATION)
        async with station(csms) as new:
            with pytest.raises(ConnectionClosed):
                await old.recv()  # the newer connection of the same station wins
            assert (await new.call("Heartbeat", {}))[0] == 3


async def test_call_fails_fast_when_the_station_goes_away(csms: LoopbackCsms) -> None:
    async with station(csms) as cs, trio.open_nursery() as nursery:
        await cs.call("BootNotification", BOOT)

        async def hang_up_on_request() -> None:
            await cs.recv()
            await cs.ws.aclose()

        nursery.start_soon(hang_up_on_request)
        started = time.monotonic()
        with pytest.raises(StationNotConnected, match="disconnected before answering Reset"):
            await csms.trio.call(STATION, "Reset", {"type": "Immediate"}, timeout=30)
        assert time.monotonic() - started < 5


# ---- restart -----------------------------------------------------------------------------------------------


async def test_restart_keeps_the_port_and_refuses_while_down(csms: LoopbackCsms) -> None:
    port = csms.port
    async with station(csms) as cs, trio.open_nursery() as nursery:
        await cs.call("BootNotification", BOOT)
        nursery.start_soon(csms.trio.restart, 1.0)
        with pytest.raises(ConnectionClosed) as closed:
            await cs.recv()
        assert closed.value.reason.code == 1012  # service restart
        await trio.sleep(0.2)
        with pytest.raises(OSError):  # nothing listens while down
            await trio.open_tcp_stream("127.0.0.1", port)
    assert csms.port == port
    async with station(csms) as cs:
        # The CSMS remembers the station booted: no new BootNotification is needed after a reconnect.
        assert (await cs.call("Heartbeat", {}))[0] == 3
    assert csms.violations == []


# ---- station → CSMS: default answers, overrides, tokens, violations ----------------------------------------


async def test_default_answers_to_core_station_messages_are_valid(csms: LoopbackCsms) -> None:
    messages = {
        "Heartbeat": {},
        "StatusNotification": {
            "timestamp": now(),
            "connectorStatus": "Available",
            "evseId": 1,
            "connectorId": 1,
        },
        "NotifyReport": {"requestId": 1, "generatedAt": now(), "seqNo": 0},
        "NotifyEvent": {
            "generatedAt": now(),
            "seqNo": 0,
            "eventData": [
                {
                    "eventId": 1,
                    "timestamp": now(),
                    "trigger": "Delta",
                    "actualValue": "Available",
                    "eventNotificationType": "HardWiredNotification",
                    "component": {"name": "Connector", "evse": {"id": 1, "connectorId": 1}},
                    "variable": {"name": "AvailabilityState"},
                }
            ],
        },
        "SecurityEventNotification": {"type": "StartupOfTheDevice", "timestamp": now()},
        "MeterValues": {"evseId": 1, "meterValue": [{"timestamp": now(), "sampledValue": [{"value": 12.5}]}]},
        "FirmwareStatusNotification": {"status": "Idle"},
        "LogStatusNotification": {"status": "Idle"},
        "NotifyCustomerInformation": {"data": "none", "seqNo": 0, "generatedAt": now(), "requestId": 3},
        "NotifyMonitoringReport": {"requestId": 2, "seqNo": 0, "generatedAt": now()},
        "DataTransfer": {"vendorId": "org.example"},
    }
    async with station(csms) as cs:
        await cs.call("BootNotification", BOOT)
        for action, payload in messages.items():
            reply = await cs.call(action, payload)
            assert reply[0] == 3, (action, reply)
            if action == "Heartbeat":
                assert reply[2]["currentTime"].endswith("Z")
            elif action == "DataTransfer":
                assert reply[2] == {"status": "UnknownVendorId"}
            else:
                assert reply[2] == {}, action
    assert csms.violations == []
    assert csms.actions(STATION, "MeterValues") == [messages["MeterValues"]]


async def test_tokens_drive_authorize_and_transaction_event(csms: LoopbackCsms) -> None:
    expiry = datetime(2030, 1, 2, 3, 4, 5, tzinfo=UTC)
    csms.set_token("BLOCKED1", "Blocked")
    csms.set_token("GROUPED1", "Accepted", group_id="FLEET", cache_expiry=expiry)

    def tx(id_token: str | None) -> dict[str, Any]:
        event: dict[str, Any] = {
            "eventType": "Started",
            "timestamp": now(),
            "triggerReason": "Authorized",
            "seqNo": 0,
            "transactionInfo": {"transactionId": "tx-1"},
            "evse": {"id": 1, "connectorId": 1},
        }
        if id_token is not None:
            event["idToken"] = {"idToken": id_token, "type": "ISO14443"}
        return event

    async with station(csms) as cs:
        await cs.call("BootNotification", BOOT)
        authorize = await cs.call("Authorize", {"idToken": {"idToken": "ANYONE", "type": "ISO14443"}})
        assert authorize[2] == {"idTokenInfo": {"status": "Accepted"}}
        authorize = await cs.call("Authorize", {"idToken": {"idToken": "BLOCKED1", "type": "ISO14443"}})
        assert authorize[2] == {"idTokenInfo": {"status": "Blocked"}}
        authorize = await cs.call("Authorize", {"idToken": {"idToken": "GROUPED1", "type": "ISO14443"}})
        assert authorize[2] == {
            "idTokenInfo": {
                "status": "Accepted",
                "groupIdToken": {"idToken": "FLEET", "type": "Central"},
                "cacheExpiryDateTime": "2030-01-02T03:04:05Z",
            }
        }
        assert (await cs.call("TransactionEvent", tx("BLOCKED1")))[2] == {"idTokenInfo": {"status": "Blocked"}}
        assert (await cs.call("TransactionEvent", tx(None)))[2] == {}
        csms.set_unknown_token_status("Invalid")
        assert (await cs.call("TransactionEvent", tx("STRANGER")))[2] == {"idTokenInfo": {"status": "Invalid"}}
    assert csms.violations == []


async def test_response_overrides(csms: LoopbackCsms) -> None:
    event = {
        "eventType": "Updated",
        "timestamp": now(),
        "triggerReason": "MeterValuePeriodic",
        "seqNo": 1,
        "transactionInfo": {"transactionId": "tx-1"},
    }
    async with station(csms) as cs:
        await cs.call("BootNotification", BOOT)

        csms.set_response("TransactionEvent", CsmsCallError("InternalError", "disk full"))
        assert (await cs.call("TransactionEvent", event))[2:4] == ["InternalError", "disk full"]

        csms.set_response("TransactionEvent", NO_ANSWER)
        await cs.send([2, "never", "TransactionEvent", event])
        with pytest.raises(trio.TooSlowError):
            await cs.recv(timeout=0.3)

        csms.set_response("TransactionEvent", Delayed(0.3, {"totalCost": 1.5}))
        started = time.monotonic()
        late = await cs.call("TransactionEvent", event)
        assert late[2] == {"totalCost": 1.5} and time.monotonic() - started >= 0.25

        calls: list[tuple[str, dict[str, Any]]] = []

        def first_fails(station_id: str, payload: dict[str, Any]) -> Any:
            calls.append((station_id, payload))
            return CsmsCallError("InternalError") if len(calls) == 1 else None  # None: default answer

        csms.set_response("TransactionEvent", first_fails)
        assert (await cs.call("TransactionEvent", event))[2] == "InternalError"
        assert (await cs.call("TransactionEvent", event))[2] == {}
        assert calls == [(STATION, event), (STATION, event)]

        csms.set_response("Heartbeat", {"currentTime": 42})  # invalid: the CSMS's fault, not the station's
        assert (await cs.call("Heartbeat", {}))[2] == "InternalError"
        assert [(v.direction, v.kind) for v in csms.violations] == [("out", "invalid-response")]
        csms.set_response("Heartbeat", {"currentTime": 42}, validate=False)
        assert (await cs.call("Heartbeat", {}))[2] == {"currentTime": 42}

        def blocking(station_id: str, payload: dict[str, Any]) -> Any:
            return csms.call(station_id, "Reset", {"type": "Immediate"})  # would deadlock: refused instead

        csms.set_response("Heartbeat", blocking)
        assert (await cs.call("Heartbeat", {}))[2] == "InternalError"
        assert csms.violations[-1].kind == "responder-failed" and "deadlock" in csms.violations[-1].detail

        csms.set_response("Heartbeat", None)
        assert (await cs.call("Heartbeat", {}))[0] == 3


async def test_station_violations_are_recorded(csms: LoopbackCsms) -> None:
    async with station(csms) as cs:
        await cs.call("BootNotification", BOOT)
        invalid = await cs.call("BootNotification", {"reason": "PowerUp"})  # chargingStation missing
        assert invalid[0] == 4 and invalid[2] == "ProtocolError"
        wrong_type = await cs.call("Heartbeat", {"customData": "not an object"})
        assert wrong_type[2] == "TypeConstraintViolation"
        assert (await cs.call("Reset", {"type": "Immediate"}))[2] == "NotImplemented"  # a CSMS→station action
        assert (await cs.call("FooBar", {}))[2] == "NotSupported"
        await cs.send([3, "nobody-asked", {}])  # answers no CSMS CALL
        await cs.send("this is not json")
        await cs.send('[7, "id", {}]')
        await cs.send(b"\x00binary")
        await csms.trio.wait_for(lambda: len(csms.violations) == 8)
    kinds = [(v.kind, v.action) for v in csms.violations]
    assert kinds == [
        ("schema", "BootNotification"),
        ("schema", "Heartbeat"),
        ("unhandled-action", "Reset"),
        ("unhandled-action", "FooBar"),
        ("unexpected-response", None),
        ("malformed-frame", None),
        ("malformed-frame", None),
        ("binary-frame", None),
    ]
    assert all(v.direction == "in" and v.station_id == STATION for v in csms.violations)
    garbage = [f for f in csms.frames if f.raw == "this is not json"]
    assert len(garbage) == 1 and garbage[0].parsed is None and garbage[0].direction == "in"


# ---- waiting helpers and lifecycle -------------------------------------------------------------------------


async def test_wait_action_counts_filters_and_times_out(csms: LoopbackCsms) -> None:
    async with station(csms) as cs:
        await cs.call("BootNotification", BOOT)
        mark = csms.mark()
        for n in range(3):
            await cs.call("SecurityEventNotification", {"type": f"Event{n}", "timestamp": now()})
        found = await csms.trio.wait_action(STATION, "SecurityEventNotification", count=3)
        assert [p["type"] for p in found] == ["Event0", "Event1", "Event2"]
        only = await csms.trio.wait_action(
            STATION, "SecurityEventNotification", predicate=lambda p: p["type"] == "Event1", since=mark
        )
        assert len(only) == 1
        with pytest.raises(TimeoutError, match="4 × SecurityEventNotification"):
            await csms.trio.wait_action(STATION, "SecurityEventNotification", timeout=0.2, count=4)


def test_stop_is_clean_and_idempotent() -> None:
    before = set(threading.enumerate())
    csms = LoopbackCsms(passwords={STATION: PASSWORD}).start()
    with pytest.raises(RuntimeError):
        csms.start()
    with sync_connect(
        f"{csms.url}/{STATION}",
        subprotocols=["ocpp2.0.1"],
        additional_headers={"Authorization": basic(STATION, PASSWORD)[1].decode()},
    ) as client:
        client.send(json.dumps([2, "1", "BootNotification", BOOT]))
        assert json.loads(client.recv(timeout=5))[2]["status"] == "Accepted"
        csms.stop()
        csms.stop()
        with pytest.raises(ConnectionClosedOK) as closed:
            client.recv(timeout=5)
        assert closed.value.rcvd is not None and closed.value.rcvd.code == 1001  # going away
    assert set(threading.enumerate()) - before == set()
    with pytest.raises(CsmsError):
        csms.call(STATION, "Reset", {"type": "Immediate"})
    with pytest.raises(OSError):
        sync_connect(f"{csms.url}/{STATION}", subprotocols=["ocpp2.0.1"], open_timeout=2)


def test_start_reports_a_port_in_use() -> None:
    with LoopbackCsms() as first, pytest.raises(OSError):
        LoopbackCsms(port=first.port).start()
