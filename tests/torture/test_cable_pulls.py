"""Cable pulls through the chaos proxy while both EVSEs run session after session (issue 3, scenario a).

The proxy blackholes the station's connection at seeded-random moments — short pulls the station may not
notice, long ones it must — and restores it; afterwards the journal and the CSMS's recording must agree on
every promise of the CONTRACT (delivered, in order, gapless, no resend after an acknowledgement, offline flags,
every transaction ended, `appliance-journal verify` clean).
"""

from __future__ import annotations

from collections.abc import Callable

import pytest

from appliance.lab.torture import Mode, Report, assert_report


@pytest.mark.slow
def test_sessions_survive_20_cable_pulls(torture: Callable[[Mode], Report]) -> None:
    report = torture("proxy")
    assert_report(report, min_faults=20)
