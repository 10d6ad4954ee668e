"""The benchmarks' quick modes run to the end and print every figure beside its limit.

Not a performance test (the suite asserts no times): a bench that no longer starts, or stops printing the limit
it is read against, would otherwise only be found by the next person who needs its figures.
"""

import re
import subprocess
import sys

from tests.harness import REPO

#: A rate, a latency or a share as the benches print them ("2,665 commits/s", "p99 0.387 ms", "64 %").
_FIGURE = r"[0-9][0-9,]*(?:\.[0-9]+)?"


def run_bench(*args: str) -> str:
    done = subprocess.run([sys.executable, *args], cwd=REPO, capture_output=True, text=True, timeout=300, check=False)
    assert done.returncode == 0, done.stdout + done.stderr
    return done.stdout


def figures(text: str, label: str) -> list[float]:
    """The numbers on the first line that contains `label`."""
    line = next((line for line in text.splitlines() if label in line), None)
    assert line is not None, f"no line with {label!r} in:\n{text}"
    return [float(n.replace(",", "")) for n in re.findall(_FIGURE, line.split(label, 1)[1])]


def test_bench_rpc_quick_prints_latency_beside_the_loopback_floor() -> None:
    out = run_bench("tools/bench_rpc.py", "--quick")
    for items in (1, 10):
        floor = figures(out, f"floor: raw-socket echo peer, {items:>2} item(s)")
        wire = figures(out, f"GetVariables {items:>2} item(s)")
        assert floor[1:3] and wire[1:3] and all(v > 0 for v in floor[1:3] + wire[1:3])  # n, p50, p99 …
    assert figures(out, "station RSS")[0] > 0


def test_bench_journal_quick_prints_every_rate_beside_the_raw_limit() -> None:
    out = run_bench("tools/bench_journal.py", "--quick")
    raw = figures(out, "raw SQLite limit")
    assert raw[-1] > 0
    for label in ("raw commit awaited through the storage worker", "journal,   1 producer :", "journal,  64 producers"):
        rate, share = figures(out, label)[:2]
        assert rate > 0 and share > 0
    replays = [line for line in out.splitlines() if " events in " in line]
    assert len(replays) == 2, out  # the ocpp-library CSMS and FastCsms, each replaying all 1,000 queued events
    assert all(line.split()[0] == "1000" for line in replays), replays
    assert figures(out, "on the wire ")[0] == 30
