"""SimHardware in-process: the simulated world, the meter physics, the persisted register, back-pressure.

The control socket and the CLI are covered in test_control.py; here the commands are called directly so the
MockClock (autojump) can drive the meter without threads in the way.
"""

from __future__ import annotations

import json
import logging
import math
import os
import shutil
import tempfile
from collections.abc import AsyncIterator, Iterator
from contextlib import asynccontextmanager
from dataclasses import replace
from pathlib import Path

import pytest
import trio
import trio.testing
from hypothesis import given, settings
from hypothesis import strategies as st
from trio.testing import MockClock

from appliance.hardware.base import (
    CardPresented,
    DeviceFault,
    DeviceRecovered,
    EvseLayout,
    EVState,
    EVStateChanged,
    FaultCleared,
    FaultRaised,
    Indication,
    MeterReading,
    Plugged,
    StationSnapshot,
    Unplugged,
)
from appliance.hardware.sim import SimHardware
from appliance.hardware.sim.control import CommandRefused
from appliance.hardware.sim.state import EvseRecord

THREE_PHASE = EvseLayout(1, phases=3, max_current_a=32.0)
ONE_PHASE = EvseLayout(2, phases=1, max_current_a=32.0)


@pytest.fixture
def short_dir() -> Iterator[Path]:
    """A directory with a short path: AF_UNIX socket paths are limited to ~107 bytes."""
    path = Path(tempfile.mkdtemp(prefix="hw", dir="/tmp" if Path("/tmp").is_dir() else None))
    yield path
    shutil.rmtree(path, ignore_errors=True)


def make_hw(directory: Path, **kwargs: object) -> SimHardware:
    return SimHardware([THREE_PHASE, ONE_PHASE], directory / "sim.sock", **kwargs)  # type: ignore[arg-type]


@asynccontextmanager
async def running(hw: SimHardware) -> AsyncIterator[SimHardware]:
    async with trio.open_nursery() as nursery:
        await nursery.start(hw.run)
        yield hw
        nursery.cancel_scope.cancel()


def drain(hw: SimHardware) -> list[object]:
    events = []
    while True:
        try:
            events.append(hw.events.receive_nowait())
        except trio.WouldBlock:
            return events


def world(hw: SimHardware) -> list[dict[str, object]]:
    """The status without the voltages, which ripple with the (real) clock."""
    return [{k: v for k, v in evse.items() if k != "voltageV"} for evse in hw.status()["evses"]]


def assert_consistent(reading: MeterReading, layout: EvseLayout) -> None:
    """What every reading must satisfy, whatever the state."""
    assert reading.phases == layout.phases == len(reading.voltage_v) == len(reading.current_a)
    for volts in reading.voltage_v:
        assert abs(volts - layout.nominal_voltage_v) <= 0.0101 * layout.nominal_voltage_v
    for amps in reading.current_a:
        assert 0 <= amps <= reading.offered_current_a + 1e-9
    vi = sum(v * i for v, i in zip(reading.voltage_v, reading.current_a, strict=True))
    assert reading.power_w == pytest.approx(vi, abs=0.11)


# --------------------------------------------------------------------------------------- the world


async def test_commands_change_state_and_emit_events(short_dir: Path) -> None:
    hw = make_hw(short_dir)
    assert hw.ev_state(1) is EVState.A
    event, state = await hw.plug(1)
    assert (event, state["evState"]) == ("Plugged", "B")
    assert hw.ev_state(1) is EVState.B
    event, state = await hw.charge(1, 7000)
    assert (event, state["evState"], state["requestedW"]) == ("EVStateChanged", "C", 7000)
    event, state = await hw.charge(1, 3000)  # already charging: only the wish changes
    assert (event, state["requestedW"]) == (None, 3000)
    event, state = await hw.suspend(1)
    assert (event, state["evState"]) == ("EVStateChanged", "B")
    await hw.charge(1)
    event, state = await hw.unplug(1)  # while charging: the EV drives away
    assert (event, state["evState"], state["requestedW"]) == ("Unplugged", "A", None)
    tapped = await hw.tap("04A1B2C3D4E5F6", 2)
    assert tapped == {"token": "04A1B2C3D4E5F6", "tokenType": "ISO14443", "evseId": 2, "event": "CardPresented"}
    await hw.tap("AABBCCDD")
    event, state = await hw.raise_fault(2, "GroundFailure")
    assert (event, state["fault"], hw.faulted(2)) == ("FaultRaised", "GroundFailure", "GroundFailure")
    event, state = await hw.clear_fault(2)
    assert (event, state["fault"], hw.faulted(2)) == ("FaultCleared", None, None)
    await hw.raise_fault(1)
    assert hw.faulted(1) == "SimulatedFault"
    assert drain(hw) == [
        Plugged(1),
        EVStateChanged(1, EVState.C),
        EVStateChanged(1, EVState.B),
        EVStateChanged(1, EVState.C),
        Unplugged(1),
        CardPresented("04A1B2C3D4E5F6", 2, "ISO14443"),
        CardPresented("AABBCCDD", None, "ISO14443"),
        FaultRaised(2, "GroundFailure"),
        FaultCleared(2),
        FaultRaised(1, "SimulatedFault"),
    ]


@pytest.mark.parametrize(
    ("setup", "command", "message"),
    [
        ([], lambda hw: hw.plug(3), "unknown EVSE 3"),
        (["plug"], lambda hw: hw.plug(1), "already has an EV"),
        ([], lambda hw: hw.charge(1), "no EV plugged"),
        ([], lambda hw: hw.suspend(1), "no EV plugged"),
        (["plug"], lambda hw: hw.suspend(1), "not asking for energy"),
        ([], lambda hw: hw.unplug(1), "no EV plugged"),
        (["plug"], lambda hw: hw.charge(1, 0), "watts"),
        (["plug"], lambda hw: hw.charge(1, -100), "watts"),
        (["plug"], lambda hw: hw.charge(1, math.nan), "watts"),
        (["plug"], lambda hw: hw.charge(1, math.inf), "watts"),
        (["plug"], lambda hw: hw.charge(1, 2e6), "watts"),
        ([], lambda hw: hw.tap(""), "token"),
        ([], lambda hw: hw.tap("A" * 37), "token"),
        ([], lambda hw: hw.tap("AA BB"), "token"),
        ([], lambda hw: hw.tap("ÄBC"), "token"),
        ([], lambda hw: hw.tap("AABB", 7), "unknown EVSE 7"),
        (["fault"], lambda hw: hw.raise_fault(1, "Other"), "already faulted"),
        ([], lambda hw: hw.raise_fault(1, ""), "fault code"),
        ([], lambda hw: hw.raise_fault(1, "X" * 51), "fault code"),
        ([], lambda hw: hw.clear_fault(1), "no fault"),
    ],
)
async def test_nonsense_is_refused_without_side_effects(
    short_dir: Path, setup: list[str], command: object, message: str
) -> None:
    hw = make_hw(short_dir)
    if "plug" in setup:
        await hw.plug(1)
    if "fault" in setup:
        await hw.raise_fault(1, "First")
    drain(hw)
    before = world(hw)
    with pytest.raises(CommandRefused, match=message):
        await command(hw)  # type: ignore[operator]
    assert drain(hw) == []
    assert world(hw) == before


async def test_token_limits_are_inclusive_and_non_hex_passes(short_dir: Path) -> None:
    hw = make_hw(short_dir)
    await hw.tap("F" * 36)
    await hw.tap("TAG-1")  # not a hex UID: passed on, the station and CSMS decide
    assert [e.token for e in drain(hw)] == ["F" * 36, "TAG-1"]  # type: ignore[attr-defined]


async def test_unknown_evse_is_a_key_error_but_indications_never_raise(short_dir: Path) -> None:
    hw = make_hw(short_dir)
    for call in (hw.ev_state, hw.faulted, hw.read_meter):
        with pytest.raises(KeyError):
            call(9)
    with pytest.raises(KeyError):
        hw.set_offered_current(9, 10)
    hw.indicate(9, Indication.ACCEPTED)  # logged and ignored


async def test_indications_are_recorded_and_logged(short_dir: Path, caplog: pytest.LogCaptureFixture) -> None:
    hw = make_hw(short_dir)
    caplog.set_level(logging.INFO, logger="appliance.hardware.sim")
    hw.indicate(None, Indication.UNAVAILABLE)
    hw.indicate(2, Indication.CHARGING)
    status = hw.status()
    assert [e["indication"] for e in status["evses"]] == ["unavailable", "charging"]
    assert status["indication"] == "unavailable"
    assert "display EVSE 2: charging" in caplog.text


async def test_status_uses_the_station_view_when_there_is_one(short_dir: Path) -> None:
    hw = make_hw(short_dir)
    first = hw.status()["evses"][0]
    assert (first["connectorStatus"], first["authorizedToken"], first["transactionId"]) == ("Unknown", None, None)
    snapshot = StationSnapshot(1, "Occupied", "AABBCCDD", "tx-1", {"chargingState": "EV"})
    hw.set_status_provider(lambda: [snapshot])
    status = hw.status()["evses"]
    assert status[0]["connectorStatus"] == "Occupied"
    assert status[0]["authorizedToken"] == "AABBCCDD"
    assert status[0]["transactionId"] == "tx-1"
    assert status[0]["station"] == {"chargingState": "EV"}
    assert status[1]["connectorStatus"] == "Unknown"  # the station said nothing about EVSE 2
    keys = {
        "evseId",
        "connectorStatus",
        "evState",
        "authorizedToken",
        "transactionId",
        "energyWh",
        "powerW",
        "fault",
        "offeredCurrentA",
        "phases",
        "indication",
    }
    assert keys <= set(status[1])

    def broken() -> list[StationSnapshot]:
        raise RuntimeError("station bug")

    hw.set_status_provider(broken)
    assert hw.status()["evses"][0]["connectorStatus"] == "Unknown"


def test_layouts_need_distinct_ids(short_dir: Path) -> None:
    with pytest.raises(ValueError, match="distinct"):
        SimHardware([EvseLayout(1), EvseLayout(1)], short_dir / "sim.sock")


# --------------------------------------------------------------------------------------- meter physics


async def test_energy_grows_by_power_times_time(short_dir: Path, autojump_clock: MockClock) -> None:
    hw = make_hw(short_dir)
    start = hw.read_meter(1)
    assert 1000 <= start.energy_wh <= 10000  # a plausible, used meter
    await hw.plug(1)
    await hw.charge(1)
    hw.set_offered_current(1, 16)
    t0, e0 = trio.current_time(), hw.read_meter(1).energy_wh
    await trio.sleep(3600)
    reading = hw.read_meter(1)
    hours = (trio.current_time() - t0) / 3600
    assert reading.energy_wh - e0 == pytest.approx(16 * 3 * 230 * hours, rel=1e-6)
    assert reading.power_w == pytest.approx(16 * 3 * 230, rel=0.011)
    assert reading.current_a == (16.0, 16.0, 16.0)
    assert_consistent(reading, THREE_PHASE)


async def test_power_is_the_evs_wish_when_below_the_offer(short_dir: Path, autojump_clock: MockClock) -> None:
    hw = make_hw(short_dir)
    await hw.plug(2)
    await hw.charge(2, watts=3000)
    hw.set_offered_current(2, 32)
    e0 = hw.read_meter(2).energy_wh
    await trio.sleep(1800)
    reading = hw.read_meter(2)
    assert reading.energy_wh - e0 == pytest.approx(1500, rel=1e-6)
    assert reading.power_w == pytest.approx(3000, abs=3)
    assert reading.current_a[0] == pytest.approx(3000 / reading.voltage_v[0], abs=0.01)
    assert_consistent(reading, ONE_PHASE)


async def test_power_follows_the_offered_limit(short_dir: Path, autojump_clock: MockClock) -> None:
    hw = make_hw(short_dir)
    await hw.plug(1)
    await hw.charge(1)
    hw.set_offered_current(1, 32)
    e0 = hw.read_meter(1).energy_wh
    await trio.sleep(1800)
    assert hw.read_meter(1).power_w == pytest.approx(22080, rel=0.011)
    hw.set_offered_current(1, 10)  # integrates the first half hour at 22 kW first
    assert hw.read_meter(1).power_w == pytest.approx(6900, rel=0.011)
    await trio.sleep(1800)
    assert hw.read_meter(1).energy_wh - e0 == pytest.approx(22080 / 2 + 6900 / 2, rel=1e-6)
    hw.set_offered_current(1, 100)  # clamped to the EVSE's maximum
    assert hw.read_meter(1).offered_current_a == 32
    hw.set_offered_current(1, -3)
    assert hw.read_meter(1).offered_current_a == 0
    hw.set_offered_current(1, math.nan)
    assert hw.read_meter(1).offered_current_a == 0


@pytest.mark.parametrize("condition", ["suspended", "unplugged", "faulted", "offered0", "plugged_only"])
async def test_no_power_without_all_conditions(short_dir: Path, autojump_clock: MockClock, condition: str) -> None:
    hw = make_hw(short_dir)
    await hw.plug(1)
    await hw.charge(1)
    hw.set_offered_current(1, 16)
    if condition == "suspended":
        await hw.suspend(1)
    elif condition == "unplugged":
        await hw.unplug(1)
    elif condition == "faulted":
        await hw.raise_fault(1, "OverCurrent")
    elif condition == "offered0":
        hw.set_offered_current(1, 0)
    else:
        await hw.suspend(1)
        hw.set_offered_current(1, 32)
    before = hw.read_meter(1)
    await trio.sleep(600)
    after = hw.read_meter(1)
    assert after.energy_wh == before.energy_wh
    assert after.power_w == 0
    assert after.current_a == (0.0, 0.0, 0.0)
    assert_consistent(after, THREE_PHASE)


async def test_energy_resumes_after_a_fault_clears(short_dir: Path, autojump_clock: MockClock) -> None:
    hw = make_hw(short_dir)
    await hw.plug(2)
    await hw.charge(2)
    hw.set_offered_current(2, 10)
    await hw.raise_fault(2)
    e0 = hw.read_meter(2).energy_wh
    await trio.sleep(600)
    await hw.clear_fault(2)
    await trio.sleep(360)
    assert hw.read_meter(2).energy_wh - e0 == pytest.approx(2300 * 0.1, rel=1e-6)


async def test_readings_are_deterministic(short_dir: Path, autojump_clock: MockClock) -> None:
    a = SimHardware([THREE_PHASE], short_dir / "a.sock")
    b = SimHardware([THREE_PHASE], short_dir / "b.sock")
    for hw in (a, b):
        await hw.plug(1)
        await hw.charge(1)
        hw.set_offered_current(1, 20)
    await trio.sleep(123.4)
    first, second = a.read_meter(1), b.read_meter(1)
    assert first.taken_at == second.taken_at == trio.current_time()  # the clock the physics runs on
    assert replace(first, taken_utc=second.taken_utc) == second  # the wall-clock stamps differ by microseconds
    voltages = set()
    for _ in range(50):
        await trio.sleep(1.7)
        voltages.add(a.read_meter(1).voltage_v)
    assert len(voltages) > 40  # the voltage ripples like a real grid's


_OPS = st.one_of(
    st.tuples(st.sampled_from(["plug", "suspend", "unplug", "fault", "clear"]), st.sampled_from([1, 2])),
    st.tuples(st.just("charge"), st.sampled_from([1, 2]), st.none() | st.floats(100, 30000)),
    st.tuples(st.just("offer"), st.sampled_from([1, 2]), st.floats(-5, 40)),
    st.tuples(st.just("sleep"), st.floats(0, 900)),
)


@settings(max_examples=60, deadline=None)
@given(st.lists(_OPS, max_size=40))
def test_meter_invariants_hold_for_any_story(ops: list[tuple[object, ...]]) -> None:
    """Whatever happens, the register never decreases and every reading fits the physics."""

    async def story() -> None:
        hw = SimHardware([THREE_PHASE, ONE_PHASE], Path("/nonexistent/sim.sock"), events_buffer=1000)
        last = {1: hw.read_meter(1).energy_wh, 2: hw.read_meter(2).energy_wh}
        for op in ops:
            name = op[0]
            try:
                if name == "sleep":
                    await trio.sleep(op[1])  # type: ignore[arg-type]
                elif name == "offer":
                    hw.set_offered_current(op[1], op[2])  # type: ignore[arg-type]
                elif name == "charge":
                    await hw.charge(op[1], op[2])  # type: ignore[arg-type]
                elif name == "fault":
                    await hw.raise_fault(op[1])  # type: ignore[arg-type]
                elif name == "clear":
                    await hw.clear_fault(op[1])  # type: ignore[arg-type]
                else:
                    await getattr(hw, str(name))(op[1])
            except CommandRefused:
                pass
            for layout in (THREE_PHASE, ONE_PHASE):
                reading = hw.read_meter(layout.evse_id)
                assert reading.energy_wh >= last[layout.evse_id]
                last[layout.evse_id] = reading.energy_wh
                assert_consistent(reading, layout)
                charging = hw.ev_state(layout.evse_id) is EVState.C and hw.faulted(layout.evse_id) is None
                if not charging or reading.offered_current_a == 0:
                    assert reading.power_w == 0
                elif reading.offered_current_a >= 0.01:  # below that the current rounds (down) to 0.00 A
                    assert reading.power_w > 0

    trio.run(story, clock=MockClock(autojump_threshold=0))


# --------------------------------------------------------------------------------------- persistence


async def test_register_survives_a_restart(short_dir: Path, autojump_clock: MockClock) -> None:
    first = make_hw(short_dir)
    async with running(first):
        await first.plug(1)
        await first.charge(1)
        first.set_offered_current(1, 16)
        await trio.sleep(600)
        charged = first.read_meter(1).energy_wh
        other = first.read_meter(2).energy_wh
    frozen = first.read_meter(1)  # stopped: contactors open, nothing more flows
    assert frozen.power_w == 0
    assert frozen.energy_wh >= charged
    assert (short_dir / "sim.meter.json").is_file()

    second = make_hw(short_dir)
    assert second.read_meter(1).energy_wh == pytest.approx(frozen.energy_wh, abs=0.0011)
    assert second.read_meter(1).energy_wh >= frozen.energy_wh
    assert second.read_meter(2).energy_wh >= other
    assert second.ev_state(1) is EVState.C and second.ev_state(2) is EVState.A  # the car is still plugged in
    assert second.offered_current(1) == 0  # until the restarted station offers again
    async with running(second):
        second.set_offered_current(1, 16)
        await trio.sleep(60)
        assert second.read_meter(1).energy_wh > frozen.energy_wh + 180


async def test_a_crash_never_makes_the_register_go_backwards(short_dir: Path) -> None:
    """The file holds a lease ahead of the register, so a reload after kill -9 is never below a reading."""
    hw = make_hw(short_dir, persist_interval_s=0.2)
    meter_file = short_dir / "sim.meter.json"
    async with running(hw):
        await hw.plug(1)
        await hw.charge(1)
        hw.set_offered_current(1, 32)
        for _ in range(6):
            await trio.sleep(0.25)
            reading = hw.read_meter(1).energy_wh
            stored = json.loads(meter_file.read_text())["evses"]["1"]["energyWh"]
            assert stored >= reading
            assert make_hw(short_dir).read_meter(1).energy_wh >= reading  # "restart" from the file as it is
            assert stored - reading <= 22080 * 3 * 0.2 / 3600 + 1  # and only a few Wh ahead


async def test_idle_meter_is_not_rewritten(short_dir: Path) -> None:
    # Real time: under autojump the clock runs on while the write thread works, which makes counting racy.
    interval = 0.05
    hw = make_hw(short_dir, persist_interval_s=interval)
    writes: list[dict[int, float]] = []
    original = hw._files.save

    def counting(records: dict[int, EvseRecord]) -> bool:
        writes.append({evse_id: record.energy_wh for evse_id, record in records.items()})
        return original(records)

    hw._files.save = counting  # type: ignore[method-assign]
    async with running(hw):
        await trio.sleep(0.5)
        assert len(writes) == 1  # the initial one, then nothing while nothing moves
        await hw.plug(1)
        await hw.charge(1)
        hw.set_offered_current(1, 16)
        start = trio.current_time()
        await trio.sleep(0.5)
        elapsed = trio.current_time() - start
        # The initial write, one per command (plug, charge), the power rise at once, then at most one per
        # interval while the register moves.
        assert 4 <= len(writes) <= 4 + elapsed / interval + 1
        hw.set_offered_current(1, 0)
        await trio.sleep(3 * interval)
        settled = len(writes)
        await trio.sleep(0.3)
        assert len(writes) == settled  # idle again: no more writes
    assert writes[-1] == {
        1: pytest.approx(hw.read_meter(1).energy_wh, abs=0.0011),
        2: pytest.approx(hw.read_meter(2).energy_wh, abs=0.0011),
    }


async def test_unreadable_meter_file_falls_back_to_seed_values(
    short_dir: Path, caplog: pytest.LogCaptureFixture
) -> None:
    (short_dir / "sim.meter.json").write_text("{not json")
    hw = make_hw(short_dir)
    assert 1000 <= hw.read_meter(1).energy_wh <= 10000
    assert "unreadable" in caplog.text
    (short_dir / "sim.meter.json").write_text(json.dumps({"evses": {"1": {"energyWh": -5}}}))
    assert make_hw(short_dir).read_meter(1).energy_wh >= 1000


async def test_physical_state_survives_a_restart(short_dir: Path, autojump_clock: MockClock) -> None:
    """CONTRACT, simulated hardware: the EV (and the power it asks for), faults and a silent controller are
    still there after the station process restarts; the offered current is the station's to set again."""
    first = make_hw(short_dir)
    async with running(first):
        await first.plug(1)
        await first.charge(1, watts=7400)
        first.set_offered_current(1, 32)
        await first.plug(2)
        await first.raise_fault(2, "GroundFailure")
        await trio.sleep(60)
        before = first.status()["evses"]
    second = make_hw(short_dir)
    after = second.status()["evses"]
    for key in ("evState", "requestedW", "fault", "silent"):
        assert [e[key] for e in after] == [e[key] for e in before], key
    assert [e["evState"] for e in after] == ["C", "B"] and after[0]["requestedW"] == 7400
    assert after[1]["fault"] == "GroundFailure"
    assert [e["offeredCurrentA"] for e in after] == [0.0, 0.0]
    async with running(second):
        second.set_offered_current(1, 32)
        start = second.read_meter(1).energy_wh
        await trio.sleep(360)
        assert second.read_meter(1).energy_wh - start == pytest.approx(740, rel=1e-6)  # 7.4 kW, as it asked
        await second.unplug(1)  # and the restored world takes commands as before
        await second.clear_fault(2)
        assert drain(second) == [Unplugged(1), FaultCleared(2)]


async def test_a_command_is_persisted_before_its_event(short_dir: Path) -> None:
    """kill -9 right after `appliance sim plug` answered: the file already has the EV (no clean stop needed)."""
    hw = make_hw(short_dir)
    async with running(hw):
        await hw.plug(1)
        await hw.charge(1, watts=3000)
        restarted = make_hw(short_dir)  # reads the files as a station started now would
        assert restarted.ev_state(1) is EVState.C and restarted.status()["evses"][0]["requestedW"] == 3000
        await hw.unplug(1)
        assert make_hw(short_dir).ev_state(1) is EVState.A


async def stopped_after_charging(directory: Path) -> float:
    """Charge EVSE 1 for a while, stop cleanly; the register it stopped at."""
    hw = make_hw(directory)
    async with running(hw):
        await hw.plug(1)
        await hw.charge(1)
        hw.set_offered_current(1, 32)
        await trio.sleep(300)
    return hw.read_meter(1).energy_wh


@pytest.mark.parametrize(
    "damage",
    [
        b"{not json",
        b"",
        b"\x00\x00\x00",
        b'{"format": 1, "evses": []}',
        b"[1, 2]",
        b'{"format": 1, "evses": {"1": {"energyWh": 1.0, "evState": "C"}}}',  # valid, but far behind
        b'{"format": 1, "evses": {"1": {"energyWh": -3, "evState": "C"}}}',
        b'{"format": 1, "evses": {"1": "C"}}',
    ],
)
async def test_a_damaged_state_file_never_makes_the_register_go_backwards(
    short_dir: Path, autojump_clock: MockClock, caplog: pytest.LogCaptureFixture, damage: bytes
) -> None:
    """Issue 15: the meter file is a second durable copy of the register; the larger copy wins. The damaged
    file is logged and ignored (the EVSE starts empty where its entry is unusable), never a crash."""
    register = await stopped_after_charging(short_dir)
    (short_dir / "sim.state.json").write_bytes(damage)
    restarted = make_hw(short_dir)
    assert restarted.read_meter(1).energy_wh >= register
    assert restarted.read_meter(1).energy_wh == pytest.approx(register, abs=0.0011)
    if damage.startswith(b'{"format": 1, "evses": {"1": {"energyWh": 1.0'):
        assert restarted.ev_state(1) is EVState.C  # a readable entry keeps the EV; only its register lost
    else:
        assert restarted.ev_state(1) is EVState.A
        assert "sim state file" in caplog.text
    async with running(restarted):  # and it runs and persists again
        if restarted.ev_state(1) is EVState.A:
            await restarted.plug(1)
        else:
            await restarted.unplug(1)
    assert json.loads((short_dir / "sim.state.json").read_text())["evses"]["1"]["energyWh"] >= register


async def test_a_damaged_meter_copy_is_outvoted_by_the_state_file(short_dir: Path, autojump_clock: MockClock) -> None:
    register = await stopped_after_charging(short_dir)
    (short_dir / "sim.meter.json").write_text('{"format": 1, "evses": {"1": {"energyWh": 0.5}}}')
    restarted = make_hw(short_dir)
    assert restarted.read_meter(1).energy_wh >= register
    assert restarted.ev_state(1) is EVState.C


async def test_a_bad_physical_entry_empties_only_that_evse(short_dir: Path, caplog: pytest.LogCaptureFixture) -> None:
    hw = make_hw(short_dir)
    await hw.plug(1)
    await hw.plug(2)
    state = json.loads((short_dir / "sim.state.json").read_text())
    state["evses"]["1"]["evState"] = "D"  # not a pilot state this simulator knows
    state["evses"]["2"]["requestedW"] = 7000
    (short_dir / "sim.state.json").write_text(json.dumps(state))
    restarted = make_hw(short_dir)
    assert restarted.ev_state(1) is EVState.A and restarted.ev_state(2) is EVState.B
    assert restarted.read_meter(1).energy_wh == hw.read_meter(1).energy_wh
    assert "bad physical state for EVSE 1" in caplog.text


async def test_state_files_are_replaced_atomically(short_dir: Path) -> None:
    """No temporary file is left behind and both copies hold the same registers after every write."""
    hw = make_hw(short_dir)
    await hw.plug(1)
    state = json.loads((short_dir / "sim.state.json").read_text())
    meter = json.loads((short_dir / "sim.meter.json").read_text())
    assert {k: v["energyWh"] for k, v in state["evses"].items()} == {
        k: v["energyWh"] for k, v in meter["evses"].items()
    }
    assert state["evses"]["1"]["evState"] == "B"
    assert sorted(os.listdir(short_dir)) == ["sim.meter.json", "sim.state.json"]


async def test_state_dir_is_where_the_files_go(short_dir: Path) -> None:
    hw = SimHardware([THREE_PHASE], short_dir / "run" / "sim.sock", state_dir=short_dir / "data")
    await hw.plug(1)
    assert (short_dir / "data" / "sim.state.json").is_file() and not (short_dir / "run").exists()


# --------------------------------------------------------------------------------------- a silent controller


async def test_a_silent_controller_reports_nothing_and_drops_the_contactor(
    short_dir: Path, autojump_clock: MockClock
) -> None:
    hw = make_hw(short_dir)
    async with running(hw):
        await hw.plug(1)
        await hw.charge(1)
        hw.set_offered_current(1, 32)
        await trio.sleep(60)
        assert await hw.silence(1) == ("DeviceFault", hw.evse_status(1))
        register = hw.read_meter(1).energy_wh
        assert hw.offered_current(1) == 0
        hw.set_offered_current(1, 16)  # not heard
        assert hw.offered_current(1) == 0
        await trio.sleep(60)
        assert hw.read_meter(1).energy_wh == register and hw.read_meter(1).power_w == 0
        event, state = await hw.unplug(1)  # the world goes on; the station just does not hear of it
        assert event is None and state["evState"] == "A" and state["silent"] is True
        with pytest.raises(CommandRefused, match="already silent"):
            await hw.silence(1)
        assert (await hw.revive(1))[0] == "DeviceRecovered"
        with pytest.raises(CommandRefused, match="not silent"):
            await hw.revive(1)
        assert drain(hw) == [
            Plugged(1),
            EVStateChanged(1, EVState.C),
            DeviceFault(1, "ChargeController", "no answer from the controller"),
            DeviceRecovered(1, "ChargeController"),
        ]
        hw.set_offered_current(1, 16)
        assert hw.offered_current(1) == 16


async def test_a_controller_silent_at_a_restart_is_reported_at_once(short_dir: Path) -> None:
    hw = make_hw(short_dir)
    await hw.silence(2)
    drain(hw)
    restarted = make_hw(short_dir)
    async with running(restarted):
        assert await restarted.events.receive() == DeviceFault(2, "ChargeController", "silent")
        assert restarted.status()["evses"][1]["silent"] is True


# --------------------------------------------------------------------------------------- back-pressure


async def test_full_event_channel_blocks_the_command_instead_of_dropping(short_dir: Path) -> None:
    hw = make_hw(short_dir, events_buffer=1)
    await hw.plug(1)  # fills the channel
    done: list[str] = []

    async def plug_two() -> None:
        await hw.plug(2)
        done.append("plug 2")

    async def fault_one() -> None:
        await hw.raise_fault(1, "Late")
        done.append("fault 1")

    async with trio.open_nursery() as nursery:
        nursery.start_soon(plug_two)
        await trio.testing.wait_all_tasks_blocked()
        nursery.start_soon(fault_one)
        await trio.testing.wait_all_tasks_blocked()
        assert done == []
        assert hw.ev_state(2) is EVState.B  # the world changed; the station just has not heard yet
        assert hw.status()["evses"][1]["evState"] == "B"  # status still answers
        assert await hw.events.receive() == Plugged(1)
        assert await hw.events.receive() == Plugged(2)
        assert await hw.events.receive() == FaultRaised(1, "Late")
    assert done == ["plug 2", "fault 1"]


async def test_an_idle_simulator_sets_no_timer(short_dir: Path) -> None:
    """Idle CPU: with nothing flowing and the state on disk, the persist loop waits for a kick alone (it used
    to wake every interval to find the same state); with power flowing it wakes to renew the lease."""
    hw = make_hw(short_dir, persist_interval_s=0.05)
    async with running(hw):
        await trio.testing.wait_all_tasks_blocked(0.01)
        assert trio.lowlevel.current_statistics().seconds_to_next_deadline == math.inf
        await hw.plug(1)
        await hw.charge(1)
        hw.set_offered_current(1, 16)
        await trio.testing.wait_all_tasks_blocked(0.01)
        assert trio.lowlevel.current_statistics().seconds_to_next_deadline <= 0.05
        hw.set_offered_current(1, 0)
        await trio.sleep(0.1)  # one more renewal at most, then settled
        await trio.testing.wait_all_tasks_blocked(0.01)
        assert trio.lowlevel.current_statistics().seconds_to_next_deadline == math.inf
