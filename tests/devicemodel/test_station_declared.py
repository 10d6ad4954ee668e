"""What a station maker declares: PhaseRotation (the wiring), the certified `[limits]`, and the optional variables
this station leaves out because their presence would declare features it does not have."""

from __future__ import annotations

import sqlite3
from pathlib import Path

import pytest

from appliance.devicemodel import DEFAULT_LAYOUTS, DeviceModel, FactoryValueError
from tests.devicemodel.test_support import assert_valid, get, new_db, open_model, set_, storage_for

STATION = {"name": "ChargingStation"}
EVSE1 = {"name": "EVSE", "evse": {"id": 1}}  # three-phase
EVSE2 = {"name": "EVSE", "evse": {"id": 2}}  # single-phase
ROTATION = {"name": "PhaseRotation"}
SAMPLED = {"name": "SampledDataCtrlr"}
INTERVAL = {"name": "TxUpdatedInterval"}


@pytest.fixture
def db(tmp_path: Path) -> sqlite3.Connection:
    return new_db(tmp_path / "dm.db")


async def limited(conn: sqlite3.Connection, limits: dict, factory: dict | None = None) -> DeviceModel:
    return await DeviceModel.open(storage_for(conn), list(DEFAULT_LAYOUTS), dict(factory or {}), limits)


# --- the optional variables a station without the feature must not have ------------------------------------


@pytest.mark.parametrize(
    ("component", "variable"), [("AuthCtrlr", "OfflineTxForUnknownIdEnabled"), ("TxCtrlr", "MaxEnergyOnInvalidId")]
)
async def test_unsupported_features_have_no_variable(db: sqlite3.Connection, component: str, variable: str) -> None:
    """ "If this key exists, the Charging Station supports Unknown Offline Authorization": the station supports
    neither it nor MaxEnergyOnInvalidId, so both are unknown — to GetVariables, to SetVariables, to reports, and
    as factory keys."""
    dm = await open_model(db)
    assert get(dm, {"name": component}, {"name": variable})["attributeStatus"] == "UnknownVariable"
    assert (await set_(dm, {"name": component}, {"name": variable}, "true"))["attributeStatus"] == "UnknownVariable"
    assert not [e for e in dm.entries() if e.variable.name == variable]
    with pytest.raises(FactoryValueError, match=variable):
        await open_model(db, {f"{component}.{variable}": 0})


# --- PhaseRotation --------------------------------------------------------------------------------------------


async def test_phase_rotation_defaults_to_not_known_and_reports_its_values(db: sqlite3.Connection) -> None:
    dm = await open_model(db)
    for component in (STATION, EVSE1, EVSE2):
        result = get(dm, component, ROTATION)
        assert (result["attributeStatus"], result["attributeValue"]) == ("Accepted", ""), component
    entries = {
        (e.component.name, e.component.evse): e.report_data()
        for e in dm.entries()
        if e.variable.name == "PhaseRotation"
    }
    assert set(entries) == {("ChargingStation", None), ("EVSE", 1), ("EVSE", 2)}
    three = entries[("EVSE", 1)]
    assert three["variableCharacteristics"]["dataType"] == "OptionList"
    assert three["variableCharacteristics"]["valuesList"] == ",RST,RTS,SRT,STR,TRS,TSR"
    assert entries[("EVSE", 2)]["variableCharacteristics"]["valuesList"] == ",Rxx,Sxx,Txx"
    assert entries[("ChargingStation", None)]["variableCharacteristics"]["valuesList"] == ",RST,RTS,SRT,STR,TRS,TSR"
    [attribute] = three["variableAttribute"]
    assert (attribute["mutability"], attribute["persistent"]) == ("ReadWrite", True)
    assert_valid(
        "NotifyReportRequest",
        {"requestId": 1, "generatedAt": "2024-01-01T00:00:00Z", "seqNo": 0, "reportData": list(entries.values())},
    )


@pytest.mark.parametrize(
    ("component", "value", "status", "stored"),
    [
        (STATION, "TRS", "Accepted", "TRS"),
        (STATION, "rts", "Accepted", "RTS"),  # the valuesList's spelling
        (EVSE1, "STR", "Accepted", "STR"),
        (EVSE2, "Sxx", "Accepted", "Sxx"),
        (EVSE2, "SXX", "Accepted", "Sxx"),
        (EVSE1, "", "Accepted", ""),  # back to "not known"
        (STATION, "RSS", "Rejected", None),  # a feed phase twice
        (STATION, "RS", "Rejected", None),
        (STATION, "RSTx", "Rejected", None),
        (STATION, "ABC", "Rejected", None),
        (EVSE1, "Rxx", "Rejected", None),  # a three-phase EVSE has all three phases wired
        (EVSE2, "RST", "Rejected", None),  # a single-phase EVSE has one
        (EVSE2, "xRx", "Rejected", None),  # … on its L1
    ],
)
async def test_phase_rotation_set_variables(
    tmp_path: Path, component: dict, value: str, status: str, stored: str | None
) -> None:
    db = new_db(tmp_path / "dm.db")
    dm = await open_model(
        db, {"EVSE[1].PhaseRotation": "RST", "EVSE[2].PhaseRotation": "Rxx", "ChargingStation.PhaseRotation": "RST"}
    )
    before = get(dm, component, ROTATION)["attributeValue"]
    result = await set_(dm, component, ROTATION, value)
    assert result["attributeStatus"] == status, result
    expected = stored if status == "Accepted" else before
    if status == "Rejected":
        assert result["attributeStatusInfo"]["reasonCode"] == "InvalidValue", result
    assert get(await open_model(db), component, ROTATION)["attributeValue"] == expected  # persisted (or untouched)


async def test_phase_rotation_factory_value(db: sqlite3.Connection) -> None:
    dm = await open_model(db, {"ChargingStation.PhaseRotation": "TSR", "EVSE[2].PhaseRotation": "Txx"})
    assert dm.get("ChargingStation.PhaseRotation") == "TSR"
    assert dm.get("EVSE[2].PhaseRotation") == "Txx"
    with pytest.raises(FactoryValueError, match=r"EVSE\[1\]\.PhaseRotation"):
        await open_model(db, {"EVSE[1].PhaseRotation": "Rxx"})


# --- [limits] ---------------------------------------------------------------------------------------------------


async def test_limits_are_reported_and_enforced(db: sqlite3.Connection) -> None:
    """A certified minimum TxUpdatedInterval of 10 s and a HeartbeatInterval of 30 s … 86400 s: reported as
    minLimit/maxLimit, SetVariables outside → Rejected ValueOutOfRange (nothing written), inside → Accepted."""
    dm = await limited(
        db,
        {
            "SampledDataCtrlr.TxUpdatedInterval": {"min": 10},
            "OCPPCommCtrlr.HeartbeatInterval": {"min": 30, "max": 86400},
        },
    )
    chars = {
        e.variable.name: e.report_data()["variableCharacteristics"]
        for e in dm.entries()
        if e.variable.name in ("TxUpdatedInterval", "HeartbeatInterval", "OfflineThreshold")
    }
    assert chars["TxUpdatedInterval"]["minLimit"] == 10 and "maxLimit" not in chars["TxUpdatedInterval"]
    assert (chars["HeartbeatInterval"]["minLimit"], chars["HeartbeatInterval"]["maxLimit"]) == (30, 86400)
    assert chars["OfflineThreshold"]["minLimit"] == 0  # unlimited variables keep the firmware's own limits
    for value in ("9", "0", "-1"):
        result = await set_(dm, SAMPLED, INTERVAL, value)
        assert result["attributeStatus"] == "Rejected", result
        assert result["attributeStatusInfo"]["reasonCode"] == "ValueOutOfRange", result
    assert dm.get("SampledDataCtrlr.TxUpdatedInterval") == 60
    assert (await set_(dm, SAMPLED, INTERVAL, "10"))["attributeStatus"] == "Accepted"
    comm = {"name": "OCPPCommCtrlr"}
    assert (await set_(dm, comm, {"name": "HeartbeatInterval"}, "86401"))["attributeStatus"] == "Rejected"
    assert (await set_(dm, comm, {"name": "HeartbeatInterval"}, "86400"))["attributeStatus"] == "Accepted"
    assert dm.clamp("OCPPCommCtrlr.HeartbeatInterval", 5) == 30
    assert dm.clamp("OCPPCommCtrlr.HeartbeatInterval", 100000) == 86400
    assert dm.clamp("OCPPCommCtrlr.HeartbeatInterval", 300) == 300


async def test_without_limits_the_model_is_permissive(db: sqlite3.Connection) -> None:
    dm = await open_model(db)
    assert (await set_(dm, SAMPLED, INTERVAL, "1"))["attributeStatus"] == "Accepted"
    assert dm.clamp("OCPPCommCtrlr.HeartbeatInterval", 1) == 1


async def test_a_persisted_value_outside_new_limits_is_reset(db: sqlite3.Connection) -> None:
    dm = await open_model(db)
    assert (await set_(dm, SAMPLED, INTERVAL, "5"))["attributeStatus"] == "Accepted"
    assert (await limited(db, {"SampledDataCtrlr.TxUpdatedInterval": {"min": 10}})).get(
        "SampledDataCtrlr.TxUpdatedInterval"
    ) == 60


async def test_a_factory_value_must_fit_the_limits(db: sqlite3.Connection) -> None:
    with pytest.raises(FactoryValueError) as error:
        await limited(
            db, {"SampledDataCtrlr.TxUpdatedInterval": {"min": 10}}, {"SampledDataCtrlr.TxUpdatedInterval": 5}
        )
    assert (error.value.section, error.value.key) == ("variables", "SampledDataCtrlr.TxUpdatedInterval")
    dm = await limited(
        db, {"SampledDataCtrlr.TxUpdatedInterval": {"min": 120}}, {"SampledDataCtrlr.TxUpdatedInterval": 300}
    )
    assert dm.get("SampledDataCtrlr.TxUpdatedInterval") == 300


@pytest.mark.parametrize(
    ("key", "bounds", "fragment"),
    [
        ("SampledDataCtrlr.Nope", {"min": 1}, "no variable"),
        ("Nope.TxUpdatedInterval", {"min": 1}, "no component"),
        ("SampledDataCtrlr.Enabled", {"min": 1}, "only integer and decimal"),
        ("SampledDataCtrlr.TxUpdatedInterval", {"min": -5}, "below the firmware's minLimit 0"),
        ("SecurityCtrlr.SecurityProfile", {"max": 4}, "above the firmware's maxLimit 3"),
        ("SampledDataCtrlr.TxUpdatedInterval", {"min": 1.5}, "whole number"),
        ("SampledDataCtrlr.TxUpdatedInterval", {"min": 90}, "the default 60 is outside"),
        ("OCPPCommCtrlr.HeartbeatInterval", {"max": 30}, "the default 60 is outside"),
        ("EVSE[1].Power.MaxSet", {"max": 1000}, "without an attribute"),
    ],
)
async def test_bad_limits_name_the_key(db: sqlite3.Connection, key: str, bounds: dict, fragment: str) -> None:
    with pytest.raises(FactoryValueError) as error:
        await limited(db, {key: bounds})
    assert (error.value.section, error.value.key) == ("limits", key)
    assert fragment in error.value.message, error.value.message
