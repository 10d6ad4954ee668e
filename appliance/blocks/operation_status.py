"""The status of a long operation the CSMS can ask about: a firmware update (L01) or a log upload (N01).

A triggered FirmwareStatusNotification / LogStatusNotification reports Idle unless such an operation is under
way, in which case it repeats the last status with its requestId (L01.FR.25/26, N01.FR.17/18). In this build
neither update nor upload exists yet (they are their own issues), so nothing can be under way and the status is
truthfully Idle; the firmware and diagnostics blocks will take these triggers over with their own state.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping

from appliance.blocks.base import Block, TriggerHandler, TriggerRequest
from appliance.link.link import Link
from appliance.link.rpc import CallFailed, Reply

log = logging.getLogger("appliance.status")


class OperationStatus(Block):
    def __init__(self, link: Link, action: str) -> None:
        self._link = link
        self.action = action

    def triggers(self) -> Mapping[str, TriggerHandler]:
        return {self.action: self._trigger}

    async def _trigger(self, request: TriggerRequest) -> Reply:
        async def send() -> None:
            try:
                await self._link.call(self.action, {"status": "Idle"})
            except CallFailed as exc:
                log.warning("%s not delivered: %s", self.action, exc)

        return Reply({"status": "Accepted"}, then=send)


def firmware_status(link: Link) -> OperationStatus:
    return OperationStatus(link, "FirmwareStatusNotification")
