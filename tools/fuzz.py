#!/usr/bin/env python3
"""Long-mode fuzzing for people: the campaign of tests/fuzz, for as long as you ask.

    python tools/fuzz.py --minutes 30          # CSMS CALLs and answers against one live station
    python tools/fuzz.py --minutes 5 --keep    # keep the work directory (journal, for appliance-journal)

The quick mode in the suite (`pytest tests/fuzz`) runs the same code (`tests/fuzz/campaign.py`) with a fixed
number of inputs. This one alternates rounds of CSMS CALLs (valid and mutated, every action) and rounds of
CSMS answers until the time is up, then checks that the station still answers and takes a hardware event, that
its memory stayed bounded and that `appliance-journal verify` passes. It prints the number of inputs tried, by
kind, and the answers' codes. Exit 0 when every check passed, 1 when one failed (Hypothesis prints the
shrunk input), 2 on a usage error.
"""

from __future__ import annotations

import argparse
import gc
import shutil
import sys
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
if str(REPO) not in sys.path:
    sys.path.insert(0, str(REPO))  # the campaign lives in the test tree, which is not installed

from appliance.lab.fuzz.campaign import (  # noqa: E402
    Tally,
    journal_verifies,
    run_answers,
    run_calls,
    still_answering,
    tasks_settle,
)
from appliance.lab.fuzz.driver import fuzzed_station, rss_bytes  # noqa: E402
from appliance.lab.process import short_dir  # noqa: E402

#: Inputs per round: small enough that the clock is looked at often, large enough for Hypothesis to explore.
CALLS_PER_ROUND = 500
ANSWERS_PER_ROUND = 25
#: RSS growth allowed over the whole run (after a warm-up round).
MEMORY_BOUND = 64 * 1024 * 1024


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="tools/fuzz.py", description="Fuzz a live station with schema-derived CSMS CALLs and answers."
    )
    parser.add_argument("--minutes", type=float, default=10.0, help="how long to run (default 10)")
    parser.add_argument("--keep", action="store_true", help="keep the work directory")
    return parser


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    if args.minutes <= 0:
        print("tools/fuzz.py: --minutes must be positive", file=sys.stderr)
        return 2
    workdir = short_dir()
    tally = Tally()
    deadline = time.monotonic() + args.minutes * 60
    print(f"fuzz: {args.minutes:g} min against a live station in {workdir}", flush=True)
    failed = False
    try:
        with fuzzed_station(workdir) as fuzz:
            run_calls(fuzz, tally, 20)
            tasks_before = fuzz.task_count()
            gc.collect()
            before = rss_bytes()
            rounds = 0
            while time.monotonic() < deadline:
                run_calls(fuzz, tally, CALLS_PER_ROUND)
                run_answers(fuzz, tally, ANSWERS_PER_ROUND)
                rounds += 1
                grown = rss_bytes() - before
                print(
                    f"  round {rounds}: {tally.inputs} inputs, {fuzz.restarts} restarts, RSS {grown / 1e6:+.1f} MB",
                    flush=True,
                )
            still_answering(fuzz)
            tasks_after = tasks_settle(fuzz, tasks_before)
            print(f"  station tasks: {tasks_before} before, {tasks_after} after", flush=True)
            gc.collect()
            grown = rss_bytes() - before
        if fuzz.problems:
            raise AssertionError(f"problems: {fuzz.problems}")
        if grown > MEMORY_BOUND:
            raise AssertionError(f"RSS grew by {grown / 1e6:.1f} MB")
        journal_verifies(fuzz)
    except Exception as exc:  # a failed check or a hung station: report it with the counts, then exit 1
        failed = True
        print(f"FAILED: {type(exc).__name__}: {exc}", flush=True)
    print(
        f"TOTAL {tally.inputs} inputs: {tally.calls_valid} valid CALLs, {tally.calls_mutated} mutated CALLs, "
        f"{tally.answers} CSMS answers; answer codes {dict(tally.codes)}",
        flush=True,
    )
    if args.keep or failed:
        print(f"work directory kept: {workdir}")
    else:
        shutil.rmtree(workdir, ignore_errors=True)
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
