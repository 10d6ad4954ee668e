"""A real station against the real CSMS: boot, status, Get/SetVariables."""

from __future__ import annotations

from pathlib import Path

from appliance.lab.csms import LoopbackCsms
from tests.harness import make_config, running_station


async def test_boot_status_and_variables(csms: LoopbackCsms, data_dir: Path) -> None:
    config = make_config(data_dir, csms)
    async with running_station(config) as station:
        boots = await csms.trio.wait_for(lambda: csms.actions("CS001", "BootNotification"), 10)
        assert boots[0]["reason"] == "PowerUp"
        await csms.trio.wait_for(lambda: len(csms.actions("CS001", "StatusNotification")) >= 2, 10)
        answer = await csms.trio.call(
            "CS001",
            "GetVariables",
            {"getVariableData": [{"component": {"name": "OCPPCommCtrlr"}, "variable": {"name": "HeartbeatInterval"}}]},
        )
        assert answer["getVariableResult"][0]["attributeValue"] == "300"
        assert station.link.online
