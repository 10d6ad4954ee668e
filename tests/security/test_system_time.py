"""SettingSystemTime (A04, Part 2 appendix: ClockCtrlr.TimeAdjustmentReportingThreshold): a station clock that
moves by more than the threshold to follow the CSMS's currentTime raises the critical security event, journaled
and delivered; the usual sub-second corrections of every Heartbeat raise nothing."""

from __future__ import annotations

import re
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

from appliance.lab.csms import LoopbackCsms
from appliance.timetext import format_timestamp
from tests.conformance.helpers import STATION_ID, booted_station
from tests.conformance.remote_helpers import call, security_events


def _answer_ahead(offset: timedelta) -> Any:
    def boot(station_id: str, payload: dict[str, Any]) -> dict[str, Any]:
        return {
            "currentTime": format_timestamp((datetime.now(UTC) + offset).timestamp()),
            "interval": 300,
            "status": "Accepted",
        }

    return boot


def _system_time_events(csms: LoopbackCsms, since: int) -> list[dict[str, Any]]:
    return [e for e in security_events(csms, since) if e["type"] == "SettingSystemTime"]


def _moved(event: dict[str, Any]) -> float:
    match = re.fullmatch(r"station clock moved by ([+-][0-9.]+) s to follow the CSMS", event["techInfo"])
    assert match, event
    return float(match.group(1))


async def test_a_clock_jump_over_the_threshold_is_a_security_event(csms: LoopbackCsms, data_dir: Path) -> None:
    csms.set_response("BootNotification", _answer_ahead(timedelta(minutes=5)))
    mark = csms.mark()
    async with booted_station(csms, data_dir) as station:
        await csms.trio.wait_for(lambda: _system_time_events(csms, mark), 10, what="SettingSystemTime")
        [event] = _system_time_events(csms, mark)
        assert 295 < _moved(event) < 305  # +300 s, give or take the round trip
        assert abs(station.clock.timestamp() - (datetime.now(UTC) + timedelta(minutes=5)).timestamp()) < 5
        csms.set_response("BootNotification", None)
        heartbeat_mark = csms.mark()
        await call(csms, "TriggerMessage", {"requestedMessage": "Heartbeat"})  # the CSMS's own time: 5 min back
        await csms.trio.wait_for(lambda: _system_time_events(csms, heartbeat_mark), 10, what="SettingSystemTime")
        assert -305 < _moved(_system_time_events(csms, heartbeat_mark)[0]) < -295
        quiet_mark = csms.mark()
        for _ in range(3):  # in step with the CSMS now: only the round trip's milliseconds
            await call(csms, "TriggerMessage", {"requestedMessage": "Heartbeat"})
            await csms.trio.wait_action(STATION_ID, "Heartbeat", 5, since=quiet_mark)
            quiet_mark = csms.mark()
        await call(
            csms, "TriggerMessage", {"requestedMessage": "StatusNotification", "evse": {"id": 1, "connectorId": 1}}
        )
        await csms.trio.wait_action(STATION_ID, "StatusNotification", 5, since=quiet_mark)
    assert len(_system_time_events(csms, mark)) == 2


async def test_a_jump_within_the_threshold_is_not_reported(csms: LoopbackCsms, data_dir: Path) -> None:
    csms.set_response("BootNotification", _answer_ahead(timedelta(seconds=15)))  # the default threshold is 20 s
    mark = csms.mark()
    async with booted_station(csms, data_dir) as station:
        await csms.trio.wait_action(STATION_ID, "SecurityEventNotification", 10, since=mark)  # the startup event
        assert abs(station.clock.timestamp() - datetime.now(UTC).timestamp() - 15) < 2  # the clock did move
        mark_sent = csms.mark()
        await call(
            csms, "TriggerMessage", {"requestedMessage": "StatusNotification", "evse": {"id": 1, "connectorId": 1}}
        )
        await csms.trio.wait_action(STATION_ID, "StatusNotification", 5, since=mark_sent)
    assert _system_time_events(csms, mark) == []
