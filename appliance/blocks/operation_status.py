"""The status of a long operation the CSMS can ask about: a log upload (N01).

A triggered LogStatusNotification reports Idle unless such an operation is under way, in which case it repeats
the last status with its requestId (N01.FR.17/18). In this build the upload does not exist yet (its own issue),
so nothing can be under way and the status is truthfully Idle; the diagnostics block will take this trigger
over with its own state. (FirmwareStatusNotification is the firmware block's: blocks/firmware.py.)
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


def log_status(link: Link) -> OperationStatus:
    return OperationStatus(link, "LogStatusNotification")
