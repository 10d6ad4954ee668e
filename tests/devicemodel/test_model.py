"""The DeviceModel facade: factory values, persistence across reopen, set_internal, live values, listeners,
atomic writes and report entries — all on real SQLite files."""

from __future__ import annotations

import sqlite3
from pathlib import Path

import pytest

from appliance.devicemodel import DeviceModel, FactoryValueError, ValueRefused
from appliance.hardware.base import EvseLayout
from tests.devicemodel.test_support import assert_valid, get, new_db, open_db, open_model, set_

COMM = {"name": "OCPPCommCtrlr"}


@pytest.fixture
def db(tmp_path: Path) -> sqlite3.Connection:
    return new_db(tmp_path / "dm.db")


# --- factory values ------------------------------------------------------------------------------------


async def test_factory_values_of_every_toml_type(db: sqlite3.Connection) -> None:
    dm = await open_model(
        db,
        {
            "OCPPCommCtrlr.HeartbeatInterval": 120,
            "TxCtrlr.TxStartPoint": ["Authorized"],
            "TxCtrlr.TxStopPoint": "EVConnected",
            "AuthCtrlr.LocalPreAuthorize": False,
            "SecurityCtrlr.OrganizationName": "Example CPO",
            "EVSE[2].Power.MaxSet": 5000.5,
            "EVSE[1].Power.MaxSet": 11000,
            "DeviceDataCtrlr.ItemsPerMessage[SetVariables]": 4,
            "SecurityCtrlr.BasicAuthPassword": "factory-password-0001",
        },
    )
    assert dm.get("OCPPCommCtrlr.HeartbeatInterval") == 120
    assert dm.get("TxCtrlr.TxStartPoint") == ["Authorized"]
    assert dm.get("TxCtrlr.TxStopPoint") == ["EVConnected"]
    assert dm.get("AuthCtrlr.LocalPreAuthorize") is False
    assert dm.get("SecurityCtrlr.OrganizationName") == "Example CPO"
    assert dm.get("EVSE[2].Power.MaxSet") == 5000.5
    assert dm.get("EVSE[1].Power.MaxSet") == 11000.0
    assert dm.get("DeviceDataCtrlr.ItemsPerMessage[SetVariables]") == 4
    assert dm.get("SecurityCtrlr.BasicAuthPassword") == "factory-password-0001"
    rows = dict(db.execute("SELECT variable, set_by FROM device_variable WHERE attribute = 'Actual'").fetchall())
    assert rows["HeartbeatInterval"] == "factory" and rows["OfflineThreshold"] == "default"


async def test_factory_list_and_string_forms_are_the_same(tmp_path: Path) -> None:
    a = await open_model(new_db(tmp_path / "a.db"), {"TxCtrlr.TxStartPoint": ["EVConnected", "Authorized"]})
    b = await open_model(new_db(tmp_path / "b.db"), {"TxCtrlr.TxStartPoint": "EVConnected,Authorized"})
    assert a.get("TxCtrlr.TxStartPoint") == b.get("TxCtrlr.TxStartPoint") == ["EVConnected", "Authorized"]


@pytest.mark.parametrize(
    ("key", "value", "fragment"),
    [
        ("NoSuchCtrlr.HeartbeatInterval", 1, "no component"),
        ("OCPPCommCtrlr.NoSuchVariable", 1, "no variable"),
        ("OCPPCommCtrlr.HeartbeatInterval.Target", 1, "no Target attribute"),
        ("OCPPCommCtrlr.HeartbeatInterval.Bogus", 1, "not an attribute"),
        ("OCPPCommCtrlr", 1, "is not Component"),
        ("EVSE[3].Power.MaxSet", 1000, "no component"),
        ("OCPPCommCtrlr.HeartbeatInterval", "soon", "not an integer"),
        ("OCPPCommCtrlr.HeartbeatInterval", 60.0, "not an integer"),
        ("OCPPCommCtrlr.HeartbeatInterval", True, "not an integer"),
        ("OCPPCommCtrlr.HeartbeatInterval", -1, "minLimit"),
        ("TxCtrlr.TxStartPoint", ["EVConnected", "Nope"], "not one of"),
        ("TxCtrlr.TxStartPoint", [], "at least one"),
        ("AuthCtrlr.Enabled", "yes", "not a boolean"),
        ("SecurityCtrlr.BasicAuthPassword", "short", "minLimit"),
        ("EVSE[2].Power.MaxSet", 7361, "maxLimit"),
        ("OCPPCommCtrlr.HeartbeatInterval", ["60"], "only allowed for MemberList"),
    ],
)
async def test_bad_factory_key_names_the_key(db: sqlite3.Connection, key: str, value: object, fragment: str) -> None:
    with pytest.raises(FactoryValueError) as info:
        await open_model(db, {"OCPPCommCtrlr.OfflineThreshold": 30, key: value})
    assert info.value.key == key
    assert fragment in info.value.message
    assert db.execute("SELECT count(*) FROM device_variable").fetchone()[0] == 0  # nothing written


async def test_two_keys_for_one_variable_refused(db: sqlite3.Connection) -> None:
    with pytest.raises(FactoryValueError) as info:
        await open_model(db, {"OCPPCommCtrlr.HeartbeatInterval": 1, "ocppcommctrlr.heartbeatinterval.actual": 2})
    assert info.value.key == "ocppcommctrlr.heartbeatinterval.actual"


async def test_factory_validated_on_every_open_applied_only_on_first(db: sqlite3.Connection) -> None:
    await open_model(db, {"OCPPCommCtrlr.HeartbeatInterval": 120})
    dm = await open_model(db, {"OCPPCommCtrlr.HeartbeatInterval": 300})
    assert dm.get("OCPPCommCtrlr.HeartbeatInterval") == 120  # first boot only
    with pytest.raises(FactoryValueError):
        await open_model(db, {"OCPPCommCtrlr.HeartbeatInterval": "bad"})


async def test_csms_value_survives_reopen_and_factory(tmp_path: Path) -> None:
    path = tmp_path / "dm.db"
    conn = new_db(path)
    dm = await open_model(conn, {"OCPPCommCtrlr.OfflineThreshold": 100})
    assert (await set_(dm, COMM, {"name": "OfflineThreshold"}, "300"))["attributeStatus"] == "Accepted"
    conn.close()
    reopened = await open_model(open_db(path), {"OCPPCommCtrlr.OfflineThreshold": 100})
    assert reopened.get("OCPPCommCtrlr.OfflineThreshold") == 300
    assert get(reopened, COMM, {"name": "OfflineThreshold"})["attributeValue"] == "300"


async def test_variable_new_in_later_firmware_gets_factory_or_default(db: sqlite3.Connection) -> None:
    await open_model(db, {"OCPPCommCtrlr.OfflineThreshold": 100})
    await set_(await open_model(db), COMM, {"name": "HeartbeatInterval"}, "77")
    # The rows an older firmware would not have had:
    db.execute("DELETE FROM device_variable WHERE variable IN ('WebSocketPingInterval', 'ResetRetries')")
    dm = await open_model(db, {"OCPPCommCtrlr.WebSocketPingInterval": 10, "OCPPCommCtrlr.HeartbeatInterval": 5})
    assert dm.get("OCPPCommCtrlr.WebSocketPingInterval") == 10  # new row: factory value
    assert dm.get("OCPPCommCtrlr.ResetRetries") == 2  # new row: default
    assert dm.get("OCPPCommCtrlr.HeartbeatInterval") == 77  # existing row: persisted wins


async def test_a_persisted_value_the_catalog_now_refuses_is_reset(db: sqlite3.Connection) -> None:
    await open_model(db)
    db.execute(
        "UPDATE device_variable SET value = 'ParkingBayOccupancy', set_by = 'csms' WHERE variable = 'TxStartPoint'"
    )
    db.execute("UPDATE device_variable SET value = 'soon' WHERE variable = 'OfflineThreshold'")
    dm = await open_model(db, {"TxCtrlr.TxStartPoint": "Authorized"})
    assert dm.get("TxCtrlr.TxStartPoint") == ["Authorized"]  # factory value
    assert dm.get("OCPPCommCtrlr.OfflineThreshold") == 60  # default
    assert (await open_model(db)).get("OCPPCommCtrlr.OfflineThreshold") == 60


async def test_rows_of_unknown_variables_are_kept(db: sqlite3.Connection) -> None:
    await open_model(db)
    db.execute(
        "INSERT INTO device_variable (component, variable, attribute, value, set_by, set_at) "
        "VALUES ('OldCtrlr', 'Gone', 'Actual', 'x', 'csms', 'then')"
    )
    dm = await open_model(db)
    with pytest.raises(KeyError):
        dm.get("OldCtrlr.Gone")
    assert db.execute("SELECT count(*) FROM device_variable WHERE component = 'OldCtrlr'").fetchone()[0] == 1


async def test_layout_changes_reach_the_model(db: sqlite3.Connection) -> None:
    dm = await open_model(db, layouts=[EvseLayout(1, phases=1, max_current_a=16)])
    assert dm.get("EVSE[1].Power.MaxSet") == 3680.0
    with pytest.raises(KeyError):
        dm.get("EVSE[2].Power")


# --- reading, set_internal, live values -----------------------------------------------------------------


async def test_get_typed_values_and_unknown_paths(db: sqlite3.Connection) -> None:
    dm = await open_model(db)
    assert dm.get("OCPPCommCtrlr.MessageAttempts[TransactionEvent]") == 3
    assert dm.get("ocppcommctrlr.messageattempts[transactionevent]") == 3
    assert dm.get("TxCtrlr.StopTxOnInvalidId") is True
    assert dm.get("OCPPCommCtrlr.FileTransferProtocols") == ["HTTP", "HTTPS", "FTP"]
    assert dm.get("EVSE[1].Power") == 0.0
    assert dm.get("SecurityCtrlr.BasicAuthPassword") is None
    assert isinstance(dm.get("ClockCtrlr.DateTime"), str)  # the host clock until the station binds its own
    for path in ("Nope.X", "OCPPCommCtrlr.Nope", "OCPPCommCtrlr.HeartbeatInterval.MaxSet", "not a path"):
        with pytest.raises(KeyError):
            dm.get(path)


async def test_set_internal_bypasses_mutability_and_persists(db: sqlite3.Connection) -> None:
    dm = await open_model(db)
    await dm.set_internal("LocalAuthListCtrlr.Entries", 7)
    await dm.set_internal("SecurityCtrlr.SecurityProfile", 2)
    assert (await open_model(db)).get("LocalAuthListCtrlr.Entries") == 7
    row = db.execute(
        "SELECT value, set_by FROM device_variable WHERE component = 'SecurityCtrlr' AND variable = 'SecurityProfile'"
    ).fetchone()
    assert row == ("2", "station")
    with pytest.raises(ValueRefused):
        await dm.set_internal("LocalAuthListCtrlr.Entries", 11)  # maxLimit 10
    with pytest.raises(KeyError):
        await dm.set_internal("LocalAuthListCtrlr.Nope", 1)
    assert dm.get("LocalAuthListCtrlr.Entries") == 7


async def test_set_internal_inside_a_callers_transaction(db: sqlite3.Connection) -> None:
    dm = await open_model(db)
    db.execute("BEGIN IMMEDIATE")
    await dm.set_internal("SecurityCtrlr.CertificateEntries", 2)
    db.execute("COMMIT")
    assert (await open_model(db)).get("SecurityCtrlr.CertificateEntries") == 2


async def test_live_provider(db: sqlite3.Connection) -> None:
    dm = await open_model(db)
    state = {"value": "Available"}
    dm.bind_live("Connector[2,1].AvailabilityState", lambda: state["value"])
    state["value"] = "Faulted"
    assert dm.get("Connector[2,1].AvailabilityState") == "Faulted"
    dm.bind_live("EVSE[1].Power", lambda: 7123.4)
    assert dm.get("EVSE[1].Power") == 7123.4
    dm.bind_live("EVSE[2].Power", lambda: 7500)  # 240 V x 32 A: above the nominal maxLimit, still reported
    assert dm.get("EVSE[2].Power") == 7500.0
    dm.bind_live("EVSE[2].AvailabilityState", lambda: "Charging")  # not an AvailabilityState: stored value
    assert dm.get("EVSE[2].AvailabilityState") == "Available"

    def broken() -> object:
        raise RuntimeError("sensor gone")

    dm.bind_live("ChargingStation.AvailabilityState", broken)
    assert dm.get("ChargingStation.AvailabilityState") == "Available"  # the stored value
    with pytest.raises(KeyError):
        dm.bind_live("Nope.Nope", lambda: 1)


# --- listeners -----------------------------------------------------------------------------------------


async def test_listeners_hear_csms_and_station_changes(db: sqlite3.Connection) -> None:
    dm = await open_model(db)
    heard: list[tuple[str, object]] = []
    dm.add_listener(lambda path, value: heard.append((path, value)))
    await set_(dm, {"name": "ocppcommctrlr"}, {"name": "heartbeatinterval"}, "90")
    await dm.set_internal("OCPPCommCtrlr.HeartbeatInterval", 45)
    await dm.set_internal("OCPPCommCtrlr.HeartbeatInterval", 45)  # unchanged: no second call
    await set_(dm, {"name": "TxCtrlr"}, {"name": "TxStartPoint"}, "Authorized")
    await set_(dm, COMM, {"name": "OfflineThreshold"}, "abc")  # refused: nothing to hear
    assert heard == [
        ("OCPPCommCtrlr.HeartbeatInterval", 90),
        ("OCPPCommCtrlr.HeartbeatInterval", 45),
        ("TxCtrlr.TxStartPoint", ["Authorized"]),
    ]


async def test_a_failing_listener_does_not_break_the_answer(db: sqlite3.Connection) -> None:
    dm = await open_model(db)
    heard: list[str] = []

    def bad(path: str, value: object) -> None:
        raise RuntimeError("listener bug")

    dm.add_listener(bad)
    dm.add_listener(lambda path, value: heard.append(path))
    assert (await set_(dm, COMM, {"name": "WebSocketPingInterval"}, "10"))["attributeStatus"] == "Accepted"
    assert heard == ["OCPPCommCtrlr.WebSocketPingInterval"]


# --- atomicity ----------------------------------------------------------------------------------------


async def test_a_failed_write_applies_nothing(db: sqlite3.Connection) -> None:
    dm = await open_model(db, {"DeviceDataCtrlr.ItemsPerMessage[SetVariables]": 2})
    heard: list[str] = []
    dm.add_listener(lambda path, value: heard.append(path))
    # A write failing half-way (as a full disk or power cut would): the second row's insert aborts.
    db.execute(
        "CREATE TEMP TRIGGER fail BEFORE INSERT ON device_variable WHEN NEW.variable = 'OfflineThreshold' "
        "BEGIN SELECT RAISE(ABORT, 'disk full'); END"
    )
    with pytest.raises(sqlite3.DatabaseError):
        await dm.handle_set_variables(
            {
                "setVariableData": [
                    {"component": COMM, "variable": {"name": "HeartbeatInterval"}, "attributeValue": "90"},
                    {"component": COMM, "variable": {"name": "OfflineThreshold"}, "attributeValue": "90"},
                ]
            }
        )
    assert not db.in_transaction
    assert dm.get("OCPPCommCtrlr.HeartbeatInterval") == 60 and heard == []
    db.execute("DROP TRIGGER fail")
    assert (await open_model(db)).get("OCPPCommCtrlr.HeartbeatInterval") == 60


# --- report entries ------------------------------------------------------------------------------------


async def test_entries_make_a_valid_notify_report(db: sqlite3.Connection) -> None:
    dm = await open_model(db, {"SecurityCtrlr.BasicAuthPassword": "factory-password-0001"})
    entries = list(dm.entries())
    report = [entry.report_data() for entry in entries]
    assert_valid(
        "NotifyReportRequest",
        {"requestId": 1, "generatedAt": "2024-05-06T10:00:00Z", "seqNo": 0, "tbc": False, "reportData": report},
    )
    password = next(r for r in report if r["variable"]["name"] == "BasicAuthPassword")
    assert password["variableAttribute"] == [
        {"type": "Actual", "mutability": "WriteOnly", "persistent": True, "constant": False}
    ]
    assert "factory-password-0001" not in repr(report)
    power = next(r for r in report if r["variable"]["name"] == "Power" and r["component"]["evse"]["id"] == 1)
    assert [a["type"] for a in power["variableAttribute"]] == ["Actual", "MaxSet"]
    assert power["variableCharacteristics"]["maxLimit"] == 22080
    for data in report:  # TC_B_53: list types have a valuesList and a value within it
        chars = data["variableCharacteristics"]
        if chars["dataType"] in ("OptionList", "SequenceList", "MemberList"):
            allowed = chars["valuesList"].split(",")
            value = data["variableAttribute"][0]["value"]
            assert all(member in allowed for member in (value.split(",") if value else [])), data


async def test_entry_matching_and_configuration_inventory(db: sqlite3.Connection) -> None:
    entries = list((await open_model(db)).entries())

    def selected(component: dict, variable: dict | None = None) -> list[str]:
        return sorted(
            {
                f"{e.component.name}/{e.component.evse}/{e.variable.name}"
                for e in entries
                if e.matches(component, variable)
            }
        )

    assert selected({"name": "evse"}, {"name": "power"}) == ["EVSE/1/Power", "EVSE/2/Power"]
    assert selected({"name": "EVSE", "evse": {"id": 2}}, {"name": "Power"}) == ["EVSE/2/Power"]
    assert len(selected({"name": "Connector", "evse": {"id": 1, "connectorId": 1}})) == 4
    assert selected({"name": "DeviceDataCtrlr"}, {"name": "ItemsPerMessage", "instance": "getreport"}) == [
        "DeviceDataCtrlr/None/ItemsPerMessage"
    ]
    writable = {e.variable.name for e in entries if e.writable}
    assert "HeartbeatInterval" in writable and "BasicAuthPassword" in writable
    assert "MessageTimeout" not in writable


async def test_entries_follow_live_values_and_value_size(tmp_path: Path) -> None:
    dm = await open_model(new_db(tmp_path / "dm.db"), {"DeviceDataCtrlr.ValueSize": 5})
    dm.bind_live("EVSE[2].AvailabilityState", lambda: "Unavailable")
    entry = next(e for e in dm.entries() if e.component.evse == 2 and e.variable.name == "AvailabilityState")
    assert entry.value() == "Unava"
    assert entry.report_data()["variableAttribute"][0]["value"] == "Unava"


async def test_open_is_a_classmethod_returning_a_device_model(db: sqlite3.Connection) -> None:
    assert isinstance(await open_model(db, layouts=[EvseLayout(1)]), DeviceModel)


async def test_models_of_the_same_layout_share_their_index_but_not_their_values(tmp_path: Path) -> None:
    """Many stations in one process (`appliance fleet`) hold one index of the catalog (~20 KiB each otherwise);
    what each station stores stays its own."""
    a = await open_model(new_db(tmp_path / "a.db"), {"OCPPCommCtrlr.HeartbeatInterval": 120})
    b = await open_model(new_db(tmp_path / "b.db"), {"OCPPCommCtrlr.HeartbeatInterval": 240})
    assert a._components is b._components and a._resolved is b._resolved
    assert a.get("OCPPCommCtrlr.HeartbeatInterval") == 120 and b.get("OCPPCommCtrlr.HeartbeatInterval") == 240
    await a.set_internal("OCPPCommCtrlr.HeartbeatInterval", 60)
    assert a.get("OCPPCommCtrlr.HeartbeatInterval") == 60 and b.get("OCPPCommCtrlr.HeartbeatInterval") == 240
    other = await open_model(new_db(tmp_path / "c.db"), {}, layouts=[EvseLayout(1, phases=1)])
    assert other._components is not a._components
    assert other.get("EVSE[1].SupplyPhases") == 1
    with pytest.raises(KeyError):
        other.get("EVSE[2].SupplyPhases")
