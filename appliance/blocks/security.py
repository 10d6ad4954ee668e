"""Functional block A (security, A04): security events and the security log.

`raise_event(kind, tech_info)` is how every part of the station reports one. Critical events (the appendix's
list, `security.events`) are journaled as SecurityEventNotification, like TransactionEvents: delivered in order
once the boot is accepted, kept across cable pulls and power cuts (A04.FR.02); the journal's trigger copies each
into the security log in the same commit. Non-critical events only go to the security log (A04.FR.01/02).

Raised here: every start (StartupOfTheDevice, or ResetOrReboot after a reset the CSMS asked for); the link's
refusals — a TLS refusal (InvalidCsmsCertificate, InvalidTLSVersion, InvalidTLSCipherSuite) once per outage and
type, not once per retry, and FailedToAuthenticateAtCsms on a 401; ReconfigurationOfSecurityParameters when a
security setting (SecurityCtrlr.*, NetworkConfigurationPriority) changes. Certificate and firmware blocks raise
their own through `raise_event`.
"""

from __future__ import annotations

import logging

import trio

from appliance.blocks.base import Block
from appliance.clock import StationClock
from appliance.devicemodel import settings as keys
from appliance.devicemodel.paths import PathError, parse_path
from appliance.devicemodel.settings import Settings
from appliance.journal.journal import Journal
from appliance.journal.store import Append
from appliance.link.link import Link
from appliance.security.events import MAX_TECH_INFO, MAX_TYPE, clip, is_critical
from appliance.security.seclog import SecurityLog
from appliance.storage import Storage

log = logging.getLogger("appliance.security")

#: Boot reasons that mean the CSMS asked for the restart (TC_B_21: ResetOrReboot rather than StartupOfTheDevice).
_RESET_REASONS = ("RemoteReset", "ScheduledReset")
#: Settings whose change is ReconfigurationOfSecurityParameters (compared case-insensitively).
_SECURITY_COMPONENTS = ("securityctrlr",)
_SECURITY_VARIABLES = ("ocppcommctrlr.networkconfigurationpriority",)
#: Events (refusals, setting changes) waiting for the block's task to record them; beyond this they are dropped
#: with a log line (a CSMS flooding SetVariables must not grow memory).
_QUEUE = 64


class SecurityEvents(Block):
    migrations = ("0006_security_log.sql",)

    def __init__(
        self,
        *,
        journal: Journal,
        clock: StationClock,
        boot_reason: str,
        storage: Storage,
        link: Link | None = None,
        settings: Settings | None = None,
    ) -> None:
        self._journal = journal
        self._settings = settings
        self._clock = clock
        self._boot_reason = boot_reason
        #: The persistent security log; GetLog(SecurityLog) exports it (`log.export(path, oldest, latest)`).
        self.log = SecurityLog(storage)
        self._link = link
        #: Refusal types raised in the current outage, with the link's connection count when raised.
        self._raised: dict[str, int] = {}
        self._queue_in, self._queue_out = trio.open_memory_channel[tuple[str, str]](_QUEUE)
        if link is not None:
            link.add_refusal_listener(self.refused)

    async def raise_event(self, kind: str, tech_info: str) -> None:
        """Record a security event: journaled for the CSMS if critical, in the security log always."""
        kind, tech_info = clip(kind, MAX_TYPE), clip(tech_info, MAX_TECH_INFO)
        timestamp = self._clock.iso()
        if is_critical(kind):
            log.warning("security event %s (critical): %s", kind, tech_info)
            await self._journal.append(
                Append(
                    "SecurityEventNotification",
                    {
                        "type": kind,
                        "timestamp": timestamp,
                        "techInfo": tech_info,
                    },
                )
            )
        else:
            log.info("security event %s: %s", kind, tech_info)
            await self.log.record(kind, tech_info, timestamp)

    def refused(self, kind: str, cause: str) -> None:
        """The link's refusal listener: one event per type and outage (a new connection starts a new one),
        recorded by the block's task so the link's retries never wait for the disk."""
        connections = self._link.connections if self._link is not None else 0
        if self._raised.get(kind) == connections:
            return
        self._raised[kind] = connections
        self._enqueue(kind, cause)

    def _enqueue(self, kind: str, tech_info: str) -> None:
        try:
            self._queue_in.send_nowait((kind, tech_info))
        except trio.WouldBlock:
            log.warning("security event %s not recorded (too many at once): %s", kind, tech_info)

    def clock_moved(self, jump: float) -> None:
        """Clock listener: SettingSystemTime when the station clock moved by more than
        ClockCtrlr.TimeAdjustmentReportingThreshold seconds to follow the CSMS."""
        if self._settings is None or abs(jump) <= self._settings.seconds(keys.TIME_ADJUSTMENT_REPORTING_THRESHOLD):
            return
        self._enqueue("SettingSystemTime", f"station clock moved by {jump:+.3f} s to follow the CSMS")

    def setting_changed(self, path: str, value: object) -> None:
        """Device-model listener: a security setting changed (its value is never logged: it may be a password)."""
        try:
            parsed = parse_path(path)
        except PathError:
            return
        name = f"{parsed.component}.{parsed.variable}".lower()
        if parsed.component.lower() in _SECURITY_COMPONENTS or name in _SECURITY_VARIABLES:
            self._enqueue("ReconfigurationOfSecurityParameters", f"{parsed.component}.{parsed.variable} changed")

    async def run(self, *, task_status: trio.TaskStatus[None] = trio.TASK_STATUS_IGNORED) -> None:
        """Every start is a security event: ResetOrReboot after a reset the CSMS asked for, else
        StartupOfTheDevice. Then record the queued events (link refusals, setting changes) as they come."""
        reason = self._boot_reason
        kind = "ResetOrReboot" if reason in _RESET_REASONS else "StartupOfTheDevice"
        await self.raise_event(kind, f"boot reason {reason}")
        task_status.started()
        async for queued, tech_info in self._queue_out:
            try:
                await self.raise_event(queued, tech_info)
            except Exception:  # e.g. disk full: logged; the station and its later events carry on
                log.exception("security event %s could not be recorded", queued)
