"""`appliance.util.memory.limit_malloc_arenas`: the station's threads share one glibc malloc arena.

Checked in fresh interpreters, where four threads each allocate outside Python's small-object allocator
(buffers over 512 bytes go to malloc); glibc's `malloc_stats()` then lists one "Arena N:" block per arena.
Without the limit each thread gets its own, which is what makes the check able to fail.
"""

from __future__ import annotations

import os
import subprocess
import sys

import pytest

CHILD = """
import ctypes, sys, threading
from appliance.util import memory
if sys.argv[1] == "limit":
    assert memory.limit_malloc_arenas()
def work():
    kept = [bytearray(100_000) for _ in range(20)]
    barrier.wait()
barrier = threading.Barrier(5)
threads = [threading.Thread(target=work) for _ in range(4)]
for t in threads:
    t.start()
barrier.wait()
ctypes.CDLL(None).malloc_stats()
for t in threads:
    t.join()
"""


def arenas(mode: str) -> int:
    env = {k: v for k, v in os.environ.items() if k != "MALLOC_ARENA_MAX"}
    done = subprocess.run([sys.executable, "-c", CHILD, mode], capture_output=True, text=True, env=env, timeout=60)
    assert done.returncode == 0, done.stderr
    return sum(line.startswith("Arena ") for line in done.stderr.splitlines())


@pytest.mark.skipif(not os.confstr("CS_GNU_LIBC_VERSION"), reason="glibc only")
def test_threads_share_one_arena_with_the_limit() -> None:
    assert arenas("default") > 1
    assert arenas("limit") == 1
