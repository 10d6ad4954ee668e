"""The `appliance` command: run, demo, sim, fleet (see ../shared/CONTRACT.md and the README).

Exit codes: 0 clean stop, 1 runtime failure the service manager should restart us for, 2 config, host or
journal error (restarting will not help: a person must fix something; `preflight` checks the host's side).
"""

from __future__ import annotations

import argparse
import logging
import os
import signal
import sys
from pathlib import Path

import trio

from appliance import __version__, logsetup, preflight
from appliance.config import Config, ConfigError, load
from appliance.storage.db import JournalError
from appliance.util import memory

log = logging.getLogger("appliance")

EXIT_OK, EXIT_FAILURE, EXIT_CONFIG = 0, 1, 2


def build_parser() -> argparse.ArgumentParser:
    from appliance.hardware.sim import sim_cli

    parser = argparse.ArgumentParser(prog="appliance", description="OCPP 2.0.1 charging station firmware")
    parser.add_argument("--version", action="version", version=f"appliance {__version__}")
    commands = parser.add_subparsers(dest="command", required=True)

    run = commands.add_parser("run", help="run the station until SIGTERM/SIGINT")
    run.add_argument("--config", type=Path, help="TOML config (default: the embedded default config)")
    run.set_defaults(usage_parser=run)

    demo = commands.add_parser("demo", help="a loopback CSMS and a simulated station play a whole story")
    demo.add_argument("--keep", action="store_true", help="keep the demo's data directory afterwards")
    demo.set_defaults(usage_parser=demo)

    certs = commands.add_parser("certs", help="list the installed certificates (type, subject, expiry, hash data)")
    certs.add_argument("--config", type=Path, help="TOML config (default: the embedded default config)")
    certs.add_argument("--json", action="store_true", help="one JSON object instead of a table")
    certs.set_defaults(usage_parser=certs)

    sim = commands.add_parser("sim", help="drive the simulated hardware of a running station")
    where = sim.add_mutually_exclusive_group()
    where.add_argument("--socket", type=Path, help="control socket path")
    where.add_argument("--config", type=Path, help="read the control socket path from this config")
    sim_cli.add_arguments(sim)

    fleet = commands.add_parser("fleet", help="many virtual stations in one process, for a CSMS load test")
    _fleet_arguments(fleet)
    fleet.set_defaults(usage_parser=fleet)

    # Firmware update: images and signatures for station makers.
    from appliance.firmware import cli as firmware_cli

    firmware = commands.add_parser("firmware", help="firmware images: pack, sign, verify (offline)")
    firmware_cli.add_arguments(firmware)
    firmware.set_defaults(usage_parser=firmware)
    # serial hardware (issue 12): listed here for `appliance --help`; `main` hands `devsim …` to the lab, which
    # parses its own arguments, so neither its code nor pymodbus' server loads unless `devsim` runs.
    commands.add_parser(
        "devsim", add_help=False, help="simulated serial devices for a bench: reader | controller | meter | bench"
    )
    return parser


def _fleet_arguments(fleet: argparse.ArgumentParser) -> None:
    """`appliance fleet`'s options (the lab's code loads only when the command runs)."""
    fleet.add_argument("--count", type=int, required=True, help="number of virtual stations")
    fleet.add_argument("--csms", required=True, help="CSMS endpoint URL; each station appends its id")
    fleet.add_argument("--prefix", default="FLEET", help="station ids are PREFIX0001, PREFIX0002, … (default FLEET)")
    fleet.add_argument("--data-dir", type=Path, help="parent of the stations' data directories (default: a fresh one)")
    fleet.add_argument("--keep", action="store_true", help="keep the fresh data directory afterwards")
    fleet.add_argument(
        "--scenario", default="sessions", help="idle | sessions | pulls | storm (see the README; default sessions)"
    )
    fleet.add_argument("--duration", type=float, default=60.0, help="seconds the scenario runs (default 60)")
    fleet.add_argument("--ramp", type=float, default=10.0, help="boots are spread over this many seconds (default 10)")
    fleet.add_argument("--password", help="basic-auth password of every station (security profile 1; default: none)")
    fleet.add_argument("--token", default="04FLEET0", help="idToken the sessions present; {n} = station number")
    fleet.add_argument("--meter-interval", type=int, default=5, help="SampledDataCtrlr.TxUpdatedInterval (default 5)")
    fleet.add_argument("--workers", type=int, default=4, help="storage threads shared by the stations (default 4)")
    fleet.add_argument("--cache-kib", type=int, default=8, help="page cache per SQLite connection (default 8)")
    fleet.add_argument(
        "--statements", type=int, default=4, help="prepared statements kept per SQLite connection (default 4)"
    )
    fleet.add_argument("--summary-every", type=float, default=5.0, help="seconds between summary lines (default 5)")
    fleet.add_argument("--drain", type=float, default=60.0, help="max seconds to wait for the journals to empty")
    fleet.add_argument("--seed", type=int, default=0, help="seed of the scripted randomness")
    fleet.add_argument("--log-level", default="ERROR", help="log level of the stations (default ERROR)")
    fleet.add_argument("--log-file", type=Path, help="write the stations' log here instead of stderr")


def fleet_command(args: argparse.Namespace) -> int:
    """`appliance fleet`: exit 0 when every station booted and every journal verified clean and drained,
    1 otherwise, 2 for bad options."""
    from appliance.lab.fleet import SCENARIOS, FleetOptions, run_fleet

    if min(args.count, args.workers, args.cache_kib, args.statements) < 1 or args.scenario not in SCENARIOS:
        print(
            "fleet: --count, --workers, --cache-kib and --statements must be at least 1 and --scenario one of "
            + ", ".join(SCENARIOS),
            file=sys.stderr,
        )
        return EXIT_CONFIG
    options = FleetOptions(
        count=args.count,
        csms_url=args.csms,
        prefix=args.prefix,
        data_dir=args.data_dir,
        scenario=args.scenario,
        duration_s=args.duration,
        ramp_s=args.ramp,
        password=args.password,
        token=args.token,
        meter_interval_s=args.meter_interval,
        workers=args.workers,
        cache_kib=args.cache_kib,
        cached_statements=args.statements,
        summary_every_s=args.summary_every,
        drain_s=args.drain,
        seed=args.seed,
        log_level=args.log_level,
        log_path=args.log_file,
    )
    return run_fleet(options, sys.stdout, keep=args.keep)


def _parse(parser: argparse.ArgumentParser, argv: list[str] | None) -> argparse.Namespace:
    """Parse, reporting stray arguments with the usage of the (sub)command they were given to.

    argparse leaves arguments a subcommand does not know to the top-level parser, whose usage ("appliance
    [-h] …") does not tell a person that `appliance sim status` takes no `--evse`; the subcommand's does.
    Every (sub)command parser names itself in the `usage_parser` default for this.
    """
    args, extra = parser.parse_known_args(argv)
    if extra:
        getattr(args, "usage_parser", parser).error(f"unrecognized arguments: {' '.join(extra)}")
    return args


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    if argv[:1] == ["devsim"]:  # serial hardware (issue 12): the lab parses its own arguments, --help included
        from appliance.lab.devsim import cli as devsim_cli

        return devsim_cli.main(argv[1:])
    args = _parse(build_parser(), argv)
    if args.command == "run":
        return run_command(args.config)
    if args.command == "demo":
        from appliance.lab.demo import run_demo

        return run_demo(keep=args.keep)
    if args.command == "certs":
        return certs_command(args.config, args.json)
    if args.command == "fleet":
        return fleet_command(args)
    if args.command == "firmware":
        from appliance.firmware import cli as firmware_cli

        return firmware_cli.run(args)
    return sim_command(args)


def _load_config(path: Path | None) -> Config | None:
    try:
        return load(path)
    except ConfigError as exc:
        print(str(exc), file=sys.stderr)
        return None


def sim_command(args: argparse.Namespace) -> int:
    from appliance.hardware.sim import sim_cli

    if args.socket is not None:
        socket_path = args.socket
    else:
        config = _load_config(args.config)
        if config is None:
            return EXIT_CONFIG
        socket_path = config.hardware.sim_socket
    return sim_cli.run(socket_path, args)


def certs_command(config_path: Path | None, as_json: bool) -> int:
    """`appliance certs`: exit 0 with the listing, 2 when the config, journal or a certificate file is unusable."""
    from appliance.certs.listing import CertificateProblem, render

    config = _load_config(config_path)
    if config is None:
        return EXIT_CONFIG
    try:
        print(render(config, as_json))
    except JournalError as exc:
        print(f"journal error: {exc}", file=sys.stderr)
        return EXIT_CONFIG
    except (OSError, CertificateProblem) as exc:
        print(f"certificate error: {exc}", file=sys.stderr)
        return EXIT_CONFIG
    return EXIT_OK


class _EarlySignal:
    """SIGTERM or SIGINT before `serve` takes signals over (config, migrations, imports, a slow disk).

    Without it a service manager stopping a station that is still starting kills it outright (exit -15) instead
    of seeing the clean exit 0 the CONTRACT promises. The signal is only noted here; `serve` raises it again once
    its own receiver listens, so the one shutdown path handles it. It stays installed underneath trio's receiver,
    so a signal trio re-delivers when its receiver closes is noted too, never fatal.
    """

    def __init__(self) -> None:
        self.signum: int | None = None
        for signum in (signal.SIGTERM, signal.SIGINT):
            signal.signal(signum, self._note)

    def _note(self, signum: int, frame: object) -> None:
        self.signum = signum


def run_command(config_path: Path | None) -> int:
    early = _EarlySignal()
    memory.limit_malloc_arenas()  # before the first thread (log writer, storage worker) starts
    config = _load_config(config_path)
    if config is None:
        return EXIT_CONFIG
    try:
        preflight.check(config)
    except ConfigError as exc:
        print(str(exc), file=sys.stderr)
        return EXIT_CONFIG
    logsetup.configure(config.log_level)
    # Firmware update: count a trial boot, roll back, or hand over to the active slot's own program.
    from appliance.firmware import launch

    launch.prepare(config.station.data_dir, sys.argv[1:])
    try:
        code, restart = trio.run(serve, config, early)
    except ConfigError as exc:
        print(str(exc), file=sys.stderr)
        return EXIT_CONFIG
    except JournalError as exc:
        # One line, not also a log record: stderr is where both would go, and a person reads it.
        print(f"journal error: {exc}", file=sys.stderr)
        return EXIT_CONFIG
    if restart:
        # A Reset the CSMS asked for: everything is flushed and closed; start afresh in the same process slot
        # (same PID for the service manager, same arguments).
        logging.shutdown()
        os.execv(sys.executable, [sys.executable, "-m", "appliance", *sys.argv[1:]])
    return code


async def serve(config: Config, early: _EarlySignal | None = None) -> tuple[int, bool]:
    """Run the station until a signal or a reset; the exit code, and whether to restart the process."""
    from appliance.hardware.registry import make_hardware
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
            if early is not None and early.signum is not None:
                signal.raise_signal(early.signum)  # arrived while starting: now our receiver has it
            try:
                await station.run()
                nursery.cancel_scope.cancel()  # the station ended by itself: a reset
            except* Exception:
                log.critical("station stopped on an unrecoverable error", exc_info=True)
                failed = True
            nursery.cancel_scope.cancel()
    # A signal that came as the run ended, before `stop_on_signal` read it, is re-delivered by trio when the
    # receiver closes, to the handler before it: `early`'s, which notes it (SIG_DFL would kill us: exit -15).
    if early is not None and early.signum is not None and not signalled:
        log.info("received %s as the station stopped", signal.Signals(early.signum).name)
        signalled = True
    log.info("station stopped")
    return (EXIT_FAILURE if failed else EXIT_OK), station.restart_reason is not None and not (failed or signalled)
