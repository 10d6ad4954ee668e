"""One malloc arena for the station process, instead of one per thread that allocates.

glibc gives each thread that mallocs under contention its own arena (up to 8 per core), and each keeps the
pages it touched: the storage worker's SQLite work, the log writer, Trio's thread cache. A station's threads
allocate little and rarely at the same moment, so sharing the main arena costs them nothing measurable and
saves 1.5-2.5 MB of RSS (tools/bench_rpc.py, `MALLOC_ARENA_MAX` 1 against the default). `ctypes` is loaded by
Trio anyway, so asking glibc costs no import. Must run before the first thread starts.

An operator's own `MALLOC_ARENA_MAX` wins (glibc has read it already); on a libc without `mallopt` (musl has
a single arena design of its own) nothing happens.
"""

from __future__ import annotations

import ctypes
import os

#: glibc's M_ARENA_MAX parameter of mallopt(3).
_M_ARENA_MAX = -8


def limit_malloc_arenas(arenas: int = 1) -> bool:
    """Ask glibc for at most `arenas` arenas; whether the limit is now set (by us or by the environment)."""
    if "MALLOC_ARENA_MAX" in os.environ:
        return True
    mallopt = getattr(ctypes.CDLL(None), "mallopt", None)
    if mallopt is None:
        return False
    return bool(mallopt(_M_ARENA_MAX, arenas))
