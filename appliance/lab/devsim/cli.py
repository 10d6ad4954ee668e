"""`appliance devsim reader | controller | meter | bench`: the bench's devices for people, without hardware.

Each command puts its device(s) on a pty (a symlink at the path given, e.g. `--port /tmp/bench/reader`) or on
`socket://127.0.0.1:PORT` (PORT 0: a free one), prints one JSON line saying where, and then reads commands,
one per line, from standard input (at its end it keeps running until SIGINT/SIGTERM). `bench` runs all three
on one simulated world and also prints the `[hardware.serial]` tables a station config needs. `help` lists
the commands; an unknown or malformed one is answered with an error line and changes nothing.
"""

from __future__ import annotations

import argparse
import json
import signal
import sys
import threading
from collections.abc import Callable
from pathlib import Path
from typing import Any

from appliance.hardware.base import EvseLayout
from appliance.hardware.serial.registers import BUILT_IN, RegisterMap
from appliance.lab.devsim.bench import Bench
from appliance.lab.devsim.devices import BoardSim, ReaderSim
from appliance.lab.devsim.endpoint import endpoint_for
from appliance.lab.devsim.meter import MeterBusSim
from appliance.lab.devsim.world import World

Commands = dict[str, Callable[..., object]]


def main(argv: list[str]) -> int:
    parser = argparse.ArgumentParser(prog="appliance devsim", description=__doc__.splitlines()[0])
    add_arguments(parser)
    return run(parser.parse_args(argv))


def add_arguments(parser: argparse.ArgumentParser) -> None:
    devices = parser.add_subparsers(dest="device", required=True)
    reader = devices.add_parser("reader", help="an RFID reader: type a card UID (hex) to present it")
    reader.add_argument("--port", required=True, help="pty symlink path or socket://HOST:PORT")
    controller = devices.add_parser("controller", help="a charge controller board (pilot, contactor, faults)")
    controller.add_argument("--port", required=True)
    controller.add_argument("--evses", type=int, default=2, help="EVSEs on the board (default 2)")
    meter = devices.add_parser("meter", help="Modbus RTU energy meters on one bus (pymodbus server)")
    meter.add_argument("--port", required=True)
    meter.add_argument(
        "--unit",
        action="append",
        metavar="UNIT:MAP",
        help=f"a meter, e.g. 1:sdm630 (maps: {', '.join(BUILT_IN)}); default 1:sdm630 2:b23",
    )
    bench = devices.add_parser("bench", help="reader, board and meters on one world, with the station config")
    bench.add_argument("--dir", type=Path, required=True, help="where the pty symlinks go")
    bench.add_argument("--transport", choices=("pty", "socket"), default="pty")


def _layouts(count: int) -> list[EvseLayout]:
    return [EvseLayout(i, phases=3 if i == 1 else 1) for i in range(1, count + 1)]


def _reader_commands(reader: ReaderSim) -> Commands:
    return {
        "present": reader.present,
        "hold": lambda uid, s: reader.hold(uid, float(s)),
        "garbage": lambda *words: reader.garbage(" ".join(words).encode() + b"\r\n"),
        "disconnect-reader": reader.disconnect,
        "reconnect-reader": reader.reconnect,
    }


def _board_commands(board: BoardSim) -> Commands:
    def evse(fn: Callable[..., object]) -> Callable[..., object]:
        return lambda e, *rest: fn(int(e), *rest)

    return {
        "plug": evse(board.plug),
        "unplug": evse(board.unplug),
        "suspend": evse(board.suspend),
        "charge": lambda e, w=None: board.charge(int(e), float(w) if w is not None else None),
        "fault": evse(board.fault),
        "clear": evse(board.clear),
        "select": evse(board.select),
        "pilot": evse(board.pilot),
        "weld": lambda e, on="1": board.weld(int(e), on == "1"),
        "silence": board.silence,
        "revive": board.revive,
        "babble": lambda n="6": board.babble(int(n)),
        "disconnect-board": board.disconnect,
        "reconnect-board": board.reconnect,
    }


def _meter_commands(meters: MeterBusSim) -> Commands:
    def load(unit: str, watts: str) -> None:
        evse_id = meters.units[int(unit)].evse_id
        meters.world.change(evse_id, lambda e: setattr(e, "load_w", float(watts)))

    return {
        "meter-load": load,
        "meter-silence": lambda u: meters.silence(int(u)),
        "meter-revive": lambda u: meters.silence(int(u), False),
        "meter-fail": lambda u: meters.fail(int(u)),
        "meter-heal": lambda u: meters.fail(int(u), False),
        "meter-shift": lambda u, n: meters.shift(int(u), int(n)),
        "disconnect-meters": meters.disconnect,
        "reconnect-meters": meters.reconnect,
    }


def run(args: argparse.Namespace) -> int:
    closers: list[Callable[[], None]] = []
    commands: Commands = {}
    where: dict[str, Any] = {}
    try:
        if args.device == "reader":
            reader = ReaderSim(endpoint_for(args.port))
            reader.start()
            closers.append(reader.close)
            commands = _reader_commands(reader)
            where = {"reader": reader.endpoint.url}
        elif args.device == "controller":
            world = World(_layouts(args.evses))
            board = BoardSim(endpoint_for(args.port), world)
            board.start()
            closers.append(board.close)
            commands = _board_commands(board)
            where = {"controller": board.endpoint.url}
        elif args.device == "meter":
            units: dict[int, tuple[int, RegisterMap]] = {}
            for spec in args.unit or ["1:sdm630", "2:b23"]:
                unit, _, name = spec.partition(":")
                if not unit.isdigit() or name not in BUILT_IN:
                    print(
                        f"devsim: --unit {spec!r}: expected UNIT:MAP with MAP one of {', '.join(BUILT_IN)}",
                        file=sys.stderr,
                    )
                    return 2
                units[int(unit)] = (len(units) + 1, BUILT_IN[name])
            meters = MeterBusSim(args.port, World(_layouts(len(units))), units).start()
            closers.append(meters.close)
            commands = _meter_commands(meters)
            where = {"meters": meters.url, "units": {u: m.name for u, (_, m) in units.items()}}
        else:
            bench = Bench(args.dir, transport=args.transport).start()
            closers.append(bench.close)
            commands = {
                **_reader_commands(bench.reader),
                **_board_commands(bench.board),
                **_meter_commands(bench.meters),
            }
            where = {
                "reader": bench.reader.endpoint.url,
                "controller": bench.board.endpoint.url,
                "meters": bench.meters.url,
                "config": bench.serial_toml(),
            }
        print(json.dumps({"ready": where}), flush=True)
        _serve(commands)
        return 0
    except (OSError, RuntimeError) as exc:
        print(f"devsim: {exc}", file=sys.stderr)
        return 1
    finally:
        for close in reversed(closers):
            close()


def _serve(commands: Commands) -> None:
    """Commands from stdin until its end, then wait for SIGINT/SIGTERM."""
    stop = threading.Event()
    for signum in (signal.SIGINT, signal.SIGTERM):
        signal.signal(signum, lambda *_: stop.set())

    def read_stdin() -> None:
        for line in sys.stdin:
            words = line.split()
            if not words:
                continue
            if words[0] == "help":
                print(json.dumps({"commands": sorted(commands)}), flush=True)
                continue
            if words[0] == "quit":
                break
            fn = commands.get(words[0])
            try:
                if fn is None:
                    raise ValueError(f"unknown command {words[0]!r} (try help)")
                fn(*words[1:])
                print(json.dumps({"ok": words}), flush=True)
            except (TypeError, ValueError, KeyError) as exc:
                print(json.dumps({"error": f"{' '.join(words)}: {exc}"}), flush=True)
        else:
            return
        stop.set()

    threading.Thread(target=read_stdin, name="devsim-stdin", daemon=True).start()
    while not stop.wait(0.5):
        pass
