"""A real station in its own thread and Trio run, so synchronous Hypothesis tests can drive it input by input.

Hypothesis runs each example as a plain function call, and starting a station per example would spend the
whole time budget on boots. So the station lives across examples: one thread runs Trio with the station and
its real loopback CSMS (real WebSocket, real SQLite journal, simulated hardware), and each example hands it a
CALL through `trio.from_thread`. CSMS CALLs go to the station's dispatcher -- exactly what the RPC session
calls for every frame it decodes -- and the follow-up work a handler returns (NotifyReports, triggered
messages, a Reset's restart) runs in the station's own nursery, as the session would run it. A Reset ends the
station's run as it does in production (where the process then re-executes): the driver starts it again on the
same data directory, the way the re-executed process would.

Everything that would be a bug is collected rather than raised in the Trio thread, so one bad input does not
take the driver down: log records at ERROR or above from the station's loggers, follow-ups that crash, a CALL
that takes longer than `CALL_BOUND`.
"""

from __future__ import annotations

import contextlib
import logging
import os
import threading
from collections.abc import Awaitable, Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import trio

from appliance.config import parse
from appliance.hardware.registry import make_hardware
from appliance.lab.csms import LoopbackCsms
from appliance.lab.process import config_text
from appliance.link.rpc import CallFailed
from appliance.protocol import Call, CallError, CallResult, encode, new_message_id
from appliance.station import Station

STATION_ID = "CS001"
#: A CSMS CALL that is not answered within this many seconds counts as hung.
CALL_BOUND = 20.0
#: Frames the loopback CSMS keeps (it drops the older half when full).
RECORDED_FRAMES = 4000
#: Loggers of the test's peer, not of the station under test.
PEER_LOGGERS = ("appliance.lab.csms", "websockets", "ocpp")


class _Problems(logging.Handler):
    """Collects ERROR records of the station (a crash is logged with its traceback by the dispatcher or
    supervisor before anything else happens)."""

    def __init__(self) -> None:
        super().__init__(logging.ERROR)
        self.records: list[str] = []

    def emit(self, record: logging.LogRecord) -> None:
        if not record.name.startswith(PEER_LOGGERS):
            self.records.append(f"{record.name}: {record.getMessage()} {record.exc_text or ''}".strip())


@dataclass
class FuzzedStation:
    """The running station; `handle` is called from the test's thread."""

    data_dir: Path
    csms: LoopbackCsms
    variables: dict[str, Any] = field(default_factory=dict)
    calls: int = 0
    restarts: int = 0
    problems: list[str] = field(default_factory=list)
    station: Station | None = None
    _token: trio.lowlevel.TrioToken | None = None
    _ready: trio.Event | None = None
    _stop: trio.Event | None = None
    _nursery: trio.Nursery | None = None

    def handle(self, action: str, payload: Any) -> CallResult | CallError:
        """Hand one CSMS CALL to the station; the answer it would send (already checked to encode)."""
        assert self._token is not None
        self.calls += 1
        return trio.from_thread.run(self._handle, action, payload, trio_token=self._token)

    def handled(self) -> tuple[str, ...]:
        """The CSMS actions the station's blocks registered (tests/blocks/test_block_wiring.py pins the list)."""
        assert self.station is not None
        return tuple(sorted(self.station.dispatcher.handled))

    def run_in_station(self, fn: Callable[[Station], Awaitable[Any]]) -> Any:
        """Run `fn(station)` in the station's Trio run (waiting out a restart first)."""
        assert self._token is not None

        async def call() -> Any:
            station, _ = await self._current()
            with trio.fail_after(CALL_BOUND):
                return await fn(station)

        return trio.from_thread.run(call, trio_token=self._token)

    def task_count(self) -> int:
        """Trio tasks alive in the station's run: with the campaign's follow-ups done, a number that must not
        grow with the inputs (a task per input left behind is a leak, one gone missing a service lost)."""

        async def count(station: Station) -> int:
            def walk(task: trio.lowlevel.Task) -> int:
                return 1 + sum(walk(child) for nursery in task.child_nurseries for child in nursery.child_tasks)

            root = trio.lowlevel.current_root_task()
            assert root is not None  # None only outside a Trio run
            return walk(root)

        return int(self.run_in_station(count))

    async def _current(self) -> tuple[Station, trio.Nursery]:
        """The running station, waiting out a restart: a station that is resetting takes no more CALLs (its
        WebSocket is closing), so the next one goes to the restarted station, as the CSMS's next CALL would."""
        with trio.fail_after(CALL_BOUND * 2):
            while True:
                ready, station, nursery = self._ready, self.station, self._nursery
                if (
                    ready is not None
                    and ready.is_set()
                    and station is not None
                    and nursery is not None
                    and station.restart_reason is None
                ):
                    return station, nursery
                await trio.sleep(0.01)

    async def _handle(self, action: str, payload: Any) -> CallResult | CallError:
        call = Call(new_message_id(), action, payload)
        while True:
            station, nursery = await self._current()
            answers: list[tuple[CallResult | CallError, Any]] = []
            done = trio.Event()

            async def dispatch(
                station: Station = station,
                answers: list[Any] = answers,
                done: trio.Event = done,
            ) -> None:
                try:
                    answers.append(await station.dispatcher.handle(call))
                finally:
                    done.set()

            # In the station's nursery, like the session's dispatch task: a Reset cancels it with the station.
            try:
                nursery.start_soon(dispatch)
            except RuntimeError:
                continue  # that station has just ended
            with trio.move_on_after(CALL_BOUND) as scope:
                await done.wait()
            if answers:
                break
            if scope.cancelled_caught:
                self.problems.append(f"{action} not answered within {CALL_BOUND:g} s: {payload!r:.300}")
                raise TimeoutError(f"{action} hung")
            # Cancelled by a restart: the CSMS would send it again on the new connection.
        answer, reply = answers[0]
        encode(answer)  # what the session would put on the wire must serialise
        if reply is not None and reply.then is not None:
            with contextlib.suppress(RuntimeError):  # the station ended meanwhile: so does its follow-up
                nursery.start_soon(self._followup, action, reply.then)
        return answer

    async def _followup(self, action: str, then: Callable[[], Awaitable[None]]) -> None:
        try:
            await then()
        except CallFailed:
            pass  # the link went away meanwhile: what the session does too (logged at WARNING there)
        except Exception as exc:  # a crash is a finding, recorded for the test
            self.problems.append(f"follow-up of {action} crashed: {exc!r}")

    async def _main(self, started: threading.Event) -> None:
        self._token = trio.lowlevel.current_trio_token()
        self._stop = trio.Event()
        config = parse(config_text(self.data_dir, self.csms.url, variables=self.variables), source="fuzz")
        started.set()
        while not self._stop.is_set():
            self._ready = trio.Event()
            station = Station(config, make_hardware(config))
            async with trio.open_nursery() as nursery:

                async def run(
                    task_status: trio.TaskStatus[None], station: Station = station, nursery: trio.Nursery = nursery
                ) -> None:
                    await station.run(task_status=task_status)
                    nursery.cancel_scope.cancel()  # a Reset ended it (or we stopped it)

                await nursery.start(run)
                self.station, self._nursery = station, nursery
                self._ready.set()
                await self._stop.wait()
                await station.stop()
            if not self._stop.is_set():
                self.restarts += 1

    def stop(self) -> None:
        assert self._token is not None and self._stop is not None
        trio.from_thread.run_sync(self._stop.set, trio_token=self._token)


async def _started(station: Station) -> None:
    """Nothing: `run_in_station` returns once the station is up, which is what the caller waits for."""


def rss_bytes() -> int:
    """Resident set size of this process (Linux /proc), for the memory bound."""
    with open(f"/proc/{os.getpid()}/statm") as statm:
        return int(statm.read().split()[1]) * os.sysconf("SC_PAGE_SIZE")


@contextmanager
def fuzzed_station(data_dir: Path, variables: dict[str, Any] | None = None) -> Iterator[FuzzedStation]:
    """A booted station and its CSMS. The CSMS asks for no password, so a fuzzed BasicAuthPassword change does
    not lock the station out (that path has its own tests)."""
    problems = _Problems()
    logging.getLogger().addHandler(problems)
    # A bounded recording: the CSMS lives in this process, and its frames would otherwise count as the
    # station's memory (the final checks only look at frames after a mark).
    with LoopbackCsms(heartbeat_interval=300, max_frames=RECORDED_FRAMES) as csms:
        fuzz = FuzzedStation(data_dir, csms, variables or {})
        started = threading.Event()
        thread = threading.Thread(target=lambda: trio.run(fuzz._main, started), name="fuzzed-station")
        thread.start()
        try:
            started.wait(10)
            csms.wait_action(STATION_ID, "BootNotification", 15)
            fuzz.run_in_station(_started)
            yield fuzz
        finally:
            fuzz.stop()
            thread.join(30)
            logging.getLogger().removeHandler(problems)
            fuzz.problems += problems.records
