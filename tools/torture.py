#!/usr/bin/env python3
"""Long-mode torture for people: the scenarios of tests/torture, for as long as you ask.

    python tools/torture.py --minutes 30 --mode all      # 10 minutes each: proxy, kill, netns
    python tools/torture.py --minutes 5 --mode kill --seed 1234
    TORTURE_MINUTES=60 python tools/torture.py           # minutes from the environment (default 10)

The quick mode in CI (`pytest tests/torture`) runs the same code (`appliance/lab/torture.py`) with a fault
quota instead of a duration. Each mode prints its counts — cuts, kills, transactions, TransactionEvents — and
every problem the final checks found; then one TOTAL line. Exit 0 when every check passed, 1 when any failed
(already-reported station bugs included: they are labelled "known"), 2 on a usage error or when the netns mode
was asked for explicitly where it cannot run (not root). Work directories (station log, journal) of runs with
problems are kept and named; `--keep` keeps them all.

`--mode netns` needs root (`ip netns`); `--mode all` skips it elsewhere, with the reason.
"""

from __future__ import annotations

import argparse
import os
import shutil
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
if str(REPO) not in sys.path:
    sys.path.insert(0, str(REPO))  # a source checkout runs without an install

from appliance.lab.process import short_dir  # noqa: E402
from appliance.lab.torture import KNOWN_BUGS, MODES, Plan, Report, netns_unavailable, new_seed, run_scenario  # noqa: E402


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="tools/torture.py", description="Torture a real station process: cable pulls, link flaps, SIGKILLs."
    )
    default_minutes = float(os.environ.get("TORTURE_MINUTES", "10"))
    parser.add_argument(
        "--minutes",
        type=float,
        default=default_minutes,
        help=f"total run time, split evenly between the modes (default: $TORTURE_MINUTES or 10; "
        f"now {default_minutes:g})",
    )
    parser.add_argument("--mode", choices=(*MODES, "all"), default="all", help="which fault to inject (default: all)")
    parser.add_argument(
        "--seed",
        type=int,
        default=None,
        help="seed of the random choices (default: $TORTURE_SEED or a fresh one; printed)",
    )
    parser.add_argument("--keep", action="store_true", help="keep every work directory, not only failed ones")
    return parser


def _label(report: Report) -> list[str]:
    """The problems, each marked when an already-reported station bug explains it."""
    lines = []
    for problem in report.problems:
        known = next((bug for bug in KNOWN_BUGS if bug.explains(problem)), None)
        lines.append(f"  {'known' if known else 'NEW  '} {problem}")
    return lines


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    if args.minutes <= 0:
        print("tools/torture.py: --minutes must be positive", file=sys.stderr)
        return 2
    modes = list(MODES) if args.mode == "all" else [args.mode]
    if "netns" in modes and (reason := netns_unavailable()) is not None:
        if args.mode == "netns":
            print(f"tools/torture.py: the netns mode cannot run here: {reason}", file=sys.stderr)
            return 2
        print(f"skipping netns: {reason}")
        modes.remove("netns")
    seed = args.seed if args.seed is not None else new_seed()
    per_mode = args.minutes / len(modes)
    print(f"torture: {args.minutes:g} min over {', '.join(modes)} ({per_mode:g} min each), seed {seed}", flush=True)

    reports: list[Report] = []
    for index, mode in enumerate(modes):
        workdir = short_dir()
        report = run_scenario(
            Plan.long(mode, seed + index, per_mode),
            workdir,
            say=lambda line: print(line, flush=True),
            progress_every=30.0,
        )
        reports.append(report)
        print(report.summary(with_problems=False))
        if report.problems:
            print("\n".join(_label(report)))
        if report.problems or args.keep:
            print(f"  work directory kept: {workdir}")
        else:
            shutil.rmtree(workdir, ignore_errors=True)
        print(flush=True)

    cuts = sum(len(r.faults) for r in reports if r.mode != "kill")
    kills = sum(len(r.faults) for r in reports if r.mode == "kill")
    total = {
        key: sum(r.counts.get(key, 0) for r in reports) for key in ("transactions", "events", "receipts", "crashes")
    }
    problems = sum(len(r.problems) for r in reports)
    print(
        f"TOTAL: {cuts} cuts, {kills} kills, {total['transactions']} transactions, {total['events']} "
        f"TransactionEvents journaled ({total['receipts']} received), {total['crashes']} station crashes, "
        f"{problems} problem(s) -> {'FAIL' if problems else 'OK'}"
    )
    return 1 if problems else 0


if __name__ == "__main__":
    sys.exit(main())
