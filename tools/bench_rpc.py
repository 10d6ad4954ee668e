"""Benchmark: how fast the station answers the CSMS, and what it costs at rest.

    python tools/bench_rpc.py                 # 2,000 calls of each kind, 60 s idle measurement
    python tools/bench_rpc.py --quick         # 300 calls, 5 s idle (a smoke run)

A real station process (sim hardware, its own data directory) connects to the loopback CSMS in this process.
For each call two latencies are printed:

* wire: from the CSMS writing the CALL to the CSMS reading the answer, both stamped on the CSMS's event-loop
  thread — the station's share plus loopback TCP;
* end-to-end: what a CSMS application calling through the `ocpp` library sees (its own validation and thread
  hand-offs included).

The same calls are first answered by `EchoStation`, a peer that answers every CALL at once with a canned
result: its wire figures are the floor (the CSMS stack plus loopback TCP), printed beside the station's so
the station's own share is the difference.

Then the station's RSS and its CPU use while idle (heartbeats and pings only).
"""

from __future__ import annotations

import argparse
import os
import signal
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from appliance.lab.csms import LoopbackCsms  # noqa: E402
from appliance.lab.fastpeers import EchoStation  # noqa: E402

STATION = "BENCH01"
ECHO = "ECHO01"
PASSWORD = "bench-password-0123"

GET_10 = {
    "getVariableData": [
        {"component": {"name": c}, "variable": {"name": v}}
        for c, v in [
            ("OCPPCommCtrlr", "HeartbeatInterval"),
            ("OCPPCommCtrlr", "WebSocketPingInterval"),
            ("OCPPCommCtrlr", "OfflineThreshold"),
            ("OCPPCommCtrlr", "RetryBackOffWaitMinimum"),
            ("TxCtrlr", "TxStartPoint"),
            ("TxCtrlr", "TxStopPoint"),
            ("TxCtrlr", "EVConnectionTimeOut"),
            ("SampledDataCtrlr", "TxUpdatedInterval"),
            ("AuthCtrlr", "AuthorizeRemoteStart"),
            ("ClockCtrlr", "DateTime"),
        ]
    ]
}
GET_1 = {"getVariableData": [{"component": {"name": "OCPPCommCtrlr"}, "variable": {"name": "HeartbeatInterval"}}]}


def percentile(values: list[float], p: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, round(p / 100 * (len(ordered) - 1)))]


def report(name: str, wire: list[float], end_to_end: list[float]) -> None:
    def fmt(values: list[float]) -> str:
        ms = [v * 1000 for v in values]
        return (
            f"p50 {percentile(ms, 50):6.2f} ms  p99 {percentile(ms, 99):6.2f} ms  max {max(ms):6.2f} ms  "
            f"mean {statistics.fmean(ms):6.2f} ms"
        )

    print(f"{name:<22} n={len(wire)}")
    print(f"  wire        {fmt(wire)}")
    print(f"  end-to-end  {fmt(end_to_end)}")


def rss_mb(pid: int) -> float:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    return float("nan")


def cpu_seconds(pid: int) -> float:
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def measure(csms: LoopbackCsms, payload: dict, calls: int, station: str = STATION) -> tuple[list[float], list[float]]:
    wire, e2e = [], []
    for _ in range(calls):
        mark = csms.mark()
        start = time.perf_counter()
        csms.call(station, "GetVariables", payload)
        e2e.append(time.perf_counter() - start)
        frames = csms.frames_snapshot(station, since=mark)
        sent = next(f for f in frames if f.direction == "out" and f.is_call)
        answer = next(f for f in frames if f.direction == "in" and f.message_id == sent.message_id)
        wire.append(answer.monotonic - sent.monotonic)
    return wire, e2e


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--calls", type=int, default=2000)
    parser.add_argument("--idle", type=float, default=60.0, help="seconds of idle CPU measurement")
    parser.add_argument("--quick", action="store_true", help="300 calls, 5 s idle")
    args = parser.parse_args()
    if args.quick:
        args.calls, args.idle = 300, 5.0
    work = Path(tempfile.mkdtemp(prefix="bench-", dir="/tmp"))
    config = work / "station.toml"
    with LoopbackCsms(
        passwords={STATION: PASSWORD, ECHO: PASSWORD}, heartbeat_interval=60, max_frames=40 * args.calls
    ) as csms:
        echo = EchoStation(csms.url, ECHO, PASSWORD)
        echo.start()
        try:
            csms.wait_connected(ECHO)
            measure(csms, GET_1, 50, ECHO)
            floor_1 = measure(csms, GET_1, args.calls, ECHO)
            floor_10 = measure(csms, GET_10, args.calls, ECHO)
        finally:
            echo.stop()
        report("floor: EchoStation, 1 item", *floor_1)
        report("floor: EchoStation, 10 items", *floor_10)
        config.write_text(
            f'[station]\nid = "{STATION}"\ndata_dir = "{work}/data"\n'
            f'[csms]\nurl = "{csms.url}"\nsecurity_profile = 1\nbasic_auth_password = "{PASSWORD}"\n'
            f'[hardware]\nbackend = "sim"\nsim_socket = "{work}/data/sim.sock"\n[logging]\nlevel = "WARNING"\n'
            '[variables]\n"DeviceDataCtrlr.ItemsPerMessage[GetVariables]" = 10\n'
        )
        station = subprocess.Popen([sys.executable, "-m", "appliance", "run", "--config", str(config)], cwd=REPO)
        try:
            csms.wait_action(STATION, "StatusNotification", timeout=30, count=2)
            measure(csms, GET_1, 50)  # warm-up: schema compilation, caches
            for name, payload, floor in (("1 item", GET_1, floor_1), ("10 items", GET_10, floor_10)):
                wire, e2e = measure(csms, payload, args.calls)
                report(f"GetVariables {name}", wire, e2e)
                share = percentile(wire, 99) - percentile(floor[0], 99)
                print(
                    f"  station's share at p99: {1000 * share:.2f} ms "
                    f"(p99 {percentile(wire, 99) / percentile(floor[0], 99):.1f}× the floor)"
                )
            time.sleep(1)
            before = cpu_seconds(station.pid)
            time.sleep(args.idle)
            used = cpu_seconds(station.pid) - before
            print(
                f"station RSS {rss_mb(station.pid):.1f} MB; idle CPU {100 * used / args.idle:.2f} % "
                f"over {args.idle:.0f} s"
            )
        finally:
            station.send_signal(signal.SIGTERM)
            station.wait(20)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
