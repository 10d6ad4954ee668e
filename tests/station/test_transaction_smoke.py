"""A whole local session against the real CSMS: plug, tap, charge, unplug — written ahead, delivered in order."""

from __future__ import annotations

from pathlib import Path

import trio

from appliance.lab.csms import LoopbackCsms
from tests.harness import make_config, running_station


async def test_plug_tap_charge_unplug(csms: LoopbackCsms, data_dir: Path) -> None:
    config = make_config(data_dir, csms, variables={"SampledDataCtrlr.TxUpdatedInterval": 1})
    async with running_station(config) as station:
        await csms.trio.wait_for(lambda: len(csms.actions("CS001", "StatusNotification")) >= 2, 10)
        hw = station.hardware
        await hw.plug(1)
        await hw.tap("04A1B2C3", evse_id=1)
        await csms.trio.wait_for(lambda: csms.actions("CS001", "Authorize"), 10)
        await hw.charge(1, watts=11000)
        await trio.sleep(2.5)
        await hw.unplug(1)
        events = await csms.trio.wait_for(
            lambda: (e := csms.actions("CS001", "TransactionEvent")) and e[-1]["eventType"] == "Ended" and e, 10
        )
    assert [e["seqNo"] for e in events] == list(range(len(events)))
    assert events[0]["eventType"] == "Started"
    assert events[0]["triggerReason"] == "CablePluggedIn"
    assert events[0]["evse"] == {"id": 1, "connectorId": 1}
    triggers = [e["triggerReason"] for e in events]
    assert "Authorized" in triggers and "MeterValuePeriodic" in triggers
    authorized = events[triggers.index("Authorized")]
    assert authorized["idToken"]["idToken"] == "04A1B2C3"
    assert events[-1]["transactionInfo"]["stoppedReason"] == "EVDisconnected"
    assert events[-1]["triggerReason"] == "EVCommunicationLost"
    assert events[-1]["transactionInfo"]["chargingState"] == "Idle"
    registers = [
        s["value"]
        for e in events
        for mv in e.get("meterValue", [])
        for s in mv["sampledValue"]
        if s["measurand"] == "Energy.Active.Import.Register"
    ]
    assert registers == sorted(registers) and registers[-1] > registers[0]
    assert len({e["transactionInfo"]["transactionId"] for e in events}) == 1
