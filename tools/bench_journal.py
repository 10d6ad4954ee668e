"""Benchmarks of the write-ahead journal and of transactions end to end.

    python tools/bench_journal.py            # full: 20,000 appends, 10,000-event replay, 500 remote starts
    python tools/bench_journal.py --quick    # small numbers, a smoke run

1. Durable appends per second: `Journal.append` (synchronous=FULL, every append acknowledged only after its
   commit) from 1 producer and from 64 concurrent producers (group commit shares fsyncs between them).
2. Replay: 10,000 TransactionEvents queued in the journal while "offline", then the station connects to the
   loopback CSMS; time until the CSMS has acknowledged the last one.
3. RequestStartTransaction → first TransactionEvent: the CSMS sends RequestStartTransaction to a plugged
   EVSE (AuthorizeRemoteStart false) and waits for the TransactionEvent carrying its remoteStartId; then
   RequestStopTransaction and the Ended event. Latency percentiles over many cycles.
"""

from __future__ import annotations

import argparse
import json
import signal
import subprocess
import sys
import tempfile
import time
import uuid
from pathlib import Path

import trio

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from appliance.journal.journal import Journal  # noqa: E402
from appliance.journal.store import Append, JournalStore, NewTransaction  # noqa: E402
from appliance.lab.csms import LoopbackCsms  # noqa: E402
from appliance.storage import Storage  # noqa: E402
from appliance.storage.db import DB_NAME, open_read_only, open_station_db  # noqa: E402

STATION = "BENCH02"
PASSWORD = "bench-password-0123"


def tx_payload(tx: str, event_type: str, wh: float) -> dict:
    ts = time.strftime("%Y-%m-%dT%H:%M:%S.000Z", time.gmtime())
    return {
        "eventType": event_type,
        "timestamp": ts,
        "triggerReason": "MeterValuePeriodic",
        "seqNo": 0,
        "transactionInfo": {"transactionId": tx, "chargingState": "Charging"},
        "offline": True,
        "meterValue": [
            {
                "timestamp": ts,
                "sampledValue": [
                    {"value": wh, "measurand": "Energy.Active.Import.Register", "unitOfMeasure": {"unit": "Wh"}}
                ],
            }
        ],
    }


def percentile(values: list[float], p: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, round(p / 100 * (len(ordered) - 1)))]


async def bench_appends(directory: Path, total: int, producers: int) -> float:
    storage = Storage(open_station_db(directory), directory / DB_NAME)
    storage.start()
    journal = Journal(storage)
    tx = str(uuid.uuid4())
    async with trio.open_nursery() as nursery:
        await nursery.start(journal.run)
        await journal.append(
            Append("TransactionEvent", tx_payload(tx, "Started", 0), new_transaction=NewTransaction(tx, 1))
        )
        per_producer = total // producers
        start = time.perf_counter()

        async def produce() -> None:
            for i in range(per_producer):
                await journal.append(Append("TransactionEvent", tx_payload(tx, "Updated", float(i))))

        async with trio.open_nursery() as inner:
            for _ in range(producers):
                inner.start_soon(produce)
        elapsed = time.perf_counter() - start
        nursery.cancel_scope.cancel()
    rate = per_producer * producers / elapsed
    print(
        f"  {producers:3d} producer(s): {per_producer * producers} durable appends in {elapsed:.2f} s = "
        f"{rate:,.0f} events/s ({journal.commits} commits, {journal.appends / max(journal.commits, 1):.1f} per commit)"
    )
    return rate


def write_config(work: Path, url: str, variables: dict) -> Path:
    config = work / "station.toml"
    config.write_text(
        f'[station]\nid = "{STATION}"\ndata_dir = "{work}/data"\n'
        f'[csms]\nurl = "{url}"\nsecurity_profile = 1\nbasic_auth_password = "{PASSWORD}"\n'
        f'[hardware]\nbackend = "sim"\nsim_socket = "{work}/data/sim.sock"\n[logging]\nlevel = "WARNING"\n'
        "[variables]\n" + "".join(f'"{k}" = {json.dumps(v)}\n' for k, v in variables.items())
    )
    return config


def bench_replay(events: int) -> None:
    work = Path(tempfile.mkdtemp(prefix="bench-replay-", dir="/tmp"))
    store = JournalStore(open_station_db(work / "data"))
    per_tx = 100
    batch = []
    for t in range(events // per_tx):
        tx = str(uuid.uuid4())
        batch.append(Append("TransactionEvent", tx_payload(tx, "Started", 0), new_transaction=NewTransaction(tx, 1)))
        batch += [Append("TransactionEvent", tx_payload(tx, "Updated", float(i))) for i in range(1, per_tx - 1)]
        batch.append(Append("TransactionEvent", tx_payload(tx, "Ended", float(per_tx))))
        if t % 10 == 9:
            store.append_batch(batch)
            batch = []
    store.append_batch(batch)
    queued = store.pending_count()
    store.conn.close()
    with LoopbackCsms(passwords={STATION: PASSWORD}, max_frames=4 * events + 1000) as csms:
        config = write_config(work, csms.url, {})
        start = time.perf_counter()
        station = subprocess.Popen([sys.executable, "-m", "appliance", "run", "--config", str(config)], cwd=REPO)
        try:
            csms.wait_action(STATION, "BootNotification", timeout=30)
            booted = time.perf_counter()
            # Poll the journal itself (read-only, as `appliance-journal` does) rather than scanning the CSMS's
            # recording, which would cost the CSMS thread more than the replay we are measuring.
            reader = open_read_only(work / "data" / "journal.db")
            deadline = time.monotonic() + 600
            while reader.execute("SELECT count(*) FROM outbox WHERE outcome IS NULL").fetchone()[0]:
                if time.monotonic() > deadline:
                    raise TimeoutError("replay did not finish within 600 s")
                time.sleep(0.05)
            reader.close()
            done = time.perf_counter()
        finally:
            station.send_signal(signal.SIGTERM)
            station.wait(30)
    print(
        f"  {queued} queued events replayed in {done - booted:.2f} s after boot "
        f"({queued / (done - booted):,.0f} events/s; process start to drained {done - start:.2f} s)"
    )


def bench_remote_start(cycles: int) -> None:
    work = Path(tempfile.mkdtemp(prefix="bench-start-", dir="/tmp"))
    with LoopbackCsms(passwords={STATION: PASSWORD}, max_frames=40 * cycles + 1000) as csms:
        config = write_config(
            work,
            csms.url,
            {
                "AuthCtrlr.AuthorizeRemoteStart": False,
                "TxCtrlr.TxStartPoint": "Authorized",
                "TxCtrlr.TxStopPoint": "Authorized",
            },
        )
        station = subprocess.Popen([sys.executable, "-m", "appliance", "run", "--config", str(config)], cwd=REPO)
        try:
            csms.wait_action(STATION, "StatusNotification", timeout=30, count=2)
            subprocess.run(
                [sys.executable, "-m", "appliance", "sim", "--config", str(config), "plug", "1"],
                check=True,
                capture_output=True,
            )
            latencies = []
            for i in range(cycles):
                mark = csms.mark()
                sent = time.perf_counter()
                answer = csms.call(
                    STATION,
                    "RequestStartTransaction",
                    {"evseId": 1, "remoteStartId": i + 1, "idToken": {"idToken": "BENCH", "type": "Central"}},
                )
                assert answer["status"] == "Accepted", answer
                started = csms.wait_action(
                    STATION,
                    "TransactionEvent",
                    since=mark,
                    timeout=10,
                    predicate=lambda p, i=i: p["transactionInfo"].get("remoteStartId") == i + 1,
                )
                latencies.append(time.perf_counter() - sent)
                tx_id = started[0]["transactionInfo"]["transactionId"]
                mark = csms.mark()
                csms.call(STATION, "RequestStopTransaction", {"transactionId": tx_id})
                csms.wait_action(
                    STATION, "TransactionEvent", since=mark, timeout=10, predicate=lambda p: p["eventType"] == "Ended"
                )
        finally:
            station.send_signal(signal.SIGTERM)
            station.wait(30)
    ms = [v * 1000 for v in latencies]
    print(
        f"  n={len(ms)}  p50 {percentile(ms, 50):.2f} ms  p99 {percentile(ms, 99):.2f} ms  max {max(ms):.2f} ms "
        "(CSMS sends the request → CSMS has the TransactionEvent)"
    )


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--quick", action="store_true")
    args = parser.parse_args()
    appends, replay, cycles = (2000, 1000, 30) if args.quick else (20000, 10000, 500)
    print("1. durable journal appends (WAL, synchronous=FULL, acknowledged after commit)")
    for producers in (1, 64):
        trio.run(bench_appends, Path(tempfile.mkdtemp(prefix="bench-journal-", dir="/tmp")), appends, producers)
    print("2. replay of queued events to the loopback CSMS")
    bench_replay(replay)
    print("3. RequestStartTransaction → first TransactionEvent")
    bench_remote_start(cycles)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
