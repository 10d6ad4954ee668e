"""Authorization end to end (digest §4; blocks/authorization.py's decision order): a real station against the real
loopback CSMS, in-process unless a restart or the log text of a real process is the point.

Covers what the Part 6 cases in tests/conformance/test_c_*.py and test_d_*.py leave implicit: each Authorize
verdict, who may stop a session, the cache and the local list offline (hit, expiry, ClearCache, updates, limits),
the CSMS refusing an offline-started token on reconnection, remote start with and without AuthorizeRemoteStart, an
EV-side unplug, persistence across a process restart, and idTokens kept out of the log.
"""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

import pytest
import trio

from appliance.hardware.sim.sim_cli import send_request
from appliance.journal.store import JournalStore
from appliance.lab.csms import LoopbackCsms, StationCallError
from appliance.lab.process import config_text, station_process
from appliance.station import Station
from appliance.storage.db import open_station_db
from tests.conformance.auth_helpers import (
    BLOCKED,
    EVSE,
    EXPIRED,
    GROUP,
    INVALID,
    OTHER,
    QUIET,
    SEED_EVSE,
    UNKNOWN,
    VALID,
    VALID2,
    auth_station,
    authorizes,
    entry,
    go_offline,
    go_online,
    id_token,
    in_future,
    install_list,
    list_version,
    offered,
    present,
    refused_silently,
    seed_cache,
    send_local_list,
)
from tests.conformance.helpers import CONNECTORS, STATION_ID, get_item, get_value
from tests.conformance.tx_helpers import (
    energy_transfer_started,
    ev_connected_pre_session,
    has_token,
    tx_events,
    tx_id_of,
    wait_event,
    wait_trigger,
)

# --- online Authorize ------------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("token", "status"), [(VALID, "Accepted"), (BLOCKED, "Blocked"), (EXPIRED, "Expired"), (INVALID, "Invalid")]
)
async def test_online_authorize_verdict(csms: LoopbackCsms, data_dir: Path, token: str, status: str) -> None:
    """Online and not known locally, a card is always checked with an AuthorizeRequest; only Accepted authorizes
    (TransactionEvent Authorized with the idToken, energy offered to the plugged EV), every other status is refused
    (display "rejected", no TransactionEvent, contactor open)."""
    csms.set_token(token, status)
    async with auth_station(csms, data_dir) as station:
        await ev_connected_pre_session(csms, station)
        if status == "Accepted":
            mark = csms.mark()
            assert await present(station, token) == "accepted"
            event = await wait_trigger(csms, "Authorized", since=mark)
            assert has_token(event, token) and offered(station) > 0
        else:
            mark = await refused_silently(csms, station, token)
    assert [a["idToken"] for a in authorizes(csms, mark)] == [id_token(token)]


# --- who may stop a session -------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("stopper", "stopper_group", "stops"),
    [(VALID, GROUP, True), (VALID2, GROUP, True), (OTHER, None, False), (OTHER, "GROUP-0099", False)],
    ids=["same_token", "same_group", "other_token", "other_group"],
)
async def test_who_may_stop(
    csms: LoopbackCsms, data_dir: Path, stopper: str, stopper_group: str | None, stops: bool
) -> None:
    """A session started by a card of group GROUP is stopped by the same card or by another card of GROUP
    (StopAuthorized, stoppedReason Local, energy off); a card without a group or of another group, even one the
    CSMS accepts, is refused and the session goes on (C09, E07, TC_C_04)."""
    csms.set_token(VALID, "Accepted", group_id=GROUP)
    csms.set_token(stopper, "Accepted", group_id=stopper_group)
    async with auth_station(csms, data_dir) as station:
        started = await ev_connected_pre_session(csms, station)
        assert await present(station, VALID) == "accepted"
        await energy_transfer_started(csms, station)
        mark = csms.mark()
        verdict = await present(station, stopper)
        if stops:
            assert verdict == "accepted"
            stop = await wait_trigger(csms, "StopAuthorized", since=mark)
            assert tx_id_of(stop) == tx_id_of(started)
            assert stop["transactionInfo"].get("stoppedReason", "Local") == "Local", stop
            assert offered(station) == 0
        else:
            assert verdict == "rejected"
            await trio.sleep(QUIET)
            assert tx_events(csms, mark) == []
            assert offered(station) > 0


# --- the cache --------------------------------------------------------------------------------------------------------


async def test_cache_hit_offline(csms: LoopbackCsms, data_dir: Path) -> None:
    """A card the CSMS accepted before is authorized from the cache while offline (LocalAuthorizeOffline): energy
    flows, and once back online the queued TransactionEvent Authorized carries the idToken with offline true. No
    AuthorizeRequest is sent for it afterwards."""
    async with auth_station(csms, data_dir) as station:
        await seed_cache(csms, station, VALID)
        await ev_connected_pre_session(csms, station)
        mark = csms.mark()
        await go_offline(csms, station)
        assert await present(station, VALID) == "accepted"
        assert offered(station) > 0
        await go_online(csms, station)
        authorized = await wait_trigger(csms, "Authorized", since=mark)
    assert has_token(authorized, VALID) and authorized.get("offline") is True, authorized
    assert authorizes(csms, mark) == []


@pytest.mark.parametrize("how", ["cacheExpiryDateTime", "LifeTime"])
async def test_cache_expiry_offline(csms: LoopbackCsms, data_dir: Path, how: str) -> None:
    """A cached Accepted entry past its cacheExpiryDateTime, or not used within AuthCacheCtrlr.LifeTime, reads as
    Expired: offline the card is refused."""
    variables = {"AuthCacheCtrlr.LifeTime": 1} if how == "LifeTime" else {}
    async with auth_station(csms, data_dir, variables=variables) as station:
        if how == "LifeTime":
            await seed_cache(csms, station, VALID)
            await trio.sleep(1.3)
        else:
            await seed_cache(csms, station, VALID, cache_expiry=in_future(-60))
        await go_offline(csms, station)
        await refused_silently(csms, station, VALID)


async def test_clear_cache(csms: LoopbackCsms, data_dir: Path) -> None:
    """ClearCache empties the cache (Accepted; AuthCacheCtrlr.Storage drops to 0): a card that was cached is no
    longer known offline and is refused."""
    async with auth_station(csms, data_dir) as station:
        await seed_cache(csms, station, VALID)
        assert int(await get_value(csms, "AuthCacheCtrlr", "Storage") or 0) > 0
        answer = await csms.trio.call(STATION_ID, "ClearCache", {})
        assert answer == {"status": "Accepted"}
        assert int(await get_value(csms, "AuthCacheCtrlr", "Storage") or 0) == 0
        await go_offline(csms, station)
        await refused_silently(csms, station, VALID)


async def test_authorization_decides_from_the_copies_in_memory(csms: LoopbackCsms, data_dir: Path) -> None:
    """The cache and the local list are looked up in memory (blocks/auth_store.py): a station asks the CSMS about
    a card, authorizes cards offline from the list and from the cache, and answers GetLocalListVersion,
    GetVariables of their sizes and a customer information report from the copies."""
    async with auth_station(csms, data_dir) as station:
        await install_list(csms, 1, entry(VALID2))
        await seed_cache(csms, station, VALID)  # the list and the cache are looked up, then the CSMS is asked
        assert await list_version(csms) == 1
        assert await get_value(csms, "LocalAuthListCtrlr", "Entries") == "1"
        assert int(await get_value(csms, "AuthCacheCtrlr", "Storage") or 0) > 0
        await go_offline(csms, station)
        assert await present(station, VALID2) == "accepted"  # the list decides
        assert await present(station, VALID, evse_id=SEED_EVSE) == "accepted"  # the cache decides
        await go_online(csms, station)
        mark = csms.mark()
        report = {"requestId": 5, "report": True, "clear": False, "idToken": id_token(VALID)}
        assert (await csms.trio.call(STATION_ID, "CustomerInformation", report))["status"] == "Accepted"
        sent = await csms.trio.wait_for(
            lambda: csms.actions(STATION_ID, "NotifyCustomerInformation", mark) or None, 10, what="the report"
        )
        assert "authorization cache" in sent[0]["data"] and "local authorization list" not in sent[0]["data"]


async def test_unknown_token_refused_offline(csms: LoopbackCsms, data_dir: Path) -> None:
    """Offline, a card neither in the list nor in the cache is refused (the station has no
    AuthCtrlr.OfflineTxForUnknownIdEnabled, so no Unknown Offline Authorization): no energy, and nothing about it
    reaches the CSMS after reconnecting, although the CSMS would have accepted it. A SetVariables to allow unknown
    idTokens offline finds no such variable."""
    async with auth_station(csms, data_dir) as station:
        [result] = (
            await csms.trio.call(
                STATION_ID,
                "SetVariables",
                {
                    "setVariableData": [
                        {**get_item("AuthCtrlr", "OfflineTxForUnknownIdEnabled"), "attributeValue": "true"}
                    ]
                },
            )
        )["setVariableResult"]
        assert result["attributeStatus"] == "UnknownVariable", result
        await ev_connected_pre_session(csms, station)
        await go_offline(csms, station)
        mark = await refused_silently(csms, station, UNKNOWN)
        await go_online(csms, station)
        await trio.sleep(QUIET)
        # The EVConnected transaction may have its own Updated events replayed (a sample, under load); none of
        # them is about the refused card, and the card is never sent for authorization.
        about_card = [
            e
            for e in tx_events(csms, mark)
            if e.get("idToken", {}).get("idToken") == UNKNOWN or e["triggerReason"] == "Authorized"
        ]
        assert about_card == [] and authorizes(csms, mark) == [], (about_card, tx_events(csms, mark))


# --- the local list ---------------------------------------------------------------------------------------------------


async def test_send_local_list_full_then_differential(csms: LoopbackCsms, data_dir: Path) -> None:
    """Full (version 1: VALID, INVALID-as-Accepted) then Differential (version 2: add VALID2, remove INVALID, VALID
    becomes Blocked): version 2, two entries; offline the list decides: VALID2 charges, VALID (Blocked) and INVALID
    (removed, unknown) are refused."""
    async with auth_station(csms, data_dir) as station:
        await install_list(csms, 1, entry(VALID), entry(INVALID))
        answer = await send_local_list(
            csms, 2, [entry(VALID2), entry(INVALID, None), entry(VALID, "Blocked")], "Differential"
        )
        assert answer["status"] == "Accepted", answer
        assert await list_version(csms) == 2
        assert await get_value(csms, "LocalAuthListCtrlr", "Entries") == "2"
        await go_offline(csms, station)
        await refused_silently(csms, station, VALID, evse_id=SEED_EVSE)
        await refused_silently(csms, station, INVALID, evse_id=SEED_EVSE)
        assert await present(station, VALID2) == "accepted"


async def test_send_local_list_version_mismatch(csms: LoopbackCsms, data_dir: Path) -> None:
    """A Differential whose version is not above the installed one is VersionMismatch and changes nothing; a Full
    replaces the list whatever its version."""
    async with auth_station(csms, data_dir):
        await install_list(csms, 3, entry(VALID))
        for version in (3, 2):
            answer = await send_local_list(csms, version, [entry(VALID2)], "Differential")
            assert answer["status"] == "VersionMismatch", answer
        assert await list_version(csms) == 3
        assert await get_value(csms, "LocalAuthListCtrlr", "Entries") == "1"
        await install_list(csms, 1, entry(VALID2), entry(OTHER))
        assert await list_version(csms) == 1


#: SendLocalList requests that pass the schema but break the message's rules: (case, version, entries, updateType).
BROKEN_LISTS: list[tuple[str, int, list[dict[str, Any]], str]] = [
    ("full-entry-without-info", 2, [entry(VALID2), entry(OTHER, None)], "Full"),
    ("full-same-token-twice", 2, [entry(VALID2), entry(VALID2, "Blocked")], "Full"),
    ("differential-same-token-twice", 2, [entry(VALID2), entry(VALID2, None)], "Differential"),
    ("full-version-0", 0, [entry(VALID2)], "Full"),
    ("full-version-negative", -1, [entry(VALID2)], "Full"),
    ("differential-version-0", 0, [entry(VALID2)], "Differential"),
]


async def test_send_local_list_breaking_its_rules_fails(csms: LoopbackCsms, data_dir: Path) -> None:
    """D01/D02: a SendLocalList with a Full entry without idTokenInfo, the same idToken twice, or versionNumber ≤ 0
    answers Failed (with a reasonCode) and leaves the list and its version exactly as they were — nothing merged."""
    async with auth_station(csms, data_dir) as station:
        await install_list(csms, 1, entry(VALID))
        for case, version, entries, update_type in BROKEN_LISTS:
            answer = await send_local_list(csms, version, entries, update_type)
            assert answer["status"] == "Failed" and answer.get("statusInfo", {}).get("reasonCode"), (case, answer)
            assert await list_version(csms) == 1, case
            assert await get_value(csms, "LocalAuthListCtrlr", "Entries") == "1", case
            assert station.authorizer.local_list.get(id_token(VALID)) == {"status": "Accepted"}, case
            assert station.authorizer.local_list.get(id_token(VALID2)) is None, case


def _long_entry(i: int) -> dict[str, Any]:
    """An entry of about 150 bytes: a 36-character token with a 36-character group."""
    return entry(f"{i:02d}" + "A" * 34, group="G" * 36)


async def test_send_local_list_limits(csms: LoopbackCsms, data_dir: Path) -> None:
    """LocalAuthListCtrlr.ItemsPerMessage 10 and BytesPerMessage 1000, and 10 entries at most in the list:
    11 items in one message → CALLERROR OccurrenceConstraintViolation; 10 items of more than 1000 bytes →
    CALLERROR FormatViolation; a Differential that would make 11 entries → Failed. None of them changes the list
    or its version."""
    async with auth_station(csms, data_dir):
        assert await get_value(csms, "LocalAuthListCtrlr", "ItemsPerMessage") == "10"
        assert await get_value(csms, "LocalAuthListCtrlr", "BytesPerMessage") == "1000"
        await install_list(csms, 1, *[entry(f"0400{i:04X}") for i in range(10)])

        with pytest.raises(StationCallError) as too_many:
            await send_local_list(csms, 2, [entry(f"0500{i:04X}") for i in range(11)])
        assert too_many.value.code == "OccurrenceConstraintViolation"

        with pytest.raises(StationCallError) as too_big:
            await send_local_list(csms, 2, [_long_entry(i) for i in range(10)])
        assert too_big.value.code == "FormatViolation"

        answer = await send_local_list(csms, 2, [entry(VALID)], "Differential")
        assert answer["status"] == "Failed", answer

        assert await list_version(csms) == 1
        assert await get_value(csms, "LocalAuthListCtrlr", "Entries") == "10"


# --- the CSMS refuses an offline-started token ------------------------------------------------------------------------


@pytest.mark.parametrize("stop_tx_on_invalid_id", [True, False])
async def test_offline_start_rejected_on_reconnect(
    csms: LoopbackCsms, data_dir: Path, stop_tx_on_invalid_id: bool
) -> None:
    """Offline, a card of the local list starts charging; on reconnection the CSMS answers the queued
    TransactionEvent that carries the idToken with Invalid. StopTxOnInvalidId true: the transaction ends
    (triggerReason Deauthorized, stoppedReason DeAuthorized); false: it goes on without energy (chargingState
    SuspendedEVSE, not Ended). Either way the contactor opens."""
    variables = {"TxCtrlr.StopTxOnInvalidId": stop_tx_on_invalid_id}
    async with auth_station(csms, data_dir, variables=variables) as station:
        await install_list(csms, 1, entry(VALID))
        csms.set_token(VALID, "Invalid")
        await ev_connected_pre_session(csms, station)
        await go_offline(csms, station)
        assert await present(station, VALID) == "accepted"
        await station.hardware.charge(EVSE, watts=7400)
        await trio.sleep(0.2)
        assert offered(station) > 0
        mark = csms.mark()
        await go_online(csms, station)
        reaction = await wait_event(csms, lambda e: not e.get("offline"), since=mark, what="the station's reaction")
        await trio.sleep(QUIET)
        events = tx_events(csms, mark)
        assert offered(station) == 0
    assert any(has_token(e, VALID) and e.get("offline") is True for e in events), events
    if stop_tx_on_invalid_id:
        assert reaction["eventType"] == "Ended" and reaction["triggerReason"] == "Deauthorized", reaction
        assert reaction["transactionInfo"]["stoppedReason"] == "DeAuthorized"
    else:
        assert reaction["eventType"] == "Updated", reaction
        assert reaction["transactionInfo"]["chargingState"] == "SuspendedEVSE", reaction
        assert not [e for e in events if e["eventType"] == "Ended"]


# --- remote start -----------------------------------------------------------------------------------------------------


async def _request_start(csms: LoopbackCsms, token: str, remote_start_id: int) -> dict[str, Any]:
    return await csms.trio.call(
        STATION_ID,
        "RequestStartTransaction",
        {
            "idToken": id_token(token),
            "remoteStartId": remote_start_id,
            "evseId": EVSE,
        },
    )


@pytest.mark.parametrize("authorize_remote_start", [True, False])
@pytest.mark.parametrize("plug_first", [True, False], ids=["after_plug_in", "before_plug_in"])
async def test_remote_start(csms: LoopbackCsms, data_dir: Path, authorize_remote_start: bool, plug_first: bool) -> None:
    """RequestStartTransaction (F01/F02/F03): Accepted (with the running transactionId when the EV was plugged in
    first). AuthorizeRemoteStart true: an AuthorizeRequest for the idToken first; false: none. Then a
    TransactionEvent RemoteStart with the idToken and remoteStartId (Started before plug-in, Updated after), and
    energy once the EV is there."""
    async with auth_station(
        csms, data_dir, variables={"AuthCtrlr.AuthorizeRemoteStart": authorize_remote_start}
    ) as station:
        started = await ev_connected_pre_session(csms, station) if plug_first else None
        mark = csms.mark()
        answer = await _request_start(csms, VALID2, 77)
        event = await wait_trigger(csms, "RemoteStart", since=mark)
        if not plug_first:
            await station.hardware.plug(EVSE)
            await wait_trigger(csms, "CablePluggedIn", since=mark)
        await energy_transfer_started(csms, station)
    assert answer["status"] == "Accepted", answer
    assert [a["idToken"] for a in authorizes(csms, mark)] == ([id_token(VALID2)] if authorize_remote_start else [])
    assert has_token(event, VALID2) and event["transactionInfo"]["remoteStartId"] == 77, event
    if started is not None:
        assert answer.get("transactionId") == tx_id_of(started)
        assert event["eventType"] == "Updated" and tx_id_of(event) == tx_id_of(started)
    else:
        assert "transactionId" not in answer
        assert event["eventType"] == "Started"


# --- GroupId from a TransactionEvent answer (C09.FR.03) ---------------------------------------------------------------


async def _remote_start_without_authorize(csms: LoopbackCsms, station: Station) -> dict[str, Any]:
    """EVConnectedPreSession, then a remote start for VALID with AuthorizeRemoteStart false: no AuthorizeRequest, so
    the CSMS's answer to the RemoteStart TransactionEvent is the only place the station hears VALID's GroupId.
    Returns once the station has taken that answer in (the session knows a GroupId)."""
    started = await ev_connected_pre_session(csms, station)
    mark = csms.mark()
    assert (await _request_start(csms, VALID, 91))["status"] == "Accepted"
    event = await wait_trigger(csms, "RemoteStart", since=mark)
    assert has_token(event, VALID) and authorizes(csms, mark) == [], event
    with trio.fail_after(10):
        while (auth := station.runners[EVSE].state.authorization) is None or auth.group_id_token is None:  # noqa: ASYNC110
            await trio.sleep(0.02)  # the answer hook has no signal of its own
    return started


@pytest.mark.parametrize(
    ("stopper_group", "stops"), [(GROUP, True), ("GROUP-0099", False)], ids=["same_group", "other_group"]
)
async def test_group_from_transaction_event_answer(
    csms: LoopbackCsms, data_dir: Path, stopper_group: str, stops: bool
) -> None:
    """C09.FR.03: the groupIdToken the CSMS returns in a TransactionEventResponse is the session's GroupId. A second
    card is authorized at the CSMS; of that group it stops the session (StopAuthorized carrying it, stoppedReason
    Local, energy off), of another group it is refused and the session goes on with no TransactionEvent."""
    csms.set_token(VALID, "Accepted", group_id=GROUP)
    csms.set_token(VALID2, "Accepted", group_id=stopper_group)
    async with auth_station(csms, data_dir, variables={"AuthCtrlr.AuthorizeRemoteStart": False}) as station:
        started = await _remote_start_without_authorize(csms, station)
        await energy_transfer_started(csms, station)
        mark = csms.mark()
        verdict = await present(station, VALID2)
        if stops:
            assert verdict == "accepted"
            stop = await wait_trigger(csms, "StopAuthorized", since=mark)
            assert tx_id_of(stop) == tx_id_of(started) and has_token(stop, VALID2), stop
            assert stop["transactionInfo"].get("stoppedReason", "Local") == "Local", stop
            assert offered(station) == 0
        else:
            assert verdict == "rejected"
            await trio.sleep(QUIET)
            assert tx_events(csms, mark) == []
            assert offered(station) > 0
    assert [a["idToken"] for a in authorizes(csms, mark)] == [id_token(VALID2)]


@pytest.mark.parametrize("source", ["transaction_event_answer", "authorize"])
async def test_transaction_group_is_journaled(csms: LoopbackCsms, data_dir: Path, source: str) -> None:
    """The session's GroupId is kept in the journal's transaction row, with the rest of what a restart recovers,
    whether it came from a TransactionEventResponse (C09.FR.03) or from the AuthorizeResponse that started the
    session: the station stops mid-transaction and the row read back from the file still names it."""
    csms.set_token(VALID, "Accepted", group_id=GROUP)
    async with auth_station(csms, data_dir, variables={"AuthCtrlr.AuthorizeRemoteStart": False}) as station:
        if source == "authorize":
            csms.set_response("TransactionEvent", {})  # no idTokenInfo: the AuthorizeResponse is the only source
            started = await ev_connected_pre_session(csms, station)
            assert await present(station, VALID) == "accepted"
            await wait_trigger(csms, "Authorized")
        else:
            started = await _remote_start_without_authorize(csms, station)
    conn = open_station_db(data_dir)
    try:
        [tx] = JournalStore(conn).open_transactions()
    finally:
        conn.close()
    assert tx["transaction_id"] == tx_id_of(started)
    assert tx["group_id_token"] == {"idToken": GROUP, "type": "Central"}, tx


async def test_remote_start_refused_by_authorize(csms: LoopbackCsms, data_dir: Path) -> None:
    """AuthorizeRemoteStart true and the CSMS's own AuthorizeResponse says Invalid: the request was Accepted, but no
    transaction is authorized and the plugged EV gets no energy."""
    csms.set_token(VALID2, "Invalid")
    async with auth_station(csms, data_dir, variables={"AuthCtrlr.AuthorizeRemoteStart": True}) as station:
        await ev_connected_pre_session(csms, station)
        mark = csms.mark()
        answer = await _request_start(csms, VALID2, 78)
        await csms.trio.wait_action(STATION_ID, "Authorize", since=mark)
        await trio.sleep(QUIET)
        assert answer["status"] == "Accepted"
        assert tx_events(csms, mark) == [] and offered(station) == 0


async def test_remote_start_ev_connection_timeout(csms: LoopbackCsms, data_dir: Path) -> None:
    """A remote start without an EV lapses after TxCtrlr.EVConnectionTimeOut (1 s): TransactionEvent Ended,
    triggerReason EVConnectTimeout, stoppedReason Timeout; an EV plugged in afterwards gets no energy (TC_F_04)."""
    async with auth_station(csms, data_dir, variables={"TxCtrlr.EVConnectionTimeOut": 1}) as station:
        mark = csms.mark()
        assert (await _request_start(csms, VALID2, 79))["status"] == "Accepted"
        started = await wait_trigger(csms, "RemoteStart", since=mark)
        ended = await wait_trigger(csms, "EVConnectTimeout", since=mark, timeout=5)
        assert ended["eventType"] == "Ended" and ended["transactionInfo"]["stoppedReason"] == "Timeout"
        assert tx_id_of(ended) == tx_id_of(started)
        await station.hardware.plug(EVSE)
        await station.hardware.charge(EVSE, watts=7400)
        await trio.sleep(QUIET)
        assert offered(station) == 0


# --- EV-side unplug ---------------------------------------------------------------------------------------------------


async def test_ev_side_unplug_ends_authorization(csms: LoopbackCsms, data_dir: Path) -> None:
    """Unplugging the EV ends the transaction (EVCommunicationLost, EVDisconnected) and the authorization with it:
    the next EV plugged in starts a new transaction that is not authorized, gets no energy and carries no idToken."""
    async with auth_station(csms, data_dir) as station:
        first = await ev_connected_pre_session(csms, station)
        assert await present(station, VALID) == "accepted"
        await energy_transfer_started(csms, station)
        mark = csms.mark()
        await station.hardware.unplug(EVSE)
        ended = await wait_trigger(csms, "EVCommunicationLost", since=mark)
        assert ended["eventType"] == "Ended" and ended["transactionInfo"]["stoppedReason"] == "EVDisconnected"
        assert tx_id_of(ended) == tx_id_of(first)
        assert station.hardware.evse_status(EVSE)["authorizedToken"] is None

        second = await ev_connected_pre_session(csms, station)
        await station.hardware.charge(EVSE, watts=7400)
        await trio.sleep(QUIET)
        assert tx_id_of(second) != tx_id_of(first)
        assert offered(station) == 0
        assert not [e for e in tx_events(csms, mark) if "idToken" in e]


# --- a real process: persistence and the log --------------------------------------------------------------------------


def _wait_booted(csms: LoopbackCsms, since: int) -> None:
    csms.wait_action(STATION_ID, "BootNotification", 20, since=since)
    for evse, connector in CONNECTORS:
        csms.wait_action(
            STATION_ID,
            "StatusNotification",
            10,
            since=since,
            predicate=lambda p, e=evse, c=connector: (p["evseId"], p["connectorId"]) == (e, c),
        )


def _sim(data_dir: Path, command: str, **fields: Any) -> dict[str, Any]:
    answer = send_request(data_dir / "sim.sock", {"command": command, **fields})
    assert answer["ok"], answer
    return answer


def _present(csms: LoopbackCsms, data_dir: Path, token: str, evse_id: int) -> dict[str, Any]:
    """Tap a card on the process's simulated reader and wait for the TransactionEvent that follows: the one that
    carries the card's idToken, or for a stop the StopAuthorized one."""
    mark = csms.mark()
    _sim(data_dir, "tap", token=token, evse=evse_id)
    [event, *_] = csms.wait_action(
        STATION_ID,
        "TransactionEvent",
        10,
        since=mark,
        predicate=lambda e: has_token(e, token) or e["triggerReason"] == "StopAuthorized",
    )
    return event


def test_cache_and_local_list_persist_across_process_restart(csms: LoopbackCsms, data_dir: Path) -> None:
    """`appliance run`, stopped with SIGTERM and started again on the same data directory: the local list (version
    and entries) and the cache survive. After the restart the listed card and the cached card both start a
    transaction without an AuthorizeRequest (LocalPreAuthorize)."""
    config = data_dir / "station.toml"
    config.write_text(config_text(data_dir, csms.url))
    log = data_dir / "station.log"
    with station_process(config, log) as station:
        _wait_booted(csms, 0)
        answer = csms.call(
            STATION_ID,
            "SendLocalList",
            {"versionNumber": 7, "updateType": "Full", "localAuthorizationList": [entry(VALID2)]},
        )
        assert answer["status"] == "Accepted"
        _present(csms, data_dir, VALID, SEED_EVSE)  # the CSMS accepts it: now cached
        _present(csms, data_dir, VALID, SEED_EVSE)  # and stops the session again
        assert authorizes(csms) and station.stop() == 0, station.log()
    csms.wait_disconnected(STATION_ID)

    mark = csms.mark()
    with station_process(config, log) as station:
        _wait_booted(csms, mark)
        assert csms.call(STATION_ID, "GetLocalListVersion", {})["versionNumber"] == 7
        listed = _present(csms, data_dir, VALID2, EVSE)
        cached = _present(csms, data_dir, VALID, SEED_EVSE)
        assert station.stop() == 0, station.log()
    assert has_token(listed, VALID2) and has_token(cached, VALID)
    assert authorizes(csms, mark) == [], "both were decided locally after the restart"


#: The station's own log lines (the simulated hardware stands in for the card reader, see the next test).
_STATION_LINE = re.compile(r"logger=appliance\.(?!hardware\.sim\b)")


def _masking_run(csms: LoopbackCsms, data_dir: Path) -> str:
    """A station process sees accepted, refused, listed and remote-start tokens; returns its log text."""
    csms.set_token(INVALID, "Invalid")
    config = data_dir / "station.toml"
    config.write_text(config_text(data_dir, csms.url))
    log = data_dir / "station.log"
    with station_process(config, log) as station:
        _wait_booted(csms, 0)
        csms.call(
            STATION_ID,
            "SendLocalList",
            {"versionNumber": 1, "updateType": "Full", "localAuthorizationList": [entry(VALID2)]},
        )
        _sim(data_dir, "plug", evse=EVSE)
        mark = csms.mark()
        _sim(data_dir, "tap", token=INVALID, evse=EVSE)
        csms.wait_action(STATION_ID, "Authorize", since=mark)
        _present(csms, data_dir, VALID, EVSE)
        csms.call(
            STATION_ID,
            "RequestStartTransaction",
            {"idToken": id_token(VALID2), "remoteStartId": 5, "evseId": SEED_EVSE},
        )
        csms.wait_action(STATION_ID, "TransactionEvent", since=mark, count=2)
        assert station.stop() == 0, station.log()
    return station.log()


def test_id_tokens_masked_in_station_log(csms: LoopbackCsms, data_dir: Path) -> None:
    """At INFO the station's log names idTokens only by their last four characters (`****B2C3`), never in full —
    whether accepted, refused, from the local list or from a remote start."""
    text = _masking_run(csms, data_dir)
    station_lines = "\n".join(line for line in text.splitlines() if _STATION_LINE.search(line))
    assert "****B2C3" in station_lines, text
    for token in (VALID, VALID2, INVALID):
        assert token not in station_lines, [line for line in station_lines.splitlines() if token in line]


def test_id_tokens_masked_in_whole_process_log(csms: LoopbackCsms, data_dir: Path) -> None:
    """The whole log text of the `appliance run` process, the simulated hardware included (it is the default
    backend), holds no idToken in full (README: "idTokens are masked to their last four characters")."""
    text = _masking_run(csms, data_dir)
    for token in (VALID, VALID2, INVALID):
        assert token not in text, [line for line in text.splitlines() if token in line]
