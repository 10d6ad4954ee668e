"""Part 6 P data transfer: TC_P_01 (DataTransfer to the station: unknown vendor / message → UnknownVendorId,
UnknownMessageId or Rejected), TC_P_03 (customData is accepted in a request), plus the station's own vendor
extension (org.appliance / Ping) and malformed DataTransfer requests.

Not applicable here: TC_P_02 is a CSMS-side case (DataTransfer from the station); TC_P_04 needs smart charging.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from appliance.lab.csms import LoopbackCsms
from tests.conformance.remote_helpers import assert_still_running, call, call_error, station_up

CUSTOM = {"vendorId": "org.openchargealliance.octt", "note": "custom data", "nested": {"n": [1, 2, 3]}}


async def test_TC_P_01_unknown_vendor(csms: LoopbackCsms, data_dir: Path) -> None:
    """TC_P_01_CS (P01.FR.05/06): DataTransfer vendorId org.openchargealliance.octt, messageId <configured> →
    status UnknownVendorId, UnknownMessageId or Rejected; the station keeps running."""
    async with station_up(csms, data_dir):
        answer = await call(
            csms,
            "DataTransfer",
            {"vendorId": "org.openchargealliance.octt", "messageId": "TestMessage", "data": {"x": 1}},
        )
        assert answer["status"] in ("UnknownVendorId", "UnknownMessageId", "Rejected"), answer
        await assert_still_running(csms)


async def test_TC_P_01_known_vendor_unknown_message(csms: LoopbackCsms, data_dir: Path) -> None:
    """P01.FR.06: the station's own vendorId with a messageId it does not know → UnknownMessageId (and without
    a messageId as well)."""
    async with station_up(csms, data_dir):
        answer = await call(csms, "DataTransfer", {"vendorId": "org.appliance", "messageId": "SelfDestruct"})
        assert answer["status"] == "UnknownMessageId", answer
        answer = await call(csms, "DataTransfer", {"vendorId": "org.appliance"})
        assert answer["status"] in ("UnknownMessageId", "Rejected"), answer


async def test_data_transfer_vendor_ping(csms: LoopbackCsms, data_dir: Path) -> None:
    """The documented vendor extension org.appliance / Ping: Accepted and the data echoed as {"pong": data}
    (any JSON value); the vendorId compares exactly."""
    async with station_up(csms, data_dir):
        for data in ({"seq": 7}, "text", [1, 2], None):
            payload: dict[str, Any] = {"vendorId": "org.appliance", "messageId": "Ping"}
            if data is not None:
                payload["data"] = data
            answer = await call(csms, "DataTransfer", payload)
            assert answer == {"status": "Accepted", "data": {"pong": data}}, answer


async def test_TC_P_03_receive_custom_data(csms: LoopbackCsms, data_dir: Path) -> None:
    """TC_P_03_CS: SetVariables OCPPCommCtrlr.OfflineThreshold = "200" (Actual) with customData on the request,
    the item, its component and variable → setVariableResult[0].attributeStatus Accepted; GetVariables (also
    with customData) → Accepted, attributeType Actual or omitted, attributeValue "200"."""
    async with station_up(csms, data_dir):
        answer = await call(
            csms,
            "SetVariables",
            {
                "customData": CUSTOM,
                "setVariableData": [
                    {
                        "customData": CUSTOM,
                        "attributeType": "Actual",
                        "attributeValue": "200",
                        "component": {"name": "OCPPCommCtrlr", "customData": CUSTOM},
                        "variable": {"name": "OfflineThreshold", "customData": CUSTOM},
                    }
                ],
            },
        )
        assert answer["setVariableResult"][0]["attributeStatus"] == "Accepted", answer
        answer = await call(
            csms,
            "GetVariables",
            {
                "customData": CUSTOM,
                "getVariableData": [
                    {
                        "customData": CUSTOM,
                        "attributeType": "Actual",
                        "component": {"name": "OCPPCommCtrlr"},
                        "variable": {"name": "OfflineThreshold"},
                    }
                ],
            },
        )
        [result] = answer["getVariableResult"]
        assert result["attributeStatus"] == "Accepted", result
        assert result.get("attributeType", "Actual") == "Actual", result
        assert result["attributeValue"] == "200", result


async def test_custom_data_on_data_transfer_and_trigger(csms: LoopbackCsms, data_dir: Path) -> None:
    """customData (a vendorId plus anything) is accepted on other requests too: DataTransfer Ping, TriggerMessage
    Heartbeat and ChangeAvailability answer normally."""
    async with station_up(csms, data_dir):
        answer = await call(
            csms, "DataTransfer", {"vendorId": "org.appliance", "messageId": "Ping", "data": 1, "customData": CUSTOM}
        )
        assert answer["status"] == "Accepted", answer
        answer = await call(csms, "TriggerMessage", {"requestedMessage": "Heartbeat", "customData": CUSTOM})
        assert answer["status"] == "Accepted", answer
        answer = await call(csms, "ChangeAvailability", {"operationalStatus": "Operative", "customData": CUSTOM})
        assert answer["status"] == "Accepted", answer


MALFORMED: list[tuple[str, Any, set[str]]] = [
    ("missing-vendor", {"messageId": "Ping"}, {"OccurrenceConstraintViolation"}),
    ("vendor-too-long", {"vendorId": "v" * 256}, {"PropertyConstraintViolation"}),
    ("message-id-too-long", {"vendorId": "org.appliance", "messageId": "m" * 51}, {"PropertyConstraintViolation"}),
    ("vendor-not-string", {"vendorId": 42}, {"TypeConstraintViolation"}),
    ("unknown-field", {"vendorId": "org.appliance", "messageId": "Ping", "urgent": True}, {"FormatViolation"}),
    (
        "custom-data-without-vendor",
        {"vendorId": "org.appliance", "customData": {"x": 1}},
        {"OccurrenceConstraintViolation"},
    ),
]


@pytest.mark.parametrize(("payload", "codes"), [m[1:] for m in MALFORMED], ids=[m[0] for m in MALFORMED])
async def test_malformed_data_transfer(csms: LoopbackCsms, data_dir: Path, payload: Any, codes: set[str]) -> None:
    """A DataTransfer breaking its schema gets the CALLERROR of the broken rule (Part 4 table 8: required →
    OccurrenceConstraintViolation, maxLength → PropertyConstraintViolation, type → TypeConstraintViolation,
    unknown field → FormatViolation); the station keeps running."""
    async with station_up(csms, data_dir):
        assert await call_error(csms, "DataTransfer", payload) in codes
        await assert_still_running(csms)
