"""The transaction torture scenario once on the serial backend, quick mode: power kills of the station process
while both EVSEs run session after session on the device bench (ptys).

The bench's devices outlive every kill, as real hardware does: after each restart the station opens its ports
again, finds the EVs where they are (the board's statuses), ends the interrupted transactions with PowerLoss,
and carries on. Every promise of the CONTRACT must hold afterwards, as with the simulated hardware.
"""

from __future__ import annotations

import shutil

import pytest

from appliance.lab.devsim.torture import SerialRig
from appliance.lab.process import short_dir
from appliance.lab.torture import Plan, assert_report, new_seed, run_scenario


@pytest.mark.slow
def test_power_kills_on_the_serial_backend() -> None:
    seed = new_seed()
    print(f"torture seed: {seed} (replay with TORTURE_SEED={seed})")
    workdir = short_dir()
    report = run_scenario(Plan.quick("kill", seed), workdir, rig_class=SerialRig)
    print(report.summary())
    assert report.counts.get("powerloss", 0) > 0, f"no kill landed during a transaction\n{report.summary()}"
    assert_report(report, min_faults=10)
    shutil.rmtree(workdir, ignore_errors=True)
