"""Heartbeat (B04): sent every HeartbeatInterval, the interval being the one the CSMS gave in the accepted
BootNotification, and a SetVariables of OCPPCommCtrlr.HeartbeatInterval applying at once, without a restart.

Gaps are measured between the CSMS's receive times of consecutive Heartbeat CALLs.
"""

from __future__ import annotations

import itertools
from pathlib import Path

from appliance.lab.csms import LoopbackCsms, RecordedFrame
from tests.conformance.helpers import SLACK, booted_station, get_value, set_item, set_variables, station_calls


def heartbeats(csms: LoopbackCsms, since: int = 0) -> list[RecordedFrame]:
    return [f for f in station_calls(csms, since) if f.action == "Heartbeat"]


def gaps(frames: list[RecordedFrame]) -> list[float]:
    return [b.monotonic - a.monotonic for a, b in itertools.pairwise(frames)]


async def test_heartbeat_at_the_boot_interval(csms: LoopbackCsms, data_dir: Path) -> None:
    """BootNotificationResponse interval 2 → HeartbeatInterval reads "2" and Heartbeats come every 2 s: the first
    2 s after the accepted boot, then 2 s apart (each within [2 - slack, 2 + 0.5])."""
    interval = 2
    csms.set_boot_responses([("Accepted", interval)])
    async with booted_station(csms, data_dir):
        assert await get_value(csms, "OCPPCommCtrlr", "HeartbeatInterval") == str(interval)
        beats = await csms.trio.wait_for(lambda: h if len(h := heartbeats(csms)) >= 2 else None, 3 * interval + 5)
        accepted = next(f for f in csms.frames_snapshot() if f.direction == "out" and f.action == "BootNotification")
        measured = [beats[0].monotonic - accepted.monotonic, *gaps(beats)]
        assert all(interval - SLACK <= gap <= interval + 0.5 for gap in measured), measured


async def test_heartbeat_interval_set_by_csms_applies_without_restart(csms: LoopbackCsms, data_dir: Path) -> None:
    """Boot interval 300 s (no Heartbeat for minutes), then SetVariables HeartbeatInterval := 1 → Accepted, and
    from then on a Heartbeat every second (3 in a row, gaps within [1 - slack, 1.5]) on the same connection."""
    async with booted_station(csms, data_dir):
        assert heartbeats(csms) == []
        mark = csms.mark()
        [result] = await set_variables(csms, set_item("OCPPCommCtrlr", "HeartbeatInterval", "1"))
        assert result["attributeStatus"] == "Accepted", result
        beats = await csms.trio.wait_for(lambda: h if len(h := heartbeats(csms, mark)) >= 3 else None, 10)
        measured = gaps(beats)
        assert all(1 - SLACK <= gap <= 1.5 for gap in measured), measured
        assert beats[0].monotonic - csms.frames_snapshot(since=mark)[0].monotonic <= 1.5, "first Heartbeat late"
        assert len(csms.connections_snapshot()) == 1
        assert await get_value(csms, "OCPPCommCtrlr", "HeartbeatInterval") == "1"
