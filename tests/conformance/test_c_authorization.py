"""Part 6 C, online authorization at the CSMS: local start refused (TC_C_02, C_06, C_07, C_56), local stop by a
different idToken (TC_C_04) and authorization by GroupId (TC_C_39, C_42).

The station has an RFID reader per EVSE and a fixed cable without a lock that would keep the EV from being
connected before authorization, so the "no cable lock" variants apply (Part 5: C-30, NOT AQ-2); TC_C_05 (cable
lock) does not. Every case starts from the Part 6 preconditions with the station's factory authorization
settings (AuthCtrlr.Enabled true, DisableRemoteAuthorization false); the cards are not cached beforehand.
"""

from __future__ import annotations

from pathlib import Path

import pytest
import trio

from appliance.lab.csms import Delayed, LoopbackCsms
from tests.conformance.auth_helpers import (
    BLOCKED,
    EVSE,
    EXPIRED,
    GROUP,
    INVALID,
    OTHER,
    QUIET,
    UNKNOWN,
    VALID,
    VALID2,
    auth_station,
    authorizes,
    entry,
    id_token,
    install_list,
    offered,
    present,
    refused_silently,
    seed_cache,
)
from tests.conformance.helpers import STATION_ID
from tests.conformance.tx_helpers import (
    energy_transfer_started,
    ev_connected_pre_session,
    has_token,
    tx_events,
    tx_id_of,
    wait_trigger,
)

# --- local start, not accepted ----------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("case", "token", "status"),
    [
        ("TC_C_02", INVALID, "Invalid"),
        ("TC_C_06", BLOCKED, "Blocked"),
        ("TC_C_07", EXPIRED, "Expired"),
        ("TC_C_56", UNKNOWN, "Unknown"),
    ],
    ids=["TC_C_02_invalid", "TC_C_06_blocked", "TC_C_07_expired", "TC_C_56_unknown"],
)
async def test_TC_C_02_06_07_56_local_start_not_accepted(
    csms: LoopbackCsms, data_dir: Path, case: str, token: str, status: str
) -> None:
    """TC_C_02_CS (Invalid), TC_C_06_CS (Blocked), TC_C_07_CS (Expired), TC_C_56_CS (Unknown): from
    EVConnectedPreSession the idToken is presented and the CSMS answers the AuthorizeRequest with that status.

    Step 1: AuthorizeRequest with idToken.idToken / idToken.type of the presented card. Note: no
    TransactionEventRequest after the AuthorizeRequest (the OCTT waits); the EVSE offers no energy.
    """
    csms.set_token(token, status)
    async with auth_station(csms, data_dir) as station:
        await ev_connected_pre_session(csms, station)
        mark = await refused_silently(csms, station, token)
    [authorize] = authorizes(csms, mark)
    assert authorize["idToken"] == id_token(token), case


# --- local stop by a different idToken ----------------------------------------------------------------------------


async def test_TC_C_04_local_stop_different_id_token(csms: LoopbackCsms, data_dir: Path) -> None:
    """TC_C_04_CS: EnergyTransferStarted with the valid idToken (no GroupId); a different idToken, neither cached
    nor in the local list and of no matching GroupId, is presented.

    Step 1: the station sends an AuthorizeRequest for the different idToken; step 2: the OCTT answers Accepted. The
    station still refuses it locally: it shares no GroupId with the session. Note: no TransactionEventRequest with
    an idToken after the different card (the OCTT waits). Post scenario: no TransactionEventRequest(Ended); energy
    still flows.
    """
    csms.set_token(OTHER, "Accepted")
    async with auth_station(csms, data_dir) as station:
        started = await ev_connected_pre_session(csms, station)
        assert await present(station, VALID) == "accepted"
        await wait_trigger(csms, "Authorized")
        await energy_transfer_started(csms, station)

        mark = csms.mark()
        assert await present(station, OTHER) == "rejected"
        await trio.sleep(QUIET)
        events = tx_events(csms, mark)
        assert offered(station) > 0, "the energy transfer goes on"
    assert [a["idToken"] for a in authorizes(csms, mark)] == [id_token(OTHER)], "step 1: an AuthorizeRequest for it"
    assert not [e for e in events if "idToken" in e], events
    assert not [e for e in tx_events(csms) if e["eventType"] == "Ended" and tx_id_of(e) == tx_id_of(started)]


@pytest.mark.parametrize("memory", ["local_list", "cache"])
async def test_TC_C_04_different_id_token_known_locally(csms: LoopbackCsms, data_dir: Path, memory: str) -> None:
    """TC_C_04 with the different idToken already known Accepted (no GroupId) to the local list or the cache
    (LocalPreAuthorize true, the factory value): the station's own memory answers for it, so no AuthorizeRequest
    goes out, and it is refused as in TC_C_04: no TransactionEvent, the energy transfer goes on."""
    async with auth_station(csms, data_dir) as station:
        if memory == "local_list":
            await install_list(csms, 1, entry(OTHER))
        else:
            await seed_cache(csms, station, OTHER)
        await ev_connected_pre_session(csms, station)
        assert await present(station, VALID) == "accepted"
        await wait_trigger(csms, "Authorized")
        await energy_transfer_started(csms, station)

        mark = csms.mark()
        assert await present(station, OTHER) == "rejected"
        await trio.sleep(QUIET)
        assert authorizes(csms, mark) == [] and tx_events(csms, mark) == []
        assert offered(station) > 0


# --- GroupId --------------------------------------------------------------------------------------------------------


async def test_TC_C_39_group_id_success(csms: LoopbackCsms, data_dir: Path) -> None:
    """TC_C_39_CS: EVConnectedPreSession; the valid idToken (CSMS: Accepted, groupIdToken <GroupId>) starts,
    EnergyTransferStarted; another valid idToken with the same GroupId is presented and stops the transaction.

    Step 1: AuthorizeRequest with the first idToken. Step 3: TransactionEventRequest triggerReason Authorized with
    that idToken (eventType Updated: the transaction started at plug-in). Step 6: AuthorizeRequest with the
    second idToken. Step 8: TransactionEventRequest triggerReason StopAuthorized with the second idToken (the
    text names <valid_idtoken> in steps 6 and 8: it means the card presented there). As TxStopPoint contains
    Authorized the station may end the transaction at once (eventType Ended, stoppedReason Local).
    """
    csms.set_token(VALID, "Accepted", group_id=GROUP)
    csms.set_token(VALID2, "Accepted", group_id=GROUP)
    async with auth_station(csms, data_dir) as station:
        started = await ev_connected_pre_session(csms, station)
        mark = csms.mark()
        assert await present(station, VALID) == "accepted"
        authorized = await wait_trigger(csms, "Authorized", since=mark)
        assert [a["idToken"] for a in authorizes(csms, mark)] == [id_token(VALID)]
        assert authorized["eventType"] == "Updated" and has_token(authorized, VALID), authorized
        await energy_transfer_started(csms, station)

        mark = csms.mark()
        assert await present(station, VALID2) == "accepted"
        stop = await wait_trigger(csms, "StopAuthorized", since=mark)
        assert [a["idToken"] for a in authorizes(csms, mark)] == [id_token(VALID2)]
        assert tx_id_of(stop) == tx_id_of(started)
        assert stop["transactionInfo"].get("stoppedReason", "Local") == "Local", stop
        assert offered(station) == 0
        assert has_token(stop, VALID2), f"step 8: the StopAuthorized event carries the stopping idToken: {stop}"


async def test_TC_C_42_not_stopped_by_group_id(csms: LoopbackCsms, data_dir: Path) -> None:
    """TC_C_42_CS: as TC_C_39, but the second card of the same GroupId is Invalid at the CSMS.

    Step 1: AuthorizeRequest with the valid idToken. Step 3: TransactionEventRequest Authorized with it. Step 6:
    AuthorizeRequest with the invalid card (CSMS: Invalid, same groupIdToken). The OCTT waits: no
    TransactionEventRequest. Post scenario: the energy transfer is not stopped.
    """
    csms.set_token(VALID, "Accepted", group_id=GROUP)
    csms.set_token(INVALID, "Invalid", group_id=GROUP)
    async with auth_station(csms, data_dir) as station:
        await ev_connected_pre_session(csms, station)
        mark = csms.mark()
        assert await present(station, VALID) == "accepted"
        authorized = await wait_trigger(csms, "Authorized", since=mark)
        assert has_token(authorized, VALID) and authorizes(csms, mark)[0]["idToken"] == id_token(VALID)
        await energy_transfer_started(csms, station)

        mark = csms.mark()
        assert await present(station, INVALID) == "rejected"
        await trio.sleep(QUIET)
        assert [a["idToken"] for a in authorizes(csms, mark)] == [id_token(INVALID)]
        assert tx_events(csms, mark) == []
        assert offered(station) > 0, "the energy transfer is not stopped"


# --- an answer that comes after the EV left (not a Part 6 case) ---------------------------------------------------

HOLD = 1.0


async def test_a_card_accepted_after_its_ev_left_opens_no_transaction(csms: LoopbackCsms, data_dir: Path) -> None:
    """A card is presented to a plugged EV; the CSMS answers the AuthorizeRequest only after the EV was unplugged
    (a fleet of 1,000 stations on two cores did this). Applied then, the authorization would open a transaction
    for nobody, ended only by EVConnectionTimeOut (120 s): it is dropped, no TransactionEvent follows the Ended."""
    csms.set_response("Authorize", Delayed(HOLD, {"idTokenInfo": {"status": "Accepted"}}))
    async with auth_station(csms, data_dir) as station:
        await ev_connected_pre_session(csms, station)
        mark = csms.mark()
        await station.hardware.tap(VALID, evse_id=EVSE)
        await csms.trio.wait_action(STATION_ID, "Authorize", since=mark)
        await station.hardware.unplug(EVSE)
        await wait_trigger(csms, "EVCommunicationLost", since=mark, event_type="Ended")
        await trio.sleep(HOLD + QUIET)  # the answer arrived meanwhile
        assert [e["eventType"] for e in tx_events(csms, mark)] == ["Ended"]
        state = station.runners[EVSE].state
        assert state.authorization is None and state.tx is None


async def test_a_card_presented_before_plugging_in_stands_when_accepted_late(
    csms: LoopbackCsms, data_dir: Path
) -> None:
    """The counterpart: with no EV at the card, a late Accepted authorizes the EVSE (TxStartPoint Authorized:
    the transaction starts) and the EV may plug in afterwards."""
    csms.set_response("Authorize", Delayed(HOLD, {"idTokenInfo": {"status": "Accepted"}}))
    async with auth_station(csms, data_dir) as station:
        mark = csms.mark()
        await station.hardware.tap(VALID, evse_id=EVSE)
        started = await wait_trigger(csms, "Authorized", since=mark, event_type="Started")
        assert has_token(started, VALID)
        assert station.runners[EVSE].state.authorization is not None
