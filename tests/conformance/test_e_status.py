"""Part 6 E14 (GetTransactionStatus): TC_E_28 … TC_E_34.

"With message in queue" cases (E_29, E_31, E_33) ask at "the moment the WebSocket connection is restored",
i.e. while the station is still emptying its queue. The loopback CSMS holds its answer to the first replayed
TransactionEvent for a moment (well inside MessageTimeout, so it is not a failed attempt), which keeps that
moment long enough to ask in, deterministically.
"""

from __future__ import annotations

import uuid
from pathlib import Path
from typing import Any

import trio

from appliance.lab.csms import Delayed, LoopbackCsms
from appliance.station import Station
from tests.conformance.helpers import STATION_ID, booted_station
from tests.conformance.tx_helpers import (
    AUTH_ONLINE,
    EVSE,
    OFFLINE,
    TOKEN,
    charging_session,
    first_attempt,
    go_offline,
    go_online,
    new_events,
    tx_events,
    tx_id_of,
    wait_queue_empty,
    wait_status,
)

#: TxUpdatedInterval (1 s) shorter than RetryBackOffWaitMinimum (2 s), OfflineThreshold = WaitMinimum + 60.
QUEUED = {**OFFLINE, "SampledDataCtrlr.TxUpdatedInterval": 1}
#: How long the CSMS holds its answer to the first replayed TransactionEvent (MessageTimeout is 5 s).
HOLD = 1.5


async def transaction_status(csms: LoopbackCsms, tx_id: str | None = None) -> dict[str, Any]:
    payload = {} if tx_id is None else {"transactionId": tx_id}
    return await csms.trio.call(STATION_ID, "GetTransactionStatus", payload)


def hold_first_answer(csms: LoopbackCsms) -> None:
    """Answer the next TransactionEvent HOLD seconds late (then normally again)."""
    held: list[bool] = []

    def responder(station_id: str, payload: dict[str, Any]) -> Any:
        if held:
            return None
        held.append(True)
        return Delayed(HOLD, {})

    csms.set_response("TransactionEvent", responder)


async def reconnect_and_ask(
    csms: LoopbackCsms, station: Station, offline_at: float, tx_id: str | None
) -> tuple[dict[str, Any], int]:
    """Accept the reconnection after RetryBackOffWaitMinimum and send GetTransactionStatus at once; returns the
    answer and the frame mark taken before reconnecting."""
    hold_first_answer(csms)
    mark = csms.mark()
    await go_online(csms, station, first_attempt(offline_at))
    answer = await transaction_status(csms, tx_id)
    return answer, mark


async def test_TC_E_28_status_unknown_transaction(csms: LoopbackCsms, data_dir: Path) -> None:
    """TC_E_28_CS: GetTransactionStatus with a random transactionId: ongoingIndicator false, messagesInQueue
    false."""
    async with booted_station(csms, data_dir):
        answer = await transaction_status(csms, str(uuid.uuid4()))
    assert answer == {"ongoingIndicator": False, "messagesInQueue": False}


async def test_TC_E_29_status_ongoing_with_queue(csms: LoopbackCsms, data_dir: Path) -> None:
    """TC_E_29_CS: EnergyTransferStarted; offline for longer than TxUpdatedInterval; on reconnection
    GetTransactionStatus(transactionId): ongoingIndicator true, messagesInQueue true. Then the queue is
    emptied: TransactionEvent Updated with meterValue and offline true."""
    async with booted_station(csms, data_dir, variables=QUEUED) as station:
        tx_id = await charging_session(csms, station)
        await wait_queue_empty(station)
        offline_at = await go_offline(csms, station)
        answer, mark = await reconnect_and_ask(csms, station, offline_at, tx_id)
        await wait_queue_empty(station)
        replayed = new_events(csms, mark)
    assert answer == {"ongoingIndicator": True, "messagesInQueue": True}
    assert replayed[0]["eventType"] == "Updated" and replayed[0].get("meterValue"), replayed[0]
    assert replayed[0].get("offline") is True, replayed[0]


async def test_TC_E_30_status_ongoing_without_queue(csms: LoopbackCsms, data_dir: Path) -> None:
    """TC_E_30_CS: EnergyTransferStarted, everything delivered: ongoingIndicator true, messagesInQueue false."""
    async with booted_station(csms, data_dir, variables=AUTH_ONLINE) as station:
        tx_id = await charging_session(csms, station)
        await wait_queue_empty(station)
        answer = await transaction_status(csms, tx_id)
    assert answer == {"ongoingIndicator": True, "messagesInQueue": False}


async def test_TC_E_31_status_ended_with_queue(csms: LoopbackCsms, data_dir: Path) -> None:
    """TC_E_31_CS: EnergyTransferStarted; offline, the same idToken stops it and the EV is disconnected; on
    reconnection GetTransactionStatus(transactionId): ongoingIndicator false, messagesInQueue true. Then the
    queue is emptied with what StopAuthorized … ParkingBayUnoccupied expect: Ended, StopAuthorized, stoppedReason
    Local (or omitted), offline true; the unplug reported as StatusNotification Available."""
    async with booted_station(csms, data_dir, variables=QUEUED) as station:
        tx_id = await charging_session(csms, station)
        await wait_queue_empty(station)
        offline_at = await go_offline(csms, station)
        await station.hardware.tap(TOKEN, evse_id=EVSE)
        await trio.sleep(0.3)
        await station.hardware.unplug(EVSE)
        answer, mark = await reconnect_and_ask(csms, station, offline_at, tx_id)
        await wait_queue_empty(station)
        await wait_status(csms, "Available", since=mark)
        replayed = new_events(csms, mark)
    assert answer == {"ongoingIndicator": False, "messagesInQueue": True}
    assert replayed and all(e.get("offline") is True for e in replayed), replayed
    ended = replayed[-1]
    assert tx_id_of(ended) == tx_id and ended["eventType"] == "Ended", ended
    assert ended["triggerReason"] == "StopAuthorized"
    assert ended["transactionInfo"].get("stoppedReason", "Local") == "Local"


async def test_TC_E_32_status_ended_without_queue(csms: LoopbackCsms, data_dir: Path) -> None:
    """TC_E_32_CS: EnergyTransferStarted, then the session ends (card, unplug) and everything is delivered:
    ongoingIndicator false, messagesInQueue false."""
    async with booted_station(csms, data_dir, variables=AUTH_ONLINE) as station:
        tx_id = await charging_session(csms, station)
        await station.hardware.tap(TOKEN, evse_id=EVSE)
        await station.hardware.unplug(EVSE)
        await csms.trio.wait_for(lambda: any(e["eventType"] == "Ended" for e in tx_events(csms, tx_id=tx_id)))
        await wait_queue_empty(station)
        answer = await transaction_status(csms, tx_id)
    assert answer == {"ongoingIndicator": False, "messagesInQueue": False}


async def test_TC_E_33_status_no_id_with_queue(csms: LoopbackCsms, data_dir: Path) -> None:
    """TC_E_33_CS: as TC_E_29 but GetTransactionStatus without transactionId: ongoingIndicator omitted,
    messagesInQueue true; then Updated with meterValue and offline true."""
    async with booted_station(csms, data_dir, variables=QUEUED) as station:
        await charging_session(csms, station)
        await wait_queue_empty(station)
        offline_at = await go_offline(csms, station)
        answer, mark = await reconnect_and_ask(csms, station, offline_at, None)
        await wait_queue_empty(station)
        replayed = new_events(csms, mark)
    assert answer == {"messagesInQueue": True}
    assert replayed[0]["eventType"] == "Updated" and replayed[0].get("meterValue"), replayed[0]
    assert replayed[0].get("offline") is True, replayed[0]


async def test_TC_E_34_status_no_id_without_queue(csms: LoopbackCsms, data_dir: Path) -> None:
    """TC_E_34_CS: idle station, nothing queued; GetTransactionStatus without transactionId: ongoingIndicator
    omitted, messagesInQueue false."""
    async with booted_station(csms, data_dir) as station:
        await wait_queue_empty(station)
        answer = await transaction_status(csms)
    assert answer == {"messagesInQueue": False}
