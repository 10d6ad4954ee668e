"""Part 6 G availability: connector status notifications on plug-in (TC_G_01) and unplug (TC_G_02).

The EV is driven through the in-process simulated hardware (`station.hardware.plug/unplug`), which the station
handles exactly as real hardware events.
"""

from __future__ import annotations

from pathlib import Path

from appliance.lab.csms import LoopbackCsms
from appliance.station import Station
from tests.conformance.helpers import STATION_ID, booted_station, statuses


async def wait_status(csms: LoopbackCsms, evse: int, status: str, since: int) -> dict:
    """The first StatusNotification for (evse, connector 1) with `status` after frame `since`."""

    def found() -> dict | None:
        wanted = (evse, 1, status)
        matches = (p for p in statuses(csms, since) if (p["evseId"], p["connectorId"], p["connectorStatus"]) == wanted)
        return next(matches, None)

    return await csms.trio.wait_for(found, 10, what=f"EVSE {evse} {status}")


async def plug_in(csms: LoopbackCsms, station: Station, evse: int) -> dict:
    """Reusable State EVConnectedPreSession, step 1: connect the EV; the connector is reported Occupied."""
    mark = csms.mark()
    await station.hardware.plug(evse)
    return await wait_status(csms, evse, "Occupied", mark)


async def test_TC_G_01_connector_available_to_occupied(csms: LoopbackCsms, data_dir: Path) -> None:
    """TC_G_01_CS (G01.FR.01) = Reusable State EVConnectedPreSession on EVSE 1.

    Step 1: StatusNotification evseId 1, connectorId 1, Occupied (the other connector is not reported: it did
    not change). Step 3, as TxStartPoint contains EVConnected (the default EVConnected,Authorized): a
    TransactionEvent Started, triggerReason CablePluggedIn, chargingState EVConnected, evse 1 / connector 1.
    """
    async with booted_station(csms, data_dir) as station:
        mark = csms.mark()
        notification = await plug_in(csms, station, 1)
        assert notification["timestamp"].endswith("Z")
        assert [p["evseId"] for p in statuses(csms, mark)] == [1]
        [started] = await csms.trio.wait_action(STATION_ID, "TransactionEvent", 10, since=mark)
        assert started["eventType"] == "Started"
        assert started["triggerReason"] in ("CablePluggedIn", "ChargingStateChanged")
        assert started["transactionInfo"]["chargingState"] == "EVConnected"
        assert started["evse"] == {"id": 1, "connectorId": 1}


async def test_TC_G_02_connector_occupied_to_available(csms: LoopbackCsms, data_dir: Path) -> None:
    """TC_G_02_CS (G01.FR.01): from EVConnectedPreSession, the EV is disconnected → StatusNotification evseId 1,
    connectorId 1, Available (step 3). The transaction the plug-in started ends with it (general tool rule:
    after disconnecting, queued TransactionEvents are reported): TransactionEvent Ended, stoppedReason
    EVDisconnected (TxStopPoint EVConnected)."""
    async with booted_station(csms, data_dir) as station:
        before = csms.mark()
        await plug_in(csms, station, 1)
        [started] = await csms.trio.wait_action(STATION_ID, "TransactionEvent", 10, since=before)
        mark = csms.mark()
        await station.hardware.unplug(1)
        notification = await wait_status(csms, 1, "Available", mark)
        assert notification["timestamp"].endswith("Z")
        assert [p["connectorStatus"] for p in statuses(csms, mark)] == ["Available"]
        [ended] = await csms.trio.wait_action(STATION_ID, "TransactionEvent", 10, since=mark)
        assert ended["eventType"] == "Ended"
        assert ended["transactionInfo"]["transactionId"] == started["transactionInfo"]["transactionId"]
        assert ended["transactionInfo"].get("stoppedReason") == "EVDisconnected"
