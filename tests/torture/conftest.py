"""Fixtures for the torture tests: a printed seed and a short work directory kept when a run finds problems."""

from __future__ import annotations

import shutil
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from appliance.lab.process import short_dir
from appliance.lab.torture import (
    KNOWN_BUGS,
    Mode,
    Plan,
    Report,
    destroy_leftover_namespaces,
    new_seed,
    run_scenario,
)


@pytest.fixture
def torture_seed() -> int:
    """A fresh seed per run (or TORTURE_SEED), printed so a failing run's choices can be replayed."""
    seed = new_seed()
    print(f"torture seed: {seed} (replay with TORTURE_SEED={seed})")
    return seed


@pytest.fixture
def torture(torture_seed: int) -> Iterator[Callable[[Mode], Report]]:
    """Run one quick-mode scenario; its work directory (station log, journal) is kept only if it found problems
    that no already-reported bug explains.

    A short /tmp directory, not tmp_path: the sim control socket lives there and AF_UNIX paths are short.
    """
    kept: list[Path] = []
    clean: list[Path] = []

    def run(mode: Mode) -> Report:
        workdir = short_dir()
        kept.append(workdir)  # until the run has finished and found nothing new
        report = run_scenario(Plan.quick(mode, torture_seed), workdir)
        kept.remove(workdir)
        print(report.summary())
        new = [p for p in report.problems if not any(bug.explains(p) for bug in KNOWN_BUGS)]
        (kept if new else clean).append(workdir)
        return report

    try:
        yield run
    finally:
        destroy_leftover_namespaces()  # a run cleans up after itself; this is the safety net
    for path in clean:
        shutil.rmtree(path, ignore_errors=True)
    for path in kept:
        print(f"kept for inspection: {path}")
