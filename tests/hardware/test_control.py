"""The control socket and the `appliance sim` client, over real Unix sockets in a short temp directory.

The client is blocking, so it runs in a worker thread (`trio.to_thread.run_sync`) against a SimHardware
running in the test's nursery. These tests use real time: under autojump the clock would race ahead while a
client thread works, and the server's read timeout would fire.
"""

from __future__ import annotations

import argparse
import json
import math
import os
import shutil
import socket
import stat
import tempfile
from collections.abc import AsyncIterator, Iterator
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

import pytest
import trio
import trio.testing

from appliance.hardware.base import (
    CardPresented,
    DeviceFault,
    DeviceRecovered,
    EvseLayout,
    EVState,
    EVStateChanged,
    FaultCleared,
    FaultRaised,
    Plugged,
    StationSnapshot,
    Unplugged,
)
from appliance.hardware.sim import SimHardware, control, sim_cli
from appliance.hardware.sim.control import ControlSocketError


@pytest.fixture
def short_dir() -> Iterator[Path]:
    """A directory with a short path: AF_UNIX socket paths are limited to ~107 bytes."""
    path = Path(tempfile.mkdtemp(prefix="hw", dir="/tmp" if Path("/tmp").is_dir() else None))
    yield path
    shutil.rmtree(path, ignore_errors=True)


def parser() -> argparse.ArgumentParser:
    result = argparse.ArgumentParser(prog="appliance sim")
    sim_cli.add_arguments(result)
    return result


class Station:
    """A running SimHardware plus the events it delivered (as a station would consume them)."""

    def __init__(self, hw: SimHardware, capsys: pytest.CaptureFixture[str]) -> None:
        self.hw = hw
        self.path = hw.socket_path
        self.events: list[object] = []
        self._capsys = capsys

    async def cli(self, *argv: str, path: Path | None = None) -> tuple[int, Any, str]:
        """Run `appliance sim ARGV` in a thread: (exit code, parsed stdout JSON or None, stderr)."""
        args = parser().parse_args(list(argv))
        self._capsys.readouterr()
        code = await trio.to_thread.run_sync(sim_cli.run, path or self.path, args)
        out, err = self._capsys.readouterr()
        lines = out.splitlines()
        assert len(lines) <= 1, out  # exactly one JSON object, on one line
        return code, json.loads(lines[0]) if lines else None, err

    async def settle(self) -> None:
        """Let the consumer task pick up what was sent."""
        await trio.testing.wait_all_tasks_blocked()


@asynccontextmanager
async def station(
    directory: Path, capsys: pytest.CaptureFixture[str], *, consume: bool = True, **kwargs: Any
) -> AsyncIterator[Station]:
    hw = SimHardware([EvseLayout(1, phases=3), EvseLayout(2, phases=1)], directory / "sim.sock", **kwargs)
    result = Station(hw, capsys)

    async def consumer() -> None:
        async for event in hw.events:
            result.events.append(event)

    async with trio.open_nursery() as nursery:
        await nursery.start(hw.run)
        if consume:
            nursery.start_soon(consumer)
        yield result
        nursery.cancel_scope.cancel()


# --------------------------------------------------------------------------------------- every command


async def test_every_command_prints_json_and_emits_its_event(
    short_dir: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    async with station(short_dir, capsys) as st:
        code, out, err = await st.cli("plug", "1")
        assert (code, err) == (0, "")
        assert out["ok"] is True and out["command"] == "plug" and out["event"] == "Plugged"
        assert out["evseId"] == 1 and out["evse"]["evState"] == "B" and out["evse"]["phases"] == 3

        code, out, _ = await st.cli("charge", "1", "--watts", "7400")
        assert code == 0 and out["evse"]["evState"] == "C" and out["evse"]["requestedW"] == 7400
        code, out, _ = await st.cli("suspend", "1")
        assert code == 0 and out["evse"]["evState"] == "B"
        code, out, _ = await st.cli("charge", "1")
        assert code == 0 and out["evse"]["requestedW"] is None
        code, out, _ = await st.cli("unplug", "1")
        assert code == 0 and out["evse"]["evState"] == "A"
        code, out, _ = await st.cli("tap", "04A2B3C4D5E6F7", "--evse", "2")
        assert code == 0 and out == {
            "ok": True,
            "command": "tap",
            "token": "04A2B3C4D5E6F7",
            "tokenType": "ISO14443",
            "evseId": 2,
            "event": "CardPresented",
        }
        code, out, _ = await st.cli("tap", "AABBCCDD")
        assert code == 0 and out["evseId"] is None
        code, out, _ = await st.cli("fault", "2", "GroundFailure")
        assert code == 0 and out["evse"]["fault"] == "GroundFailure"
        code, out, _ = await st.cli("clear", "2")
        assert code == 0 and out["evse"]["fault"] is None
        code, out, _ = await st.cli("fault", "2")
        assert code == 0 and out["evse"]["fault"] == "SimulatedFault"
        code, out, _ = await st.cli("silence", "1")
        assert code == 0 and out["event"] == "DeviceFault" and out["evse"]["silent"] is True
        code, out, _ = await st.cli("plug", "1")
        assert code == 0 and out["event"] is None and out["evse"]["evState"] == "B"  # not heard by the station
        code, out, _ = await st.cli("revive", "1")
        assert code == 0 and out["event"] == "DeviceRecovered" and out["evse"]["silent"] is False
        await st.settle()
        assert st.events == [
            Plugged(1),
            EVStateChanged(1, EVState.C),
            EVStateChanged(1, EVState.B),
            EVStateChanged(1, EVState.C),
            Unplugged(1),
            CardPresented("04A2B3C4D5E6F7", 2),
            CardPresented("AABBCCDD", None),
            FaultRaised(2, "GroundFailure"),
            FaultCleared(2),
            FaultRaised(2, "SimulatedFault"),
            DeviceFault(1, "ChargeController", "no answer from the controller"),
            DeviceRecovered(1, "ChargeController"),
        ]


async def test_status_reports_every_evse(short_dir: Path, capsys: pytest.CaptureFixture[str]) -> None:
    async with station(short_dir, capsys) as st:
        code, out, _ = await st.cli("status")
        assert code == 0
        assert [e["evseId"] for e in out["evses"]] == [1, 2]
        first = out["evses"][0]
        assert first["connectorStatus"] == "Unknown"  # no status provider yet
        assert first["authorizedToken"] is None and first["transactionId"] is None
        for key in ("evState", "energyWh", "powerW", "fault", "offeredCurrentA", "phases", "indication"):
            assert key in first

        st.hw.set_status_provider(
            lambda: [StationSnapshot(1, "Occupied", "AABBCCDD", "tx-42"), StationSnapshot(2, "Available")]
        )
        await st.cli("plug", "1")
        await st.cli("charge", "1")
        st.hw.set_offered_current(1, 16)
        await trio.sleep(0.2)
        code, out, _ = await st.cli("status")
        first, second = out["evses"]
        assert (first["connectorStatus"], first["authorizedToken"], first["transactionId"]) == (
            "Occupied",
            "AABBCCDD",
            "tx-42",
        )
        assert first["evState"] == "C" and first["offeredCurrentA"] == 16
        assert first["powerW"] == pytest.approx(16 * 3 * 230, rel=0.011)
        assert second["connectorStatus"] == "Available" and second["powerW"] == 0


# --------------------------------------------------------------------------------------- refusals (exit 1)


@pytest.mark.parametrize(
    ("setup", "argv", "message"),
    [
        ([], ["plug", "3"], "unknown EVSE 3"),
        ([], ["plug", "0"], "unknown EVSE 0"),
        (
            [],
            [
                "status",
            ],
            None,
        ),
        (["plug", "1"], ["plug", "1"], "already has an EV"),
        ([], ["charge", "1"], "no EV plugged"),
        ([], ["suspend", "1"], "no EV plugged"),
        (["plug", "1"], ["suspend", "1"], "not asking for energy"),
        ([], ["unplug", "1"], "no EV plugged"),
        (["plug", "1"], ["charge", "1", "--watts", "0"], "watts"),
        (["plug", "1"], ["charge", "1", "--watts", "-5"], "watts"),
        (["plug", "1"], ["charge", "1", "--watts", "nan"], "watts"),
        (["plug", "1"], ["charge", "1", "--watts", "inf"], "watts"),
        (["plug", "1"], ["charge", "1", "--watts", "5e6"], "watts"),
        ([], ["tap", ""], "token"),
        ([], ["tap", "A" * 37], "token"),
        ([], ["tap", "AA BB"], "token"),
        ([], ["tap", "AABB", "--evse", "9"], "unknown EVSE 9"),
        (["fault", "1"], ["fault", "1"], "already faulted"),
        ([], ["fault", "1", "X" * 51], "fault code"),
        ([], ["clear", "1"], "no fault"),
        (["silence", "2"], ["silence", "2"], "already silent"),
        ([], ["revive", "2"], "not silent"),
        ([], ["silence", "9"], "unknown EVSE 9"),
    ],
)
async def test_refusals_exit_1_with_a_message(
    short_dir: Path,
    capsys: pytest.CaptureFixture[str],
    setup: list[str],
    argv: list[str],
    message: str | None,
) -> None:
    async with station(short_dir, capsys) as st:
        if setup:
            assert (await st.cli(*setup))[0] == 0
        await st.settle()
        events_before = list(st.events)
        code, out, err = await st.cli(*argv)
        if message is None:  # the control case: status is never refused
            assert code == 0
            return
        assert code == 1
        assert out["ok"] is False and message in out["error"]
        assert message in err and err.endswith("\n") and err.count("\n") == 1
        await st.settle()
        assert st.events == events_before


def test_usage_errors_are_argparse_exit_2() -> None:
    for argv in (
        ["plug"],
        ["plug", "one"],
        ["charge", "1", "--watts", "lots"],
        ["teleport", "1"],
        [],
        ["silence"],
        ["revive", "x"],
    ):
        with pytest.raises(SystemExit) as exc:
            parser().parse_args(argv)
        assert exc.value.code == 2


def test_requests_built_from_the_command_line() -> None:
    def req(*argv: str) -> dict[str, Any]:
        return sim_cli.build_request(parser().parse_args(list(argv)))

    assert req("plug", "2") == {"command": "plug", "evse": 2}
    assert req("charge", "1", "--watts", "3700") == {"command": "charge", "evse": 1, "watts": 3700.0}
    assert req("charge", "1") == {"command": "charge", "evse": 1}
    assert req("tap", "CAFE") == {"command": "tap", "token": "CAFE", "evse": None}
    assert req("tap", "CAFE", "--evse", "1") == {"command": "tap", "token": "CAFE", "evse": 1}
    assert req("fault", "1") == {"command": "fault", "evse": 1}
    assert req("fault", "1", "OverVoltage") == {"command": "fault", "evse": 1, "code": "OverVoltage"}
    assert req("status") == {"command": "status"}
    assert req("silence", "2") == {"command": "silence", "evse": 2}
    assert req("revive", "2") == {"command": "revive", "evse": 2}
    assert parser().parse_args(["--timeout", "2.5", "status"]).timeout == 2.5


# ------------------------------------------------------------------------------- no station (exit 3/4)


async def test_missing_socket_exits_3(short_dir: Path, capsys: pytest.CaptureFixture[str]) -> None:
    args = parser().parse_args(["status"])
    code = await trio.to_thread.run_sync(sim_cli.run, short_dir / "nothing.sock", args)
    out, err = capsys.readouterr()
    assert (code, out) == (3, "")
    assert "no station socket" in err


async def test_stale_socket_exits_3(short_dir: Path, capsys: pytest.CaptureFixture[str]) -> None:
    path = short_dir / "stale.sock"
    with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as dead:
        dead.bind(str(path))  # bound, never listening, then gone: what a killed station leaves behind
    code = await trio.to_thread.run_sync(sim_cli.run, path, parser().parse_args(["plug", "1"]))
    out, err = capsys.readouterr()
    assert (code, out) == (3, "")
    assert "nothing is listening" in err


async def test_not_a_socket_exits_3(short_dir: Path, capsys: pytest.CaptureFixture[str]) -> None:
    path = short_dir / "file.sock"
    path.write_text("not a socket")
    code = await trio.to_thread.run_sync(sim_cli.run, path, parser().parse_args(["status"]))
    assert code == 3
    assert capsys.readouterr().err


async def test_silent_or_garbled_station_exits_4(short_dir: Path, capsys: pytest.CaptureFixture[str]) -> None:
    path = short_dir / "fake.sock"
    listener = trio.socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    await listener.bind(str(path))
    listener.listen(4)
    answers = [None, b"this is not json\n", b"[1, 2]\n", b""]

    async def answer_with(conn: trio.socket.SocketType, answer: bytes | None) -> None:
        with conn:
            await conn.recv(4096)
            if answer is None:
                await trio.sleep_forever()  # never answers
            await conn.send(answer)

    async def fake_station(nursery: trio.Nursery) -> None:
        for answer in answers:
            conn, _ = await listener.accept()
            nursery.start_soon(answer_with, conn, answer)

    async with trio.open_nursery() as nursery:
        nursery.start_soon(fake_station, nursery)
        for expected in ("did not answer within", "no valid answer", "without 'ok'", "no valid answer"):
            args = parser().parse_args(["--timeout", "0.3", "status"])
            code = await trio.to_thread.run_sync(sim_cli.run, path, args)
            out, err = capsys.readouterr()
            assert (code, out) == (4, "")
            assert expected in err
        nursery.cancel_scope.cancel()
    listener.close()


async def test_back_pressure_blocks_the_command_not_drops_it(
    short_dir: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    async with station(short_dir, capsys, consume=False, events_buffer=1) as st:
        assert (await st.cli("plug", "1"))[0] == 0  # fills the channel
        code, out, err = await st.cli("--timeout", "0.3", "plug", "2")
        assert code == 4 and out is None and "may still take effect" in err
        code, out, _ = await st.cli("status")  # status needs no event, so it still answers
        assert code == 0 and out["evses"][1]["evState"] == "B"
        assert await st.hw.events.receive() == Plugged(1)
        assert await st.hw.events.receive() == Plugged(2)  # delivered, late but not lost


# --------------------------------------------------------------------------------------- socket lifecycle


async def test_socket_is_private_and_removed_on_exit(short_dir: Path, capsys: pytest.CaptureFixture[str]) -> None:
    nested = short_dir / "var" / "cs"
    async with station(nested, capsys) as st:
        info = os.lstat(st.path)
        assert stat.S_ISSOCK(info.st_mode)
        assert stat.S_IMODE(info.st_mode) == 0o660
    assert not st.path.exists()
    assert (nested / "sim.meter.json").is_file()


async def test_socket_is_removed_when_cancelled_mid_request(short_dir: Path) -> None:
    hw = SimHardware([EvseLayout(1)], short_dir / "sim.sock", events_buffer=1)
    async with trio.open_nursery() as nursery:
        await nursery.start(hw.run)
        await hw.plug(1)
        client = await trio.open_unix_socket(str(hw.socket_path))
        await client.send_all(b'{"command": "charge", "evse": 1}\n')  # blocks: the channel is full
        await trio.testing.wait_all_tasks_blocked()
        nursery.cancel_scope.cancel()
    await client.aclose()
    assert not hw.socket_path.exists()


async def test_stale_socket_is_replaced(short_dir: Path, capsys: pytest.CaptureFixture[str]) -> None:
    path = short_dir / "sim.sock"
    with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as dead:
        dead.bind(str(path))
    async with station(short_dir, capsys) as st:
        assert (await st.cli("status"))[0] == 0


async def test_a_live_station_is_not_displaced(short_dir: Path, capsys: pytest.CaptureFixture[str]) -> None:
    async with station(short_dir, capsys) as st:
        intruder = SimHardware([EvseLayout(1)], st.path, state_dir=short_dir / "other")
        async with trio.open_nursery() as nursery:
            with pytest.raises(ControlSocketError, match="already listening"):
                await nursery.start(intruder.run)  # raw, not wrapped: the station can report it plainly
        assert (await st.cli("status"))[0] == 0  # the first one still serves


async def test_a_regular_file_in_the_way_is_left_alone(short_dir: Path) -> None:
    path = short_dir / "sim.sock"
    path.write_text("precious")
    hw = SimHardware([EvseLayout(1)], path)
    async with trio.open_nursery() as nursery:
        with pytest.raises(ControlSocketError, match="not a socket"):
            await nursery.start(hw.run)
    assert path.read_text() == "precious"


async def test_an_overlong_socket_path_is_a_clear_error(short_dir: Path) -> None:
    path = short_dir / ("x" * 120) / "sim.sock"
    hw = SimHardware([EvseLayout(1)], path, state_dir=short_dir)
    async with trio.open_nursery() as nursery:
        with pytest.raises(ControlSocketError, match="longer than 107 bytes"):
            await nursery.start(hw.run)


# ------------------------------------------------------------------------------- concurrency, protocol


async def test_concurrent_clients(short_dir: Path, capsys: pytest.CaptureFixture[str]) -> None:
    async with station(short_dir, capsys) as st:
        results: list[dict[str, Any]] = []

        async def client(request: dict[str, Any]) -> None:
            results.append(await trio.to_thread.run_sync(sim_cli.send_request, st.path, request, 5.0))

        async with trio.open_nursery() as nursery:
            for _ in range(60):
                nursery.start_soon(client, {"command": "status"})
            for evse in (1, 2):
                nursery.start_soon(client, {"command": "plug", "evse": evse})
                nursery.start_soon(client, {"command": "tap", "token": f"CAFE000{evse}"})
        assert len(results) == 64 and all(r["ok"] for r in results)
        await st.settle()
        assert sorted(map(repr, st.events)) == sorted(
            map(repr, [Plugged(1), Plugged(2), CardPresented("CAFE0001", None), CardPresented("CAFE0002", None)])
        )


async def test_a_silent_client_does_not_block_others(short_dir: Path, capsys: pytest.CaptureFixture[str]) -> None:
    async with station(short_dir, capsys) as st:
        idle = await trio.open_unix_socket(str(st.path))
        partial = await trio.open_unix_socket(str(st.path))
        await partial.send_all(b'{"command": "st')
        assert (await st.cli("status"))[0] == 0
        await idle.aclose()
        await partial.aclose()


async def raw(path: Path, payload: bytes) -> dict[str, Any]:
    stream = await trio.open_unix_socket(str(path))
    async with stream:
        await stream.send_all(payload)
        data = b""
        while not data.endswith(b"\n"):
            chunk = await stream.receive_some(65536)
            if not chunk:
                break
            data += chunk
    return json.loads(data)


@pytest.mark.parametrize(
    ("payload", "kind", "message"),
    [
        (b"hello\n", "badRequest", "not a JSON object"),
        (b"\xff\xfe\n", "badRequest", "not a JSON object"),
        (b"[1, 2]\n", "badRequest", "JSON object"),
        (b'{"command": "teleport"}\n', "badRequest", "unknown command"),
        (b'{"evse": 1}\n', "badRequest", "unknown command"),
        (b'{"command": "plug"}\n', "badRequest", "'evse' is required"),
        (b'{"command": "plug", "evse": "1"}\n', "badRequest", "integer"),
        (b'{"command": "plug", "evse": true}\n', "badRequest", "integer"),
        (b'{"command": "charge", "evse": 1, "watts": "fast"}\n', "badRequest", "number"),
        (b'{"command": "tap"}\n', "badRequest", "'token' is required"),
        (b'{"command": "tap", "token": 1234}\n', "badRequest", "string"),
        (b'{"command": "fault", "evse": 1, "code": 7}\n', "badRequest", "string"),
        (b'{"command": "unplug", "evse": 1}\n', "refused", "no EV plugged"),
        (b'{"command": "plug", "evse": 1, "pad": "' + b"x" * 5000 + b'"}\n', "badRequest", "longer than"),
    ],
)
async def test_malformed_requests_get_error_responses(
    short_dir: Path, capsys: pytest.CaptureFixture[str], payload: bytes, kind: str, message: str
) -> None:
    async with station(short_dir, capsys) as st:
        response = await raw(st.path, payload)
        assert response["ok"] is False
        assert response["errorKind"] == kind
        assert message in response["error"]
        assert (await st.cli("status"))[0] == 0  # the station is still fine


async def test_request_without_newline_is_answered_at_eof(short_dir: Path, capsys: pytest.CaptureFixture[str]) -> None:
    async with station(short_dir, capsys) as st:
        stream = await trio.open_unix_socket(str(st.path))
        async with stream:
            await stream.send_all(b'{"command": "plug", "evse": 2}')
            await stream.send_eof()
            data = b""
            while chunk := await stream.receive_some(65536):
                data += chunk
        assert json.loads(data)["evse"]["evState"] == "B"


async def test_internal_errors_become_responses(
    short_dir: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    async with station(short_dir, capsys) as st:

        def broken() -> dict[str, Any]:
            raise ZeroDivisionError("oops")

        monkeypatch.setattr(st.hw, "status", broken)
        code, out, err = await st.cli("status")
        assert code == 1 and out["errorKind"] == "internal" and "oops" in err
        code, _, _ = await st.cli("plug", "1")
        assert code == 0


def test_responses_are_strict_json() -> None:
    encoded = control._encode({"ok": True, "x": [math.nan, 1.5], "y": {"z": math.inf}})
    assert json.loads(encoded) == {"ok": True, "x": [None, 1.5], "y": {"z": None}}


async def test_a_full_backlog_is_waited_for_then_exits_4(short_dir: Path, capsys: pytest.CaptureFixture[str]) -> None:
    path = short_dir / "busy.sock"
    with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as server:
        server.bind(str(path))
        server.listen(0)  # never accepts
        pending = []
        for _ in range(8):  # fill the backlog until connecting would fail with EAGAIN
            probe = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
            probe.setblocking(False)
            try:
                probe.connect(str(path))
            except BlockingIOError:
                probe.close()
                break
            pending.append(probe)
        args = parser().parse_args(["--timeout", "0.3", "status"])
        code = await trio.to_thread.run_sync(sim_cli.run, path, args)
        for probe in pending:
            probe.close()
    assert code == 4
    assert "did not accept the connection" in capsys.readouterr().err
