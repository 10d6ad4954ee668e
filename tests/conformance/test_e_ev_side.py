"""Part 6 E, what the EV does on its own: TC_E_38 (the EV is connected but not ready for energy) and TC_E_25 (the
cable is disconnected at the EV side, StopTxOnEVSideDisconnect true, UnlockOnEVSideDisconnect false).

The simulator's knobs: `plug` connects an EV in IEC 61851 state B — connected, not asking for energy, which is
what "not ready for energy transfer" is on the pilot line — and it stays there until `charge`; `suspend` takes
a charging EV back to B (EnergyTransferSuspended); `unplug` disconnects it at the EV side. This station's
connectors are fixed cables (Connector.ConnectorType cType2), so TC_E_25's manual actions for a detachable cable
(present the idToken, unplug at the station side) are not executed, as the case's notes say.
"""

from __future__ import annotations

from pathlib import Path

import pytest

from appliance.lab.csms import LoopbackCsms
from tests.conformance.helpers import STATION_ID, booted_station, get_item, get_variables
from tests.conformance.tx_helpers import (
    AUTH_ONLINE,
    EVSE,
    TOKEN,
    TOKEN_TYPE,
    charging_session,
    has_token,
    tx_events,
    tx_id_of,
    wait_event,
    wait_status,
    wait_trigger,
)


@pytest.mark.parametrize("start_point", ["EVConnected,Authorized", "Authorized", "EVConnected", "PowerPathClosed"])
async def test_TC_E_38_ev_not_ready(csms: LoopbackCsms, data_dir: Path, start_point: str) -> None:
    """TC_E_38_CS (E03; prerequisite: TxStartPoint is not EnergyTransfer — every other start point is tried).

    Reusable State Authorized: the idToken is presented and authorized with the CSMS. The EV is set not ready
    for energy transfer (state B), then EVConnectedPreSession: StatusNotification Occupied and the plug-in's
    TransactionEvent. Step 2: the next TransactionEvent has triggerReason ChargingStateChanged and chargingState
    SuspendedEV — energy is offered (the contactor is closed) and the EV draws none.
    """
    variables = {**AUTH_ONLINE, "TxCtrlr.TxStartPoint": start_point}
    async with booted_station(csms, data_dir, variables=variables) as station:
        mark = csms.mark()
        await station.hardware.tap(TOKEN, evse_id=EVSE)
        [authorize] = await csms.trio.wait_action(STATION_ID, "Authorize", since=mark)
        assert authorize["idToken"] == {"idToken": TOKEN, "type": TOKEN_TYPE}
        await csms.trio.wait_for(
            lambda: station.runners[EVSE].state.authorization is not None, 5, what="the EVSE authorized"
        )

        plug_mark = csms.mark()
        await station.hardware.plug(EVSE)  # state B: connected, not ready
        await wait_status(csms, "Occupied", since=plug_mark)
        plugged = await wait_trigger(csms, "CablePluggedIn", since=plug_mark)
        suspended = await wait_event(
            csms,
            lambda e: e["seqNo"] > plugged["seqNo"] and tx_id_of(e) == tx_id_of(plugged),
            since=plug_mark,
            what="the TransactionEvent after the plug-in",
        )
        hardware = station.hardware.evse_status(EVSE)
        events = tx_events(csms, mark)
    assert suspended["triggerReason"] == "ChargingStateChanged", suspended
    assert suspended["transactionInfo"]["chargingState"] == "SuspendedEV", suspended
    assert plugged["transactionInfo"]["chargingState"] == "EVConnected", plugged
    assert hardware["evState"] == "B" and hardware["contactorClosed"] and hardware["powerW"] == 0, hardware
    assert not [e for e in events if e["transactionInfo"].get("chargingState") == "Charging"], events
    assert len({tx_id_of(e) for e in events}) == 1 and events[0]["eventType"] == "Started", events
    assert [e for e in events if has_token(e)], "the idToken is reported with the transaction"


async def test_TC_E_25_ev_side_disconnect_cable_stays_locked(csms: LoopbackCsms, data_dir: Path) -> None:
    """TC_E_25_CS (E09.FR.01/03/04): StopTxOnEVSideDisconnect true and UnlockOnEVSideDisconnect false (both
    ReadOnly here: a fixed-cable station); Reusable State EnergyTransferSuspended.

    The EV side is disconnected. Step 1: TransactionEvent with triggerReason EVCommunicationLost and
    chargingState Idle (the transaction is deauthorized and ends: Ended, stoppedReason EVDisconnected). Step 3:
    StatusNotification Available for the connector.
    """
    async with booted_station(csms, data_dir, variables=AUTH_ONLINE) as station:
        configured = await get_variables(
            csms, get_item("TxCtrlr", "StopTxOnEVSideDisconnect"), get_item("OCPPCommCtrlr", "UnlockOnEVSideDisconnect")
        )
        assert [(r["attributeStatus"], r.get("attributeValue")) for r in configured] == [
            ("Accepted", "true"),
            ("Accepted", "false"),
        ], configured

        tx_id = await charging_session(csms, station)
        mark = csms.mark()
        await station.hardware.suspend(EVSE)  # EnergyTransferSuspended
        suspended = await wait_trigger(csms, "ChargingStateChanged", since=mark)
        assert suspended["transactionInfo"]["chargingState"] == "SuspendedEV", suspended

        mark = csms.mark()
        await station.hardware.unplug(EVSE)
        lost = await wait_event(csms, lambda e: True, since=mark, what="the TransactionEvent of the disconnect")
        available = await wait_status(csms, "Available", since=mark)
        after = tx_events(csms, mark)
        hardware = station.hardware.evse_status(EVSE)
    assert tx_id_of(lost) == tx_id
    assert lost["triggerReason"] == "EVCommunicationLost", lost
    assert lost["transactionInfo"]["chargingState"] == "Idle", lost
    assert lost["eventType"] == "Ended" and lost["transactionInfo"]["stoppedReason"] == "EVDisconnected", lost
    assert after == [lost], "nothing else is reported for the session"
    assert available["connectorId"] == 1
    assert not hardware["contactorClosed"], hardware
