"""Part 6 J (meter values): clock-aligned (TC_J_01, J_02, J_03, J_06) and sampled (TC_J_07, J_09, J_10).

Every case configures all six measurands this station supports, so each check covers measurand, context, unit
and phase of everything it reports: EVSE 1 is three-phase (Current.Import per L1…L3, Voltage per L1-N…L3-N),
EVSE 2 single-phase. Intervals are 1–2 s through `[variables]`. Clock-aligned values must fall on the wall-clock
boundaries of AlignedDataCtrlr.Interval (timestamp modulo interval ≈ 0), and consecutive ones one interval apart.
"""

from __future__ import annotations

import itertools
from pathlib import Path
from typing import Any

import trio

from appliance.lab.csms import LoopbackCsms
from tests.conformance.helpers import STATION_ID, booted_station
from tests.conformance.tx_helpers import (
    ALL_MEASURANDS,
    AUTH_ONLINE,
    EVSE,
    TOKEN,
    assert_measurands,
    authorized_local,
    charging_session,
    energy_transfer_started,
    epoch,
    ev_connected_pre_session,
    off_boundary,
    tx_events,
    tx_id_of,
    wait_trigger,
)

ALIGNED = 2
#: Clock-aligned readings are taken at the boundary; allowed lateness of the reported time (scheduling).
ON_TIME = 0.25
#: Allowed deviation of a sampled interval (the next sample is timed from the previous one).
JITTER = 0.3
PHASES = {1: 3, 2: 1}


def distinct_times(meter_values: list[dict[str, Any]]) -> list[float]:
    return sorted({epoch(mv["timestamp"]) for mv in meter_values})


def assert_spacing(times: list[float], interval: float, tolerance: float) -> None:
    for earlier, later in itertools.pairwise(times):
        assert abs(later - earlier - interval) <= tolerance, f"{later - earlier:.3f} s apart, expected {interval}"


async def test_TC_J_01_clock_aligned_idle(csms: LoopbackCsms, data_dir: Path) -> None:
    """TC_J_01_CS: AlignedDataCtrlr.Interval 2 s, all measurands, no transaction. MeterValuesRequests per EVSE:
    every sampledValue has context Sample.Clock, one element per configured measurand (with unit and phase);
    the messages of one interval share their timestamp, consecutive timestamps are one interval apart and on
    the wall-clock boundaries of the interval."""
    variables = {"AlignedDataCtrlr.Interval": ALIGNED, "AlignedDataCtrlr.Measurands": ALL_MEASURANDS}
    async with booted_station(csms, data_dir, variables=variables):
        mark = csms.mark()

        def two_intervals_each() -> list[dict[str, Any]] | None:
            requests = csms.actions(STATION_ID, "MeterValues", mark)
            for evse_id in (1, 2):
                mvs = [mv for p in requests if p["evseId"] == evse_id for mv in p["meterValue"]]
                if len(distinct_times(mvs)) < 2:
                    return None
            return requests

        requests = await csms.trio.wait_for(two_intervals_each, 3 * ALIGNED + 5, what="two aligned intervals")
    assert len(requests) >= 3, "the OCTT ends the case after three MeterValues messages"
    by_evse: dict[int, list[dict[str, Any]]] = {}
    for request in requests:
        for mv in request["meterValue"]:
            assert_measurands(mv, ALL_MEASURANDS, "Sample.Clock", PHASES[request["evseId"]])
            assert off_boundary(mv["timestamp"], ALIGNED) <= 0.01, mv["timestamp"]
            by_evse.setdefault(request["evseId"], []).append(mv)
    assert set(by_evse) == {1, 2}, "one MeterValuesRequest per EVSE and interval"
    times = [distinct_times(mvs) for mvs in by_evse.values()]
    common = sorted(set(times[0]) & set(times[1]))
    assert len(common) >= 2, f"the EVSEs' messages of one interval share the timestamp: {times}"
    for evse_times in times:
        assert_spacing(evse_times, ALIGNED, 0.01)


async def test_TC_J_02_clock_aligned_transaction(csms: LoopbackCsms, data_dir: Path) -> None:
    """TC_J_02_CS: AlignedDataCtrlr.Interval 2 s, SendDuringIdle false; EnergyTransferStarted on EVSE 1. The
    EVSE with the transaction reports in TransactionEventRequests (triggerReason MeterValueClock, context
    Sample.Clock, every measurand); the idle EVSE 2 in MeterValuesRequests (Sample.Clock). Timestamps one interval
    apart, on the interval's wall-clock boundaries."""
    variables = {
        **AUTH_ONLINE,
        "AlignedDataCtrlr.Interval": ALIGNED,
        "AlignedDataCtrlr.Measurands": ALL_MEASURANDS,
        "AlignedDataCtrlr.SendDuringIdle": False,
    }
    async with booted_station(csms, data_dir, variables=variables) as station:
        tx_id = await charging_session(csms, station)
        mark = csms.mark()

        def clock_events() -> list[dict[str, Any]]:
            return [e for e in tx_events(csms, mark) if e["triggerReason"] == "MeterValueClock"]

        events = await csms.trio.wait_for(lambda: len(clock_events()) >= 2 and clock_events(), 3 * ALIGNED + 5)
        idle = [p for p in csms.actions(STATION_ID, "MeterValues", mark)]
    for event in events:
        assert tx_id_of(event) == tx_id and event["eventType"] == "Updated"
        [mv] = event["meterValue"]
        assert_measurands(mv, ALL_MEASURANDS, "Sample.Clock", 3)
        assert off_boundary(mv["timestamp"], ALIGNED) <= ON_TIME, mv["timestamp"]
    assert_spacing([epoch(e["meterValue"][0]["timestamp"]) for e in events], ALIGNED, ON_TIME)
    assert idle and all(p["evseId"] == 2 for p in idle), "the idle EVSE reports in MeterValuesRequests only"
    for request in idle:
        for mv in request["meterValue"]:
            assert_measurands(mv, ALL_MEASURANDS, "Sample.Clock", 1)
            assert off_boundary(mv["timestamp"], ALIGNED) <= 0.01, mv["timestamp"]


async def test_TC_J_03_clock_aligned_tx_ended(csms: LoopbackCsms, data_dir: Path) -> None:
    """TC_J_03_CS: AlignedDataCtrlr.TxEndedInterval 2 s (all measurands), SampledDataCtrlr.TxEndedMeasurands
    empty, SendDuringIdle false; EnergyTransferStarted, a few seconds, then the session ends (card, unplug). The
    Ended TransactionEvent has meterValue with one element per aligned moment: context Sample.Clock, every
    AlignedDataCtrlr.TxEndedMeasurands measurand, timestamps one interval apart on the wall-clock boundaries."""
    variables = {
        **AUTH_ONLINE,
        "AlignedDataCtrlr.TxEndedInterval": ALIGNED,
        "AlignedDataCtrlr.TxEndedMeasurands": ALL_MEASURANDS,
        "SampledDataCtrlr.TxEndedMeasurands": "",
        "AlignedDataCtrlr.SendDuringIdle": False,
        "AlignedDataCtrlr.Interval": 0,
    }
    async with booted_station(csms, data_dir, variables=variables) as station:
        tx_id = await charging_session(csms, station)
        await trio.sleep(2 * ALIGNED + 0.5)
        mark = csms.mark()
        await station.hardware.tap(TOKEN, evse_id=EVSE)
        ended = await wait_trigger(csms, "StopAuthorized", since=mark)
        await station.hardware.unplug(EVSE)
    assert tx_id_of(ended) == tx_id and ended["eventType"] == "Ended"
    clock = [mv for mv in ended.get("meterValue", []) if mv["sampledValue"][0].get("context") == "Sample.Clock"]
    assert len(clock) >= 2, f"aligned TxEnded values every {ALIGNED} s: {ended.get('meterValue')}"
    for mv in clock:
        assert_measurands(mv, ALL_MEASURANDS, "Sample.Clock", 3)
        assert off_boundary(mv["timestamp"], ALIGNED) <= ON_TIME, mv["timestamp"]
    assert_spacing(distinct_times(clock), ALIGNED, ON_TIME)


def aligned_by_evse(requests: list[dict[str, Any]]) -> dict[int, list[dict[str, Any]]]:
    by_evse: dict[int, list[dict[str, Any]]] = {}
    for request in requests:
        by_evse.setdefault(request["evseId"], []).extend(request["meterValue"])
    return by_evse


async def test_TC_J_06_no_clock_aligned_values_during_transaction(csms: LoopbackCsms, data_dir: Path) -> None:
    """TC_J_06_CS: AlignedDataCtrlr.Interval 2 s, SendDuringIdle true (all measurands). Steps 1-2: idle, each EVSE
    reports in MeterValuesRequests (Sample.Clock, every measurand). Step 3: EnergyTransferStarted on EVSE 1. Step
    4: while the transaction runs, no clock-aligned values at all — not as TransactionEvents (MeterValueClock) on
    EVSE 1 and not as MeterValuesRequests from the idle EVSE 2 ("SHALL NOT send clock aligned meter values when a
    transaction is ongoing" is the station's condition). Step 6: after more than an interval + 5 s, the session
    ends (card, unplug). Step 7: idle again, MeterValuesRequests with Sample.Clock come back from both EVSEs."""
    variables = {
        **AUTH_ONLINE,
        "AlignedDataCtrlr.Interval": ALIGNED,
        "AlignedDataCtrlr.Measurands": ALL_MEASURANDS,
        "AlignedDataCtrlr.SendDuringIdle": True,
    }

    def both_report(since: int) -> list[dict[str, Any]] | None:
        requests = csms.actions(STATION_ID, "MeterValues", since)
        return requests if set(aligned_by_evse(requests)) == {1, 2} else None

    async with booted_station(csms, data_dir, variables=variables) as station:
        start = csms.mark()
        idle = await csms.trio.wait_for(
            lambda: both_report(start), 2 * ALIGNED + 5, what="step 1: aligned MeterValues from both idle EVSEs"
        )
        tx_id = await charging_session(csms, station)
        during = csms.mark()
        await trio.sleep(ALIGNED + 5)
        quiet_meter_values = csms.actions(STATION_ID, "MeterValues", during)
        quiet_clock_events = [e for e in tx_events(csms, during) if e["triggerReason"] == "MeterValueClock"]
        await station.hardware.tap(TOKEN, evse_id=EVSE)
        ended = await wait_trigger(csms, "StopAuthorized", since=during)
        await station.hardware.unplug(EVSE)
        after = csms.mark()
        back = await csms.trio.wait_for(
            lambda: both_report(after), 2 * ALIGNED + 5, what="step 7: aligned MeterValues from both EVSEs once idle"
        )
    for requests in (idle, back):
        for evse_id, mvs in aligned_by_evse(requests).items():
            for mv in mvs:
                assert_measurands(mv, ALL_MEASURANDS, "Sample.Clock", PHASES[evse_id])
    assert quiet_meter_values == [], "clock-aligned MeterValuesRequests while a transaction was ongoing"
    assert quiet_clock_events == [], "clock-aligned TransactionEvents although SendDuringIdle is true"
    assert tx_id_of(ended) == tx_id and ended["eventType"] == "Ended"


async def test_TC_J_07_sampled_transaction_begin(csms: LoopbackCsms, data_dir: Path) -> None:
    """TC_J_07_CS: TxStartPoint EVConnected, SampledDataCtrlr.TxStartedMeasurands all six. EVConnectedPreSession
    then EnergyTransferStarted: the Started TransactionEvent has meterValue with context Transaction.Begin and
    one element per TxStartedMeasurands measurand (units A/V/W/Wh, per-phase Current.Import and Voltage)."""
    variables = {
        **AUTH_ONLINE,
        "TxCtrlr.TxStartPoint": "EVConnected",
        "SampledDataCtrlr.TxStartedMeasurands": ALL_MEASURANDS,
    }
    async with booted_station(csms, data_dir, variables=variables) as station:
        started = await ev_connected_pre_session(csms, station)
        await authorized_local(csms, station)
        await energy_transfer_started(csms, station)
    assert started["eventType"] == "Started"
    [mv] = started["meterValue"]
    assert_measurands(mv, ALL_MEASURANDS, "Transaction.Begin", 3)


async def test_TC_J_09_sampled_updated(csms: LoopbackCsms, data_dir: Path) -> None:
    """TC_J_09_CS: SampledDataCtrlr.TxUpdatedInterval 1 s, TxUpdatedMeasurands all six; EnergyTransferStarted.
    TransactionEvents with triggerReason MeterValuePeriodic, context Sample.Periodic, every measurand; consecutive
    timestamps one interval apart."""
    interval = 1
    variables = {
        **AUTH_ONLINE,
        "SampledDataCtrlr.TxUpdatedInterval": interval,
        "SampledDataCtrlr.TxUpdatedMeasurands": ALL_MEASURANDS,
    }
    async with booted_station(csms, data_dir, variables=variables) as station:
        tx_id = await charging_session(csms, station)
        mark = csms.mark()

        def periodic() -> list[dict[str, Any]]:
            return [e for e in tx_events(csms, mark) if e["triggerReason"] == "MeterValuePeriodic"]

        events = await csms.trio.wait_for(lambda: len(periodic()) >= 2 and periodic(), 2 * interval + 5)
    for event in events:
        assert tx_id_of(event) == tx_id and event["eventType"] == "Updated"
        [mv] = event["meterValue"]
        assert_measurands(mv, ALL_MEASURANDS, "Sample.Periodic", 3)
    assert_spacing([epoch(e["meterValue"][0]["timestamp"]) for e in events], interval, JITTER)
    registers = [
        s["value"]
        for e in events
        for s in e["meterValue"][0]["sampledValue"]
        if s["measurand"] == "Energy.Active.Import.Register"
    ]
    assert registers == sorted(registers) and registers[-1] > registers[0], "the register rises while charging"


async def test_TC_J_10_sampled_tx_ended(csms: LoopbackCsms, data_dir: Path) -> None:
    """TC_J_10_CS: SampledDataCtrlr.TxEndedInterval 1 s (TxEndedMeasurands all six), AlignedDataCtrlr
    .TxEndedMeasurands empty; EnergyTransferStarted, a few seconds, then the session ends. The Ended
    TransactionEvent has meterValue: Sample.Periodic elements one interval apart and one Transaction.End, each with
    every TxEndedMeasurands measurand."""
    interval = 1
    variables = {
        **AUTH_ONLINE,
        "SampledDataCtrlr.TxEndedInterval": interval,
        "SampledDataCtrlr.TxEndedMeasurands": ALL_MEASURANDS,
        "AlignedDataCtrlr.TxEndedMeasurands": "",
    }
    async with booted_station(csms, data_dir, variables=variables) as station:
        tx_id = await charging_session(csms, station)
        await trio.sleep(2 * interval + 0.5)
        mark = csms.mark()
        await station.hardware.tap(TOKEN, evse_id=EVSE)
        ended = await wait_trigger(csms, "StopAuthorized", since=mark)
        await station.hardware.unplug(EVSE)
    assert tx_id_of(ended) == tx_id and ended["eventType"] == "Ended"
    contexts = [mv["sampledValue"][0]["context"] for mv in ended["meterValue"]]
    periodic = [mv for mv in ended["meterValue"] if mv["sampledValue"][0]["context"] == "Sample.Periodic"]
    assert len(periodic) >= 2, contexts
    assert contexts.count("Transaction.End") == 1, contexts
    for mv in ended["meterValue"]:
        context = mv["sampledValue"][0]["context"]
        if context in ("Sample.Periodic", "Transaction.End"):
            assert_measurands(mv, ALL_MEASURANDS, context, 3)
    assert_spacing(distinct_times(periodic), interval, JITTER)
