"""Shared steps of the authorization conformance cases (Part 6 C and D) and of tests/station/test_authorization.py.

The Part 6 memory states are built the way the station would build them in the field, through the real loopback
CSMS: IdTokenCached by an accepted (or refused) presentation of the card, IdTokenLocalAuthList by a
SendLocalList. Every "the Charging Station SHALL NOT send …" check waits until the station has shown its
decision on the EVSE's display (the simulated hardware's `indication`), then a short quiet period, so a late
message would still be caught.
"""

from __future__ import annotations

import contextlib
from collections.abc import AsyncIterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import trio

from appliance.hardware.base import Indication
from appliance.lab.csms import LoopbackCsms
from appliance.link.link import LinkState
from appliance.station import Station
from tests.conformance.helpers import STATION_ID, booted_station, wait_all_connectors_reported
from tests.conformance.tx_helpers import (
    TOKEN,
    TOKEN2,
    TOKEN_TYPE,
    energy_transfer_started,
    ev_connected_pre_session,
    has_token,
    tx_events,
    wait_queue_empty,
    wait_trigger,
)
from tests.harness import make_config, running_station

#: <Configured valid_idtoken> and <Configured valid_idtoken2> (RFID UIDs, as the reader delivers them).
VALID = TOKEN
VALID2 = TOKEN2
#: <Configured invalid/blocked/expired idtoken>, and one the CSMS has never heard of.
INVALID = "04BAD001"
BLOCKED = "04B10C4D"
EXPIRED = "04E0E0E0"
UNKNOWN = "04000000"
OTHER = "04CAFE01"
#: <Configured GroupId> (groupIdToken.idToken) shared by VALID, VALID2 and, in the "invalid" group cases, INVALID.
GROUP = "GROUP-0042"
#: The EVSE the cases run on, and a second one the memory states use so they leave EVSE 1 untouched.
EVSE = 1
SEED_EVSE = 2
#: How long the station must stay silent after it showed its decision ("the OCTT waits …").
QUIET = 0.5


def id_token(token: str) -> dict[str, str]:
    return {"idToken": token, "type": TOKEN_TYPE}


def authorizes(csms: LoopbackCsms, since: int = 0, token: str | None = None) -> list[dict[str, Any]]:
    """AuthorizeRequest payloads after frame `since` (for `token` only, if given)."""
    return [
        p for p in csms.actions(STATION_ID, "Authorize", since) if token is None or p["idToken"]["idToken"] == token
    ]


def in_future(seconds: float) -> datetime:
    return datetime.now(UTC) + timedelta(seconds=seconds)


# --- the EVSE's display and contactor -------------------------------------------------------------------------


def indication(station: Station, evse_id: int = EVSE) -> str | None:
    return station.hardware.evse_status(evse_id)["indication"]  # type: ignore[attr-defined]


def offered(station: Station, evse_id: int = EVSE) -> float:
    """The current the station offers on the EVSE (0: contactor open, no energy)."""
    return float(station.hardware.evse_status(evse_id)["offeredCurrentA"])  # type: ignore[attr-defined]


async def present(station: Station, token: str, evse_id: int = EVSE, timeout: float = 10) -> str:
    """Present a card at the EVSE and wait for the station's verdict on its display ("accepted", "rejected" …);
    for "accepted", also until the EVSE has carried it out (the session authorized, or deauthorized for a stop),
    so the energy offer already reflects it.

    The display is reset to idle first so that two equal verdicts in a row can be told apart.
    """
    runner = station.runners[evse_id]
    changes = runner.changed.value
    station.hardware.indicate(evse_id, Indication.IDLE)
    await station.hardware.tap(token, evse_id=evse_id)  # type: ignore[attr-defined]
    with trio.fail_after(timeout):
        while (shown := indication(station, evse_id)) == Indication.IDLE.value:  # noqa: ASYNC110 - no signal
            await trio.sleep(0.01)
        if shown == Indication.ACCEPTED.value:
            await runner.changed.wait_until(lambda count: count != changes)
    assert shown is not None
    return shown


async def refused_silently(csms: LoopbackCsms, station: Station, token: str, evse_id: int = EVSE) -> int:
    """Present `token`; the station must refuse it and send no TransactionEvent at all afterwards (a quiet period
    included). Returns the mark taken before the presentation."""
    mark = csms.mark()
    assert await present(station, token, evse_id) == Indication.REJECTED.value
    await trio.sleep(QUIET)
    events = tx_events(csms, mark)
    assert events == [], (
        f"no TransactionEvent after a refused idToken; got {[(e['eventType'], e['triggerReason']) for e in events]}"
    )
    assert offered(station, evse_id) == 0
    return mark


# --- memory states ------------------------------------------------------------------------------------------------


async def seed_cache(
    csms: LoopbackCsms,
    station: Station,
    token: str,
    status: str = "Accepted",
    group: str | None = None,
    cache_expiry: datetime | None = None,
    evse_id: int = SEED_EVSE,
) -> None:
    """Memory state IdTokenCached: the CSMS answers `status` for the token and the card is presented once.

    Accepted (Main A): the session this starts on the seed EVSE (TxStartPoint Authorized) is stopped with the same
    card and its messages delivered. Not accepted (Main B): the station refuses it. Either way the station has
    heard the CSMS's idTokenInfo for the token, so it is in the authorization cache. The CSMS keeps answering
    `status` for the token until the test changes it.
    """
    csms.set_token(token, status, group_id=group, cache_expiry=cache_expiry)
    mark = csms.mark()
    verdict = await present(station, token, evse_id)
    if status == "Accepted":
        assert verdict == Indication.ACCEPTED.value
        await wait_trigger(csms, "Authorized", since=mark)
        mark = csms.mark()
        assert await present(station, token, evse_id) == Indication.ACCEPTED.value
        await wait_trigger(csms, "StopAuthorized", since=mark)
    else:
        assert verdict == Indication.REJECTED.value
    await wait_queue_empty(station)


def entry(token: str, status: str | None = "Accepted", group: str | None = None, **info: Any) -> dict[str, Any]:
    """One AuthorizationData of a SendLocalList (no idTokenInfo when `status` is None: a removal)."""
    data: dict[str, Any] = {"idToken": id_token(token)}
    if status is not None:
        token_info: dict[str, Any] = {"status": status, **info}
        if group is not None:
            token_info["groupIdToken"] = {"idToken": group, "type": "Central"}
        data["idTokenInfo"] = token_info
    return data


async def send_local_list(
    csms: LoopbackCsms, version: int, entries: list[dict[str, Any]] | None, update_type: str = "Full"
) -> dict[str, Any]:
    """SendLocalListRequest; `entries` None or empty leaves localAuthorizationList out (the schema wants ≥ 1)."""
    payload: dict[str, Any] = {"versionNumber": version, "updateType": update_type}
    if entries:
        payload["localAuthorizationList"] = entries
    return await csms.trio.call(STATION_ID, "SendLocalList", payload)


async def install_list(csms: LoopbackCsms, version: int, *entries: dict[str, Any]) -> None:
    """Memory state IdTokenLocalAuthList: a Full SendLocalList the station accepts."""
    answer = await send_local_list(csms, version, list(entries))
    assert answer["status"] == "Accepted", answer


async def list_version(csms: LoopbackCsms) -> int:
    answer = await csms.trio.call(STATION_ID, "GetLocalListVersion", {})
    return int(answer["versionNumber"])


# --- the station's life ------------------------------------------------------------------------------------------


async def go_offline(csms: LoopbackCsms, station: Station, timeout: float = 10, *, drained: bool = True) -> None:
    """ "The OCTT closes the WebSocket connection AND does not accept a reconnect": returns once the station itself
    knows it is offline, so what happens next is produced offline. Reconnection attempts get HTTP 503 until
    `go_online`.

    With `drained` the station first delivers what it has queued (the CSMS has received and answered it), so what
    the CSMS gets after reconnecting is only what was produced offline (no resend of an unanswered message).
    """
    if drained:
        await wait_queue_empty(station, timeout)
    csms.refuse_connections(True)
    assert await csms.trio.disconnect(STATION_ID), "the station was not connected"
    with trio.fail_after(timeout):
        await station.link.state.wait_until(lambda state: state is not LinkState.ACCEPTED)


async def go_online(csms: LoopbackCsms, station: Station, timeout: float = 15) -> None:
    """The CSMS accepts the next reconnection attempt; returns once the station is online again."""
    csms.refuse_connections(False)
    with trio.fail_after(timeout):
        await station.link.state.wait_until(lambda state: state is LinkState.ACCEPTED)


async def _stop_quickly(csms: LoopbackCsms, station: Station) -> None:
    """Take the station offline before it is cancelled: a station cancelled while connected waits its whole close
    timeout (2 s) for the CSMS's close frame, as its WebSocket reader is cancelled with it. Only a speed-up."""
    csms.refuse_connections(True)
    station.link.reconnect("test: end")
    with trio.fail_after(10):
        await station.link.state.wait_until(lambda state: state is not LinkState.ACCEPTED)


@contextlib.asynccontextmanager
async def auth_station(csms: LoopbackCsms, data_dir: Path, **config: Any) -> AsyncIterator[Station]:
    """`booted_station` (Booted, every connector reported), stopped quickly at the end."""
    async with booted_station(csms, data_dir, **config) as station:
        yield station
        await _stop_quickly(csms, station)


@contextlib.asynccontextmanager
async def restarted_station(csms: LoopbackCsms, data_dir: Path, **config: Any) -> AsyncIterator[Station]:
    """A new station on the same data directory (the previous one has stopped): Reusable State Booted again."""
    csms.refuse_connections(False)
    await csms.trio.wait_disconnected(STATION_ID)
    mark = csms.mark()
    async with running_station(make_config(data_dir, csms, **config)) as station:
        await csms.trio.wait_action(STATION_ID, "BootNotification", 10, since=mark)
        await wait_all_connectors_reported(csms, since=mark)
        yield station
        await _stop_quickly(csms, station)


async def invalid_group_member_cannot_stop(csms: LoopbackCsms, station: Station) -> int:
    """The script TC_C_41 (cache) and TC_C_43 (local list) share: VALID starts charging without asking the CSMS,
    then INVALID of the same group is refused and stops nothing. Returns the mark taken before INVALID."""
    await ev_connected_pre_session(csms, station)
    mark = csms.mark()
    assert await present(station, VALID) == "accepted"
    authorized = await wait_trigger(csms, "Authorized", since=mark)
    assert has_token(authorized, VALID) and authorizes(csms, mark) == []
    await energy_transfer_started(csms, station)

    mark = csms.mark()
    assert await present(station, INVALID) == "rejected"
    await trio.sleep(QUIET)
    assert tx_events(csms, mark) == []
    assert offered(station) > 0
    return mark
