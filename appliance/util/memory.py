"""The station's two requests to glibc's allocator: one arena, and the heap handed back after a peak.

One malloc arena for the station process, instead of one per thread that allocates.

glibc gives each thread that mallocs under contention its own arena (up to 8 per core), and each keeps the
pages it touched: the storage worker's SQLite work, the log writer, Trio's thread cache. A station's threads
allocate little and rarely at the same moment, so sharing the main arena costs them nothing measurable and
saves 1.5-2.5 MB of RSS (tools/bench_rpc.py, `MALLOC_ARENA_MAX` 1 against the default). `ctypes` is loaded by
Trio anyway, so asking glibc costs no import. Must run before the first thread starts.

An operator's own `MALLOC_ARENA_MAX` wins (glibc has read it already); on a libc without `mallopt` (musl has
a single arena design of its own) nothing happens.

`release_free_heap` is for the rare moments that peak: compiling a JSON-schema validator builds megabytes of
compiler state for a validator that keeps a tenth of it, and glibc keeps the freed pages mapped (the heap only
shrinks from its top), so a station would carry every such peak for its whole life. `malloc_trim(3)` returns
the free pages inside the heap to the kernel: 2-3 MB after the first few validators.
"""

from __future__ import annotations

import ctypes
import os

#: glibc's M_ARENA_MAX parameter of mallopt(3).
_M_ARENA_MAX = -8
_LIBC = ctypes.CDLL(None)


def limit_malloc_arenas(arenas: int = 1) -> bool:
    """Ask glibc for at most `arenas` arenas; whether the limit is now set (by us or by the environment)."""
    if "MALLOC_ARENA_MAX" in os.environ:
        return True
    mallopt = getattr(_LIBC, "mallopt", None)
    if mallopt is None:
        return False
    return bool(mallopt(_M_ARENA_MAX, arenas))


def release_free_heap() -> bool:
    """Hand the heap's free pages back to the kernel (glibc `malloc_trim(0)`); whether the libc can.

    Takes well under a millisecond for a station's heap; call it after a one-off peak, not on a hot path.
    """
    trim = getattr(_LIBC, "malloc_trim", None)
    if trim is None:
        return False
    trim(0)
    return True
