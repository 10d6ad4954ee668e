"""Frames that are not valid OCPP-J get the right CALLERROR — or none, for responses — and the station keeps going.

CONTRACT ("What the CSMS may rely on"), Part 4 §4.1-4.4 and table 8, with the error-code choices of the digest
§1 and `appliance.protocol.schemas`. Each case sends one raw frame through the loopback CSMS (`send_raw`), reads
the station's answer from the CSMS's frame recording, then checks that a normal GetVariables still works on the
same connection.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path

import pytest
import trio

from appliance.lab.csms import LoopbackCsms, RecordedFrame
from appliance.lab.process import PASSWORD
from tests.conformance.helpers import STATION_ID, booted_station, get_value


def _call(message_id: str, action: str, payload: object) -> str:
    return json.dumps([2, message_id, action, payload])


def _get(item: dict, **extra: object) -> dict:
    return {"getVariableData": [item], **extra}


HEARTBEAT = {"component": {"name": "OCPPCommCtrlr"}, "variable": {"name": "HeartbeatInterval"}}
RESERVE_NOW = {
    "id": 1,
    "expiryDateTime": "2030-01-01T00:00:00Z",
    "idToken": {"idToken": "04A1B2C3", "type": "ISO14443"},
}

#: (case id, raw frame, message id expected in the CALLERROR, error code) — error code None: no answer at all.
CASES: list[tuple[str, str, str, str | None]] = [
    ("not-json", "this is not JSON", "-1", "RpcFrameworkError"),
    ("truncated-json", '[2,"trunc","GetVariables",{', "-1", "RpcFrameworkError"),
    ("not-an-array", '{"messageTypeId":2,"messageId":"obj"}', "-1", "RpcFrameworkError"),
    ("empty-array", "[]", "-1", "RpcFrameworkError"),
    ("message-type-7", '[7,"mt-7",{}]', "mt-7", "MessageTypeNotSupported"),
    ("call-missing-element", '[2,"missing-el","GetVariables"]', "missing-el", "RpcFrameworkError"),
    ("message-id-too-long", _call("i" * 37, "GetVariables", _get(HEARTBEAT)), "-1", "RpcFrameworkError"),
    ("action-not-a-string", '[2,"action-num",42,{}]', "action-num", "RpcFrameworkError"),
    ("unknown-action", _call("unknown-act", "FlyToTheMoon", {}), "unknown-act", "NotImplemented"),
    ("unsupported-action", _call("reserve", "ReserveNow", RESERVE_NOW), "reserve", "NotSupported"),
    (
        "wrong-type",
        _call("wrong-type", "GetVariables", _get({"component": {"name": 12}, "variable": {"name": "X"}})),
        "wrong-type",
        "TypeConstraintViolation",
    ),
    (
        "missing-required-field",
        _call("missing", "GetVariables", _get({"component": {"name": "OCPPCommCtrlr"}})),
        "missing",
        "OccurrenceConstraintViolation",
    ),
    (
        "value-out-of-enum",
        _call("enum", "GetVariables", _get({**HEARTBEAT, "attributeType": "Bogus"})),
        "enum",
        "PropertyConstraintViolation",
    ),
    (
        "additional-property",
        _call("extra", "GetVariables", _get(HEARTBEAT, bogusField=True)),
        "extra",
        "FormatViolation",
    ),
    ("callresult-unknown-id", '[3,"nobody-asked",{}]', "nobody-asked", None),
    ("callerror-unknown-id", '[4,"nobody-asked-2","GenericError","",{}]', "nobody-asked-2", None),
]


#: Ids of our frames that are not well-formed CALLs yet must be answered with that id (Part 4 table 7).
ANSWERED_NON_CALLS = frozenset({"mt-7", "action-num"})


@pytest.fixture
def csms() -> Iterator[LoopbackCsms]:
    """The conftest CSMS, except for one checker limitation: it flags any response whose id answers no CALL it
    sent (as it understands CALLs) as "unexpected-response" — including the CALLERRORs Part 4 requires for our
    type-7 frame (MessageTypeNotSupported, §4.4) and our CALL with a numeric action (RpcFrameworkError), which
    must echo the frame's id (table 7). Those are expected here; any other violation still fails the test."""
    with LoopbackCsms(passwords={STATION_ID: PASSWORD}, heartbeat_interval=300) as server:
        yield server
        unexpected = [
            v for v in server.violations if not (v.kind == "unexpected-response" and v.message_id in ANSWERED_NON_CALLS)
        ]
        assert unexpected == [], f"OCPP violations seen by the CSMS: {unexpected}"


def station_frames(csms: LoopbackCsms, since: int) -> list[RecordedFrame]:
    return [f for f in csms.frames_snapshot(STATION_ID, since) if f.direction == "in"]


@pytest.mark.parametrize(("raw", "message_id", "code"), [c[1:] for c in CASES], ids=[c[0] for c in CASES])
async def test_malformed_frame_answered_and_station_keeps_working(
    csms: LoopbackCsms, data_dir: Path, raw: str, message_id: str, code: str | None
) -> None:
    """One malformed frame → exactly one CALLERROR `[4, id, code, description ≤ 255, {details}]` with the
    frame's id when readable, else "-1" (Part 4 §4.2.3); a response to an id the station never used is
    dropped without an answer (§4.1.4). Either way the connection stays up and GetVariables still works."""
    async with booted_station(csms, data_dir):
        [connection] = csms.connections_snapshot(STATION_ID)
        mark = csms.mark()
        await csms.trio.send_raw(STATION_ID, raw)
        if code is not None:
            answer = await csms.trio.wait_for(
                lambda: next((f for f in station_frames(csms, mark) if f.message_type == 4), None),
                5,
                what="the station's CALLERROR",
            )
            assert answer.parsed[:3] == [4, message_id, code], answer.raw
            assert len(answer.parsed) == 5, answer.raw
            assert isinstance(answer.parsed[3], str) and len(answer.parsed[3]) <= 255, answer.raw
            assert isinstance(answer.parsed[4], dict), answer.raw

        assert await get_value(csms, "OCPPCommCtrlr", "HeartbeatInterval") == "300"
        await trio.sleep(0.2)
        answers = [  # every response the station sent except the GetVariables result
            f for f in station_frames(csms, mark) if not f.is_call and not (f.message_type == 3 and f.action)
        ]
        assert len(answers) == (0 if code is None else 1), [f.raw for f in answers]
        assert csms.connections_snapshot(STATION_ID) == [csms.connections_snapshot(STATION_ID)[0]]
        assert csms.connections_snapshot(STATION_ID)[0].connection_id == connection.connection_id
        assert connection.is_open and csms.is_connected(STATION_ID)


async def test_many_malformed_frames_in_a_row(csms: LoopbackCsms, data_dir: Path) -> None:
    """Every case above back to back on one connection: one answer each, in order, none for the responses, and
    the station still answers GetVariables afterwards (no state left behind by a bad frame)."""
    async with booted_station(csms, data_dir):
        mark = csms.mark()
        for _, raw, _, _ in CASES:
            await csms.trio.send_raw(STATION_ID, raw)
        assert await get_value(csms, "OCPPCommCtrlr", "HeartbeatInterval") == "300"
        await trio.sleep(0.2)
        errors = [f.parsed[1:3] for f in station_frames(csms, mark) if f.message_type == 4]
        assert errors == [[message_id, code] for _, _, message_id, code in CASES if code is not None]
        assert len(csms.connections_snapshot(STATION_ID)) == 1 and csms.is_connected(STATION_ID)
