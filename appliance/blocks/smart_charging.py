"""Functional block K (smart charging): SetChargingProfile, GetChargingProfiles (+ ReportChargingProfiles),
ClearChargingProfile, GetCompositeSchedule, RequestStartTransaction's TxProfile, and the limit on the hardware.

The arithmetic is `appliance/smartcharging` (sans-IO); this block checks requests against the device model
(SmartChargingCtrlr) and the EVSEs, keeps profiles durable (`ProfileStore`, migration 0009), and runs one task
that pushes each EVSE's allowed current to its runner — and from there to the charge controller — whenever a
profile, an EVSE or a setting changes, and at every period boundary (waited for on Trio's clock). A station clock
correction (the CSMS's currentTime) wakes the task at once, so the next change moves to the right moment; it
also re-checks at least every `RECHECK` seconds.

A TxProfile lives as long as its transaction: it is removed when the transaction ends, and at start (no
transaction survives a reboot; a power cut ends them with PowerLoss). A RequestStartTransaction's TxProfile is
installed before the session is authorized, bound to the transaction once it starts, and dropped if the
session ends without one. Relative profiles count from the transaction's start as this block first sees it
(within milliseconds of the Started event), or from the moment asked about when there is no transaction.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping
from datetime import datetime
from typing import Any

import trio

from appliance.blocks.base import Block, send_in_parts
from appliance.blocks.profile_store import ProfileStore
from appliance.clock import StationClock
from appliance.devicemodel import settings as keys
from appliance.devicemodel.model import Provider
from appliance.devicemodel.settings import Settings
from appliance.evse.runner import EvseRunner
from appliance.hardware.base import EvseLayout
from appliance.link.link import Link
from appliance.link.rpc import Handler, Reply
from appliance.smartcharging.composite import (
    EvseFacts,
    evse_composite,
    next_change,
    offered_currents,
    station_composite,
)
from appliance.smartcharging.profiles import CSO, EXTERNAL, TX, Limits, Profile, Refusal, check, parse
from appliance.storage import Storage
from appliance.util.jobs import JobQueue
from appliance.util.supervise import supervise
from appliance.util.watched import Watched, any_change

log = logging.getLogger("appliance.smartcharging")

#: Wake at least this often (boundaries further out than this).
RECHECK = 30.0
#: GetChargingProfiles reports being sent or waiting at once (each is a few small messages).
REPORTS_WAITING = 2
CTRLR = "SmartChargingCtrlr"


class SmartCharging(Block):
    migrations = ("0009_charging_profiles.sql",)

    def __init__(
        self,
        *,
        storage: Storage,
        runners: dict[int, EvseRunner],
        layouts: list[EvseLayout],
        link: Link,
        clock: StationClock,
        settings: Settings,
        settings_changed: Watched[int],
        max_entries: int,
    ) -> None:
        self.store = ProfileStore(storage)
        self._runners = runners
        self._layouts = {layout.evse_id: layout for layout in layouts}
        self._link = link
        self._clock = clock
        self._settings = settings
        self._settings_changed = settings_changed
        self._max_entries = max_entries
        self.changed: Watched[int] = Watched(0)
        self._clock_moves: Watched[int] = Watched(0)  # bumped by every station clock correction
        clock.add_listener(self._clock_moved)
        self._reports = JobQueue("charging profile reports", waiting=REPORTS_WAITING)
        self._tx_started: dict[str, datetime] = {}  # transaction id → when this block first saw it
        self._pending_seen: set[int] = set()  # remote-start TxProfiles whose EVSE has been authorized
        self._offered: dict[int, float] = {}  # what each EVSE was last told, for ChargingRateChanged

    # --- the Block protocol -------------------------------------------------------------------------------

    def handlers(self) -> Mapping[str, Handler]:
        return {
            "SetChargingProfile": self._set_profile,
            "GetChargingProfiles": self._get_profiles,
            "ClearChargingProfile": self._clear_profile,
            "GetCompositeSchedule": self._get_composite,
        }

    def live_variables(self) -> Mapping[str, Provider]:
        return {f"{CTRLR}.Entries[ChargingProfiles]": self.store.count}

    async def run(self, *, task_status: trio.TaskStatus[None] = trio.TASK_STATUS_IGNORED) -> None:
        """Before the runners start: load the profiles and drop TxProfiles (their transactions are over)."""
        await self.store.load()
        stale = [p.id for p in self.store.all() if p.purpose == TX]
        if stale:
            await self.store.remove(stale)
            log.info("removed %d TxProfile(s) of transactions that ended before this start", len(stale))
        task_status.started()
        await supervise("smart charging limits", self.enforce)

    # --- facts --------------------------------------------------------------------------------------------

    def _enabled(self) -> bool:
        return self._settings.flag(keys.SMART_CHARGING_ENABLED)

    def _rate_units(self) -> tuple[str, ...]:
        return self._settings.members(keys.RATE_UNIT)

    def _limits(self) -> Limits:
        phases = {evse_id: layout.phases for evse_id, layout in self._layouts.items()}
        phases[0] = max(phases.values(), default=3)
        return Limits(
            phases,
            self._rate_units(),
            self._settings.integer(keys.PROFILE_STACK_LEVEL),
            self._settings.integer(keys.PERIODS_PER_SCHEDULE),
            self._max_entries,
        )

    def _transactions(self) -> dict[int, str | None]:
        return {evse_id: r.state.tx.transaction_id if r.state.tx else None for evse_id, r in self._runners.items()}

    def facts(self) -> list[EvseFacts]:
        result = []
        for evse_id, layout in sorted(self._layouts.items()):
            tx = self._runners[evse_id].state.tx if evse_id in self._runners else None
            tx_id = tx.transaction_id if tx else None
            started = self._tx_started.setdefault(tx_id, self._clock.now()) if tx_id else None
            result.append(
                EvseFacts(evse_id, layout.phases, layout.nominal_voltage_v, layout.max_current_a, tx_id, started)
            )
        return result

    def effective(self) -> list[Profile]:
        """The profiles that limit anything now: none while smart charging is disabled, external constraints
        only while ExternalControlSignalsEnabled."""
        if not self._enabled():
            return []
        externals = self._settings.flag(keys.EXTERNAL_CONTROL_SIGNALS_ENABLED)
        return [p for p in self.store.all() if externals or p.purpose != EXTERNAL]

    def _touch(self) -> None:
        self.changed.set(self.changed.value + 1)

    # --- SetChargingProfile -------------------------------------------------------------------------------

    def _refusal(self, raw: Mapping[str, Any], evse_id: int, remote_start: bool = False) -> Refusal | None:
        if not self._enabled():
            return Refusal("NotEnabled", "SmartChargingCtrlr.Enabled is false")
        return check(
            raw,
            evse_id,
            limits=self._limits(),
            installed=self.store.all(),
            transactions=self._transactions(),
            now=self._clock.now(),
            remote_start=remote_start,
        )

    async def _set_profile(self, payload: dict) -> dict:
        evse_id, raw = payload["evseId"], payload["chargingProfile"]
        refusal = self._refusal(raw, evse_id)
        if refusal is not None:
            log.info(
                "SetChargingProfile %s on EVSE %d refused: %s (%s)", raw["id"], evse_id, refusal.reason, refusal.info
            )
            return refusal.answer()
        await self.install(parse(evse_id, raw))
        return {"status": "Accepted"}

    async def install(self, profile: Profile) -> None:
        await self.store.put(profile)
        log.info(
            "charging profile %d installed: %s stackLevel %d on EVSE %d (%s)",
            profile.id,
            profile.purpose,
            profile.stack_level,
            profile.evse_id,
            profile.kind,
        )
        self._touch()

    # --- RequestStartTransaction's TxProfile (called by the transactions block) -------------------------------

    def check_remote_start(self, evse_id: int, raw: Mapping[str, Any]) -> dict | None:
        """None if the TxProfile may come with the remote start on `evse_id`, else the Rejected answer."""
        refusal = self._refusal(raw, evse_id, remote_start=True)
        return None if refusal is None else refusal.answer()

    async def install_remote_start(self, evse_id: int, raw: Mapping[str, Any], transaction_id: str | None) -> None:
        """Install the TxProfile before the session is authorized (so the first energy already obeys it); it is
        bound to the transaction when that starts (now, if it has)."""
        profile = parse(evse_id, raw)
        if transaction_id is not None:
            profile = profile.with_transaction(transaction_id)
        await self.install(profile)

    # --- GetChargingProfiles ------------------------------------------------------------------------------

    def _select(self, payload: dict) -> list[Profile]:
        criteria = payload["chargingProfile"]
        evse_id = payload.get("evseId")
        ids = criteria.get("chargingProfileId")
        sources = criteria.get("chargingLimitSource")
        chosen = []
        for p in sorted(self.store.all(), key=lambda p: (p.evse_id, p.id)):
            if evse_id is not None and p.evse_id != evse_id:
                continue
            if ids is not None and p.id not in ids:
                continue
            if criteria.get("chargingProfilePurpose") not in (None, p.purpose):
                continue
            if criteria.get("stackLevel") not in (None, p.stack_level):
                continue
            if sources is not None and p.source not in sources:
                continue
            chosen.append(p)
        return chosen

    async def _get_profiles(self, payload: dict) -> dict | Reply:
        request_id = payload["requestId"]
        chosen = self._select(payload)
        if not chosen:
            return {"status": "NoProfiles"}
        if self._reports.holds(request_id):
            return {"status": "Rejected", "statusInfo": {"reasonCode": "DuplicateRequestId"}}
        ticket = self._reports.admit(request_id, lambda: self._report(request_id, chosen))
        if ticket is None:
            return {
                "status": "Rejected",
                "statusInfo": {"reasonCode": "Unspecified", "additionalInfo": "busy: ask again after the reports"},
            }
        return Reply({"status": "Accepted"}, then=ticket.run, abandon=ticket.release)

    async def _report(self, request_id: int, chosen: list[Profile]) -> None:
        """One ReportChargingProfiles per EVSE and source, tbc on all but the last."""
        groups: dict[tuple[int, str], list[Profile]] = {}
        for p in chosen:
            groups.setdefault((p.evse_id, p.source), []).append(p)
        messages = [
            {
                "requestId": request_id,
                "chargingLimitSource": source,
                "evseId": evse_id,
                "chargingProfile": [dict(p.raw) for p in profiles],
            }
            for (evse_id, source), profiles in groups.items()
        ]
        await send_in_parts(self._link, "ReportChargingProfiles", messages, f"charging profile report {request_id}")

    # --- ClearChargingProfile -----------------------------------------------------------------------------

    async def _clear_profile(self, payload: dict) -> dict:
        profile_id = payload.get("chargingProfileId")
        criteria = payload.get("chargingProfileCriteria") or {}
        matches = []
        for p in self.store.all():
            if p.source != CSO:
                continue  # external constraints are the external system's to clear
            if profile_id is not None:
                if p.id == profile_id:
                    matches.append(p.id)
                continue
            if (
                criteria.get("evseId") in (None, p.evse_id)
                and criteria.get("chargingProfilePurpose") in (None, p.purpose)
                and criteria.get("stackLevel") in (None, p.stack_level)
            ):
                matches.append(p.id)
        if not matches:
            return {"status": "Unknown"}
        await self.store.remove(matches)
        log.info("charging profile(s) %s cleared", ", ".join(map(str, matches)))
        self._touch()
        return {"status": "Accepted"}

    # --- GetCompositeSchedule -----------------------------------------------------------------------------

    async def _get_composite(self, payload: dict) -> dict:
        evse_id = payload["evseId"]
        if evse_id != 0 and evse_id not in self._layouts:
            return {
                "status": "Rejected",
                "statusInfo": {"reasonCode": "UnknownEvse", "additionalInfo": f"no EVSE {evse_id}"},
            }
        units = self._rate_units()
        unit = payload.get("chargingRateUnit", units[0])
        if unit not in units:
            return {
                "status": "Rejected",
                "statusInfo": {"reasonCode": "UnsupportedRateUnit", "additionalInfo": f"RateUnit is {','.join(units)}"},
            }
        now, facts, profiles = self._clock.now(), self.facts(), self.effective()
        if evse_id == 0:
            composite = station_composite(profiles, facts, now=now, duration=payload["duration"], unit=unit)
        else:
            one = next(f for f in facts if f.evse_id == evse_id)
            composite = evse_composite(profiles, one, now=now, duration=payload["duration"], unit=unit)
        return {"status": "Accepted", "schedule": composite.to_ocpp(evse_id)}

    # --- the limit on the hardware ------------------------------------------------------------------------

    async def enforce(self) -> None:
        """Keep every EVSE's offered current at what the profiles allow now, forever."""
        while True:
            await self._follow_transactions()
            facts = self.facts()
            now = self._clock.now()
            profiles = self.effective()
            for evse_id, amps in offered_currents(profiles, facts, now).items():
                await self._offer(evse_id, amps)
            upcoming = next_change(profiles, facts, now)
            delay = RECHECK if upcoming is None else min(RECHECK, max(0.0, upcoming - self._clock.timestamp()))
            await self._wait(delay)

    async def _offer(self, evse_id: int, amps: float) -> None:
        runner = self._runners.get(evse_id)
        if runner is None:
            return
        limit = None if amps >= runner.layout.max_current_a else amps
        before = self._offered.get(evse_id)
        if runner.current_limit_a != limit:
            log.info("EVSE %d: smart charging limit %s", evse_id, "none" if limit is None else f"{limit:.1f} A")
        runner.set_current_limit(limit)
        self._offered[evse_id] = amps
        significance = self._settings.number(keys.LIMIT_CHANGE_SIGNIFICANCE)
        if (
            runner.state.tx is not None
            and before is not None
            and before != amps
            and abs(amps - before) * 100 >= significance * max(before, 1e-9)
        ):
            await runner.apply(lambda s: s.periodic("ChargingRateChanged"))

    async def _follow_transactions(self) -> None:
        """Bind remote-start TxProfiles to their transaction; drop TxProfiles whose transaction is over."""
        running = self._transactions()
        for ended in [t for t in self._tx_started if t not in running.values()]:
            del self._tx_started[ended]
        for p in [p for p in self.store.all() if p.purpose == TX]:
            runner = self._runners.get(p.evse_id)
            tx_id = running.get(p.evse_id)
            if p.transaction_id is None and runner is not None:
                if tx_id is not None:
                    await self.store.put(p.with_transaction(tx_id))
                    self._pending_seen.discard(p.id)
                elif runner.state.authorization is not None:
                    self._pending_seen.add(p.id)
                elif p.id in self._pending_seen:
                    self._pending_seen.discard(p.id)
                    await self.store.remove([p.id])
                    log.info("TxProfile %d removed: the remote start ended without a transaction", p.id)
            elif p.transaction_id != tx_id:
                await self.store.remove([p.id])
                log.info("TxProfile %d removed: transaction %s ended", p.id, p.transaction_id)

    def _clock_moved(self, jump: float) -> None:
        if abs(jump) >= 0.5:  # not the milliseconds of every Heartbeat's round trip
            self._clock_moves.set(self._clock_moves.value + 1)

    async def _wait(self, delay: float) -> None:
        """Until a profile, an EVSE, a setting or the station clock changes, or `delay` seconds pass."""
        watched = [
            self.changed,
            self._settings_changed,
            self._clock_moves,
            *(r.changed for r in self._runners.values()),
        ]
        with trio.move_on_after(delay):
            await any_change(*watched)
