"""Part 6 K (smart charging) without a transaction: K01 SetChargingProfile (TC_K_01/02/03/04/10/11/12/13/14/19/21/
22/23), K09 GetChargingProfiles (TC_K_29…K_36), K10 ClearChargingProfile (TC_K_05/07/08/24), K08
GetCompositeSchedule (TC_K_39/40/42/47). The cases with a transaction are in test_k_smart_charging_tx.py.

<Configured evseId> is EVSE 1 (three-phase, 32 A at 230 V); <Configured chargingRateUnit> is A unless the case
is about W; <Configured numberPhases> 3. Part 6's x (the time between setting a profile and the composite's
scheduleStart) is measured from the answers, and a period's start is accepted within 2 s of where Part 6 puts it.
"""

from __future__ import annotations

from pathlib import Path

from appliance.lab.csms import LoopbackCsms
from tests.conformance.k_helpers import (
    DEVIATION,
    EVSE,
    composite,
    get_profiles,
    install,
    near,
    now,
    periods,
    profile,
    reported,
    seconds,
    set_profile,
    shift,
)
from tests.conformance.remote_helpers import station_up

RATE_A_ONLY = {"SmartChargingCtrlr.RateUnit": "A"}
#: EVSE 1's local limit: 32 A, or 32 A × 3 × 230 V.
LOCAL_A, LOCAL_W = 32.0, 22080.0


# --- K01 SetChargingProfile -------------------------------------------------------------------------------------


async def test_TC_K_01_tx_default_profile_specific_evse(csms: LoopbackCsms, data_dir: Path) -> None:
    """TC_K_01_CS (K01.FR.07/15): a TxDefaultProfile on EVSE 1 (6 A, duration 300) → Accepted; GetChargingProfiles
    by its id → Accepted and a ReportChargingProfiles with the requestId, evseId 1 and the same profile."""
    async with station_up(csms, data_dir):
        raw = profile(11, duration=300)
        await install(csms, EVSE, raw)
        answer, reports = await get_profiles(csms, {"chargingProfileId": [11]})
        assert answer["status"] == "Accepted", answer
        assert reported(reports) == [(EVSE, raw)]


async def test_TC_K_02_tx_profile_without_transaction(csms: LoopbackCsms, data_dir: Path) -> None:
    """TC_K_02_CS (K01.FR.04/07/09): a TxProfile for transaction UNKNOWN-TRANSACTION-ID on an idle EVSE →
    Rejected; nothing is installed."""
    async with station_up(csms, data_dir):
        answer = await set_profile(csms, EVSE, profile(12, "TxProfile", kind="Relative", tx="UNKNOWN-TRANSACTION-ID"))
        assert answer["status"] == "Rejected", answer
        assert answer["statusInfo"]["reasonCode"] == "TxNotFound", answer
        assert (await get_profiles(csms, {}))[0]["status"] == "NoProfiles"


async def test_TC_K_03_charging_station_max_profile(csms: LoopbackCsms, data_dir: Path) -> None:
    """TC_K_03_CS: a ChargingStationMaxProfile on evseId 0 (Absolute, 6000 W) → Accepted and reported back
    with evseId 0; the same purpose on an EVSE is Rejected (it limits the whole station)."""
    async with station_up(csms, data_dir):
        raw = profile(13, "ChargingStationMaxProfile", unit="W", periods=((0, 6000.0),), duration=300)
        await install(csms, 0, raw)
        answer, reports = await get_profiles(csms, {"chargingProfileId": [13]})
        assert answer["status"] == "Accepted", answer
        assert reported(reports) == [(0, raw)]
        assert (await set_profile(csms, EVSE, profile(14, "ChargingStationMaxProfile")))["status"] == "Rejected"


async def test_TC_K_04_replace_profile_with_same_id(csms: LoopbackCsms, data_dir: Path) -> None:
    """TC_K_04_CS (K01.FR.05): a TxDefaultProfile with the id of an installed one (6 A) and limit 10 A replaces
    it: the report shows only the new one; the composite follows it."""
    async with station_up(csms, data_dir):
        await install(csms, EVSE, profile(15, periods=((0, 6.0),)))
        new = profile(15, periods=((0, 10.0),))
        await install(csms, EVSE, new)
        answer, reports = await get_profiles(csms, {"chargingProfileId": [15]})
        assert answer["status"] == "Accepted"
        assert reported(reports) == [(EVSE, new)]
        assert periods(await composite(csms, EVSE, 60)) == [(0, 10.0)]


async def test_TC_K_10_tx_default_profile_all_evse(csms: LoopbackCsms, data_dir: Path) -> None:
    """TC_K_10_CS (K01.FR.07/14): a TxDefaultProfile on evseId 0 → Accepted, reported with evseId 0 and tbc
    false (absent), and it limits every EVSE."""
    async with station_up(csms, data_dir):
        raw = profile(16, duration=300)
        await install(csms, 0, raw)
        answer, reports = await get_profiles(csms, {"chargingProfileId": [16]})
        assert answer["status"] == "Accepted"
        assert reported(reports) == [(0, raw)] and not reports[-1].get("tbc", False)
        for evse_id in (1, 2):
            assert periods(await composite(csms, evse_id, 60))[0] == (0, 6.0)


async def test_TC_K_11_tx_profile_on_all_evse(csms: LoopbackCsms, data_dir: Path) -> None:
    """TC_K_11_CS (K01.FR.04/16): a TxProfile on evseId 0 → Rejected."""
    async with station_up(csms, data_dir):
        answer = await set_profile(csms, 0, profile(17, "TxProfile", kind="Relative", tx="any"))
        assert answer["status"] == "Rejected", answer


async def test_TC_K_12_unsupported_rate_unit(csms: LoopbackCsms, data_dir: Path) -> None:
    """TC_K_12_CS (K01.FR.26): with RateUnit "A" only (the station maker's setting), a W schedule → Rejected
    (UnsupportedRateUnit); the same in A is Accepted."""
    async with station_up(csms, data_dir, variables=RATE_A_ONLY):
        answer = await set_profile(csms, EVSE, profile(18, unit="W", periods=((0, 6000.0),)))
        assert answer["status"] == "Rejected" and answer["statusInfo"]["reasonCode"] == "UnsupportedRateUnit"
        await install(csms, EVSE, profile(18))


async def test_TC_K_13_persistent_over_reboot(csms: LoopbackCsms, data_dir: Path) -> None:
    """TC_K_13_CS (K01.FR.27): a TxDefaultProfile set, the station restarted (Booted again), then
    GetChargingProfiles by id reports the same profile on the same EVSE, and it still limits the EVSE."""
    raw = profile(19, duration=3600)
    async with station_up(csms, data_dir):
        await install(csms, EVSE, raw)
    async with station_up(csms, data_dir):
        answer, reports = await get_profiles(csms, {"chargingProfileId": [19]})
        assert answer["status"] == "Accepted"
        assert reported(reports) == [(EVSE, raw)]
        assert periods(await composite(csms, EVSE, 60)) == [(0, 6.0)]


async def test_TC_K_14_unknown_evse(csms: LoopbackCsms, data_dir: Path) -> None:
    """TC_K_14_CS (K01.FR.28): SetChargingProfile for evseId EVSECount + 1 → Rejected (UnknownEvse)."""
    async with station_up(csms, data_dir):
        answer = await set_profile(csms, 3, profile(20))
        assert answer["status"] == "Rejected" and answer["statusInfo"]["reasonCode"] == "UnknownEvse", answer


async def test_TC_K_19_recurring(csms: LoopbackCsms, data_dir: Path) -> None:
    """TC_K_19_CS (K01.FR.40): a Recurring profile (Daily, and Weekly) → Accepted; one without recurrencyKind
    → Rejected. The daily one started 23 h 59 min ago with 6 A for its first 2 minutes: it is 32 A now and
    6 A again from its next repetition a minute from now."""
    async with station_up(csms, data_dir):
        start = now() - seconds(86400 - 60)
        await install(
            csms, EVSE, profile(21, kind="Recurring", recurrency="Daily", start=start, periods=((0, 6.0), (120, 32.0)))
        )
        await install(csms, 2, profile(22, kind="Recurring", recurrency="Weekly"))
        missing = profile(23, kind="Recurring")
        assert (await set_profile(csms, EVSE, missing))["status"] == "Rejected"
        answer = await composite(csms, EVSE, 300)
        x = shift(answer, start + seconds(86400))
        assert near(periods(answer), [(0, LOCAL_A), (-x, 6.0), (120 - x, LOCAL_A)]), periods(answer)


async def test_TC_K_21_valid_from(csms: LoopbackCsms, data_dir: Path) -> None:
    """TC_K_21_CS (K01.FR.36): a Relative TxDefaultProfile valid from now + 300 s, 6 A; the composite over 400 s
    is the local limit, then 6 A from (300 - x)."""
    async with station_up(csms, data_dir):
        sent = now()
        await install(csms, EVSE, profile(24, kind="Relative", valid_from=sent + seconds(300)))
        answer = await composite(csms, EVSE, 400)
        assert answer["status"] == "Accepted" and answer["schedule"]["duration"] == 400
        x = shift(answer, sent)
        assert near(periods(answer), [(0, LOCAL_A), (300 - x, 6.0)]), periods(answer)


async def test_TC_K_22_valid_to(csms: LoopbackCsms, data_dir: Path) -> None:
    """TC_K_22_CS (K01.FR.37): an Absolute TxDefaultProfile on evseId 0 valid until now + 300 s, 6000 W; for
    every EVSE i the composite is 6000 W (for evseId 0: × the number of EVSEs), then the local limit from (300 - x)."""
    async with station_up(csms, data_dir):
        sent = now()
        await install(
            csms,
            0,
            profile(
                25,
                unit="W",
                periods=((0, 6000.0),),
                valid_from=sent - seconds(DEVIATION),
                valid_to=sent + seconds(300),
                start=sent,
            ),
        )
        local = {0: LOCAL_W + 32 * 230, 1: LOCAL_W, 2: 32 * 230.0}
        for evse_id in (0, 1, 2):
            answer = await composite(csms, evse_id, 400, "W")
            assert answer["status"] == "Accepted" and answer["schedule"]["evseId"] == evse_id
            assert answer["schedule"]["chargingRateUnit"] == "W"
            x = shift(answer, sent)
            first = 6000.0 * (2 if evse_id == 0 else 1)
            assert near(periods(answer), [(0, first), (300 - x, local[evse_id])]), (evse_id, periods(answer))


async def test_TC_K_23_start_schedule(csms: LoopbackCsms, data_dir: Path) -> None:
    """TC_K_23_CS (K01.FR.30): an Absolute TxDefaultProfile whose schedule starts in 60 s: the local limit
    first, 6 A from (60 - x)."""
    async with station_up(csms, data_dir):
        sent = now()
        await install(
            csms,
            EVSE,
            profile(
                26,
                valid_from=sent - seconds(DEVIATION) + seconds(50),
                valid_to=sent + seconds(400 + DEVIATION),
                start=sent + seconds(60),
            ),
        )
        answer = await composite(csms, EVSE, 300)
        x = shift(answer, sent)
        assert near(periods(answer), [(0, LOCAL_A), (60 - x, 6.0)]), periods(answer)


# --- K10 ClearChargingProfile ------------------------------------------------------------------------------------


async def test_TC_K_05_clear_by_id(csms: LoopbackCsms, data_dir: Path) -> None:
    """TC_K_05_CS (K10.FR.03): ClearChargingProfile by id → Accepted; GetChargingProfiles by that id →
    NoProfiles; the EVSE is back at its local limit."""
    async with station_up(csms, data_dir):
        await install(csms, EVSE, profile(27))
        answer = await csms.trio.call("CS001", "ClearChargingProfile", {"chargingProfileId": 27})
        assert answer["status"] == "Accepted", answer
        assert (await get_profiles(csms, {"chargingProfileId": [27]}))[0]["status"] == "NoProfiles"
        assert periods(await composite(csms, EVSE, 60)) == [(0, LOCAL_A)]


async def test_TC_K_07_clear_unknown_criteria(csms: LoopbackCsms, data_dir: Path) -> None:
    """TC_K_07_CS (K10.FR.01): with a TxDefaultProfile at stackLevel 1 installed, ClearChargingProfile for
    ChargingStationMaxProfile stackLevel 0 → Unknown, and the installed profile stays."""
    async with station_up(csms, data_dir):
        await install(csms, EVSE, profile(28, stack=1))
        answer = await csms.trio.call(
            "CS001",
            "ClearChargingProfile",
            {"chargingProfileCriteria": {"chargingProfilePurpose": "ChargingStationMaxProfile", "stackLevel": 0}},
        )
        assert answer["status"] == "Unknown", answer
        assert (await get_profiles(csms, {"chargingProfileId": [28]}))[0]["status"] == "Accepted"


async def test_TC_K_08_clear_without_profiles(csms: LoopbackCsms, data_dir: Path) -> None:
    """TC_K_08_CS (K10.FR.01): ClearChargingProfile by id with no profile installed → Unknown."""
    async with station_up(csms, data_dir):
        answer = await csms.trio.call("CS001", "ClearChargingProfile", {"chargingProfileId": 4242})
        assert answer["status"] == "Unknown", answer


async def test_TC_K_24_clear_criteria_multiple_profiles(csms: LoopbackCsms, data_dir: Path) -> None:
    """TC_K_24_CS (K10.FR.04): TxDefaultProfiles at stackLevel 2 on EVSE 1 and EVSE 2 (and one at level 1,
    which stays); clearing purpose + stackLevel 2 → Accepted; GetChargingProfiles purpose + level 2 →
    NoProfiles."""
    async with station_up(csms, data_dir):
        await install(csms, 1, profile(29, stack=2))
        await install(csms, 2, profile(30, stack=2, phases=1))
        await install(csms, 2, profile(31, stack=1, phases=1))
        criteria = {"chargingProfilePurpose": "TxDefaultProfile", "stackLevel": 2}
        answer = await csms.trio.call("CS001", "ClearChargingProfile", {"chargingProfileCriteria": criteria})
        assert answer["status"] == "Accepted", answer
        assert (await get_profiles(csms, criteria))[0]["status"] == "NoProfiles"
        answer, reports = await get_profiles(csms, {})
        assert [p["id"] for _, p in reported(reports)] == [31]


# --- K09 GetChargingProfiles --------------------------------------------------------------------------------------


async def _two_profiles(csms: LoopbackCsms) -> tuple[dict, dict]:
    """Memory State of TC_K_29…K_36: a ChargingStationMaxProfile (stackLevel 1) on the station and a
    TxDefaultProfile (stackLevel 2) on EVSE 1."""
    station_max = profile(41, "ChargingStationMaxProfile", stack=1, periods=((0, 20.0),))
    default = profile(42, stack=2, periods=((0, 16.0),))
    await install(csms, 0, station_max)
    await install(csms, EVSE, default)
    return station_max, default


async def test_TC_K_29_get_profiles_evse_0(csms: LoopbackCsms, data_dir: Path) -> None:
    """TC_K_29_CS (K09.FR.02/05): evseId 0 → Accepted; the report holds the ChargingStationMaxProfile only."""
    async with station_up(csms, data_dir):
        station_max, _ = await _two_profiles(csms)
        answer, reports = await get_profiles(csms, {}, evse_id=0)
        assert answer["status"] == "Accepted"
        assert reported(reports) == [(0, station_max)]


async def test_TC_K_30_get_profiles_evse(csms: LoopbackCsms, data_dir: Path) -> None:
    """TC_K_30_CS (K09.FR.02/04): evseId 1 → the TxDefaultProfile installed on EVSE 1."""
    async with station_up(csms, data_dir):
        _, default = await _two_profiles(csms)
        answer, reports = await get_profiles(csms, {}, evse_id=EVSE)
        assert answer["status"] == "Accepted"
        assert reported(reports) == [(EVSE, default)]


async def test_TC_K_31_get_profiles_no_evse(csms: LoopbackCsms, data_dir: Path) -> None:
    """TC_K_31_CS (K09.FR.02/06): no evseId → every installed profile, one report per EVSE, tbc on all but the
    last."""
    async with station_up(csms, data_dir):
        station_max, default = await _two_profiles(csms)
        answer, reports = await get_profiles(csms, {})
        assert answer["status"] == "Accepted"
        assert reported(reports) == [(0, station_max), (EVSE, default)]
        assert [r.get("tbc", False) for r in reports] == [True, False]


async def test_TC_K_32_get_profiles_by_id(csms: LoopbackCsms, data_dir: Path) -> None:
    """TC_K_32_CS (K09.FR.01/02): chargingProfileId [Id1] → that profile only."""
    async with station_up(csms, data_dir):
        station_max, _ = await _two_profiles(csms)
        answer, reports = await get_profiles(csms, {"chargingProfileId": [41]})
        assert answer["status"] == "Accepted"
        assert reported(reports) == [(0, station_max)]


async def test_TC_K_33_get_profiles_evse_and_stack_level(csms: LoopbackCsms, data_dir: Path) -> None:
    """TC_K_33_CS (K09.FR.02/04): evseId 1 and stackLevel 2 → the TxDefaultProfile; stackLevel 1 on EVSE 1 →
    NoProfiles (the station's profile at that level is on evseId 0)."""
    async with station_up(csms, data_dir):
        _, default = await _two_profiles(csms)
        answer, reports = await get_profiles(csms, {"stackLevel": 2}, evse_id=EVSE)
        assert answer["status"] == "Accepted"
        assert reported(reports) == [(EVSE, default)]
        assert (await get_profiles(csms, {"stackLevel": 1}, evse_id=EVSE))[0]["status"] == "NoProfiles"


async def test_TC_K_34_get_profiles_evse_and_limit_source(csms: LoopbackCsms, data_dir: Path) -> None:
    """TC_K_34_CS (K09.FR.02/04): chargingLimitSource CSO on EVSE 1 → the profile the CSMS set (reported with
    source CSO); source EMS, which has none → NoProfiles."""
    async with station_up(csms, data_dir):
        raw = profile(43, stack=1)
        await install(csms, EVSE, raw)
        answer, reports = await get_profiles(csms, {"chargingLimitSource": ["CSO"]}, evse_id=EVSE)
        assert answer["status"] == "Accepted"
        assert reported(reports) == [(EVSE, raw)] and reports[0]["chargingLimitSource"] == "CSO"
        answer, _ = await get_profiles(csms, {"chargingLimitSource": ["EMS"]}, evse_id=EVSE)
        assert answer["status"] == "NoProfiles"


async def test_TC_K_35_get_profiles_evse_and_purpose(csms: LoopbackCsms, data_dir: Path) -> None:
    """TC_K_35_CS (K09.FR.02/04): evseId 1 and purpose TxDefaultProfile → that profile."""
    async with station_up(csms, data_dir):
        _, default = await _two_profiles(csms)
        answer, reports = await get_profiles(csms, {"chargingProfilePurpose": "TxDefaultProfile"}, evse_id=EVSE)
        assert answer["status"] == "Accepted"
        assert reported(reports) == [(EVSE, default)]


async def test_TC_K_36_get_profiles_evse_purpose_and_stack_level(csms: LoopbackCsms, data_dir: Path) -> None:
    """TC_K_36_CS (K09.FR.02/04): evseId 1, purpose TxDefaultProfile and its stackLevel → that profile; another
    stackLevel → NoProfiles."""
    async with station_up(csms, data_dir):
        _, default = await _two_profiles(csms)
        criteria = {"chargingProfilePurpose": "TxDefaultProfile", "stackLevel": 2}
        answer, reports = await get_profiles(csms, criteria, evse_id=EVSE)
        assert answer["status"] == "Accepted"
        assert reported(reports) == [(EVSE, default)]
        criteria["stackLevel"] = 3
        assert (await get_profiles(csms, criteria, evse_id=EVSE))[0]["status"] == "NoProfiles"


# --- K08 GetCompositeSchedule -------------------------------------------------------------------------------------


async def test_TC_K_39_composite_without_profiles(csms: LoopbackCsms, data_dir: Path) -> None:
    """TC_K_39_CS (K08.FR.02/03/06): no profile, evseId 0, duration 300 → Accepted, evseId 0, duration 300, the
    requested unit, one period from 0: the station's local limit (both EVSEs' maxima together)."""
    async with station_up(csms, data_dir):
        answer = await composite(csms, 0, 300, "A")
        assert answer["status"] == "Accepted", answer
        schedule = answer["schedule"]
        assert (schedule["evseId"], schedule["duration"], schedule["chargingRateUnit"]) == (0, 300, "A")
        assert periods(answer) == [(0, 64.0)]


async def test_TC_K_40_composite_stacking(csms: LoopbackCsms, data_dir: Path) -> None:
    """TC_K_40_CS (K08.FR.02/06): TxDefaultProfiles at stackLevel 0 (6/8/10 A from 0/100/200 s, 400 s) and 1
    (7/9 A from 0/100 s, 150 s): the composite over 350 s is 7, 9 from (100 - x), 8 from (150 - x), 10 from
    (200 - x)."""
    async with station_up(csms, data_dir):
        sent = now()
        start = sent - seconds(DEVIATION)
        valid = {"valid_from": start, "valid_to": sent + seconds(DEVIATION + 401), "start": start}
        await install(
            csms, EVSE, profile(44, periods=((0, 6.0), (100, 8.0), (200, 10.0)), duration=400 + DEVIATION, **valid)
        )
        await install(
            csms, EVSE, profile(45, stack=1, periods=((0, 7.0), (100, 9.0)), duration=150 + DEVIATION, **valid)
        )
        answer = await composite(csms, EVSE, 350)
        assert answer["status"] == "Accepted" and answer["schedule"]["duration"] == 350
        x = shift(answer, start)
        assert near(periods(answer), [(0, 7.0), (100 - x, 9.0), (150 + DEVIATION - x, 8.0), (200 - x, 10.0)]), (
            x,
            periods(answer),
        )


async def test_TC_K_42_composite_unsupported_unit(csms: LoopbackCsms, data_dir: Path) -> None:
    """TC_K_42_CS (K08.FR.07): with RateUnit "A" only, GetCompositeSchedule in W → Rejected, no schedule."""
    async with station_up(csms, data_dir, variables=RATE_A_ONLY):
        answer = await composite(csms, 0, 300, "W")
        assert answer["status"] == "Rejected" and "schedule" not in answer, answer


async def test_TC_K_47_composite_unknown_evse(csms: LoopbackCsms, data_dir: Path) -> None:
    """TC_K_47_CS (K08.FR.05): evseId number of EVSEs + 1 → Rejected, no schedule."""
    async with station_up(csms, data_dir):
        answer = await composite(csms, 3, 300, "A")
        assert answer["status"] == "Rejected" and "schedule" not in answer, answer
