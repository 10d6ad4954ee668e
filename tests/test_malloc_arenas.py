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


TRIM_CHILD = """
from appliance.util import memory
def rss_kib():
    return next(int(l.split()[1]) for l in open("/proc/self/status") if l.startswith("VmRSS:"))
blocks = [bytearray(1000) for _ in range(60_000)]  # ~60 MB of malloc'd blocks (under the mmap threshold)
pin = bytearray(1000)  # allocated last, near the heap's top: glibc cannot shrink the heap from the top
del blocks
before = rss_kib()
assert memory.release_free_heap()
print(before - rss_kib())
"""


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="glibc's malloc_trim")
def test_release_free_heap_hands_freed_pages_inside_the_heap_back() -> None:
    """What `SchemaRegistry` does after compiling a validator: without it, the freed 60 MB would stay resident."""
    env = {**os.environ, "MALLOC_ARENA_MAX": "1"}
    out = subprocess.run([sys.executable, "-c", TRIM_CHILD], capture_output=True, text=True, env=env, check=True)
    released_kib = int(out.stdout)
    assert released_kib > 40_000, released_kib
