"""Part 6 G availability, ChangeAvailability (G03 EVSE/connector, G04 station): TC_G_03…TC_G_17, and the
setting persisting across a reboot: TC_G_18 (EVSE, power cycle), TC_G_19 (connector, Reset Immediate of the
in-process station), TC_G_21 (station, Reset Immediate of a real process, which re-executes itself).

The station reports connector states with StatusNotification (the NotifyEvent alternative of the Tool validations
is not used). TC_G_01/G_02 are in test_g_status.py. Not applicable: TC_G_20 (connector lock failure) needs a
ConnectorPlugRetentionLock; the EVSEs here have fixed cables without one.

The ordering "SecurityEventNotification after the BootNotification" of TC_G_19/G_21 step 6 is checked once, in
test_b_reset.py (test_security_event_after_reboot); here the event's type is checked.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
import trio

from appliance.lab.csms import LoopbackCsms
from tests.conformance.helpers import STATION_ID
from tests.conformance.remote_helpers import (
    AUTH_ONLINE,
    HardwareDriver,
    assert_same_process_reconnected,
    assert_still_running,
    boot_mark,
    call,
    call_error,
    energy_transfer_started,
    incarnation,
    incarnations,
    last_connection_id,
    last_status,
    security_events,
    station_proc,
    station_up,
    statuses,
    stop_authorized,
    stop_proc,
    tx_events,
    wait_all_reported,
    wait_boot,
    wait_reexec,
    wait_status,
    write_config,
)
from tests.harness import make_config

EVSE = {"id": 1}
CONNECTOR = {"id": 1, "connectorId": 1}


async def change(csms: LoopbackCsms, status: str, evse: dict[str, int] | None = None) -> dict[str, Any]:
    payload: dict[str, Any] = {"operationalStatus": status}
    if evse is not None:
        payload["evse"] = evse
    return await call(csms, "ChangeAvailability", payload)


async def make_unavailable(csms: LoopbackCsms, evse: dict[str, int] | None) -> None:
    """Reusable State Unavailable for the station / an EVSE / a connector: ChangeAvailability Inoperative →
    Accepted, then StatusNotification Unavailable for every connector of the target."""
    mark = csms.mark()
    answer = await change(csms, "Inoperative", evse)
    assert answer["status"] == "Accepted", answer
    for evse_id in [evse["id"]] if evse else [1, 2]:
        await wait_status(csms, mark, evse_id, "Unavailable")


async def no_status_for(csms: LoopbackCsms, since: int, evse_id: int, seconds: float = 0.3) -> None:
    """Nothing reported for the EVSE after `since` (given a moment)."""
    await trio.sleep(seconds)
    assert [p for p in statuses(csms, since) if p["evseId"] == evse_id] == [], statuses(csms, since)


# --- EVSE ------------------------------------------------------------------------------------------------------


async def test_TC_G_03_evse_operative_to_inoperative(csms: LoopbackCsms, data_dir: Path) -> None:
    """TC_G_03_CS (G03.FR.01/02/04/06): Reusable State Unavailable for EVSE 1: Accepted; StatusNotification
    Unavailable for EVSE 1 connector 1 (a timestamped report); EVSE 2 is not affected. An Unavailable EVSE does
    not start a remote session."""
    async with station_up(csms, data_dir):
        mark = csms.mark()
        await make_unavailable(csms, EVSE)
        [sn] = [p for p in statuses(csms, mark) if p["evseId"] == 1]
        assert (sn["connectorId"], sn["connectorStatus"]) == (1, "Unavailable") and sn["timestamp"].endswith("Z")
        await no_status_for(csms, mark, 2)
        answer = await call(
            csms,
            "RequestStartTransaction",
            {"idToken": {"idToken": "04A1B2C3", "type": "ISO14443"}, "remoteStartId": 1, "evseId": 1},
        )
        assert answer["status"] == "Rejected", answer


async def test_TC_G_04_evse_inoperative_to_operative(csms: LoopbackCsms, data_dir: Path) -> None:
    """TC_G_04_CS (G03.FR.07): EVSE 1 Unavailable; ChangeAvailability Operative evse.id 1 → Accepted;
    StatusNotification Available, evseId 1."""
    async with station_up(csms, data_dir):
        await make_unavailable(csms, EVSE)
        mark = csms.mark()
        answer = await change(csms, "Operative", EVSE)
        assert answer["status"] == "Accepted", answer
        await wait_status(csms, mark, 1, "Available")
        await no_status_for(csms, mark, 2)


async def test_TC_G_09_evse_operative_to_operative(csms: LoopbackCsms, data_dir: Path) -> None:
    """TC_G_09_CS (G03.FR.03): ChangeAvailability Operative for the already operative EVSE 1 → Accepted; its
    status does not change (nothing new reported)."""
    async with station_up(csms, data_dir):
        mark = csms.mark()
        answer = await change(csms, "Operative", EVSE)
        assert answer["status"] == "Accepted", answer
        await no_status_for(csms, mark, 1)


async def test_TC_G_10_evse_inoperative_to_inoperative(csms: LoopbackCsms, data_dir: Path) -> None:
    """TC_G_10_CS (G03.FR.03): EVSE 1 Unavailable; Inoperative again → Accepted; still Unavailable (no other
    status reported); post: every connector's state has been reported during the test."""
    async with station_up(csms, data_dir):
        await make_unavailable(csms, EVSE)
        mark = csms.mark()
        answer = await change(csms, "Inoperative", EVSE)
        assert answer["status"] == "Accepted", answer
        await trio.sleep(0.3)
        assert {p["connectorStatus"] for p in statuses(csms, mark) if p["evseId"] == 1} <= {"Unavailable"}
        assert last_status(csms) == {(1, 1): "Unavailable", (2, 1): "Available"}


async def test_TC_G_11_evse_with_ongoing_transaction(csms: LoopbackCsms, data_dir: Path) -> None:
    """TC_G_11_CS (G03.FR.05): EnergyTransferStarted on EVSE 1; ChangeAvailability Inoperative evse.id 1 →
    Scheduled; the transaction goes on (no Unavailable, no Ended); StopAuthorized ends it (TxStopPoint
    Authorized) and then StatusNotification Unavailable for EVSE 1 (step 4)."""
    async with station_up(csms, data_dir, variables=AUTH_ONLINE) as station:
        driver = HardwareDriver(station)
        tx_id = await energy_transfer_started(csms, driver, 1)
        mark = csms.mark()
        answer = await change(csms, "Inoperative", EVSE)
        assert answer["status"] == "Scheduled", answer
        await no_status_for(csms, mark, 1)
        assert not [e for e in tx_events(csms, mark) if e["eventType"] == "Ended"]
        ended = await stop_authorized(csms, driver, 1, tx_id)
        unavailable = await wait_status(csms, mark, 1, "Unavailable")
        # The two travel on separate queues (journal vs. status reporter), so the wire order may differ from step
        # 3 → 4; the timestamps must not.
        assert unavailable["timestamp"] >= ended["timestamp"], (ended["timestamp"], unavailable["timestamp"])


# --- Charging Station ---------------------------------------------------------------------------------------------


async def test_TC_G_05_station_operative_to_inoperative(csms: LoopbackCsms, data_dir: Path) -> None:
    """TC_G_05_CS (G04.FR.01/02/03/05/07): Reusable State Unavailable for the station: Accepted; StatusNotification
    Unavailable for every connector (evseId and connectorId not 0)."""
    async with station_up(csms, data_dir):
        mark = csms.mark()
        await make_unavailable(csms, None)
        assert last_status(csms, mark) == {(1, 1): "Unavailable", (2, 1): "Unavailable"}


async def test_TC_G_06_station_inoperative_to_operative(csms: LoopbackCsms, data_dir: Path) -> None:
    """TC_G_06_CS (G04.FR.08): station Unavailable; ChangeAvailability Operative (no evse) → Accepted;
    StatusNotification Available for all connectors."""
    async with station_up(csms, data_dir):
        await make_unavailable(csms, None)
        mark = csms.mark()
        answer = await change(csms, "Operative")
        assert answer["status"] == "Accepted", answer
        assert await wait_all_reported(csms, mark) == {(1, 1): "Available", (2, 1): "Available"}


async def test_TC_G_12_station_operative_to_operative(csms: LoopbackCsms, data_dir: Path) -> None:
    """TC_G_12_CS (G04.FR.04): ChangeAvailability Operative for the operative station → Accepted; nothing
    changes; post: all connectors reported (at boot)."""
    async with station_up(csms, data_dir):
        mark = csms.mark()
        answer = await change(csms, "Operative")
        assert answer["status"] == "Accepted", answer
        await no_status_for(csms, mark, 1, 0.1)
        await no_status_for(csms, mark, 2, 0.1)
        assert last_status(csms) == {(1, 1): "Available", (2, 1): "Available"}


async def test_TC_G_13_station_inoperative_to_inoperative(csms: LoopbackCsms, data_dir: Path) -> None:
    """TC_G_13_CS (G04.FR.04): station Unavailable; Inoperative again → Accepted. Step 3 (all connectors
    Unavailable) is satisfied by the reports of the Unavailable state; a repeated report is allowed but must
    say Unavailable."""
    async with station_up(csms, data_dir):
        await make_unavailable(csms, None)
        mark = csms.mark()
        answer = await change(csms, "Inoperative")
        assert answer["status"] == "Accepted", answer
        await trio.sleep(0.3)
        assert {p["connectorStatus"] for p in statuses(csms, mark)} <= {"Unavailable"}
        assert last_status(csms) == {(1, 1): "Unavailable", (2, 1): "Unavailable"}


async def test_TC_G_14_station_with_ongoing_transaction(csms: LoopbackCsms, data_dir: Path) -> None:
    """TC_G_14_CS (G04.FR.06): EnergyTransferStarted on EVSE 1; ChangeAvailability Inoperative (station) →
    Scheduled; EVSE 2 (no transaction) is reported Unavailable at once (step 3), EVSE 1 not while its
    transaction runs; after StopAuthorized ends it, EVSE 1 is reported Unavailable (step 7)."""
    async with station_up(csms, data_dir, variables=AUTH_ONLINE) as station:
        driver = HardwareDriver(station)
        tx_id = await energy_transfer_started(csms, driver, 1)
        mark = csms.mark()
        answer = await change(csms, "Inoperative")
        assert answer["status"] == "Scheduled", answer
        await wait_status(csms, mark, 2, "Unavailable")
        await no_status_for(csms, mark, 1)
        await stop_authorized(csms, driver, 1, tx_id)
        sn = await wait_status(csms, mark, 1, "Unavailable")
        assert sn["connectorId"] == 1


# --- Connector -------------------------------------------------------------------------------------------------


async def test_TC_G_07_connector_operative_to_inoperative(csms: LoopbackCsms, data_dir: Path) -> None:
    """TC_G_07_CS (G03.FR.06): Reusable State Unavailable for EVSE 1 connector 1: Accepted; StatusNotification
    Unavailable evseId 1 connectorId 1."""
    async with station_up(csms, data_dir):
        mark = csms.mark()
        await make_unavailable(csms, CONNECTOR)
        assert last_status(csms, mark) == {(1, 1): "Unavailable"}


async def test_TC_G_08_connector_inoperative_to_operative(csms: LoopbackCsms, data_dir: Path) -> None:
    """TC_G_08_CS (G03.FR.07): connector 1 of EVSE 1 Unavailable; Operative for evse.id 1 connectorId 1 →
    Accepted; StatusNotification Available evseId 1 connectorId 1."""
    async with station_up(csms, data_dir):
        await make_unavailable(csms, CONNECTOR)
        mark = csms.mark()
        answer = await change(csms, "Operative", CONNECTOR)
        assert answer["status"] == "Accepted", answer
        sn = await wait_status(csms, mark, 1, "Available")
        assert sn["connectorId"] == 1


async def test_TC_G_15_connector_operative_to_operative(csms: LoopbackCsms, data_dir: Path) -> None:
    """TC_G_15_CS (G03.FR.03): Operative for the operative connector → Accepted; nothing changes."""
    async with station_up(csms, data_dir):
        mark = csms.mark()
        answer = await change(csms, "Operative", CONNECTOR)
        assert answer["status"] == "Accepted", answer
        await no_status_for(csms, mark, 1)


async def test_TC_G_16_connector_inoperative_to_inoperative(csms: LoopbackCsms, data_dir: Path) -> None:
    """TC_G_16_CS (G03.FR.03): connector Unavailable; Inoperative again → Accepted; stays Unavailable."""
    async with station_up(csms, data_dir):
        await make_unavailable(csms, CONNECTOR)
        mark = csms.mark()
        answer = await change(csms, "Inoperative", CONNECTOR)
        assert answer["status"] == "Accepted", answer
        await trio.sleep(0.3)
        assert {p["connectorStatus"] for p in statuses(csms, mark)} <= {"Unavailable"}
        assert last_status(csms) == {(1, 1): "Unavailable", (2, 1): "Available"}


async def test_TC_G_17_connector_with_ongoing_transaction(csms: LoopbackCsms, data_dir: Path) -> None:
    """TC_G_17_CS (G03.FR.05): EnergyTransferStarted on EVSE 1; Inoperative for evse.id 1 connectorId 1 →
    Scheduled; when StopAuthorized has ended the transaction: StatusNotification Unavailable evseId 1
    connectorId 1."""
    async with station_up(csms, data_dir, variables=AUTH_ONLINE) as station:
        driver = HardwareDriver(station)
        tx_id = await energy_transfer_started(csms, driver, 1)
        mark = csms.mark()
        answer = await change(csms, "Inoperative", CONNECTOR)
        assert answer["status"] == "Scheduled", answer
        await no_status_for(csms, mark, 1)
        await stop_authorized(csms, driver, 1, tx_id)
        sn = await wait_status(csms, mark, 1, "Unavailable")
        assert sn["connectorId"] == 1


async def test_scheduled_change_applies_to_the_next_session(csms: LoopbackCsms, data_dir: Path) -> None:
    """G03.FR.05 follow-up: once a Scheduled Inoperative has been applied, the EVSE offers no energy to the next
    EV (plug, card, EV asking: the contactor stays open, the connector stays Unavailable); Operative after the
    EV has left makes it Available again."""
    async with station_up(csms, data_dir, variables=AUTH_ONLINE) as station:
        driver = HardwareDriver(station)
        tx_id = await energy_transfer_started(csms, driver, 1)
        assert (await change(csms, "Inoperative", EVSE))["status"] == "Scheduled"
        mark = csms.mark()
        await stop_authorized(csms, driver, 1, tx_id)
        await wait_status(csms, mark, 1, "Unavailable")
        await driver.unplug(1)
        await driver.plug(1)
        await driver.tap("04A1B2C3", 1)
        await driver.charge(1)
        await trio.sleep(0.5)
        reading = station.hardware.read_meter(1)
        assert reading.offered_current_a == 0 and reading.power_w == 0, reading
        assert {p["connectorStatus"] for p in statuses(csms, mark) if p["evseId"] == 1} == {"Unavailable"}
        await driver.unplug(1)
        mark = csms.mark()
        assert (await change(csms, "Operative", EVSE))["status"] == "Accepted"
        await wait_status(csms, mark, 1, "Available")


# --- persistence across reboots ---------------------------------------------------------------------------------


async def test_TC_G_18_evse_state_persists_across_reboot(csms: LoopbackCsms, data_dir: Path) -> None:
    """TC_G_18_CS (G03.FR.08, G01.FR.01): Inoperative for EVSE 1 → Accepted; StatusNotification Unavailable
    for EVSE 1 (step 3); Reusable State Booted by a power cycle (the in-process station stopped and started
    again on the same data directory): BootNotification PowerUp, then Unavailable for EVSE 1 and Available for
    EVSE 2, and a StartupOfTheDevice security event."""
    config = make_config(data_dir, csms)
    async with incarnation(csms, config):
        await make_unavailable(csms, EVSE)
    mark = csms.mark()
    async with incarnation(csms, config, since=mark):
        [boot] = csms.actions(STATION_ID, "BootNotification", mark)
        assert boot["reason"] == "PowerUp", boot
        assert last_status(csms, mark) == {(1, 1): "Unavailable", (2, 1): "Available"}
        events = await csms.trio.wait_action(STATION_ID, "SecurityEventNotification", since=boot_mark(csms, mark))
        assert events[0]["type"] in ("StartupOfTheDevice", "ResetOrReboot"), events


async def test_an_ev_plugged_into_an_inoperative_evse_starts_no_transaction_across_a_reboot(
    csms: LoopbackCsms, data_dir: Path
) -> None:
    """TxStartPoint EVConnected (the default): an EV plugged into an Unavailable EVSE is no transaction (an
    Inoperative EVSE "does not allow any charging", TC_G_03/G_05), neither when it is plugged in nor when the
    station boots again with the EV still there; the EVSE stays Unavailable."""
    config = make_config(data_dir, csms)
    async with incarnation(csms, config) as station:
        await make_unavailable(csms, EVSE)
        mark = csms.mark()
        await HardwareDriver(station).plug(1)
        await trio.sleep(0.3)
        assert tx_events(csms, mark) == []
        assert station.runners[1].state.tx is None
    mark = csms.mark()
    async with incarnation(csms, config, since=mark) as station:
        assert last_status(csms, mark) == {(1, 1): "Unavailable", (2, 1): "Available"}
        await trio.sleep(0.3)
        assert tx_events(csms, mark) == []
        assert station.runners[1].state.tx is None and station.runners[1].state.plugged


async def test_TC_G_19_connector_state_persists_across_reset(csms: LoopbackCsms, data_dir: Path) -> None:
    """TC_G_19_CS (G03.FR.08): connector 1 of EVSE 1 Unavailable; Reusable State Booting (Reset Immediate →
    Accepted; the in-process station ends its run as the process would before re-executing, and starts again
    on the same data directory); BootNotification (RemoteReset); every connector reported: Unavailable for EVSE
    1 connector 1, Available for EVSE 2 (evseId/connectorId not 0); a SecurityEventNotification StartupOfTheDevice
    or ResetOrReboot."""
    config = make_config(data_dir, csms)
    async with incarnation(csms, config) as station:
        await make_unavailable(csms, CONNECTOR)
        mark = csms.mark()
        answer = await call(csms, "Reset", {"type": "Immediate"})
        assert answer["status"] == "Accepted", answer
        await csms.trio.wait_disconnected(STATION_ID, 15)
        assert station.restart_reason == "RemoteReset"
    async with incarnation(csms, config, since=mark):
        [boot] = csms.actions(STATION_ID, "BootNotification", mark)
        assert boot["reason"] == "RemoteReset", boot
        assert last_status(csms, boot_mark(csms, mark)) == {(1, 1): "Unavailable", (2, 1): "Available"}
        events = await csms.trio.wait_for(lambda: security_events(csms, mark), 10)
        assert events[0]["type"] in ("StartupOfTheDevice", "ResetOrReboot"), events


async def test_TC_G_21_station_state_persists_across_reset(csms: LoopbackCsms, data_dir: Path) -> None:
    """TC_G_21_CS (G04.FR.09), with a real process: station Unavailable; Reusable State Booting (Reset Immediate
    → Accepted; the process re-executes itself, same PID); BootNotification RemoteReset; StatusNotification
    Unavailable for every connector; SecurityEventNotification StartupOfTheDevice or ResetOrReboot."""
    config = write_config(data_dir, csms.url)
    with station_proc(config) as proc:
        await wait_boot(csms, 0)
        await wait_all_reported(csms, 0)
        await make_unavailable(csms, None)
        mark, connection, before = csms.mark(), last_connection_id(csms), incarnations(proc)
        answer = await call(csms, "Reset", {"type": "Immediate"})
        assert answer["status"] == "Accepted", answer
        await wait_reexec(proc, before)
        boot = await wait_boot(csms, mark)
        assert boot["reason"] == "RemoteReset", boot
        assert await wait_all_reported(csms, boot_mark(csms, mark)) == {(1, 1): "Unavailable", (2, 1): "Unavailable"}
        assert_same_process_reconnected(csms, proc, connection)
        events = await csms.trio.wait_for(lambda: security_events(csms, mark), 10)
        assert events[0]["type"] in ("StartupOfTheDevice", "ResetOrReboot"), events
        assert await stop_proc(proc) == 0


# --- unsupported and malformed ------------------------------------------------------------------------------------


async def test_change_availability_unknown_evse_or_connector(csms: LoopbackCsms, data_dir: Path) -> None:
    """G03: an EVSE or connector the station does not have → Rejected (nothing changes, nothing reported); the
    station keeps running."""
    async with station_up(csms, data_dir):
        mark = csms.mark()
        for evse in ({"id": 9}, {"id": 1, "connectorId": 2}, {"id": 9, "connectorId": 1}):
            answer = await change(csms, "Inoperative", evse)
            assert answer["status"] == "Rejected", (evse, answer)
        await assert_still_running(csms)
        await no_status_for(csms, mark, 1, 0.1)
        assert statuses(csms, mark) == []


MALFORMED: list[tuple[str, Any, set[str]]] = [
    ("unknown-status", {"operationalStatus": "Broken"}, {"PropertyConstraintViolation"}),
    ("missing-status", {"evse": {"id": 1}}, {"OccurrenceConstraintViolation"}),
    (
        "evse-without-id",
        {"operationalStatus": "Inoperative", "evse": {"connectorId": 1}},
        {"OccurrenceConstraintViolation"},
    ),
    ("status-not-string", {"operationalStatus": 0}, {"TypeConstraintViolation"}),
    ("extra-field", {"operationalStatus": "Inoperative", "force": True}, {"FormatViolation"}),
]


@pytest.mark.parametrize(("payload", "codes"), [m[1:] for m in MALFORMED], ids=[m[0] for m in MALFORMED])
async def test_malformed_change_availability(csms: LoopbackCsms, data_dir: Path, payload: Any, codes: set[str]) -> None:
    """A ChangeAvailability breaking its schema gets the CALLERROR of the broken rule and changes nothing; the
    station keeps running."""
    async with station_up(csms, data_dir):
        mark = csms.mark()
        assert await call_error(csms, "ChangeAvailability", payload) in codes
        await assert_still_running(csms)
        assert statuses(csms, mark) == []
