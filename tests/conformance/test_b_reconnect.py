"""Part 6 TC_B_57_CS: reconnection back-off after a connection loss (Part 4 §5.3).

Times come from the CSMS's connection records (`opened_monotonic` of each attempt, `closed_monotonic` of the
connection it closed), i.e. what the tool measures on its side of the wire.
"""

from __future__ import annotations

from pathlib import Path

from appliance.lab.csms import ConnectionRecord, LoopbackCsms
from tests.conformance.helpers import SLACK, STATION_ID, booted_station

WAIT_MINIMUM = 1


def attempts_after(csms: LoopbackCsms, record: ConnectionRecord) -> list[ConnectionRecord]:
    """Connection attempts that started after `record` (refused ones included), oldest first."""
    return [c for c in csms.connections_snapshot(STATION_ID) if c.connection_id > record.connection_id]


async def test_TC_B_57_reconnect_back_off(csms: LoopbackCsms, data_dir: Path) -> None:
    """TC_B_57_CS: RetryBackOffRepeatTimes 2, RandomRange 0, WaitMinimum 1 s.

    Step 2: after the CSMS closes the WebSocket the station reconnects no sooner than WaitMinimum (and soon
    after: within WaitMinimum + 1 s). Steps 4-6: closed again, reconnects after WaitMinimum, that attempt is
    refused (HTTP 503). Step 7: the next attempt comes at least twice the step-5 reconnection time later; step
    8 it is accepted. A plain reconnect sends no new BootNotification (Part 4 §5.3).
    """
    backoff = {
        "OCPPCommCtrlr.RetryBackOffRepeatTimes": 2,
        "OCPPCommCtrlr.RetryBackOffRandomRange": 0,
        "OCPPCommCtrlr.RetryBackOffWaitMinimum": WAIT_MINIMUM,
    }
    async with booted_station(csms, data_dir, variables=backoff):
        first = await csms.trio.wait_connected(STATION_ID)

        # Steps 1-3.
        assert await csms.trio.disconnect(STATION_ID)
        second = await csms.trio.wait_for(
            lambda: next((c for c in attempts_after(csms, first) if c.is_open), None),
            WAIT_MINIMUM + 5,
            what="the reconnection",
        )
        first = next(c for c in csms.connections_snapshot(STATION_ID) if c.connection_id == first.connection_id)
        assert first.closed_monotonic is not None
        step2 = second.opened_monotonic - first.closed_monotonic
        assert step2 >= WAIT_MINIMUM - SLACK, f"reconnected after {step2:.3f} s < RetryBackOffWaitMinimum"
        assert step2 <= WAIT_MINIMUM + 1, f"reconnected only after {step2:.3f} s"
        assert [c.connection_id for c in attempts_after(csms, first)] == [second.connection_id], "retried twice"

        # Steps 4-6: the next attempt is refused.
        csms.refuse_connections(True)
        assert await csms.trio.disconnect(STATION_ID)
        refused = await csms.trio.wait_for(
            lambda: next((c for c in attempts_after(csms, second) if c.http_status is not None), None),
            WAIT_MINIMUM + 5,
            what="the refused attempt",
        )
        csms.refuse_connections(False)
        assert refused.http_status == 503 and not refused.accepted
        second = next(c for c in csms.connections_snapshot(STATION_ID) if c.connection_id == second.connection_id)
        assert second.closed_monotonic is not None
        step5 = refused.opened_monotonic - second.closed_monotonic
        assert step5 >= WAIT_MINIMUM - SLACK, f"reconnected after {step5:.3f} s < RetryBackOffWaitMinimum"

        # Steps 7-8: doubled wait, then accepted.
        third = await csms.trio.wait_for(
            lambda: next((c for c in attempts_after(csms, refused) if c.is_open), None),
            4 * WAIT_MINIMUM + 5,
            what="the reconnection after the refused attempt",
        )
        assert [c.connection_id for c in attempts_after(csms, refused)] == [third.connection_id], "retried twice"
        step7 = third.opened_monotonic - refused.opened_monotonic
        assert step7 >= 2 * step5 - SLACK, f"step 7 waited {step7:.3f} s, step 5 {step5:.3f} s: not doubled"
        assert step7 <= 2 * WAIT_MINIMUM + 1, f"step 7 waited {step7:.3f} s"

        assert len(csms.actions(STATION_ID, "BootNotification")) == 1, "a reconnect is not a reboot"
        assert third.auth_ok
