"""A whole charging session on the serial backend against the bench's devices on ptys (and socket://).

Plug (pilot B), select the EVSE on the board and present the card (the reader's line), charge (pilot C): the
board closes the contactor once the station offers current, the meter simulator's registers follow the load,
and every meter value the station sends matches what the meter answered (within the maps' rounding); the EV
stops and leaves, and the Ended event carries the register the meter shows.
"""

from __future__ import annotations

from pathlib import Path

import pytest
import trio

from appliance.lab.csms import LoopbackCsms
from tests.conformance.tx_helpers import samples, tx_events, wait_event, wait_status, wait_trigger
from tests.hardware.serial.bench_helpers import bench_station

TOKEN = "04A1B2C3"


def _values(event: dict, measurand: str) -> dict[str | None, float]:
    return {
        s.get("phase"): float(s["value"])
        for s in samples(event)
        if s.get("measurand", "Energy.Active.Import.Register") == measurand
    }


@pytest.mark.parametrize("transport", ["pty", "socket"])
async def test_a_whole_session_with_meter_values_from_the_registers(
    csms: LoopbackCsms, data_dir: Path, transport: str
) -> None:
    measurands = "Energy.Active.Import.Register,Power.Active.Import,Current.Import,Voltage,Current.Offered"
    async with bench_station(
        csms,
        data_dir,
        transport=transport,  # type: ignore[arg-type]
        variables={"SampledDataCtrlr.TxUpdatedMeasurands": measurands},
    ) as (_station, bench):
        mark = csms.mark()
        bench.board.plug(1)
        await wait_status(csms, "Occupied", since=mark)
        bench.board.select(1)
        await trio.sleep(0.2)
        bench.reader.present(TOKEN)
        await csms.trio.wait_action("CS001", "Authorize", since=mark)
        bench.board.charge(1, 7000)
        charging = await wait_event(csms, lambda e: e["transactionInfo"].get("chargingState") == "Charging", since=mark)
        tx_id = charging["transactionInfo"]["transactionId"]
        # A periodic sample taken while the load is steady: the station's values are the meter's registers.
        with trio.fail_after(10):
            while bench.world.reading(1).power_w < 6999:  # noqa: ASYNC110 - the board closes the contactor
                await trio.sleep(0.05)
        await trio.sleep(1.2)  # a poll of the steady load has landed
        sample_mark = csms.mark()
        before = bench.world.reading(1).energy_wh
        sample = await wait_trigger(csms, "MeterValuePeriodic", since=sample_mark)
        served = bench.meters.served[1]
        power = _values(sample, "Power.Active.Import")[None]
        assert power == pytest.approx(served.power_w, abs=0.1) and power == pytest.approx(7000, abs=0.1)
        volts = _values(sample, "Voltage")
        assert [volts[p] for p in ("L1-N", "L2-N", "L3-N")] == pytest.approx(list(served.voltage_v), abs=0.05)
        amps = _values(sample, "Current.Import")
        assert [amps[p] for p in ("L1", "L2", "L3")] == pytest.approx(list(served.current_a), abs=0.005)
        assert _values(sample, "Current.Offered")[None] == 32.0
        energy = _values(sample, "Energy.Active.Import.Register")[None]
        # The register moves (7 kW); the sample was taken from a poll between `before` (less a poll interval and a
        # sampling interval: it may have been built just before the mark) and the last answer served.
        assert before - 7000 * 1.5 / 3600 <= energy <= served.energy_wh + 0.001

        bench.board.suspend(1)  # the EV is full: power 0, the register stands still
        await wait_event(csms, lambda e: e["transactionInfo"].get("chargingState") == "SuspendedEV", since=mark)
        await trio.sleep(1.2)
        standing = bench.world.reading(1).energy_wh
        end_mark = csms.mark()
        bench.board.unplug(1)
        ended = await wait_event(csms, lambda e: e["eventType"] == "Ended", since=end_mark)
        await wait_status(csms, "Available", since=end_mark)
    assert ended["transactionInfo"]["transactionId"] == tx_id
    assert ended["triggerReason"] == "EVCommunicationLost"
    end_register = [
        s
        for s in samples(ended)
        if s.get("context") == "Transaction.End"
        and s.get("measurand", "Energy.Active.Import.Register") == "Energy.Active.Import.Register"
    ]
    assert end_register and float(end_register[-1]["value"]) == pytest.approx(standing, abs=0.01)
    seq = [e["seqNo"] for e in tx_events(csms, mark) if e["transactionInfo"]["transactionId"] == tx_id]
    assert seq == list(range(len(seq)))
