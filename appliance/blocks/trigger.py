"""Functional block F (TriggerMessage, F06): the CSMS asks for a message now; the block that owns it answers.

This module only checks the request against the station (an EVSE that does not exist is Rejected) and routes
it: every block lists the messages it can be asked for (`Block.triggers`), and the station registers them here.
A message nobody owns is NotImplemented, the status the spec gives for that.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping

from appliance.blocks.base import Block, TriggerHandler, TriggerRequest
from appliance.link.rpc import Handler, Reply

log = logging.getLogger("appliance.trigger")


class TriggerMessages(Block):
    def __init__(self, evse_ids: list[int]) -> None:
        self._evse_ids = set(evse_ids)
        self._handlers: dict[str, TriggerHandler] = {}

    def register(self, message: str, handler: TriggerHandler) -> None:
        if message in self._handlers:
            raise ValueError(f"TriggerMessage({message}) already has an owner")
        self._handlers[message] = handler

    def handlers(self) -> Mapping[str, Handler]:
        return {"TriggerMessage": self._trigger}

    async def _trigger(self, payload: dict) -> dict | Reply:
        what = payload["requestedMessage"]
        evse = payload.get("evse")
        evse_id = evse["id"] if evse else None
        if evse_id is not None and evse_id != 0 and evse_id not in self._evse_ids:
            return {"status": "Rejected", "statusInfo": {"reasonCode": "UnknownEvse"}}
        handler = self._handlers.get(what)
        if handler is None:
            return {"status": "NotImplemented"}
        request = TriggerRequest(what, evse_id or None, evse.get("connectorId") if evse else None)
        return await handler(request)
