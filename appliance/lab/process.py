"""A real station as a separate process, with the config it is started from: for what only a process shows.

Signals, exit codes, restarts on the same data directory and SIGKILL need `python -m appliance run` in a child
process. The test suite (tests/harness.py and the process tests) and the torture scenarios (`lab.torture`, also
run by tools/torture.py) start it the same way, so the helpers live here rather than in the test tree, which
tools/ must not import.
"""

from __future__ import annotations

import contextlib
import json
import os
import signal
import subprocess
import sys
import tempfile
from collections.abc import Iterator
from pathlib import Path
from typing import Any

#: The directory holding this copy of the `appliance` package. Child processes run from it, so that
#: `python -m appliance` is this very code whether it is installed or a source checkout.
PACKAGE_ROOT = Path(__file__).resolve().parents[2]
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
    ca_file: Path | None = None,
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
    if ca_file is not None:
        lines.append(f'ca_file = "{ca_file}"')
    lines += ["[hardware]", 'backend = "sim"', f'sim_socket = "{data_dir}/sim.sock"', "[variables]"]
    for key, value in {**FAST, **(variables or {})}.items():
        lines.append(f"{toml_value(key)} = {toml_value(value)}")
    return "\n".join(lines) + "\n" + extra


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
            cwd=PACKAGE_ROOT,
            stdout=self._log,
            stderr=subprocess.STDOUT,
            env={**os.environ, "PYTHONUNBUFFERED": "1"},
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
