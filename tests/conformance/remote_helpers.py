"""Shared steps of the Part 6 cases for reports (B07/B08), reset (B11/B12), network profiles (B09/B10), trigger
(F06), availability (G03/G04) and data transfer (P01).

Two ways to run the station, both against the real loopback CSMS:

* in-process (`station_up`, `incarnation`): fast, for protocol behaviour; a Reset ends the station's run as the
  process would before re-executing, and the next `incarnation` on the same data directory plays the new one.
  Teardown first lets the station drop its connection the way a reconnect does (`quiet_stop`): the harness's
  `Station.stop()` close handshake often waits out its whole 2 s timeout, which adds up over a hundred tests.
* as a real process (`station_proc`), for what only a process shows: a Reset re-executes the process
  (os.execv — same PID), the new incarnation connects again and boots with reason RemoteReset/ScheduledReset.
  The EV is driven with `appliance sim --config …` and the journal read with `appliance-journal --config …`.

`Driver` hides the difference, so the Part 6 reusable states (EnergyTransferStarted, StopAuthorized, …) are
written once for both.
"""

from __future__ import annotations

import contextlib
import json
import os
import sys
from collections.abc import AsyncIterator, Iterator
from datetime import datetime
from pathlib import Path
from typing import Any, Protocol

import pytest
import trio

from appliance.lab.csms import LoopbackCsms, StationCallError
from appliance.lab.process import StationProcess, config_text, station_process
from appliance.station import Station
from tests.conformance.helpers import CONNECTORS, STATION_ID, booted_station
from tests.harness import REPO, running_station

#: <Configured valid_idtoken_idtoken> / type: an RFID card the loopback CSMS accepts.
TOKEN = "04A1B2C3"
TOKEN_TYPE = "ISO14443"
WATTS = 11000
#: How long a process station may take to start (imports, schema compilation) and boot.
START_TIMEOUT = 25.0
#: How long a station Reset may take: journal drain, close handshake, re-exec, start, boot.
RESTART_TIMEOUT = 20.0
#: From "restarting the station" in the log to the new incarnation's first log line.
REEXEC_TIMEOUT = 8.0
#: Part 6 general pre-condition: AuthCtrlr.LocalPreAuthorize false (the CSMS is asked for every card).
AUTH_ONLINE = {"AuthCtrlr.LocalPreAuthorize": False}


# --- talking to the station ----------------------------------------------------------------------------------


async def call(csms: LoopbackCsms, action: str, payload: dict[str, Any], **kw: Any) -> dict[str, Any]:
    """A CSMS→station CALL (schema-validated both ways by the `ocpp` library); the CALLRESULT payload."""
    return await csms.trio.call(STATION_ID, action, payload, **kw)


async def call_error(csms: LoopbackCsms, action: str, payload: Any) -> str:
    """Send `payload` unvalidated and return the CALLERROR code the station answers with (fails otherwise)."""
    with pytest.raises(StationCallError) as error:
        await csms.trio.call(STATION_ID, action, payload, validate=False)
    return error.value.code


async def assert_still_running(csms: LoopbackCsms) -> None:
    """The station still answers on the same connection (a plain GetVariables)."""
    answer = await call(
        csms,
        "GetVariables",
        {
            "getVariableData": [
                {"component": {"name": "OCPPCommCtrlr"}, "variable": {"name": "HeartbeatInterval"}},
            ]
        },
    )
    assert answer["getVariableResult"][0]["attributeStatus"] == "Accepted", answer


def no_error(payload: dict[str, Any], *alternatives: str) -> bool:
    """Part 6's recurring "statusInfo is absent or statusInfo.reasonCode = NoError" (or an allowed code)."""
    info = payload.get("statusInfo")
    return info is None or info.get("reasonCode") in ("NoError", *alternatives)


def is_utc_timestamp(text: str) -> bool:
    try:
        datetime.fromisoformat(text.replace("Z", "+00:00"))
    except ValueError:
        return False
    return text.endswith("Z")


# --- in-process stations ----------------------------------------------------------------------------------------


@contextlib.asynccontextmanager
async def station_up(csms: LoopbackCsms, data_dir: Path, **config: Any) -> AsyncIterator[Station]:
    """An in-process station, Accepted, every connector reported and its start-up security event delivered
    (Reusable State Booted, idle), so that what a test sees afterwards is caused by the test; fast teardown."""
    mark = csms.mark()
    csms.refuse_connections(False)
    async with booted_station(csms, data_dir, **config) as station:
        await csms.trio.wait_action(STATION_ID, "SecurityEventNotification", 10, since=mark)
        try:
            yield station
        finally:
            await quiet_stop(csms, station)


async def quiet_stop(csms: LoopbackCsms, station: Station) -> None:
    """Drop the connection as a reconnect does (uncancelled close handshake), with the CSMS refusing the next
    attempt, so the harness's stop finds the station offline."""
    if station.restart_reason is not None or not csms.is_connected(STATION_ID):
        return
    csms.refuse_connections(True)
    station.link.reconnect("test teardown")
    with trio.move_on_after(5):
        await csms.trio.wait_disconnected(STATION_ID, 5)


@contextlib.asynccontextmanager
async def incarnation(csms: LoopbackCsms, config: Any, since: int | None = None) -> AsyncIterator[Station]:
    """One run of an in-process station on `config` (the same data directory every time): waits for its
    BootNotification and a StatusNotification per connector after frame `since` (default: now). A Reset ends
    the run by itself (the process would re-execute); leaving the block then only tidies up."""
    mark = csms.mark() if since is None else since
    csms.refuse_connections(False)
    async with running_station(config) as station:
        await wait_boot(csms, mark, START_TIMEOUT)
        await wait_all_reported(csms, boot_mark(csms, mark))
        try:
            yield station
        finally:
            await quiet_stop(csms, station)


# --- driving the EV: the same steps for an in-process station and a process --------------------------------


class Driver(Protocol):
    async def plug(self, evse_id: int) -> None: ...
    async def unplug(self, evse_id: int) -> None: ...
    async def tap(self, token: str, evse_id: int) -> None: ...
    async def charge(self, evse_id: int, watts: int = WATTS) -> None: ...


class HardwareDriver:
    """The in-process simulated hardware (`station.hardware`)."""

    def __init__(self, station: Station) -> None:
        self.hw: Any = station.hardware

    async def plug(self, evse_id: int) -> None:
        await self.hw.plug(evse_id)

    async def unplug(self, evse_id: int) -> None:
        await self.hw.unplug(evse_id)

    async def tap(self, token: str, evse_id: int) -> None:
        await self.hw.tap(token, evse_id=evse_id)

    async def charge(self, evse_id: int, watts: int = WATTS) -> None:
        await self.hw.charge(evse_id, watts=watts)


class SimCliDriver:
    """`python -m appliance sim --config … COMMAND` against a station process (CONTRACT's sim interface)."""

    def __init__(self, config_path: Path) -> None:
        self.config_path = config_path

    async def run(self, *args: str) -> dict[str, Any]:
        result = await trio.run_process(
            [sys.executable, "-m", "appliance", "sim", "--config", str(self.config_path), *args],
            capture_stdout=True,
            capture_stderr=True,
            check=False,
            cwd=REPO,
        )
        assert result.returncode == 0, (args, result.stdout, result.stderr)
        return json.loads(result.stdout)

    async def plug(self, evse_id: int) -> None:
        await self.run("plug", str(evse_id))

    async def unplug(self, evse_id: int) -> None:
        await self.run("unplug", str(evse_id))

    async def tap(self, token: str, evse_id: int) -> None:
        await self.run("tap", token, "--evse", str(evse_id))

    async def charge(self, evse_id: int, watts: int = WATTS) -> None:
        await self.run("charge", str(evse_id), "--watts", str(watts))


# --- transactions (Part 6 reusable states) ------------------------------------------------------------------


def tx_events(csms: LoopbackCsms, since: int = 0, tx_id: str | None = None) -> list[dict[str, Any]]:
    return [
        e
        for e in csms.actions(STATION_ID, "TransactionEvent", since)
        if tx_id is None or e["transactionInfo"]["transactionId"] == tx_id
    ]


async def wait_tx_event(csms: LoopbackCsms, since: int, what: str, timeout: float = 10, **match: Any) -> dict[str, Any]:
    """The first TransactionEvent after `since` whose fields match: eventType, triggerReason, tx_id,
    charging_state, stopped_reason (each optional)."""

    def ok(e: dict[str, Any]) -> bool:
        info = e["transactionInfo"]
        return all(
            (
                match.get("event_type") in (None, e["eventType"]),
                match.get("trigger") in (None, e["triggerReason"]),
                match.get("tx_id") in (None, info["transactionId"]),
                match.get("charging_state") in (None, info.get("chargingState")),
                match.get("stopped_reason") in (None, info.get("stoppedReason")),
            )
        )

    return await csms.trio.wait_for(
        lambda: next((e for e in tx_events(csms, since) if ok(e)), None), timeout, what=what
    )


async def energy_transfer_started(csms: LoopbackCsms, driver: Driver, evse_id: int, token: str = TOKEN) -> str:
    """Reusable State EnergyTransferStarted: plug (Started, CablePluggedIn), present the card (Authorize and an
    Updated with the idToken), the EV draws (chargingState Charging). Returns the transactionId."""
    mark = csms.mark()
    await driver.plug(evse_id)
    started = await csms.trio.wait_for(
        lambda: next(
            (
                e
                for e in tx_events(csms, mark)
                if e["eventType"] == "Started" and e.get("evse", {}).get("id") == evse_id
            ),
            None,
        ),
        10,
        what=f"TransactionEvent Started on EVSE {evse_id}",
    )
    tx_id = str(started["transactionInfo"]["transactionId"])
    await driver.tap(token, evse_id)
    await wait_tx_event(csms, mark, "Authorized", trigger="Authorized", tx_id=tx_id)
    await driver.charge(evse_id)
    await wait_tx_event(csms, mark, "Charging", tx_id=tx_id, charging_state="Charging")
    return tx_id


async def stop_authorized(
    csms: LoopbackCsms, driver: Driver, evse_id: int, tx_id: str, token: str = TOKEN
) -> dict[str, Any]:
    """Reusable State StopAuthorized (local): present the same card. With TxStopPoint Authorized (this
    station's default EVConnected,Authorized) the transaction ends here; returns its Ended event."""
    mark = csms.mark()
    await driver.tap(token, evse_id)
    return await wait_tx_event(csms, mark, f"Ended of {tx_id}", event_type="Ended", tx_id=tx_id)


# --- StatusNotification --------------------------------------------------------------------------------------


def statuses(csms: LoopbackCsms, since: int = 0) -> list[dict[str, Any]]:
    return csms.actions(STATION_ID, "StatusNotification", since)


def last_status(csms: LoopbackCsms, since: int = 0) -> dict[tuple[int, int], str]:
    """The last connectorStatus reported per (evseId, connectorId) after frame `since`."""
    result: dict[tuple[int, int], str] = {}
    for p in statuses(csms, since):
        result[(p["evseId"], p["connectorId"])] = p["connectorStatus"]
    return result


async def wait_status(
    csms: LoopbackCsms, since: int, evse_id: int, status: str, connector_id: int = 1, timeout: float = 10
) -> dict[str, Any]:
    def find() -> dict[str, Any] | None:
        return next(
            (
                p
                for p in statuses(csms, since)
                if (p["evseId"], p["connectorId"], p["connectorStatus"]) == (evse_id, connector_id, status)
            ),
            None,
        )

    return await csms.trio.wait_for(find, timeout, what=f"StatusNotification {status} for EVSE {evse_id}")


async def wait_all_reported(csms: LoopbackCsms, since: int, timeout: float = 10) -> dict[tuple[int, int], str]:
    """Post-scenario validation "a message to report the state of a connector has been received for all
    connectors": waits for one StatusNotification per connector after `since`; the last status of each."""
    await csms.trio.wait_for(
        lambda: set(CONNECTORS) <= set(last_status(csms, since)),
        timeout,
        what="a StatusNotification for every connector",
    )
    return last_status(csms, since)


# --- station processes ------------------------------------------------------------------------------------------


def write_config(data_dir: Path, url: str, **kwargs: Any) -> Path:
    path = data_dir / "station.toml"
    path.write_text(config_text(data_dir, url, **kwargs))
    return path


@contextlib.contextmanager
def station_proc(config_path: Path) -> Iterator[StationProcess]:
    """`appliance run --config …` as a child process; SIGKILLed at the end if still running."""
    with station_process(config_path, config_path.parent / "station.log") as proc:
        yield proc


async def stop_proc(proc: StationProcess) -> int:
    """SIGTERM and wait (in a thread: the process takes a moment to close its connection)."""
    return await trio.to_thread.run_sync(proc.stop)


def incarnations(proc: StationProcess) -> int:
    """How many times the process has started its station so far (one log line per start)."""
    return proc.log().count("simulated hardware ready")


async def wait_reexec(proc: StationProcess, before: int, timeout: float = RESTART_TIMEOUT) -> None:
    """After a Reset: the process logs that it restarts, then re-executes itself (a new incarnation starts)
    within a few seconds. Fails fast when the restart is announced but the process never comes back."""
    with trio.fail_after(timeout):
        while "restarting the station" not in proc.log()[-20000:]:  # noqa: ASYNC110 - polling a log file
            await trio.sleep(0.05)
    with trio.move_on_after(REEXEC_TIMEOUT):
        while incarnations(proc) <= before:
            assert proc.proc is not None and proc.proc.poll() is None, "the station process exited"
            await trio.sleep(0.05)
    assert incarnations(proc) > before, f"no new incarnation {REEXEC_TIMEOUT:g} s after the restart was announced"


async def wait_boot(csms: LoopbackCsms, since: int, timeout: float = RESTART_TIMEOUT) -> dict[str, Any]:
    """The first BootNotification after frame `since` (the CSMS answers Accepted)."""
    [boot, *_] = await csms.trio.wait_action(STATION_ID, "BootNotification", timeout, since=since)
    return boot


def boot_mark(csms: LoopbackCsms, since: int) -> int:
    """The frame index of the first BootNotification after `since` (to look at what came after it)."""
    for frame in csms.frames_snapshot(STATION_ID, since):
        if frame.direction == "in" and frame.is_call and frame.action == "BootNotification":
            return frame.index
    raise AssertionError("no BootNotification")


async def journal(config_path: Path, *args: str) -> tuple[int, Any]:
    """`appliance-journal --config … ARGS --json`: exit code and the parsed JSON (a list for listings)."""
    result = await trio.run_process(
        [sys.executable, "-m", "appliance.journal.cli", "--config", str(config_path), *args, "--json"],
        capture_stdout=True,
        capture_stderr=True,
        check=False,
        cwd=REPO,
    )
    text = result.stdout.decode().strip()
    lines = [json.loads(line) for line in text.splitlines() if line.strip()]
    return result.returncode, (lines[0] if len(lines) == 1 and args[0] in ("verify", "summary") else lines)


def socket_owner(local_port: int) -> int | None:
    """The PID owning the (station-side) TCP socket bound to 127.0.0.1:`local_port`, from /proc (Linux)."""
    inodes: set[str] = set()
    for table in ("/proc/net/tcp", "/proc/net/tcp6"):
        with contextlib.suppress(OSError), open(table) as f:
            for line in f.readlines()[1:]:
                fields = line.split()
                if int(fields[1].rsplit(":", 1)[1], 16) == local_port:
                    inodes.add(fields[9])
    if not inodes:
        return None
    for pid in filter(str.isdigit, os.listdir("/proc")):
        with contextlib.suppress(OSError):
            for fd in os.listdir(f"/proc/{pid}/fd"):
                with contextlib.suppress(OSError):
                    target = os.readlink(f"/proc/{pid}/fd/{fd}")
                    if target.startswith("socket:[") and target[8:-1] in inodes:
                        return int(pid)
    return None


def assert_same_process_reconnected(csms: LoopbackCsms, proc: StationProcess, since_connection: int) -> None:
    """The process never exited, and the connection opened after the reset belongs to that very PID."""
    assert proc.proc is not None and proc.proc.poll() is None, "the station process exited"
    newer = [c for c in csms.connections_snapshot(STATION_ID) if c.connection_id > since_connection and c.is_open]
    assert newer, "no new connection after the reset"
    record = newer[-1]
    if sys.platform.startswith("linux") and record.remote is not None:
        assert socket_owner(int(record.remote[1])) == proc.proc.pid, "the new connection is not the station's PID"
    assert proc.log().count("restarting the station") >= 1, proc.log()[-2000:]


def last_connection_id(csms: LoopbackCsms) -> int:
    records = csms.connections_snapshot(STATION_ID)
    return records[-1].connection_id if records else 0


def security_events(csms: LoopbackCsms, since: int = 0) -> list[dict[str, Any]]:
    return csms.actions(STATION_ID, "SecurityEventNotification", since)
