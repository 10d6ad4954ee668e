"""Part 6 C with the local authorization list (Part 5 §4.4, Local Authorization List Management profile): offline
authorization through the list (TC_C_21…C_25), online authorization through it (TC_C_27…C_31) and GroupId with
listed tokens (TC_C_40, C_43).

Memory state IdTokenLocalAuthList is a Full SendLocalList from the CSMS (`auth_helpers.install_list`). The station's
factory settings are what the cases configure: LocalAuthListCtrlr.Enabled, AuthCtrlr.LocalPreAuthorize and
LocalAuthorizeOffline true, LocalAuthListCtrlr.DisablePostAuthorize false. OfflineTxForUnknownIdEnabled is not
implemented (the station never starts offline for an unknown idToken), which is what TC_C_21…C_24 ask for ("false
(If implemented)"); TC_C_25 asks for true "(If implemented)", see there. The station has no parking bay sensor, so
the "Drive EV into parking bay" steps and the EVDetected messages that depend on TxStartPoint ParkingBayOccupancy do
not occur.
"""

from __future__ import annotations

from pathlib import Path

import pytest
import trio

from appliance.lab.csms import LoopbackCsms
from tests.conformance.auth_helpers import (
    BLOCKED,
    EVSE,
    EXPIRED,
    GROUP,
    INVALID,
    QUIET,
    VALID,
    VALID2,
    auth_station,
    authorizes,
    entry,
    go_offline,
    go_online,
    id_token,
    install_list,
    invalid_group_member_cannot_stop,
    offered,
    present,
    refused_silently,
    seed_cache,
)
from tests.conformance.helpers import get_item, get_variables
from tests.conformance.tx_helpers import (
    energy_transfer_started,
    ev_connected_pre_session,
    has_token,
    tx_events,
    tx_id_of,
    wait_queue_empty,
    wait_status,
    wait_trigger,
)

# --- offline authorization through the list --------------------------------------------------------------------------


async def test_TC_C_21_offline_local_list_accepted(csms: LoopbackCsms, data_dir: Path) -> None:
    """TC_C_21_CS: IdTokenLocalAuthList for the valid idToken; StartOfflineTransaction (offline: the card is
    presented and the EV connected; then the reconnection is accepted). The card is presented again and the EV
    leaves.

    Step 1: the queue is emptied; every TransactionEvent before the StopAuthorized one has offline true; one of the
    messages has triggerReason StopAuthorized.
    """
    async with auth_station(csms, data_dir) as station:
        await install_list(csms, 1, entry(VALID))
        mark = csms.mark()
        await go_offline(csms, station)
        assert await present(station, VALID) == "accepted", "the list authorizes offline"
        await station.hardware.plug(EVSE)
        await go_online(csms, station)
        await wait_queue_empty(station)

        assert await present(station, VALID) == "accepted"
        stop = await wait_trigger(csms, "StopAuthorized", since=mark)
        await station.hardware.unplug(EVSE)
        await wait_status(csms, "Available", since=mark)
        events = tx_events(csms, mark)
    before = events[: events.index(stop)]
    assert before and all(e.get("offline") is True for e in before), before
    assert any(has_token(e, VALID) for e in before), "the offline authorization is reported"
    assert before[0]["eventType"] == "Started" and before[0]["triggerReason"] == "Authorized", before[0]
    assert authorizes(csms, mark) == []
    assert {tx_id_of(e) for e in events} == {tx_id_of(stop)}


@pytest.mark.parametrize(
    ("token", "status"),
    [(INVALID, "Invalid"), (BLOCKED, "Blocked"), (EXPIRED, "Expired")],
    ids=["TC_C_22_invalid", "TC_C_23_blocked", "TC_C_24_expired"],
)
async def test_TC_C_22_23_24_offline_local_list_not_accepted(
    csms: LoopbackCsms, data_dir: Path, token: str, status: str
) -> None:
    """TC_C_22_CS (Invalid), TC_C_23_CS (Blocked), TC_C_24_CS (Expired): IdTokenLocalAuthList with the card in that
    status; offline (reconnection refused), the card is presented; then the reconnection is accepted.

    The card is refused offline (no energy). Step 5: the queue holds a TransactionEvent (EVDetected, offline) only
    with TxStartPoint ParkingBayOccupancy; with this station's start points nothing is queued, so nothing at all is
    sent after reconnecting, and the station does not ask the CSMS about the card afterwards either.
    """
    async with auth_station(csms, data_dir) as station:
        await install_list(csms, 1, entry(token, status))
        await go_offline(csms, station)
        mark = await refused_silently(csms, station, token)
        await go_online(csms, station)
        await trio.sleep(QUIET)
        assert tx_events(csms, mark) == []
        assert authorizes(csms, mark) == []


async def test_TC_C_25_local_list_over_cache_offline(csms: LoopbackCsms, data_dir: Path) -> None:
    """TC_C_25_CS: IdTokenCached Accepted for the valid idToken, and IdTokenLocalAuthList with the same idToken set
    as Invalid; StopTxOnInvalidId false; EVConnectedPreSession; offline, the card is presented; reconnection.

    Step 3: the station does NOT start a transaction for the card (the list outranks the cache): no Authorized /
    idToken event, no energy. The case configures OfflineTxForUnknownIdEnabled true "(If implemented)"; the
    station does not implement it (the variable is absent, GetVariables says UnknownVariable), which cannot turn a
    listed Invalid token into an accepted one either, so the case runs without it.
    """
    async with auth_station(csms, data_dir, variables={"TxCtrlr.StopTxOnInvalidId": False}) as station:
        await seed_cache(csms, station, VALID)
        await install_list(csms, 1, entry(VALID, "Invalid"))
        [absent] = await get_variables(csms, get_item("AuthCtrlr", "OfflineTxForUnknownIdEnabled"))
        assert absent["attributeStatus"] == "UnknownVariable", absent
        await ev_connected_pre_session(csms, station)
        await go_offline(csms, station)
        mark = await refused_silently(csms, station, VALID)
        await go_online(csms, station)
        await trio.sleep(QUIET)
        events = tx_events(csms, mark)
        assert offered(station) == 0
    assert not [e for e in events if e["triggerReason"] == "Authorized" or "idToken" in e], events
    assert not [e for e in events if e["transactionInfo"].get("chargingState") == "Charging"], events


# --- online authorization through the list ----------------------------------------------------------------------------


async def test_TC_C_27_online_local_list_accepted(csms: LoopbackCsms, data_dir: Path) -> None:
    """TC_C_27_CS: IdTokenLocalAuthList (Accepted), LocalPreAuthorize true; the card is presented (no EV yet).

    Step 1: TransactionEvent triggerReason Authorized with the idToken, without an AuthorizeRequest (the list
    authorizes it). Then EVConnectedPreSession and EnergyTransferStarted; post scenario: energy is transferred.
    """
    async with auth_station(csms, data_dir) as station:
        await install_list(csms, 1, entry(VALID))
        mark = csms.mark()
        assert await present(station, VALID) == "accepted"
        authorized = await wait_trigger(csms, "Authorized", since=mark)
        await station.hardware.plug(EVSE)
        await wait_trigger(csms, "CablePluggedIn", since=mark)
        await energy_transfer_started(csms, station)
        assert offered(station) > 0
    assert authorizes(csms, mark) == []
    assert has_token(authorized, VALID) and authorized["eventType"] == "Started", authorized


@pytest.mark.parametrize(
    ("token", "status", "plugged"),
    [(INVALID, "Invalid", False), (BLOCKED, "Blocked", True), (EXPIRED, "Expired", True)],
    ids=["TC_C_28_invalid", "TC_C_29_blocked", "TC_C_30_expired"],
)
async def test_TC_C_28_29_30_online_local_list_not_accepted(
    csms: LoopbackCsms, data_dir: Path, token: str, status: str, plugged: bool
) -> None:
    """TC_C_28_CS (Invalid & not accepted; no EV), TC_C_29_CS (Blocked) and TC_C_30_CS (Expired) (from
    EVConnectedPreSession): IdTokenLocalAuthList with the card in that status, LocalPreAuthorize true,
    LocalAuthListCtrlr.DisablePostAuthorize false; the card is presented.

    Step 1: AuthorizeRequest with the card's idToken / type (a listed non-Accepted token is checked with the CSMS);
    the CSMS answers the same status: refused, no TransactionEvent.
    """
    csms.set_token(token, status)
    async with auth_station(csms, data_dir) as station:
        await install_list(csms, 1, entry(token, status))
        if plugged:
            await ev_connected_pre_session(csms, station)
        mark = await refused_silently(csms, station, token)
    assert [a["idToken"] for a in authorizes(csms, mark)] == [id_token(token)]


async def test_TC_C_31_online_local_list_invalid_but_accepted(csms: LoopbackCsms, data_dir: Path) -> None:
    """TC_C_31_CS: IdTokenLocalAuthList with the card Invalid, but the CSMS accepts it; DisablePostAuthorize false.

    Authorized (the card is asked about: AuthorizeRequest, Accepted; TransactionEvent Authorized with the idToken),
    EVConnectedPreSession, EnergyTransferStarted. Post scenario: energy is transferred.
    """
    csms.set_token(INVALID, "Accepted")
    async with auth_station(csms, data_dir) as station:
        await install_list(csms, 1, entry(INVALID, "Invalid"))
        mark = csms.mark()
        assert await present(station, INVALID) == "accepted"
        authorized = await wait_trigger(csms, "Authorized", since=mark)
        await station.hardware.plug(EVSE)
        await wait_trigger(csms, "CablePluggedIn", since=mark)
        await energy_transfer_started(csms, station)
        assert offered(station) > 0
    assert [a["idToken"] for a in authorizes(csms, mark)] == [id_token(INVALID)]
    assert has_token(authorized, INVALID), authorized


# --- GroupId with listed tokens ---------------------------------------------------------------------------------------


async def test_TC_C_40_group_id_with_local_list(csms: LoopbackCsms, data_dir: Path) -> None:
    """TC_C_40_CS: two valid idTokens with the same GroupId in the local list, LocalPreAuthorize true;
    EVConnectedPreSession.

    Step 1: TransactionEvent Authorized with the first idToken (no AuthorizeRequest: listed), eventType Updated.
    EnergyTransferStarted. idToken2 is presented: StopAuthorized. Step 4: TransactionEvent triggerReason
    StopAuthorized with idToken2 (the case text expects eventType Updated, i.e. a TxStopPoint without Authorized; with
    this station's default TxStopPoint EVConnected,Authorized the same event is the Ended one, stoppedReason Local).
    """
    async with auth_station(csms, data_dir) as station:
        await install_list(csms, 1, entry(VALID, group=GROUP), entry(VALID2, group=GROUP))
        started = await ev_connected_pre_session(csms, station)
        mark = csms.mark()
        assert await present(station, VALID) == "accepted"
        authorized = await wait_trigger(csms, "Authorized", since=mark)
        assert has_token(authorized, VALID) and authorized["eventType"] == "Updated", authorized
        await energy_transfer_started(csms, station)
        assert await present(station, VALID2) == "accepted"
        stop = await wait_trigger(csms, "StopAuthorized", since=mark)
        assert authorizes(csms, mark) == [], "both tokens are in the list"
        assert tx_id_of(stop) == tx_id_of(started)
        assert stop["eventType"] in ("Updated", "Ended"), stop
        assert stop["transactionInfo"].get("stoppedReason", "Local") == "Local", stop
        assert offered(station) == 0
    assert has_token(stop, VALID2), f"step 4: the StopAuthorized event carries idToken2: {stop}"


async def test_TC_C_43_group_id_invalid_with_local_list(csms: LoopbackCsms, data_dir: Path) -> None:
    """TC_C_43_CS: the local list holds a valid and an invalid idToken with the same GroupId, LocalPreAuthorize true;
    EVConnectedPreSession.

    Step 1: TransactionEvent Authorized with the valid idToken (listed: no AuthorizeRequest). EnergyTransferStarted.
    The invalid card: step 4 is an AuthorizeRequest with the invalid idToken (listed non-Accepted → asked); the CSMS
    answers Invalid with the same group. The OCTT waits: no TransactionEvent; the energy transfer goes on.
    """
    csms.set_token(INVALID, "Invalid", group_id=GROUP)
    async with auth_station(csms, data_dir) as station:
        await install_list(csms, 1, entry(VALID, group=GROUP), entry(INVALID, "Invalid", group=GROUP))
        mark = await invalid_group_member_cannot_stop(csms, station)
    assert [a["idToken"] for a in authorizes(csms, mark)] == [id_token(INVALID)]
