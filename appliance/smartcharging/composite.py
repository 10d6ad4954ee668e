"""The composite schedule (K08) and the current each EVSE may offer now: pure functions of the profiles and `now`.

How one EVSE's limit at an instant is found:

* each profile gives a value or none at that instant: outside validFrom..validTo, before its schedule starts or
  after its `duration` it gives none; otherwise the last period that has started. Absolute schedules start at
  startSchedule, Relative ones when the EVSE's transaction started (without one: at `now`, the moment asked
  about), Recurring ones at the latest daily/weekly repetition of startSchedule (all in UTC, so a local
  daylight-saving change moves nothing);
* per purpose the profile of the highest stackLevel that gives a value prevails (at equal level one on the EVSE
  itself before one on evseId 0); a higher level whose schedule has ended hands back to the level below;
* a TxProfile of the EVSE's running transaction overrides the TxDefaultProfile;
* the result is the minimum of the prevailing ChargingStationMaxProfile, the external constraints (station and
  EVSE), the transaction's limit and the EVSE's own maximum current: the smallest current on the fewest phases.

Units: an A limit is per phase; a W limit is spread over the phases used, min(numberPhases (default 3), the
EVSE's phases), at the EVSE's nominal voltage. Internally every limit is (amps per phase, phases); W is
amps × phases × voltage. For evseId 0 the composite is the station's total: the sum of the EVSEs' schedules
(without the station maximum), capped by the station's own profiles.

Reported schedules use whole seconds: a segment that starts inside a second is folded into that second at the
lower of the two values, and limits are rounded down to 0.1, so the report never promises more than a profile
allows.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime

from appliance.smartcharging.profiles import (
    EXTERNAL,
    RECURRENCE_S,
    RECURRING,
    RELATIVE,
    STATION_MAX,
    TX,
    TX_DEFAULT,
    Period,
    Profile,
)

#: The longest composite schedule computed; the answer's `duration` says so when a CSMS asks for more (it may ask
#: for 2^31 s: a daily profile would repeat 24,855 times, seconds of CPU on the event loop and a huge message).
#: Two days with 24 daily profiles of 24 periods take ~60 ms.
MAX_DURATION = 2 * 86_400


@dataclass(frozen=True)
class EvseFacts:
    """What the calculation needs to know about one EVSE."""

    evse_id: int
    phases: int
    voltage: float
    max_current: float
    transaction_id: str | None = None
    tx_started: datetime | None = None


@dataclass(frozen=True)
class Limit:
    amps: float  # per phase
    phases: int

    def watts(self, voltage: float) -> float:
        return self.amps * self.phases * voltage

    def tighter(self, other: Limit) -> Limit:
        return Limit(min(self.amps, other.amps), min(self.phases, other.phases))


@dataclass(frozen=True)
class CompositePeriod:
    start: int  # seconds from scheduleStart
    limit: float  # in the schedule's unit
    phases: int


@dataclass(frozen=True)
class Composite:
    start: datetime  # scheduleStart (whole seconds)
    duration: int
    unit: str
    periods: tuple[CompositePeriod, ...]

    def to_ocpp(self, evse_id: int) -> dict:
        return {
            "evseId": evse_id,
            "duration": self.duration,
            "scheduleStart": self.start.strftime("%Y-%m-%dT%H:%M:%S.000Z"),
            "chargingRateUnit": self.unit,
            "chargingSchedulePeriod": [
                {"startPeriod": p.start, "limit": p.limit, "numberPhases": p.phases} for p in self.periods
            ],
        }

    def limit_at(self, offset: float) -> CompositePeriod:
        """The period in force `offset` seconds after scheduleStart."""
        current = self.periods[0]
        for period in self.periods:
            if period.start > offset:
                break
            current = period
        return current


def _ts(moment: datetime) -> float:
    return moment.timestamp()


# --- one profile ----------------------------------------------------------------------------------------------


def _anchor(profile: Profile, t: float, facts: EvseFacts, origin: float) -> float | None:
    """When the occurrence of the profile's schedule that covers `t` started (None: none has yet)."""
    schedule = profile.schedule
    if profile.kind == RELATIVE:
        return _ts(facts.tx_started) if facts.tx_started is not None else origin
    if schedule.start is None:
        return None
    base = _ts(schedule.start)
    if profile.kind != RECURRING:
        return base
    if t < base:
        return None
    every = RECURRENCE_S[profile.recurrency or "Daily"]
    return base + math.floor((t - base) / every) * every


def _valid(profile: Profile, t: float) -> bool:
    return (profile.valid_from is None or t >= _ts(profile.valid_from)) and (
        profile.valid_to is None or t < _ts(profile.valid_to)
    )


def period_limit(period: Period, unit: str, phases: int, voltage: float) -> Limit:
    used = min(period.phases or 3, phases)
    amps = period.limit if unit == "A" else period.limit / (used * voltage)
    return Limit(amps, used)


def profile_limit(profile: Profile, t: float, facts: EvseFacts, origin: float) -> Limit | None:
    """The profile's limit for this EVSE at `t` (epoch seconds), or None if it says nothing then."""
    if not _valid(profile, t):
        return None
    anchor = _anchor(profile, t, facts, origin)
    if anchor is None:
        return None
    offset = t - anchor
    schedule = profile.schedule
    if offset < 0 or (schedule.duration is not None and offset >= schedule.duration):
        return None
    if profile.kind == RECURRING and offset >= RECURRENCE_S[profile.recurrency or "Daily"]:
        return None
    current: Period | None = None
    for period in schedule.periods:
        if period.start > offset:
            break
        current = period
    if current is None:
        return None
    return period_limit(current, schedule.unit, facts.phases, facts.voltage)


def _boundaries(profile: Profile, t0: float, t1: float, facts: EvseFacts, origin: float) -> Iterable[float]:
    """Every instant in [t0, t1) where the profile's value may change."""
    for moment in (profile.valid_from, profile.valid_to):
        if moment is not None:
            yield _ts(moment)
    schedule = profile.schedule
    if profile.kind == RECURRING and schedule.start is not None:
        every = RECURRENCE_S[profile.recurrency or "Daily"]
        base = _ts(schedule.start)
        first = max(0, math.floor((t0 - base) / every))
        last = math.floor((t1 - base) / every)
        anchors: Iterable[float] = (base + k * every for k in range(first, last + 1))
    else:
        anchor = _anchor(profile, t0, facts, origin)
        anchors = () if anchor is None else (anchor,)
    for anchor in anchors:
        yield anchor
        for period in schedule.periods:
            yield anchor + period.start
        if schedule.duration is not None:
            yield anchor + schedule.duration


# --- one EVSE ---------------------------------------------------------------------------------------------------


def applicable(profiles: Iterable[Profile], facts: EvseFacts) -> list[Profile]:
    """The profiles that bear on this EVSE: the station's, its own, and TxProfiles of its transaction."""
    result = []
    for p in profiles:
        if p.purpose == TX:
            if (
                p.evse_id == facts.evse_id
                and facts.transaction_id is not None
                and p.transaction_id in (None, facts.transaction_id)
            ):
                result.append(p)
        elif p.evse_id in (0, facts.evse_id):
            result.append(p)
    return result


def _prevailing(profiles: Iterable[Profile], t: float, facts: EvseFacts, origin: float) -> Limit | None:
    """The limit of the highest stackLevel that has one at `t` (at equal level, the EVSE's own first)."""
    ranked = sorted(profiles, key=lambda p: (p.stack_level, p.evse_id != 0), reverse=True)
    for profile in ranked:
        limit = profile_limit(profile, t, facts, origin)
        if limit is not None:
            return limit
    return None


def evse_limit(
    profiles: Sequence[Profile], t: float, facts: EvseFacts, origin: float, *, station_max: bool = True
) -> Limit:
    """The EVSE's limit at `t` from its applicable profiles (see the module docstring)."""
    limit = Limit(facts.max_current, facts.phases)
    by = {purpose: [p for p in profiles if p.purpose == purpose] for purpose in (STATION_MAX, EXTERNAL, TX_DEFAULT, TX)}
    parts = [
        _prevailing(by[TX], t, facts, origin) or _prevailing(by[TX_DEFAULT], t, facts, origin),
        _prevailing([p for p in by[EXTERNAL] if p.evse_id == 0], t, facts, origin),
        _prevailing([p for p in by[EXTERNAL] if p.evse_id != 0], t, facts, origin),
    ]
    if station_max:
        parts.append(_prevailing(by[STATION_MAX], t, facts, origin))
    for part in parts:
        if part is not None:
            limit = limit.tighter(part)
    return limit


def _in_unit(limit: Limit, unit: str, voltage: float) -> float:
    return limit.amps if unit == "A" else limit.watts(voltage)


def _report(value: float) -> float:
    """Rounded down to 0.1 (after removing float noise such as 5999.9999999 for 6000)."""
    return math.floor(round(value, 3) * 10) / 10


def _segments(t0: int, t1: int, bounds: Iterable[float]) -> tuple[list[int], dict[int, list[float]]]:
    """Whole-second segment starts in [t0, t1) and, per start, the instants to read it at: the start itself and
    the exact changes folded into its first second. A change inside a second also opens a segment at the next
    whole second, which carries the value after the change."""
    inside: dict[int, list[float]] = {t0: [float(t0)]}
    for b in bounds:
        if t0 <= b < t1:
            second = math.floor(b)
            inside.setdefault(second, [float(second)]).append(b)
            if b != second and second + 1 < t1:
                inside.setdefault(second + 1, [float(second + 1)])
    return sorted(inside), inside


def _merge(periods: list[CompositePeriod]) -> tuple[CompositePeriod, ...]:
    merged: list[CompositePeriod] = []
    for period in periods:
        if merged and (merged[-1].limit, merged[-1].phases) == (period.limit, period.phases):
            continue
        merged.append(period)
    return tuple(merged)


def _window(now: datetime, duration: int) -> tuple[int, int, int]:
    duration = max(0, min(int(duration), MAX_DURATION))
    t0 = math.floor(_ts(now))
    return t0, t0 + max(duration, 1), duration


def evse_composite(
    profiles: Iterable[Profile], facts: EvseFacts, *, now: datetime, duration: int, unit: str
) -> Composite:
    """K08 for one EVSE: the limits from scheduleStart (`now`, whole seconds) for `duration` seconds."""
    t0, t1, duration = _window(now, duration)
    origin = _ts(now)
    relevant = applicable(profiles, facts)
    starts, inside = _segments(t0, t1, (b for p in relevant for b in _boundaries(p, t0, t1, facts, origin)))
    periods = []
    for s in starts:
        limits = [evse_limit(relevant, t, facts, origin) for t in inside[s]]
        value = min(_in_unit(limit, unit, facts.voltage) for limit in limits)
        periods.append(CompositePeriod(s - t0, _report(value), min(limit.phases for limit in limits)))
    return Composite(datetime.fromtimestamp(t0, UTC), duration, unit, _merge(periods))


def station_cap(profiles: Iterable[Profile], t: float, phases: int, voltage: float, origin: float) -> Limit | None:
    """The station's own limit at `t` (ChargingStationMaxProfile, external constraints on evseId 0)."""
    station = EvseFacts(0, phases, voltage, math.inf)
    own = [p for p in profiles if p.evse_id == 0 and p.purpose in (STATION_MAX, EXTERNAL)]
    limits = [
        lim
        for lim in (
            _prevailing([p for p in own if p.purpose == purpose], t, station, origin)
            for purpose in (STATION_MAX, EXTERNAL)
        )
        if lim is not None
    ]
    if not limits:
        return None
    result = limits[0]
    for lim in limits[1:]:
        result = result.tighter(lim)
    return result


def station_composite(
    profiles: Iterable[Profile], evses: Sequence[EvseFacts], *, now: datetime, duration: int, unit: str
) -> Composite:
    """K08 for evseId 0: the sum of the EVSEs' schedules, capped by the station's own profiles."""
    profiles = list(profiles)
    t0, t1, duration = _window(now, duration)
    origin = _ts(now)
    phases = max((e.phases for e in evses), default=3)
    voltage = evses[0].voltage if evses else 230.0
    per_evse = [(facts, applicable(profiles, facts)) for facts in evses]
    bounds = [b for facts, relevant in per_evse for p in relevant for b in _boundaries(p, t0, t1, facts, origin)]
    starts, inside = _segments(t0, t1, bounds)

    def total(t: float) -> float:
        value = sum(
            _in_unit(evse_limit(relevant, t, facts, origin, station_max=False), unit, facts.voltage)
            for facts, relevant in per_evse
        )
        cap = station_cap(profiles, t, phases, voltage, origin)
        return value if cap is None else min(value, _in_unit(cap, unit, voltage))

    periods = [CompositePeriod(s - t0, _report(min(total(t) for t in inside[s])), phases) for s in starts]
    return Composite(datetime.fromtimestamp(t0, UTC), duration, unit, _merge(periods))


# --- what the hardware offers now -------------------------------------------------------------------------------


def offered_currents(profiles: Sequence[Profile], evses: Sequence[EvseFacts], now: datetime) -> dict[int, float]:
    """Amps per phase each EVSE may offer at `now`.

    Each EVSE gets its own composite limit; where the station maximum is lower than what the EVSEs with a
    transaction could draw together, it is shared out evenly by power (an EVSE that needs less than its share
    leaves the rest to the others), so the station as a whole stays within it.
    """
    t = _ts(now)
    limits = {f.evse_id: evse_limit(applicable(profiles, f), t, f, t) for f in evses}
    amps = {evse_id: limit.amps for evse_id, limit in limits.items()}
    phases = max((e.phases for e in evses), default=3)
    voltage = evses[0].voltage if evses else 230.0
    cap = station_cap(profiles, t, phases, voltage, t)
    busy = [f for f in evses if f.transaction_id is not None]
    if cap is None or not busy:
        return amps
    remaining = cap.watts(voltage)
    wants = sorted(busy, key=lambda f: limits[f.evse_id].watts(f.voltage))
    for i, facts in enumerate(wants):
        share = remaining / (len(wants) - i)
        power = min(limits[facts.evse_id].watts(facts.voltage), share)
        amps[facts.evse_id] = power / (limits[facts.evse_id].phases * facts.voltage)
        remaining -= power
    return amps


def next_change(profiles: Sequence[Profile], evses: Sequence[EvseFacts], now: datetime) -> float | None:
    """The next instant (epoch seconds) after `now` at which some EVSE's limit may change, within a day."""
    t = _ts(now)
    horizon = t + 86_400
    upcoming = [
        b for f in evses for p in applicable(profiles, f) for b in _boundaries(p, t, horizon, f, t) if t < b < horizon
    ]
    return min(upcoming, default=None)
