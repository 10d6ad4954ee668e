"""Benchmarks of the write-ahead journal and of transactions end to end.

    python tools/bench_journal.py            # full: 7 × 3,000 appends, 10,000-event replay, 500 remote starts
    python tools/bench_journal.py --quick    # small numbers, a smoke run

1. Durable appends per second: `Journal.append` (synchronous=FULL, every append acknowledged only after its
   commit) from 1 producer and from 64 concurrent producers (group commit shares fsyncs between them). The
   limit is printed beside it, measured in the same run on the same directory: raw SQLite, WAL,
   synchronous=FULL, one single-row INSERT and COMMIT at a time — what no journal can beat without batching.
   Beside it, the same commits each awaited from Trio through the storage worker: the floor of the storage
   discipline (the two thread hops no commit off the event loop can avoid). The floor and the single producer are
   measured again with the process on one CPU (as `CPUAffinity=` in the service unit would run the station), where
   the two threads hand over on one core instead of waking a halted one. And the journal's store call alone, run
   on one thread with no hop at all: the journal's own ceiling, what its schema (five pages per commit against the
   raw table's one) and its SQL cost before any thread hand-over. All are measured in interleaved
   rounds and each ratio is the median of the per-round ratios: the machine is shared, and a disk that is slow
   for a second must count against the limit and the journal alike.
2. Replay: 10,000 TransactionEvents queued in the journal while "offline", then the station connects; time
   until the CSMS has acknowledged the last one. Measured twice: against the `ocpp`-library loopback CSMS
   (which validates every frame) and against `FastCsms`, which answers at once, so the station's own cost per
   event is visible.
3. RequestStartTransaction → first TransactionEvent: the CSMS sends RequestStartTransaction to a plugged
   EVSE (AuthorizeRemoteStart false) and waits for the TransactionEvent carrying its remoteStartId; then
   RequestStopTransaction and the Ended event. Latency percentiles over many cycles.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import signal
import sqlite3
import subprocess
import sys
import tempfile
import time
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path
from statistics import median

import trio

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from appliance.journal.journal import Journal  # noqa: E402
from appliance.journal.store import Append, JournalStore, NewTransaction  # noqa: E402
from appliance.lab.csms import LoopbackCsms  # noqa: E402
from appliance.lab.fastpeers import FastCsms  # noqa: E402
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


async def journal_rate(directory: Path, total: int, producers: int) -> tuple[float, float]:
    """Durable appends per second through `Journal.append` from `producers` tasks, and appends per commit."""
    storage = Storage(open_station_db(directory), directory / DB_NAME)
    storage.start()
    try:
        journal = Journal(storage)
        tx = str(uuid.uuid4())
        await journal.append(
            Append("TransactionEvent", tx_payload(tx, "Started", 0), new_transaction=NewTransaction(tx, 1))
        )
        commits, appends = journal.commits, journal.appends
        per_producer = total // producers
        start = time.perf_counter()

        async def produce() -> None:
            for i in range(per_producer):
                await journal.append(Append("TransactionEvent", tx_payload(tx, "Updated", float(i))))

        async with trio.open_nursery() as nursery:
            for _ in range(producers):
                nursery.start_soon(produce)
        elapsed = time.perf_counter() - start
    finally:
        storage.close()
    return per_producer * producers / elapsed, (journal.appends - appends) / max(journal.commits - commits, 1)


def _raw_db(directory: Path) -> tuple[sqlite3.Connection, str]:
    directory.mkdir(parents=True, exist_ok=True)
    conn = sqlite3.connect(directory / "raw.db", isolation_level=None, check_same_thread=False)
    conn.execute("PRAGMA journal_mode=WAL")
    conn.execute("PRAGMA synchronous=FULL")
    conn.execute("CREATE TABLE IF NOT EXISTS t (id INTEGER PRIMARY KEY, payload TEXT NOT NULL)")
    return conn, json.dumps(tx_payload(str(uuid.uuid4()), "Updated", 0.0))


def _commit_one(conn: sqlite3.Connection, payload: str) -> None:
    conn.execute("BEGIN")
    conn.execute("INSERT INTO t (payload) VALUES (?)", (payload,))
    conn.execute("COMMIT")


def raw_commit_rate(directory: Path, total: int) -> float:
    """The physical limit of a single producer: one durable single-row commit at a time, nothing else."""
    conn, payload = _raw_db(directory)
    start = time.perf_counter()
    for _ in range(total):
        _commit_one(conn, payload)
    elapsed = time.perf_counter() - start
    conn.close()
    return total / elapsed


def store_rate(directory: Path, total: int) -> float:
    """The journal's store call alone, on this thread, one message per commit: what `journal_rate` with one
    producer would reach if handing each commit to the worker and back cost nothing."""
    store = JournalStore(open_station_db(directory))
    try:
        tx = str(uuid.uuid4())
        store.append_batch(
            [Append("TransactionEvent", tx_payload(tx, "Started", 0), new_transaction=NewTransaction(tx, 1))]
        )
        start = time.perf_counter()
        for i in range(total):
            store.append_batch([Append("TransactionEvent", tx_payload(tx, "Updated", float(i)))])
        elapsed = time.perf_counter() - start
    finally:
        store.conn.close()
    return total / elapsed


async def raw_through_worker_rate(directory: Path, total: int) -> float:
    """The same commits, each awaited from Trio through the storage worker: the floor of the storage discipline
    (no commit on the event loop's thread), i.e. the raw limit plus the two thread hops nothing can avoid."""
    conn, payload = _raw_db(directory)
    storage = Storage(conn, directory / "raw.db")
    storage.start()
    try:
        start = time.perf_counter()
        for _ in range(total):
            await storage.run(_commit_one, conn, payload)
        elapsed = time.perf_counter() - start
    finally:
        storage.close()
    return total / elapsed


@contextlib.contextmanager
def one_cpu() -> Iterator[int | None]:
    """Run the block with this thread, and the threads it starts, on one CPU (what `CPUAffinity=` in the
    service unit does for the station): the storage worker and the event loop then hand over on one core instead
    of waking a halted one. Yields the CPU, or None on a one-CPU machine (nothing to compare)."""
    allowed = os.sched_getaffinity(0)
    if len(allowed) < 2:
        yield None
        return
    cpu = max(allowed)
    os.sched_setaffinity(0, {cpu})
    try:
        yield cpu
    finally:
        os.sched_setaffinity(0, allowed)


def bench_appends(directory: Path, total: int, rounds: int) -> None:
    """Raw limit, raw through the worker, 1 producer and 64 producers, interleaved round by round so load on the
    shared machine hits all alike; each ratio is taken per round and its median printed. The single-producer
    rates are measured twice per round: as the station runs by default, and with the process on one CPU."""
    raw: list[float] = []
    rates: dict[str, list[float]] = {name: [] for name in _SERIES}
    per_commit = 0.0
    cpu: int | None = None
    for r in range(rounds):
        raw.append(raw_commit_rate(directory / f"raw{r}", total))
        rates["store"].append(store_rate(directory / f"store{r}", total))
        rates["hop"].append(trio.run(raw_through_worker_rate, directory / f"hop{r}", total))
        rates["one"].append(trio.run(journal_rate, directory / f"one{r}", total, 1)[0])
        rate, per_commit = trio.run(journal_rate, directory / f"many{r}", total, 64)
        rates["many"].append(rate)
        with one_cpu() as on:
            if on is not None:
                cpu = on
                rates["hop1"].append(trio.run(raw_through_worker_rate, directory / f"hop1-{r}", total))
                rates["one1"].append(trio.run(journal_rate, directory / f"one1-{r}", total, 1)[0])
        one = f"1 producer {rates['one'][-1]:,.0f}/s ({100 * rates['one'][-1] / raw[-1]:.0f} %)"
        sixty_four = f"64 producers {rate:,.0f}/s ({100 * rate / raw[-1]:.0f} %, {per_commit:.0f} per commit)"
        pinned = (
            f"  on one CPU: via worker {rates['hop1'][-1]:,.0f}/s, 1 producer {rates['one1'][-1]:,.0f}/s"
            if rates["one1"]
            else ""
        )
        alone = f"store alone {rates['store'][-1]:,.0f}/s  via worker {rates['hop'][-1]:,.0f}/s"
        print(f"  round {r + 1}: raw {raw[-1]:,.0f}/s  {alone}  {one}  {sixty_four}{pinned}")
    print(f"  median of {rounds} rounds of {total} appends each (load average {os.getloadavg()[0]:.2f}):")
    print(f"    raw SQLite limit (one single-row FULL commit at a time): {median(raw):,.0f} commits/s")
    for key, name in _SERIES.items():
        if rates[key]:
            ratios = [rate / limit for rate, limit in zip(rates[key], raw, strict=True)]
            where = f" (CPU {cpu})" if key.endswith("1") else ""
            print(f"    {name}{where}: {median(rates[key]):,.0f}/s = {100 * median(ratios):.0f} % of the raw rate")
    for one, floor, against in (
        ("one", "hop", "the worker floor"),
        ("one1", "hop1", "the worker floor, on one CPU"),
        ("one", "store", "its store call alone (the rest is the hops)"),
    ):
        if rates[one]:
            ratios = [a / b for a, b in zip(rates[one], rates[floor], strict=True)]
            print(f"    journal, 1 producer, against {against}: {100 * median(ratios):.0f} %")


#: The series of section 1 besides the raw limit, in print order.
_SERIES = {
    "store": "journal store call alone, one thread, no hops",
    "hop": "raw commit awaited through the storage worker",
    "one": "journal,   1 producer ",
    "many": "journal,  64 producers",
    "hop1": "raw commit through the worker, one CPU",
    "one1": "journal,   1 producer, one CPU",
}


def write_config(work: Path, url: str, variables: dict) -> Path:
    config = work / "station.toml"
    config.write_text(
        f'[station]\nid = "{STATION}"\ndata_dir = "{work}/data"\n'
        f'[csms]\nurl = "{url}"\nsecurity_profile = 1\nbasic_auth_password = "{PASSWORD}"\n'
        f'[hardware]\nbackend = "sim"\nsim_socket = "{work}/data/sim.sock"\n[logging]\nlevel = "WARNING"\n'
        "[variables]\n" + "".join(f'"{k}" = {json.dumps(v)}\n' for k, v in variables.items())
    )
    return config


def queue_events(work: Path, events: int) -> int:
    """Fill a fresh journal with `events` undelivered TransactionEvents, 100 per transaction."""
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
    return queued


def replay_against(url: str, events: int, booted: Callable[[], bool]) -> float:
    """Seconds from the station's boot to a drained outbox, the station a real `appliance run` process."""
    work = Path(tempfile.mkdtemp(prefix="bench-replay-", dir="/tmp"))
    queued = queue_events(work, events)
    config = write_config(work, url, {})
    station = subprocess.Popen([sys.executable, "-m", "appliance", "run", "--config", str(config)], cwd=REPO)
    try:
        deadline = time.monotonic() + 30
        while not booted():
            if time.monotonic() > deadline:
                raise TimeoutError("the station did not boot within 30 s")
            time.sleep(0.005)
        start = time.perf_counter()
        # Poll the journal itself (read-only, as `appliance-journal` does) rather than the CSMS's recording,
        # which would cost the CSMS thread more than the replay we are measuring.
        reader = open_read_only(work / "data" / "journal.db")
        deadline = time.monotonic() + 600
        while reader.execute("SELECT count(*) FROM outbox WHERE outcome IS NULL").fetchone()[0]:
            if time.monotonic() > deadline:
                raise TimeoutError("replay did not finish within 600 s")
            time.sleep(0.02)
        reader.close()
        elapsed = time.perf_counter() - start
    finally:
        station.send_signal(signal.SIGTERM)
        station.wait(30)
    print(
        f"    {queued} events in {elapsed:.2f} s after boot = {queued / elapsed:,.0f} events/s, "
        f"{1000 * elapsed / queued:.3f} ms per event"
    )
    return elapsed


def bench_replay(events: int) -> None:
    print("  against the ocpp-library loopback CSMS (validates every frame):")
    with LoopbackCsms(passwords={STATION: PASSWORD}, max_frames=4 * events + 1000) as csms:
        slow = replay_against(csms.url, events, lambda: csms.boot_status(STATION) is not None)
    print("  against FastCsms (answers at once, validates nothing):")
    fast_csms = FastCsms()
    fast_csms.start()
    try:
        fast = replay_against(fast_csms.url(), events, lambda: fast_csms.count("BootNotification") > 0)
    finally:
        fast_csms.stop()
    print(f"  the CSMS side's share of the slow run: {100 * (slow - fast) / slow:.0f} %")


def _answered(csms: LoopbackCsms, since: int, message_id: str) -> bool:
    """The CSMS has sent its CALLRESULT to the station's CALL `message_id` (recorded after `since`)."""
    return any(
        f.direction == "out" and f.message_type == 3 and f.message_id == message_id
        for f in csms.frames_snapshot(STATION, since)
    )


def _wire_latency(csms: LoopbackCsms, since: int, remote_start_id: int) -> float:
    """On the wire, as the CSMS's recorder saw it: RequestStartTransaction leaving → the TransactionEvent that
    carries its remoteStartId arriving (both stamped on the CSMS's event-loop thread)."""
    frames = csms.frames_snapshot(STATION, since)
    request = next(f for f in frames if f.direction == "out" and f.action == "RequestStartTransaction" and f.is_call)
    event = next(
        f
        for f in frames
        if f.direction == "in"
        and f.is_call
        and f.action == "TransactionEvent"
        and f.payload["transactionInfo"].get("remoteStartId") == remote_start_id
    )
    return event.monotonic - request.monotonic


def bench_remote_start(cycles: int) -> None:
    """Each cycle starts with the station idle: the previous Ended event delivered *and answered*, so one
    cycle's figure does not include the CSMS's answer to the last one (one outstanding CALL: the Started event
    would queue behind it)."""
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
            time.sleep(0.5)  # the plug-in's StatusNotification answered before the first cycle
            latencies, wire = [], []
            first = 0.0
            for i in range(cycles + 1):  # cycle 0 warms up: each action's schema compiles on its first use
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
                if i > 0:
                    latencies.append(time.perf_counter() - sent)
                    wire.append(_wire_latency(csms, mark, i + 1))
                else:
                    first = _wire_latency(csms, mark, i + 1)
                tx_id = started[0]["transactionInfo"]["transactionId"]
                mark = csms.mark()
                csms.call(STATION, "RequestStopTransaction", {"transactionId": tx_id})
                csms.wait_action(
                    STATION, "TransactionEvent", since=mark, timeout=10, predicate=lambda p: p["eventType"] == "Ended"
                )
                ended = next(
                    f.message_id
                    for f in csms.frames_snapshot(STATION, mark)
                    if f.direction == "in" and f.action == "TransactionEvent" and f.is_call
                )
                csms.wait_for(lambda m=mark, e=ended: _answered(csms, m, e), 10, what="the Ended event answered")
        finally:
            station.send_signal(signal.SIGTERM)
            station.wait(30)
    for label, values in (("on the wire", wire), ("with the CSMS library's call()", latencies)):
        ms = [v * 1000 for v in values]
        print(
            f"  {label:32s} n={len(ms)}  p50 {percentile(ms, 50):.2f} ms  p99 {percentile(ms, 99):.2f} ms  "
            f"max {max(ms):.2f} ms"
        )
    print(f"  first cycle after boot, on the wire (not counted: schemas compile on first use): {first * 1000:.2f} ms")
    print(
        "  (on the wire: RequestStartTransaction leaves the CSMS → the TransactionEvent with its remoteStartId "
        "arrives there)"
    )


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--quick", action="store_true")
    parser.add_argument("--only", type=int, choices=(1, 2, 3), action="append", help="run only this section")
    args = parser.parse_args()
    sections = set(args.only or (1, 2, 3))
    appends, rounds, replay, cycles = (2000, 4, 1000, 30) if args.quick else (21000, 7, 10000, 500)
    if 1 in sections:
        print("1. durable journal appends (WAL, synchronous=FULL, acknowledged after commit)")
        directory = Path(tempfile.mkdtemp(prefix="bench-journal-", dir="/tmp"))
        bench_appends(directory, appends // rounds, rounds)
    if 2 in sections:
        print("2. replay of queued events to the loopback CSMS")
        bench_replay(replay)
    if 3 in sections:
        print("3. RequestStartTransaction → first TransactionEvent")
        bench_remote_start(cycles)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
