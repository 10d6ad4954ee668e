"""Benchmark: how fast the station answers the CSMS on the wire, and what it costs at rest.

    python tools/bench_rpc.py                 # 2,000 calls of each kind, 60 s idle measurement
    python tools/bench_rpc.py --quick         # 300 calls, 5 s idle (a smoke run)

The CSMS here is as lean as a WebSocket peer can be, so that what is measured is the station: a blocking raw
socket in this process (TCP_NODELAY), the handshake and the frame header done by hand, every CALL frame built
before the clock starts. A latency is from just before `sendall` of the CALL to just after the `recv` that
completes its answer; the answer is parsed and checked only after the second timestamp.

The floor is the same client talking to `--echo-peer`, a child process with a raw-socket WebSocket client
that answers every CALL at once with a trivial pre-built CALLRESULT: the loopback round trip of a small
frame between two processes, printed beside the station's figures with the ratio. The station answers the same
frames as a real station process (sim hardware, its own data directory).

Then the station's RSS and its CPU use while idle (heartbeats and pings only, still answered by this client),
and beside the RSS its floor: a fresh interpreter that only imports what no station can run without (ssl, Trio,
trio-websocket, SQLite, fastjsonschema), and the same plus `cryptography`, which a station loads with its first
certificate (this one, security profile 1 without certificates, never does).
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from appliance.lab.rawws import CLOSE, PING, PONG, TEXT, Peer, accept_ws, connect_ws, frame  # noqa: E402

STATION = "BENCH01"
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


# --- a raw-socket WebSocket peer ----------------------------------------------------------------------


def _csms_answer(action: str) -> dict:
    now = time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())
    if action == "BootNotification":
        return {"currentTime": now, "interval": 3600, "status": "Accepted"}
    if action == "Heartbeat":
        return {"currentTime": now}
    return {}


def serve_station_call(peer: Peer, opcode: int, payload: bytes) -> None:
    """Answer what a station sends on its own: its CALLs, pings and close."""
    if opcode == PING:
        peer.send(payload, PONG)
    elif opcode == CLOSE:
        peer.send(payload[:2], CLOSE)
        raise ConnectionError("station closed")
    elif opcode == TEXT:
        message = json.loads(payload)
        if message[0] == 2:
            peer.send(json.dumps([3, message[1], _csms_answer(message[2])]).encode())


def measure(peer: Peer, payload: dict, calls: int, tag: str, expect_items: int | None) -> list[float]:
    """`calls` GetVariables round trips; CSMS-initiated traffic arriving meanwhile is answered and not timed."""
    body = json.dumps(payload, separators=(",", ":"))
    frames = [(f"{tag}{i}".encode(), frame(f'[2,"{tag}{i}","GetVariables",{body}]'.encode())) for i in range(calls)]
    latencies = []
    for message_id, wire in frames:
        start = time.perf_counter()
        peer.sock.sendall(wire)
        while True:
            opcode, answer, stamp = peer.receive()
            if opcode == TEXT and answer.startswith(b"[3,") and b'"' + message_id + b'"' in answer[:64]:
                break
            serve_station_call(peer, opcode, answer)
        latencies.append(stamp - start)
        if expect_items is not None:
            result = json.loads(answer)[2]["getVariableResult"]
            assert len(result) == expect_items and result[0]["attributeStatus"] == "Accepted", result
    return latencies


def serve_for(peer: Peer, seconds: float) -> None:
    deadline = time.monotonic() + seconds
    while (left := deadline - time.monotonic()) > 0:
        peer.sock.settimeout(left)
        try:
            opcode, payload, _ = peer.receive()
        except TimeoutError:
            break
        finally:
            peer.sock.settimeout(None)
        serve_station_call(peer, opcode, payload)


def echo_peer(port: int) -> int:
    """The floor's far end: connect, answer every CALL with `[3,id,{}]`, nothing else."""
    peer = connect_ws("127.0.0.1", port, "/ocpp/ECHO")
    try:
        while True:
            opcode, payload, _ = peer.receive()
            if opcode == CLOSE:
                return 0
            end = payload.index(b'"', 4)
            peer.send(b'[3,"' + payload[4:end] + b'",{}]')
    except ConnectionError:
        return 0


# --- the report ---------------------------------------------------------------------------------------


def percentile(values: list[float], p: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, round(p / 100 * (len(ordered) - 1)))]


def fmt(values: list[float]) -> str:
    ms = [v * 1000 for v in values]
    return (
        f"p50 {percentile(ms, 50):6.3f} ms  p99 {percentile(ms, 99):6.3f} ms  max {max(ms):6.2f} ms  "
        f"mean {statistics.fmean(ms):6.3f} ms"
    )


def rss_mb(pid: int) -> float:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    return float("nan")


#: What no station can run without: the interpreter, TLS, Trio, the WebSocket, SQLite and the schema validator.
FIXED_STACK = ("ssl", "trio", "trio_websocket", "sqlite3", "fastjsonschema")


def stack_rss_mb(modules: tuple[str, ...]) -> float:
    """RSS of a fresh interpreter that only imports `modules`: the memory floor beneath a station."""
    code = f"import {', '.join(modules)}, pathlib; print(pathlib.Path('/proc/self/status').read_text())"
    status = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    return next(int(line.split()[1]) / 1024 for line in status.splitlines() if line.startswith("VmRSS:"))


def cpu_seconds(pid: int) -> float:
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--calls", type=int, default=2000)
    parser.add_argument("--idle", type=float, default=60.0, help="seconds of idle CPU measurement")
    parser.add_argument("--quick", action="store_true", help="300 calls, 5 s idle")
    parser.add_argument("--echo-peer", type=int, metavar="PORT", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.echo_peer:
        return echo_peer(args.echo_peer)
    if args.quick:
        args.calls, args.idle = 300, 5.0
    print(f"load average {' '.join(f'{v:.2f}' for v in os.getloadavg())}; {os.cpu_count()} CPUs")
    listener = socket.create_server(("127.0.0.1", 0))
    port = listener.getsockname()[1]

    echo = subprocess.Popen([sys.executable, __file__, "--echo-peer", str(port)])
    peer = accept_ws(listener, 10)
    measure(peer, GET_1, 50, "w", None)
    floors = {items: measure(peer, p, args.calls, f"f{items}-", None) for items, p in ((1, GET_1), (10, GET_10))}
    peer.send(b"\x03\xe8", CLOSE)
    echo.wait(10)
    for items, values in floors.items():
        print(f"floor: raw-socket echo peer, {items:>2} item(s) n={len(values)}  {fmt(values)}")

    work = Path(tempfile.mkdtemp(prefix="bench-", dir="/tmp"))
    config = work / "station.toml"
    config.write_text(
        f'[station]\nid = "{STATION}"\ndata_dir = "{work}/data"\n'
        f'[csms]\nurl = "ws://127.0.0.1:{port}/ocpp"\nsecurity_profile = 1\nbasic_auth_password = "{PASSWORD}"\n'
        f'[hardware]\nbackend = "sim"\nsim_socket = "{work}/data/sim.sock"\n[logging]\nlevel = "WARNING"\n'
        '[variables]\n"DeviceDataCtrlr.ItemsPerMessage[GetVariables]" = 10\n'
    )
    station = subprocess.Popen([sys.executable, "-m", "appliance", "run", "--config", str(config)], cwd=REPO)
    try:
        peer = accept_ws(listener, 30)
        serve_for(peer, 3.0)  # boot, status notifications, security event
        measure(peer, GET_1, 50, "w", 1)  # warm-up: first-use schema compilation, caches
        for items, payload in ((1, GET_1), (10, GET_10)):
            wire = measure(peer, payload, args.calls, f"s{items}-", items)
            floor = floors[items]
            print(f"GetVariables {items:>2} item(s)        n={len(wire)}  {fmt(wire)}")
            print(
                f"  station's share: p50 {1000 * (percentile(wire, 50) - percentile(floor, 50)):.3f} ms, "
                f"p99 {1000 * (percentile(wire, 99) - percentile(floor, 99)):.3f} ms; "
                f"p99 {percentile(wire, 99) / percentile(floor, 99):.1f}× the floor"
            )
        serve_for(peer, 1.0)
        before = cpu_seconds(station.pid)
        serve_for(peer, args.idle)
        used = cpu_seconds(station.pid) - before
        rss = rss_mb(station.pid)
        print(f"station RSS {rss:.1f} MB; idle CPU {100 * used / args.idle:.2f} % over {args.idle:.0f} s")
        floor = stack_rss_mb(FIXED_STACK)
        with_certs = stack_rss_mb((*FIXED_STACK, "cryptography.x509"))
        print(
            f"  RSS floor: python + {' + '.join(FIXED_STACK)} alone {floor:.1f} MB (station {rss / floor:.2f}× it, "
            f"its own share {rss - floor:.1f} MB); plus cryptography, as a station holding certificates loads it, "
            f"{with_certs:.1f} MB"
        )
    finally:
        station.send_signal(signal.SIGTERM)
        with contextlib.suppress(ConnectionError, OSError):
            serve_for(peer, 5.0)  # answer the close handshake
        station.wait(20)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
