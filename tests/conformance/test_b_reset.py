"""Part 6 B reset: the station (TC_B_20 OnIdle idle, TC_B_21 OnIdle with a transaction, TC_B_22 Immediate with a
transaction, TC_B_23 Unavailable persists, TC_B_41 OnIdle with two transactions) and one EVSE (TC_B_25/26/27,
C-13: EVSE.AllowReset is true), plus unsupported and malformed Reset requests.

A station reset is a real restart: these cases run `appliance run` as a process, which answers the Reset,
ends or waits for the transactions, journals a ResetOrReboot security event, closes the connection and
re-executes itself (os.execv): the same PID connects again and boots with reason RemoteReset / ScheduledReset.
The journal must go on across it (`appliance-journal verify` clean). The EV is driven with `appliance sim`.

The simulated hardware keeps its physical state across the restart (appliance/hardware/sim/state.py): an EV
still connected is still connected, so the connector is reported Occupied after the reboot, as the Tool
validations expect. Not applicable: TC_B_24 (Reserved persists; no reservations), TC_B_28/29 (EVSE reset not
supported — it is supported here).
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
    SimCliDriver,
    assert_same_process_reconnected,
    assert_still_running,
    boot_mark,
    call,
    call_error,
    energy_transfer_started,
    incarnation,
    incarnations,
    journal,
    last_connection_id,
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
    wait_tx_event,
    write_config,
)
from tests.harness import make_config

#: The EV stays connected across the reboot (module docstring).
PLUGGED_AFTER_REBOOT = "Occupied"


async def reset(csms: LoopbackCsms, kind: str, evse_id: int | None = None) -> dict[str, Any]:
    payload: dict[str, Any] = {"type": kind}
    if evse_id is not None:
        payload["evseId"] = evse_id
    return await call(csms, "Reset", payload)


async def booted_process(csms: LoopbackCsms) -> None:
    """Reusable State Booted for a fresh process: BootNotification, every connector, the start-up event."""
    await wait_boot(csms, 0)
    await wait_all_reported(csms, 0)
    await csms.trio.wait_action(STATION_ID, "SecurityEventNotification", 10)


async def assert_journal_clean(config: Path) -> None:
    code, verdict = await journal(config, "verify")
    assert code == 0 and verdict["ok"] is True, verdict


def check_immediate_reset_end(event: dict[str, Any]) -> None:
    """TC_B_22/B_27 step 3, except chargingState (test_TC_B_22_ended_charging_state): Ended, triggerReason
    ResetCommand, stoppedReason ImmediateReset, idToken omitted."""
    assert event["eventType"] == "Ended", event
    assert event["triggerReason"] == "ResetCommand", event
    assert event["transactionInfo"].get("stoppedReason") == "ImmediateReset", event
    assert "idToken" not in event, event


async def no_boot_for(csms: LoopbackCsms, since: int, seconds: float = 0.5) -> None:
    await trio.sleep(seconds)
    assert csms.actions(STATION_ID, "BootNotification", since) == [], "the station rebooted too early"


# --- station reset (a real process) ------------------------------------------------------------------------


async def test_TC_B_20_reset_on_idle_without_transaction(csms: LoopbackCsms, data_dir: Path) -> None:
    """TC_B_20_CS (B11.FR.01/03/04, B01.FR.03): Reset OnIdle with no transaction → Accepted; the station reboots
    (the same PID reconnects); BootNotification reason RemoteReset; StatusNotification Available for every
    connector; a SecurityEventNotification ResetOrReboot; the process stops cleanly afterwards."""
    config = write_config(data_dir, csms.url)
    with station_proc(config) as proc:
        await booted_process(csms)
        mark, connection, before = csms.mark(), last_connection_id(csms), incarnations(proc)
        answer = await reset(csms, "OnIdle")
        assert answer["status"] == "Accepted", answer
        await wait_reexec(proc, before)
        boot = await wait_boot(csms, mark)
        assert boot["reason"] == "RemoteReset", boot
        assert await wait_all_reported(csms, boot_mark(csms, mark)) == {(1, 1): "Available", (2, 1): "Available"}
        assert_same_process_reconnected(csms, proc, connection)
        events = await csms.trio.wait_for(
            lambda: [e for e in security_events(csms, mark) if e["type"] == "ResetOrReboot"], 10
        )
        assert events[0]["timestamp"].endswith("Z"), events
        await assert_journal_clean(config)
        assert await stop_proc(proc) == 0


async def test_TC_B_21_reset_on_idle_with_transaction(csms: LoopbackCsms, data_dir: Path) -> None:
    """TC_B_21_CS (B12.FR.01/03): EnergyTransferStarted on EVSE 1; Reset OnIdle → Scheduled; the transaction goes
    on and nothing reboots; StopAuthorized ends it; then the station reboots (same PID): BootNotification reason
    ScheduledReset; every connector reported (EVSE 1 Occupied, EVSE 2 Available); SecurityEvent
    ResetOrReboot; the journal verifies clean."""
    config = write_config(data_dir, csms.url, variables=AUTH_ONLINE)
    driver = SimCliDriver(config)
    with station_proc(config) as proc:
        await booted_process(csms)
        tx_id = await energy_transfer_started(csms, driver, 1)
        mark, connection, before = csms.mark(), last_connection_id(csms), incarnations(proc)
        answer = await reset(csms, "OnIdle")
        assert answer["status"] == "Scheduled", answer
        await no_boot_for(csms, mark)
        assert [e for e in tx_events(csms, mark) if e["eventType"] == "Ended"] == []
        ended = await stop_authorized(csms, driver, 1, tx_id)
        assert ended["triggerReason"] != "ResetCommand", ended
        await wait_reexec(proc, before)
        boot = await wait_boot(csms, mark)
        assert boot["reason"] == "ScheduledReset", boot
        reported = await wait_all_reported(csms, boot_mark(csms, mark))
        assert reported[(1, 1)] == PLUGGED_AFTER_REBOOT and reported[(2, 1)] == "Available", reported
        assert_same_process_reconnected(csms, proc, connection)
        events = await csms.trio.wait_for(lambda: security_events(csms, mark), 10)
        assert events[0]["type"] in ("StartupOfTheDevice", "ResetOrReboot"), events
        await assert_journal_clean(config)
        assert await stop_proc(proc) == 0


async def test_TC_B_22_reset_immediate_with_transaction(csms: LoopbackCsms, data_dir: Path) -> None:
    """TC_B_22_CS (B12.FR.02/04, E07.FR.03, B01.FR.03): EnergyTransferStarted on EVSE 1; Reset Immediate →
    Accepted; TransactionEvent Ended, triggerReason ResetCommand, stoppedReason ImmediateReset, no idToken (sent
    before or after the reboot — it is journaled); reboot with the same PID; BootNotification RemoteReset;
    every connector reported; ResetOrReboot. The journal goes on: `appliance-journal` shows the transaction
    ended, a new session after the reboot starts at seqNo 0, and verify is clean."""
    config = write_config(data_dir, csms.url, variables=AUTH_ONLINE)
    driver = SimCliDriver(config)
    with station_proc(config) as proc:
        await booted_process(csms)
        tx_id = await energy_transfer_started(csms, driver, 1)
        mark, connection, before = csms.mark(), last_connection_id(csms), incarnations(proc)
        answer = await reset(csms, "Immediate")
        assert answer["status"] == "Accepted", answer
        ended = await wait_tx_event(csms, mark, "Ended", 20, event_type="Ended", tx_id=tx_id)
        check_immediate_reset_end(ended)
        await wait_reexec(proc, before)
        boot = await wait_boot(csms, mark)
        assert boot["reason"] == "RemoteReset", boot
        reported = await wait_all_reported(csms, boot_mark(csms, mark))
        assert reported[(1, 1)] == PLUGGED_AFTER_REBOOT and reported[(2, 1)] == "Available", reported
        assert_same_process_reconnected(csms, proc, connection)
        assert "ResetOrReboot" in [e["type"] for e in await csms.trio.wait_for(lambda: security_events(csms, mark), 10)]
        events = tx_events(csms, 0, tx_id)
        assert [e["seqNo"] for e in events] == list(range(len(events))), events

        after = csms.mark()
        await driver.plug(2)
        started = await wait_tx_event(csms, after, "new Started", event_type="Started")
        assert started["seqNo"] == 0 and started["transactionInfo"]["transactionId"] != tx_id, started
        code, transactions = await journal(config, "transactions")
        assert code == 0, transactions
        by_id = {t["transactionId"]: t for t in transactions}
        assert by_id[tx_id]["endedAt"] is not None, by_id[tx_id]
        await assert_journal_clean(config)
        assert await stop_proc(proc) == 0


async def test_TC_B_23_unavailable_persists_reset(csms: LoopbackCsms, data_dir: Path) -> None:
    """TC_B_23_CS (B11.FR.01-04, B01.FR.03): connector 1 of EVSE 1 Unavailable (ChangeAvailability); Reset OnIdle
    → Accepted; reboot (same PID); BootNotification RemoteReset; StatusNotification Unavailable for EVSE 1
    connector 1 and Available for EVSE 2."""
    config = write_config(data_dir, csms.url)
    with station_proc(config) as proc:
        await booted_process(csms)
        mark = csms.mark()
        answer = await call(
            csms, "ChangeAvailability", {"operationalStatus": "Inoperative", "evse": {"id": 1, "connectorId": 1}}
        )
        assert answer["status"] == "Accepted", answer
        await wait_status(csms, mark, 1, "Unavailable")
        mark, connection, before = csms.mark(), last_connection_id(csms), incarnations(proc)
        answer = await reset(csms, "OnIdle")
        assert answer["status"] == "Accepted", answer
        await wait_reexec(proc, before)
        boot = await wait_boot(csms, mark)
        assert boot["reason"] == "RemoteReset", boot
        assert await wait_all_reported(csms, boot_mark(csms, mark)) == {(1, 1): "Unavailable", (2, 1): "Available"}
        assert_same_process_reconnected(csms, proc, connection)
        assert await stop_proc(proc) == 0


async def test_TC_B_41_reset_on_idle_multiple_transactions(csms: LoopbackCsms, data_dir: Path) -> None:
    """TC_B_41_CS (B12.FR.01/03, E07.FR.03; more than one EVSE): EnergyTransferStarted on EVSE 1 and 2; Reset
    OnIdle → Scheduled; StopAuthorized, EVConnectedPostSession, EVDisconnected on EVSE 1 — no reboot while EVSE
    2 still charges; StopAuthorized on EVSE 2 (TxStopPoint Authorized ends it) → the station reboots (same
    PID): BootNotification ScheduledReset; every connector reported; the journal verifies clean."""
    config = write_config(data_dir, csms.url, variables=AUTH_ONLINE)
    driver = SimCliDriver(config)
    with station_proc(config) as proc:
        await booted_process(csms)
        tx1 = await energy_transfer_started(csms, driver, 1)
        tx2 = await energy_transfer_started(csms, driver, 2, token="04D5E6F7")
        mark, connection, before = csms.mark(), last_connection_id(csms), incarnations(proc)
        answer = await reset(csms, "OnIdle")
        assert answer["status"] == "Scheduled", answer
        await stop_authorized(csms, driver, 1, tx1)
        await driver.unplug(1)
        await wait_status(csms, mark, 1, "Available")
        await no_boot_for(csms, mark)
        await stop_authorized(csms, driver, 2, tx2, token="04D5E6F7")
        await wait_reexec(proc, before)
        boot = await wait_boot(csms, mark)
        assert boot["reason"] == "ScheduledReset", boot
        reported = await wait_all_reported(csms, boot_mark(csms, mark))
        assert reported[(1, 1)] == "Available" and reported[(2, 1)] == PLUGGED_AFTER_REBOOT, reported
        assert_same_process_reconnected(csms, proc, connection)
        await assert_journal_clean(config)
        assert await stop_proc(proc) == 0


# --- what the brief and the tool check beyond the process runs (in-process restarts: quicker) --------------------


async def test_TC_B_22_ended_charging_state(csms: LoopbackCsms, data_dir: Path) -> None:
    """TC_B_22_CS step 3 (and TC_B_27): the Ended of a transaction ended by Reset Immediate reports
    transactionInfo.chargingState EVConnected — the energy transfer has stopped, the EV is still connected."""
    config = make_config(data_dir, csms, variables=AUTH_ONLINE)
    async with incarnation(csms, config) as station:
        tx_id = await energy_transfer_started(csms, HardwareDriver(station), 1)
        mark = csms.mark()
        assert (await reset(csms, "Immediate"))["status"] == "Accepted"
        ended = await wait_tx_event(csms, mark, "Ended", event_type="Ended", tx_id=tx_id)
        await csms.trio.wait_disconnected(STATION_ID, 15)
    check_immediate_reset_end(ended)
    assert ended["transactionInfo"].get("chargingState") == "EVConnected", ended


async def test_security_event_after_reboot(csms: LoopbackCsms, data_dir: Path) -> None:
    """TC_B_21_CS step 11, TC_G_19/G_21 step 6 and Reusable State Booted step 7: after a reset, the station sends
    BootNotification, reports its connectors, and then a SecurityEventNotification StartupOfTheDevice or
    ResetOrReboot — i.e. the security event of the reboot comes after the new BootNotification."""
    config = make_config(data_dir, csms)
    async with incarnation(csms, config):
        await csms.trio.wait_action(STATION_ID, "SecurityEventNotification", 10)
        mark = csms.mark()
        assert (await reset(csms, "OnIdle"))["status"] == "Accepted"
        await csms.trio.wait_disconnected(STATION_ID, 15)
    async with incarnation(csms, config, since=mark):
        after_boot = boot_mark(csms, mark)
        events = await csms.trio.wait_for(lambda: security_events(csms, after_boot), 3, what="a security event")
        assert events[0]["type"] in ("StartupOfTheDevice", "ResetOrReboot"), events


# --- EVSE reset (in-process: it restarts nothing) -----------------------------------------------------------


async def test_TC_B_25_reset_evse_without_transaction(csms: LoopbackCsms, data_dir: Path) -> None:
    """TC_B_25_CS (B11.FR.01/08/10): Reset OnIdle evseId 1 with no transaction → Accepted; only the EVSE resets:
    the connection and the boot stay (no new BootNotification), EVSE 1 is usable afterwards (a plug-in is
    reported Occupied), EVSE 2 is untouched."""
    async with station_up(csms, data_dir) as station:
        mark, connection = csms.mark(), last_connection_id(csms)
        answer = await reset(csms, "OnIdle", 1)
        assert answer["status"] == "Accepted", answer
        await no_boot_for(csms, mark, 0.3)
        assert last_connection_id(csms) == connection and csms.is_connected(STATION_ID)
        await station.hardware.plug(1)
        await wait_status(csms, mark, 1, "Occupied")
        assert [p for p in statuses(csms, mark) if p["evseId"] == 2] == []


async def test_TC_B_26_reset_evse_on_idle_with_transaction(csms: LoopbackCsms, data_dir: Path) -> None:
    """TC_B_26_CS (B12.FR.01/07): EnergyTransferStarted on EVSE 1; Reset OnIdle evseId 1 → Scheduled; the
    transaction is not ended by the reset (StopAuthorized ends it, not ResetCommand); the EVSE resets afterwards
    without rebooting the station; a transaction on EVSE 2 is not disturbed."""
    async with station_up(csms, data_dir, variables=AUTH_ONLINE) as station:
        driver = HardwareDriver(station)
        tx_id = await energy_transfer_started(csms, driver, 1)
        other = await energy_transfer_started(csms, driver, 2, token="04D5E6F7")
        mark = csms.mark()
        answer = await reset(csms, "OnIdle", 1)
        assert answer["status"] == "Scheduled", answer
        await trio.sleep(0.3)
        assert [e for e in tx_events(csms, mark) if e["eventType"] == "Ended"] == []
        ended = await stop_authorized(csms, driver, 1, tx_id)
        assert ended["triggerReason"] != "ResetCommand", ended
        await driver.unplug(1)
        await no_boot_for(csms, mark, 0.3)
        assert [e for e in tx_events(csms, mark, other) if e["eventType"] == "Ended"] == []
        await assert_still_running(csms)


async def test_TC_B_27_reset_evse_immediate_with_transaction(csms: LoopbackCsms, data_dir: Path) -> None:
    """TC_B_27_CS (B12.FR.02/08, E07.FR.03): EnergyTransferStarted on EVSE 1; Reset Immediate evseId 1 →
    Accepted; TransactionEvent Ended, triggerReason ResetCommand, stoppedReason ImmediateReset (chargingState:
    test_TC_B_22_ended_charging_state); no station reboot; EVSE 2's transaction goes on."""
    async with station_up(csms, data_dir, variables=AUTH_ONLINE) as station:
        driver = HardwareDriver(station)
        tx_id = await energy_transfer_started(csms, driver, 1)
        other = await energy_transfer_started(csms, driver, 2, token="04D5E6F7")
        mark = csms.mark()
        answer = await reset(csms, "Immediate", 1)
        assert answer["status"] == "Accepted", answer
        ended = await wait_tx_event(csms, mark, "Ended", event_type="Ended", tx_id=tx_id)
        check_immediate_reset_end(ended)
        await no_boot_for(csms, mark, 0.3)
        assert [e for e in tx_events(csms, mark, other) if e["eventType"] == "Ended"] == []
        assert station.runners[2].state.tx is not None


# --- unsupported and malformed ------------------------------------------------------------------------------


async def test_reset_unknown_evse_rejected(csms: LoopbackCsms, data_dir: Path) -> None:
    """B11/B12: a Reset for an EVSE the station does not have (9) → Rejected; nothing resets."""
    async with station_up(csms, data_dir):
        mark = csms.mark()
        for kind in ("OnIdle", "Immediate"):
            answer = await reset(csms, kind, 9)
            assert answer["status"] == "Rejected", answer
        await no_boot_for(csms, mark, 0.2)
        await assert_still_running(csms)


MALFORMED: list[tuple[str, Any, set[str]]] = [
    ("unknown-type", {"type": "Hard"}, {"PropertyConstraintViolation"}),
    ("missing-type", {"evseId": 1}, {"OccurrenceConstraintViolation"}),
    ("evse-id-string", {"type": "OnIdle", "evseId": "1"}, {"TypeConstraintViolation"}),
    ("extra-field", {"type": "OnIdle", "delay": 5}, {"FormatViolation"}),
]


@pytest.mark.parametrize(("payload", "codes"), [m[1:] for m in MALFORMED], ids=[m[0] for m in MALFORMED])
async def test_malformed_reset(csms: LoopbackCsms, data_dir: Path, payload: Any, codes: set[str]) -> None:
    """A Reset breaking its schema gets the CALLERROR of the broken rule and does not reset; the station keeps
    running on the same connection."""
    async with station_up(csms, data_dir):
        mark, connection = csms.mark(), last_connection_id(csms)
        assert await call_error(csms, "Reset", payload) in codes
        await no_boot_for(csms, mark, 0.2)
        await assert_still_running(csms)
        assert last_connection_id(csms) == connection
