"""What the CSMS sets survives a restart: a real `appliance run` process, stopped with SIGTERM and started again on
the same data directory and config (CONTRACT: "[variables] are applied at first boot only; after the first boot
the persisted device model wins; [variables] never overwrites a value the CSMS has set").

These tests are synchronous: the station runs in another process, so the CSMS's blocking methods are fine here.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from appliance.lab.csms import ConnectionRecord, LoopbackCsms
from appliance.lab.process import PASSWORD, config_text, station_process
from tests.conformance.helpers import CONNECTORS, STATION_ID, get_item, set_item

START_TIMEOUT = 20


def write_config(data_dir: Path, csms: LoopbackCsms, **kwargs: Any) -> Path:
    path = data_dir / "station.toml"
    path.write_text(config_text(data_dir, csms.url, **kwargs))
    return path


def wait_booted(csms: LoopbackCsms, since: int) -> ConnectionRecord:
    """Wait for a BootNotification after frame `since` and every connector's StatusNotification after it."""
    csms.wait_action(STATION_ID, "BootNotification", START_TIMEOUT, since=since)
    for evse, connector in CONNECTORS:
        csms.wait_action(
            STATION_ID,
            "StatusNotification",
            10,
            since=since,
            predicate=lambda p, e=evse, c=connector: (p["evseId"], p["connectorId"]) == (e, c),
        )
    return csms.wait_connected(STATION_ID)


def get_value(csms: LoopbackCsms, component: str, name: str) -> str | None:
    [result] = csms.call(STATION_ID, "GetVariables", {"getVariableData": [get_item(component, name)]})[
        "getVariableResult"
    ]
    assert result["attributeStatus"] == "Accepted", result
    return result.get("attributeValue")


def set_value(csms: LoopbackCsms, component: str, name: str, value: str) -> str:
    [result] = csms.call(STATION_ID, "SetVariables", {"setVariableData": [set_item(component, name, value)]})[
        "setVariableResult"
    ]
    return result["attributeStatus"]


def test_set_variables_value_persists_across_restart(csms: LoopbackCsms, data_dir: Path) -> None:
    """OfflineThreshold: factory value 77 in `[variables]`, the CSMS sets 123, SIGTERM (exit 0), start again with the
    same config: GetVariables answers 123 (the CSMS's value), not the factory 77."""
    config = write_config(data_dir, csms, variables={"OCPPCommCtrlr.OfflineThreshold": 77})
    log = data_dir / "station.log"
    with station_process(config, log) as station:
        wait_booted(csms, 0)
        assert get_value(csms, "OCPPCommCtrlr", "OfflineThreshold") == "77"
        assert set_value(csms, "OCPPCommCtrlr", "OfflineThreshold", "123") == "Accepted"
        assert station.stop() == 0, station.log()
    csms.wait_disconnected(STATION_ID)

    mark = csms.mark()
    with station_process(config, log) as station:
        wait_booted(csms, mark)
        assert get_value(csms, "OCPPCommCtrlr", "OfflineThreshold") == "123", station.log()
        assert station.stop() == 0, station.log()


def test_basic_auth_password_persists_across_restart(csms: LoopbackCsms, data_dir: Path) -> None:
    """A01: a BasicAuthPassword set by the CSMS replaces the factory one for good — after a restart the station
    authenticates with the new password (the CSMS no longer accepts the factory one), first attempt included."""
    new_password = "Persisted-Password-42"
    config = write_config(data_dir, csms)
    log = data_dir / "station.log"
    with station_process(config, log) as station:
        wait_booted(csms, 0)
        csms.set_password(STATION_ID, new_password)
        assert set_value(csms, "SecurityCtrlr", "BasicAuthPassword", new_password) in ("Accepted", "RebootRequired")
        csms.wait_for(lambda: any(c.accepted and c.connection_id > 1 for c in csms.connections), 10)
        assert station.stop() == 0, station.log()
    csms.wait_disconnected(STATION_ID)

    before = len(csms.connections_snapshot(STATION_ID))
    mark = csms.mark()
    with station_process(config, log) as station:
        wait_booted(csms, mark)
        attempts = csms.connections_snapshot(STATION_ID)[before:]
        assert [(a.http_status, a.auth_ok) for a in attempts] == [(101, True)], attempts
        assert station.stop() == 0, station.log()
    assert PASSWORD not in log.read_text(), "passwords are never logged"
    assert new_password not in log.read_text(), "passwords are never logged"
