"""A message over the WebSocket size limit is logged with its size; the limit fits what the device model permits.

Issue 15 item 3. The CSMS sends raw frames of a chosen size over the real WebSocket; the station closes with
1009 (Message Too Big, RFC 6455) for one over the limit, reconnects, and keeps answering. A frame under the
limit but over BytesPerMessage is answered (with the CALLERROR the device model gives), not cut off.
"""

from __future__ import annotations

import json
import logging
from pathlib import Path

import pytest

from appliance.lab.csms import LoopbackCsms
from appliance.link.transport import MAX_MESSAGE_SIZE
from tests.conformance.helpers import STATION_ID, booted_station, get_value


def get_variables_of_size(size: int, message_id: str) -> str:
    """A schema-valid GetVariables CALL of exactly `size` bytes (padded in customData, which is open)."""

    def frame(pad: int) -> str:
        item = {"component": {"name": "OCPPCommCtrlr"}, "variable": {"name": "HeartbeatInterval"}}
        payload = {"getVariableData": [item], "customData": {"vendorId": "test", "padding": "p" * pad}}
        return json.dumps([2, message_id, "GetVariables", payload])

    text = frame(0)
    return frame(size - len(text))


def answer_to(csms: LoopbackCsms, message_id: str, since: int) -> list[object] | None:
    for f in csms.frames_snapshot(STATION_ID, since):
        if f.direction == "in" and f.message_type in (3, 4) and f.message_id == message_id:
            return f.parsed
    return None


async def test_a_message_over_the_limit_is_logged_with_its_size_and_the_station_reconnects(
    csms: LoopbackCsms, data_dir: Path, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.ERROR, logger="appliance.link")
    size = MAX_MESSAGE_SIZE + 12_345
    async with booted_station(csms, data_dir) as station:
        assert station.link.frame_limit() == MAX_MESSAGE_SIZE
        await csms.trio.send_raw(STATION_ID, get_variables_of_size(size, "too-big"))
        await csms.trio.wait_for(lambda: len(csms.connections_snapshot(STATION_ID)) == 2, 15, what="a reconnect")
        await csms.trio.wait_connected(STATION_ID)
        assert await get_value(csms, "OCPPCommCtrlr", "HeartbeatInterval") is not None
    first = csms.connections_snapshot(STATION_ID)[0]
    assert first.close_code == 1009, first
    assert f"CSMS sent a message of {size} bytes, over the {MAX_MESSAGE_SIZE}-byte limit" in caplog.text


async def test_a_message_under_the_limit_but_over_bytes_per_message_is_answered(
    csms: LoopbackCsms, data_dir: Path
) -> None:
    async with booted_station(csms, data_dir) as station:
        mark = csms.mark()
        await csms.trio.send_raw(STATION_ID, get_variables_of_size(MAX_MESSAGE_SIZE - 100, "big"))
        answer = await csms.trio.wait_for(lambda: answer_to(csms, "big", mark), 10, what="the CALLERROR")
        assert answer[:3] == [4, "big", "FormatViolation"], answer
        assert station.link.connections == 1


async def test_the_limit_grows_with_a_factory_bytes_per_message(csms: LoopbackCsms, data_dir: Path) -> None:
    """A station maker who permits 400 kB GetVariables requests gets a WebSocket that receives them."""
    permitted = 400_000
    async with booted_station(
        csms, data_dir, variables={"DeviceDataCtrlr.BytesPerMessage[GetVariables]": permitted}
    ) as station:
        assert station.link.frame_limit() == permitted
        mark = csms.mark()
        await csms.trio.send_raw(STATION_ID, get_variables_of_size(permitted - 10, "permitted"))
        answer = await csms.trio.wait_for(lambda: answer_to(csms, "permitted", mark), 10, what="the answer")
        assert answer[0] == 3 and answer[2]["getVariableResult"][0]["attributeStatus"] == "Accepted", answer
        assert station.link.connections == 1
