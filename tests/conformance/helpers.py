"""Small helpers shared by the conformance tests (and the station tests that use the same steps).

Everything here drives a real station against the real loopback CSMS; blocking CSMS methods are only reached
through `csms.trio` so the Trio loop (and the in-process station) keeps running.
"""

from __future__ import annotations

import contextlib
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

from appliance.lab.csms import LoopbackCsms, RecordedFrame
from appliance.station import Station
from tests.harness import make_config, running_station

STATION_ID = "CS001"
#: The default layout of the harness config: EVSE 1 and 2, one connector each.
CONNECTORS = ((1, 1), (2, 1))
#: Measurement slack for real-time checks (scheduling, loopback round trips), in seconds.
SLACK = 0.15


def station_calls(csms: LoopbackCsms, since: int = 0, station_id: str = STATION_ID) -> list[RecordedFrame]:
    """Every CALL the station sent after frame `since`, oldest first."""
    return [f for f in csms.frames_snapshot(station_id, since) if f.direction == "in" and f.is_call]


def statuses(csms: LoopbackCsms, since: int = 0, station_id: str = STATION_ID) -> list[dict[str, Any]]:
    """StatusNotification payloads the station sent after frame `since`."""
    return csms.actions(station_id, "StatusNotification", since)


def reported_all_connectors(csms: LoopbackCsms, status: str = "Available", since: int = 0) -> bool:
    """Post-scenario validation of TC_B_01/02/03: every connector's state was reported (StatusNotification)."""
    seen = {(p["evseId"], p["connectorId"]) for p in statuses(csms, since) if p["connectorStatus"] == status}
    return all(connector in seen for connector in CONNECTORS)


async def wait_all_connectors_reported(
    csms: LoopbackCsms, status: str = "Available", since: int = 0, timeout: float = 10
) -> None:
    await csms.trio.wait_for(
        lambda: reported_all_connectors(csms, status, since), timeout, what=f"all connectors reported {status}"
    )


@contextlib.asynccontextmanager
async def booted_station(csms: LoopbackCsms, data_dir: Path, **config: Any) -> AsyncIterator[Station]:
    """A station running in-process (config from the harness, FAST timings, `config` overrides) that has been
    Accepted and has reported every connector: the Part 6 general precondition "Booted, Idle". Only frames
    after this call count, so a second station on the same CSMS waits for its own boot."""
    mark = csms.mark()
    async with running_station(make_config(data_dir, csms, **config)) as station:
        await csms.trio.wait_action(STATION_ID, "BootNotification", 10, since=mark)
        await wait_all_connectors_reported(csms, since=mark)
        yield station


def variable(
    component: str, name: str, *, instance: str | None = None, evse: int | None = None, connector: int | None = None
) -> dict[str, Any]:
    """The component/variable part of a Get/SetVariableData item."""
    comp: dict[str, Any] = {"name": component}
    if evse is not None:
        comp["evse"] = {"id": evse} if connector is None else {"id": evse, "connectorId": connector}
    var: dict[str, Any] = {"name": name}
    if instance is not None:
        var["instance"] = instance
    return {"component": comp, "variable": var}


def get_item(component: str, name: str, attribute_type: str | None = None, **kw: Any) -> dict[str, Any]:
    item = variable(component, name, **kw)
    if attribute_type is not None:
        item["attributeType"] = attribute_type
    return item


def set_item(component: str, name: str, value: str, attribute_type: str | None = None, **kw: Any) -> dict[str, Any]:
    item = get_item(component, name, attribute_type, **kw)
    item["attributeValue"] = value
    return item


async def get_variables(csms: LoopbackCsms, *items: dict[str, Any], **kw: Any) -> list[dict[str, Any]]:
    answer = await csms.trio.call(STATION_ID, "GetVariables", {"getVariableData": list(items)}, **kw)
    return answer["getVariableResult"]


async def set_variables(csms: LoopbackCsms, *items: dict[str, Any], **kw: Any) -> list[dict[str, Any]]:
    answer = await csms.trio.call(STATION_ID, "SetVariables", {"setVariableData": list(items)}, **kw)
    return answer["setVariableResult"]


async def get_value(csms: LoopbackCsms, component: str, name: str, **kw: Any) -> str | None:
    """The Actual value the station reports, asserting the Get itself was Accepted."""
    [result] = await get_variables(csms, get_item(component, name, **kw))
    assert result["attributeStatus"] == "Accepted", result
    return result.get("attributeValue")


def no_error_info(result: dict[str, Any]) -> bool:
    """Part 6's recurring check: attributeStatusInfo is absent or its reasonCode is NoError."""
    info = result.get("attributeStatusInfo")
    return info is None or info.get("reasonCode") == "NoError"
