"""The session rules (`appliance.protocol.session`) driven directly: no socket, no event loop.

A hypothesis state machine connects, disconnects, answers boots (Accepted / Pending / Rejected), holds, sends our
CALLs, answers them (matching, unknown and given-up ids, CALLRESULT and CALLERROR), times them out, and sends CSMS
CALLs and broken frames. After every step it checks the session against a model kept here, not read back from
it: at most one CALL outstanding, an answer goes to that CALL and only once, a late or stray answer is dropped,
and what may be sent and answered in each boot state (B01–B03, TC_B_30/31). What the CSMS sees end to end is
covered by tests/conformance/test_b_boot.py.
"""

from __future__ import annotations

import itertools
import json

import pytest
from hypothesis import settings
from hypothesis import strategies as st
from hypothesis.stateful import RuleBasedStateMachine, invariant, precondition, rule

from appliance.protocol import Call, ErrorCode
from appliance.protocol.session import (
    LATE_MEMORY,
    Answer,
    Late,
    LinkState,
    Malformed,
    NotAllowed,
    Outstanding,
    Request,
    Session,
    SessionError,
    Stray,
)

OUR_ACTIONS = [
    "BootNotification",
    "Heartbeat",
    "NotifyReport",
    "NotifyMonitoringReport",
    "StatusNotification",
    "TransactionEvent",
]
CSMS_CALLS = [
    ("TriggerMessage", {"requestedMessage": "BootNotification"}),
    ("TriggerMessage", {"requestedMessage": "Heartbeat"}),
    ("TriggerMessage", []),  # not an object: the refusal must not trust the shape
    ("GetVariables", {"getVariableData": []}),
    ("Reset", {"type": "Immediate"}),
]
BOOT_STATES = {"Accepted": LinkState.ACCEPTED, "Pending": LinkState.PENDING, "Rejected": LinkState.REJECTED}


def allowed(state: LinkState, holding: bool, action: str) -> bool:
    """The rule, stated again here from the spec rather than read from the module."""
    if state is LinkState.OFFLINE or holding:
        return False
    return (
        action == "BootNotification"
        or state is LinkState.ACCEPTED
        or (state is LinkState.PENDING and action in ("NotifyReport", "NotifyMonitoringReport"))
    )


def answer_text(message_id: str, error: bool) -> str:
    if error:
        return json.dumps([4, message_id, "InternalError", "no", {}])
    return json.dumps([3, message_id, {"status": "Accepted"}])


class SessionMachine(RuleBasedStateMachine):
    def __init__(self) -> None:
        super().__init__()
        self.s = Session()
        self.ids = (f"m{n}" for n in itertools.count())
        # The model
        self.state = LinkState.OFFLINE
        self.accepted_once = False
        self.holding = False
        self.outstanding: tuple[str, str] | None = None
        self.given_up: list[tuple[str, str]] = []  # this connection's, newest last
        self.answered: set[str] = set()

    # --- connection and boot -------------------------------------------------------------------------

    @rule()
    def connect(self) -> None:
        if self.state is not LinkState.OFFLINE:
            with pytest.raises(SessionError):
                self.s.connected()
            return
        self.s.connected()
        self.state, self.holding, self.outstanding, self.given_up = LinkState.CONNECTED, False, None, []

    @rule()
    def disconnect(self) -> None:
        lost = self.s.disconnected()
        assert (lost.message_id, lost.action) == self.outstanding if lost else self.outstanding is None
        self.state, self.outstanding = LinkState.OFFLINE, None

    @rule(status=st.sampled_from(sorted(BOOT_STATES)))
    def boot_answer(self, status: str) -> None:
        if self.state not in (LinkState.CONNECTED, LinkState.PENDING, LinkState.REJECTED):
            with pytest.raises(SessionError):
                self.s.boot_answered(status)
            return
        assert self.s.boot_answered(status) is BOOT_STATES[status]
        self.state = BOOT_STATES[status]
        self.accepted_once |= status == "Accepted"

    @rule()
    def boot_done(self) -> None:
        """The boot procedure returns: after an Accepted answer, or at once on a reconnect once accepted."""
        if self.state is LinkState.ACCEPTED or (self.state is LinkState.CONNECTED and self.accepted_once):
            self.s.boot_done()
            self.state = LinkState.ACCEPTED
        else:
            with pytest.raises(SessionError):
                self.s.boot_done()

    @rule()
    def hold(self) -> None:
        self.s.hold()
        self.holding = True

    # --- our CALLs -----------------------------------------------------------------------------------

    @rule(action=st.sampled_from(OUR_ACTIONS))
    def send(self, action: str) -> None:
        message_id = next(self.ids)
        if not allowed(self.state, self.holding, action):
            with pytest.raises(NotAllowed):
                self.s.begin_call(message_id, action, {})
        elif self.outstanding is not None:
            with pytest.raises(SessionError):  # one outstanding CALL: the driver waits its turn
                self.s.begin_call(message_id, action, {})
        else:
            text = self.s.begin_call(message_id, action, {"n": 1})
            assert json.loads(text) == [2, message_id, action, {"n": 1}]
            self.outstanding = (message_id, action)

    @precondition(lambda self: self.outstanding is not None)
    @rule(error=st.booleans())
    def answer(self, error: bool) -> None:
        assert self.outstanding is not None
        message_id, action = self.outstanding
        event = self.s.receive(answer_text(message_id, error))
        assert isinstance(event, Answer)
        assert (event.call.message_id, event.call.action) == (message_id, action)
        assert event.frame.message_id == message_id
        self.outstanding = None
        self.answered.add(message_id)

    @precondition(lambda self: self.outstanding is not None)
    @rule()
    def time_out(self) -> None:
        assert self.outstanding is not None
        self.s.give_up(self.outstanding[0])
        self.given_up = [*self.given_up, self.outstanding][-LATE_MEMORY:]  # only the last few are remembered
        self.outstanding = None

    @rule()
    def give_up_what_is_not_outstanding(self) -> None:
        self.s.give_up("never-sent")  # nothing happens

    @precondition(lambda self: bool(self.given_up))
    @rule(data=st.data(), error=st.booleans())
    def late_answer(self, data: st.DataObject, error: bool) -> None:
        call = data.draw(st.sampled_from(self.given_up))
        event = self.s.receive(answer_text(call[0], error))
        assert isinstance(event, Late) and (event.call.message_id, event.call.action) == call
        self.given_up.remove(call)

    @precondition(lambda self: bool(self.answered))
    @rule(data=st.data())
    def second_answer(self, data: st.DataObject) -> None:
        """An answer repeated after the first was taken is stray: a CALL is answered once."""
        message_id = data.draw(st.sampled_from(sorted(self.answered)))
        assert (self.outstanding or ("",))[0] != message_id
        assert isinstance(self.s.receive(answer_text(message_id, False)), Stray)

    @rule(error=st.booleans())
    def stray_answer(self, error: bool) -> None:
        event = self.s.receive(answer_text("not-ours", error))
        assert isinstance(event, Stray) and event.frame.message_id == "not-ours"

    # --- CSMS CALLs and broken frames ----------------------------------------------------------------

    @rule(call=st.sampled_from(CSMS_CALLS))
    def csms_call(self, call: tuple[str, object]) -> None:
        action, payload = call
        text = json.dumps([2, "c1", action, payload])
        event = self.s.receive(text)
        if not isinstance(payload, dict):
            assert isinstance(event, Malformed) and event.reply is not None  # a CALL: answered
            return
        assert isinstance(event, Request) and event.call.action == action
        refusal = self.s.inbound_refusal(event.call)
        exempt = action == "TriggerMessage" and payload.get("requestedMessage") == "BootNotification"
        if self.state is LinkState.REJECTED and not exempt:
            assert refusal is not None and refusal.code is ErrorCode.SecurityError
        else:
            assert refusal is None

    @rule(text=st.sampled_from(["", "[", "{}", '[9, "x"]', '[3, "x"]', '[4, "x", 1]']))
    def broken_frame(self, text: str) -> None:
        event = self.s.receive(text)
        assert isinstance(event, Malformed)
        assert (event.reply is None) == event.error.is_response

    # --- after every step ----------------------------------------------------------------------------

    @invariant()
    def agrees_with_the_model(self) -> None:
        assert self.s.state is self.state
        assert self.s.accepted_once == self.accepted_once
        out = self.s.outstanding
        assert ((out.message_id, out.action) if out else None) == self.outstanding

    @invariant()
    def the_inbound_refusal_of_a_rejected_boot_spares_only_the_boot_trigger(self) -> None:
        trigger = self.s.inbound_refusal(Call("t", "TriggerMessage", {"requestedMessage": "BootNotification"}))
        assert trigger is None
        other = self.s.inbound_refusal(Call("t", "Heartbeat", {}))
        assert (other is not None) == (self.state is LinkState.REJECTED)


SessionMachine.TestCase.settings = settings(max_examples=300, stateful_step_count=40, deadline=None)
TestSession = SessionMachine.TestCase


@pytest.mark.parametrize("state", list(LinkState))
@pytest.mark.parametrize("action", OUR_ACTIONS)
def test_what_may_be_sent_in_each_state(state: LinkState, action: str) -> None:
    """The table itself, every state by every action, reached through the events that lead there."""
    s = Session()
    if state is not LinkState.OFFLINE:
        s.connected()
    if state in (LinkState.PENDING, LinkState.REJECTED, LinkState.ACCEPTED):
        s.boot_answered(state.name.capitalize())
    assert s.state is state
    assert (s.send_refusal(action) is None) == allowed(state, False, action)


def test_a_reconnect_after_an_accepted_boot_needs_no_new_boot() -> None:
    s = Session()
    s.connected()
    with pytest.raises(SessionError):
        s.boot_done()  # never accepted: the boot procedure cannot just return
    s.boot_answered("Accepted")
    s.boot_done()
    s.disconnected()
    s.connected()
    assert s.send_refusal("Heartbeat") == "boot not accepted (connected)"
    s.boot_done()
    assert s.state is LinkState.ACCEPTED and s.send_refusal("Heartbeat") is None


def test_a_connection_forgets_the_calls_of_the_one_before() -> None:
    s = Session()
    s.connected()
    s.boot_answered("Accepted")
    s.begin_call("a", "BootNotification", {})
    s.give_up("a")
    s.begin_call("b", "Heartbeat", {})
    lost = s.disconnected()
    assert lost is not None and lost.message_id == "b"
    s.connected()
    assert isinstance(s.receive(answer_text("a", False)), Stray)
    assert isinstance(s.receive(answer_text("b", False)), Stray)


def test_late_answers_are_told_apart_for_the_last_few_calls_only() -> None:
    s = Session()
    s.connected()
    s.boot_answered("Accepted")
    for n in range(LATE_MEMORY + 1):
        s.begin_call(f"m{n}", "Heartbeat", {})
        s.give_up(f"m{n}")
    assert isinstance(s.receive(answer_text("m0", False)), Stray), "the oldest is forgotten: memory is bounded"
    assert isinstance(s.receive(answer_text(f"m{LATE_MEMORY}", False)), Late)
    assert isinstance(s.receive(answer_text(f"m{LATE_MEMORY}", False)), Stray), "late once, then stray"


def test_unknown_boot_status_is_a_bug_not_a_state() -> None:
    s = Session()
    s.connected()
    with pytest.raises(SessionError):
        s.boot_answered("Maybe")
    assert s.state is LinkState.CONNECTED


def test_a_pre_serialised_payload_goes_out_as_the_same_frame_as_the_encoded_one() -> None:
    payload = {"eventType": "Updated", "seqNo": 7, "meterValue": [{"sampledValue": [{"value": 1.5}]}], "n": "é"}
    encoded = Session()
    encoded.connected()
    encoded.boot_answered("Accepted")
    from_text = Session()
    from_text.connected()
    from_text.boot_answered("Accepted")
    text = json.dumps(payload, separators=(",", ":"), ensure_ascii=False)
    assert from_text.begin_call("m-1", "TransactionEvent", payload, text) == encoded.begin_call(
        "m-1", "TransactionEvent", payload
    )
    assert from_text.outstanding == Outstanding("m-1", "TransactionEvent")


def test_a_pre_serialised_payload_still_needs_a_sendable_id() -> None:
    s = Session()
    s.connected()
    with pytest.raises(ValueError):
        s.begin_call("x" * 37, "BootNotification", {}, "{}")
    assert s.outstanding is None
