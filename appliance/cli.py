"""The `appliance` command: run, demo, sim (see ../shared/CONTRACT.md and the README).

Exit codes: 0 clean stop, 1 runtime failure the service manager should restart us for, 2 config or journal
error (restarting will not help: a person must fix something).
"""

from __future__ import annotations

import argparse
import logging
import os
import signal
import sys
from pathlib import Path

import trio

from appliance import __version__, logsetup
from appliance.config import Config, ConfigError, load
from appliance.journal.db import JournalError

log = logging.getLogger("appliance")

EXIT_OK, EXIT_FAILURE, EXIT_CONFIG = 0, 1, 2


def build_parser() -> argparse.ArgumentParser:
    from appliance.hardware import sim_cli

    parser = argparse.ArgumentParser(prog="appliance", description="OCPP 2.0.1 charging station firmware")
    parser.add_argument("--version", action="version", version=f"appliance {__version__}")
    commands = parser.add_subparsers(dest="command", required=True)

    run = commands.add_parser("run", help="run the station until SIGTERM/SIGINT")
    run.add_argument("--config", type=Path, help="TOML config (default: the embedded default config)")

    demo = commands.add_parser("demo", help="a loopback CSMS and a simulated station play a whole story")
    demo.add_argument("--keep", action="store_true", help="keep the demo's data directory afterwards")

    sim = commands.add_parser("sim", help="drive the simulated hardware of a running station")
    where = sim.add_mutually_exclusive_group()
    where.add_argument("--socket", type=Path, help="control socket path")
    where.add_argument("--config", type=Path, help="read the control socket path from this config")
    sim_cli.add_arguments(sim)
    return parser


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    if args.command == "run":
        return run_command(args.config)
    if args.command == "demo":
        from appliance.demo import run_demo

        return run_demo(keep=args.keep)
    return sim_command(args)


def _load_config(path: Path | None) -> Config | None:
    try:
        return load(path)
    except ConfigError as exc:
        print(str(exc), file=sys.stderr)
        return None


def sim_command(args: argparse.Namespace) -> int:
    from appliance.hardware import sim_cli

    if args.socket is not None:
        socket_path = args.socket
    else:
        config = _load_config(args.config)
        if config is None:
            return EXIT_CONFIG
        socket_path = config.hardware.sim_socket
    return sim_cli.run(socket_path, args)


def run_command(config_path: Path | None) -> int:
    config = _load_config(config_path)
    if config is None:
        return EXIT_CONFIG
    logsetup.configure(config.log_level)
    try:
        code, restart = trio.run(serve, config)
    except ConfigError as exc:
        print(str(exc), file=sys.stderr)
        return EXIT_CONFIG
    except JournalError as exc:
        log.critical("journal error: %s", exc)
        print(f"journal error: {exc}", file=sys.stderr)
        return EXIT_CONFIG
    if restart:
        # A Reset the CSMS asked for: everything is flushed and closed; start afresh in the same process slot
        # (same PID for the service manager, same arguments).
        logging.shutdown()
        os.execv(sys.executable, [sys.executable, "-m", "appliance", *sys.argv[1:]])
    return code


def make_hardware(config: Config):  # type: ignore[no-untyped-def]
    if config.hardware.backend == "sim":
        from appliance.hardware.sim import SimHardware

        return SimHardware(config.evses, config.hardware.sim_socket)
    raise ConfigError("hardware.backend", "the serial backend is not part of this firmware build yet")


async def serve(config: Config) -> tuple[int, bool]:
    """Run the station until a signal or a reset; the exit code, and whether to restart the process."""
    from appliance.station import Station

    station = Station(config, make_hardware(config))
    await station.open()  # a config or journal problem surfaces here, before anything runs
    failed = signalled = False
    with trio.open_signal_receiver(signal.SIGTERM, signal.SIGINT) as signals:
        async with trio.open_nursery() as nursery:

            async def stop_on_signal() -> None:
                nonlocal signalled
                async for signum in signals:
                    log.info("received %s: shutting down", signal.Signals(signum).name)
                    signalled = True
                    await station.stop()
                    nursery.cancel_scope.cancel()
                    return

            nursery.start_soon(stop_on_signal)
            try:
                await station.run()
                nursery.cancel_scope.cancel()  # the station ended by itself: a reset
            except* Exception:
                log.critical("station stopped on an unrecoverable error", exc_info=True)
                failed = True
            nursery.cancel_scope.cancel()
    log.info("station stopped")
    return (EXIT_FAILURE if failed else EXIT_OK), station.restart_reason is not None and not (failed or signalled)
