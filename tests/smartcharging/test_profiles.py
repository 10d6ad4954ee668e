"""`check`: what SetChargingProfile refuses, and why (reasonCode), with the station's limits."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any

import pytest

from appliance.smartcharging.composite import MAX_DURATION, EvseFacts, evse_composite
from appliance.smartcharging.profiles import Limits, Profile, check, parse
from tests.smartcharging.test_composite import iso, raw_profile

NOW = datetime(2026, 12, 2, 12, 0, tzinfo=UTC)
LIMITS = Limits({0: 3, 1: 3, 2: 1}, ("A", "W"), max_stack_level=2, max_periods=3, max_entries=2)


def default(pid: int = 1, *, stack: int = 0, **kw: Any) -> dict[str, Any]:
    """An Absolute TxDefaultProfile of 6 A starting now; keywords as raw_profile's."""
    kw.setdefault("start", NOW)
    return raw_profile(pid, "TxDefaultProfile", stack, "Absolute", kw.pop("periods", [(0, 6, None)]), **kw)


def refusal(
    raw: dict[str, Any],
    evse_id: int = 1,
    installed: tuple[Profile, ...] = (),
    transactions: dict[int, str | None] | None = None,
    remote_start: bool = False,
) -> str | None:
    found = check(
        raw,
        evse_id,
        limits=LIMITS,
        installed=installed,
        transactions=transactions or {1: None, 2: None},
        now=NOW,
        remote_start=remote_start,
    )
    return None if found is None else found.reason


def test_a_plain_default_profile_is_accepted() -> None:
    assert refusal(default()) is None
    assert refusal(default(), evse_id=0) is None


@pytest.mark.parametrize(
    ("name", "raw", "evse_id", "reason"),
    [
        ("unknown EVSE", default(), 3, "UnknownEvse"),
        (
            "station max on an EVSE",
            raw_profile(1, "ChargingStationMaxProfile", 0, "Absolute", [(0, 6, None)], start=NOW),
            1,
            "InvalidProfile",
        ),
        (
            "external constraints from the CSMS",
            raw_profile(1, "ChargingStationExternalConstraints", 0, "Absolute", [(0, 6, None)], start=NOW),
            0,
            "InvalidProfile",
        ),
        (
            "stack level above ProfileStackLevel",
            raw_profile(1, "TxDefaultProfile", 3, "Absolute", [(0, 6, None)], start=NOW),
            1,
            "InvalidStackLevel",
        ),
        ("unit not in RateUnit", default(unit="kW"), 1, "UnsupportedRateUnit"),
        (
            "more periods than PeriodsPerSchedule",
            default(periods=[(0, 6, None), (1, 6, None), (2, 6, None), (3, 6, None)]),
            1,
            "TooManyElements",
        ),
        ("first period not at 0", default(periods=[(5, 6, None)]), 1, "InvalidSchedule"),
        ("negative limit", default(periods=[(0, -1, None)]), 1, "InvalidSchedule"),
        ("infinite limit (1e400 in the JSON)", default(periods=[(0, float("inf"), None)]), 1, "InvalidSchedule"),
        ("numberPhases 4", default(periods=[(0, 6, 4)]), 1, "InvalidSchedule"),
        (
            "Absolute without startSchedule",
            raw_profile(1, "TxDefaultProfile", 0, "Absolute", [(0, 6, None)]),
            1,
            "InvalidSchedule",
        ),
        (
            "Relative with startSchedule",
            raw_profile(1, "TxDefaultProfile", 0, "Relative", [(0, 6, None)], start=NOW),
            1,
            "InvalidSchedule",
        ),
        (
            "Recurring without recurrencyKind",
            raw_profile(1, "TxDefaultProfile", 0, "Recurring", [(0, 6, None)], start=NOW),
            1,
            "InvalidProfile",
        ),
        ("validTo passed", default(valid_to=NOW - timedelta(seconds=1)), 1, "InvalidProfile"),
        (
            "validTo before validFrom",
            default(valid_from=NOW + timedelta(hours=2), valid_to=NOW + timedelta(hours=1)),
            1,
            "InvalidProfile",
        ),
        (
            "TxProfile on evseId 0",
            raw_profile(1, "TxProfile", 0, "Relative", [(0, 6, None)], tx="t"),
            0,
            "InvalidProfile",
        ),
        (
            "TxProfile without transactionId",
            raw_profile(1, "TxProfile", 0, "Relative", [(0, 6, None)]),
            1,
            "MissingParam",
        ),
        (
            "TxProfile of another transaction",
            raw_profile(1, "TxProfile", 0, "Relative", [(0, 6, None)], tx="t"),
            1,
            "TxNotFound",
        ),
    ],
)
def test_refusals(name: str, raw: dict[str, Any], evse_id: int, reason: str) -> None:
    assert refusal(raw, evse_id) == reason, name


def test_more_than_one_schedule_and_phase_to_use() -> None:
    raw = default()
    raw["chargingSchedule"].append(dict(raw["chargingSchedule"][0], id=2))
    assert refusal(raw) == "TooManyElements"
    raw = default()
    raw["chargingSchedule"][0]["chargingSchedulePeriod"][0].update(numberPhases=1, phaseToUse=2)
    assert refusal(raw) == "UnsupportedParam"
    raw = default()
    raw["validFrom"] = "yesterday"  # a format the schema library may let through
    assert refusal(raw) == "InvalidProfile"


def test_entries_and_duplicates() -> None:
    one, two = parse(1, default(1)), parse(2, default(2, stack=1))
    assert refusal(default(3, stack=2), installed=(one, two)) == "TooManyElements"
    assert refusal(default(2, stack=2), installed=(one, two)) is None  # replaces profile 2: no new entry
    assert refusal(default(3), installed=(one,)) == "DuplicateProfile"  # same level and purpose, overlapping
    later = default(3, valid_from=NOW + timedelta(days=1))
    assert refusal(later, installed=(parse(1, default(1, valid_to=NOW + timedelta(hours=1))),)) is None
    assert refusal(default(3), evse_id=2, installed=(one,)) is None  # another EVSE


def test_tx_profiles() -> None:
    raw = raw_profile(1, "TxProfile", 0, "Relative", [(0, 6, None)], tx="t-1")
    assert refusal(raw, transactions={1: "t-1"}) is None
    bound = parse(1, raw)
    assert (
        refusal(
            raw_profile(2, "TxProfile", 0, "Relative", [(0, 6, None)], tx="t-1"),
            transactions={1: "t-1"},
            installed=(bound,),
        )
        == "DuplicateProfile"
    )
    remote = raw_profile(2, "TxProfile", 0, "Relative", [(0, 6, None)])
    assert refusal(remote, remote_start=True) is None
    assert refusal(default(2), remote_start=True) == "InvalidProfile"


def test_a_composite_is_at_most_max_duration_long() -> None:
    facts = EvseFacts(1, 3, 230.0, 32.0)
    composite = evse_composite([], facts, now=NOW, duration=10**9, unit="A")
    assert composite.duration == MAX_DURATION
    assert composite.to_ocpp(1)["scheduleStart"] == iso(NOW)
