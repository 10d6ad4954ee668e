#!/usr/bin/env python3
"""Power-cut experiment on the journal, for humans: how many acknowledged commits does a power cut lose?

Runs the same experiment as tests/powercut (see appliance/lab/powercut/experiment.py and lossyvfs.py for the
model): the real JournalStore write path on an apsw connection through a VFS that keeps, per file, the image
that reached stable storage at the last fsync; a power cut at a random point (after 1..--max-ops acknowledged
operations, possibly inside a commit) leaves only that image (plus, with --keep-unsynced, a random part of the
writes that were not yet synced). The next boot is judged: integrity_check, the journal verifier, every
acknowledged effect present, and a reopen through the production open_station_db. Needs apsw (the test
extra).

    .venv/bin/python tools/powercut.py --trials 200 --mode full
    .venv/bin/python tools/powercut.py --trials 200 --mode normal            # loses acked commits
    .venv/bin/python tools/powercut.py --trials 200 --mode off --keep-unsynced 0.5   # corrupts
    .venv/bin/python tools/powercut.py --mode full --seed 17 --trials 1 -v   # replay one trial

Exit status: 1 when --mode full had any loss, corruption or inconsistency (the production setting must pass);
otherwise 0 — losses under normal/off are the expected result, not a failure of the tool.
"""

from __future__ import annotations

import argparse
import sys
from collections import Counter
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from appliance.lab.powercut.experiment import MODES, Tally, run_trial


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--trials", type=int, default=100, help="number of power cuts (default 100)")
    parser.add_argument("--mode", choices=MODES, default="full", help="PRAGMA synchronous of the journal")
    parser.add_argument(
        "--keep-unsynced",
        type=float,
        default=0.0,
        metavar="FRACTION",
        help="chance that each unsynced write reached the disk anyway (default 0: all dropped)",
    )
    parser.add_argument("--seed", type=int, default=0, help="first seed; trial i uses seed+i (default 0)")
    parser.add_argument("--max-ops", type=int, default=400, help="cut after 1..N acknowledged operations")
    parser.add_argument("-v", "--verbose", action="store_true", help="one line per trial, details of failures")
    args = parser.parse_args(argv)

    tally = Tally()
    inflight: Counter[str] = Counter()
    for seed in range(args.seed, args.seed + args.trials):
        result = run_trial(seed, args.mode, keep_fraction=args.keep_unsynced, max_ops=args.max_ops)
        tally.add(result)
        inflight[result.inflight_kind or "-"] += 1
        if args.verbose or (args.mode == "full" and not result.ok):
            print(result.summary())
            for line in [*result.corrupt, *result.problems, *(f"lost: {op}" for op in result.lost)][:20]:
                print(f"    {line}")

    print(f"mode {args.mode}, keep-unsynced {args.keep_unsynced}, seeds {args.seed}..{args.seed + args.trials - 1}")
    print(f"  trials:          {tally.trials}")
    print(f"  acked commits:   {tally.acked_commits}")
    print(f"  lost:            {tally.lost_commits} acked commits, in {tally.trials_with_loss} trials")
    print(f"  corrupt:         {tally.corrupt} trials")
    print(f"  inconsistent:    {tally.inconsistent} trials")
    print(f"  cuts mid-write:  {tally.cuts_mid_write} trials (the cut found unsynced writes to drop)")
    print(f"  cut during:      {', '.join(f'{k} {v}' for k, v in inflight.most_common())}")
    print(f"  time:            {tally.seconds:.1f} s")
    return 1 if args.mode == "full" and tally.failures else 0


if __name__ == "__main__":
    sys.exit(main())
