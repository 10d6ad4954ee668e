"""Issue 8: a restart of the station process does not unplug the car (CONTRACT: simulated hardware).

A Reset (Immediate) re-executes the process; a SIGKILL is followed by a fresh start on the same data directory.
Either way, with an EV plugged in and charging before: the connector is reported Occupied after the boot,
`appliance sim status` still shows the EV (state C, the power it asked for), and the meter register — in the
simulator and in the meter values the CSMS received — has not gone backwards. The station then treats the EV
as plugged in at boot: TxStartPoint EVConnected starts a new transaction, and a card resumes the charging;
the journal verifies clean.
"""

from __future__ import annotations

import signal
from pathlib import Path
from typing import Any

import trio

from appliance.lab.csms import LoopbackCsms
from tests.conformance.helpers import STATION_ID
from tests.conformance.remote_helpers import (
    AUTH_ONLINE,
    TOKEN,
    WATTS,
    SimCliDriver,
    boot_mark,
    call,
    energy_transfer_started,
    incarnations,
    journal,
    station_proc,
    stop_proc,
    tx_events,
    wait_all_reported,
    wait_boot,
    wait_reexec,
    wait_tx_event,
    write_config,
)

EVSE = 1


def register(event: dict[str, Any]) -> float:
    """The last Energy.Active.Import.Register a TransactionEvent carries."""
    values = [
        float(s["value"])
        for mv in event.get("meterValue", [])
        for s in mv["sampledValue"]
        if s.get("measurand", "Energy.Active.Import.Register") == "Energy.Active.Import.Register"
    ]
    assert values, event
    return values[-1]


async def booted(csms: LoopbackCsms, since: int) -> dict[tuple[int, int], str]:
    """BootNotification after `since`, then every connector's status as reported after it."""
    await wait_boot(csms, since)
    return await wait_all_reported(csms, boot_mark(csms, since))


async def charging_before(csms: LoopbackCsms, driver: SimCliDriver) -> tuple[str, dict[str, Any]]:
    """EnergyTransferStarted on EVSE 1, a second of energy, and what `appliance sim status` says then."""
    tx_id = await energy_transfer_started(csms, driver, EVSE)
    await trio.sleep(1.0)
    status = await driver.run("status")
    assert status["evses"][0]["powerW"] > 0, status
    return tx_id, status["evses"][0]


async def still_plugged(
    csms: LoopbackCsms, driver: SimCliDriver, since: int, old_tx: str, before: dict[str, Any]
) -> None:
    """What the station and the simulator show after the restart (the module docstring's list)."""
    reported = await booted(csms, since)
    assert reported == {(1, 1): "Occupied", (2, 1): "Available"}, reported
    evse = (await driver.run("status"))["evses"][0]
    assert evse["evState"] == "C" and evse["requestedW"] == WATTS, evse
    assert evse["connectorStatus"] == "Occupied", evse
    assert evse["energyWh"] >= before["energyWh"], (evse, before)

    ended = await wait_tx_event(csms, since, "the old transaction's Ended", event_type="Ended", tx_id=old_tx)
    started = await wait_tx_event(csms, since, "a new Started", event_type="Started", trigger="CablePluggedIn")
    new_tx = started["transactionInfo"]["transactionId"]
    assert new_tx != old_tx and started["seqNo"] == 0, started
    assert started["evse"] == {"id": EVSE, "connectorId": 1}, started
    assert register(started) >= register(ended) >= before["energyWh"] - 0.001, (started, ended, before)
    # Plugged in, asking for energy, not yet authorized in this session: no energy offered.
    waiting = await wait_tx_event(csms, since, "SuspendedEVSE", tx_id=new_tx, charging_state="SuspendedEVSE")
    assert waiting["triggerReason"] == "ChargingStateChanged", waiting

    mark = csms.mark()
    await driver.tap(TOKEN, EVSE)
    await wait_tx_event(csms, mark, "Charging again", tx_id=new_tx, charging_state="Charging")
    await trio.sleep(0.5)
    after = (await driver.run("status"))["evses"][0]
    assert after["powerW"] > 0 and after["energyWh"] > evse["energyWh"], after
    code, verdict = await journal(driver.config_path, "verify")
    assert code == 0 and verdict["ok"] is True, verdict


async def test_reset_immediate_keeps_the_ev_plugged(csms: LoopbackCsms, data_dir: Path) -> None:
    config = write_config(data_dir, csms.url, variables=AUTH_ONLINE)
    driver = SimCliDriver(config)
    with station_proc(config) as proc:
        await booted(csms, 0)
        tx_id, before = await charging_before(csms, driver)
        mark, incarnation = csms.mark(), incarnations(proc)
        assert (await call(csms, "Reset", {"type": "Immediate"}))["status"] == "Accepted"
        await wait_reexec(proc, incarnation)
        await still_plugged(csms, driver, mark, tx_id, before)
        ended = next(e for e in tx_events(csms, mark, tx_id) if e["eventType"] == "Ended")
        assert ended["transactionInfo"]["stoppedReason"] == "ImmediateReset", ended
        assert await stop_proc(proc) == 0


async def test_sigkill_keeps_the_ev_plugged(csms: LoopbackCsms, data_dir: Path) -> None:
    config = write_config(data_dir, csms.url, variables=AUTH_ONLINE)
    driver = SimCliDriver(config)
    with station_proc(config) as proc:
        await booted(csms, 0)
        tx_id, before = await charging_before(csms, driver)
        await trio.to_thread.run_sync(proc.stop, signal.SIGKILL)
    await csms.trio.wait_disconnected(STATION_ID, 10)
    mark = csms.mark()
    with station_proc(config) as proc:
        await still_plugged(csms, driver, mark, tx_id, before)
        ended = next(e for e in tx_events(csms, mark, tx_id) if e["eventType"] == "Ended")
        assert ended["transactionInfo"]["stoppedReason"] == "PowerLoss", ended
        assert await stop_proc(proc) == 0
