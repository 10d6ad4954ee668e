"""Running a real station against the real loopback CSMS, in-process (Trio) or as a separate process.

In-process stations are for protocol behaviour (fast, and the test can look inside); separate processes are
for what only a process shows: signals, exit codes, restarts with the same data directory, SIGKILL.
"""

from __future__ import annotations

import contextlib
import json
import os
import signal
import subprocess
import sys
import tempfile
import time
from collections.abc import AsyncIterator, Iterator
from pathlib import Path
from typing import Any

import trio

from appliance.config import Config, parse
from appliance.csms import LoopbackCsms
from appliance.hardware.registry import make_hardware
from appliance.station import Station

REPO = Path(__file__).resolve().parents[1]
PASSWORD = "s3cret-password-16"

#: Fast timings for tests: nothing waits a minute.
FAST = {
    "OCPPCommCtrlr.RetryBackOffWaitMinimum": 1,
    "OCPPCommCtrlr.RetryBackOffRandomRange": 0,
    "OCPPCommCtrlr.RetryBackOffRepeatTimes": 2,
    "OCPPCommCtrlr.WebSocketPingInterval": 0,
    "OCPPCommCtrlr.MessageTimeout[Default]": 5,
}


def short_dir() -> Path:
    """AF_UNIX socket paths are limited to ~107 bytes; pytest's tmp_path can be longer."""
    return Path(tempfile.mkdtemp(prefix="ap-", dir="/tmp"))


def toml_value(value: Any) -> str:
    return json.dumps(value)  # JSON scalars and string lists are valid TOML


def config_text(
    data_dir: Path,
    url: str,
    *,
    station_id: str = "CS001",
    profile: int = 1,
    password: str | None = PASSWORD,
    variables: dict[str, Any] | None = None,
    extra: str = "",
) -> str:
    lines = [
        "[station]",
        f'id = "{station_id}"',
        f'data_dir = "{data_dir}"',
        'vendor_name = "TestVendor"',
        'model = "TestModel"',
        'serial_number = "SN-1"',
        'firmware_version = "1.0.0"',
        "[csms]",
        f'url = "{url}"',
        f"security_profile = {profile}",
    ]
    if password is not None:
        lines.append(f'basic_auth_password = "{password}"')
    lines += ["[hardware]", 'backend = "sim"', f'sim_socket = "{data_dir}/sim.sock"', "[variables]"]
    for key, value in {**FAST, **(variables or {})}.items():
        lines.append(f"{toml_value(key)} = {toml_value(value)}")
    return "\n".join(lines) + "\n" + extra


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


class StationProcess:
    """`python -m appliance run --config …` as a real child process."""

    def __init__(self, config_path: Path, log_path: Path) -> None:
        self.config_path = config_path
        self.log_path = log_path
        self.proc: subprocess.Popen[bytes] | None = None

    def start(self) -> None:
        self._log = open(self.log_path, "ab")  # noqa: SIM115 - lives as long as the process
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "appliance", "run", "--config", str(self.config_path)],
            cwd=REPO, stdout=self._log, stderr=subprocess.STDOUT, env={**os.environ, "PYTHONUNBUFFERED": "1"},
        )

    def stop(self, sig: int = signal.SIGTERM, timeout: float = 15) -> int:
        assert self.proc is not None
        self.proc.send_signal(sig)
        try:
            return self.proc.wait(timeout)
        finally:
            self._log.close()

    def kill(self) -> None:
        self.stop(signal.SIGKILL)

    def log(self) -> str:
        return self.log_path.read_text(errors="replace")


@contextlib.contextmanager
def station_process(config_path: Path, log_path: Path) -> Iterator[StationProcess]:
    proc = StationProcess(config_path, log_path)
    proc.start()
    try:
        yield proc
    finally:
        if proc.proc is not None and proc.proc.poll() is None:
            proc.proc.kill()
            proc.proc.wait(5)


def wait_until(predicate: Any, timeout: float = 10, interval: float = 0.02) -> Any:
    deadline = time.monotonic() + timeout
    while True:
        value = predicate()
        if value:
            return value
        if time.monotonic() > deadline:
            raise AssertionError(f"condition not met within {timeout} s")
        time.sleep(interval)
