"""Part 6 E11/E12/E08 (offline: TC_E_40, E_43, E_44, E_45) and E13 (retries: TC_E_41, E_42, E_50, E_51).

Retries: MessageAttempts[TransactionEvent] 3, MessageAttemptInterval[TransactionEvent] 1 s and
MessageTimeout[Default] 1 s (set through `[variables]`) keep a case to seconds. The CSMS does not answer
(`NO_ANSWER`) or answers CALLERROR InternalError; the resends and their spacing are read from the CSMS's own
receive times of the frames, i.e. what the test tool measures. Wait before try k+1 = interval × k, plus the
MessageTimeout when there was no answer at all.

Offline: "the OCTT closes the WebSocket connection AND does not accept a reconnect" is `go_offline` (close
frame, then HTTP 503 to every attempt); "accepts the reconnection" is `go_online`.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import trio

from appliance.lab.csms import NO_ANSWER, CsmsCallError, LoopbackCsms
from appliance.station import Station
from tests.conformance.helpers import SLACK, STATION_ID, booted_station
from tests.conformance.tx_helpers import (
    AUTH_ONLINE,
    EVSE,
    OFFLINE,
    TOKEN,
    TOKEN2,
    assert_seq_contiguous,
    authorized_local,
    charging_session,
    first_attempt,
    go_offline,
    go_online,
    has_token,
    new_events,
    pending,
    tx_events,
    tx_frames,
    tx_id_of,
    wait_queue_empty,
    wait_trigger,
)

ATTEMPTS = 3
INTERVAL = 1
TIMEOUT = 1
RETRIES = {
    **AUTH_ONLINE,
    "OCPPCommCtrlr.MessageAttempts[TransactionEvent]": ATTEMPTS,
    "OCPPCommCtrlr.MessageAttemptInterval[TransactionEvent]": INTERVAL,
    "OCPPCommCtrlr.MessageTimeout[Default]": TIMEOUT,
}


# --- retries ---------------------------------------------------------------------------------------------------


class Script:
    """A TransactionEvent responder: `replies[i]` answers the i-th CALL after arming (None = answer normally);
    the last entry repeats."""

    def __init__(self, *replies: Any) -> None:
        self.replies = replies
        self.calls = 0

    def __call__(self, station_id: str, payload: dict[str, Any]) -> Any:
        reply = self.replies[min(self.calls, len(self.replies) - 1)]
        self.calls += 1
        return reply


async def step5_sends(csms: LoopbackCsms, station: Station, script: Script, sends: int) -> list[Any]:
    """Reusable states Authorized, then EVConnectedPreSession with the CSMS scripted: the plug-in's
    TransactionEvent (step 5) is what gets resent. Returns the first `sends` TransactionEvent frames once they
    have all arrived: only those, since the wait may wake late (a loaded machine) when the queue has already
    moved on to the session's next TransactionEvent (ChargingStateChanged), a different message."""
    await authorized_local(csms, station)
    await wait_queue_empty(station)
    csms.set_response("TransactionEvent", script)
    mark = csms.mark()
    await station.hardware.plug(EVSE)
    longest = sum(TIMEOUT + INTERVAL * k for k in range(ATTEMPTS)) + 5
    return await csms.trio.wait_for(
        lambda: (f := tx_frames(csms, mark)) and len(f) >= sends and f[:sends], longest, what=f"{sends} sends"
    )


def assert_resends(frames: list[Any], extra: float, late: float = 0) -> None:
    """Every frame is the same message (same messageId, same payload); the k-th resend came
    MessageAttemptInterval × k (+ `extra`, or up to `late` more) after the previous one."""
    seen = [(f.message_id, f.payload.get("triggerReason"), f.payload.get("seqNo")) for f in frames]
    assert len({f.message_id for f in frames}) == 1, f"a resend keeps its messageId: {seen}"
    assert all(f.payload == frames[0].payload for f in frames), "a resend is the same message (same seqNo)"
    assert frames[0].payload["triggerReason"] == "CablePluggedIn"
    for k in range(1, len(frames)):
        gap = frames[k].monotonic - frames[k - 1].monotonic
        expected = INTERVAL * k + extra
        assert expected - SLACK <= gap <= expected + late + 1.0, f"resend {k} after {gap:.2f} s, expected {expected} s"


async def assert_no_more_sends(csms: LoopbackCsms, frames: list[Any], wait: float) -> None:
    """ "The OCTT waits an additional iteration where the interval is multiplied again": nothing is resent."""
    await trio.sleep(wait)
    later = [f for f in tx_frames(csms, frames[-1].index + 1) if f.message_id == frames[0].message_id]
    assert later == [], f"resent {len(later)} more time(s)"


async def assert_queue_moves_on(csms: LoopbackCsms, station: Station, dropped: dict[str, Any]) -> None:
    """Dropped after the last attempt: the queue moves on to the transaction's next TransactionEvent (seqNo
    after the dropped one), and the dropped one never comes back."""
    outcome = await station.journal.run_sync(
        lambda: station.journal.store.conn.execute(
            "SELECT outcome FROM outbox WHERE action = 'TransactionEvent' AND seq_no = ?", (dropped["seqNo"],)
        ).fetchone()[0]
    )
    assert outcome == "dropped", "the message is dropped after the last attempt"
    mark = csms.mark()
    csms.set_response("TransactionEvent", None)
    await wait_queue_empty(station)
    await station.hardware.unplug(EVSE)
    ended = await wait_trigger(csms, "EVCommunicationLost", since=mark)
    seqs = [e["seqNo"] for e in tx_events(csms, mark)]
    assert seqs == sorted(set(seqs)) and seqs[-1] == ended["seqNo"], "the queue moved on, in order"
    assert all(seq > dropped["seqNo"] for seq in seqs), "the dropped message came back"


async def test_TC_E_41_retry_no_answer_max_attempts(csms: LoopbackCsms, data_dir: Path) -> None:
    """TC_E_41_CS: the CSMS never answers the TransactionEvent. It is sent MessageAttempts (3) times, the k-th
    resend (MessageAttemptInterval × k) + MessageTimeout after the previous; then dropped: nothing more during
    one further iteration, and the queue moves on."""
    async with booted_station(csms, data_dir, variables=RETRIES) as station:
        frames = await step5_sends(csms, station, Script(NO_ANSWER), ATTEMPTS)
        assert_resends(frames, extra=TIMEOUT)
        await assert_no_more_sends(csms, frames, INTERVAL * ATTEMPTS + TIMEOUT + 0.5)
        await assert_queue_moves_on(csms, station, frames[0].payload)


async def test_TC_E_50_retry_callerror_max_attempts(csms: LoopbackCsms, data_dir: Path) -> None:
    """TC_E_50_CS: the CSMS answers every TransactionEvent with CALLERROR InternalError. Sent MessageAttempts
    (3) times, the k-th resend MessageAttemptInterval × k after the previous; then dropped (no further resend,
    the queue moves on)."""
    async with booted_station(csms, data_dir, variables=RETRIES) as station:
        frames = await step5_sends(csms, station, Script(CsmsCallError("InternalError")), ATTEMPTS)
        assert_resends(frames, extra=0)
        await assert_no_more_sends(csms, frames, INTERVAL * ATTEMPTS + 0.5)
        await assert_queue_moves_on(csms, station, frames[0].payload)


async def test_TC_E_42_retry_no_answer_then_success(csms: LoopbackCsms, data_dir: Path) -> None:
    """TC_E_42_CS: the CSMS ignores the first send and answers the second. Sent exactly 2 times, the resend
    MessageAttemptInterval + MessageTimeout after the first; nothing more afterwards."""
    async with booted_station(csms, data_dir, variables=RETRIES) as station:
        frames = await step5_sends(csms, station, Script(NO_ANSWER, None), 2)
        assert_resends(frames, extra=TIMEOUT)
        await assert_no_more_sends(csms, frames, INTERVAL * 2 + TIMEOUT + 0.5)
        assert len([f for f in tx_frames(csms, frames[0].index) if f.message_id == frames[0].message_id]) == 2
        assert await pending(station) == 0, "answered: nothing left in the queue"


async def test_TC_E_51_retry_callerror_then_success(csms: LoopbackCsms, data_dir: Path) -> None:
    """TC_E_51_CS: CALLERROR InternalError to the first send, a TransactionEventResponse to the second. Sent
    exactly 2 times, the resend MessageAttemptInterval after the first (the case text adds MessageTimeout, which
    only applies when there is no answer; the bound below allows both readings); nothing more afterwards."""
    async with booted_station(csms, data_dir, variables=RETRIES) as station:
        frames = await step5_sends(csms, station, Script(CsmsCallError("InternalError"), None), 2)
        assert_resends(frames, extra=0, late=TIMEOUT)
        await assert_no_more_sends(csms, frames, INTERVAL * 2 + TIMEOUT + 0.5)
        assert len([f for f in tx_frames(csms, frames[0].index) if f.message_id == frames[0].message_id]) == 2
        assert await pending(station) == 0, "answered: nothing left in the queue"


# --- offline ---------------------------------------------------------------------------------------------------


async def test_TC_E_40_connection_loss_during_transaction(csms: LoopbackCsms, data_dir: Path) -> None:
    """TC_E_40_CS: TxUpdatedInterval 1 s < RetryBackOffWaitMinimum 3 s; EnergyTransferStarted; the CSMS closes
    the connection and accepts a reconnection only after WaitMinimum. After reconnecting the queue is emptied:
    every message produced offline is TransactionEvent Updated with meterValue and offline true, in seqNo order,
    none lost; those produced online, before and after, say offline false explicitly."""
    wait_minimum = 3
    variables = {
        **OFFLINE,
        "SampledDataCtrlr.TxUpdatedInterval": 1,
        "OCPPCommCtrlr.RetryBackOffWaitMinimum": wait_minimum,
    }
    async with booted_station(csms, data_dir, variables=variables) as station:
        tx_id = await charging_session(csms, station)
        await wait_queue_empty(station)
        online_before = tx_events(csms, tx_id=tx_id)
        offline_at = await go_offline(csms, station)
        await trio.sleep_until(first_attempt(offline_at, wait_minimum))
        queued = await pending(station, tx_id)
        mark = csms.mark()
        await go_online(csms, station)
        await wait_queue_empty(station)
        await trio.sleep(1.5)  # a periodic Updated produced online again
        await wait_queue_empty(station)
        events = new_events(csms, mark)
    assert queued >= 2, "TxUpdatedInterval 1 s: periodic meter values were produced while offline"
    offline = events[:queued]
    assert all(e["eventType"] == "Updated" for e in offline), offline
    assert all(e.get("meterValue") for e in offline), offline
    assert all(e.get("offline") is True for e in offline), offline
    # Produced online: offline false, sent explicitly (the schema's default, but some CSMSs match on the field).
    # After the replay (offline true, including any produced after `queued` was counted) come the online ones.
    assert online_before and all(e.get("offline") is False for e in online_before), online_before
    flags = [e.get("offline") for e in events]
    assert False in flags, flags
    first_online = flags.index(False)
    assert first_online >= queued and all(f is True for f in flags[:first_online]), flags
    assert all(f is False for f in flags[first_online:]), flags
    assert_seq_contiguous(tx_events(csms, tx_id=tx_id))


async def test_TC_E_43_transaction_during_offline_period(csms: LoopbackCsms, data_dir: Path) -> None:
    """TC_E_43_CS via memory state TransactionEventsInQueueEnded: offline, the EV is connected, the idToken
    presented (known from the authorization cache, LocalAuthorizeOffline), presented again, the EV disconnected.
    After reconnecting every queued TransactionEvent has offline true; one is Started, one Ended."""
    async with booted_station(csms, data_dir, variables=OFFLINE) as station:
        # IdTokenCached: an accepted online session leaves the token in the authorization cache.
        tx_id = tx_id_of(await authorized_local(csms, station))
        await station.hardware.tap(TOKEN, evse_id=EVSE)
        await wait_trigger(csms, "StopAuthorized")
        await wait_queue_empty(station)

        offline_at = await go_offline(csms, station)
        await station.hardware.plug(EVSE)
        await station.hardware.tap(TOKEN, evse_id=EVSE)
        await trio.sleep(0.3)
        await station.hardware.tap(TOKEN, evse_id=EVSE)
        await trio.sleep(0.3)
        await station.hardware.unplug(EVSE)
        mark = csms.mark()
        await go_online(csms, station, first_attempt(offline_at))
        await wait_queue_empty(station)
        events = new_events(csms, mark)
    assert events and all(e.get("offline") is True for e in events), events
    assert [e["eventType"] for e in events].count("Started") == 1
    assert [e["eventType"] for e in events].count("Ended") == 1
    assert all(tx_id_of(e) != tx_id for e in events)
    # What happened offline, in order: plug-in, authorization from the cache, stop by the same card.
    assert [e["triggerReason"] for e in events] == ["CablePluggedIn", "Authorized", "StopAuthorized"], events
    assert has_token(events[1])
    assert_seq_contiguous(events)


async def test_TC_E_44_stop_transaction_during_offline_period(csms: LoopbackCsms, data_dir: Path) -> None:
    """TC_E_44_CS: EnergyTransferStarted; offline, the same idToken is presented (a stop needs no CSMS) and the
    EV disconnected. After reconnecting every queued TransactionEvent has offline true; one is Ended."""
    async with booted_station(csms, data_dir, variables=OFFLINE) as station:
        tx_id = await charging_session(csms, station)
        await wait_queue_empty(station)
        offline_at = await go_offline(csms, station)
        await station.hardware.tap(TOKEN, evse_id=EVSE)
        await trio.sleep(0.3)
        await station.hardware.unplug(EVSE)
        mark = csms.mark()
        await go_online(csms, station, first_attempt(offline_at))
        await wait_queue_empty(station)
        events = new_events(csms, mark)
    assert events and all(e.get("offline") is True for e in events), events
    ended = [e for e in events if e["eventType"] == "Ended"]
    assert len(ended) == 1 and tx_id_of(ended[0]) == tx_id
    assert ended[0]["triggerReason"] == "StopAuthorized"
    assert ended[0]["transactionInfo"].get("stoppedReason", "Local") == "Local"
    assert_seq_contiguous(tx_events(csms, tx_id=tx_id))


async def test_TC_E_45_stop_offline_same_group(csms: LoopbackCsms, data_dir: Path) -> None:
    """TC_E_45_CS: the transaction is authorized with a groupIdToken; IdTokenLocalAuthList holds another token
    of the same group. Offline, that token is presented (its group known from the local list: stop allowed)
    and the EV disconnected. After reconnecting every queued TransactionEvent has offline true; one is Ended —
    by the group token (StopAuthorized), not only by the unplug."""
    async with booted_station(csms, data_dir, variables=OFFLINE) as station:
        csms.set_token(TOKEN, "Accepted", group_id="GROUP-1")
        answer = await csms.trio.call(
            STATION_ID,
            "SendLocalList",
            {
                "versionNumber": 1,
                "updateType": "Full",
                "localAuthorizationList": [
                    {
                        "idToken": {"idToken": TOKEN2, "type": "ISO14443"},
                        "idTokenInfo": {
                            "status": "Accepted",
                            "groupIdToken": {"idToken": "GROUP-1", "type": "Central"},
                        },
                    }
                ],
            },
        )
        assert answer["status"] == "Accepted"
        tx_id = await charging_session(csms, station)
        await wait_queue_empty(station)
        offline_at = await go_offline(csms, station)
        await station.hardware.tap(TOKEN2, evse_id=EVSE)
        await trio.sleep(0.3)
        await station.hardware.unplug(EVSE)
        mark = csms.mark()
        await go_online(csms, station, first_attempt(offline_at))
        await wait_queue_empty(station)
        events = new_events(csms, mark)
    assert events and all(e.get("offline") is True for e in events), events
    ended = [e for e in events if e["eventType"] == "Ended"]
    assert len(ended) == 1 and tx_id_of(ended[0]) == tx_id
    assert ended[0]["triggerReason"] == "StopAuthorized", "the group token stopped it"
    assert_seq_contiguous(tx_events(csms, tx_id=tx_id))
