"""Kernel-level cable pulls: the station in its own network namespace, its veth link set down and up
(issue 3, scenario b).

Unlike the proxy, nothing acknowledges the station's bytes while the link is down, so TCP_USER_TIMEOUT and the
kernel's own errors take part. The two sides take turns: the station's own end down (its NIC, routes gone) and
the CSMS's end down (the far side silent). The CSMS listens in a second namespace of ours at the other end of
the veth; the /30 between them exists nowhere else. Skipped, with the reason, where `ip netns` is not
available (not root).
"""

from __future__ import annotations

from collections.abc import Callable

import pytest

from appliance.lab.torture import Mode, Report, assert_report, netns_unavailable


@pytest.mark.slow
@pytest.mark.netns
def test_sessions_survive_veth_link_flaps(torture: Callable[[Mode], Report]) -> None:
    reason = netns_unavailable()
    if reason is not None:
        pytest.skip(f"netns scenario unavailable: {reason}")
    report = torture("netns")
    assert_report(report, min_faults=10)
