"""Running a real station against the real loopback CSMS, in-process (Trio) or as a separate process.

In-process stations are for protocol behaviour (fast, and the test can look inside); separate processes are
for what only a process shows: signals, exit codes, restarts with the same data directory, SIGKILL. The
separate-process helpers (and the config text both kinds start from) live in `appliance.lab.process`, because
the torture scenarios of tools/ use them too.
"""

from __future__ import annotations

import contextlib
import time
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import trio

from appliance.config import Config, parse
from appliance.hardware.registry import make_hardware
from appliance.lab.csms import LoopbackCsms
from appliance.lab.process import config_text
from appliance.station import Station
from appliance.storage.db import open_read_only

REPO = Path(__file__).resolve().parents[1]


def make_config(data_dir: Path, csms: LoopbackCsms, **kwargs: Any) -> Config:
    return parse(config_text(data_dir, csms.url, **kwargs), source="test")


@contextlib.asynccontextmanager
async def running_station(config: Config) -> AsyncIterator[Station]:
    """A station running in this Trio run; stopped (cancelled) when the block ends."""
    station = Station(config, make_hardware(config))
    async with trio.open_nursery() as nursery:
        await nursery.start(station.run)
        try:
            yield station
        finally:
            await station.stop()  # close handshake first, as on SIGTERM; then every task is cancelled
            nursery.cancel_scope.cancel()


async def in_thread(fn: Any, *args: Any, **kwargs: Any) -> Any:
    """Call a blocking CSMS helper without blocking the Trio loop."""
    return await trio.to_thread.run_sync(lambda: fn(*args, **kwargs))


def wait_until(predicate: Any, timeout: float = 10, interval: float = 0.02) -> Any:
    deadline = time.monotonic() + timeout
    while True:
        value = predicate()
        if value:
            return value
        if time.monotonic() > deadline:
            raise AssertionError(f"condition not met within {timeout} s")
        time.sleep(interval)


def peek(path: Path, sql: str, params: tuple[Any, ...] = ()) -> list[Any]:
    """Rows of `sql` on the station database at `path`, read as `appliance-journal` reads it: through a read-only
    connection of its own (the station's one connection belongs to its storage worker), closed after."""
    conn = open_read_only(path)
    try:
        return conn.execute(sql, params).fetchall()
    finally:
        conn.close()
