"""EvseState driven directly: no socket, no event loop, thousands of input sequences in a few seconds.

A hypothesis state machine feeds the session machine every input it has (plug, unplug, EV ready/suspended,
tap and remote start, local and remote stop, an invalid id either way, GroupId learnt, EV-connection timeout,
fault codes, silent devices, availability, reset, trigger, samples, and TxStartPoint/TxStopPoint changed
mid-session as SetVariables may do) for every TxStartPoint × TxStopPoint the catalog allows. After every step it
checks, against a model kept here and not read back from the machine:

* the journal's invariants (`journal.verify.check_events` over the events numbered the way the journal numbers
  them: seqNo 0, 1, 2 … per transaction): Started first, at most one Ended, nothing after it, no gaps; and one
  transaction at a time, each with a fresh id;
* energy is offered only when authorized, plugged, operative, not faulted and not blocked by an invalid id,
  and whenever all of that holds;
* energy never flows outside a transaction: an offer without one only while no start condition holds;
* no transaction starts on an EVSE that is Inoperative (Unavailable) or Faulted (Part 6 TC_G_03/G_05: an
  Inoperative station "does not allow any charging"; the station refuses taps and remote starts there too).
"""

from __future__ import annotations

import itertools
from datetime import UTC, datetime, timedelta

import pytest
from hypothesis import settings
from hypothesis import strategies as st
from hypothesis.stateful import RuleBasedStateMachine, initialize, invariant, precondition, rule

from appliance.devicemodel.catalog import TX_POINTS
from appliance.evse.state import Authorization, EvseState, TxEvent
from appliance.journal.verify import check_events

#: Every value TxCtrlr.TxStartPoint / TxStopPoint may take: a non-empty member list of TX_POINTS (catalog).
POINT_SETS = [combo for n in range(1, len(TX_POINTS) + 1) for combo in itertools.combinations(TX_POINTS, n)]
CHARGING_STATES = {"Charging", "EVConnected", "SuspendedEV", "SuspendedEVSE", "Idle"}
EPOCH = datetime(2026, 1, 1, tzinfo=UTC)

tokens = st.sampled_from(["AA01", "BB02", "CC03"]).map(lambda t: {"idToken": t, "type": "ISO14443"})
groups = st.none() | st.sampled_from(["G1", "G2"]).map(lambda g: {"idToken": g, "type": "Central"})
point_sets = st.sampled_from(POINT_SETS)


class EvseSession(RuleBasedStateMachine):
    """One EVSE; `start_points`/`stop_points` are set by the test class that binds a combination."""

    start_points: tuple[str, ...] = ("EVConnected", "Authorized")
    stop_points: tuple[str, ...] = ("EVConnected", "Authorized")

    def __init__(self) -> None:
        super().__init__()
        counter = itertools.count(1)
        self.issued: list[str] = []

        def next_id() -> str:
            self.issued.append(f"tx-{next(counter)}")
            return self.issued[-1]

        self.s = EvseState(1, start_points=self.start_points, stop_points=self.stop_points, transaction_ids=next_id)
        # The model: what the inputs said, kept apart from the machine's own fields.
        self.plugged = False
        self.wants = False
        self.operative = True
        self.fault_code: str | None = None
        self.silent: set[str] = set()
        self.authorized = False
        self.blocked = False
        # The journal as the runner fills it: payloads numbered per transaction.
        self.payloads: list[dict] = []
        self.next_seq: dict[str, int] = {}
        self.open_tx: str | None = None
        self.ended: set[str] = set()
        # What held after the previous step, for the start/stop point rules.
        self.last_conditions = self.conditions()
        self.last_tx: str | None = None
        self.last_count = 0

    def conditions(self) -> dict[str, bool]:
        """The TxStartPoint/TxStopPoint conditions as the model sees them (not read from the machine)."""
        faulted = self.fault_code is not None or bool(self.silent)
        allowed = self.authorized and self.plugged and self.operative and not faulted and not self.blocked
        return {
            "EVConnected": self.plugged,
            "Authorized": self.authorized,
            "PowerPathClosed": allowed,
            "EnergyTransfer": allowed and self.wants,
        }

    # --- feeding the machine -----------------------------------------------------------------------------

    def feed(self, events: list[TxEvent]) -> None:
        faulted_or_down = not self.operative or self.fault_code is not None or bool(self.silent)
        for event in events:
            tx_id = event.transaction_id
            assert event.evse_id == 1
            assert event.charging_state in CHARGING_STATES, event
            assert event.first == (event.event_type == "Started"), event
            if event.event_type == "Started":
                assert self.open_tx is None, f"{tx_id} started while {self.open_tx} is open"
                assert tx_id not in self.next_seq and tx_id == self.issued[-1], "transaction id reused"
                assert not faulted_or_down, f"{tx_id} started on an EVSE that is inoperative or faulted"
                self.open_tx = tx_id
                self.next_seq[tx_id] = 0
            else:
                assert tx_id == self.open_tx, f"{event.event_type} for {tx_id}, but the open one is {self.open_tx}"
            if event.event_type == "Ended":
                assert event.stopped_reason is not None
                self.open_tx = None
                self.ended.add(tx_id)
                self.authorized = self.blocked = False  # the session is over with its transaction
            else:
                assert event.stopped_reason is None
            seq = self.next_seq[tx_id]
            self.next_seq[tx_id] = seq + 1
            stamp = (EPOCH + timedelta(seconds=len(self.payloads))).strftime("%Y-%m-%dT%H:%M:%SZ")
            self.payloads.append(
                {
                    "eventType": event.event_type,
                    "timestamp": stamp,
                    "triggerReason": event.trigger_reason,
                    "seqNo": seq,
                    "transactionInfo": {"transactionId": tx_id, "chargingState": event.charging_state},
                }
            )

    # --- inputs --------------------------------------------------------------------------------------------

    @rule()
    def plug(self) -> None:
        if self.plugged:
            return  # the hardware reports a plug-in once
        self.plugged = True
        self.feed(self.s.plug())

    @rule()
    def unplug(self) -> None:
        if not self.plugged:
            return
        self.plugged = self.wants = self.authorized = False
        self.feed(self.s.unplug())

    @rule(wants=st.booleans())
    def ev_state(self, wants: bool) -> None:
        if not self.plugged:
            return  # an EV that is not connected draws nothing
        self.wants = wants
        self.feed(self.s.ev_state(wants))

    @rule(token=tokens, group=groups, remote=st.booleans(), remote_start_id=st.integers(1, 5))
    def authorize(self, token: dict, group: dict | None, remote: bool, remote_start_id: int) -> None:
        # Callers authorize only a free EVSE (a tap on a session stops it; a remote start is Rejected).
        if self.authorized:
            return
        self.authorized = True
        auth = Authorization(token, group_id_token=group, remote_start_id=remote_start_id if remote else None)
        self.feed(self.s.authorize(auth, "RemoteStart" if remote else "Authorized"))

    @rule(remote=st.booleans(), token=tokens)
    def stop(self, remote: bool, token: dict) -> None:
        if not self.authorized:
            return
        self.authorized = False
        if remote:
            self.feed(self.s.deauthorize("RemoteStop", "Remote"))
        else:
            self.feed(self.s.deauthorize("StopAuthorized", "Local", token))

    @rule(stop=st.booleans())
    def invalid_id(self, stop: bool) -> None:
        had_tx = self.s.tx is not None
        if had_tx and stop:
            self.authorized = False
        elif had_tx:
            self.blocked = True
        self.feed(self.s.invalid_id(stop))

    @rule(token=tokens, group=groups)
    def learn_group(self, token: dict, group: dict | None) -> None:
        if group is not None and self.s.tx is not None:
            assert self.s.learn_group(self.s.tx.transaction_id, token, group) == []

    @rule()
    def connection_timeout(self) -> None:
        if self.authorized and not self.plugged:
            self.authorized = False
        self.feed(self.s.connection_timeout())

    @rule(code=st.none() | st.sampled_from(["OverCurrentFailure", "GroundFailure"]))
    def fault(self, code: str | None) -> None:
        self.fault_code = code
        self.feed(self.s.set_fault(code))

    @rule(device=st.sampled_from(["meter", "rcd"]), silent=st.booleans())
    def silent_device(self, device: str, silent: bool) -> None:
        self.silent = self.silent | {device} if silent else self.silent - {device}
        self.feed(self.s.set_silent(device, silent))

    @rule(operative=st.booleans())
    def availability(self, operative: bool) -> None:
        # As the runner does: an EVSE with a transaction becomes Inoperative only when it ends (Scheduled).
        if not operative and self.s.tx is not None:
            return
        self.operative = operative
        self.feed(self.s.set_operative(operative))

    @rule(reason=st.sampled_from([("ResetCommand", "ImmediateReset"), ("AbnormalCondition", "PowerLoss")]))
    def end_now(self, reason: tuple[str, str]) -> None:
        if self.s.tx is not None:
            self.authorized = self.blocked = False
        self.feed(self.s.end_now(*reason))

    @rule()
    def reset_session(self) -> None:
        if self.s.tx is None:
            self.authorized = self.blocked = False
        self.feed(self.s.reset_session())

    @rule(trigger=st.sampled_from(["Trigger", "MeterValuePeriodic", "MeterValueClock"]))
    def sample(self, trigger: str) -> None:
        before = len(self.payloads)
        self.feed(self.s.trigger() if trigger == "Trigger" else self.s.periodic(trigger))
        assert len(self.payloads) - before == (1 if self.open_tx else 0)

    @precondition(lambda self: self.s.tx is not None)
    @rule(start=point_sets, stop=point_sets)
    def change_points(self, start: tuple[str, ...], stop: tuple[str, ...]) -> None:
        """SetVariables on TxStartPoint/TxStopPoint: the runner hands the new lists in before the next input."""
        self.s.start_points, self.s.stop_points = start, stop

    # --- invariants ----------------------------------------------------------------------------------------

    @invariant()
    def journal_is_sound(self) -> None:
        assert check_events(self.payloads) == []
        assert (self.s.tx.transaction_id if self.s.tx else None) == self.open_tx
        assert self.ended.isdisjoint({self.open_tx})

    @invariant()
    def energy_only_when_allowed(self) -> None:
        faulted = self.fault_code is not None or bool(self.silent)
        allowed = self.authorized and self.plugged and self.operative and not faulted and not self.blocked
        assert self.s.offering == allowed, (self.s, self.authorized, self.blocked)
        assert self.s.fault == (self.fault_code or (f"{min(self.silent)}Silent" if self.silent else None))
        expected_state = (
            "Idle"
            if not self.plugged
            else (
                ("Charging" if self.wants else "SuspendedEV")
                if allowed
                else ("SuspendedEVSE" if self.wants else "EVConnected")
            )
        )
        assert self.s.charging_state == expected_state
        # Energy never flows unbilled: an offer without a transaction only while no start condition holds yet
        # (TxStartPoint EnergyTransfer alone, the EV not drawing).
        conditions = {
            "EVConnected": self.plugged,
            "Authorized": self.authorized,
            "PowerPathClosed": allowed,
            "EnergyTransfer": allowed and self.wants,
        }
        if allowed and self.s.tx is None:
            assert not any(conditions[c] for c in self.s.start_points), (self.s.start_points, conditions)

    @invariant()
    def start_and_stop_points_are_obeyed(self) -> None:
        """A transaction ends in the step one of its stop conditions stops holding, and otherwise only when it is
        ended whatever the stop points say (unplug, EV-connection timeout, reset, power loss); one starts in the
        step a start condition begins to hold on an operative EVSE without fault, and otherwise only when the
        energy offer begins while a start condition already holds."""
        now = self.conditions()
        fell = [c for c in self.s.stop_points if self.last_conditions[c] and not now[c]]
        rose = [c for c in self.s.start_points if now[c] and not self.last_conditions[c]]
        step = self.payloads[self.last_count :]
        ended = [p for p in step if p["eventType"] == "Ended"]
        started = [p for p in step if p["eventType"] == "Started"]
        if self.last_tx is not None and fell:
            assert self.last_tx in self.ended, f"{fell} stopped holding but {self.last_tx} did not end"
        for event in ended:
            assert fell or event["triggerReason"] in FORCED_ENDS, (event, self.s.stop_points)
        healthy = self.operative and self.fault_code is None and not self.silent
        if self.last_tx is None and rose and healthy:
            assert started, f"{rose} began to hold on a healthy EVSE but no transaction started"
        for event in started:
            offer_began = now["PowerPathClosed"] and not self.last_conditions["PowerPathClosed"]
            assert rose or (offer_began and any(now[c] for c in self.s.start_points)), (event, self.s.start_points)
        self.last_conditions, self.last_tx, self.last_count = now, self.open_tx, len(self.payloads)


#: Trigger reasons of the ends that do not wait for a stop point: the cable is out, the EV never came, the station
#: resets or lost power.
FORCED_ENDS = {"EVCommunicationLost", "EVConnectTimeout", "ResetCommand", "AbnormalCondition"}


def _case(start: tuple[str, ...], stop: tuple[str, ...]) -> type[EvseSession]:
    return type(
        f"Session_{'_'.join(start)}__{'_'.join(stop)}", (EvseSession,), {"start_points": start, "stop_points": stop}
    )


@pytest.mark.parametrize("stop", POINT_SETS, ids=",".join)
@pytest.mark.parametrize("start", POINT_SETS, ids=",".join)
def test_session_invariants(start: tuple[str, ...], stop: tuple[str, ...]) -> None:
    machine = _case(start, stop)
    machine.TestCase.settings = settings(max_examples=6, stateful_step_count=25, deadline=None, derandomize=True)
    machine.TestCase().runTest()


class DefaultPoints(EvseSession):
    """The certified setting (EVConnected,Authorized for both) searched harder than the other combinations."""

    @initialize()
    def certified(self) -> None:
        assert self.s.start_points == ("EVConnected", "Authorized")


DefaultPoints.TestCase.settings = settings(max_examples=150, stateful_step_count=40, deadline=None)
test_certified_points = DefaultPoints.TestCase


# --- what the machine decides, case by case (the sequences above check only the invariants) -----------------


def _machine(
    start: tuple[str, ...] = ("EVConnected", "Authorized"), stop: tuple[str, ...] = ("EVConnected", "Authorized")
) -> EvseState:
    ids = (f"tx-{n}" for n in itertools.count(1))
    return EvseState(1, start_points=start, stop_points=stop, transaction_ids=lambda: next(ids))


def _kinds(events: list[TxEvent]) -> list[tuple[str, str, str]]:
    return [(e.event_type, e.trigger_reason, e.charging_state) for e in events]


def test_transaction_ids_come_from_outside() -> None:
    s = _machine()
    assert s.plug()[0].transaction_id == "tx-1"
    s.unplug()
    assert s.plug()[0].transaction_id == "tx-2"


def test_plug_then_tap_starts_then_charges() -> None:
    s = _machine()
    assert _kinds(s.plug()) == [("Started", "CablePluggedIn", "EVConnected")]
    events = s.authorize(Authorization({"idToken": "AA01", "type": "ISO14443"}))
    assert _kinds(events) == [("Updated", "Authorized", "SuspendedEV")]
    assert events[0].id_token == {"idToken": "AA01", "type": "ISO14443"}
    assert _kinds(s.ev_state(True)) == [("Updated", "ChargingStateChanged", "Charging")]
    assert s.offering
    ended = s.unplug()
    assert _kinds(ended) == [("Ended", "EVCommunicationLost", "Idle")]
    assert ended[0].stopped_reason == "EVDisconnected"


def test_remote_start_before_plug_carries_remote_start_id_once() -> None:
    s = _machine()
    started = s.authorize(Authorization({"idToken": "R1", "type": "Central"}, remote_start_id=7), "RemoteStart")
    assert _kinds(started) == [("Started", "RemoteStart", "Idle")]
    assert started[0].remote_start_id == 7
    plugged = s.plug()
    assert _kinds(plugged) == [
        ("Updated", "CablePluggedIn", "EVConnected"),
        ("Updated", "ChargingStateChanged", "SuspendedEV"),
    ]
    assert [e.remote_start_id for e in plugged] == [None, None]


def test_connection_timeout_ends_an_authorization_without_ev() -> None:
    s = _machine()
    s.authorize(Authorization({"idToken": "AA01", "type": "ISO14443"}))
    ended = s.connection_timeout()
    assert _kinds(ended) == [("Ended", "EVConnectTimeout", "Idle")]
    assert ended[0].stopped_reason == "Timeout"
    assert s.authorization is None and s.tx is None


@pytest.mark.parametrize("down", ["inoperative", "faulted", "silent"])
def test_no_transaction_starts_on_an_unavailable_or_faulted_evse(down: str) -> None:
    """TxStartPoint EVConnected: a cable plugged into an Unavailable or Faulted EVSE is no transaction."""
    s = _machine(start=("EVConnected",))
    if down == "inoperative":
        s.set_operative(False)
    elif down == "faulted":
        s.set_fault("GroundFailure")
    else:
        s.set_silent("meter", True)
    assert s.plug() == []
    assert s.tx is None and s.charging_state == "EVConnected"
    assert s.unplug() == []


def test_invalid_id_without_stop_blocks_energy_but_keeps_the_transaction() -> None:
    s = _machine()
    s.plug()
    s.authorize(Authorization({"idToken": "AA01", "type": "ISO14443"}))
    s.ev_state(True)
    assert _kinds(s.invalid_id(stop=False)) == [("Updated", "Deauthorized", "SuspendedEVSE")]
    assert not s.offering and s.tx is not None
    ended = s.invalid_id(stop=True)
    assert _kinds(ended) == [("Ended", "Deauthorized", "SuspendedEVSE")]  # the EV still asks
    assert ended[0].stopped_reason == "DeAuthorized"


@pytest.mark.parametrize("how", ["local stop", "reset"])
def test_a_new_tap_with_the_cable_still_in_starts_a_transaction(how: str) -> None:
    """TxStartPoint EVConnected alone: the cable stays in after a stop (or an EVSE reset ended the transaction);
    a new tap offers energy, so it opens a new transaction instead of charging unbilled."""
    s = _machine(start=("EVConnected",), stop=("Authorized",))
    s.plug()
    s.authorize(Authorization({"idToken": "AA01", "type": "ISO14443"}))
    if how == "local stop":
        assert [e.event_type for e in s.deauthorize("StopAuthorized", "Local")] == ["Ended"]
    else:
        assert [e.event_type for e in s.end_now("ResetCommand", "ImmediateReset")] == ["Ended"]
    started = s.authorize(Authorization({"idToken": "BB02", "type": "ISO14443"}))
    assert _kinds(started) == [("Started", "Authorized", "SuspendedEV")]
    assert started[0].transaction_id == "tx-2" and started[0].id_token == {"idToken": "BB02", "type": "ISO14443"}


def test_offer_without_transaction_when_energy_transfer_is_the_start_point() -> None:
    """TxStartPoint EnergyTransfer: the power path may close first; the transaction starts when the EV draws."""
    s = _machine(start=("EnergyTransfer",))
    assert s.plug() == []
    assert s.authorize(Authorization({"idToken": "AA01", "type": "ISO14443"})) == []
    assert s.offering and s.tx is None
    assert _kinds(s.ev_state(True)) == [("Started", "ChargingStateChanged", "Charging")]
