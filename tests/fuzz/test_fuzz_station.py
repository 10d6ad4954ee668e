"""The fuzzer's quick mode (issue 15 item 7): schema-derived CALLs and answers against one live station.

`tools/fuzz.py --minutes N` runs the same campaign for longer. Here: a few hundred CSMS CALLs (valid and
mutated, every action) and a few dozen CSMS answers, then the station must still answer over the WebSocket,
take a hardware event, have as many tasks as before (none lost, none leaked), stay within a memory bound
(the process's RSS, which also holds the loopback CSMS and its frame recording), and its journal must verify.
"""

from __future__ import annotations

import gc
from pathlib import Path

from appliance.lab.fuzz.campaign import Tally, journal_verifies, run_answers, run_calls, still_answering, tasks_settle
from appliance.lab.fuzz.driver import fuzzed_station, rss_bytes

QUICK_CALLS = 400
QUICK_ANSWERS = 30
#: RSS growth allowed over a quick campaign: the station's caches and reports are bounded far below this,
#: while a leak per input (a task, a report kept in memory) would exceed it.
MEMORY_BOUND = 40 * 1024 * 1024


def test_quick_fuzz_campaign(data_dir: Path) -> None:
    tally = Tally()
    with fuzzed_station(data_dir) as fuzz:
        run_calls(fuzz, tally, 20)  # warm-up: schemas compiled, caches filled
        tasks_before = fuzz.task_count()
        gc.collect()
        before = rss_bytes()
        run_calls(fuzz, tally, QUICK_CALLS)
        run_answers(fuzz, tally, QUICK_ANSWERS)
        still_answering(fuzz)
        tasks_after = tasks_settle(fuzz, tasks_before)
        gc.collect()
        grown = rss_bytes() - before
    assert fuzz.problems == [], fuzz.problems
    assert grown < MEMORY_BOUND, f"RSS grew by {grown / 1e6:.1f} MB over {tally.inputs} inputs"
    journal_verifies(fuzz)
    print(
        f"fuzz quick: {tally.inputs} inputs ({tally.calls_valid} valid CALLs, {tally.calls_mutated} mutated, "
        f"{tally.answers} answers), {fuzz.restarts} restarts, tasks {tasks_before} -> {tasks_after}, "
        f"RSS {grown / 1e6:+.1f} MB, answers {dict(tally.codes)}"
    )
