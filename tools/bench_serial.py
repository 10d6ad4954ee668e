"""Benchmark of the serial backend: what polling meters costs, and how fast a card reaches the CSMS.

    python tools/bench_serial.py            # 10 s per polling interval, 30 cards
    python tools/bench_serial.py --quick    # 3 s, 10 cards

* Polling cost: the backend's own meter polling (`poll_bus` with an SDM630 and a B23 on one bus, 9600 Bd, as
  the station runs it: Trio loop, worker threads, pymodbus) in this process, against `appliance devsim meter`
  in another one on a pty, so the CPU time of this process (getrusage) is the polling's alone. Run at 1, 0.25
  and 0.1 s intervals: CPU per meter poll, and so per meter per second at 1 poll/s.
* Card to AuthorizeRequest: a real station process (serial backend) against a device bench on ptys and the
  loopback CSMS, all in this process's threads: from the bench writing the card's line on the reader's pty to
  the CSMS receiving the Authorize CALL (both stamped with time.monotonic() in this process).
"""

from __future__ import annotations

import argparse
import resource
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import trio

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from appliance.hardware.base import EvseLayout, HardwareEvent  # noqa: E402
from appliance.hardware.serial.meters import MeterPoint, poll_bus  # noqa: E402
from appliance.hardware.serial.modbus import ModbusBus  # noqa: E402
from appliance.hardware.serial.registers import B23, SDM630  # noqa: E402
from appliance.hardware.serial.settings import BusSettings, MeterSettings, PortSettings  # noqa: E402
from appliance.lab.csms import LoopbackCsms  # noqa: E402
from appliance.lab.devsim.bench import Bench  # noqa: E402
from appliance.lab.process import PASSWORD, StationProcess, config_text  # noqa: E402

VARIABLES = {
    "AuthCtrlr.LocalPreAuthorize": False,
    "AuthCacheCtrlr.Enabled": False,
    "SampledDataCtrlr.TxUpdatedInterval": 60,
    "OCPPCommCtrlr.HeartbeatInterval": 300,
}


def cpu_seconds() -> float:
    usage = resource.getrusage(resource.RUSAGE_SELF)
    return usage.ru_utime + usage.ru_stime


def polling_cost(seconds: float) -> list[tuple[float, float]]:
    """(interval, CPU ms per meter poll) for each interval."""
    work = Path(tempfile.mkdtemp(prefix="bs-"))
    port = str(work / "meters")
    sim = subprocess.Popen(
        [sys.executable, "-m", "appliance", "devsim", "meter", "--port", port, "--unit", "1:sdm630", "--unit", "2:b23"],
        cwd=REPO,
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        text=True,
    )
    try:
        assert sim.stdout is not None and '"ready"' in sim.stdout.readline()

        async def measure(interval: float) -> float:
            bus = ModbusBus(BusSettings("rs485", PortSettings(port, 9600), 0.3))
            meters = [
                MeterPoint(MeterSettings(1, "rs485", 1, SDM630), EvseLayout(1, phases=3), 3),
                MeterPoint(MeterSettings(2, "rs485", 2, B23), EvseLayout(2, phases=1), 3),
            ]

            async def emit(event: HardwareEvent) -> None:
                raise RuntimeError(f"a meter failed during the measurement: {event}")

            before = cpu_seconds()
            with trio.move_on_after(seconds):
                await poll_bus(bus, meters, interval, emit)
            bus.close()
            return (cpu_seconds() - before) / (len(meters) * seconds / interval) * 1000

        async def all_intervals() -> list[tuple[float, float]]:
            return [(interval, await measure(interval)) for interval in (1.0, 0.25, 0.1)]

        return trio.run(all_intervals)
    finally:
        if sim.stdin is not None:
            sim.stdin.write("quit\n")
            sim.stdin.close()
        sim.wait(10)


def card_latencies(work: Path, csms: LoopbackCsms, cards: int) -> list[float]:
    """Card line → Authorize at the CSMS, in seconds, for `cards` cards."""
    with Bench(work / "bench") as bench:
        config = work / "station.toml"
        config.write_text(bench.station_config(config_text(work / "data", csms.url, variables=VARIABLES)))
        station = StationProcess(config, work / "station.log")
        station.start()
        try:
            assert station.proc is not None
            csms.wait_action("CS001", "StatusNotification", count=2, timeout=30)
            time.sleep(2.0)  # start-up work done
            latencies = []
            for i in range(cards):
                uid = f"04{i:06X}"
                mark = csms.mark()
                bench.board.select(1 + i % 2)
                time.sleep(0.2)
                written = time.monotonic()
                bench.reader.present(uid)
                csms.wait_action("CS001", "Authorize", since=mark, timeout=10)
                frame = next(f for f in csms.frames_snapshot("CS001", mark) if f.action == "Authorize")
                latencies.append(frame.monotonic - written)
                time.sleep(0.3)
        finally:
            station.stop()
    return latencies


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true")
    args = parser.parse_args()
    seconds, cards = (3.0, 10) if args.quick else (10.0, 30)
    for interval, ms_per_poll in polling_cost(seconds):
        print(
            f"polling every {interval:g} s: {ms_per_poll:.2f} ms CPU per meter poll "
            f"({ms_per_poll / interval / 10:.2f} % of a core per meter)"
        )
    with LoopbackCsms(passwords={"CS001": PASSWORD}, heartbeat_interval=300) as csms:
        latencies = card_latencies(Path(tempfile.mkdtemp(prefix="bs-")), csms, cards)
    ms = sorted(x * 1000 for x in latencies)
    print(
        f"card line → AuthorizeRequest at the CSMS ({len(ms)} cards): median {statistics.median(ms):.1f} ms, "
        f"p90 {ms[int(len(ms) * 0.9) - 1]:.1f} ms, max {ms[-1]:.1f} ms"
    )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
