"""A device that goes silent (`DeviceFault`) faults its EVSE until it answers again (`DeviceRecovered`).

Driven through the simulator's `silence` / `revive` (the EVSE's controller board stops answering), against an
in-process station and the loopback CSMS: the connector is reported Faulted and no energy is offered; once the
controller answers, the station re-reads what happened meanwhile (the EV may have left) and carries on.
"""

from __future__ import annotations

from pathlib import Path

import trio

from appliance.lab.csms import LoopbackCsms
from tests.conformance.helpers import STATION_ID, booted_station
from tests.conformance.tx_helpers import (
    AUTH_ONLINE,
    EVSE,
    TOKEN,
    charging_session,
    request_start,
    tx_events,
    tx_id_of,
    wait_event,
    wait_status,
)


async def test_silent_controller_faults_the_evse_and_recovers(csms: LoopbackCsms, data_dir: Path) -> None:
    async with booted_station(csms, data_dir, variables=AUTH_ONLINE) as station:
        hw = station.hardware
        tx_id = await charging_session(csms, station)
        mark = csms.mark()
        await hw.silence(EVSE)
        await wait_status(csms, "Faulted", since=mark)
        suspended = await wait_event(csms, lambda e: True, since=mark)
        assert suspended["eventType"] == "Updated" and tx_id_of(suspended) == tx_id, suspended
        assert suspended["transactionInfo"]["chargingState"] == "SuspendedEVSE", suspended
        assert hw.offered_current(EVSE) == 0 and hw.evse_status(EVSE)["connectorStatus"] == "Faulted"

        mark = csms.mark()
        await hw.revive(EVSE)
        await wait_status(csms, "Occupied", since=mark)
        resumed = await wait_event(csms, lambda e: True, since=mark)
        assert resumed["transactionInfo"]["chargingState"] == "Charging", resumed
        assert hw.offered_current(EVSE) > 0


async def test_what_happened_while_silent_is_read_on_recovery(csms: LoopbackCsms, data_dir: Path) -> None:
    async with booted_station(csms, data_dir, variables=AUTH_ONLINE) as station:
        hw = station.hardware
        tx_id = await charging_session(csms, station)
        mark = csms.mark()
        await hw.silence(EVSE)
        await wait_status(csms, "Faulted", since=mark)
        assert (await hw.unplug(EVSE))[0] is None  # the station cannot hear of it
        assert station.runners[EVSE].state.tx is not None

        mark = csms.mark()
        await hw.revive(EVSE)
        await wait_status(csms, "Available", since=mark)
        ended = await wait_event(csms, lambda e: e["eventType"] == "Ended", since=mark)
        events = tx_events(csms, mark)
    assert tx_id_of(ended) == tx_id
    assert (
        ended["triggerReason"] == "EVCommunicationLost"
        and ended["transactionInfo"]["stoppedReason"] == "EVDisconnected"
    ), ended
    assert not [e for e in events if e["transactionInfo"].get("chargingState") == "Charging"], events


async def test_a_silent_evse_takes_no_new_session(csms: LoopbackCsms, data_dir: Path) -> None:
    """Faulted by a silent controller is Faulted for everyone: a card is refused locally (no AuthorizeRequest)
    and RequestStartTransaction is Rejected, until the controller answers again."""
    async with booted_station(csms, data_dir, variables=AUTH_ONLINE) as station:
        hw = station.hardware
        mark = csms.mark()
        await hw.silence(2)
        await wait_status(csms, "Faulted", evse_id=2, since=mark)
        await hw.tap(TOKEN, evse_id=2)
        with trio.fail_after(5):  # the card refused as unavailable (the display is not an event to wait on)
            while hw.evse_status(2)["indication"] != "unavailable":  # noqa: ASYNC110
                await trio.sleep(0.01)
        answer = await request_start(csms, 7, evse_id=2)
        assert answer["status"] == "Rejected", answer
        assert csms.actions(STATION_ID, "Authorize", mark) == []

        await hw.revive(2)
        await wait_status(csms, "Available", evse_id=2, since=mark)
        assert (await request_start(csms, 8, evse_id=2))["status"] == "Accepted"
