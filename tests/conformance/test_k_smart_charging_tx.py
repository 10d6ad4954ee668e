"""Part 6 K (smart charging) with a transaction: TC_K_06, K_09, K_16, K_28, K_41, K_60 (SetChargingProfile,
ClearChargingProfile and GetCompositeSchedule during EnergyTransferStarted), TC_K_37 (RequestStartTransaction
with a TxProfile; it replaces TC_K_38 "ignore the chargingProfile", which is for stations without smart
charging), and end to end: the limit reaches the simulated hardware and the EV's power follows it within a
second, shown in Current.Offered / Power.Offered and in the simulator's status; a TxProfile goes with its
transaction.

The EV asks for 11 kW on EVSE 1 (three-phase, 32 A, 230 V); 6 A on three phases allow at most 4,140 W.
"""

from __future__ import annotations

from datetime import timedelta
from pathlib import Path
from typing import Any

import trio

from appliance.lab.csms import LoopbackCsms
from appliance.station import Station
from tests.conformance.helpers import STATION_ID
from tests.conformance.k_helpers import (
    DEVIATION,
    EVSE,
    composite,
    get_profiles,
    install,
    iso,
    near,
    now,
    periods,
    profile,
    reported,
    seconds,
    set_profile,
    shift,
)
from tests.conformance.remote_helpers import (
    AUTH_ONLINE,
    TOKEN,
    TOKEN_TYPE,
    HardwareDriver,
    call,
    energy_transfer_started,
    station_up,
    wait_tx_event,
)

SIX_A_W = 6 * 3 * 230.0
#: The simulated meter's voltage ripple (±1 %): an EV drawing exactly the offered current shows up to 1 % more power.
RIPPLE = 1.011


async def charging(csms: LoopbackCsms, station: Station) -> str:
    """Reusable State EnergyTransferStarted on EVSE 1; the transactionId."""
    return await energy_transfer_started(csms, HardwareDriver(station), EVSE)


async def power_at_most(station: Station, watts: float, within: float = 1.0) -> float:
    """The EV's drawn power (the simulated meter) falls to `watts` or less (give or take the voltage ripple) within
    `within` seconds."""
    hw: Any = station.hardware
    with trio.fail_after(within):
        while (power := hw.read_meter(EVSE).power_w) > watts * RIPPLE:  # noqa: ASYNC110 - polling the simulated meter
            await trio.sleep(0.01)
    return float(power)


async def test_TC_K_06_clear_by_criteria_during_transaction(csms: LoopbackCsms, data_dir: Path) -> None:
    """TC_K_06_CS (K10.FR.04): a TxDefaultProfile (stackLevel 1) while charging; ClearChargingProfile by purpose
    and stackLevel → Accepted; GetChargingProfiles with the same criteria → NoProfiles; the EV may draw its
    11 kW again."""
    async with station_up(csms, data_dir) as station:
        await charging(csms, station)
        await install(csms, EVSE, profile(51, stack=1))
        await power_at_most(station, SIX_A_W)
        criteria = {"chargingProfilePurpose": "TxDefaultProfile", "stackLevel": 1}
        answer = await call(csms, "ClearChargingProfile", {"chargingProfileCriteria": criteria})
        assert answer["status"] == "Accepted", answer
        assert (await get_profiles(csms, criteria))[0]["status"] == "NoProfiles"
        hw: Any = station.hardware
        with trio.fail_after(2):
            while hw.read_meter(EVSE).power_w < 10_000:  # noqa: ASYNC110 - polling the simulated meter
                await trio.sleep(0.01)


async def test_TC_K_09_clear_tx_default_during_transaction(csms: LoopbackCsms, data_dir: Path) -> None:
    """TC_K_09_CS (K10.FR.07): LimitChangeSignificance 1.0; a TxDefaultProfile of 6 A while charging: the
    composite is 6 A from 0; after ClearChargingProfile(TxDefaultProfile) → Accepted it is the local limit
    (not 6)."""
    async with station_up(csms, data_dir, variables={"SmartChargingCtrlr.LimitChangeSignificance": 1.0}) as station:
        await charging(csms, station)
        sent = now()
        await install(
            csms,
            EVSE,
            profile(
                52,
                valid_from=sent - seconds(DEVIATION),
                valid_to=sent + seconds(DEVIATION + 401),
                start=sent,
                duration=400 + DEVIATION,
            ),
        )
        answer = await composite(csms, EVSE, 300)
        assert answer["status"] == "Accepted" and answer["schedule"]["duration"] == 300
        assert periods(answer)[0] == (0, 6.0)
        cleared = await call(
            csms, "ClearChargingProfile", {"chargingProfileCriteria": {"chargingProfilePurpose": "TxDefaultProfile"}}
        )
        assert cleared["status"] == "Accepted"
        after = periods(await composite(csms, EVSE, 300))
        assert after == [(0, 32.0)], after


async def test_TC_K_16_unknown_transaction_id(csms: LoopbackCsms, data_dir: Path) -> None:
    """TC_K_16_CS (K01.FR.33): while charging, a TxProfile for UNKNOWN-TRANSACTION-ID → Rejected; one without a
    transactionId → Rejected too."""
    async with station_up(csms, data_dir) as station:
        await charging(csms, station)
        answer = await set_profile(csms, EVSE, profile(53, "TxProfile", kind="Relative", tx="UNKNOWN-TRANSACTION-ID"))
        assert answer["status"] == "Rejected" and answer["statusInfo"]["reasonCode"] == "TxNotFound", answer
        assert (await set_profile(csms, EVSE, profile(53, "TxProfile", kind="Relative")))["status"] == "Rejected"


async def test_TC_K_28_tx_default_with_transaction(csms: LoopbackCsms, data_dir: Path) -> None:
    """TC_K_28_CS (K01.FR.32): a TxDefaultProfile (Absolute, 6 A, 300 s) while charging → Accepted; the
    composite over 300 s starts with 6 A; the EV's power follows within a second."""
    async with station_up(csms, data_dir, variables={"SmartChargingCtrlr.LimitChangeSignificance": 1.0}) as station:
        await charging(csms, station)
        sent = now()
        await install(
            csms,
            EVSE,
            profile(
                54,
                duration=300,
                valid_from=sent - seconds(DEVIATION),
                valid_to=sent + seconds(DEVIATION + 300),
                start=sent - seconds(DEVIATION),
            ),
        )
        await power_at_most(station, SIX_A_W)
        answer = await composite(csms, EVSE, 300)
        assert periods(answer)[0] == (0, 6.0), periods(answer)


async def test_TC_K_41_composite_combining_purposes(csms: LoopbackCsms, data_dir: Path) -> None:
    """TC_K_41_CS (K08.FR.02/04): ChargingStationMaxProfile 10 A; TxDefaultProfile 6/10/8/15/8 A from
    0/60/120/180/260 s (300 s); TxProfile 8/11/16/6/12 A from 0/50/140/200/240 s (260 s): the composite over
    400 s is 8, 10 from (50 - x), 6 from (200 - x), 10 from (240 - x) — then the TxDefaultProfile's 8 A for its
    last 40 s, and 10 A again (Part 6 lists the first four)."""
    async with station_up(csms, data_dir) as station:
        tx_id = await charging(csms, station)
        sent = now()
        start = sent - seconds(DEVIATION)
        valid = {"valid_from": start, "valid_to": sent + seconds(DEVIATION + 401), "start": start}
        await install(
            csms, 0, profile(55, "ChargingStationMaxProfile", periods=((0, 10.0),), duration=86400, start=start)
        )
        await install(
            csms,
            EVSE,
            profile(
                56,
                periods=tuple(zip((0, 60, 120, 180, 260), (6.0, 10.0, 8.0, 15.0, 8.0), strict=True)),
                duration=300,
                **valid,
            ),
        )
        await install(
            csms,
            EVSE,
            profile(
                57,
                "TxProfile",
                tx=tx_id,
                duration=260,
                **valid,
                periods=tuple(zip((0, 50, 140, 200, 240), (8.0, 11.0, 16.0, 6.0, 12.0), strict=True)),
            ),
        )
        answer = await composite(csms, EVSE, 400)
        x = shift(answer, start)
        assert near(
            periods(answer),
            [(0, 8.0), (50 - x, 10.0), (200 - x, 6.0), (240 - x, 10.0), (260 - x, 8.0), (300 - x, 10.0)],
        ), (x, periods(answer))


async def test_TC_K_60_tx_profile_for_running_transaction(csms: LoopbackCsms, data_dir: Path) -> None:
    """TC_K_60_CS (K01.FR.04/07/15): a Relative TxProfile with the running transaction's id, 6 A → Accepted;
    reported by id as set; the EV's power follows within a second, Current.Offered shows 6 A in the
    ChargingRateChanged event, and the simulator's status offers 6 A."""
    async with station_up(csms, data_dir) as station:
        tx_id = await charging(csms, station)
        mark = csms.mark()
        raw = profile(58, "TxProfile", kind="Relative", tx=tx_id)
        await install(csms, EVSE, raw)
        await power_at_most(station, SIX_A_W)
        answer, reports = await get_profiles(csms, {"chargingProfileId": [58]})
        assert answer["status"] == "Accepted"
        assert reported(reports) == [(EVSE, raw)]
        event = await wait_tx_event(csms, mark, "ChargingRateChanged", trigger="ChargingRateChanged", tx_id=tx_id)
        offered = {
            s["measurand"]: s["value"]
            for mv in event["meterValue"]
            for s in mv["sampledValue"]
            if s.get("measurand") in ("Current.Offered", "Power.Offered")
        }
        assert offered["Current.Offered"] == 6.0, event
        assert abs(offered["Power.Offered"] - SIX_A_W) < 100, event  # at the measured, not the nominal, voltage
        hw: Any = station.hardware
        [evse] = [e for e in hw.status()["evses"] if e["evseId"] == EVSE]
        assert evse["offeredCurrentA"] == 6.0, evse


async def test_TC_K_37_remote_start_with_charging_profile(csms: LoopbackCsms, data_dir: Path) -> None:
    """TC_K_37_CS (K05.FR.03, E01.FR.02, F01.FR.10/13): from EVConnectedPreSession, RequestStartTransaction with
    a Relative TxProfile (6 A, no transactionId) → Accepted with the transactionId of the running transaction;
    AuthorizeRequest; TransactionEvent RemoteStart with remoteStartId; EnergyTransferStarted — at no more than
    6 A; GetChargingProfiles by the profile's id reports the profile as set."""
    async with station_up(csms, data_dir, variables=AUTH_ONLINE) as station:
        mark = csms.mark()
        hw: Any = station.hardware
        await hw.plug(EVSE)
        started = await wait_tx_event(csms, mark, "Started", event_type="Started")
        tx_id = started["transactionInfo"]["transactionId"]
        raw = profile(59, "TxProfile", kind="Relative")
        answer = await call(
            csms,
            "RequestStartTransaction",
            {
                "idToken": {"idToken": TOKEN, "type": TOKEN_TYPE},
                "remoteStartId": 4711,
                "evseId": EVSE,
                "chargingProfile": raw,
            },
        )
        assert answer["status"] == "Accepted" and answer.get("transactionId") == tx_id, answer
        [authorize] = await csms.trio.wait_action(STATION_ID, "Authorize", since=mark)
        assert authorize["idToken"] == {"idToken": TOKEN, "type": TOKEN_TYPE}, authorize
        remote = await wait_tx_event(csms, mark, "RemoteStart", trigger="RemoteStart", tx_id=tx_id)
        assert remote["transactionInfo"].get("remoteStartId") == 4711, remote
        await hw.charge(EVSE, watts=11000)
        await wait_tx_event(csms, mark, "Charging", tx_id=tx_id, charging_state="Charging")
        await trio.sleep(0.3)
        assert hw.read_meter(EVSE).offered_current_a == 6.0
        assert hw.read_meter(EVSE).power_w <= SIX_A_W * RIPPLE
        answer, reports = await get_profiles(csms, {"chargingProfileId": [59]})
        assert answer["status"] == "Accepted"
        assert reported(reports) == [(EVSE, raw)]


async def test_remote_start_with_invalid_profile_is_rejected(csms: LoopbackCsms, data_dir: Path) -> None:
    """A RequestStartTransaction whose chargingProfile is not a TxProfile → Rejected, and no session starts."""
    async with station_up(csms, data_dir, variables=AUTH_ONLINE):
        mark = csms.mark()
        answer = await call(
            csms,
            "RequestStartTransaction",
            {
                "idToken": {"idToken": TOKEN, "type": TOKEN_TYPE},
                "remoteStartId": 1,
                "evseId": EVSE,
                "chargingProfile": profile(60, "TxDefaultProfile"),
            },
        )
        assert answer["status"] == "Rejected", answer
        await trio.sleep(0.3)
        assert csms.actions(STATION_ID, "Authorize", mark) == []


async def test_lowered_limit_followed_within_a_second_and_tx_profile_ends_with_its_transaction(
    csms: LoopbackCsms, data_dir: Path
) -> None:
    """End to end: charging at 11 kW, a ChargingStationMaxProfile of 16 A, then a TxProfile of 6 A: each time
    the EV's power is at or under the new limit within a second. When the transaction ends its TxProfile is
    removed (GetChargingProfiles: only the station's profile is left) and a new session gets 16 A."""
    async with station_up(csms, data_dir) as station:
        hw: Any = station.hardware
        tx_id = await charging(csms, station)
        await install(csms, 0, profile(61, "ChargingStationMaxProfile", periods=((0, 16.0),)))
        await power_at_most(station, 16 * 3 * 230.0)
        await install(csms, EVSE, profile(62, "TxProfile", kind="Relative", tx=tx_id))
        assert await power_at_most(station, SIX_A_W) > 0  # still charging, at the lower rate
        mark = csms.mark()
        await hw.unplug(EVSE)
        await wait_tx_event(csms, mark, "Ended", event_type="Ended", tx_id=tx_id)
        with trio.fail_after(2):
            while True:
                _, reports = await get_profiles(csms, {})
                if [p["id"] for _, p in reported(reports)] == [61]:
                    break
                await trio.sleep(0.05)
        await charging(csms, station)
        await trio.sleep(0.3)
        assert hw.read_meter(EVSE).offered_current_a == 16.0


async def test_period_boundary_reaches_the_hardware(csms: LoopbackCsms, data_dir: Path) -> None:
    """Beyond Part 6: a TxDefaultProfile of 6 A now and 10 A from its second period (2 s later): the controller
    offers 6 A first, then 10 A, without any further request."""
    async with station_up(csms, data_dir) as station:
        hw: Any = station.hardware
        await charging(csms, station)
        await install(csms, EVSE, profile(63, periods=((0, 6.0), (2, 10.0))))
        await power_at_most(station, SIX_A_W)
        assert hw.read_meter(EVSE).offered_current_a == 6.0
        with trio.fail_after(4):
            while hw.read_meter(EVSE).offered_current_a != 10.0:  # noqa: ASYNC110 - polling the simulated meter
                await trio.sleep(0.02)


async def test_disabled_smart_charging(csms: LoopbackCsms, data_dir: Path) -> None:
    """Beyond Part 6: SmartChargingCtrlr.Enabled false: the installed 6 A profile no longer limits the EVSE
    (the EV draws its 11 kW again), a new profile is Rejected (NotEnabled); true again: 6 A again."""
    async with station_up(csms, data_dir) as station:
        hw: Any = station.hardware
        await charging(csms, station)
        await install(csms, EVSE, profile(64))
        await power_at_most(station, SIX_A_W)
        [result] = (
            await call(
                csms,
                "SetVariables",
                {
                    "setVariableData": [
                        {
                            "component": {"name": "SmartChargingCtrlr"},
                            "variable": {"name": "Enabled"},
                            "attributeValue": "false",
                        }
                    ]
                },
            )
        )["setVariableResult"]
        assert result["attributeStatus"] == "Accepted", result
        with trio.fail_after(2):
            while hw.read_meter(EVSE).power_w < 10_000:  # noqa: ASYNC110 - polling the simulated meter
                await trio.sleep(0.02)
        answer = await set_profile(csms, EVSE, profile(65, stack=1))
        assert answer["status"] == "Rejected" and answer["statusInfo"]["reasonCode"] == "NotEnabled", answer
        await call(
            csms,
            "SetVariables",
            {
                "setVariableData": [
                    {
                        "component": {"name": "SmartChargingCtrlr"},
                        "variable": {"name": "Enabled"},
                        "attributeValue": "true",
                    }
                ]
            },
        )
        await power_at_most(station, SIX_A_W)


async def test_station_maximum_shared_between_charging_evses(csms: LoopbackCsms, data_dir: Path) -> None:
    """Beyond Part 6: a ChargingStationMaxProfile of 10 A on three phases (6,900 W) with both EVSEs charging at
    11 kW: EVSE 2 (single-phase) keeps its 10 A (2,300 W), EVSE 1 gets the rest (4,600 W, 6.67 A), so the two
    together draw no more than the station maximum."""
    async with station_up(csms, data_dir) as station:
        hw: Any = station.hardware
        driver = HardwareDriver(station)
        await energy_transfer_started(csms, driver, 1)
        await energy_transfer_started(csms, driver, 2)
        await install(csms, 0, profile(66, "ChargingStationMaxProfile", periods=((0, 10.0),)))
        with trio.fail_after(2):
            while hw.read_meter(1).power_w + hw.read_meter(2).power_w > 6900 * RIPPLE:  # noqa: ASYNC110 - polling the meters
                await trio.sleep(0.02)
        assert hw.read_meter(2).offered_current_a == 10.0
        assert abs(hw.read_meter(1).offered_current_a - 4600 / 690) < 0.01
        assert hw.read_meter(1).power_w > 4000  # EVSE 1 still charges, at its share


async def test_a_station_clock_correction_moves_the_next_boundary_at_once(csms: LoopbackCsms, data_dir: Path) -> None:
    """Beyond Part 6: 6 A now, 10 A from ten minutes on. The CSMS's Heartbeat then sets the station clock eleven
    minutes ahead: the offer follows to 10 A at once, not at the block's next periodic re-check (30 s)."""
    async with station_up(csms, data_dir) as station:
        hw: Any = station.hardware
        await charging(csms, station)
        await install(csms, EVSE, profile(65, periods=((0, 6.0), (600, 10.0))))
        await power_at_most(station, SIX_A_W)
        ahead = timedelta(minutes=11)
        csms.set_response("Heartbeat", lambda station_id, payload: {"currentTime": iso(now() + ahead)})
        await call(csms, "TriggerMessage", {"requestedMessage": "Heartbeat"})
        with trio.fail_after(5):
            while hw.read_meter(EVSE).offered_current_a != 10.0:  # noqa: ASYNC110 - polling the simulated meter
                await trio.sleep(0.02)
        csms.set_response("Heartbeat", None)
