"""One fuzzing campaign, shared by the quick suite (tests/fuzz) and the long mode (tools/fuzz.py).

Two properties run against one live station:

* **CSMS CALLs**: for every OCPP 2.0.1 action (weighted towards the ones the station handles), a valid payload
  gets a CALLRESULT or a deliberate CALLERROR (never InternalError; NotSupported exactly for an action the
  station does not handle); a payload with one rule broken gets exactly that rule's CALLERROR code.
* **CSMS answers**: for every CALL the station sends, a valid or mutated CALLRESULT is what the CSMS answers
  while the station is provoked into sending it (TriggerMessage over the real WebSocket, a card tap and a
  plug-in cycle for Authorize and TransactionEvent); the station keeps working whatever it gets.

After each input: no log record at ERROR from the station, no follow-up crashed, nothing hung. At the end of a
campaign the caller checks the station still answers, memory is bounded and `appliance-journal verify` passes.
"""

from __future__ import annotations

import contextlib
import subprocess
import sys
import time
from collections import Counter
from dataclasses import dataclass, field
from typing import Any

import trio
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from appliance.hardware.sim import SimHardware
from appliance.hardware.sim.control import CommandRefused
from appliance.lab.fuzz.driver import STATION_ID, FuzzedStation
from appliance.lab.fuzz.strategies import Mutated, requests, responses
from appliance.protocol import CallError, CallResult, ErrorCode, default_registry
from appliance.station import Station

ALL_ACTIONS = tuple(sorted(default_registry().actions))
#: Station → CSMS CALLs, with the TriggerMessage that provokes each (None: provoked by the hardware cycle).
PROVOKED = {
    "BootNotification": "BootNotification",
    "Heartbeat": "Heartbeat",
    "StatusNotification": "StatusNotification",
    "MeterValues": "MeterValues",
    "TransactionEvent": "TransactionEvent",
    "Authorize": None,
    "NotifyReport": None,
    "SecurityEventNotification": None,
    "SignCertificate": "SignChargingStationCertificate",  # certificates block
}


@dataclass
class Tally:
    """What a campaign tried, for the report."""

    calls_valid: int = 0
    calls_mutated: int = 0
    answers: int = 0
    codes: Counter[str] = field(default_factory=Counter)

    @property
    def inputs(self) -> int:
        return self.calls_valid + self.calls_mutated + self.answers


def _code(answer: CallResult | CallError) -> str:
    return "CALLRESULT" if isinstance(answer, CallResult) else answer.code


def check_call(fuzz: FuzzedStation, tally: Tally, action: str, payload: Mutated | dict[str, Any]) -> None:
    """One CSMS CALL and the checks on its answer."""
    answer = fuzz.handle(action, payload.payload if isinstance(payload, Mutated) else payload)
    tally.codes[_code(answer)] += 1
    assert isinstance(answer, CallResult | CallError)
    if isinstance(payload, Mutated):
        tally.calls_mutated += 1
        assert isinstance(answer, CallError), f"{action} with a broken {payload.rule} was accepted: {payload!r:.400}"
        assert answer.code == payload.code.value, (action, payload.rule, answer.code, answer.description)
    else:
        tally.calls_valid += 1
        if action not in fuzz.handled():
            assert isinstance(answer, CallError) and answer.code == ErrorCode.NotSupported.value, (action, answer)
        elif isinstance(answer, CallError):
            assert answer.code != ErrorCode.InternalError.value, (action, answer.description, f"{payload!r:.400}")
    assert fuzz.problems == [], fuzz.problems


def _action_and_payload(handled: tuple[str, ...]) -> st.SearchStrategy[tuple[str, Mutated | dict[str, Any]]]:
    """Half of the calls go to actions the station answers, so they are not drowned by the NotSupported ones."""
    action = st.one_of(st.sampled_from(handled), st.sampled_from(ALL_ACTIONS))
    return action.flatmap(lambda name: st.tuples(st.just(name), requests(name)))


def run_calls(fuzz: FuzzedStation, tally: Tally, examples: int) -> None:
    @settings(
        max_examples=examples, deadline=None, database=None, derandomize=False, suppress_health_check=list(HealthCheck)
    )
    @given(_action_and_payload(fuzz.handled()))
    def prop(case: tuple[str, Mutated | dict[str, Any]]) -> None:
        check_call(fuzz, tally, *case)

    prop()


def check_answer(fuzz: FuzzedStation, tally: Tally, action: str, payload: Mutated | dict[str, Any]) -> None:
    """The CSMS answers the station's next `action` CALL with `payload`; the station must take it in stride."""
    answer = payload.payload if isinstance(payload, Mutated) else payload
    served: list[int] = []

    def responder(station_id: str, request: dict[str, Any]) -> Any:
        if served:
            return None  # later ones: the CSMS's normal answer
        served.append(1)
        return answer

    fuzz.csms.set_response(action, responder, validate=False)
    try:
        trigger = PROVOKED.get(action)
        if trigger is not None:
            request: dict[str, Any] = {"requestedMessage": trigger}
            if trigger == "StatusNotification":
                request["evse"] = {"id": 1, "connectorId": 1}
            # A refused trigger (Rejected, SecurityError while the boot is Rejected) is the station's right.
            with contextlib.suppress(Exception):
                fuzz.csms.call(STATION_ID, "TriggerMessage", request, timeout=10)
        fuzz.run_in_station(lambda station: _hardware_cycle(station, action))
    finally:
        fuzz.csms.set_response(action, None)
    tally.answers += 1
    assert fuzz.problems == [], fuzz.problems


def _simulator(station: Station) -> SimHardware:
    """The fuzzed station's hardware: the simulator (its config says so), whose plug, tap and unplug stand in
    for a driver's events."""
    hardware = station.hardware
    assert isinstance(hardware, SimHardware), hardware
    return hardware


async def _hardware_cycle(station: Station, action: str) -> None:
    if action in ("Authorize", "TransactionEvent"):
        hw = _simulator(station)
        if hw.evse_status(1)["evState"] != "A":
            # A restart the fuzzing caused can bring back the simulated world as last persisted, with the EV of
            # an earlier cycle still plugged in (as a real one would be after a power cut): it drives away first.
            await hw.unplug(1)
        await hw.plug(1)
        await hw.tap("04A1B2C3", evse_id=1)
        await trio.sleep(0.3)
        await hw.unplug(1)
    await trio.sleep(0.3)


def run_answers(fuzz: FuzzedStation, tally: Tally, examples: int) -> None:
    actions = st.sampled_from(sorted(PROVOKED))
    # The loopback CSMS (the `ocpp` library) can only send an object as a CALLRESULT payload.
    case = actions.flatmap(
        lambda name: st.tuples(
            st.just(name),
            responses(name).filter(lambda p: isinstance(p.payload if isinstance(p, Mutated) else p, dict)),
        )
    )

    @settings(max_examples=examples, deadline=None, database=None, suppress_health_check=list(HealthCheck))
    @given(case)
    def prop(item: tuple[str, Mutated | dict[str, Any]]) -> None:
        check_answer(fuzz, tally, *item)

    prop()
    restore_boot(fuzz)


def restore_boot(fuzz: FuzzedStation) -> None:
    """A fuzzed BootNotification answer may have left the station Pending or Rejected: reconnect to the CSMS's
    normal Accepted answer, as an operator would fix their CSMS."""
    csms = fuzz.csms
    before = len(csms.connections_snapshot(STATION_ID))
    csms.disconnect(STATION_ID)
    csms.wait_for(
        lambda: (
            len(csms.connections_snapshot(STATION_ID)) > before
            and csms.is_connected(STATION_ID)
            and csms.boot_status(STATION_ID) == "Accepted"
        ),
        60,
        what="the station boots Accepted again",
    )


def still_answering(fuzz: FuzzedStation) -> None:
    """0 tasks lost: the station answers over the real WebSocket and its EVSEs still take hardware events.

    A fuzzed SetVariables may have asked for one more reconnect (a new password, a network profile), so a
    closed connection is given two more chances; a station that stopped answering fails all three."""
    restore_boot(fuzz)
    request = {"getVariableData": [{"component": {"name": "OCPPCommCtrlr"}, "variable": {"name": "HeartbeatInterval"}}]}
    for chance in range(3):
        fuzz.csms.wait_connected(STATION_ID, 60)
        try:
            answer = fuzz.csms.call(STATION_ID, "GetVariables", request)
            break
        except Exception:
            if chance == 2:
                raise
    assert answer["getVariableResult"][0]["attributeStatus"] == "Accepted", answer

    # The EVSEs' runners still take hardware events. What the station then reports depends on what the fuzzed
    # SetVariables and ChangeAvailability left configured, so the check is the runner's own state.
    async def unplug_all(station: Station) -> None:
        for evse_id in (1, 2):
            with contextlib.suppress(CommandRefused):  # nothing plugged in there
                await _simulator(station).unplug(evse_id)

    def plugged(evse_id: int) -> bool:
        async def read(station: Station) -> bool:
            return station.runners[evse_id].state.plugged

        return bool(fuzz.run_in_station(read))

    fuzz.run_in_station(unplug_all)
    fuzz.csms.wait_for(lambda: not plugged(1) and not plugged(2), 30, what="both EVSEs unplugged")
    fuzz.run_in_station(lambda station: _simulator(station).plug(2))
    fuzz.csms.wait_for(lambda: plugged(2), 30, what="EVSE 2 plugged in")


def tasks_settle(fuzz: FuzzedStation, baseline: int, slack: int = 8, timeout: float = 60) -> int:
    """Wait for the follow-ups still running (a report being sent) to finish; the station's task count must come
    back to within `slack` of what it was before the campaign. Returns the final count."""
    deadline = time.monotonic() + timeout
    while True:
        count = fuzz.task_count()
        if count <= baseline + slack:
            return count
        if time.monotonic() > deadline:
            raise AssertionError(f"{count} tasks alive after the campaign, {baseline} before")
        time.sleep(0.5)


def journal_verifies(fuzz: FuzzedStation) -> str:
    """`appliance-journal verify` on the station's journal, as a user would run it; returns its output."""
    result = subprocess.run(
        [sys.executable, "-m", "appliance.journal.cli", "--db", str(fuzz.data_dir / "journal.db"), "verify"],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert result.returncode == 0, result.stdout + result.stderr
    return result.stdout


__all__ = [
    "Tally",
    "check_answer",
    "check_call",
    "journal_verifies",
    "run_answers",
    "run_calls",
    "still_answering",
    "tasks_settle",
]
