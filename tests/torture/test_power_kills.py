"""Power cuts: the station process SIGKILLed at random moments during sessions and restarted on the same data
directory (issue 3, scenario c).

After each restart, transactions that were open end with stoppedReason PowerLoss (seqNo continuing from the
journal) and the simulated EVs are gone, so the EV drivers plug in again. Afterwards every promise of the
CONTRACT must hold across all restarts: delivered, in order, gapless, no resend after an acknowledgement,
every transaction ended once, the meter register never going back, `appliance-journal verify` clean.
"""

from __future__ import annotations

from collections.abc import Callable

import pytest

from appliance.lab.torture import Mode, Report, assert_report


@pytest.mark.slow
def test_sessions_survive_10_power_kills(torture: Callable[[Mode], Report]) -> None:
    report = torture("kill")
    assert report.counts.get("powerloss", 0) > 0, f"no kill landed during a transaction\n{report.summary()}"
    assert_report(report, min_faults=10)
