"""Shared steps of the Part 6 K (smart charging) cases: building profiles, installing them, reading the reports
and composite schedules back, all through the real loopback CSMS (frames schema-validated both ways)."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any

from appliance.clock import parse_iso
from appliance.lab.csms import LoopbackCsms
from tests.conformance.helpers import STATION_ID
from tests.conformance.remote_helpers import call

#: <Configured evseId>: EVSE 1, three-phase 32 A at 230 V (the harness layout; EVSE 2 is single-phase).
EVSE = 1
#: <Configured max time deviation>
DEVIATION = 5


def iso(moment: datetime) -> str:
    return moment.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%S.") + f"{moment.microsecond // 1000:03d}Z"


def now() -> datetime:
    return datetime.now(UTC)


def profile(
    pid: int,
    purpose: str = "TxDefaultProfile",
    *,
    stack: int = 0,
    kind: str = "Absolute",
    unit: str = "A",
    periods: tuple[tuple[int, float], ...] = ((0, 6.0),),
    phases: int | None = 3,
    duration: int | None = None,
    start: datetime | None = None,
    valid_from: datetime | None = None,
    valid_to: datetime | None = None,
    tx: str | None = None,
    recurrency: str | None = None,
) -> dict[str, Any]:
    """A ChargingProfileType; Absolute and Recurring profiles start now unless `start` says otherwise."""
    sched: dict[str, Any] = {
        "id": pid,
        "chargingRateUnit": unit,
        "chargingSchedulePeriod": [
            {"startPeriod": s, "limit": lim, **({"numberPhases": phases} if phases else {})} for s, lim in periods
        ],
    }
    if kind != "Relative":
        sched["startSchedule"] = iso(start or now())
    if duration is not None:
        sched["duration"] = duration
    raw: dict[str, Any] = {
        "id": pid,
        "stackLevel": stack,
        "chargingProfilePurpose": purpose,
        "chargingProfileKind": kind,
        "chargingSchedule": [sched],
    }
    if recurrency is not None:
        raw["recurrencyKind"] = recurrency
    if tx is not None:
        raw["transactionId"] = tx
    if valid_from is not None:
        raw["validFrom"] = iso(valid_from)
    if valid_to is not None:
        raw["validTo"] = iso(valid_to)
    return raw


async def set_profile(csms: LoopbackCsms, evse_id: int, raw: dict[str, Any]) -> dict[str, Any]:
    return await call(csms, "SetChargingProfile", {"evseId": evse_id, "chargingProfile": raw})


async def install(csms: LoopbackCsms, evse_id: int, raw: dict[str, Any]) -> None:
    answer = await set_profile(csms, evse_id, raw)
    assert answer["status"] == "Accepted", answer


_request_ids = iter(range(1000, 10**6))


async def get_profiles(
    csms: LoopbackCsms, criteria: dict[str, Any], evse_id: int | None = None
) -> tuple[dict[str, Any], list[dict[str, Any]]]:
    """GetChargingProfiles, then every ReportChargingProfiles up to the one without tbc (none if not Accepted)."""
    request_id = next(_request_ids)
    payload: dict[str, Any] = {"requestId": request_id, "chargingProfile": criteria}
    if evse_id is not None:
        payload["evseId"] = evse_id
    mark = csms.mark()
    answer = await call(csms, "GetChargingProfiles", payload)
    if answer["status"] != "Accepted":
        return answer, []

    def complete() -> list[dict[str, Any]] | None:
        reports = [r for r in csms.actions(STATION_ID, "ReportChargingProfiles", mark) if r["requestId"] == request_id]
        return reports if reports and not reports[-1].get("tbc", False) else None

    return answer, await csms.trio.wait_for(complete, 10, what=f"ReportChargingProfiles {request_id}")


def reported(reports: list[dict[str, Any]]) -> list[tuple[int, dict[str, Any]]]:
    """(evseId, profile) for every profile in the reports."""
    return [(r["evseId"], p) for r in reports for p in r["chargingProfile"]]


async def composite(csms: LoopbackCsms, evse_id: int, duration: int, unit: str | None = "A") -> dict[str, Any]:
    payload: dict[str, Any] = {"evseId": evse_id, "duration": duration}
    if unit is not None:
        payload["chargingRateUnit"] = unit
    return await call(csms, "GetCompositeSchedule", payload)


def periods(answer: dict[str, Any]) -> list[tuple[int, float]]:
    return [(p["startPeriod"], p["limit"]) for p in answer["schedule"]["chargingSchedulePeriod"]]


def shift(answer: dict[str, Any], since: datetime) -> float:
    """Part 6's x: seconds from `since` (when the profile's schedule started) to the composite's scheduleStart."""
    return (parse_iso(answer["schedule"]["scheduleStart"]) - since).total_seconds()


def near(actual: list[tuple[int, float]], expected: list[tuple[float, float]], slack: float = 2.0) -> bool:
    """The same limits, each period starting within `slack` seconds of where Part 6 puts it."""
    return len(actual) == len(expected) and all(
        lim == want_lim and abs(start - want_start) <= slack
        for (start, lim), (want_start, want_lim) in zip(actual, expected, strict=True)
    )


def seconds(n: float) -> timedelta:
    return timedelta(seconds=n)
