"""Shared steps of the transaction, meter-value, remote-control and offline conformance cases (Part 6 E, F, J, B04).

The Part 6 "reusable states" (Annex 2.18) are written here once, as the station sees them: a plug, a card tap
or a CSMS request, then what the CSMS must receive. Each helper returns the TransactionEvent payloads it waited
for, so a test can check the case's "Tool validations" on exactly those frames. Everything goes through the
real loopback CSMS (`csms.trio`), so the Trio loop and the in-process station keep running.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from datetime import datetime
from typing import Any

import trio

from appliance.lab.csms import LoopbackCsms, RecordedFrame
from appliance.link.link import LinkState
from appliance.station import Station
from tests.conformance.helpers import STATION_ID, station_calls, statuses

#: <Configured valid_idtoken_idtoken> / <Configured valid_idtoken_type>: an RFID card UID.
TOKEN = "04A1B2C3"
TOKEN_TYPE = "ISO14443"
ID_TOKEN = {"idToken": TOKEN, "type": TOKEN_TYPE}
#: <Configured valid idtoken fields2> (another card, e.g. of the same group).
TOKEN2 = "04D5E6F7"
EVSE = 1
#: The general pre-condition of Part 6 §2.1: AuthCtrlr.LocalPreAuthorize false (the CSMS is always asked).
AUTH_ONLINE = {"AuthCtrlr.LocalPreAuthorize": False}
WATTS = 11000
#: Measurands this station supports, and the unit each must carry (the schema's default, Wh, is wrong for the rest).
UNITS = {
    "Current.Import": "A",
    "Current.Offered": "A",
    "Energy.Active.Import.Register": "Wh",
    "Voltage": "V",
    "Power.Offered": "W",
    "Power.Active.Import": "W",
}
ALL_MEASURANDS = ",".join(UNITS)
#: RetryBackOffWaitMinimum (RandomRange 0) and OfflineThreshold = WaitMinimum + 60, as the offline cases ask.
WAIT_MINIMUM = 2
OFFLINE = {
    **AUTH_ONLINE,
    "OCPPCommCtrlr.RetryBackOffWaitMinimum": WAIT_MINIMUM,
    "OCPPCommCtrlr.RetryBackOffRandomRange": 0,
    "OCPPCommCtrlr.OfflineThreshold": WAIT_MINIMUM + 60,
}
#: Per-phase measurands of a three-phase EVSE (EVSE 1 of the harness layout) and the phases they must name.
PHASES = {"Current.Import": {"L1", "L2", "L3"}, "Voltage": {"L1-N", "L2-N", "L3-N"}}


# --- what the CSMS saw --------------------------------------------------------------------------------------


def tx_events(csms: LoopbackCsms, since: int = 0, tx_id: str | None = None) -> list[dict[str, Any]]:
    """TransactionEvent payloads received after frame `since` (resends included), oldest first."""
    return [
        e
        for e in csms.actions(STATION_ID, "TransactionEvent", since)
        if tx_id is None or e["transactionInfo"]["transactionId"] == tx_id
    ]


def tx_frames(csms: LoopbackCsms, since: int = 0) -> list[RecordedFrame]:
    """The TransactionEvent CALL frames (with their receive times) after frame `since`."""
    return [f for f in station_calls(csms, since) if f.action == "TransactionEvent"]


async def wait_event(
    csms: LoopbackCsms,
    predicate: Callable[[dict[str, Any]], bool],
    since: int = 0,
    timeout: float = 10,
    what: str = "a matching TransactionEvent",
) -> dict[str, Any]:
    """The first TransactionEvent after `since` that satisfies `predicate`."""

    def find() -> dict[str, Any] | None:
        return next((e for e in tx_events(csms, since) if predicate(e)), None)

    return await csms.trio.wait_for(find, timeout, what=what)


async def wait_trigger(
    csms: LoopbackCsms, trigger: str, since: int = 0, timeout: float = 10, event_type: str | None = None
) -> dict[str, Any]:
    """The first TransactionEvent after `since` with this triggerReason (and eventType, if given)."""
    return await wait_event(
        csms,
        lambda e: e["triggerReason"] == trigger and event_type in (None, e["eventType"]),
        since,
        timeout,
        what=f"TransactionEvent {event_type or ''} {trigger}",
    )


async def wait_status(
    csms: LoopbackCsms, status: str, evse_id: int = EVSE, since: int = 0, timeout: float = 10
) -> dict[str, Any]:
    """The first StatusNotification after `since` reporting `status` for the EVSE's connector."""

    def find() -> dict[str, Any] | None:
        return next(
            (p for p in statuses(csms, since) if p["evseId"] == evse_id and p["connectorStatus"] == status), None
        )

    return await csms.trio.wait_for(find, timeout, what=f"StatusNotification {status} for EVSE {evse_id}")


def new_events(csms: LoopbackCsms, mark: int) -> list[dict[str, Any]]:
    """TransactionEvents first received after frame `mark`: a resend of one the CSMS already had before (its
    answer was lost with the connection) is left out, as is a second copy."""
    seen = {(tx_id_of(f.payload), f.payload["seqNo"]) for f in tx_frames(csms) if f.index < mark}
    result = []
    for event in tx_events(csms, mark):
        key = (tx_id_of(event), event["seqNo"])
        if key not in seen:
            seen.add(key)
            result.append(event)
    return result


def tx_id_of(event: dict[str, Any]) -> str:
    return str(event["transactionInfo"]["transactionId"])


def has_token(event: dict[str, Any], token: str = TOKEN, token_type: str = TOKEN_TYPE) -> bool:
    """idToken.idToken <Configured valid_idtoken_idtoken> and idToken.type <Configured valid_idtoken_type>."""
    id_token = event.get("idToken") or {}
    return id_token.get("idToken") == token and id_token.get("type") == token_type


def assert_seq_contiguous(events: list[dict[str, Any]]) -> None:
    """Per transaction: seqNo 0, 1, 2 … in the order received, one Started first, at most one Ended, last."""
    by_tx: dict[str, list[dict[str, Any]]] = {}
    for event in events:
        by_tx.setdefault(tx_id_of(event), []).append(event)
    for tx_id, tx in by_tx.items():
        assert [e["seqNo"] for e in tx] == list(range(tx[0]["seqNo"], tx[0]["seqNo"] + len(tx))), (tx_id, tx)
        if tx[0]["seqNo"] == 0:
            assert tx[0]["eventType"] == "Started", tx[0]
        ended = [i for i, e in enumerate(tx) if e["eventType"] == "Ended"]
        assert ended in ([], [len(tx) - 1]), f"Ended not once and last in {tx_id}"


# --- the station's queue (the "Charging Station has no more OCPP messages to be sent" pre-condition) ---------


async def pending(station: Station, tx_id: str | None = None) -> int:
    """Journaled messages not yet answered by the CSMS (what GetTransactionStatus reports on)."""
    return await station.journal.run_sync(station.journal.store.pending_count, tx_id)


async def wait_queue_empty(station: Station, timeout: float = 10) -> None:
    """Until every journaled message has been answered (polled: the delivered marks commit asynchronously)."""
    with trio.fail_after(timeout):
        while await pending(station):  # noqa: ASYNC110 - the journal has no "all delivered" signal to wait on
            await trio.sleep(0.05)


# --- the network ------------------------------------------------------------------------------------------


async def go_offline(csms: LoopbackCsms, station: Station, timeout: float = 10) -> float:
    """ "The OCTT closes the WebSocket connection AND does not accept a reconnect": returns (the Trio time)
    once the station itself knows it is offline, so what happens next is produced offline."""
    csms.refuse_connections(True)
    assert await csms.trio.disconnect(STATION_ID), "the station was not connected"
    with trio.fail_after(timeout):
        await station.link.state.wait_until(lambda state: state is not LinkState.ACCEPTED)
    return trio.current_time()


async def go_online(csms: LoopbackCsms, station: Station, accept_at: float | None = None, timeout: float = 15) -> None:
    """ "The OCTT accepts the reconnection attempt" (from Trio time `accept_at` on; `first_attempt(offline_at)`
    is just before the station's first attempt): returns once the station is online again."""
    if accept_at is not None:
        await trio.sleep_until(accept_at)
    csms.refuse_connections(False)
    await csms.trio.wait_connected(STATION_ID, timeout)
    with trio.fail_after(timeout):
        await station.link.state.wait_until(lambda state: state is LinkState.ACCEPTED)


def first_attempt(offline_at: float, wait_minimum: float = WAIT_MINIMUM) -> float:
    """Just before the station's first reconnection attempt (RetryBackOffWaitMinimum after going offline):
    "the OCTT waits RetryBackOffWaitMinimum seconds before accepting a reconnection attempt"."""
    return offline_at + wait_minimum - 0.3


# --- reusable states (Part 6 Annex 2.18) ------------------------------------------------------------------------


async def ev_connected_pre_session(csms: LoopbackCsms, station: Station, evse_id: int = EVSE) -> dict[str, Any]:
    """EVConnectedPreSession: connect the EV; StatusNotification Occupied; with TxStartPoint EVConnected a
    TransactionEvent Started (CablePluggedIn or ChargingStateChanged, chargingState EVConnected, evse given)."""
    mark = csms.mark()
    await station.hardware.plug(evse_id)
    occupied = await wait_status(csms, "Occupied", evse_id, since=mark)
    assert occupied["connectorId"] == 1, occupied
    event = await wait_trigger(csms, "CablePluggedIn", since=mark)
    assert event["evse"] == {"id": evse_id, "connectorId": 1}, event
    return event


async def authorized_local(
    csms: LoopbackCsms, station: Station, evse_id: int = EVSE, token: str = TOKEN
) -> dict[str, Any]:
    """Authorized (local): present the idToken; AuthorizeRequest with it; then a TransactionEvent with
    triggerReason Authorized carrying the idToken."""
    mark = csms.mark()
    await station.hardware.tap(token, evse_id=evse_id)
    [authorize] = await csms.trio.wait_action(STATION_ID, "Authorize", since=mark)
    assert authorize["idToken"] == {"idToken": token, "type": TOKEN_TYPE}, authorize
    event = await wait_trigger(csms, "Authorized", since=mark)
    assert has_token(event, token), event
    return event


async def request_start(
    csms: LoopbackCsms, remote_start_id: int, evse_id: int = EVSE, token: str = TOKEN
) -> dict[str, Any]:
    """RequestStartTransactionRequest for the configured EVSE and token; returns the station's answer."""
    return await csms.trio.call(
        STATION_ID,
        "RequestStartTransaction",
        {
            "idToken": {"idToken": token, "type": TOKEN_TYPE},
            "remoteStartId": remote_start_id,
            "evseId": evse_id,
        },
    )


async def energy_transfer_started(csms: LoopbackCsms, station: Station, evse_id: int = EVSE) -> dict[str, Any]:
    """EnergyTransferStarted part 2 (the EV is connected and authorized): the EV draws energy; TransactionEvent
    ChargingStateChanged with chargingState Charging."""
    mark = csms.mark()
    await station.hardware.charge(evse_id, watts=WATTS)
    event = await wait_event(
        csms,
        lambda e: (
            e["triggerReason"] == "ChargingStateChanged" and e["transactionInfo"].get("chargingState") == "Charging"
        ),
        mark,
        what="ChargingStateChanged Charging",
    )
    return event


async def plug_when_authorized(csms: LoopbackCsms, station: Station, evse_id: int = EVSE) -> dict[str, Any]:
    """EnergyTransferStarted part 1 (authorized, no EV yet): connect the EV; StatusNotification Occupied and a
    TransactionEvent CablePluggedIn with chargingState EVConnected."""
    mark = csms.mark()
    await station.hardware.plug(evse_id)
    occupied = await wait_status(csms, "Occupied", evse_id, since=mark)
    assert occupied["connectorId"] == 1, occupied
    event = await wait_trigger(csms, "CablePluggedIn", since=mark)
    # Part 6 EnergyTransferStarted part 1 step 3
    assert event["transactionInfo"]["chargingState"] == "EVConnected", event
    return event


async def charging_session(csms: LoopbackCsms, station: Station, evse_id: int = EVSE) -> str:
    """The usual way to EnergyTransferStarted: plug, present the card, the EV draws. Returns the transactionId."""
    started = await ev_connected_pre_session(csms, station, evse_id)
    await authorized_local(csms, station, evse_id)
    await energy_transfer_started(csms, station, evse_id)
    return tx_id_of(started)


# --- meter values ---------------------------------------------------------------------------------------------


def samples(event: dict[str, Any]) -> list[dict[str, Any]]:
    return [s for mv in event.get("meterValue", []) for s in mv["sampledValue"]]


def assert_measurands(meter_value: dict[str, Any], measurands: str, context: str, phases: int = 3) -> None:
    """A MeterValue carries one element per configured measurand (per phase where the measurand is per phase),
    every element has the context, the right unit, and per-phase ones the phases in use."""
    sampled = meter_value["sampledValue"]
    for s in sampled:
        assert s.get("context") == context, s
        measurand = s.get("measurand", "Energy.Active.Import.Register")
        assert s.get("unitOfMeasure", {}).get("unit", "Wh") == UNITS[measurand], s
    for measurand in measurands.split(","):
        found = [s for s in sampled if s.get("measurand", "Energy.Active.Import.Register") == measurand]
        assert found, f"{measurand} missing in {sampled}"
        if measurand in PHASES and phases == 3:
            assert {s.get("phase") for s in found} == PHASES[measurand], found
    assert {s.get("measurand", "Energy.Active.Import.Register") for s in sampled} <= set(measurands.split(","))


def epoch(timestamp: str) -> float:
    """An OCPP dateTime (UTC, Z) as seconds since the epoch."""
    return datetime.fromisoformat(timestamp.replace("Z", "+00:00")).timestamp()


def off_boundary(timestamp: str, interval: float) -> float:
    """How far a timestamp is from the nearest wall-clock boundary of `interval` seconds (0 = on it)."""
    rest = math.fmod(epoch(timestamp), interval)
    return min(rest, interval - rest)
