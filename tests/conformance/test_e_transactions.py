"""Part 6 E (transactions): local start/stop (TC_E_03…E_06), start points (TC_E_09, E_10, E_13) and stop points
(TC_E_15, E_16, E_17, E_20, E_21, E_39), against an in-process station and the loopback CSMS.

The station's points are TxStartPoint = TxStopPoint = EVConnected,Authorized (both ReadWrite): each case sets
the members its "Configuration State" asks for through the config's `[variables]`. The reusable states the
cases refer to (EVConnectedPreSession, Authorized, EnergyTransferStarted …) are in `tx_helpers`.
"""

from __future__ import annotations

from pathlib import Path

import trio

from appliance.lab.csms import LoopbackCsms
from tests.conformance.helpers import STATION_ID, booted_station
from tests.conformance.tx_helpers import (
    AUTH_ONLINE,
    EVSE,
    ID_TOKEN,
    OFFLINE,
    TOKEN,
    assert_seq_contiguous,
    authorized_local,
    charging_session,
    energy_transfer_started,
    ev_connected_pre_session,
    first_attempt,
    go_offline,
    go_online,
    has_token,
    plug_when_authorized,
    request_start,
    tx_events,
    tx_id_of,
    wait_event,
    wait_queue_empty,
    wait_status,
    wait_trigger,
)

EV_CONNECTION_TIMEOUT = 2


async def stop_by_card(csms: LoopbackCsms, station: object, tx_id: str) -> dict:
    """StopAuthorized (local): present the same idToken; TransactionEvent StopAuthorized (here also the Ended,
    as TxStopPoint contains Authorized) with stoppedReason Local or omitted."""
    mark = csms.mark()
    await station.hardware.tap(TOKEN, evse_id=EVSE)  # type: ignore[attr-defined]
    event = await wait_trigger(csms, "StopAuthorized", since=mark)
    assert tx_id_of(event) == tx_id
    assert event["eventType"] == "Ended", event
    assert event["transactionInfo"].get("stoppedReason", "Local") == "Local", event
    assert event["transactionInfo"]["chargingState"] != "Charging", event
    if "idToken" in event:
        assert has_token(event), event
    return event


# --- local start / stop ----------------------------------------------------------------------------------------


async def test_TC_E_03_local_start_cable_first(csms: LoopbackCsms, data_dir: Path) -> None:
    """TC_E_03_CS: EVConnectedPreSession, then Authorized (local), then EnergyTransferStarted.

    Plug: StatusNotification Occupied, TransactionEvent Started (CablePluggedIn, EVConnected, evse with
    connectorId). Card: AuthorizeRequest with the idToken, TransactionEvent Authorized with the idToken. EV
    draws: ChargingStateChanged / Charging. One transaction, seqNo 0, 1, 2.
    """
    async with booted_station(csms, data_dir, variables=AUTH_ONLINE) as station:
        mark = csms.mark()
        started = await ev_connected_pre_session(csms, station)
        assert started["eventType"] == "Started"
        assert started["transactionInfo"]["chargingState"] == "EVConnected"
        authorized = await authorized_local(csms, station)
        assert authorized["eventType"] == "Updated"
        charging = await energy_transfer_started(csms, station)
        events = tx_events(csms, mark)
    assert {tx_id_of(e) for e in events} == {tx_id_of(started)} == {tx_id_of(charging)}
    assert events[0]["seqNo"] == 0
    assert_seq_contiguous(events)


async def test_TC_E_04_local_start_authorization_first(csms: LoopbackCsms, data_dir: Path) -> None:
    """TC_E_04_CS: Authorized (local) first, then EnergyTransferStarted part 1 and 2.

    Card: AuthorizeRequest with the idToken; TransactionEvent Started, triggerReason Authorized, with the
    idToken. Plug: StatusNotification Occupied, TransactionEvent CablePluggedIn with chargingState EVConnected.
    EV draws: ChargingStateChanged / Charging.
    """
    async with booted_station(csms, data_dir, variables=AUTH_ONLINE) as station:
        mark = csms.mark()
        started = await authorized_local(csms, station)
        assert started["eventType"] == "Started"
        plugged = await plug_when_authorized(csms, station)
        assert plugged["eventType"] == "Updated"
        await energy_transfer_started(csms, station)
        events = tx_events(csms, mark)
    assert len({tx_id_of(e) for e in events}) == 1
    assert events[0]["seqNo"] == 0
    assert_seq_contiguous(events)
    assert started["evse"] == {"id": EVSE, "connectorId": 1}, "the EVSE is known from the tap"


async def test_TC_E_05_local_start_cable_plugin_timeout(csms: LoopbackCsms, data_dir: Path) -> None:
    """TC_E_05_CS: EVConnectionTimeOut 2 s, AuthCacheCtrlr.Enabled false, LocalPreAuthorize false.

    Authorized (local) without an EV: after the timeout a TransactionEvent EVConnectTimeout, Ended (TxStopPoint
    contains Authorized) with stoppedReason Timeout — not before the timeout. Then the EVSE is ready again:
    Authorized (local) and EnergyTransferStarted work as usual.
    """
    variables = {**AUTH_ONLINE, "TxCtrlr.EVConnectionTimeOut": EV_CONNECTION_TIMEOUT, "AuthCacheCtrlr.Enabled": False}
    async with booted_station(csms, data_dir, variables=variables) as station:
        started = await authorized_local(csms, station)
        authorized_at = trio.current_time()
        ended = await wait_trigger(csms, "EVConnectTimeout", timeout=EV_CONNECTION_TIMEOUT + 5)
        waited = trio.current_time() - authorized_at
        assert ended["eventType"] == "Ended" and ended["transactionInfo"]["stoppedReason"] == "Timeout", ended
        assert tx_id_of(ended) == tx_id_of(started)
        assert waited >= EV_CONNECTION_TIMEOUT - 0.3, f"timed out after {waited:.2f} s"

        # Steps 3-4: the EVSE can start another session.
        mark = csms.mark()
        again = await authorized_local(csms, station)
        assert again["eventType"] == "Started" and tx_id_of(again) != tx_id_of(started)
        await plug_when_authorized(csms, station)
        await energy_transfer_started(csms, station)
        assert {tx_id_of(e) for e in tx_events(csms, mark)} == {tx_id_of(again)}


async def test_TC_E_06_local_stop(csms: LoopbackCsms, data_dir: Path) -> None:
    """TC_E_06_CS: from EnergyTransferStarted, StopAuthorized (local), EVConnectedPostSession, EVDisconnected.

    The same card stops it: TransactionEvent StopAuthorized, Ended (TxStopPoint contains Authorized) with
    stoppedReason Local or omitted. Then unplugging: StatusNotification Available and no further
    TransactionEvent (the transaction has already ended, so EVDisconnected's step 3 is not executed).
    """
    async with booted_station(csms, data_dir, variables=AUTH_ONLINE) as station:
        tx_id = await charging_session(csms, station)
        await stop_by_card(csms, station, tx_id)
        mark = csms.mark()
        await station.hardware.unplug(EVSE)
        await wait_status(csms, "Available", since=mark)
        await trio.sleep(0.5)
        assert tx_events(csms, mark) == [], "nothing to report: the transaction had ended"
        assert not [e for e in tx_events(csms) if e["eventType"] == "Started" and tx_id_of(e) != tx_id]


# --- start points ----------------------------------------------------------------------------------------------


async def test_TC_E_09_start_point_ev_connected(csms: LoopbackCsms, data_dir: Path) -> None:
    """TC_E_09_CS: TxStartPoint EVConnected. Connecting the EV: StatusNotification Occupied, TransactionEvent
    Started, triggerReason CablePluggedIn or ChargingStateChanged, evse and evse.connectorId given,
    chargingState EVConnected."""
    async with booted_station(csms, data_dir, variables={"TxCtrlr.TxStartPoint": "EVConnected"}) as station:
        mark = csms.mark()
        await station.hardware.plug(EVSE)
        await wait_status(csms, "Occupied", since=mark)
        event = await wait_event(csms, lambda e: True, since=mark)
    assert event["eventType"] == "Started"
    assert event["triggerReason"] in ("CablePluggedIn", "ChargingStateChanged")
    assert event["evse"]["id"] == EVSE and "connectorId" in event["evse"]
    assert event["transactionInfo"]["chargingState"] == "EVConnected"
    assert event["seqNo"] == 0


async def test_TC_E_10_start_point_authorized_local(csms: LoopbackCsms, data_dir: Path) -> None:
    """TC_E_10_CS: TxStartPoint Authorized. Presenting the idToken: AuthorizeRequest with idToken/type; the
    CSMS accepts; TransactionEvent Started, triggerReason Authorized, with the idToken."""
    variables = {**AUTH_ONLINE, "TxCtrlr.TxStartPoint": "Authorized"}
    async with booted_station(csms, data_dir, variables=variables) as station:
        mark = csms.mark()
        await station.hardware.tap(TOKEN, evse_id=EVSE)
        [authorize] = await csms.trio.wait_action(STATION_ID, "Authorize", since=mark)
        event = await wait_event(csms, lambda e: True, since=mark)
    assert authorize["idToken"] == ID_TOKEN
    assert event["eventType"] == "Started" and event["triggerReason"] == "Authorized"
    assert has_token(event), event


async def test_TC_E_13_start_point_authorized_remote(csms: LoopbackCsms, data_dir: Path) -> None:
    """TC_E_13_CS: TxStartPoint Authorized, AuthorizeRemoteStart true. RequestStartTransaction with the idToken
    and evseId: Accepted; AuthorizeRequest with the idToken; TransactionEvent Started, triggerReason RemoteStart,
    with the idToken and transactionInfo.remoteStartId."""
    variables = {**AUTH_ONLINE, "TxCtrlr.TxStartPoint": "Authorized", "AuthCtrlr.AuthorizeRemoteStart": True}
    async with booted_station(csms, data_dir, variables=variables):
        mark = csms.mark()
        answer = await request_start(csms, remote_start_id=13)
        [authorize] = await csms.trio.wait_action(STATION_ID, "Authorize", since=mark)
        event = await wait_event(csms, lambda e: True, since=mark)
    assert answer["status"] == "Accepted"
    assert authorize["idToken"] == ID_TOKEN
    assert event["eventType"] == "Started" and event["triggerReason"] == "RemoteStart"
    assert has_token(event), event
    assert event["transactionInfo"]["remoteStartId"] == 13


# --- stop points -----------------------------------------------------------------------------------------------


async def test_TC_E_15_stop_point_stop_authorized_local(csms: LoopbackCsms, data_dir: Path) -> None:
    """TC_E_15_CS: TxStopPoint contains Authorized; EnergyTransferStarted; the same idToken presented again:
    TransactionEvent Ended, triggerReason StopAuthorized, stoppedReason Local."""
    variables = {**AUTH_ONLINE, "TxCtrlr.TxStopPoint": "Authorized"}
    async with booted_station(csms, data_dir, variables=variables) as station:
        tx_id = await charging_session(csms, station)
        mark = csms.mark()
        await station.hardware.tap(TOKEN, evse_id=EVSE)
        event = await wait_event(csms, lambda e: True, since=mark)
    assert tx_id_of(event) == tx_id
    assert event["eventType"] == "Ended" and event["triggerReason"] == "StopAuthorized"
    assert event["transactionInfo"]["stoppedReason"] == "Local"


async def test_TC_E_16_stop_point_deauthorized_invalid_id(csms: LoopbackCsms, data_dir: Path) -> None:
    """TC_E_16_CS: TxStopPoint contains Authorized, StopTxOnInvalidId true; StartOfflineTransaction.

    Offline: EV plugged, idToken presented (authorized from the cache), EV draws. Back online the queue is
    emptied, every message with offline true; the CSMS answers the one carrying the idToken with
    idTokenInfo.status Invalid; the station then ends the transaction: TransactionEvent Ended, triggerReason
    Deauthorized, stoppedReason DeAuthorized.
    """
    variables = {
        **OFFLINE,
        "TxCtrlr.StopTxOnInvalidId": True,
        "AuthCacheCtrlr.Enabled": True,
        "AuthCtrlr.LocalAuthorizeOffline": True,
    }
    async with booted_station(csms, data_dir, variables=variables) as station:
        # Memory state IdTokenCached: one accepted online session puts the token in the authorization cache
        # (no OfflineTxForUnknownIdEnabled here: an unknown token would not start offline).
        tx_id = tx_id_of(await authorized_local(csms, station))
        await stop_by_card(csms, station, tx_id)
        await wait_queue_empty(station)

        # StartOfflineTransaction.
        offline_at = await go_offline(csms, station)
        await station.hardware.plug(EVSE)
        await station.hardware.tap(TOKEN, evse_id=EVSE)
        await station.hardware.charge(EVSE, watts=7400)
        csms.set_token(TOKEN, "Invalid")
        mark = csms.mark()
        await go_online(csms, station, first_attempt(offline_at))

        ended = await wait_trigger(csms, "Deauthorized", since=mark, timeout=10)
        events = tx_events(csms, mark)
    queued = events[: events.index(ended)]
    assert queued and all(e.get("offline") is True for e in queued), queued
    assert any(has_token(e) for e in queued), "the offline authorization reached the CSMS"
    assert ended["eventType"] == "Ended"
    assert ended["transactionInfo"]["stoppedReason"] == "DeAuthorized"
    assert tx_id_of(ended) == tx_id_of(queued[0])


async def test_TC_E_17_stop_point_ev_side_disconnect(csms: LoopbackCsms, data_dir: Path) -> None:
    """TC_E_17_CS: TxStopPoint Authorized, StopTxOnEVSideDisconnect true (fixed cable); EnergyTransferSuspended.

    The EV is disconnected at the EV side: TransactionEvent Ended, triggerReason EVCommunicationLost,
    chargingState Idle, stoppedReason EVDisconnected; StatusNotification Available.
    """
    variables = {**AUTH_ONLINE, "TxCtrlr.TxStopPoint": "Authorized"}
    async with booted_station(csms, data_dir, variables=variables) as station:
        tx_id = await charging_session(csms, station)
        # EnergyTransferSuspended: the EV stops drawing; ChargingStateChanged, SuspendedEV.
        mark = csms.mark()
        await station.hardware.suspend(EVSE)
        suspended = await wait_trigger(csms, "ChargingStateChanged", since=mark)
        assert suspended["eventType"] == "Updated"
        assert suspended["transactionInfo"]["chargingState"] in ("EVConnected", "SuspendedEV")

        mark = csms.mark()
        await station.hardware.unplug(EVSE)
        ended = await wait_event(csms, lambda e: True, since=mark)
        await wait_status(csms, "Available", since=mark)
    assert tx_id_of(ended) == tx_id
    assert ended["eventType"] == "Ended" and ended["triggerReason"] == "EVCommunicationLost"
    assert ended["transactionInfo"]["chargingState"] == "Idle"
    assert ended["transactionInfo"]["stoppedReason"] == "EVDisconnected"


async def test_TC_E_20_stop_point_ev_connected_ev_side(csms: LoopbackCsms, data_dir: Path) -> None:
    """TC_E_20_CS: TxStopPoint EVConnected (StopTxOnEVSideDisconnect is read-only true here); from
    EnergyTransferSuspended the EV side is disconnected: Ended, EVCommunicationLost, Idle, EVDisconnected."""
    variables = {**AUTH_ONLINE, "TxCtrlr.TxStopPoint": "EVConnected"}
    async with booted_station(csms, data_dir, variables=variables) as station:
        tx_id = await charging_session(csms, station)
        mark = csms.mark()
        await station.hardware.suspend(EVSE)
        await wait_trigger(csms, "ChargingStateChanged", since=mark)
        mark = csms.mark()
        await station.hardware.unplug(EVSE)
        ended = await wait_event(csms, lambda e: True, since=mark)
    assert tx_id_of(ended) == tx_id
    assert ended["eventType"] == "Ended" and ended["triggerReason"] == "EVCommunicationLost"
    assert ended["transactionInfo"]["chargingState"] == "Idle"
    assert ended["transactionInfo"]["stoppedReason"] == "EVDisconnected"


async def test_TC_E_21_stop_point_stop_authorized_remote(csms: LoopbackCsms, data_dir: Path) -> None:
    """TC_E_21_CS: TxStopPoint contains Authorized; EnergyTransferStarted; RequestStopTransaction with the
    station's transactionId: Accepted, then TransactionEvent Ended, triggerReason RemoteStop, stoppedReason
    Remote."""
    variables = {**AUTH_ONLINE, "TxCtrlr.TxStopPoint": "Authorized"}
    async with booted_station(csms, data_dir, variables=variables) as station:
        tx_id = await charging_session(csms, station)
        mark = csms.mark()
        answer = await csms.trio.call(STATION_ID, "RequestStopTransaction", {"transactionId": tx_id})
        ended = await wait_event(csms, lambda e: True, since=mark)
    assert answer["status"] == "Accepted"
    assert tx_id_of(ended) == tx_id
    assert ended["eventType"] == "Ended" and ended["triggerReason"] == "RemoteStop"
    assert ended["transactionInfo"]["stoppedReason"] == "Remote"


async def test_TC_E_39_stop_point_deauthorized_timeout(csms: LoopbackCsms, data_dir: Path) -> None:
    """TC_E_39_CS: TxStopPoint Authorized, EVConnectionTimeOut 2 s; State Authorized without an EV.

    Step 1: after the timeout, TransactionEvent EVConnectTimeout, Ended (TxStartPoint is not
    ParkingBayOccupancy), stoppedReason Timeout. Step 3: connecting the EV afterwards may only report
    CablePluggedIn and must not start charging. (The case text asks for eventType "Ended" there too, which
    cannot describe a plug-in; with TxStartPoint EVConnected the plug-in starts a new, unauthorized
    transaction, so it is a Started that is not Charging.)
    """
    variables = {
        **AUTH_ONLINE,
        "TxCtrlr.TxStopPoint": "Authorized",
        "TxCtrlr.EVConnectionTimeOut": EV_CONNECTION_TIMEOUT,
    }
    async with booted_station(csms, data_dir, variables=variables) as station:
        started = await authorized_local(csms, station)
        ended = await wait_trigger(csms, "EVConnectTimeout", timeout=EV_CONNECTION_TIMEOUT + 5)
        assert tx_id_of(ended) == tx_id_of(started)
        assert ended["eventType"] == "Ended" and ended["transactionInfo"]["stoppedReason"] == "Timeout"

        mark = csms.mark()
        await station.hardware.plug(EVSE)
        await station.hardware.charge(EVSE, watts=7400)
        await trio.sleep(1.0)
        after = tx_events(csms, mark)
        assert station.hardware.read_meter(EVSE).power_w == 0, "energy flows without an authorization"
    assert after, "the plug-in is reported"
    assert after[0]["triggerReason"] == "CablePluggedIn"
    assert all(tx_id_of(e) != tx_id_of(started) for e in after), "nothing after Ended in the timed-out transaction"
    assert all(e["transactionInfo"].get("chargingState") != "Charging" for e in after), after
