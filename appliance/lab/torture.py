"""The torture scenarios of issue 3, shared by the pytest suite (quick mode) and `tools/torture.py` (long mode).

One run is a real `python -m appliance run` process, the real loopback CSMS in this process, and two simulated
EVs driven through the `appliance sim` CLI (plug, tap, charge, suspend, … unplug, again with a new token), while
one kind of fault strikes again and again at seeded-random moments:

* ``proxy``: the station reaches the CSMS through `ChaosProxy`, which goes silent (blackhole) and comes back.
  Mostly "stall" (nothing is read, so a short pull resumes like real TCP would), sometimes "drop" (bytes in
  flight are lost; only for pulls long enough that the station must have noticed, because a user-space proxy
  that drops bytes *inside* a still-used TCP stream does something no real network does);
* ``netns``: the station runs in a network namespace of its own, joined by a veth pair to a second namespace of
  ours where the CSMS listens; one end of the veth is set down and up again (kernel TCP, no proxy);
* ``kill``: the station process is SIGKILLed and restarted on the same data directory. The simulated EVs stay
  plugged in (the simulator persists its physical state), transactions that were open end with stoppedReason
  PowerLoss, and an EV still connected starts a new one; a driver whose next command fails starts over.

Afterwards the fault is healed, the EVs are unplugged, the journal is given time to drain, the station gets
SIGTERM (it must exit 0), and `check_run` compares the journal with what the CSMS recorded — the CONTRACT's
"What the CSMS may rely on". Problems are collected, not raised, so one run reports all of them at once.

Why threads and blocking calls rather than Trio here: everything this module drives lives in other processes
(the station, the `appliance sim` commands) or in threads of its own (the CSMS, the proxy), and the EV drivers,
the fault loop and the CSMS must all run at once; plain threads keep the long mode and the tests identical.
"""

from __future__ import annotations

import atexit
import contextlib
import ctypes
import json
import os
import random
import secrets
import shutil
import signal
import sqlite3
import subprocess
import sys
import threading
import time
from collections import Counter, defaultdict
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from itertools import pairwise
from pathlib import Path
from types import TracebackType
from typing import Any, Literal, Protocol

from appliance.journal.verify import check_events
from appliance.lab.csms import LoopbackCsms
from appliance.lab.csms.records import ConnectionRecord, RecordedFrame
from appliance.lab.process import PACKAGE_ROOT, PASSWORD, StationProcess, config_text
from appliance.lab.proxy import ChaosProxy
from appliance.timetext import parse_iso

Mode = Literal["proxy", "kill", "netns"]
MODES: tuple[Mode, ...] = ("proxy", "kill", "netns")
STATION_ID = "CS001"
EVSES = (1, 2)

#: A fault older than this must have been noticed (ping interval 1 s + pong deadline 1 s + scheduling slack).
NOTICE_S = 3.0
#: Slack at the edges of connections and faults: boot round trip, clock granularity, thread scheduling.
EDGE_S = 1.5
#: After a fault heals, the station may need this long to be back online (a stalled connect attempt times out
#: after 2 s, back-off waits up to 2 s, then TCP + WebSocket + BootNotification).
RECONNECT_S = 7.0
#: A resend may reach the CSMS at most this long after the station journaled the delivery (ms timestamps).
ACK_SLACK_S = 0.25
#: OCPPCommCtrlr.MessageTimeout[Default] as configured below: a later answer may legitimately be resent.
MESSAGE_TIMEOUT_S = 2.0
#: How long before a network fault an answer may still have been caught by it (bytes on their way through the
#: proxy thread or the veth when the cut lands).
ANSWER_IN_FLIGHT_S = 0.3
#: How long before a kill (or crash) an answered message may still lack its journaled delivery mark.
ANSWER_UNRECORDED_S = 1.0

#: Device-model values that make every fault visible within ~2 s and every retry quick: pings every second
#: with a 1 s deadline, CALLs time out after 2 s, reconnects wait 1–2 s, a meter sample every second.
VARIABLES: dict[str, Any] = {
    "SampledDataCtrlr.TxUpdatedInterval": 1,
    "OCPPCommCtrlr.WebSocketPingInterval": 1,
    "OCPPCommCtrlr.MessageTimeout[Default]": int(MESSAGE_TIMEOUT_S),
    "OCPPCommCtrlr.RetryBackOffWaitMinimum": 1,
    "OCPPCommCtrlr.RetryBackOffRandomRange": 0,
    "OCPPCommCtrlr.RetryBackOffRepeatTimes": 1,
    "OCPPCommCtrlr.MessageAttemptInterval[TransactionEvent]": 1,
}

Say = Callable[[str], None]


# --- what to do --------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Plan:
    """How long and how hard to torture one mode.

    A run ends once both `min_faults` faults and `min_seconds` have passed, or at `max_seconds` whatever the
    count (the caller then sees too few faults in the report). `max_seconds` counts the torture, not the time
    the injector waits for the station before a fault (a killed station coming up again and starting a
    session): that grows with the machine's load, not with anything the station does wrong, and each wait is
    bounded by itself (`Rig.wait_ready`, `KillInjector.TX_WAIT_S`).
    """

    mode: Mode
    seed: int
    min_faults: int
    min_seconds: float = 0.0
    max_seconds: float = 120.0
    drain_timeout: float = 60.0

    @classmethod
    def quick(cls, mode: Mode, seed: int) -> Plan:
        """CI sizes: the three modes together take about two and a half minutes on two cores."""
        # The caps only stop a pathological run; the quotas end a normal one well before them.
        faults, cap = {"proxy": (20, 120.0), "kill": (10, 90.0), "netns": (10, 80.0)}[mode]
        return cls(mode, seed, min_faults=faults, max_seconds=cap)

    @classmethod
    def long(cls, mode: Mode, seed: int, minutes: float) -> Plan:
        """For people: as long as asked, no fault quota."""
        seconds = max(minutes * 60.0, 5.0)
        return cls(mode, seed, min_faults=1, min_seconds=seconds, max_seconds=seconds + 60.0, drain_timeout=120.0)


@dataclass
class Fault:
    """One fault as it happened, in wall-clock time (the station's timestamps are wall-clock too)."""

    kind: str  # stall | drop | kill | link-station | link-csms | crash (the station died on its own)
    start: float
    end: float | None = None


class Tally:
    """Thread-safe counters for the report."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._counts: Counter[str] = Counter()

    def add(self, key: str, n: int = 1) -> None:
        with self._lock:
            self._counts[key] += n

    def snapshot(self) -> dict[str, int]:
        with self._lock:
            return dict(self._counts)


@dataclass(frozen=True)
class Problem:
    """One failed check. `kind` groups problems by the promise broken, so a test can tell a known station bug
    (marked xfail) from a new one: crash, exit, delivery, order, duplicate, sequence, meter, offline-flag,
    verify, csms-violation, harness."""

    kind: str
    text: str

    def __str__(self) -> str:
        return f"[{self.kind}] {self.text}"


@dataclass
class Report:
    """What one run did and every problem the checks found (empty `problems` = passed)."""

    mode: Mode
    seed: int
    seconds: float
    faults: list[Fault]
    counts: dict[str, int]
    problems: list[Problem]
    notes: list[str]
    workdir: Path
    log_path: Path

    def summary(self, *, with_problems: bool = True) -> str:
        kinds = Counter(f.kind for f in self.faults)
        c = self.counts
        lines = [
            f"torture {self.mode}: seed {self.seed}, {self.seconds:.0f} s, {len(self.faults)} faults "
            f"({', '.join(f'{k} {n}' for k, n in sorted(kinds.items()))})",
            f"  transactions {c.get('transactions', 0)} (PowerLoss-ended {c.get('powerloss', 0)}), "
            f"TransactionEvents journaled {c.get('events', 0)} (offline {c.get('offline_events', 0)}), "
            f"CSMS receipts {c.get('receipts', 0)} (resends {c.get('resends', 0)}), "
            f"connections {c.get('connections', 0)}, EV sessions {c.get('plug', 0)}, "
            f"sim commands {c.get('sim_commands', 0)} (failed {c.get('sim_failed', 0)}), "
            f"station starts {c.get('station_starts', 0)} (crashes {c.get('crashes', 0)})",
            f"  station log: {self.log_path}",
        ]
        lines += [f"  note: {n}" for n in self.notes]
        if self.problems:
            lines.append(f"  {len(self.problems)} PROBLEM(S)" + (":" if with_problems else ""))
            lines += [f"  - {p}" for p in self.problems] if with_problems else []
        else:
            lines.append("  all checks passed")
        return "\n".join(lines)


# --- network namespaces ------------------------------------------------------------------------------------

_CLONE_NEWNET = 0x40000000
#: Namespaces this process created and has not deleted yet: `destroy_leftover_namespaces` (a fixture finalizer
#: and atexit) removes them even when a run was interrupted before its own cleanup.
_LIVE_NAMESPACES: set[str] = set()


def _ip(*args: str) -> None:
    subprocess.run(["ip", *args], check=True, capture_output=True, text=True, timeout=15)


def netns_unavailable() -> str | None:
    """Why the netns scenario cannot run here, or None when it can (root, `ip netns`, veth, setns)."""
    if sys.platform != "linux":
        return "network namespaces are Linux-only"
    if os.geteuid() != 0:
        return "needs root for `ip netns add` (not root here)"
    if shutil.which("ip") is None:
        return "the `ip` command (iproute2) is not installed"
    if not hasattr(ctypes.CDLL(None), "setns"):
        return "libc has no setns()"
    probe = f"apt-probe-{secrets.token_hex(3)}"
    _LIVE_NAMESPACES.add(probe)
    try:
        _ip("netns", "add", probe)
    except (subprocess.CalledProcessError, OSError, subprocess.TimeoutExpired) as exc:
        detail = getattr(exc, "stderr", None) or exc
        return f"`ip netns add` failed: {str(detail).strip()}"
    try:
        _ip("-n", probe, "link", "add", "aptprobe0", "type", "veth", "peer", "name", "aptprobe1")
    except (subprocess.CalledProcessError, subprocess.TimeoutExpired) as exc:
        return f"cannot create a veth pair: {str(getattr(exc, 'stderr', exc)).strip()}"
    finally:
        _delete_namespace(probe)
    return None


def _delete_namespace(name: str) -> None:
    if Path(f"/run/netns/{name}").exists():
        with contextlib.suppress(subprocess.CalledProcessError, subprocess.TimeoutExpired, OSError):
            _ip("netns", "del", name)
    _LIVE_NAMESPACES.discard(name)


def destroy_leftover_namespaces() -> None:
    """Delete every namespace this process created and still holds (deleting one removes its veth end)."""
    for name in sorted(_LIVE_NAMESPACES):
        _delete_namespace(name)


atexit.register(destroy_leftover_namespaces)


class NetnsPair:
    """Two namespaces of our own joined by a veth pair: the station's and the CSMS's ("host") side.

    Both ends and the /30 between them exist only inside these namespaces, so no traffic can leave them and
    nothing of the machine's own network is touched. The CSMS thread is started while the calling thread has
    joined the CSMS namespace (threads inherit it), then the caller goes back to its own.
    """

    def __init__(self) -> None:
        token = secrets.token_hex(3)
        self.station_ns = f"apt-{token}-cs"
        self.csms_ns = f"apt-{token}-csms"
        self.station_if = f"apc{token}"  # interface names: at most 15 characters
        self.csms_if = f"aph{token}"
        net = f"10.{random.randint(200, 250)}.{random.randint(0, 255)}"
        self.csms_addr = f"{net}.1"
        self.station_addr = f"{net}.2"

    def create(self) -> None:
        try:
            _LIVE_NAMESPACES.update((self.station_ns, self.csms_ns))
            _ip("netns", "add", self.station_ns)
            _ip("netns", "add", self.csms_ns)
            _ip(
                "-n",
                self.station_ns,
                "link",
                "add",
                self.station_if,
                "type",
                "veth",
                "peer",
                "name",
                self.csms_if,
                "netns",
                self.csms_ns,
            )
            for ns, dev, addr in (
                (self.station_ns, self.station_if, self.station_addr),
                (self.csms_ns, self.csms_if, self.csms_addr),
            ):
                _ip("-n", ns, "addr", "add", f"{addr}/30", "dev", dev)
                _ip("-n", ns, "link", "set", dev, "up")
                _ip("-n", ns, "link", "set", "lo", "up")
        except BaseException:
            self.destroy()
            raise

    def destroy(self) -> None:
        """Delete both namespaces (the veth pair goes with them). Safe to call twice."""
        for ns in (self.station_ns, self.csms_ns):
            _delete_namespace(ns)

    def set_link(self, side: Literal["station", "csms"], up: bool) -> None:
        ns, dev = (self.station_ns, self.station_if) if side == "station" else (self.csms_ns, self.csms_if)
        _ip("-n", ns, "link", "set", dev, "up" if up else "down")

    @property
    def exec_prefix(self) -> list[str]:
        return ["ip", "netns", "exec", self.station_ns]

    @contextlib.contextmanager
    def inside_csms_ns(self) -> Iterator[None]:
        """Run the block (and every thread it starts) in the CSMS namespace; come back afterwards."""
        libc = ctypes.CDLL(None, use_errno=True)
        own = os.open("/proc/thread-self/ns/net", os.O_RDONLY)
        target = os.open(f"/run/netns/{self.csms_ns}", os.O_RDONLY)
        try:
            if libc.setns(target, _CLONE_NEWNET) != 0:
                err = ctypes.get_errno()
                raise OSError(err, f"setns({self.csms_ns}): {os.strerror(err)}")
            try:
                yield
            finally:
                if libc.setns(own, _CLONE_NEWNET) != 0:  # pragma: no cover - would leave pytest stranded
                    err = ctypes.get_errno()
                    raise OSError(err, f"setns back to the original namespace failed: {os.strerror(err)}")
        finally:
            os.close(own)
            os.close(target)


# --- the station and its surroundings ----------------------------------------------------------------------


class _StationProcess(StationProcess):
    """`process.StationProcess`, optionally started through a prefix (`ip netns exec NS`)."""

    def __init__(self, config_path: Path, log_path: Path, prefix: Sequence[str] = ()) -> None:
        super().__init__(config_path, log_path)
        self.prefix = list(prefix)
        self.starts = 0
        self.log_offset = 0  # where the current process's output begins in the log file

    def start(self) -> None:
        self.log_offset = self.log_path.stat().st_size if self.log_path.exists() else 0
        self._log = open(self.log_path, "ab")  # noqa: SIM115 - lives as long as the process
        self.proc = subprocess.Popen(
            [*self.prefix, sys.executable, "-m", "appliance", "run", "--config", str(self.config_path)],
            cwd=PACKAGE_ROOT,
            stdout=self._log,
            stderr=subprocess.STDOUT,
            env={**os.environ, "PYTHONUNBUFFERED": "1"},
        )
        self.starts += 1

    @property
    def running(self) -> bool:
        return self.proc is not None and self.proc.poll() is None

    def reap(self) -> int | None:
        """The exit code of a process that ended by itself; closes its log handle."""
        assert self.proc is not None
        code = self.proc.wait(5)
        self._log.close()
        return code

    def terminate(self, timeout: float = 20.0) -> int | None:
        """SIGTERM and wait; None if it had to be SIGKILLed because it did not stop in time."""
        if not self.running:
            return None if self.proc is None else self.proc.returncode
        try:
            return self.stop(signal.SIGTERM, timeout)
        except subprocess.TimeoutExpired:
            assert self.proc is not None
            self.proc.kill()
            self.proc.wait(10)
            return None


class SimCli:
    """`python -m appliance sim --socket …` — the CONTRACT's way of driving the simulated hardware."""

    def __init__(self, socket_path: Path, tally: Tally) -> None:
        self.socket_path = socket_path
        self._tally = tally

    def __call__(self, *args: str, timeout: float = 5.0) -> tuple[int, dict[str, Any] | None]:
        """(exit code, JSON answer or None). 0 done, 1 refused, 3 no station, 4 no answer (see sim_cli)."""
        cmd = [
            sys.executable,
            "-m",
            "appliance",
            "sim",
            "--socket",
            str(self.socket_path),
            "--timeout",
            f"{timeout:g}",
            *args,
        ]
        try:
            done = subprocess.run(cmd, cwd=PACKAGE_ROOT, capture_output=True, text=True, timeout=timeout + 15)
        except subprocess.TimeoutExpired:
            self._tally.add("sim_failed")
            return 4, None
        self._tally.add("sim_commands")
        if done.returncode != 0:
            self._tally.add("sim_failed")
        answer = None
        with contextlib.suppress(ValueError, IndexError):
            answer = json.loads(done.stdout.splitlines()[0])
        return done.returncode, answer

    def ev_state(self, evse_id: int) -> str | None:
        """The EV's pilot state (A/B/C) on the EVSE, or None when the station does not answer."""
        code, answer = self("status")
        if code != 0 or answer is None:
            return None
        for evse in answer.get("evses", ()):
            if evse.get("evseId") == evse_id:
                return str(evse.get("evState"))
        return None


class Rig:
    """CSMS (+ proxy or namespaces) + one station process on a fresh data directory; torn down on exit."""

    def __init__(self, mode: Mode, workdir: Path, tally: Tally, say: Say) -> None:
        self.mode = mode
        self.workdir = workdir
        self.data_dir = workdir / "data"
        self.config_path = workdir / "station.toml"
        self.log_path = workdir / "station.log"
        self.db_path = self.data_dir / "journal.db"
        self.tally = tally
        self.say = say
        self.csms: LoopbackCsms
        self.proxy: ChaosProxy | None = None
        self.net: NetnsPair | None = None
        self.station: _StationProcess
        self.sim = SimCli(self.data_dir / "sim.sock", tally)
        self.crashes: list[str] = []  # exits we did not cause: "exit CODE: last critical log line"
        self.crash_faults: list[Fault] = []  # the same as outages, for the checks (from death to restart)
        self._down_on_purpose = False
        self._stack = contextlib.ExitStack()

    def __enter__(self) -> Rig:
        try:
            self._setup()
        except BaseException:
            self._stack.close()
            raise
        return self

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self._stack.close()

    def _setup(self) -> None:
        self.data_dir.mkdir(parents=True, exist_ok=True)
        csms_kwargs: dict[str, Any] = {
            "passwords": {STATION_ID: PASSWORD},
            "heartbeat_interval": 300,
            "max_frames": 5_000_000,
        }
        prefix: list[str] = []
        if self.mode == "netns":
            self.net = NetnsPair()
            self.net.create()
            self._stack.callback(self.net.destroy)
            with self.net.inside_csms_ns():
                self.csms = LoopbackCsms(host=self.net.csms_addr, **csms_kwargs).start()
            url = f"ws://{self.net.csms_addr}:{self.csms.port}/ocpp"
            prefix = self.net.exec_prefix
            self.say(
                f"netns: station in {self.net.station_ns} ({self.net.station_addr}), CSMS in "
                f"{self.net.csms_ns} at {url}"
            )
        else:
            self.csms = LoopbackCsms(**csms_kwargs).start()
            url = self.csms.url
        self._stack.callback(self.csms.stop)
        if self.mode == "proxy":
            self.proxy = ChaosProxy("127.0.0.1", self.csms.port).start()
            self._stack.callback(self.proxy.stop)
            url = f"ws://127.0.0.1:{self.proxy.port}/ocpp"
        self.config_path.write_text(self.station_config(url))
        self.station = _StationProcess(self.config_path, self.log_path, prefix)
        self._stack.callback(self._kill_station)  # runs first: nothing may outlive the namespaces
        self.station.start()

    def station_config(self, url: str) -> str:
        """The station's config text (a rig for other hardware, e.g. lab.devsim's serial bench, extends it)."""
        return config_text(self.data_dir, url, variables=VARIABLES)

    def _kill_station(self) -> None:
        if self.station.running:
            self.station.kill()

    def kill_station(self) -> None:
        """A power cut: SIGKILL, and the station stays down until `restart_station`."""
        self._down_on_purpose = True
        self.station.kill()

    def restart_station(self) -> None:
        self.station.start()
        self._down_on_purpose = False

    def revive(self) -> None:
        """What the systemd unit's Restart=always does: a station that died on its own is noted and restarted.

        The crash is a problem the report names; restarting lets the run go on and check the replay after it.
        """
        if self._down_on_purpose or self.station.proc is None or self.station.running:
            return
        code = self.station.reap()
        line = _last_critical(self.log_path, self.station.log_offset)
        self.crashes.append(f"exit {code}: {_shorten_log_line(line)}")
        self.say(f"station died on its own (exit {code}); restarting it")
        if len(self.crashes) > 50:
            raise RuntimeError(f"the station keeps dying ({len(self.crashes)} times); see {self.log_path}")
        died = _epoch(line.partition("ts=")[2].partition(" ")[0]) or time.time()
        self.station.start()
        self.crash_faults.append(Fault("crash", died, time.time()))

    def wait_ready(self, timeout: float = 30.0) -> None:
        """Until the station answers on its sim socket (it runs and its hardware is up)."""
        deadline = time.monotonic() + timeout
        while self.sim("status", timeout=2.0)[0] != 0:
            self.revive()
            if time.monotonic() > deadline:
                raise TimeoutError(f"the station did not come up within {timeout:g} s; see {self.log_path}")
            time.sleep(0.1)

    def unplug_all(self, timeout: float = 30.0) -> bool:
        """Make sure no EV is plugged in anywhere (so every transaction ends); False if that failed.

        `timeout` is per EVSE: every try is a `python -m appliance sim` process (the CONTRACT's interface), and on
        a loaded machine each takes seconds to start, so one shared budget ran out before the second EVSE."""
        for evse_id in EVSES:
            deadline = time.monotonic() + timeout
            while (state := self.sim.ev_state(evse_id)) != "A":
                self.revive()
                if state is not None:
                    self.sim("unplug", str(evse_id))
                if time.monotonic() > deadline:
                    return False
                time.sleep(0.2)
        return True

    def journal_backlog(self) -> tuple[int, int] | None:
        """(pending messages, open transactions) as the journal says now; None when it cannot be read."""
        try:
            with contextlib.closing(_open_ro(self.db_path)) as conn:
                pending = conn.execute("SELECT count(*) FROM outbox WHERE outcome IS NULL").fetchone()[0]
                open_txs = conn.execute("SELECT count(*) FROM transactions WHERE state = 'open'").fetchone()[0]
        except sqlite3.Error:
            return None
        return int(pending), int(open_txs)

    def wait_drained(self, timeout: float) -> tuple[int, int] | None:
        """Give the station time to deliver everything: until nothing is pending and no transaction is open."""
        deadline = time.monotonic() + timeout
        while True:
            self.revive()
            backlog = self.journal_backlog()
            if backlog == (0, 0) or time.monotonic() > deadline:
                return backlog
            time.sleep(0.25)


def _last_critical(log_path: Path, offset: int) -> str:
    """The last critical line the dead process logged (usually why it died), else its last line."""
    try:
        with open(log_path, "rb") as log:
            log.seek(offset)
            lines = log.read().decode(errors="replace").splitlines()
    except OSError:
        return "no log"
    critical = [line for line in lines if "level=critical" in line]
    return critical[-1] if critical else (lines[-1][:300] if lines else "empty log")


def _open_ro(path: Path) -> sqlite3.Connection:
    conn = sqlite3.connect(f"{path.resolve().as_uri()}?mode=ro", uri=True, timeout=5.0)
    conn.execute("PRAGMA busy_timeout=5000")
    return conn


# --- the EVs -------------------------------------------------------------------------------------------------


class _Resync(Exception):
    """A sim command failed (station down, restarted, or the EV is not where we thought)."""


class _Stopping(Exception):
    """The run is over: leave the EV as it is (the scenario unplugs everything itself)."""


class EvDriver(threading.Thread):
    """One EVSE's customers, one after another: plug, tap a fresh token, charge (maybe pause), sometimes stop
    with the same card, unplug.

    Any failed command (station killed, restarted without the EV, no answer) makes the driver look at
    `status`, unplug whatever is left, and start over with a new customer.
    """

    def __init__(
        self, evse_id: int, sim: SimCli, rng: random.Random, tally: Tally, token_prefix: str, pace: float = 1.0
    ) -> None:
        """`pace` scales every pause: the kill mode uses short sessions so that some end between kills."""
        super().__init__(name=f"ev-driver-{evse_id}", daemon=True)
        self.pace = pace
        self.evse_id = evse_id
        self.sim = sim
        self.rng = rng
        self.tally = tally
        self.token_prefix = token_prefix
        self.stopping = threading.Event()
        self.error: BaseException | None = None
        self._customer = 0

    def run(self) -> None:
        try:
            while not self.stopping.is_set():
                try:
                    self._session()
                except _Resync:
                    self.tally.add("resyncs")
                    self._resync()
        except _Stopping:
            return
        except BaseException as exc:  # reported by the scenario: a driver bug must not pass silently
            self.error = exc

    def _pause(self, low: float, high: float) -> None:
        if self.stopping.wait(self.rng.uniform(low, high) * self.pace):
            raise _Stopping

    def _do(self, *args: str) -> None:
        if self.stopping.is_set():
            raise _Stopping
        code, _ = self.sim(*args)
        if code != 0:
            raise _Resync
        self.tally.add(args[0])

    def _session(self) -> None:
        e = str(self.evse_id)
        self._customer += 1
        token = f"{self.token_prefix}{self.evse_id}{self._customer:05d}"
        self._do("plug", e)
        self._pause(0.1, 0.6)
        self._do("tap", token, "--evse", e)
        self._pause(0.1, 0.5)
        self._do("charge", e, "--watts", str(self.rng.choice((3700, 7400, 11000, 22000))))
        for _ in range(self.rng.randint(0, 2)):
            self._pause(0.8, 2.5)
            if self.rng.random() < 0.5:
                self._do("suspend", e)
                self._pause(0.3, 1.0)
                self._do("charge", e)
        self._pause(1.0, 4.0)
        if self.rng.random() < 0.3:
            self._do("tap", token, "--evse", e)  # stop with the card (or start, if it was refused offline)
            self._pause(0.2, 1.0)
        self._do("unplug", e)
        self._pause(0.3, 1.0)

    def _resync(self) -> None:
        while not self.stopping.is_set():
            state = self.sim.ev_state(self.evse_id)
            if state == "A":
                return
            if state is not None:
                self.sim("unplug", str(self.evse_id))
            elif self.stopping.wait(0.3):
                return


# --- the faults ----------------------------------------------------------------------------------------------


class Injector(Protocol):
    def next(self, rng: random.Random) -> tuple[float, float, str]:
        """(seconds up before the fault, seconds the fault lasts, its kind)."""

    def cut(self, kind: str) -> None: ...

    def heal(self, kind: str) -> None: ...


class ProxyInjector:
    """Blackholes on the chaos proxy: short ones the station may not even notice, long ones it must."""

    def __init__(self, proxy: ChaosProxy) -> None:
        self.proxy = proxy

    def next(self, rng: random.Random) -> tuple[float, float, str]:
        up, r = rng.uniform(0.3, 1.6), rng.random()
        if r < 0.45:
            return up, rng.uniform(0.2, 1.0), "stall"
        if r < 0.8:
            return up, rng.uniform(2.5, 3.8), "stall"
        return up, rng.uniform(3.5, 4.5), "drop"

    def cut(self, kind: str) -> None:
        self.proxy.blackhole(drop=kind == "drop")

    def heal(self, kind: str) -> None:
        self.proxy.restore()


class NetnsInjector:
    """The veth link set down and up again, on the station's side (own NIC down) or the CSMS's (peer down)."""

    def __init__(self, net: NetnsPair) -> None:
        self.net = net
        self._count = 0

    def next(self, rng: random.Random) -> tuple[float, float, str]:
        up = rng.uniform(0.3, 1.6)
        down = rng.uniform(0.3, 1.2) if rng.random() < 0.4 else rng.uniform(2.5, 3.8)
        self._count += 1  # the two sides take turns: both failure modes in every run, however short
        return up, down, ("link-station", "link-csms")[self._count % 2]

    def cut(self, kind: str) -> None:
        self.net.set_link("station" if kind == "link-station" else "csms", up=False)

    def heal(self, kind: str) -> None:
        self.net.set_link("station" if kind == "link-station" else "csms", up=True)


class KillInjector:
    """SIGKILL the station at a random moment and start it again on the same data directory.

    Most kills are aimed at a transaction: the up time counts from when the journal shows one open (a restarted
    station must first come up, boot and start a session, which on a loaded machine takes longer than any fixed
    delay would allow for). The others count from when the station answers again, and come later, so that some
    sessions end normally between two kills and some kills find no transaction at all.
    """

    #: At most this long waiting for an open transaction; then the kill comes anyway (and may find none).
    TX_WAIT_S = 30.0

    def __init__(self, rig: Rig) -> None:
        self.rig = rig
        self._killed_open: set[str] = set()  # open when the last kill landed: the restart ends them (PowerLoss)

    def next(self, rng: random.Random) -> tuple[float, float, str]:
        with contextlib.suppress(TimeoutError):
            self.rig.wait_ready()
        if rng.random() < 0.75:
            self._wait_new_transaction()
            up = rng.uniform(0.0, 1.5)  # sessions last a few seconds: mostly still open when the kill lands
        else:
            up = rng.uniform(4.0, 6.0)
        return up, rng.uniform(0.0, 0.8), "kill"

    def _open_transactions(self) -> set[str] | None:
        try:
            with contextlib.closing(_open_ro(self.rig.db_path)) as conn:
                rows = conn.execute("SELECT transaction_id FROM transactions WHERE state = 'open'").fetchall()
        except sqlite3.Error:
            return None
        return {row[0] for row in rows}

    def _wait_new_transaction(self) -> None:
        """Until the journal shows a transaction open that the last kill did not already interrupt."""
        deadline = time.monotonic() + self.TX_WAIT_S
        while time.monotonic() < deadline:
            if (self._open_transactions() or set()) - self._killed_open:
                return
            self.rig.revive()
            time.sleep(0.05)

    def cut(self, kind: str) -> None:
        self.rig.kill_station()
        self._killed_open = self._open_transactions() or set()

    def heal(self, kind: str) -> None:
        self.rig.restart_station()


def _injector(rig: Rig) -> Injector:
    if rig.mode == "proxy":
        assert rig.proxy is not None
        return ProxyInjector(rig.proxy)
    if rig.mode == "netns":
        assert rig.net is not None
        return NetnsInjector(rig.net)
    return KillInjector(rig)


# --- one run -------------------------------------------------------------------------------------------------


def run_scenario(
    plan: Plan, workdir: Path, *, say: Say = print, progress_every: float = 0.0, rig_class: type[Rig] | None = None
) -> Report:
    """Torture one station as `plan` says, heal, drain, stop it, and check everything (see the module doc).

    `rig_class`: another station rig (default `Rig`: simulated hardware), e.g. the serial bench's."""
    rng = random.Random(plan.seed)
    tally = Tally()
    faults: list[Fault] = []
    notes: list[str] = []
    problems: list[Problem] = []
    say(
        f"torture {plan.mode}: seed {plan.seed} (replay its choices with TORTURE_SEED={plan.seed}); "
        f"work directory {workdir}"
    )
    started = time.monotonic()
    with (rig_class or Rig)(plan.mode, workdir, tally, say) as rig:
        rig.wait_ready()
        injector = _injector(rig)
        pace = 0.5 if plan.mode == "kill" else 1.0
        drivers = [
            EvDriver(e, rig.sim, random.Random(rng.random()), tally, f"{plan.seed % 0xFFFF:04X}", pace) for e in EVSES
        ]
        for driver in drivers:
            driver.start()
        next_progress = time.monotonic() + progress_every
        waited = 0.0  # in injector.next: the station coming up, not torture (see Plan)
        try:
            while True:
                elapsed = time.monotonic() - started
                if (len(faults) >= plan.min_faults and elapsed >= plan.min_seconds) or (
                    elapsed - waited >= plan.max_seconds
                ):
                    break
                asked = time.monotonic()
                up, down, kind = injector.next(rng)
                waited += time.monotonic() - asked
                time.sleep(up)
                rig.revive()
                fault = Fault(kind, time.time())
                faults.append(fault)
                injector.cut(kind)
                try:
                    time.sleep(down)
                finally:
                    injector.heal(kind)
                    fault.end = time.time()
                rig.revive()
                if progress_every and time.monotonic() >= next_progress:
                    next_progress = time.monotonic() + progress_every
                    say(
                        f"  … {elapsed:.0f} s: {len(faults)} faults, {tally.snapshot().get('plug', 0)} EV sessions,"
                        f" {len(rig.crashes)} crashes"
                    )
        finally:
            for driver in drivers:
                driver.stopping.set()
            for driver in drivers:
                driver.join(30)
        fault_seconds = time.monotonic() - started
        problems += [Problem("harness", f"EV driver {d.evse_id} failed: {d.error!r}") for d in drivers if d.error]
        rig.wait_ready()
        if not rig.unplug_all():
            problems.append(Problem("harness", "could not unplug every EV at the end (sim did not answer)"))
        backlog = rig.wait_drained(plan.drain_timeout)
        if backlog != (0, 0):
            notes.append(f"journal not drained after {plan.drain_timeout:g} s: (pending, open) = {backlog}")
        problems += [
            Problem("crash", f"the station process died on its own ({c}); restarted it as Restart=always would")
            for c in rig.crashes
        ]
        exit_code = rig.station.terminate()
        if exit_code != 0:
            problems.append(Problem("exit", f"the station did not exit 0 on SIGTERM (exit {exit_code})"))
        counts, found = check_run(
            rig.db_path,
            rig.csms.frames_snapshot(STATION_ID),
            rig.csms.connections_snapshot(STATION_ID),
            faults + rig.crash_faults,
        )
        problems += found
        problems += [Problem("csms-violation", str(v)) for v in rig.csms.violations]
        problems += verify_cli(rig.db_path)
        notes += _log_notes(rig.log_path)
        counts.update(tally.snapshot())
        counts["station_starts"] = rig.station.starts
        counts["crashes"] = len(rig.crashes)
    return Report(plan.mode, plan.seed, fault_seconds, faults, counts, problems, notes, workdir, rig.log_path)


def verify_cli(db_path: Path) -> list[Problem]:
    """`appliance-journal verify --json` as a user would run it: exit 0 and `ok: true`, else the violations."""
    done = subprocess.run(
        [sys.executable, "-m", "appliance.journal.cli", "--db", str(db_path), "verify", "--json"],
        cwd=PACKAGE_ROOT,
        capture_output=True,
        text=True,
        timeout=120,
    )
    try:
        report = json.loads(done.stdout)
    except ValueError:
        return [
            Problem(
                "verify", f"appliance-journal verify exited {done.returncode} without JSON: {done.stderr.strip()[:500]}"
            )
        ]
    if done.returncode == 0 and report.get("ok") is True:
        return []
    found = [
        Problem("verify", f"appliance-journal verify (exit {done.returncode}): {v}")
        for v in report.get("violations", [])
    ]
    return _limit(found) or [
        Problem("verify", f"appliance-journal verify exited {done.returncode}: {done.stdout.strip()[:500]}")
    ]


def _log_notes(log_path: Path) -> list[str]:
    """Error-level lines of the station's log, for the report (a human decides whether they matter)."""
    try:
        lines = log_path.read_text(errors="replace").splitlines()
    except OSError:
        return []
    errors = [line for line in lines if "level=error" in line or "level=critical" in line]
    notes = [f"station log: {_shorten_log_line(line)}" for line in errors[:5]]
    if len(errors) > 5:
        notes.append(f"station log: … {len(errors) - 5} more error line(s)")
    return notes


def _shorten_log_line(line: str) -> str:
    """A logfmt line with its one-line traceback cut down to the message and the exception's last line."""
    head, _, exc = line.partition(' exc="')
    if not exc:
        return head[:300]
    frames = [part for part in exc.rstrip('"').split("\\n") if part.strip()]
    return f"{head[:240]} … {frames[-1].strip(' |')[:200] if frames else ''}"


# --- the checks ----------------------------------------------------------------------------------------------


@dataclass
class _Row:
    id: int
    message_id: str
    action: str
    transaction_id: str | None
    seq_no: int | None
    event_type: str | None
    offline: bool
    payload: dict[str, Any]
    delivered_at: float | None
    outcome: str | None
    attempts: int
    last_error: str | None

    @property
    def label(self) -> str:
        if self.transaction_id is None:
            return f"{self.action} {self.message_id} (row {self.id})"
        return f"{self.action} tx {self.transaction_id} seqNo {self.seq_no} (row {self.id})"


@dataclass
class _Receipt:
    frame: RecordedFrame
    payload: dict[str, Any]


@dataclass
class _Window:
    start: float
    end: float


def _epoch(text: str | None) -> float | None:
    if not text:
        return None
    try:
        return parse_iso(text).timestamp()
    except ValueError:
        return None


def _read_journal(db_path: Path) -> tuple[list[_Row], dict[str, dict[str, Any]]]:
    with contextlib.closing(_open_ro(db_path)) as conn:
        rows = [
            _Row(r[0], r[1], r[2], r[3], r[4], r[5], bool(r[6]), json.loads(r[7]), _epoch(r[8]), r[9], r[10], r[11])
            for r in conn.execute(
                "SELECT id, message_id, action, transaction_id, seq_no, event_type, offline, payload, delivered_at,"
                " outcome, attempts, last_error FROM outbox ORDER BY id"
            )
        ]
        txs = {
            r[0]: {"state": r[1], "stoppedReason": r[2], "evseId": r[3]}
            for r in conn.execute("SELECT transaction_id, state, stopped_reason, evse_id FROM transactions")
        }
    return rows, txs


def _connection_windows(connections: list[ConnectionRecord], now: float) -> list[_Window]:
    """Wall-clock [open, close] of every accepted OCPP session the CSMS saw."""
    windows = []
    for c in connections:
        if not c.accepted:
            continue
        closed = now if c.closed_monotonic is None else c.opened_wall + (c.closed_monotonic - c.opened_monotonic)
        windows.append(_Window(c.opened_wall, closed))
    return windows


def _register(payload: dict[str, Any]) -> float | None:
    """The highest total import register reading in a payload (Wh), if it carries any."""
    best = None
    for mv in payload.get("meterValue") or ():
        for s in mv.get("sampledValue") or ():
            if s.get("measurand", "Energy.Active.Import.Register") != "Energy.Active.Import.Register":
                continue
            if "phase" in s or s.get("location", "Outlet") != "Outlet":
                continue
            unit = s.get("unitOfMeasure") or {}
            wh = float(s["value"]) * (1000.0 if unit.get("unit") == "kWh" else 1.0) * 10 ** unit.get("multiplier", 0)
            best = wh if best is None else max(best, wh)
    return best


def _limit(problems: list[Problem], limit: int = 12) -> list[Problem]:
    """The first `limit` problems of one kind and a count of the rest: one root cause can repeat hundreds of times."""
    if len(problems) <= limit:
        return problems
    return [*problems[:limit], Problem(problems[0].kind, f"… and {len(problems) - limit} more like these")]


def check_run(
    db_path: Path, frames: list[RecordedFrame], connections: list[ConnectionRecord], faults: list[Fault]
) -> tuple[dict[str, int], list[Problem]]:
    """Compare the journal with the CSMS's recording; return (counts, problems).

    Checked: everything journaled was delivered (none pending or dropped) and received exactly as journaled;
    the CSMS got nothing the journal lacks; first deliveries follow journal order and, per transaction, seqNos
    never go back at the CSMS; seqNo is gapless from 0 with Started first and exactly one Ended last; a message
    reaches the CSMS again only while the station had not recorded its delivery; offline flags agree with the
    faults and the CSMS's connection records (within NOTICE_S/EDGE_S/RECONNECT_S margins); the meter register
    never goes back within a transaction; every transaction ended.
    """
    rows, txs = _read_journal(db_path)
    problems: list[Problem] = []

    receipts: dict[str, list[_Receipt]] = defaultdict(list)
    for f in frames:
        if f.direction == "in" and f.is_call and f.message_id is not None and isinstance(f.payload, dict):
            receipts[f.message_id].append(_Receipt(f, f.payload))
    tx_events: dict[str, list[_Row]] = defaultdict(list)
    for r in rows:
        if r.action == "TransactionEvent" and r.transaction_id is not None:
            tx_events[r.transaction_id].append(r)
    for evs in tx_events.values():
        evs.sort(key=lambda r: r.seq_no if r.seq_no is not None else -1)

    problems += _check_delivery(rows, receipts)
    problems += _check_order(rows, receipts, frames)
    answers: dict[tuple[int, str], list[RecordedFrame]] = defaultdict(list)
    for f in frames:
        if f.direction == "out" and not f.is_call and f.message_id is not None:
            answers[(f.connection_id, f.message_id)].append(f)
    problems += _check_duplicates(rows, receipts, answers, faults)
    problems += _check_sequences(tx_events, txs, receipts)
    problems += _check_offline_flags(tx_events, _connection_windows(connections, time.time()), faults)

    counts = {
        "transactions": len(txs),
        "powerloss": sum(1 for t in txs.values() if t["stoppedReason"] == "PowerLoss"),
        "events": sum(len(v) for v in tx_events.values()),
        "offline_events": sum(1 for v in tx_events.values() for r in v if r.offline),
        "messages": len(rows),
        "receipts": sum(len(v) for v in receipts.values() if v and v[0].frame.action == "TransactionEvent"),
        "resends": sum(max(0, len(receipts.get(r.message_id, [])) - 1) for r in rows),
        "connections": sum(1 for c in connections if c.accepted),
    }
    return counts, problems


def _check_delivery(rows: list[_Row], receipts: dict[str, list[_Receipt]]) -> list[Problem]:
    """Everything journaled reached the CSMS, exactly as journaled; the CSMS got nothing the journal lacks."""
    pending = [
        Problem("delivery", f"still pending after the drain: {r.label}, {r.attempts} failed attempt(s)")
        for r in rows
        if r.outcome is None
    ]
    dropped = [
        Problem(
            "delivery",
            f"DROPPED, never to be delivered: {r.label} after {r.attempts} failed "
            f"attempts, last error {r.last_error!r}",
        )
        for r in rows
        if r.outcome == "dropped"
    ]
    missing, altered = [], []
    for r in rows:
        got = receipts.get(r.message_id, [])
        if not got:
            missing.append(
                Problem("delivery", f"journaled but never received by the CSMS: {r.label}, outcome {r.outcome}")
            )
        elif any(g.payload != r.payload for g in got):
            altered.append(Problem("delivery", f"received differently from how it was journaled: {r.label}"))
    journaled = {r.message_id for r in rows}
    unknown = [
        Problem("delivery", f"the CSMS received a {g.frame.action} the journal does not have: {g.frame.raw[:200]}")
        for mid, got in receipts.items()
        if mid not in journaled
        for g in got
        if g.frame.action in ("TransactionEvent", "MeterValues")
    ]
    ids_per_event: dict[tuple[Any, Any], set[str]] = defaultdict(set)
    for mid, got in receipts.items():
        for g in got:
            if g.frame.action == "TransactionEvent":
                tx = g.payload.get("transactionInfo", {}).get("transactionId")
                ids_per_event[(tx, g.payload.get("seqNo"))].add(mid)
    split = [
        Problem("delivery", f"tx {tx} seqNo {seq} reached the CSMS under {len(mids)} different message ids")
        for (tx, seq), mids in ids_per_event.items()
        if len(mids) > 1
    ]
    return _limit(pending) + _limit(dropped) + _limit(missing) + _limit(altered) + _limit(unknown) + _limit(split)


def _check_order(rows: list[_Row], receipts: dict[str, list[_Receipt]], frames: list[RecordedFrame]) -> list[Problem]:
    """First deliveries follow journal order; per transaction, no seqNo first arrives after a higher one.

    A resend of a message the CSMS already has (same messageId: its answer came, its delivered mark died with the
    power) is not a reordering: `_check_duplicates` judges those."""
    found = []
    latest: tuple[int, _Row] | None = None
    for r in rows:
        got = receipts.get(r.message_id)
        if not got:
            continue
        first = got[0].frame.index
        if latest is not None and first < latest[0]:
            found.append(
                Problem("order", f"out of journal order: {r.label} first reached the CSMS before {latest[1].label}")
            )
        if latest is None or first > latest[0]:
            latest = (first, r)
    highest: dict[Any, int] = {}
    received: set[str] = set()
    for f in frames:
        if f.direction != "in" or not f.is_call or f.action != "TransactionEvent" or not isinstance(f.payload, dict):
            continue
        if f.message_id in received:
            continue
        if f.message_id is not None:
            received.add(f.message_id)
        tx, seq = f.payload.get("transactionInfo", {}).get("transactionId"), f.payload.get("seqNo")
        if not isinstance(seq, int):
            continue
        if tx in highest and seq < highest[tx]:
            found.append(
                Problem(
                    "order",
                    f"tx {tx}: the CSMS received seqNo {seq} after seqNo {highest[tx]} "
                    f"(frame {f.index}, connection {f.connection_id})",
                )
            )
        highest[tx] = max(seq, highest.get(tx, -1))
    return _limit(found)


def _check_duplicates(
    rows: list[_Row],
    receipts: dict[str, list[_Receipt]],
    answers: dict[tuple[int, str], list[RecordedFrame]],
    faults: list[Fault],
) -> list[Problem]:
    """A message reaches the CSMS again only when no answer came: never after the station journaled its delivery,
    and never after the CSMS answered the previous copy in time, with no fault near that could have eaten the
    answer (or killed the station before it recorded it)."""
    found = []
    for r in rows:
        got = receipts.get(r.message_id, [])
        if r.delivered_at is not None:
            for g in got:
                if g.frame.wall > r.delivered_at + ACK_SLACK_S:
                    found.append(
                        Problem(
                            "duplicate",
                            f"sent again after an acknowledged delivery: {r.label} "
                            f"journaled as delivered at {_hms(r.delivered_at)}, received again at "
                            f"{_hms(g.frame.wall)} (connection {g.frame.connection_id})",
                        )
                    )
        for previous, again in pairwise(got):
            answer = next(
                (
                    a
                    for a in answers.get((previous.frame.connection_id, r.message_id), [])
                    if a.index > previous.frame.index
                ),
                None,
            )
            if answer is None or answer.message_type != 3 or answer.index > again.frame.index:
                continue  # no CALLRESULT went out: the resend was due
            if answer.wall - previous.frame.wall > MESSAGE_TIMEOUT_S / 2:
                continue  # answered so late that the station may have given up waiting
            if any(_may_have_lost(f, answer.wall) for f in faults):
                continue  # the answer may have been lost in the fault, or the station died before recording it
            found.append(
                Problem(
                    "duplicate",
                    f"sent again although the CSMS answered in time and no fault was near:"
                    f" {r.label} answered at {_hms(answer.wall)} (connection {answer.connection_id}), "
                    f"received again at {_hms(again.frame.wall)} (connection "
                    f"{again.frame.connection_id})",
                )
            )
    return _limit(found)


def _may_have_lost(fault: Fault, answered: float) -> bool:
    """Whether an answer the CSMS sent at `answered` may never have been recorded by the station because of
    `fault`: sent during it, just before it (in flight for a cut; not yet journaled for a kill), or after it
    to a connection the station had already given up (a proxy delivers stalled bytes the moment it heals; the
    kernel retransmits over a veth that came back up only on its own back-off schedule, seconds later)."""
    before = ANSWER_UNRECORDED_S if fault.kind in ("kill", "crash") else ANSWER_IN_FLIGHT_S
    after = {"kill": 0.2, "stall": 0.5, "drop": 0.5}.get(fault.kind, RECONNECT_S)
    return fault.start - before <= answered <= (fault.end or time.time()) + after


def _check_sequences(
    tx_events: dict[str, list[_Row]], txs: dict[str, dict[str, Any]], receipts: dict[str, list[_Receipt]]
) -> list[Problem]:
    """Per transaction: seqNo 0.. without gaps, Started first, exactly one Ended and last, register never back;
    the same for what the CSMS received (resends allowed), and every transaction ended."""
    seq, meter = [], []
    for tx, evs in tx_events.items():
        seqs = [r.seq_no for r in evs]
        if seqs != list(range(len(evs))):
            seq.append(Problem("sequence", f"tx {tx}: journaled seqNos are {seqs}, not 0..{len(evs) - 1}"))
        types = [r.event_type for r in evs]
        if types[0] != "Started" or types.count("Started") != 1:
            seq.append(Problem("sequence", f"tx {tx}: event types {types}: Started must come first, once"))
        if types.count("Ended") != 1 or types[-1] != "Ended":
            seq.append(
                Problem(
                    "sequence",
                    f"tx {tx}: {types.count('Ended')} Ended event(s), the last is "
                    f"{types[-1]}: a transaction ends exactly once, last",
                )
            )
        last: tuple[float, int | None] | None = None
        for r in evs:
            wh = _register(r.payload)
            if wh is None:
                continue
            if last is not None and wh < last[0] - 1e-6:
                meter.append(
                    Problem(
                        "meter",
                        f"tx {tx}: the energy register goes back from {last[0]:.3f} Wh "
                        f"(seqNo {last[1]}) to {wh:.3f} Wh (seqNo {r.seq_no})",
                    )
                )
            last = (wh, r.seq_no)
    for tx, row in txs.items():
        if row["state"] != "ended":
            seq.append(
                Problem("sequence", f"tx {tx} on EVSE {row['evseId']} never ended (journal state {row['state']})")
            )
        if tx not in tx_events:
            seq.append(Problem("sequence", f"tx {tx} has a transactions row but no journaled TransactionEvent"))
    received = [g.payload for got in receipts.values() for g in got if g.frame.action == "TransactionEvent"]
    at_csms = [
        Problem(
            "meter" if "register" in v.problem else "sequence",
            f"as received by the CSMS: tx {v.transaction_id} seqNo {v.seq_no}: {v.problem}",
        )
        for v in check_events(received, allow_resends=True)
    ]
    distinct = {json.dumps(p, sort_keys=True): p for p in received}.values()
    ended = Counter(p["transactionInfo"]["transactionId"] for p in distinct if p.get("eventType") == "Ended")
    endings = [
        Problem("sequence", f"tx {tx}: the CSMS got {ended.get(tx, 0)} distinct Ended events, expected 1")
        for tx in tx_events
        if ended.get(tx, 0) != 1
    ]
    return _limit(seq) + _limit(meter) + _limit(at_csms) + _limit(endings)


def _check_offline_flags(
    tx_events: dict[str, list[_Row]], windows: list[_Window], faults: list[Fault]
) -> list[Problem]:
    """offline=true exactly for events produced while the CSMS was unreachable, give or take the margins.

    offline=false is wrong once a fault has lasted NOTICE_S (the station must have noticed by then), and when
    the CSMS had no connection at all. offline=true is wrong well inside a CSMS connection (EDGE_S from its
    ends) when no fault was near (from EDGE_S before it until RECONNECT_S after it healed).
    """
    now = time.time()
    cuts = [_Window(f.start, f.end if f.end is not None else now) for f in faults]
    found = []
    for evs in tx_events.values():
        for r in evs:
            t = _epoch(r.payload.get("timestamp"))
            if t is None:
                continue
            if not r.offline:
                cut = next((w for w in cuts if w.start + NOTICE_S <= t <= w.end), None)
                if cut is not None:
                    found.append(
                        Problem(
                            "offline-flag",
                            f"{r.label} at {_hms(t)} has offline=false, but the link had "
                            f"been cut for {t - cut.start:.1f} s ({_hms(cut.start)}..{_hms(cut.end)})",
                        )
                    )
                elif not any(w.start - 0.5 <= t <= w.end + NOTICE_S for w in windows):
                    found.append(
                        Problem(
                            "offline-flag",
                            f"{r.label} at {_hms(t)} has offline=false, but the CSMS "
                            "had no connection from the station then",
                        )
                    )
            else:
                up = next((w for w in windows if w.start + EDGE_S <= t <= w.end - EDGE_S), None)
                if up is not None and not any(w.start - EDGE_S <= t <= w.end + RECONNECT_S for w in cuts):
                    found.append(
                        Problem(
                            "offline-flag",
                            f"{r.label} at {_hms(t)} has offline=true, but the CSMS "
                            f"connection {_hms(up.start)}..{_hms(up.end)} was up and no fault was near",
                        )
                    )
    return _limit(found)


def _hms(t: float) -> str:
    """UTC wall time as the station's log shows it, to find the moment in station.log."""
    return time.strftime("%H:%M:%S", time.gmtime(t)) + f".{int(t % 1 * 1000):03d}"


@dataclass(frozen=True)
class KnownBug:
    """A station bug already reported: problems of `kind` whose text contains `marker` are explained by it."""

    kind: str
    marker: str
    reason: str

    def explains(self, problem: Problem) -> bool:
        return problem.kind == self.kind and self.marker in problem.text


#: Station bugs these scenarios found and reported (issue 3). Remove an entry (and its test's xfail marker)
#: once the fix lands; a strict xfail turns into a failure ("XPASS(strict)") to remind whoever fixes it.
KNOWN_BUGS: tuple[KnownBug, ...] = ()


class KnownStationBug(AssertionError):
    """Only already-reported station bugs showed up (tests mark themselves xfail(raises=KnownStationBug))."""


def assert_report(report: Report, *, min_faults: int, known: Sequence[KnownBug] = ()) -> None:
    """Fail on any unexplained problem or too few faults; raise KnownStationBug when only `known` bugs showed."""
    summary = report.summary()
    if len(report.faults) < min_faults:
        raise AssertionError(f"only {len(report.faults)} faults, wanted at least {min_faults}\n{summary}")
    unexplained = [p for p in report.problems if not any(bug.explains(p) for bug in known)]
    if unexplained:
        raise AssertionError(f"{len(unexplained)} unexplained problem(s)\n{summary}")
    if report.problems:
        bugs = [bug.reason for bug in known if any(bug.explains(p) for p in report.problems)]
        raise KnownStationBug("only known station bugs showed up:\n  " + "\n  ".join(bugs) + f"\n{summary}")


def new_seed() -> int:
    """TORTURE_SEED from the environment (to replay a run's choices), else a fresh one."""
    env = os.environ.get("TORTURE_SEED")
    return int(env) if env else random.SystemRandom().randrange(1, 2**31)
