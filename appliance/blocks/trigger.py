"""Functional block F (TriggerMessage, F06): the CSMS asks for a message now; the block that owns it answers.

This module only checks the request against the station (an EVSE or connector that does not exist is
Rejected: there is nothing to report about it) and routes it: every block lists the messages it can be asked
for (`Block.triggers`), and the station registers them here. A message nobody owns is NotImplemented, the
status the spec gives for that.

Bounded under a flood: one follow-up per message (same message, EVSE and connector) runs at a time. A trigger
that arrives while it runs is answered Accepted and asks for one more run after it — not a task of its own
waiting in line — so a CSMS sending a thousand TriggerMessage(Heartbeat) gets a thousand answers and one
Heartbeat per round trip, not a thousand waiting tasks. It is not merged into the running one: that may have
put its message on the wire before this trigger came, and an Accepted trigger must be followed by the message
sent after the acceptance (F06). The request for one more run is made once this trigger's answer is sent, so
the run it causes comes after that answer, and with the newest follow-up (a status read at trigger time is the
newest one).
"""

from __future__ import annotations

import logging
from collections.abc import Awaitable, Callable, Mapping

from appliance.blocks.base import Block, TriggerHandler, TriggerRequest
from appliance.evse.connectors import Connectors
from appliance.link.rpc import CallFailed, Handler, Reply

log = logging.getLogger("appliance.trigger")

Key = tuple[str, int | None, int | None]  # requested message, EVSE, connector
FollowUp = Callable[[], Awaitable[None]]


class TriggerMessages(Block):
    def __init__(self, connectors: Connectors) -> None:
        self._connectors = connectors
        self._evse_ids = {evse_id for evse_id, _ in connectors.by_key}
        self._handlers: dict[str, TriggerHandler] = {}
        self._running: set[Key] = set()  # a follow-up of this message is running
        self._again: dict[Key, FollowUp] = {}  # a trigger came while it ran: the newest follow-up, run after it

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
        answer = await handler(request)
        if not isinstance(answer, Reply) or answer.then is None:
            return answer
        return self._coalesced((what, request.evse_id, connector_id), answer)

    def _coalesced(self, key: Key, reply: Reply) -> Reply:
        """`reply` whose follow-up (run once the answer is sent) runs now, or once more after the running one."""
        then = reply.then
        assert then is not None

        async def send() -> None:
            if key in self._running:
                self._again[key] = then
                return
            self._running.add(key)
            try:
                follow_up: FollowUp | None = then
                while follow_up is not None:
                    try:
                        await follow_up()
                    except CallFailed as exc:
                        log.warning("triggered %s not completed: %s", key[0], exc)
                    follow_up = self._again.pop(key, None)
            finally:
                self._running.discard(key)
                self._again.pop(key, None)

        return Reply(reply.payload, then=send, abandon=reply.abandon)
