"""Part 6 C, the authorization cache (AuthCacheCtrlr, Part 5 feature C-49 and C-53): authorization through the
cache (TC_C_08…C_13, C_16, C_17), storing in it (TC_C_32, C_33, C_34, C_36, C_46), clearing it (TC_C_37, C_38)
and GroupId with cached tokens (TC_C_41, C_44).

The cache is filled as Part 6's memory state IdTokenCached does it: the card is presented once and the CSMS
answers (`auth_helpers.seed_cache`, on EVSE 2 so the case's EVSE 1 starts clean). The station's factory settings
are those the cases ask for (AuthCacheCtrlr.Enabled, AuthCtrlr.LocalPreAuthorize and LocalAuthorizeOffline true,
AuthCacheCtrlr.DisablePostAuthorize false); a case that needs another value sets it in `[variables]`.
TC_C_15, C_18 (MaxEnergyOnInvalidId > 0: the station does not implement MaxEnergyOnInvalidId) and TC_C_57
(DisablePostAuthorize) are not part of this set.
"""

from __future__ import annotations

from pathlib import Path

import pytest
import trio

from appliance.lab.csms import LoopbackCsms
from appliance.station import Station
from tests.conformance.auth_helpers import (
    BLOCKED,
    EVSE,
    GROUP,
    INVALID,
    QUIET,
    VALID,
    VALID2,
    auth_station,
    authorizes,
    go_offline,
    go_online,
    id_token,
    in_future,
    invalid_group_member_cannot_stop,
    offered,
    present,
    refused_silently,
    restarted_station,
    seed_cache,
)
from tests.conformance.helpers import STATION_ID, set_item, set_variables
from tests.conformance.tx_helpers import (
    energy_transfer_started,
    ev_connected_pre_session,
    has_token,
    tx_events,
    tx_id_of,
    wait_event,
    wait_status,
    wait_trigger,
)

# --- authorization through the cache ---------------------------------------------------------------------------------


async def test_TC_C_08_cache_accepted(csms: LoopbackCsms, data_dir: Path) -> None:
    """TC_C_08_CS: IdTokenCached (Accepted), LocalPreAuthorize true; from EVConnectedPreSession the cached card is
    presented: Authorized without an AuthorizeRequest (the idToken is cached), TransactionEvent Authorized with
    the idToken; EnergyTransferStarted. Post scenario: energy transfer is started."""
    async with auth_station(csms, data_dir) as station:
        await seed_cache(csms, station, VALID)
        await ev_connected_pre_session(csms, station)
        mark = csms.mark()
        assert await present(station, VALID) == "accepted"
        authorized = await wait_trigger(csms, "Authorized", since=mark)
        await energy_transfer_started(csms, station)
        assert offered(station) > 0
    assert authorizes(csms, mark) == [], "a cached Accepted idToken needs no AuthorizeRequest"
    assert has_token(authorized, VALID) and authorized["eventType"] == "Updated", authorized


@pytest.mark.parametrize(
    ("token", "status"), [(INVALID, "Invalid"), (BLOCKED, "Blocked")], ids=["TC_C_09_invalid", "TC_C_10_blocked"]
)
async def test_TC_C_09_10_cache_not_accepted(csms: LoopbackCsms, data_dir: Path, token: str, status: str) -> None:
    """TC_C_09_CS (Invalid & not accepted), TC_C_10_CS (Blocked): IdTokenCached with that status,
    DisablePostAuthorize false; from EVConnectedPreSession the card is presented.

    Step 1: AuthorizeRequest with the card's idToken / type (a cached non-Accepted token is checked with the CSMS);
    the CSMS still answers the status: refused, no TransactionEvent, no energy.
    """
    async with auth_station(csms, data_dir) as station:
        await seed_cache(csms, station, token, status)
        await ev_connected_pre_session(csms, station)
        mark = await refused_silently(csms, station, token)
    assert [a["idToken"] for a in authorizes(csms, mark)] == [id_token(token)]


async def test_TC_C_11_cache_expired(csms: LoopbackCsms, data_dir: Path) -> None:
    """TC_C_11_CS: the valid idToken is in the cache, but its entry has expired (cacheExpiryDateTime passed); from
    EVConnectedPreSession it is presented.

    Step 1: AuthorizeRequest with the valid idToken / type (an expired entry is not used); the CSMS answers Expired:
    refused, no TransactionEvent.
    """
    async with auth_station(csms, data_dir) as station:
        await seed_cache(csms, station, VALID, cache_expiry=in_future(-60))
        csms.set_token(VALID, "Expired")
        await ev_connected_pre_session(csms, station)
        mark = await refused_silently(csms, station, VALID)
    assert [a["idToken"] for a in authorizes(csms, mark)] == [id_token(VALID)]


async def test_TC_C_12_cache_invalid_but_accepted(csms: LoopbackCsms, data_dir: Path) -> None:
    """TC_C_12_CS: IdTokenCached Invalid, but the CSMS now accepts the token; from EVConnectedPreSession it is
    presented.

    Step 1: AuthorizeRequest with the idToken; the CSMS answers Accepted. Step 3 (optional): TransactionEvent
    (here Authorized, with the idToken). EnergyTransferStarted; post scenario: energy transfer is started.
    """
    async with auth_station(csms, data_dir) as station:
        await seed_cache(csms, station, INVALID, "Invalid")
        csms.set_token(INVALID, "Accepted")
        await ev_connected_pre_session(csms, station)
        mark = csms.mark()
        assert await present(station, INVALID) == "accepted"
        authorized = await wait_trigger(csms, "Authorized", since=mark)
        await energy_transfer_started(csms, station)
        assert offered(station) > 0
    assert [a["idToken"] for a in authorizes(csms, mark)] == [id_token(INVALID)]
    assert has_token(authorized, INVALID), authorized


async def test_TC_C_13_cache_accepted_cable_not_connected(csms: LoopbackCsms, data_dir: Path) -> None:
    """TC_C_13_CS: IdTokenCached Accepted; the cached card is presented before the EV is connected.

    Step 1: TransactionEvent triggerReason Authorized with the idToken; eventType Started (TxStartPoint contains
    Authorized, no transaction yet). No energy until the EV is connected: EVConnectedPreSession, then
    EnergyTransferStarted; post scenario: energy transfer is started.
    """
    async with auth_station(csms, data_dir) as station:
        await seed_cache(csms, station, VALID)
        mark = csms.mark()
        assert await present(station, VALID) == "accepted"
        started = await wait_trigger(csms, "Authorized", since=mark)
        assert started["eventType"] == "Started" and has_token(started, VALID), started
        assert offered(station) == 0, "no EV yet"

        plugged_mark = csms.mark()
        await station.hardware.plug(EVSE)
        await wait_status(csms, "Occupied", since=plugged_mark)
        plugged = await wait_trigger(csms, "CablePluggedIn", since=plugged_mark)
        assert plugged["eventType"] == "Updated" and tx_id_of(plugged) == tx_id_of(started)
        await energy_transfer_started(csms, station)
        assert offered(station) > 0
    assert authorizes(csms, mark) == []


async def _offline_start_then_invalid(csms: LoopbackCsms, station: Station) -> int:
    """IdTokenCached Accepted and EVConnectedPreSession, then: the network goes (reconnects refused), the cached
    card is presented and the EV draws energy, all offline; the CSMS now holds the token Invalid and accepts the
    reconnection. Returns the mark taken before the station came back."""
    await seed_cache(csms, station, VALID)
    await ev_connected_pre_session(csms, station)
    await go_offline(csms, station)
    assert await present(station, VALID) == "accepted"
    await station.hardware.charge(EVSE, watts=7400)
    runner = station.runners[EVSE]
    with trio.fail_after(5):
        await runner.changed.wait_until(lambda _: runner.state.charging_state == "Charging")
    csms.set_token(VALID, "Invalid")
    mark = csms.mark()
    await go_online(csms, station)
    return mark


def _offline_validations(events: list[dict]) -> None:
    """Step 3 of TC_C_16 (step 2 of TC_C_17): a message Authorized with the idToken and offline true, a message
    ChargingStateChanged with offline true."""
    assert any(
        e["triggerReason"] == "Authorized" and has_token(e, VALID) and e.get("offline") is True for e in events
    ), events
    assert any(e["triggerReason"] == "ChargingStateChanged" and e.get("offline") is True for e in events), events


async def test_TC_C_16_cache_stop_tx_on_invalid_id_true(csms: LoopbackCsms, data_dir: Path) -> None:
    """TC_C_16_CS: StopTxOnInvalidId true, LocalAuthorizeOffline true; the cached card starts the energy transfer
    offline; on reconnection the queue is emptied and the CSMS answers the idToken with Invalid.

    Step 3: a message Authorized (idToken, offline true), a message ChargingStateChanged (offline true), then a
    message Deauthorized (here the Ended one, TxStopPoint contains Authorized: stoppedReason DeAuthorized; sent
    online, offline false as TC_C_18 checks). Post scenario: the energy flow stops.
    """
    async with auth_station(csms, data_dir, variables={"TxCtrlr.StopTxOnInvalidId": True}) as station:
        mark = await _offline_start_then_invalid(csms, station)
        deauthorized = await wait_trigger(csms, "Deauthorized", since=mark)
        events = tx_events(csms, mark)
        assert offered(station) == 0, "energy flow stops on receiving status Invalid"
    _offline_validations(events)
    assert deauthorized["eventType"] == "Ended", deauthorized
    assert deauthorized["transactionInfo"]["stoppedReason"] == "DeAuthorized"
    assert not deauthorized.get("offline", False)
    assert len({tx_id_of(e) for e in events}) == 1


async def test_TC_C_17_cache_stop_tx_on_invalid_id_false(csms: LoopbackCsms, data_dir: Path) -> None:
    """TC_C_17_CS: StopTxOnInvalidId false, MaxEnergyOnInvalidId 0 (not implemented: no energy after Invalid); as
    TC_C_16 up to the CSMS's Invalid.

    Step 2: a message Authorized with the idToken and offline true; a message with chargingState SuspendedEVSE (the
    transaction goes on without energy); no message with triggerReason "SuspendedEVSE" (no such reason). The
    transaction is not ended. Post scenario: the energy flow stops.
    """
    variables = {"TxCtrlr.StopTxOnInvalidId": False}
    async with auth_station(csms, data_dir, variables=variables) as station:
        mark = await _offline_start_then_invalid(csms, station)
        suspended = await wait_event(
            csms,
            lambda e: e["transactionInfo"].get("chargingState") == "SuspendedEVSE" and not e.get("offline"),
            since=mark,
            what="chargingState SuspendedEVSE",
        )
        await trio.sleep(QUIET)
        events = tx_events(csms, mark)
        assert offered(station) == 0, "energy flow stops on receiving status Invalid"
    _offline_validations(events)
    assert suspended["eventType"] == "Updated", suspended
    assert suspended["triggerReason"] in ("Deauthorized", "ChargingStateChanged"), suspended
    assert not [e for e in events if e["eventType"] == "Ended"], "the transaction goes on"
    assert not [e for e in events if e["triggerReason"] == "SuspendedEVSE"]


# --- storing in the cache ----------------------------------------------------------------------------------------


async def test_TC_C_32_cache_persistent_over_reboot(csms: LoopbackCsms, data_dir: Path) -> None:
    """TC_C_32_CS: IdTokenCached Accepted, LocalPreAuthorize true; the station reboots (Reusable State Booted);
    the cached card is presented.

    Step 2: TransactionEvent triggerReason Authorized with the idToken (Started: no EV yet), with no
    AuthorizeRequest before it, so the entry came from the cache kept over the reboot. Then EVConnectedPreSession
    and EnergyTransferStarted.
    """
    async with auth_station(csms, data_dir) as station:
        await seed_cache(csms, station, VALID)
    async with restarted_station(csms, data_dir) as station:
        mark = csms.mark()
        assert await present(station, VALID) == "accepted"
        authorized = await wait_trigger(csms, "Authorized", since=mark)
        await station.hardware.plug(EVSE)
        await wait_trigger(csms, "CablePluggedIn", since=mark)
        await energy_transfer_started(csms, station)
    assert authorizes(csms, mark) == [], "the token was still cached after the reboot"
    assert has_token(authorized, VALID) and authorized["eventType"] == "Started", authorized


async def test_TC_C_33_cache_update_on_authorize_response(csms: LoopbackCsms, data_dir: Path) -> None:
    """TC_C_33_CS: LocalAuthListEnabled true (the list is empty); the cache starts empty.

    Step 1: AuthorizeRequest for the presented card (not cached yet); Accepted. Step 3: TransactionEvent Authorized
    with the idToken (Updated: started at plug-in). A whole session follows (EnergyTransferStarted,
    EVConnectedPostSession, EVDisconnected) and a new EVConnectedPreSession. Step 12: the same card gives a
    TransactionEvent Authorized with the idToken and no AuthorizeRequest: the AuthorizeResponse was cached. The
    OCTT answers it with Invalid.
    """
    async with auth_station(csms, data_dir, variables={"LocalAuthListCtrlr.Enabled": True}) as station:
        await ev_connected_pre_session(csms, station)
        mark = csms.mark()
        assert await present(station, VALID) == "accepted"
        first = await wait_trigger(csms, "Authorized", since=mark)
        assert [a["idToken"] for a in authorizes(csms, mark)] == [id_token(VALID)]
        assert has_token(first, VALID) and first["eventType"] == "Updated", first
        await energy_transfer_started(csms, station)
        stop_mark = csms.mark()
        assert await present(station, VALID) == "accepted"
        await wait_trigger(csms, "StopAuthorized", since=stop_mark)
        await station.hardware.unplug(EVSE)
        await wait_status(csms, "Available", since=stop_mark)

        await ev_connected_pre_session(csms, station)
        csms.set_token(VALID, "Invalid")
        mark = csms.mark()
        assert await present(station, VALID) == "accepted"
        second = await wait_trigger(csms, "Authorized", since=mark)
    assert authorizes(csms, mark) == [], "step 12 follows from the cache filled by the AuthorizeResponse"
    assert has_token(second, VALID) and second["eventType"] == "Updated", second


async def test_TC_C_34_cache_update_on_transaction_response(csms: LoopbackCsms, data_dir: Path) -> None:
    """TC_C_34_CS: IdTokenCached Accepted, LocalPreAuthorize true; from EVConnectedPreSession the card is presented.

    Step 1: TransactionEvent Authorized with the idToken (from the cache, Updated); the OCTT answers Invalid.
    EVDisconnected, then EVConnectedPreSession again and the same card: step 7 is an AuthorizeRequest with the
    idToken, because the TransactionEventResponse replaced the cached Accepted with Invalid; the CSMS answers
    Invalid and the card is refused.
    """
    async with auth_station(csms, data_dir) as station:
        await seed_cache(csms, station, VALID)
        await ev_connected_pre_session(csms, station)
        csms.set_token(VALID, "Invalid")
        mark = csms.mark()
        assert await present(station, VALID) == "accepted"
        authorized = await wait_trigger(csms, "Authorized", since=mark)
        assert authorizes(csms, mark) == []
        assert has_token(authorized, VALID) and authorized["eventType"] == "Updated", authorized
        # The Invalid answer deauthorizes the session (StopTxOnInvalidId true); then the EV leaves.
        await wait_trigger(csms, "Deauthorized", since=mark)
        unplug_mark = csms.mark()
        await station.hardware.unplug(EVSE)
        await wait_status(csms, "Available", since=unplug_mark)

        await ev_connected_pre_session(csms, station)
        mark = await refused_silently(csms, station, VALID)
    assert [a["idToken"] for a in authorizes(csms, mark)] == [id_token(VALID)]


async def test_TC_C_36_cache_local_pre_authorize_false(csms: LoopbackCsms, data_dir: Path) -> None:
    """TC_C_36_CS: AuthCacheEnabled true, LocalPreAuthorize false; IdTokenCached Accepted; the card is presented.

    Step 1: AuthorizeRequest with the idToken although it is cached Accepted; the CSMS answers Invalid: refused, no
    TransactionEvent.
    """
    async with auth_station(csms, data_dir, variables={"AuthCtrlr.LocalPreAuthorize": False}) as station:
        await seed_cache(csms, station, VALID)
        csms.set_token(VALID, "Invalid")
        mark = await refused_silently(csms, station, VALID)
    assert [a["idToken"] for a in authorizes(csms, mark)] == [id_token(VALID)]


async def test_TC_C_46_cache_lifetime(csms: LoopbackCsms, data_dir: Path) -> None:
    """TC_C_46_CS: AuthCacheCtrlr.LifeTime is <Configured TransactionDuration> (1 s here), LocalPreAuthorize true;
    IdTokenCached Accepted; EVConnectedPreSession.

    After waiting longer than the lifetime without using the token, Authorized (local) runs in full: an
    AuthorizeRequest with the idToken (the entry was not used again within its lifetime), then TransactionEvent
    Authorized with the idToken.
    """
    lifetime = 1
    async with auth_station(csms, data_dir, variables={"AuthCacheCtrlr.LifeTime": lifetime}) as station:
        await seed_cache(csms, station, VALID)
        await ev_connected_pre_session(csms, station)
        await trio.sleep(lifetime + 0.3)
        mark = csms.mark()
        assert await present(station, VALID) == "accepted"
        authorized = await wait_trigger(csms, "Authorized", since=mark)
    assert [a["idToken"] for a in authorizes(csms, mark)] == [id_token(VALID)]
    assert has_token(authorized, VALID), authorized


# --- clearing the cache -----------------------------------------------------------------------------------------------


async def test_TC_C_37_clear_cache_accepted(csms: LoopbackCsms, data_dir: Path) -> None:
    """TC_C_37_CS: AuthCacheEnabled true, IdTokenCached Accepted. Step 2: ClearCacheResponse status Accepted.

    Then EVConnectedPreSession and the card: step 5 is an AuthorizeRequest with the idToken (the cache is empty),
    the CSMS accepts, TransactionEvent Authorized, EnergyTransferStarted.
    """
    async with auth_station(csms, data_dir) as station:
        await seed_cache(csms, station, VALID)
        answer = await csms.trio.call(STATION_ID, "ClearCache", {})
        assert answer["status"] == "Accepted", answer
        await ev_connected_pre_session(csms, station)
        mark = csms.mark()
        assert await present(station, VALID) == "accepted"
        authorized = await wait_trigger(csms, "Authorized", since=mark)
        await energy_transfer_started(csms, station)
    assert [a["idToken"] for a in authorizes(csms, mark)] == [id_token(VALID)]
    assert has_token(authorized, VALID)


async def test_TC_C_38_clear_cache_rejected(csms: LoopbackCsms, data_dir: Path) -> None:
    """TC_C_38_CS: AuthCacheEnabled false (set by the CSMS after IdTokenCached). Step 2: ClearCacheResponse status
    Rejected."""
    async with auth_station(csms, data_dir) as station:
        await seed_cache(csms, station, VALID)
        [result] = await set_variables(csms, set_item("AuthCacheCtrlr", "Enabled", "false"))
        assert result["attributeStatus"] == "Accepted", result
        answer = await csms.trio.call(STATION_ID, "ClearCache", {})
    assert answer["status"] == "Rejected", answer


# --- GroupId with cached tokens ---------------------------------------------------------------------------------------


async def test_TC_C_41_group_id_with_cache(csms: LoopbackCsms, data_dir: Path) -> None:
    """TC_C_41_CS: IdTokenCached for the valid idToken and idToken2, both with <Configured GroupId>, LocalPreAuthorize
    true; EVConnectedPreSession.

    Step 1: TransactionEvent Authorized with the first idToken (no AuthorizeRequest: cached). EnergyTransferStarted.
    idToken2 is presented (cached, same group, no AuthorizeRequest either). Step 4: TransactionEvent triggerReason
    StopAuthorized with idToken2 (Ended here, as TxStopPoint contains Authorized).
    """
    async with auth_station(csms, data_dir) as station:
        await seed_cache(csms, station, VALID, group=GROUP)
        await seed_cache(csms, station, VALID2, group=GROUP)
        started = await ev_connected_pre_session(csms, station)
        mark = csms.mark()
        assert await present(station, VALID) == "accepted"
        authorized = await wait_trigger(csms, "Authorized", since=mark)
        assert has_token(authorized, VALID) and authorized["eventType"] == "Updated", authorized
        await energy_transfer_started(csms, station)
        assert await present(station, VALID2) == "accepted"
        stop = await wait_trigger(csms, "StopAuthorized", since=mark)
        assert authorizes(csms, mark) == [], "both tokens are cached"
        assert tx_id_of(stop) == tx_id_of(started)
        assert offered(station) == 0
    assert has_token(stop, VALID2), f"step 4: the StopAuthorized event carries idToken2: {stop}"


async def test_TC_C_44_group_id_invalid_with_cache(csms: LoopbackCsms, data_dir: Path) -> None:
    """TC_C_44_CS: IdTokenCached for the valid idToken and for the invalid one, both with <Configured GroupId>;
    DisablePostAuthorize false; EVConnectedPreSession.

    Step 1: TransactionEvent Authorized with the valid idToken (cached). EnergyTransferStarted. The invalid card:
    step 4 is an AuthorizeRequest with the invalid idToken (cached non-Accepted → asked); the CSMS answers Invalid
    with the same group. The OCTT waits: no TransactionEvent; the energy transfer goes on.
    """
    async with auth_station(csms, data_dir) as station:
        await seed_cache(csms, station, VALID, group=GROUP)
        await seed_cache(csms, station, INVALID, "Invalid", group=GROUP)
        mark = await invalid_group_member_cannot_stop(csms, station)
    assert [a["idToken"] for a in authorizes(csms, mark)] == [id_token(INVALID)]
