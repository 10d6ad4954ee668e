"""Part 6 B provisioning, device model: GetVariables (TC_B_06, B_07, B_32, B_33, B_34) and SetVariables (TC_B_09,
B_10, B_11, B_35, B_36, B_37, B_39), plus the whole-request limits of B06.FR.16/17 and B05 (ItemsPerMessage →
OccurrenceConstraintViolation, BytesPerMessage → FormatViolation) with the certified defaults and with larger
limits a station maker sets through the config's `[variables]`; the certified minLimit/maxLimit a station maker
declares in `[limits]` (reported, enforced, applied to the boot interval) and PhaseRotation.
"""

from __future__ import annotations

import itertools
import json
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest

from appliance.lab.csms import LoopbackCsms, StationCallError
from appliance.lab.process import PASSWORD
from tests.conformance.helpers import (
    STATION_ID,
    booted_station,
    get_item,
    get_value,
    get_variables,
    no_error_info,
    set_item,
    set_variables,
)


def compact_size(payload: dict[str, Any]) -> int:
    """The payload's size as compact UTF-8 JSON: the smallest any CSMS can send it in."""
    return len(json.dumps(payload, separators=(",", ":"), ensure_ascii=False).encode())


async def call_error(csms: LoopbackCsms, action: str, payload: dict[str, Any]) -> str:
    """Send `payload` and return the CALLERROR code the station answers with (fails if it answers normally)."""
    with pytest.raises(StationCallError) as error:
        await csms.trio.call(STATION_ID, action, payload)
    return error.value.code


# --- GetVariables -----------------------------------------------------------------------------------------


async def test_TC_B_06_get_variables_single_value(csms: LoopbackCsms, data_dir: Path) -> None:
    """TC_B_06_CS (B06.FR.01-04/10/11): OCPPCommCtrlr.OfflineThreshold (configured 300), attributeType Actual.

    Step 2 validations: Accepted, attributeType Actual, value "300", the component and variable echoed, no
    attributeStatusInfo (or NoError).
    """
    async with booted_station(csms, data_dir, variables={"OCPPCommCtrlr.OfflineThreshold": 300}):
        [result] = await get_variables(csms, get_item("OCPPCommCtrlr", "OfflineThreshold", "Actual"))
        assert result["attributeStatus"] == "Accepted"
        assert result["attributeType"] == "Actual"
        assert result["attributeValue"] == "300"
        assert result["component"]["name"] == "OCPPCommCtrlr"
        assert result["variable"]["name"] == "OfflineThreshold"
        assert no_error_info(result), result


async def test_TC_B_07_get_variables_multiple_values(csms: LoopbackCsms, data_dir: Path) -> None:
    """TC_B_07_CS (B06): OfflineThreshold (300) and AuthCtrlr.LocalAuthorizeOffline (true) in one request.

    Step 2 validations, in arbitrary order: both Accepted, Actual, values "300" and "true", names echoed, no
    attributeStatusInfo (or NoError).
    """
    factory = {"OCPPCommCtrlr.OfflineThreshold": 300, "AuthCtrlr.LocalAuthorizeOffline": True}
    async with booted_station(csms, data_dir, variables=factory):
        results = await get_variables(
            csms,
            get_item("OCPPCommCtrlr", "OfflineThreshold", "Actual"),
            get_item("AuthCtrlr", "LocalAuthorizeOffline", "Actual"),
        )
        by_name = {(r["component"]["name"], r["variable"]["name"]): r for r in results}
        assert set(by_name) == {("OCPPCommCtrlr", "OfflineThreshold"), ("AuthCtrlr", "LocalAuthorizeOffline")}
        for key, value in (
            (("OCPPCommCtrlr", "OfflineThreshold"), "300"),
            (("AuthCtrlr", "LocalAuthorizeOffline"), "true"),
        ):
            result = by_name[key]
            assert result["attributeStatus"] == "Accepted", result
            assert result["attributeType"] == "Actual", result
            assert result["attributeValue"] == value, result
            assert no_error_info(result), result


async def test_TC_B_32_get_variables_unknown_component(csms: LoopbackCsms, data_dir: Path) -> None:
    """TC_B_32_CS (B06.FR.06): UnknownComponent.OfflineThreshold → attributeStatus UnknownComponent, names echoed."""
    async with booted_station(csms, data_dir):
        [result] = await get_variables(csms, get_item("UnknownComponent", "OfflineThreshold"))
        assert result["attributeStatus"] == "UnknownComponent"
        assert result["component"]["name"] == "UnknownComponent"
        assert result["variable"]["name"] == "OfflineThreshold"
        assert "attributeValue" not in result


async def test_TC_B_33_get_variables_unknown_variable(csms: LoopbackCsms, data_dir: Path) -> None:
    """TC_B_33_CS (B06.FR.07): OCPPCommCtrlr.UnknownVariable → attributeStatus UnknownVariable, names echoed."""
    async with booted_station(csms, data_dir):
        [result] = await get_variables(csms, get_item("OCPPCommCtrlr", "UnknownVariable"))
        assert result["attributeStatus"] == "UnknownVariable"
        assert result["component"]["name"] == "OCPPCommCtrlr"
        assert result["variable"]["name"] == "UnknownVariable"
        assert "attributeValue" not in result


async def test_TC_B_34_get_variables_not_supported_attribute_type(csms: LoopbackCsms, data_dir: Path) -> None:
    """TC_B_34_CS (B06.FR.08): OfflineThreshold with attributeType Target → NotSupportedAttributeType, Target."""
    async with booted_station(csms, data_dir):
        [result] = await get_variables(csms, get_item("OCPPCommCtrlr", "OfflineThreshold", "Target"))
        assert result["attributeStatus"] == "NotSupportedAttributeType"
        assert result["component"]["name"] == "OCPPCommCtrlr"
        assert result["variable"]["name"] == "OfflineThreshold"
        assert result["attributeType"] == "Target"


# --- SetVariables -----------------------------------------------------------------------------------------


async def test_TC_B_09_set_variables_single_value(csms: LoopbackCsms, data_dir: Path) -> None:
    """TC_B_09_CS (B05.FR.01-03/10/12): OfflineThreshold := "300", Actual.

    Step 2 validations: Accepted, Actual, names echoed, no attributeStatusInfo (or NoError); and the value is
    really applied (a GetVariables afterwards reads "300", not the default 60).
    """
    async with booted_station(csms, data_dir):
        assert await get_value(csms, "OCPPCommCtrlr", "OfflineThreshold") == "60"
        [result] = await set_variables(csms, set_item("OCPPCommCtrlr", "OfflineThreshold", "300", "Actual"))
        assert result["attributeStatus"] == "Accepted"
        assert result["attributeType"] == "Actual"
        assert result["component"]["name"] == "OCPPCommCtrlr"
        assert result["variable"]["name"] == "OfflineThreshold"
        assert no_error_info(result), result
        assert await get_value(csms, "OCPPCommCtrlr", "OfflineThreshold") == "300"


async def test_TC_B_10_set_variables_multiple_values(csms: LoopbackCsms, data_dir: Path) -> None:
    """TC_B_10_CS (B05): OfflineThreshold := "300" and AuthCtrlr.LocalAuthorizeOffline := "true" in one request.

    The certified ItemsPerMessage[SetVariables] is 1, so a two-item SetVariables is a CALLERROR there (see
    test_set_variables_item_limit_default); "multiple values" uses a station whose maker set the limit to 2
    (the OCTT sends as many as advertised). Step 2: both Accepted, Actual, names echoed, no statusInfo.
    """
    factory = {"DeviceDataCtrlr.ItemsPerMessage[SetVariables]": 2, "AuthCtrlr.LocalAuthorizeOffline": False}
    async with booted_station(csms, data_dir, variables=factory):
        results = await set_variables(
            csms,
            set_item("OCPPCommCtrlr", "OfflineThreshold", "300", "Actual"),
            set_item("AuthCtrlr", "LocalAuthorizeOffline", "true", "Actual"),
        )
        by_name = {(r["component"]["name"], r["variable"]["name"]): r for r in results}
        assert set(by_name) == {("OCPPCommCtrlr", "OfflineThreshold"), ("AuthCtrlr", "LocalAuthorizeOffline")}
        for result in results:
            assert result["attributeStatus"] == "Accepted", result
            assert result["attributeType"] == "Actual", result
            assert no_error_info(result), result
        assert await get_value(csms, "OCPPCommCtrlr", "OfflineThreshold") == "300"
        assert await get_value(csms, "AuthCtrlr", "LocalAuthorizeOffline") == "true"


def _now_iso() -> str:
    return datetime.now(UTC).isoformat(timespec="seconds").replace("+00:00", "Z")


async def test_TC_B_11_set_variables_invalidly_formatted_values(csms: LoopbackCsms, data_dir: Path) -> None:
    """TC_B_11_CS (B05.FR.07): each of 300, 300.1, true, <currentTime>, "abc" set on variables of four types.

    A value the variable's type does not take → Rejected (reasonCode InvalidValue if given); one it takes →
    Accepted. OfflineThreshold (integer) takes only "300"; AuthCtrlr.AuthorizeRemoteStart (boolean) only "true";
    ClockCtrlr.NextTimeOffsetTransitionDateTime (dateTime) only the current time; SmartChargingCtrlr
    LimitChangeSignificance (decimal, percent, smart charging block) takes "300" and "300.1".
    """
    now = _now_iso()
    candidates = ["300", "300.1", "true", now, "abc"]
    accepted_value = {
        ("OCPPCommCtrlr", "OfflineThreshold"): "300",
        ("AuthCtrlr", "AuthorizeRemoteStart"): "true",
        ("ClockCtrlr", "NextTimeOffsetTransitionDateTime"): now,
    }
    decimals = {"300", "300.1"}
    async with booted_station(csms, data_dir, variables={"OCPPCommCtrlr.OfflineThreshold": 300}):
        wrong: list[str] = []
        for value in candidates:
            for (component, name), good in accepted_value.items():
                [result] = await set_variables(csms, set_item(component, name, value))
                expected = "Accepted" if value == good else "Rejected"
                info = result.get("attributeStatusInfo")
                if (
                    result["attributeStatus"] != expected
                    or result["attributeType"] != "Actual"
                    or (result["component"]["name"], result["variable"]["name"]) != (component, name)
                    or (expected == "Rejected" and info is not None and info.get("reasonCode") != "InvalidValue")
                ):
                    wrong.append(f"{component}.{name} := {value!r}: expected {expected}, got {result}")
            [result] = await set_variables(csms, set_item("SmartChargingCtrlr", "LimitChangeSignificance", value))
            expected = "Accepted" if value in decimals else "Rejected"
            info = result.get("attributeStatusInfo")
            if result["attributeStatus"] != expected or (
                expected == "Rejected" and info is not None and info.get("reasonCode") != "InvalidValue"
            ):
                wrong.append(f"SmartChargingCtrlr.LimitChangeSignificance := {value!r}: got {result}")
        assert wrong == [], "\n".join(wrong)
        assert await get_value(csms, "OCPPCommCtrlr", "OfflineThreshold") == "300"
        assert await get_value(csms, "AuthCtrlr", "AuthorizeRemoteStart") == "true"


async def test_TC_B_35_set_variables_unknown_component(csms: LoopbackCsms, data_dir: Path) -> None:
    """TC_B_35_CS (B05.FR.04): UnknownComponent.OfflineThreshold → UnknownComponent, names echoed."""
    async with booted_station(csms, data_dir):
        [result] = await set_variables(csms, set_item("UnknownComponent", "OfflineThreshold", "300"))
        assert result["attributeStatus"] == "UnknownComponent"
        assert result["component"]["name"] == "UnknownComponent"
        assert result["variable"]["name"] == "OfflineThreshold"


async def test_TC_B_36_set_variables_unknown_variable(csms: LoopbackCsms, data_dir: Path) -> None:
    """TC_B_36_CS (B05.FR.05): OCPPCommCtrlr.UnknownVariable → UnknownVariable, names echoed."""
    async with booted_station(csms, data_dir):
        [result] = await set_variables(csms, set_item("OCPPCommCtrlr", "UnknownVariable", "300"))
        assert result["attributeStatus"] == "UnknownVariable"
        assert result["component"]["name"] == "OCPPCommCtrlr"
        assert result["variable"]["name"] == "UnknownVariable"


async def test_TC_B_37_set_variables_not_supported_attribute_type(csms: LoopbackCsms, data_dir: Path) -> None:
    """TC_B_37_CS (B05.FR.06): OfflineThreshold with attributeType Target → NotSupportedAttributeType, Target;
    the Actual value is left alone."""
    async with booted_station(csms, data_dir):
        [result] = await set_variables(csms, set_item("OCPPCommCtrlr", "OfflineThreshold", "300", "Target"))
        assert result["attributeStatus"] == "NotSupportedAttributeType"
        assert result["component"]["name"] == "OCPPCommCtrlr"
        assert result["variable"]["name"] == "OfflineThreshold"
        assert result["attributeType"] == "Target"
        assert await get_value(csms, "OCPPCommCtrlr", "OfflineThreshold") == "60"


async def test_TC_B_39_set_variables_read_only(csms: LoopbackCsms, data_dir: Path) -> None:
    """TC_B_39_CS (B05.FR.09): OCPPCommCtrlr.MessageTimeout[Default] is ReadOnly → Rejected, names and instance
    echoed; the value is unchanged."""
    async with booted_station(csms, data_dir):
        before = await get_value(csms, "OCPPCommCtrlr", "MessageTimeout", instance="Default")
        [result] = await set_variables(csms, set_item("OCPPCommCtrlr", "MessageTimeout", "42", instance="Default"))
        assert result["attributeStatus"] == "Rejected"
        assert result["component"]["name"] == "OCPPCommCtrlr"
        assert result["variable"]["name"] == "MessageTimeout"
        assert result["variable"]["instance"] == "Default"
        assert await get_value(csms, "OCPPCommCtrlr", "MessageTimeout", instance="Default") == before


# --- whole-request limits (B06.FR.16/17, B05 likewise) ------------------------------------------------------


def _get_items(n: int) -> list[dict[str, Any]]:
    return [get_item("OCPPCommCtrlr", "HeartbeatInterval") for _ in range(n)]


def _set_items(n: int) -> list[dict[str, Any]]:
    return [set_item("OCPPCommCtrlr", "OfflineThreshold", str(100 + i)) for i in range(n)]


def _get_payload_of_size(size: int) -> dict[str, Any]:
    """A GetVariables payload whose compact JSON is exactly `size` bytes, in as few items as the schema's name
    lengths (50 characters) allow: all four names of each item start at 50 characters and are trimmed one
    character at a time (unknown components, so the answers are all UnknownComponent)."""
    items = []
    for i in range(size // 200 + 1):
        item = get_item(f"C{i}".ljust(50, "c"), f"V{i}".ljust(50, "v"), instance=f"I{i}".ljust(50, "i"))
        item["component"]["instance"] = f"J{i}".ljust(50, "j")
        items.append(item)
    payload = {"getVariableData": items}
    fields = [(item[part], key) for item in items for part in ("component", "variable") for key in ("name", "instance")]
    while compact_size(payload) > size:
        holder, key = max(fields, key=lambda field: len(field[0][field[1]]))
        assert len(holder[key]) > 2, f"cannot build a GetVariables of {size} bytes"
        holder[key] = holder[key][:-1]
    assert compact_size(payload) == size, f"cannot build a GetVariables of {size} bytes"
    return payload


async def test_get_and_set_variables_item_limit_default(csms: LoopbackCsms, data_dir: Path) -> None:
    """B06.FR.16 / B05: more items than DeviceDataCtrlr.ItemsPerMessage → CALLERROR OccurrenceConstraintViolation.

    Certified limits: GetVariables 10 (10 answered, 11 refused), SetVariables 1 (1 answered, 2 refused); the
    station keeps working and a refused SetVariables changes nothing.
    """
    async with booted_station(csms, data_dir):
        assert await get_value(csms, "DeviceDataCtrlr", "ItemsPerMessage", instance="GetVariables") == "10"
        assert await get_value(csms, "DeviceDataCtrlr", "ItemsPerMessage", instance="SetVariables") == "1"
        assert len(await get_variables(csms, *_get_items(10))) == 10
        code = await call_error(csms, "GetVariables", {"getVariableData": _get_items(11)})
        assert code == "OccurrenceConstraintViolation"
        code = await call_error(csms, "SetVariables", {"setVariableData": _set_items(2)})
        assert code == "OccurrenceConstraintViolation"
        assert await get_value(csms, "OCPPCommCtrlr", "OfflineThreshold") == "60"
        [result] = await set_variables(csms, *_set_items(1))
        assert result["attributeStatus"] == "Accepted"


async def test_get_and_set_variables_byte_limit_default(csms: LoopbackCsms, data_dir: Path) -> None:
    """B06.FR.17 / B05: a request larger than DeviceDataCtrlr.BytesPerMessage (1000) → CALLERROR FormatViolation.

    A GetVariables of 1001 bytes (within the 10 items) is refused, one well under 1000 bytes (frame included)
    answered; a one-item SetVariables whose value makes it over 1000 bytes is refused and changes nothing.
    """
    async with booted_station(csms, data_dir):
        assert await get_value(csms, "DeviceDataCtrlr", "BytesPerMessage", instance="GetVariables") == "1000"
        assert await get_value(csms, "DeviceDataCtrlr", "BytesPerMessage", instance="SetVariables") == "1000"
        assert await call_error(csms, "GetVariables", _get_payload_of_size(1001)) == "FormatViolation"
        answer = await csms.trio.call(STATION_ID, "GetVariables", _get_payload_of_size(900))
        assert {r["attributeStatus"] for r in answer["getVariableResult"]} == {"UnknownComponent"}
        big = {"setVariableData": [set_item("SecurityCtrlr", "OrganizationName", "o" * 950)]}
        assert compact_size(big) > 1000
        assert await call_error(csms, "SetVariables", big) == "FormatViolation"
        assert await get_value(csms, "SecurityCtrlr", "OrganizationName") == ""


async def test_get_and_set_variables_larger_configured_limits(csms: LoopbackCsms, data_dir: Path) -> None:
    """The same limits when the station maker raises them in `[variables]` (CONTRACT: ReadOnly variables may be
    set there): ItemsPerMessage GetVariables 20 / SetVariables 3, BytesPerMessage GetVariables 4000 /
    SetVariables 2000.

    They are reported by GetVariables and enforced at the new values: 20 Get items answered, 21 refused
    (OccurrenceConstraintViolation); 3 Set items answered, 4 refused; requests over the certified 1000 bytes
    answered, over the new byte limits refused (FormatViolation).
    """
    factory = {
        "DeviceDataCtrlr.ItemsPerMessage[GetVariables]": 20,
        "DeviceDataCtrlr.ItemsPerMessage[SetVariables]": 3,
        "DeviceDataCtrlr.BytesPerMessage[GetVariables]": 4000,
        "DeviceDataCtrlr.BytesPerMessage[SetVariables]": 2000,
    }
    async with booted_station(csms, data_dir, variables=factory):
        for instance, value in (("GetVariables", "20"), ("SetVariables", "3")):
            assert await get_value(csms, "DeviceDataCtrlr", "ItemsPerMessage", instance=instance) == value
        for instance, value in (("GetVariables", "4000"), ("SetVariables", "2000")):
            assert await get_value(csms, "DeviceDataCtrlr", "BytesPerMessage", instance=instance) == value

        assert len(await get_variables(csms, *_get_items(20))) == 20
        code = await call_error(csms, "GetVariables", {"getVariableData": _get_items(21)})
        assert code == "OccurrenceConstraintViolation"
        assert [r["attributeStatus"] for r in await set_variables(csms, *_set_items(3))] == ["Accepted"] * 3
        code = await call_error(csms, "SetVariables", {"setVariableData": _set_items(4)})
        assert code == "OccurrenceConstraintViolation"

        answer = await csms.trio.call(STATION_ID, "GetVariables", _get_payload_of_size(1001))
        assert {r["attributeStatus"] for r in answer["getVariableResult"]} == {"UnknownComponent"}
        long_names = get_item("C".ljust(50, "c"), "V".ljust(50, "v"), instance="I".ljust(50, "i"))
        long_names["component"]["instance"] = "J".ljust(50, "j")
        too_big_get = {"getVariableData": [long_names] * 20}
        assert compact_size(too_big_get) > 4000
        assert await call_error(csms, "GetVariables", too_big_get) == "FormatViolation"

        over_1000 = set_item("SecurityCtrlr", "OrganizationName", "o" * 1000)
        [result] = await set_variables(csms, over_1000)  # answered: only the value is too long (maxLimit 64)
        assert result["attributeStatus"] == "Rejected"
        too_big_set = {"setVariableData": [over_1000, over_1000]}
        assert compact_size(too_big_set) > 2000
        assert await call_error(csms, "SetVariables", too_big_set) == "FormatViolation"


# --- what the station maker declares: [limits] and PhaseRotation ---------------------------------------------

LIMITS = """[limits]
"SampledDataCtrlr.TxUpdatedInterval" = { min = 10 }
"OCPPCommCtrlr.HeartbeatInterval" = { min = 30, max = 86400 }
"OCPPCommCtrlr.MessageAttemptInterval[TransactionEvent]" = { min = 10 }
"""


#: A fresh requestId per report: the previous one's place is held until its last NotifyReport is answered, which
#: the CSMS records before it answers, so reusing an id at once may rightly meet DuplicateRequestId.
_REPORT_IDS = itertools.count(42)


async def reported_characteristics(
    csms: LoopbackCsms, component: str, name: str, instance: str | None = None
) -> dict[str, Any]:
    """variableCharacteristics of one variable, from a GetReport's NotifyReport."""
    mark = csms.mark()
    variable = {"name": name} if instance is None else {"name": name, "instance": instance}
    answer = await csms.trio.call(
        STATION_ID,
        "GetReport",
        {
            "requestId": next(_REPORT_IDS),
            "componentVariable": [{"component": {"name": component}, "variable": variable}],
        },
    )
    assert answer["status"] == "Accepted", answer
    [page] = await csms.trio.wait_action(STATION_ID, "NotifyReport", 10, since=mark)
    [item] = page["reportData"]
    return item["variableCharacteristics"]


async def test_declared_limits_reported_and_enforced(csms: LoopbackCsms, data_dir: Path) -> None:
    """B05.FR.07 under the limits the station maker declares in `[limits]` (the certified minimum TxUpdatedInterval,
    HeartbeatInterval and MessageAttemptInterval): reports carry them as minLimit/maxLimit; SetVariables outside
    → Rejected, reasonCode ValueOutOfRange, value unchanged; at the limit → Accepted."""
    async with booted_station(csms, data_dir, extra=LIMITS):
        chars = await reported_characteristics(csms, "SampledDataCtrlr", "TxUpdatedInterval")
        assert chars["minLimit"] == 10 and "maxLimit" not in chars, chars
        chars = await reported_characteristics(csms, "OCPPCommCtrlr", "HeartbeatInterval")
        assert (chars["minLimit"], chars["maxLimit"]) == (30, 86400), chars
        for component, name, instance, low, high in (
            ("SampledDataCtrlr", "TxUpdatedInterval", None, "9", "10"),
            ("OCPPCommCtrlr", "HeartbeatInterval", None, "29", "30"),
            ("OCPPCommCtrlr", "HeartbeatInterval", None, "86401", "86400"),
            ("OCPPCommCtrlr", "MessageAttemptInterval", "TransactionEvent", "0", "10"),
        ):
            before = await get_value(csms, component, name, instance=instance)
            [result] = await set_variables(csms, set_item(component, name, low, instance=instance))
            assert result["attributeStatus"] == "Rejected", result
            assert result["attributeStatusInfo"]["reasonCode"] == "ValueOutOfRange", result
            assert await get_value(csms, component, name, instance=instance) == before
            [result] = await set_variables(csms, set_item(component, name, high, instance=instance))
            assert result["attributeStatus"] == "Accepted" and no_error_info(result), result
            assert await get_value(csms, component, name, instance=instance) == high


async def test_boot_interval_outside_the_declared_limits(data_dir: Path) -> None:
    """B01: an accepted BootNotification's interval sets HeartbeatInterval; one below the declared minLimit
    (30 s) is moved to it instead of failing the boot."""
    with LoopbackCsms(passwords={STATION_ID: PASSWORD}, heartbeat_interval=5) as csms:
        async with booted_station(csms, data_dir, extra=LIMITS):
            assert await get_value(csms, "OCPPCommCtrlr", "HeartbeatInterval") == "30"
        assert csms.violations == []


async def test_phase_rotation_factory_value_set_and_persisted(csms: LoopbackCsms, data_dir: Path) -> None:
    """ChargingStation.PhaseRotation and EVSE[n].PhaseRotation: the factory value from `[variables]`; the CSMS
    changes it (RTS accepted, a code with a phase twice or one that does not fit the EVSE's phases → Rejected
    InvalidValue); the CSMS's value survives a restart with the same config."""
    variables = {"ChargingStation.PhaseRotation": "RST", "EVSE[2].PhaseRotation": "Sxx"}
    async with booted_station(csms, data_dir, variables=variables):
        assert await get_value(csms, "ChargingStation", "PhaseRotation") == "RST"
        assert await get_value(csms, "EVSE", "PhaseRotation", evse=2) == "Sxx"
        assert await get_value(csms, "EVSE", "PhaseRotation", evse=1) == ""  # not known
        [result] = await set_variables(csms, set_item("ChargingStation", "PhaseRotation", "RTS"))
        assert result["attributeStatus"] == "Accepted", result
        for component, value, evse in (("ChargingStation", "RRT", None), ("EVSE", "RST", 2), ("EVSE", "Rx", 1)):
            [result] = await set_variables(csms, set_item(component, "PhaseRotation", value, evse=evse))
            assert result["attributeStatus"] == "Rejected", result
            assert result["attributeStatusInfo"]["reasonCode"] == "InvalidValue", result
    async with booted_station(csms, data_dir, variables=variables):
        assert await get_value(csms, "ChargingStation", "PhaseRotation") == "RTS"
        assert await get_value(csms, "EVSE", "PhaseRotation", evse=2) == "Sxx"
