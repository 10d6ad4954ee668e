"""Part 6 F (remote control of transactions): remote start (TC_F_01 … F_04) and remote stop (TC_F_08, F_09).

Reusable state Authorized (remote): RequestStartTransaction with the configured idToken and evseId → Accepted
(with the transactionId when the transaction already runs); with AuthCtrlr.AuthorizeRemoteStart an
AuthorizeRequest for the token; then the first TransactionEvent after the request has triggerReason RemoteStart,
transactionInfo.remoteStartId and the idToken (Part 6 §2.1 general rules).
"""

from __future__ import annotations

import uuid
from pathlib import Path
from typing import Any

from appliance.lab.csms import LoopbackCsms
from appliance.station import Station
from tests.conformance.helpers import STATION_ID, booted_station
from tests.conformance.tx_helpers import (
    AUTH_ONLINE,
    ID_TOKEN,
    charging_session,
    energy_transfer_started,
    ev_connected_pre_session,
    has_token,
    plug_when_authorized,
    request_start,
    tx_events,
    tx_id_of,
    wait_trigger,
)

EV_CONNECTION_TIMEOUT = 2


async def authorized_remote(
    csms: LoopbackCsms, remote_start_id: int, *, authorize: bool, running: str | None = None
) -> dict[str, Any]:
    """Reusable state Authorized (remote), main B; returns the RemoteStart TransactionEvent.

    `authorize`: an AuthorizeRequest for the token is expected (AuthorizeRemoteStart true) or must not come.
    `running`: the transactionId of the transaction the plug-in already started (the answer must carry it).
    """
    mark = csms.mark()
    answer = await request_start(csms, remote_start_id)
    assert answer["status"] == "Accepted", answer
    if running is not None:
        assert answer.get("transactionId") == running, answer
    event = await wait_trigger(csms, "RemoteStart", since=mark)
    first = tx_events(csms, mark)[0]
    assert first is event or first == event, f"the first TransactionEvent after the request is {first}"
    assert event["transactionInfo"]["remoteStartId"] == remote_start_id, event
    assert has_token(event), event
    authorizations = csms.actions(STATION_ID, "Authorize", mark)
    if authorize:
        assert [a["idToken"] for a in authorizations] == [ID_TOKEN]
    else:
        assert authorizations == [], "AuthorizeRemoteStart false: the remote start is authorized as it is"
    return event


async def test_TC_F_01_remote_start_cable_plugin_first(csms: LoopbackCsms, data_dir: Path) -> None:
    """TC_F_01_CS: EVConnectedPreSession (Started at plug-in), then Authorized (remote): the answer carries the
    running transactionId; the RemoteStart event is an Updated of that transaction with remoteStartId and the
    idToken; then EnergyTransferStarted (ChargingStateChanged, Charging)."""
    async with booted_station(csms, data_dir, variables=AUTH_ONLINE) as station:
        started = await ev_connected_pre_session(csms, station)
        tx_id = tx_id_of(started)
        event = await authorized_remote(csms, 101, authorize=True, running=tx_id)
        assert event["eventType"] == "Updated" and tx_id_of(event) == tx_id
        charging = await energy_transfer_started(csms, station)
        assert tx_id_of(charging) == tx_id


async def remote_start_first(csms: LoopbackCsms, station: Station, remote_start_id: int, *, authorize: bool) -> None:
    """Authorized (remote) with no EV yet (TxStartPoint Authorized: Started, RemoteStart), then
    EnergyTransferStarted part 1 (plug-in: StatusNotification Occupied, CablePluggedIn, EVConnected) and part 2."""
    event = await authorized_remote(csms, remote_start_id, authorize=authorize)
    assert event["eventType"] == "Started", event
    assert event["evse"]["id"] == 1 and "connectorId" in event["evse"], event
    plugged = await plug_when_authorized(csms, station)
    charging = await energy_transfer_started(csms, station)
    assert tx_id_of(plugged) == tx_id_of(charging) == tx_id_of(event)


async def test_TC_F_02_remote_start_first_authorize_remote_start_true(csms: LoopbackCsms, data_dir: Path) -> None:
    """TC_F_02_CS: AuthorizeRemoteStart true. RequestStartTransaction before the EV is connected: Accepted,
    AuthorizeRequest with the idToken, TransactionEvent Started/RemoteStart (remoteStartId, idToken), then the
    EV connects (CablePluggedIn, EVConnected) and draws (ChargingStateChanged, Charging)."""
    variables = {**AUTH_ONLINE, "AuthCtrlr.AuthorizeRemoteStart": True}
    async with booted_station(csms, data_dir, variables=variables) as station:
        await remote_start_first(csms, station, 102, authorize=True)


async def test_TC_F_03_remote_start_first_authorize_remote_start_false(csms: LoopbackCsms, data_dir: Path) -> None:
    """TC_F_03_CS: AuthorizeRemoteStart false. As TC_F_02, but the station sends no AuthorizeRequest: the remote
    start is authorized as it is."""
    variables = {**AUTH_ONLINE, "AuthCtrlr.AuthorizeRemoteStart": False}
    async with booted_station(csms, data_dir, variables=variables) as station:
        await remote_start_first(csms, station, 103, authorize=False)


async def test_TC_F_04_remote_start_cable_plugin_timeout(csms: LoopbackCsms, data_dir: Path) -> None:
    """TC_F_04_CS: EVConnectionTimeOut 2 s, TxStartPoint Authorized. Authorized (remote), no EV: after the
    timeout TransactionEvent Ended, triggerReason EVConnectTimeout (stoppedReason Timeout). Step 3: the EVSE
    accepts the next remote start (a new transaction with the new remoteStartId)."""
    variables = {
        **AUTH_ONLINE,
        "TxCtrlr.EVConnectionTimeOut": EV_CONNECTION_TIMEOUT,
        "TxCtrlr.TxStartPoint": "Authorized",
    }
    async with booted_station(csms, data_dir, variables=variables):
        started = await authorized_remote(csms, 104, authorize=True)
        ended = await wait_trigger(csms, "EVConnectTimeout", timeout=EV_CONNECTION_TIMEOUT + 5)
        assert tx_id_of(ended) == tx_id_of(started)
        assert ended["eventType"] == "Ended", ended
        assert ended["transactionInfo"]["stoppedReason"] == "Timeout", ended
        again = await authorized_remote(csms, 105, authorize=True)
        assert again["eventType"] == "Started" and tx_id_of(again) != tx_id_of(started)


async def test_TC_F_08_remote_stop(csms: LoopbackCsms, data_dir: Path) -> None:
    """TC_F_08_CS: EnergyTransferStarted, then StopAuthorized (remote): RequestStopTransaction with the
    station's transactionId → Accepted; TransactionEvent RemoteStop (here the Ended: TxStopPoint contains
    Authorized, stoppedReason Remote)."""
    async with booted_station(csms, data_dir, variables=AUTH_ONLINE) as station:
        tx_id = await charging_session(csms, station)
        mark = csms.mark()
        answer = await csms.trio.call(STATION_ID, "RequestStopTransaction", {"transactionId": tx_id})
        event = await wait_trigger(csms, "RemoteStop", since=mark)
    assert answer["status"] == "Accepted"
    assert tx_id_of(event) == tx_id
    assert event["eventType"] == "Ended" and event["transactionInfo"]["stoppedReason"] == "Remote", event


async def test_TC_F_09_remote_stop_rejected(csms: LoopbackCsms, data_dir: Path) -> None:
    """TC_F_09_CS: EnergyTransferStarted; RequestStopTransaction with a different transactionId → Rejected, and
    the running transaction is untouched."""
    async with booted_station(csms, data_dir, variables=AUTH_ONLINE) as station:
        tx_id = await charging_session(csms, station)
        mark = csms.mark()
        answer = await csms.trio.call(STATION_ID, "RequestStopTransaction", {"transactionId": str(uuid.uuid4())})
        assert station.runners[1].state.tx is not None and station.runners[1].state.tx.transaction_id == tx_id
    assert answer["status"] == "Rejected"
    assert tx_events(csms, mark) == []
