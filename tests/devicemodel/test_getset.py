"""GetVariables / SetVariables: every status, addressing, limits, schema-valid answers (Part 6 TC_B_06…B_39)."""

from __future__ import annotations

import uuid
from collections.abc import AsyncIterator
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from appliance.devicemodel import DeviceModel
from appliance.devicemodel.getset import payload_size
from appliance.protocol.errors import ErrorCode, OcppError
from tests.devicemodel.test_support import assert_valid, close_storage, get, new_db, open_model, set_

COMM = {"name": "OCPPCommCtrlr"}


@pytest.fixture
async def dm(tmp_path: Path) -> AsyncIterator[DeviceModel]:
    conn = new_db(tmp_path / "dm.db")
    yield await open_model(conn)
    close_storage(conn)


# --- GetVariables --------------------------------------------------------------------------------------


async def test_tc_b_06_single_value(tmp_path: Path) -> None:
    dm = await open_model(new_db(tmp_path / "dm.db"), {"OCPPCommCtrlr.OfflineThreshold": 300})
    result = get(dm, COMM, {"name": "OfflineThreshold"}, "Actual")
    assert result == {
        "attributeStatus": "Accepted",
        "attributeType": "Actual",
        "attributeValue": "300",
        "component": COMM,
        "variable": {"name": "OfflineThreshold"},
    }


async def test_tc_b_07_multiple_values(dm: DeviceModel) -> None:
    response = dm.handle_get_variables(
        {
            "getVariableData": [
                {"component": COMM, "variable": {"name": "OfflineThreshold"}, "attributeType": "Actual"},
                {"component": {"name": "AuthCtrlr"}, "variable": {"name": "LocalAuthorizeOffline"}},
            ]
        }
    )
    assert_valid("GetVariablesResponse", response)
    values = [(r["attributeStatus"], r["attributeValue"]) for r in response["getVariableResult"]]
    assert values == [("Accepted", "60"), ("Accepted", "true")]


async def test_tc_b_32_unknown_component(dm: DeviceModel) -> None:
    result = get(dm, {"name": "UnknownComponent"}, {"name": "OfflineThreshold"})
    assert result["attributeStatus"] == "UnknownComponent"
    assert result["component"] == {"name": "UnknownComponent"}
    assert result["variable"] == {"name": "OfflineThreshold"}
    assert "attributeValue" not in result


async def test_tc_b_33_unknown_variable(dm: DeviceModel) -> None:
    result = get(dm, COMM, {"name": "UnknownVariable"})
    assert result["attributeStatus"] == "UnknownVariable"
    assert result["variable"] == {"name": "UnknownVariable"}


async def test_tc_b_34_not_supported_attribute_type(dm: DeviceModel) -> None:
    result = get(dm, COMM, {"name": "OfflineThreshold"}, "Target")
    assert result["attributeStatus"] == "NotSupportedAttributeType"
    assert result["attributeType"] == "Target"


async def test_write_only_is_never_returned(dm: DeviceModel) -> None:
    await set_(dm, {"name": "SecurityCtrlr"}, {"name": "BasicAuthPassword"}, "a-very-secret-password")
    result = get(dm, {"name": "SecurityCtrlr"}, {"name": "BasicAuthPassword"})
    assert result["attributeStatus"] == "Rejected"
    assert result["attributeStatusInfo"]["reasonCode"] == "WriteOnly"
    assert "attributeValue" not in result
    assert "a-very-secret-password" not in repr(result)
    assert dm.get("SecurityCtrlr.BasicAuthPassword") == "a-very-secret-password"  # the station can read it


async def test_names_are_case_insensitive_and_echoed(dm: DeviceModel) -> None:
    result = get(dm, {"name": "ocppcommCTRLR"}, {"name": "messageattempts", "instance": "transactionEVENT"})
    assert result["attributeStatus"] == "Accepted"
    assert result["attributeValue"] == "3"
    assert result["component"] == {"name": "ocppcommCTRLR"}
    assert result["variable"] == {"name": "messageattempts", "instance": "transactionEVENT"}


async def test_variable_instances(dm: DeviceModel) -> None:
    ddc = {"name": "DeviceDataCtrlr"}
    assert get(dm, ddc, {"name": "ItemsPerMessage", "instance": "GetVariables"})["attributeValue"] == "10"
    assert get(dm, ddc, {"name": "ItemsPerMessage", "instance": "SetVariables"})["attributeValue"] == "1"
    assert get(dm, ddc, {"name": "ItemsPerMessage"})["attributeStatus"] == "UnknownVariable"
    assert get(dm, ddc, {"name": "ItemsPerMessage", "instance": "Nope"})["attributeStatus"] == "UnknownVariable"
    assert get(dm, COMM, {"name": "OfflineThreshold", "instance": "X"})["attributeStatus"] == "UnknownVariable"


async def test_component_instance_must_match(dm: DeviceModel) -> None:
    assert (
        get(dm, {"name": "OCPPCommCtrlr", "instance": "Other"}, {"name": "OfflineThreshold"})["attributeStatus"]
        == "UnknownComponent"
    )


async def test_evse_and_connector_addressing(dm: DeviceModel) -> None:
    phases = {"name": "SupplyPhases"}
    assert get(dm, {"name": "EVSE", "evse": {"id": 1}}, phases)["attributeValue"] == "3"
    assert get(dm, {"name": "EVSE", "evse": {"id": 2}}, phases)["attributeValue"] == "1"
    assert get(dm, {"name": "Connector", "evse": {"id": 2, "connectorId": 1}}, phases)["attributeValue"] == "1"
    assert get(dm, {"name": "ChargingStation"}, phases)["attributeValue"] == "3"
    for component in (
        {"name": "EVSE"},
        {"name": "EVSE", "evse": {"id": 3}},
        {"name": "EVSE", "evse": {"id": 1, "connectorId": 1}},
        {"name": "Connector", "evse": {"id": 1}},
        {"name": "Connector", "evse": {"id": 1, "connectorId": 2}},
        {"name": "OCPPCommCtrlr", "evse": {"id": 1}},
    ):
        assert get(dm, component, phases)["attributeStatus"] == "UnknownComponent", component
    power = get(dm, {"name": "evse", "evse": {"id": 2}}, {"name": "Power"}, "MaxSet")
    assert (power["attributeStatus"], power["attributeValue"]) == ("Accepted", "7360")
    assert (
        get(dm, {"name": "EVSE", "evse": {"id": 2}}, {"name": "Power"}, "MinSet")["attributeStatus"]
        == "NotSupportedAttributeType"
    )
    assert (
        get(dm, {"name": "Connector", "evse": {"id": 1, "connectorId": 1}}, {"name": "ConnectorType"})["attributeValue"]
        == "cType2"
    )


async def test_canonical_text_in_results(dm: DeviceModel) -> None:
    assert get(dm, {"name": "TxCtrlr"}, {"name": "TxStartPoint"})["attributeValue"] == "EVConnected,Authorized"
    assert get(dm, {"name": "TxCtrlr"}, {"name": "StopTxOnEVSideDisconnect"})["attributeValue"] == "true"
    assert get(dm, {"name": "EVSE", "evse": {"id": 1}}, {"name": "Power"}, "MaxSet")["attributeValue"] == "22080"
    assert get(dm, {"name": "AuthCtrlr"}, {"name": "MasterPassGroupId"})["attributeValue"] == ""


async def test_live_value_in_results(dm: DeviceModel) -> None:
    dm.bind_live("EVSE[1].AvailabilityState", lambda: "Occupied")
    dm.bind_live("ClockCtrlr.DateTime", lambda: "2024-05-06T10:00:00.000Z")
    assert get(dm, {"name": "EVSE", "evse": {"id": 1}}, {"name": "AvailabilityState"})["attributeValue"] == "Occupied"
    assert get(dm, {"name": "ClockCtrlr"}, {"name": "DateTime"})["attributeValue"] == "2024-05-06T10:00:00.000Z"


async def test_reporting_value_size_cuts_values(tmp_path: Path) -> None:
    dm = await open_model(new_db(tmp_path / "dm.db"), {"DeviceDataCtrlr.ReportingValueSize": 8})
    result = get(dm, {"name": "TxCtrlr"}, {"name": "TxStartPoint"})
    assert result["attributeValue"] == "EVConnec"


# --- SetVariables --------------------------------------------------------------------------------------


async def test_tc_b_09_single_value_persisted(tmp_path: Path) -> None:
    conn = new_db(tmp_path / "dm.db")
    dm = await open_model(conn)
    result = await set_(dm, COMM, {"name": "OfflineThreshold"}, "300", "Actual")
    assert result == {
        "attributeStatus": "Accepted",
        "attributeType": "Actual",
        "component": COMM,
        "variable": {"name": "OfflineThreshold"},
    }
    assert dm.get("OCPPCommCtrlr.OfflineThreshold") == 300
    row = conn.execute("SELECT value, set_by FROM device_variable WHERE variable = 'OfflineThreshold'").fetchone()
    assert row == ("300", "csms")


async def test_tc_b_10_multiple_values_with_a_larger_limit(tmp_path: Path) -> None:
    dm = await open_model(new_db(tmp_path / "dm.db"), {"DeviceDataCtrlr.ItemsPerMessage[SetVariables]": 2})
    response = await dm.handle_set_variables(
        {
            "setVariableData": [
                {
                    "component": COMM,
                    "variable": {"name": "OfflineThreshold"},
                    "attributeValue": "300",
                    "attributeType": "Actual",
                },
                {
                    "component": {"name": "AuthCtrlr"},
                    "variable": {"name": "LocalAuthorizeOffline"},
                    "attributeValue": "false",
                },
            ]
        }
    )
    assert_valid("SetVariablesResponse", response)
    assert [r["attributeStatus"] for r in response["setVariableResult"]] == ["Accepted", "Accepted"]
    assert dm.get("OCPPCommCtrlr.OfflineThreshold") == 300
    assert dm.get("AuthCtrlr.LocalAuthorizeOffline") is False


async def test_tc_b_35_36_37_unknowns(dm: DeviceModel) -> None:
    assert (await set_(dm, {"name": "UnknownComponent"}, {"name": "OfflineThreshold"}, "1"))[
        "attributeStatus"
    ] == "UnknownComponent"
    assert (await set_(dm, COMM, {"name": "UnknownVariable"}, "1"))["attributeStatus"] == "UnknownVariable"
    result = await set_(dm, COMM, {"name": "OfflineThreshold"}, "1", "Target")
    assert (result["attributeStatus"], result["attributeType"]) == ("NotSupportedAttributeType", "Target")
    assert dm.get("OCPPCommCtrlr.OfflineThreshold") == 60


async def test_tc_b_39_read_only(dm: DeviceModel) -> None:
    result = await set_(dm, COMM, {"name": "MessageTimeout", "instance": "Default"}, "10")
    assert result["attributeStatus"] == "Rejected"
    assert result["attributeStatusInfo"]["reasonCode"] == "ReadOnly"
    assert result["variable"] == {"name": "MessageTimeout", "instance": "Default"}
    assert dm.get("OCPPCommCtrlr.MessageTimeout[Default]") == 30


@pytest.mark.parametrize(
    ("component", "variable", "accepted"),
    [
        ("OCPPCommCtrlr", "OfflineThreshold", {"60"}),
        ("AuthCtrlr", "AuthorizeRemoteStart", {"true"}),
        ("ClockCtrlr", "NextTimeOffsetTransitionDateTime", {"2024-05-06T10:00:00Z"}),
    ],
)
async def test_tc_b_11_invalidly_formatted_values(
    dm: DeviceModel, component: str, variable: str, accepted: set[str]
) -> None:
    for value in ("60", "60.1", "true", "2024-05-06T10:00:00Z", "abc"):
        result = await set_(dm, {"name": component}, {"name": variable}, value)
        if value in accepted:
            assert result["attributeStatus"] == "Accepted", value
        else:
            assert result["attributeStatus"] == "Rejected", value
            assert result["attributeStatusInfo"]["reasonCode"] == "InvalidValue"
            assert result["attributeStatusInfo"]["additionalInfo"]


async def test_tc_b_11_smart_charging_value_of_the_wrong_type(dm: DeviceModel) -> None:
    """LimitChangeSignificance is a decimal (smart charging block): "abc" is refused and changes nothing."""
    result = await set_(dm, {"name": "SmartChargingCtrlr"}, {"name": "LimitChangeSignificance"}, "abc")
    assert result["attributeStatus"] == "Rejected"
    assert dm.get("SmartChargingCtrlr.LimitChangeSignificance") == 10.0


async def test_range_and_length_refusals(dm: DeviceModel) -> None:
    result = await set_(dm, {"name": "OCPPCommCtrlr"}, {"name": "MessageAttempts", "instance": "TransactionEvent"}, "0")
    assert (result["attributeStatus"], result["attributeStatusInfo"]["reasonCode"]) == ("Rejected", "ValueOutOfRange")
    short = await set_(dm, {"name": "SecurityCtrlr"}, {"name": "BasicAuthPassword"}, "too-short")
    assert (short["attributeStatus"], short["attributeStatusInfo"]["reasonCode"]) == ("Rejected", "ValueOutOfRange")
    assert "too-short" not in repr(short)
    assert dm.get("SecurityCtrlr.BasicAuthPassword") is None


async def test_member_list_values(dm: DeviceModel) -> None:
    tx = {"name": "TxCtrlr"}
    assert (await set_(dm, tx, {"name": "TxStartPoint"}, "PowerPathClosed"))["attributeStatus"] == "Accepted"
    assert dm.get("TxCtrlr.TxStartPoint") == ["PowerPathClosed"]
    for bad in ("ParkingBayOccupancy", "DataSigned", "", "EVConnected,EVConnected"):
        result = await set_(dm, tx, {"name": "TxStartPoint"}, bad)
        assert result["attributeStatus"] == "Rejected", bad
    sampled = {"name": "SampledDataCtrlr"}
    assert (await set_(dm, sampled, {"name": "TxEndedMeasurands"}, ""))["attributeStatus"] == "Accepted"
    assert dm.get("SampledDataCtrlr.TxEndedMeasurands") == []
    assert (await set_(dm, {"name": "ClockCtrlr"}, {"name": "TimeSource"}, "NTP,Heartbeat"))[
        "attributeStatus"
    ] == "Accepted"
    assert dm.get("ClockCtrlr.TimeSource") == ["NTP", "Heartbeat"]


async def test_boolean_set_is_stored_lowercase(dm: DeviceModel) -> None:
    result = await set_(dm, {"name": "AuthCtrlr"}, {"name": "LocalPreAuthorize"}, "FALSE")
    assert result["attributeStatus"] == "Accepted"
    assert get(dm, {"name": "AuthCtrlr"}, {"name": "LocalPreAuthorize"})["attributeValue"] == "false"


async def test_reboot_required_flag(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    from appliance.devicemodel import catalog

    rows = tuple(
        catalog.Spec(**{**spec.__dict__, "reboot": True}) if spec.variable == "OfflineThreshold" else spec
        for spec in catalog.STATION
    )
    monkeypatch.setattr(catalog, "STATION", rows)
    conn = new_db(tmp_path / "dm.db")
    dm = await open_model(conn)
    assert (await set_(dm, COMM, {"name": "OfflineThreshold"}, "120"))["attributeStatus"] == "RebootRequired"
    assert (await open_model(conn)).get("OCPPCommCtrlr.OfflineThreshold") == 120  # persisted before answering


async def test_validator_hook(dm: DeviceModel) -> None:
    dm.add_validator(
        "OCPPCommCtrlr.NetworkConfigurationPriority",
        lambda value: None if value == "1" else "only slot 1 is configured",
    )
    result = await set_(dm, COMM, {"name": "NetworkConfigurationPriority"}, "2,1")
    assert result["attributeStatus"] == "Rejected"
    assert result["attributeStatusInfo"] == {
        "reasonCode": "InvalidValue",
        "additionalInfo": "only slot 1 is configured",
    }
    assert (await set_(dm, COMM, {"name": "NetworkConfigurationPriority"}, "1"))["attributeStatus"] == "Accepted"


async def test_configuration_value_size(tmp_path: Path) -> None:
    dm = await open_model(new_db(tmp_path / "dm.db"), {"DeviceDataCtrlr.ConfigurationValueSize": 10})
    result = await set_(dm, {"name": "AuthCtrlr"}, {"name": "MasterPassGroupId"}, "x" * 11)
    assert result["attributeStatusInfo"]["reasonCode"] == "TooLargeElement"
    assert (await set_(dm, {"name": "AuthCtrlr"}, {"name": "MasterPassGroupId"}, "x" * 10))[
        "attributeStatus"
    ] == "Accepted"


async def test_mixed_request_applies_only_the_accepted_items(tmp_path: Path) -> None:
    conn = new_db(tmp_path / "dm.db")
    dm = await open_model(
        conn,
        {"DeviceDataCtrlr.ItemsPerMessage[SetVariables]": 3, "DeviceDataCtrlr.BytesPerMessage[SetVariables]": 5000},
    )
    response = await dm.handle_set_variables(
        {
            "setVariableData": [
                {"component": COMM, "variable": {"name": "HeartbeatInterval"}, "attributeValue": "90"},
                {"component": COMM, "variable": {"name": "OfflineThreshold"}, "attributeValue": "abc"},
                {
                    "component": COMM,
                    "variable": {"name": "MessageTimeout", "instance": "Default"},
                    "attributeValue": "5",
                },
            ]
        }
    )
    assert_valid("SetVariablesResponse", response)
    assert [r["attributeStatus"] for r in response["setVariableResult"]] == ["Accepted", "Rejected", "Rejected"]
    reopened = await open_model(conn)
    assert reopened.get("OCPPCommCtrlr.HeartbeatInterval") == 90
    assert reopened.get("OCPPCommCtrlr.OfflineThreshold") == 60


# --- whole-request limits ------------------------------------------------------------------------------


def _items(n: int) -> list[dict]:
    return [{"component": COMM, "variable": {"name": "OfflineThreshold"}} for _ in range(n)]


async def test_get_item_limit_with_certified_default(dm: DeviceModel) -> None:
    assert len(dm.handle_get_variables({"getVariableData": _items(10)})["getVariableResult"]) == 10
    with pytest.raises(OcppError) as info:
        dm.handle_get_variables({"getVariableData": _items(11)})
    assert info.value.code is ErrorCode.OccurrenceConstraintViolation


async def test_set_item_limit_with_certified_default(dm: DeviceModel) -> None:
    two = [{"component": COMM, "variable": {"name": "OfflineThreshold"}, "attributeValue": "1"}] * 2
    with pytest.raises(OcppError) as info:
        await dm.handle_set_variables({"setVariableData": two})
    assert info.value.code is ErrorCode.OccurrenceConstraintViolation
    assert dm.get("OCPPCommCtrlr.OfflineThreshold") == 60  # nothing applied


async def test_byte_limit_with_certified_default(dm: DeviceModel) -> None:
    payload = {"getVariableData": [{"component": {"name": "C" * 50}, "variable": {"name": "V" * 50}}] * 9}
    assert payload_size(payload) > 1000
    with pytest.raises(OcppError) as info:
        dm.handle_get_variables(payload)
    assert info.value.code is ErrorCode.FormatViolation
    value = "x" * 990
    with pytest.raises(OcppError) as info:
        await dm.handle_set_variables(
            {
                "setVariableData": [
                    {
                        "component": {"name": "AuthCtrlr"},
                        "variable": {"name": "MasterPassGroupId"},
                        "attributeValue": value,
                    }
                ]
            }
        )
    assert info.value.code is ErrorCode.FormatViolation


async def test_byte_limit_boundary_is_exact(tmp_path: Path) -> None:
    payload = {"getVariableData": [{"component": {"name": "Ünïcödé"}, "variable": {"name": "x"}}]}
    size = payload_size(payload)
    assert size == len('{"getVariableData":[{"component":{"name":"Ünïcödé"},"variable":{"name":"x"}}]}'.encode())
    at_limit = await open_model(new_db(tmp_path / "a.db"), {"DeviceDataCtrlr.BytesPerMessage[GetVariables]": size})
    assert at_limit.handle_get_variables(payload)["getVariableResult"][0]["attributeStatus"] == "UnknownComponent"
    below = await open_model(new_db(tmp_path / "b.db"), {"DeviceDataCtrlr.BytesPerMessage[GetVariables]": size - 1})
    with pytest.raises(OcppError):
        below.handle_get_variables(payload)


async def test_larger_limits_from_factory(tmp_path: Path) -> None:
    dm = await open_model(
        new_db(tmp_path / "dm.db"),
        {"DeviceDataCtrlr.ItemsPerMessage[GetVariables]": 50, "DeviceDataCtrlr.BytesPerMessage[GetVariables]": 10000},
    )
    response = dm.handle_get_variables({"getVariableData": _items(50)})
    assert_valid("GetVariablesResponse", response)
    assert len(response["getVariableResult"]) == 50


# --- property: any schema-valid request gets a schema-valid answer --------------------------------------

_names = st.sampled_from(
    ["OCPPCommCtrlr", "ocppcommctrlr", "EVSE", "Connector", "SecurityCtrlr", "TxCtrlr", "ClockCtrlr", "Nope"]
)
_variables = st.sampled_from(
    [
        "OfflineThreshold",
        "HeartbeatInterval",
        "BasicAuthPassword",
        "Power",
        "AvailabilityState",
        "TxStartPoint",
        "DateTime",
        "MessageTimeout",
        "Nope",
    ]
)
_evse = st.none() | st.fixed_dictionaries({"id": st.integers(0, 3)}, optional={"connectorId": st.integers(0, 2)})
_attr = st.none() | st.sampled_from(["Actual", "Target", "MinSet", "MaxSet"])
_values = st.sampled_from(
    ["0", "1", "60", "-5", "true", "abc", "", "EVConnected", "2024-05-06T10:00:00Z", "a-long-enough-password"]
)


# No per-example deadline: every example creates and migrates a database of its own (a durable fsync per
# migration), which on a loaded 2-core CI machine takes longer than Hypothesis' default 200 ms.
@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(_names, _evse, _variables, st.none() | st.just("Default"), _attr, _values)
async def test_any_item_gets_a_valid_answer(
    tmp_path: Path, name: str, evse: dict | None, variable: str, instance: str | None, attribute: str | None, value: str
) -> None:
    conn = new_db(tmp_path / f"dm-{uuid.uuid4().hex}.db")  # a model of its own for every example
    dm = await open_model(conn)
    component: dict = {"name": name}
    if evse is not None:
        component["evse"] = evse
    var: dict = {"name": variable}
    if instance is not None:
        var["instance"] = instance
    got = get(dm, component, var, attribute)
    written = await set_(dm, component, var, value, attribute)
    assert got["component"] == component and written["variable"] == var
    if got["attributeStatus"] == "Accepted":
        assert "attributeValue" in got
    if written["attributeStatus"] == "Accepted":
        assert get(dm, component, var, attribute)["attributeStatus"] in ("Accepted", "Rejected")
    close_storage(conn)
