"""Functional block A (security): security events.

Critical security events are journaled like TransactionEvents (A04.FR.02: they must not be lost), so they reach
the CSMS in order across cable pulls and power cuts. Today the block raises the event of every start; TLS,
certificate and firmware events arrive with the security issue.
"""

from __future__ import annotations

import trio

from appliance.blocks.base import Block
from appliance.clock import StationClock
from appliance.journal.journal import Journal
from appliance.journal.store import Append

#: Boot reasons that mean the CSMS asked for the restart (TC_B_21: ResetOrReboot rather than StartupOfTheDevice).
_RESET_REASONS = ("RemoteReset", "ScheduledReset")


class SecurityEvents(Block):
    def __init__(self, *, journal: Journal, clock: StationClock, boot_reason: str) -> None:
        self._journal = journal
        self._clock = clock
        self._boot_reason = boot_reason

    async def raise_event(self, kind: str, tech_info: str) -> None:
        """Journal a critical security event; the delivery loop sends it once the boot is accepted."""
        await self._journal.append(Append("SecurityEventNotification", {
            "type": kind, "timestamp": self._clock.iso(), "techInfo": tech_info,
        }))

    async def run(self, *, task_status: trio.TaskStatus[None] = trio.TASK_STATUS_IGNORED) -> None:
        """Every start is a security event: ResetOrReboot after a reset the CSMS asked for, else
        StartupOfTheDevice."""
        reason = self._boot_reason
        kind = "ResetOrReboot" if reason in _RESET_REASONS else "StartupOfTheDevice"
        await self.raise_event(kind, f"boot reason {reason}")
        task_status.started()
