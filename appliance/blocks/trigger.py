"""Functional block F (TriggerMessage, F06): the CSMS asks for a message now; the block that owns it answers.

This module only checks the request against the station (an EVSE or connector that does not exist is
Rejected: there is nothing to report about it) and routes it: every block lists the messages it can be asked
for (`Block.triggers`), and the station registers them here. A message nobody owns is NotImplemented, the
status the spec gives for that.

Bounded under a flood: a trigger whose message is still on its way (same message, EVSE and connector) is
answered Accepted without sending it a second time — the CSMS asked for the message, and it is coming. So a CSMS
sending a thousand TriggerMessage(Heartbeat) gets a thousand answers and one Heartbeat per round trip, not a
thousand waiting tasks.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping

from appliance.blocks.base import Block, TriggerHandler, TriggerRequest
from appliance.evse.connectors import Connectors
from appliance.link.rpc import Handler, Reply

log = logging.getLogger("appliance.trigger")


class TriggerMessages(Block):
    def __init__(self, connectors: Connectors) -> None:
        self._connectors = connectors
        self._evse_ids = {evse_id for evse_id, _ in connectors.by_key}
        self._handlers: dict[str, TriggerHandler] = {}
        self._on_the_way: set[tuple[str, int | None, int | None]] = set()

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
        connector_id = evse.get("connectorId") if evse else None
        if connector_id is not None and (evse_id or 0, connector_id) not in self._connectors.by_key:
            # EVSE 0 (the station itself) has no connectors either.
            return {"status": "Rejected", "statusInfo": {"reasonCode": "UnknownConnectorId"}}
        handler = self._handlers.get(what)
        if handler is None:
            return {"status": "NotImplemented"}
        request = TriggerRequest(what, evse_id or None, connector_id)
        key = (what, request.evse_id, connector_id)
        if key in self._on_the_way:
            return {"status": "Accepted"}
        answer = await handler(request)
        if not isinstance(answer, Reply) or answer.then is None:
            return answer
        return self._tracked(key, answer)

    def _tracked(self, key: tuple[str, int | None, int | None], reply: Reply) -> Reply:
        """`reply` with its follow-up marked as on the way until it has run (or will never run)."""
        self._on_the_way.add(key)
        then, abandon = reply.then, reply.abandon
        assert then is not None

        async def send() -> None:
            try:
                await then()
            finally:
                self._on_the_way.discard(key)

        def abandoned() -> None:
            self._on_the_way.discard(key)
            if abandon is not None:
                abandon()

        return Reply(reply.payload, then=send, abandon=abandoned)
