"""The CONTRACT's path syntax for `[variables]` keys and station code."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from appliance.devicemodel.paths import PathError, format_path, parse_path
from appliance.devicemodel.types import AttributeType, ComponentKey, VariableKey


def test_contract_examples() -> None:
    p = parse_path("OCPPCommCtrlr.HeartbeatInterval")
    assert (p.component, p.component_instance, p.evse, p.connector) == ("OCPPCommCtrlr", None, None, None)
    assert (p.variable, p.variable_instance, p.attribute) == ("HeartbeatInterval", None, AttributeType.Actual)

    p = parse_path("OCPPCommCtrlr.MessageAttempts[TransactionEvent]")
    assert (p.variable, p.variable_instance) == ("MessageAttempts", "TransactionEvent")

    p = parse_path("DeviceDataCtrlr.ItemsPerMessage[GetVariables]")
    assert p.variable_instance == "GetVariables"

    p = parse_path("EVSE[2].Power.MaxSet")
    assert (p.component, p.evse, p.connector, p.variable, p.attribute) == (
        "EVSE",
        2,
        None,
        "Power",
        AttributeType.MaxSet,
    )


def test_every_part() -> None:
    p = parse_path("Connector(Left)[1,2].Thing[Inst.1].target")
    assert p.component == "Connector" and p.component_instance == "Left"
    assert (p.evse, p.connector) == (1, 2)
    assert (p.variable, p.variable_instance) == ("Thing", "Inst.1")
    assert p.attribute is AttributeType.Target


@pytest.mark.parametrize(
    "text",
    [
        "",
        "OCPPCommCtrlr",
        "OCPPCommCtrlr.",
        ".HeartbeatInterval",
        "OCPPCommCtrlr.HeartbeatInterval.Bogus",
        "EVSE[x].Power",
        "EVSE[1,].Power",
        "A.B.C.D",
        "OCPPCommCtrlr.Heartbeat Interval",
        "A().B",
        "A.B[]",
    ],
)
def test_bad_syntax(text: str) -> None:
    with pytest.raises(PathError):
        parse_path(text)


def test_format_leaves_actual_implicit() -> None:
    key = VariableKey(ComponentKey("EVSE", evse=2), "Power")
    assert format_path(key) == "EVSE[2].Power"
    assert format_path(key, AttributeType.MaxSet) == "EVSE[2].Power.MaxSet"
    connector = VariableKey(ComponentKey("Connector", evse=1, connector=1), "ConnectorType")
    assert format_path(connector) == "Connector[1,1].ConnectorType"
    assert format_path(VariableKey(ComponentKey("C", "i"), "V", "j")) == "C(i).V[j]"


_names = st.from_regex(r"[A-Za-z][A-Za-z0-9_]{0,12}", fullmatch=True)
_instances = st.none() | st.from_regex(r"[A-Za-z0-9_.]{1,10}", fullmatch=True)


@given(
    _names,
    _instances,
    st.none() | st.integers(1, 99),
    st.none() | st.integers(1, 9),
    _names,
    _instances,
    st.sampled_from(AttributeType),
)
def test_format_parse_round_trip(
    component: str,
    cinst: str | None,
    evse: int | None,
    connector: int | None,
    variable: str,
    vinst: str | None,
    attribute: AttributeType,
) -> None:
    if evse is None:
        connector = None
    key = VariableKey(ComponentKey(component, cinst, evse, connector), variable, vinst)
    p = parse_path(format_path(key, attribute))
    assert (p.component, p.component_instance, p.evse, p.connector) == (component, cinst, evse, connector)
    assert (p.variable, p.variable_instance, p.attribute) == (variable, vinst, attribute)
