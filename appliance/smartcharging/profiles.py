"""Charging profiles (OCPP 2.0.1 ChargingProfileType) as immutable data, and the checks a new one must pass.

A profile is kept exactly as the CSMS sent it (`raw`, reported back unchanged by GetChargingProfiles) next to
the parsed fields the composite schedule needs. `check` answers the SetChargingProfile question "may this be
installed?" with None or a `Refusal` (reasonCode from the Part 2 appendix, and why, for statusInfo).
"""

from __future__ import annotations

import dataclasses
import itertools
import math
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from appliance.clock import parse_iso

STATION_MAX = "ChargingStationMaxProfile"
EXTERNAL = "ChargingStationExternalConstraints"
TX_DEFAULT = "TxDefaultProfile"
TX = "TxProfile"

ABSOLUTE, RECURRING, RELATIVE = "Absolute", "Recurring", "Relative"
RECURRENCE_S = {"Daily": 86_400, "Weekly": 7 * 86_400}

#: chargingLimitSource of what the CSMS installs (K09: profiles set by SetChargingProfile are "CSO").
CSO = "CSO"


@dataclass(frozen=True)
class Period:
    start: int  # seconds from the schedule's start
    limit: float  # in the schedule's unit, per phase for A
    phases: int | None  # numberPhases; None = 3 (the spec's default)


@dataclass(frozen=True)
class Schedule:
    unit: str  # "A" or "W"
    periods: tuple[Period, ...]
    start: datetime | None = None  # startSchedule
    duration: int | None = None  # seconds; None = open-ended


@dataclass(frozen=True)
class Profile:
    id: int
    evse_id: int  # 0 = the whole station
    stack_level: int
    purpose: str
    kind: str
    schedule: Schedule
    recurrency: str | None = None
    valid_from: datetime | None = None
    valid_to: datetime | None = None
    transaction_id: str | None = None
    source: str = CSO
    raw: Mapping[str, Any] = field(default_factory=dict, compare=False, hash=False)

    def with_transaction(self, transaction_id: str) -> Profile:
        """The same profile bound to a transaction (a RequestStartTransaction's TxProfile, once it started); `raw`
        stays as the CSMS sent it, so GetChargingProfiles reports the profile it set (TC_K_37)."""
        return dataclasses.replace(self, transaction_id=transaction_id)


class InvalidProfile(ValueError):
    """A profile whose fields cannot be read (a timestamp that is not one); answered Rejected, not a crash."""


def _time(value: Any) -> datetime | None:
    if value is None:
        return None
    try:
        return parse_iso(str(value))
    except ValueError as exc:
        raise InvalidProfile(f"{value!r} is not a dateTime") from exc


def parse(evse_id: int, raw: Mapping[str, Any], source: str = CSO) -> Profile:
    """A schema-valid ChargingProfileType (the first schedule; `check` refuses more than one) as a Profile."""
    sched = raw["chargingSchedule"][0]
    periods = tuple(
        Period(int(p["startPeriod"]), float(p["limit"]), p.get("numberPhases")) for p in sched["chargingSchedulePeriod"]
    )
    schedule = Schedule(sched["chargingRateUnit"], periods, _time(sched.get("startSchedule")), sched.get("duration"))
    return Profile(
        int(raw["id"]),
        evse_id,
        int(raw["stackLevel"]),
        raw["chargingProfilePurpose"],
        raw["chargingProfileKind"],
        schedule,
        raw.get("recurrencyKind"),
        _time(raw.get("validFrom")),
        _time(raw.get("validTo")),
        raw.get("transactionId"),
        source,
        dict(raw),
    )


@dataclass(frozen=True)
class Refusal:
    reason: str  # reasonCode (ReasonCodeEnumType of the appendix, ≤ 20 characters)
    info: str  # additionalInfo (≤ 512 characters)

    def answer(self) -> dict[str, Any]:
        return {"status": "Rejected", "statusInfo": {"reasonCode": self.reason, "additionalInfo": self.info[:512]}}


@dataclass(frozen=True)
class Limits:
    """What the station accepts (SmartChargingCtrlr variables and the EVSE layout)."""

    evse_phases: Mapping[int, int]  # EVSE id → supply phases (0 → the station's)
    rate_units: tuple[str, ...]  # RateUnit
    max_stack_level: int  # ProfileStackLevel
    max_periods: int  # PeriodsPerSchedule
    max_entries: int  # Entries[ChargingProfiles] maxLimit


def check(
    raw: Mapping[str, Any],
    evse_id: int,
    *,
    limits: Limits,
    installed: Iterable[Profile],
    transactions: Mapping[int, str | None],
    now: datetime,
    remote_start: bool = False,
) -> Refusal | None:
    """None if the profile may be installed on `evse_id`, else why not.

    `transactions` maps each EVSE to its running transaction's id (None: none). A RequestStartTransaction's
    profile (`remote_start`) is a TxProfile whose transaction does not exist yet.
    """
    if evse_id != 0 and evse_id not in limits.evse_phases:
        return Refusal("UnknownEvse", f"no EVSE {evse_id}")
    purpose = raw["chargingProfilePurpose"]
    if purpose == EXTERNAL:
        return Refusal(
            "InvalidProfile",
            "ChargingStationExternalConstraints are set by the station's external limit source, not by the CSMS",
        )
    if purpose == STATION_MAX and evse_id != 0:
        return Refusal("InvalidProfile", "a ChargingStationMaxProfile applies to evseId 0 only")
    if remote_start and purpose != TX:
        return Refusal("InvalidProfile", "RequestStartTransaction takes a TxProfile only")
    if purpose == TX:
        refusal = _check_tx(raw, evse_id, transactions, remote_start)
        if refusal is not None:
            return refusal
    elif "transactionId" in raw:
        return Refusal("InvalidProfile", f"a {purpose} has no transactionId")
    if raw["stackLevel"] > limits.max_stack_level:
        return Refusal(
            "InvalidStackLevel", f"stackLevel {raw['stackLevel']} is above ProfileStackLevel {limits.max_stack_level}"
        )
    refusal = _check_schedule(raw, evse_id, limits)
    if refusal is not None:
        return refusal
    try:
        profile = parse(evse_id, raw)
    except InvalidProfile as exc:
        return Refusal("InvalidProfile", str(exc))
    if profile.valid_from and profile.valid_to and profile.valid_to <= profile.valid_from:
        return Refusal("InvalidProfile", "validTo is not after validFrom")
    if profile.valid_to is not None and profile.valid_to <= now:
        return Refusal("InvalidProfile", "validTo has passed")
    others = [p for p in installed if p.id != profile.id]
    if len(others) >= limits.max_entries:
        return Refusal("TooManyElements", f"{len(others)} profiles installed; Entries maxLimit is {limits.max_entries}")
    for other in others:
        if _conflicts(profile, other):
            return Refusal(
                "DuplicateProfile",
                f"profile {other.id} has the same stackLevel and purpose on EVSE "
                f"{evse_id} with an overlapping validity",
            )
    return None


def _check_tx(
    raw: Mapping[str, Any], evse_id: int, transactions: Mapping[int, str | None], remote_start: bool
) -> Refusal | None:
    if evse_id == 0:
        return Refusal("InvalidProfile", "a TxProfile needs a specific EVSE")
    tx_id = raw.get("transactionId")
    if remote_start:
        return None if tx_id is None else Refusal("InvalidProfile", "the transaction does not exist yet")
    if tx_id is None:
        return Refusal("MissingParam", "a TxProfile needs a transactionId")
    if transactions.get(evse_id) != tx_id:
        return Refusal("TxNotFound", f"no transaction {tx_id} on EVSE {evse_id}")
    return None


def _check_schedule(raw: Mapping[str, Any], evse_id: int, limits: Limits) -> Refusal | None:
    schedules = raw["chargingSchedule"]
    if len(schedules) != 1:
        return Refusal("TooManyElements", "one chargingSchedule per profile (more are for ISO 15118 only)")
    sched = schedules[0]
    if sched["chargingRateUnit"] not in limits.rate_units:
        return Refusal(
            "UnsupportedRateUnit",
            f"chargingRateUnit {sched['chargingRateUnit']}; RateUnit is {','.join(limits.rate_units)}",
        )
    periods = sched["chargingSchedulePeriod"]
    if len(periods) > limits.max_periods:
        return Refusal("TooManyElements", f"{len(periods)} periods; PeriodsPerSchedule is {limits.max_periods}")
    starts = [p["startPeriod"] for p in periods]
    if starts[0] != 0 or any(b <= a for a, b in itertools.pairwise(starts)):
        return Refusal("InvalidSchedule", "startPeriods must begin at 0 and increase")
    for p in periods:
        if not 0 <= p["limit"] < math.inf:
            return Refusal("InvalidSchedule", f"limit {p['limit']} (must be a finite number, not negative)")
        n = p.get("numberPhases")
        if n is not None and not 1 <= n <= 3:
            return Refusal("InvalidSchedule", f"numberPhases {n}")
        if "phaseToUse" in p:
            return Refusal("UnsupportedParam", "phaseToUse: this station cannot switch phases")
    if sched.get("duration") is not None and sched["duration"] < 0:
        return Refusal("InvalidSchedule", "negative duration")
    kind = raw["chargingProfileKind"]
    if kind in (ABSOLUTE, RECURRING) and "startSchedule" not in sched:
        return Refusal("InvalidSchedule", f"an {kind} profile needs startSchedule")
    if kind == RELATIVE and "startSchedule" in sched:
        return Refusal("InvalidSchedule", "a Relative profile has no startSchedule")
    if kind == RECURRING and raw.get("recurrencyKind") not in RECURRENCE_S:
        return Refusal("InvalidProfile", "a Recurring profile needs recurrencyKind Daily or Weekly")
    if kind != RECURRING and "recurrencyKind" in raw:
        return Refusal("InvalidProfile", "recurrencyKind belongs to a Recurring profile")
    return None


def _conflicts(new: Profile, old: Profile) -> bool:
    """K01.FR.06/39: one profile per stackLevel and purpose on an EVSE (per transaction for TxProfiles) at a
    time; a profile with the same id replaces the old one instead."""
    if (new.purpose, new.stack_level, new.evse_id) != (old.purpose, old.stack_level, old.evse_id):
        return False
    if new.purpose == TX:
        return new.transaction_id == old.transaction_id
    starts = [t for t in (new.valid_from, old.valid_from) if t is not None]
    ends = [t for t in (new.valid_to, old.valid_to) if t is not None]
    return not starts or not ends or max(starts) < min(ends)
