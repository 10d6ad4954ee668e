"""Part 6 B04: StatusNotification after an offline period longer (TC_B_51) or shorter (TC_B_52) than
OCPPCommCtrlr.OfflineThreshold.

The CSMS closes the connection and refuses reconnects; while offline the EV is connected to EVSE 1; the CSMS
accepts the station's first reconnection attempt (RetryBackOffWaitMinimum after the close, RandomRange 0),
which the case's WaitMinimum puts beyond (B_51) or within (B_52) the threshold.
"""

from __future__ import annotations

from pathlib import Path

import trio

from appliance.lab.csms import LoopbackCsms
from tests.conformance.helpers import booted_station, statuses
from tests.conformance.tx_helpers import (
    EVSE,
    first_attempt,
    go_offline,
    go_online,
    wait_status,
)


def offline_variables(threshold: int, wait_minimum: int) -> dict[str, int]:
    return {
        "OCPPCommCtrlr.OfflineThreshold": threshold,
        "OCPPCommCtrlr.RetryBackOffWaitMinimum": wait_minimum,
        "OCPPCommCtrlr.RetryBackOffRandomRange": 0,
    }


async def settle() -> None:
    """Let the station take in the CSMS's answers to its boot-time StatusNotifications: a status whose answer
    was lost with the connection is rightly reported again, which is not what these cases are about."""
    await trio.sleep(0.5)


async def test_TC_B_51_status_after_offline_longer_than_threshold(csms: LoopbackCsms, data_dir: Path) -> None:
    """TC_B_51_CS: OfflineThreshold 2 s, RetryBackOffWaitMinimum 4 s (threshold + 2). Offline ~4 s with the EV
    connected meanwhile: after reconnecting the station reports every connector — EVSE 1 Occupied, EVSE 2
    Available."""
    threshold, wait_minimum = 2, 4
    async with booted_station(csms, data_dir, variables=offline_variables(threshold, wait_minimum)) as station:
        await settle()
        offline_at = await go_offline(csms, station)
        await station.hardware.plug(EVSE)
        mark = csms.mark()
        await go_online(csms, station, first_attempt(offline_at, wait_minimum))
        assert trio.current_time() - offline_at > threshold
        occupied = await wait_status(csms, "Occupied", EVSE, since=mark)
        available = await wait_status(csms, "Available", 2, since=mark)
    assert occupied["connectorId"] == 1 and available["connectorId"] == 1


async def test_TC_B_52_status_after_offline_shorter_than_threshold(csms: LoopbackCsms, data_dir: Path) -> None:
    """TC_B_52_CS: OfflineThreshold 5 s, RetryBackOffWaitMinimum 3 s (threshold - 2). Offline ~3 s with the EV
    connected meanwhile: after reconnecting the station reports the connector whose status changed (EVSE 1
    Occupied) and not the unchanged one (EVSE 2)."""
    threshold, wait_minimum = 5, 3
    async with booted_station(csms, data_dir, variables=offline_variables(threshold, wait_minimum)) as station:
        await settle()
        offline_at = await go_offline(csms, station)
        await station.hardware.plug(EVSE)
        mark = csms.mark()
        await go_online(csms, station, first_attempt(offline_at, wait_minimum))
        assert trio.current_time() - offline_at < threshold
        occupied = await wait_status(csms, "Occupied", EVSE, since=mark)
        await trio.sleep(1.0)
        reported = statuses(csms, mark)
    assert occupied["connectorId"] == 1
    assert [(p["evseId"], p["connectorStatus"]) for p in reported] == [(EVSE, "Occupied")], reported
