"""`appliance fleet`: many virtual stations in one Trio process, for a CSMS maker's load test.

Each virtual station is a real `appliance.station.Station` — its own journal database, device model, blocks and
link, the code paths of one station — with the simulated hardware the registry builds for `backend = "sim"`.
The fleet drives that hardware object directly (plug, tap, charge, unplug) instead of through its control
socket, so a scripted session is the same sequence of hardware events a person would cause with `appliance sim`.

What keeps a thousand stations cheap:

* SQLite: the stations share a few `StorageWorker` threads (each station pinned to one, so its jobs stay in
  order) and every connection's page cache is capped (`cache_kib`), so a station costs a few hundred KiB of
  SQLite memory, not 2 MiB per connection and a thread.
* SQLite pages: no 20-page bulk cache per connection (`no_page_cache_bulk`), ~150 KiB per station.
* Logging: every station keeps its own diagnostics log file (the firmware does that) and is started in a log
  scope of its own (`logsetup.separate_logs`), so its file gets only its own records; one root handler and one
  writer thread serve every file. A fleet logs at ERROR by default (stderr would be a thousand stations' lines).

In the scenarios that pull cables, the network between the stations and the CSMS is the fleet's own in-process
cable rack (`Cables`, a Trio TCP relay): each station's connection goes through it, which tells the stations
apart by the station id at the end of the WebSocket upgrade's path. Pulling a station's cable closes its
connection and refuses its reconnection attempts for a while; the station's own link then backs off exactly as
it would in the field (RetryBackOffWaitMinimum, doubling, RetryBackOffRandomRange). A storm cuts every cable at
once.

Scenarios (`--scenario`) are in `SCENARIOS`; each says in its text what it does.
"""

from __future__ import annotations

import contextlib
import ctypes
import logging
import math
import random
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, TextIO
from urllib.parse import urlsplit

import trio

from appliance import logsetup
from appliance.config import Config, parse
from appliance.hardware.registry import make_hardware
from appliance.hardware.sim import SimHardware
from appliance.journal.verify import verify
from appliance.lab.process import config_text, short_dir
from appliance.protocol import default_registry
from appliance.station import Station
from appliance.storage import StorageWorker
from appliance.storage.db import DB_NAME, open_read_only
from appliance.util import memory

log = logging.getLogger("appliance.lab.fleet")

#: The cable rack waits this long for the first line of a WebSocket upgrade before it drops the connection.
_REQUEST_LINE_TIMEOUT = 10.0
_CHUNK = 65536
#: Stations that close their link and wind down at the same time when the fleet ends. All at once, a fleet's
#: RSS peaked there, above its steady figure (300 idle stations: 143 MB steady, 156 MB while stopping; 25 at a
#: time: no peak above steady, the stop 0.3 s longer).
STOPPING_AT_ONCE = 25
#: How long a scripted driver waits for the station to take the card before charging anyway.
CARD_VERDICT_S = 30.0


@dataclass(frozen=True)
class Scenario:
    name: str
    text: str
    sessions: bool = True  # scripted charging sessions on every station
    pull_every_s: float | None = None  # mean time between one station's cable pulls
    pull_for_s: tuple[float, float] = (2.0, 8.0)  # how long a pulled cable stays out (uniform)
    storm_every_s: float | None = None  # every cable cut at once, this often
    storm_for_s: float = 5.0


SCENARIOS: dict[str, Scenario] = {
    s.name: s
    for s in (
        Scenario("idle", "boot and stay connected: BootNotification, StatusNotifications, heartbeats", sessions=False),
        Scenario(
            "sessions",
            "every station repeats charging sessions: plug, card, charge with meter values, unplug, pause",
        ),
        Scenario(
            "pulls",
            "sessions, and each station's cable is pulled now and then (about every 30 s, out for 2-8 s): events "
            "are journaled offline and replayed in order after the reconnect",
            pull_every_s=30.0,
        ),
        Scenario(
            "storm",
            "sessions, and every 40 s all cables are cut at once for 5 s: a reconnect storm, spread by each "
            "station's back-off (RetryBackOffWaitMinimum 2 s, RandomRange 5 s, doubling)",
            storm_every_s=40.0,
        ),
    )
}


@dataclass
class FleetOptions:
    count: int
    csms_url: str
    prefix: str = "FLEET"
    data_dir: Path | None = None  # None: a fresh directory under /tmp, removed afterwards unless kept
    scenario: str = "sessions"
    duration_s: float = 60.0
    ramp_s: float = 10.0
    password: str | None = None  # basic auth (security profile 1); None: profile 0
    token: str = "04FLEET0"  # the card every session presents (`{n}` is the station's number)
    charge_s: tuple[float, float] = (8.0, 20.0)
    pause_s: tuple[float, float] = (2.0, 6.0)
    meter_interval_s: int = 5
    workers: int = 4  # storage threads shared by all stations
    # Page cache and prepared statements per SQLite connection: 16 KiB and 8 statements cost 40 KiB more per
    # station (measured with 200 stations) than 8 KiB and 4, which still hold an append's four statements; what
    # the small cache misses is read from the kernel's page cache, not from the disk.
    cache_kib: int = 8
    cached_statements: int = 4
    summary_every_s: float = 5.0
    drain_s: float = 60.0  # after the duration: how long to wait for the journals to empty
    seed: int = 0
    log_level: str = "ERROR"
    log_path: Path | None = None


@dataclass
class Member:
    """One virtual station and what the fleet counted about it."""

    index: int
    station_id: str
    config: Config
    hardware: SimHardware
    station: Station
    booted_at: float | None = None  # trio time of its first accepted boot
    sessions_started: int = 0
    sessions_done: int = 0
    pulls: int = 0
    errors: list[str] = field(default_factory=list)

    async def journal_counts(self) -> tuple[int, int, int]:
        """(journaled messages, of which not yet delivered, open transactions), read as a job on the station's
        storage worker (the one connection a station has)."""
        storage = getattr(self.station, "storage", None)
        if storage is None:
            return 0, 0, 0

        def count() -> tuple[int, int, int]:
            row = storage.writer.execute(
                "SELECT count(*), count(*) FILTER (WHERE outcome IS NULL),"
                " (SELECT count(*) FROM transactions WHERE state = 'open') FROM outbox"
            ).fetchone()
            return int(row[0]), int(row[1]), int(row[2])

        try:
            return await storage.run(count)
        except Exception:  # closed, or not migrated yet
            return 0, 0, 0


# --- the cable rack ----------------------------------------------------------------------------------------------


class Cables:
    """An in-process TCP relay between the stations and the CSMS, one cable per station id.

    A cable that is out (pulled, or a storm) closes the station's connection and refuses its attempts (the TCP
    connection is accepted and closed during the WebSocket handshake) until it is back in.
    """

    def __init__(self, upstream_host: str, upstream_port: int) -> None:
        self.upstream = (upstream_host, upstream_port)
        self.port = 0
        self._scopes: dict[str, set[trio.CancelScope]] = {}
        self._out_until: dict[str, float] = {}
        self._all_out_until = -math.inf
        self.refused = 0
        self.connections = 0

    async def serve(self, *, task_status: trio.TaskStatus[int] = trio.TASK_STATUS_IGNORED) -> None:
        listeners = await trio.open_tcp_listeners(0, host="127.0.0.1", backlog=4096)
        self.port = listeners[0].socket.getsockname()[1]
        task_status.started(self.port)
        await trio.serve_listeners(self._handle, listeners)

    def out(self, station_id: str) -> bool:
        now = trio.current_time()
        return now < self._all_out_until or now < self._out_until.get(station_id, -math.inf)

    def pull(self, station_id: str, for_s: float) -> None:
        self._out_until[station_id] = trio.current_time() + for_s
        for scope in self._scopes.get(station_id, ()):
            scope.cancel()

    def storm(self, for_s: float) -> None:
        self._all_out_until = trio.current_time() + for_s
        for scopes in self._scopes.values():
            for scope in scopes:
                scope.cancel()

    async def _handle(self, client: trio.SocketStream) -> None:
        async with client:
            head = b""
            with trio.move_on_after(_REQUEST_LINE_TIMEOUT):
                while b"\r\n" not in head and len(head) < 8192:
                    chunk = await client.receive_some(_CHUNK)
                    if not chunk:
                        return
                    head += chunk
            line = head.split(b"\r\n", 1)[0].decode("latin-1").split(" ")
            if len(line) < 2:
                return
            station_id = line[1].split("?", 1)[0].rstrip("/").rsplit("/", 1)[-1]
            if self.out(station_id):
                self.refused += 1
                return
            try:
                upstream = await trio.open_tcp_stream(*self.upstream)
            except OSError:
                return
            self.connections += 1
            async with upstream:
                await upstream.send_all(head)
                with trio.CancelScope() as scope:
                    self._scopes.setdefault(station_id, set()).add(scope)
                    try:
                        async with trio.open_nursery() as nursery:
                            nursery.start_soon(_pipe, client, upstream, nursery.cancel_scope)
                            nursery.start_soon(_pipe, upstream, client, nursery.cancel_scope)
                    finally:
                        self._scopes[station_id].discard(scope)


async def _pipe(source: trio.SocketStream, sink: trio.SocketStream, done: trio.CancelScope) -> None:
    with contextlib.suppress(trio.BrokenResourceError, trio.ClosedResourceError):
        while data := await source.receive_some(_CHUNK):
            await sink.send_all(data)
    done.cancel()


# --- the fleet ---------------------------------------------------------------------------------------------------


def rss_kib() -> int:
    """This process's resident set (VmRSS), KiB."""
    return _status_kib("VmRSS")


def peak_rss_kib() -> int:
    return _status_kib("VmHWM")


def _status_kib(key: str) -> int:
    with open("/proc/self/status", encoding="ascii") as status:
        for line in status:
            if line.startswith(key + ":"):
                return int(line.split()[1])
    return 0


class Fleet:
    def __init__(self, options: FleetOptions, out: TextIO | None = None) -> None:
        if options.scenario not in SCENARIOS:
            raise ValueError(f"unknown scenario {options.scenario!r} (known: {', '.join(SCENARIOS)})")
        if options.count < 1:
            raise ValueError("count must be at least 1")
        self.options = options
        self.scenario = SCENARIOS[options.scenario]
        self.out = out
        self.rng = random.Random(options.seed)
        self.members: list[Member] = []
        self.workers = [StorageWorker(f"fleet-storage-{i}") for i in range(max(1, options.workers))]
        self.cables: Cables | None = None
        self.finishing = trio.Event()
        self.stopping = False
        self.started_at = 0.0
        self.rss_before_kib = 0
        self.report: dict[str, Any] = {}
        self._last_delivered = 0
        self._last_at = 0.0

    # --- building ----------------------------------------------------------------------------------------

    def _config(self, index: int, data_dir: Path, url: str) -> Config:
        o = self.options
        station_id = f"{o.prefix}{index + 1:04d}"
        variables = {
            "OCPPCommCtrlr.RetryBackOffWaitMinimum": 2,
            "OCPPCommCtrlr.RetryBackOffRandomRange": 5,
            "OCPPCommCtrlr.RetryBackOffRepeatTimes": 3,
            "OCPPCommCtrlr.WebSocketPingInterval": 0,
            "OCPPCommCtrlr.MessageTimeout[Default]": 30,
            "SampledDataCtrlr.TxUpdatedInterval": o.meter_interval_s,
        }
        text = config_text(
            data_dir / station_id,
            url,
            station_id=station_id,
            profile=1 if o.password else 0,
            password=o.password,
            variables=variables,
            extra="[[evse]]\nid = 1\nphases = 3\nmax_current_a = 32\n",
        )
        return parse(text, source=f"fleet {station_id}")

    def _member(self, index: int, data_dir: Path, url: str) -> Member:
        config = self._config(index, data_dir, url)
        hardware = make_hardware(config)
        assert isinstance(hardware, SimHardware)
        station = Station(
            config,
            hardware,
            storage_worker=self.workers[index % len(self.workers)],
            cache_kib=self.options.cache_kib,
            cached_statements=self.options.cached_statements,
        )
        return Member(index, config.station.id, config, hardware, station)

    # --- running -----------------------------------------------------------------------------------------

    async def run(self, data_dir: Path) -> dict[str, Any]:
        """Run the scenario for the duration, let the journals drain, stop every station, verify every journal."""
        self.rss_before_kib = rss_kib()
        for worker in self.workers:
            worker.start()
        try:
            return await self._run(data_dir)
        finally:
            for worker in self.workers:
                worker.stop()

    async def _run(self, data_dir: Path) -> dict[str, Any]:
        o = self.options
        target = urlsplit(o.csms_url)
        async with trio.open_nursery() as root:
            url = o.csms_url
            if self.scenario.pull_every_s or self.scenario.storm_every_s:
                # Only a scenario that pulls cables needs the rack: it costs every station a relayed connection
                # (two more sockets and three tasks) and the CPU to copy each frame once more.
                if target.scheme != "ws":
                    raise ValueError("cable pulls and storms need a ws:// CSMS (the cable rack relays plain TCP)")
                self.cables = Cables(target.hostname or "127.0.0.1", target.port or 80)
                port = await root.start(self.cables.serve)
                url = f"ws://127.0.0.1:{port}{target.path}"
            # Every station compiles the schemas at boot; the registry is the process's, so compile it once here,
            # or a hundred stations booting together would each compile the same schemas in its own thread.
            await trio.to_thread.run_sync(default_registry().compile_all)
            self.members = [self._member(i, data_dir, url) for i in range(o.count)]
            self.started_at = trio.current_time()
            self._last_at = self.started_at
            root.start_soon(self._summaries)
            if self.scenario.storm_every_s:
                root.start_soon(self._storms)
            async with trio.open_nursery() as stations:
                async with trio.open_nursery() as drivers:
                    for member in self.members:
                        drivers.start_soon(self._life, member, stations)
                    await trio.sleep(o.duration_s)
                    self.finishing.set()  # drivers finish their session (unplug) and return
                    self._line("duration over: finishing sessions")
                drained = await self._drain()
                self._line(f"journals {'drained' if drained else 'NOT drained'}; stopping the stations")
                stopped_at = trio.current_time()
                self.stopping = True
                limiter = trio.CapacityLimiter(STOPPING_AT_ONCE)

                async def stop(station: Station) -> None:
                    async with limiter:
                        await station.stop()

                async with trio.open_nursery() as stopping:
                    for member in self.members:
                        if getattr(member.station, "_root", None) is not None:
                            stopping.start_soon(stop, member.station)
                stations.cancel_scope.cancel()
            root.cancel_scope.cancel()
        self.report = await trio.to_thread.run_sync(self._final_report, trio.current_time() - stopped_at)
        return self.report

    async def _life(self, member: Member, stations: trio.Nursery) -> None:
        """Boot at this station's point of the ramp, then play the scenario until the fleet finishes."""
        o = self.options
        delay = o.ramp_s * member.index / o.count
        with trio.move_on_after(delay):
            await self.finishing.wait()
        if self.finishing.is_set():
            return
        logsetup.separate_logs()  # the station's tasks start from this one: its log file gets only its records
        try:
            await stations.start(member.station.run)
        except Exception as exc:
            member.errors.append(f"start: {exc!r}")
            log.error("station %s did not start: %r", member.station_id, exc)
            return
        link = member.station.link
        async with trio.open_nursery() as nursery:
            nursery.start_soon(self._watch_boot, member)
            if self.scenario.pull_every_s and self.cables is not None:
                nursery.start_soon(self._pulls, member)
            if self.scenario.sessions:
                await link.state.wait_until(lambda _: link.online)
                rng = random.Random(f"{o.seed}/{member.index}")
                await self._pause(rng.uniform(0, o.pause_s[1]))
                while not self.finishing.is_set():
                    await self._session(member, rng)
                    await self._pause(rng.uniform(*o.pause_s))
            else:
                await self.finishing.wait()
            nursery.cancel_scope.cancel()

    async def _watch_boot(self, member: Member) -> None:
        link = member.station.link
        await link.state.wait_until(lambda _: link.online)
        member.booted_at = trio.current_time()

    async def _pause(self, seconds: float) -> None:
        with trio.move_on_after(seconds):
            await self.finishing.wait()

    async def _session(self, member: Member, rng: random.Random) -> None:
        """One charging session, as a driver would have it: plug, card, charge, unplug (always, also when the
        fleet finishes meanwhile, so that every transaction ends)."""
        o, hw = self.options, member.hardware
        member.sessions_started += 1
        await hw.plug(1)
        try:
            await trio.sleep(0.2)
            await hw.tap(o.token.replace("{n}", str(member.index + 1)), 1)
            # A driver waits for the display's verdict before going on. Without this, a station far behind (a
            # thousand on two cores) handled the card only after the scripted unplug, as if presented before
            # plugging in: a transaction for nobody that only EVConnectionTimeOut ends, after the drain.
            runner = member.station.runners[1]
            with trio.move_on_after(CARD_VERDICT_S):
                await runner.changed.wait_until(lambda _: runner.state.authorization is not None)
            await trio.sleep(0.5)
            await hw.charge(1, rng.choice([7400.0, 11000.0, 22000.0]))
            await self._pause(rng.uniform(*o.charge_s))
        finally:
            with trio.CancelScope(shield=True):
                await hw.unplug(1)
        member.sessions_done += 1

    async def _pulls(self, member: Member) -> None:
        assert self.cables is not None and self.scenario.pull_every_s is not None
        rng = random.Random(f"pulls/{self.options.seed}/{member.index}")
        while True:
            await trio.sleep(rng.expovariate(1.0 / self.scenario.pull_every_s))
            member.pulls += 1
            self.cables.pull(member.station_id, rng.uniform(*self.scenario.pull_for_s))

    async def _storms(self) -> None:
        assert self.cables is not None and self.scenario.storm_every_s is not None
        storms = 0
        while True:
            await trio.sleep(self.scenario.storm_every_s)
            storms += 1
            self._line(f"storm {storms}: every cable out for {self.scenario.storm_for_s:g} s")
            self.cables.storm(self.scenario.storm_for_s)

    async def _drain(self) -> bool:
        """Wait (at most drain_s) until every running station is online with nothing left to deliver."""
        with trio.move_on_after(self.options.drain_s):
            while True:
                stats = await self._stats()
                if not stats["pending"] and not stats["open_transactions"] and stats["connected"] == stats["running"]:
                    return True
                await trio.sleep(0.5)
        return False

    # --- reporting -----------------------------------------------------------------------------------------

    async def _stats(self) -> dict[str, Any]:
        live = [m for m in self.members if getattr(m.station, "_root", None) is not None]
        counts: list[tuple[int, int, int]] = []

        async def count(member: Member) -> None:
            counts.append(await member.journal_counts())

        # All at once: the shared storage workers count side by side, and a summary of a thousand busy
        # stations does not wait for a thousand jobs one after another (minutes at 1,000 charging stations).
        async with trio.open_nursery() as nursery:
            for m in live:
                nursery.start_soon(count, m)
        running = len(live)
        connected = sum(m.station.link.online for m in live)
        reconnects = sum(max(m.station.link.connections - 1, 0) for m in live)
        journaled = sum(total for total, _, _ in counts)
        pending = sum(waiting for _, waiting, _ in counts)
        open_tx = sum(opened for _, _, opened in counts)
        return {
            "running": running,
            "connected": connected,
            "journaled": journaled,
            "pending": pending,
            "delivered": journaled - pending,
            "reconnects": reconnects,
            "open_transactions": open_tx,
            "sessions": sum(m.sessions_done for m in self.members),
        }

    async def _summaries(self) -> None:
        """A summary line every few seconds, until the stations are being stopped (their journals close)."""
        while not self.stopping:
            await trio.sleep(self.options.summary_every_s)
            if self.stopping:
                return
            s = await self._stats()
            now = trio.current_time()
            rate = (s["delivered"] - self._last_delivered) / max(now - self._last_at, 1e-9)
            self._last_delivered, self._last_at = s["delivered"], now
            self._line(
                f"t={now - self.started_at:6.1f}s connected {s['connected']}/{self.options.count}"
                f" events/s {rate:7.1f} acknowledged {s['delivered']} pending {s['pending']}"
                f" sessions {s['sessions']} reconnects {s['reconnects']} rss {rss_kib() / 1024:.0f} MB"
            )

    def _line(self, text: str) -> None:
        if self.out is not None:
            print(f"fleet: {text}", file=self.out, flush=True)

    def _final_report(self, stop_s: float) -> dict[str, Any]:
        """Counts, boot times, and every station's journal verified (read-only, after the stations stopped)."""
        o = self.options
        violations: dict[str, list[str]] = {}
        journaled = pending = 0
        for m in self.members:
            path = m.config.station.data_dir / DB_NAME
            if not path.exists():
                violations[m.station_id] = ["no journal (the station never started)"]
                continue
            conn = open_read_only(path)
            try:
                found = [str(v) for v in verify(conn)]
                row = conn.execute("SELECT count(*), count(*) FILTER (WHERE outcome IS NULL) FROM outbox").fetchone()
            finally:
                conn.close()
            journaled += row[0]
            pending += row[1]
            if found:
                violations[m.station_id] = found
        boots = sorted(m.booted_at - self.started_at for m in self.members if m.booted_at is not None)
        elapsed = o.duration_s
        return {
            "stations": o.count,
            "scenario": o.scenario,
            "booted": len(boots),
            "last_boot_s": round(boots[-1], 2) if boots else None,
            "sessions_started": sum(m.sessions_started for m in self.members),
            "sessions_done": sum(m.sessions_done for m in self.members),
            "events_journaled": journaled,
            "events_acknowledged": journaled - pending,
            "events_pending": pending,
            "events_per_s": round((journaled - pending) / elapsed, 1) if elapsed > 0 else None,
            "reconnects": sum(max(m.station.link.connections - 1, 0) for m in self.members if m.booted_at),
            "cable_pulls": sum(m.pulls for m in self.members),
            "refused_attempts": self.cables.refused if self.cables else 0,
            "journals_verified": o.count - len(violations),
            "violations": violations,
            "errors": {m.station_id: m.errors for m in self.members if m.errors},
            "stop_s": round(stop_s, 2),
            "rss_mb": round(rss_kib() / 1024, 1),
            "peak_rss_mb": round(peak_rss_kib() / 1024, 1),
            "rss_before_mb": round(self.rss_before_kib / 1024, 1),
        }


def render(report: dict[str, Any]) -> str:
    """The final report for people: one `key: value` line each, violations listed after."""
    lines = ["fleet report"]
    for key, value in report.items():
        if key in ("violations", "errors"):
            continue
        lines.append(f"  {key}: {value}")
    for station_id, found in report["violations"].items():
        for text in found:
            lines.append(f"  VIOLATION {station_id}: {text}")
    for station_id, errors in report["errors"].items():
        for text in errors:
            lines.append(f"  ERROR {station_id}: {text}")
    return "\n".join(lines)


def ok(report: dict[str, Any]) -> bool:
    """Every station booted, every journal verified clean and drained."""
    return (
        report["booted"] == report["stations"]
        and not report["violations"]
        and not report["errors"]
        and report["events_pending"] == 0
    )


#: sqlite3_config's SQLITE_CONFIG_PAGECACHE.
_SQLITE_CONFIG_PAGECACHE = 7


def no_page_cache_bulk() -> bool:
    """Have this process's SQLite allocate each connection's cache pages one by one, not 20 at once.

    A connection reserves a bulk of 20 pages (~84 KiB) when it reads its first page, and keeps it until it
    closes. That first read is the schema, which even `PRAGMA cache_size` needs before it can cap the cache, so
    a capped cache (`cache_kib`) still holds the whole bulk: measured per station (then with two connections),
    262 KiB of SQLite memory with the bulk, 110 KiB without. `sqlite3_config` works only while SQLite is shut
    down, so this shuts it down and re-initialises it — safe only while the process has no connection open,
    which is checked (SQLite's own count of its memory in use is then 0); False when that is not so, or when the
    library is not reachable (nothing changes).
    """
    import _sqlite3

    try:
        lib = ctypes.CDLL(_sqlite3.__file__)  # the SQLite the sqlite3 module uses, linked into it or beside it
        lib.sqlite3_memory_used.restype = ctypes.c_int64
        if lib.sqlite3_memory_used() != 0 or lib.sqlite3_shutdown() != 0:
            return False
        configured = lib.sqlite3_config(_SQLITE_CONFIG_PAGECACHE, ctypes.c_void_p(None), 0, 0) == 0
        return configured and lib.sqlite3_initialize() == 0
    except (OSError, AttributeError):
        return False


def run_fleet(options: FleetOptions, out: TextIO, *, keep: bool = False) -> int:
    """`appliance fleet`: exit 0 when every station booted and every journal verified clean, 1 otherwise."""
    # Two arenas, not one as for a single station: a fleet's storage threads allocate at the same time.
    memory.limit_malloc_arenas(2)
    no_page_cache_bulk()
    level = options.log_level.upper()
    logsetup.configure(level)
    if options.log_path is not None:
        handler = logging.FileHandler(options.log_path)
        handler.setFormatter(logsetup.LogfmtFormatter())
        root = logging.getLogger()
        root.handlers[:] = [handler]
    data_dir = options.data_dir
    fresh = data_dir is None
    if data_dir is None:
        data_dir = short_dir()
    fleet = Fleet(options, out)
    scenario = fleet.scenario
    print(
        f"fleet: {options.count} stations ({options.prefix}0001…) against {options.csms_url}, scenario"
        f" {scenario.name} ({scenario.text}), {options.duration_s:g} s, ramp {options.ramp_s:g} s, data in {data_dir}",
        file=out,
        flush=True,
    )
    started = time.monotonic()
    try:
        report = trio.run(fleet.run, data_dir)
    finally:
        if fresh and not keep:
            _remove(data_dir)
    report["wall_s"] = round(time.monotonic() - started, 1)
    print(render(report), file=out, flush=True)
    return 0 if ok(report) else 1


def _remove(path: Path) -> None:
    import shutil

    shutil.rmtree(path, ignore_errors=True)
