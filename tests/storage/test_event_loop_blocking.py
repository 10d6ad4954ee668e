"""The storage discipline, measured: no fsync and no SQLite lock wait ever happens on the Trio thread.

A Trio instrument times every task step (the stretch between two checkpoints, during which nothing else can
run). While the station replays 10,000 journaled events to the CSMS, answers SetVariables requests and updates
its authorization cache, another program keeps grabbing the database's write lock for a while and letting go.
Every durable write of the station has to wait for that lock (up to busy_timeout, 5 s) and to fsync; all of it
must happen on the storage worker thread, so the longest step of any Trio task stays far below one lock hold.
Before the storage worker existed, a SetVariables or cache update waited for the lock on the event loop itself,
and this test measured steps as long as the hold.
"""

from __future__ import annotations

import gc
import sqlite3
import threading
import time
from pathlib import Path

import trio

from appliance.journal.store import Append, JournalStore
from appliance.lab.csms import LoopbackCsms
from appliance.link.link import LinkState
from appliance.storage.db import DB_NAME, open_station_db
from tests.conformance.helpers import STATION_ID
from tests.harness import make_config, running_station

EVENTS = 10_000
#: How long the other program holds the write lock each time; a station write on the event loop would block
#: the loop for up to this long (the tree before the storage worker measured 534 ms with a 500 ms hold).
LOCK_HOLD = 1.0
#: A quarter of one hold, and a twentieth of the 5 s busy timeout. Alone the longest step measures 3–20 ms; on
#: a loaded 2-core CI machine, CPU and GIL contention from the other test worker and the in-process CSMS were
#: seen to stretch one step to 110 ms, which is scheduling, not storage: the bound leaves room for that while
#: a lock wait on the loop would still exceed it.
MAX_BLOCK = 0.250


class StepTimer(trio.abc.Instrument):
    """The longest single task step, and which task took it."""

    def __init__(self) -> None:
        self.longest = 0.0
        self.culprit = ""
        self.steps = 0
        self._started: dict[trio.lowlevel.Task, float] = {}

    def before_task_step(self, task: trio.lowlevel.Task) -> None:
        self._started[task] = time.perf_counter()

    def after_task_step(self, task: trio.lowlevel.Task) -> None:
        started = self._started.pop(task, None)
        if started is None:
            return
        self.steps += 1
        took = time.perf_counter() - started
        if took > self.longest:
            self.longest, self.culprit = took, task.name


def fill_journal(data_dir: Path, events: int) -> None:
    """`events` undelivered MeterValues, as an outage would leave them."""
    store = JournalStore(open_station_db(data_dir))
    sample = {
        "timestamp": "2026-01-01T00:00:00.000Z",
        "sampledValue": [{"value": 1.0, "measurand": "Energy.Active.Import.Register"}],
    }
    batch = [Append("MeterValues", {"evseId": 1 + i % 2, "meterValue": [sample]}) for i in range(events)]
    for start in range(0, events, 1000):
        store.append_batch(batch[start : start + 1000])
    assert store.pending_count() == events
    store.conn.close()


def hog_the_write_lock(path: Path, stop: threading.Event, holds: list[float]) -> None:
    """Another program on the same database: takes the write lock for LOCK_HOLD, lets go briefly, again."""
    conn = sqlite3.connect(path, isolation_level=None, timeout=10)
    try:
        while not stop.is_set():
            conn.execute("BEGIN IMMEDIATE")
            started = time.perf_counter()
            stop.wait(LOCK_HOLD)
            conn.execute("COMMIT")
            holds.append(time.perf_counter() - started)
            stop.wait(0.05)
    finally:
        conn.close()


async def test_no_write_blocks_the_event_loop(csms: LoopbackCsms, data_dir: Path) -> None:
    fill_journal(data_dir, EVENTS)
    timer = StepTimer()
    stop, holds = threading.Event(), []
    hog = threading.Thread(target=hog_the_write_lock, args=(data_dir / DB_NAME, stop, holds), daemon=True)
    async with running_station(make_config(data_dir, csms)) as station:
        trio.lowlevel.add_instrument(timer)
        hog.start()
        gc.disable()  # a collection of the CSMS's recording is a pause of the process, not of storage
        try:
            await station.link.state.wait_until(lambda s: s is LinkState.ACCEPTED)  # the replay starts now
            async with trio.open_nursery() as nursery:

                async def set_variables() -> None:
                    for i in range(20):
                        answer = await csms.trio.call(
                            STATION_ID,
                            "SetVariables",
                            {
                                "setVariableData": [
                                    {
                                        "component": {"name": "OCPPCommCtrlr"},
                                        "variable": {"name": "OfflineThreshold"},
                                        "attributeValue": str(100 + i),
                                    }
                                ]
                            },
                        )
                        assert answer["setVariableResult"][0]["attributeStatus"] == "Accepted"

                async def cache_updates() -> None:
                    for i in range(20):
                        info = await station.authorizer.authorize({"idToken": f"CARD{i:04d}", "type": "ISO14443"})
                        assert info["status"] == "Accepted"

                nursery.start_soon(set_variables)
                nursery.start_soon(cache_updates)
            stop.set()  # the rest of the replay runs without the other program, to keep the test short
            # Polling the journal, not the CSMS's recording: scanning 20,000 recorded frames would itself slow
            # the replay down.
            with trio.fail_after(300):
                while await station.journal.run_sync(station.journal.store.pending_count):  # noqa: ASYNC110
                    await trio.sleep(0.5)
        finally:
            stop.set()
            gc.enable()
            trio.lowlevel.remove_instrument(timer)
        replayed = [
            f.parsed
            for f in csms.frames_snapshot(STATION_ID)
            if f.direction == "in" and f.is_call and f.action == "MeterValues"
        ]
        # Every event replayed. A CALL whose answer came too late for the message timeout on this loaded
        # machine is sent again, at least once being the journal's promise: only with its own message id and
        # payload, so the CSMS can recognise it (seen once: 10,002 frames for 10,000 events).
        first_sent: dict[str, object] = {}
        for _, message_id, _, payload in replayed:
            assert first_sent.setdefault(message_id, payload) == payload, f"{message_id} resent changed"
        assert len(first_sent) == EVENTS
        resent = len(replayed) - EVENTS
        assert station.authorizer.cache.count() == 20  # every cache update reached the disk
        assert station.dm.get("OCPPCommCtrlr.OfflineThreshold") == 119
    hog.join(5)
    assert len(holds) >= 2, "the other program never held the lock: the test proved nothing"
    print(
        f"longest task step {timer.longest * 1000:.1f} ms ({timer.culprit}) over {timer.steps} steps; "
        f"{len(holds)} lock holds of {LOCK_HOLD * 1000:.0f} ms; {resent} resent"
    )
    assert timer.longest < MAX_BLOCK, f"the event loop was blocked for {timer.longest * 1000:.0f} ms by {timer.culprit}"
