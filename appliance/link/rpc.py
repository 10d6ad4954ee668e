"""OCPP-J RPC over one live WebSocket: the Trio driver of `appliance.protocol.session`.

The session decides (which CALL may go, which answer matches, which CSMS request is refused for the boot
state); this module does the waiting. One receive loop always drains the socket (trio-websocket only reads
pongs while someone reads messages) and hands CSMS CALLs to a dispatcher task through a bounded channel; our
CALLs go one at a time (a lock), each waiting for the answer the session matches to it.
"""

from __future__ import annotations

import logging
import math
from collections.abc import Awaitable, Callable
from dataclasses import dataclass

import trio
from trio_websocket import ConnectionClosed, WebSocketConnection

from appliance.protocol import (
    Call,
    CallError,
    CallResult,
    Direction,
    ErrorCode,
    OcppError,
    SchemaRegistry,
    call_error_for,
    encode,
    new_message_id,
)
from appliance.protocol.session import Answer, Late, Malformed, NotAllowed, Request, Session, Stray
from appliance.protocol.tolerance import ACCEPTED_AS, Deviation, Found
from appliance.util.redact import redact_frame

log = logging.getLogger("appliance.link.rpc")
#: Every frame in and out at DEBUG, secrets hidden (`appliance.util.redact`); its own logger so it can be
#: switched on alone.
frame_log = logging.getLogger("appliance.link.frames")

#: CSMS CALLs waiting for the dispatcher; the CSMS sends one at a time, so a few is plenty.
INBOUND_QUEUE = 16


class CallFailed(Exception):
    """Our CALL got no usable answer."""


class CallTimeout(CallFailed):
    """No answer within OCPPCommCtrlr.MessageTimeout."""


class LinkDown(CallFailed):
    """The link was lost before or while the CALL was answered."""


class CallErrorReply(CallFailed):
    """The CSMS answered with a CALLERROR."""

    def __init__(self, code: str, description: str, details: dict) -> None:
        super().__init__(f"{code}: {description}")
        self.code = code
        self.description = description
        self.details = details


@dataclass
class Reply:
    """A handler's answer plus, optionally, work to run once the answer is on the wire.

    OCPP often wants something sent *after* the response (the message a TriggerMessage asks for, the
    NotifyReports of a GetBaseReport); `then` runs after the CALLRESULT is sent, in the session's nursery.
    `abandon` runs instead when the CALLRESULT could not be sent (the connection went), so what was set aside
    for `then` (a place in a JobQueue) is given back.
    """

    payload: dict
    then: Callable[[], Awaitable[None]] | None = None
    abandon: Callable[[], None] | None = None


Handler = Callable[[dict], Awaitable["dict | Reply"]]


class Dispatcher:
    """Routes CSMS CALLs to the functional blocks' handlers and turns every failure into a CALLERROR."""

    def __init__(self, registry: SchemaRegistry) -> None:
        self._registry = registry
        self._handlers: dict[str, Handler] = {}

    @property
    def handled(self) -> frozenset[str]:
        """The CSMS actions some block answers; every other one gets NotSupported."""
        return frozenset(self._handlers)

    def register(self, action: str, handler: Handler) -> None:
        if action not in self._registry.actions:
            raise ValueError(f"{action} is not an OCPP 2.0.1 action")
        if action in self._handlers:
            raise ValueError(f"{action} already has a handler")
        self._handlers[action] = handler

    async def handle(self, call: Call) -> tuple[CallResult | CallError, Reply | None]:
        try:
            if not self._registry.compiled(call.action):
                await trio.to_thread.run_sync(self._registry.prepare, call.action)
            if not self._registry.accepts(call.action, Direction.REQUEST, call.payload):
                # Saying why compiles the detailed validator: tens of milliseconds, not on the event loop.
                explain = self._registry.explain
                raise await trio.to_thread.run_sync(explain, call.action, Direction.REQUEST, call.payload)
            handler = self._handlers.get(call.action)
            if handler is None:
                raise OcppError(ErrorCode.NotSupported, f"{call.action} is not supported by this station")
            answer = await handler(call.payload)
            reply = answer if isinstance(answer, Reply) else Reply(answer)
            try:
                self._registry.validate_response(call.action, reply.payload)
            except OcppError as exc:
                log.error("BUG: our %s response fails its schema: %s", call.action, exc.description)
                if reply.abandon is not None:
                    reply.abandon()
                raise OcppError(ErrorCode.InternalError, "station produced an invalid response") from exc
            return CallResult(call.message_id, reply.payload), reply
        except OcppError as exc:
            log.warning(
                "answering %s %s with CALLERROR %s: %s", call.action, call.message_id, exc.code.value, exc.description
            )
            return call_error_for(call.message_id, exc), None
        except Exception:
            log.exception("handler for %s failed", call.action)
            return call_error_for(call.message_id, OcppError(ErrorCode.InternalError, "internal error")), None


class RpcSession:
    """The RPC driver for one connection; lives exactly as long as the WebSocket."""

    def __init__(
        self,
        ws: WebSocketConnection,
        dispatcher: Dispatcher,
        registry: SchemaRegistry,
        message_timeout: Callable[[], float],
        session: Session,
    ) -> None:
        self._ws = ws
        self._dispatcher = dispatcher
        self._registry = registry
        self._message_timeout = message_timeout
        self._session = session
        self._call_lock = trio.Lock()
        self._answer: CallResult | CallError | None = None
        self._answered = trio.Event()
        self._closed = trio.Event()
        self._deviations_warned: set[Deviation] = set()  # one warning per kind per connection

    async def run(self, *, task_status: trio.TaskStatus[None] = trio.TASK_STATUS_IGNORED) -> None:
        """Receive and dispatch until the WebSocket closes; then raise ConnectionClosed."""
        send, receive = trio.open_memory_channel[Call](INBOUND_QUEUE)
        try:
            async with trio.open_nursery() as nursery:
                nursery.start_soon(self._dispatch_loop, receive, nursery)
                task_status.started()
                async with send:
                    await self._receive_loop(send)
        finally:
            self._closed.set()
            self._answered.set()

    async def _receive_loop(self, inbound: trio.MemorySendChannel[Call]) -> None:
        while True:
            text = await self._ws.get_message()
            if frame_log.isEnabledFor(logging.DEBUG):
                frame_log.debug("frame in: %s", redact_frame(text))
            event = self._session.receive(text)
            if isinstance(event, Request):
                try:  # the dispatcher takes it at once when it is waiting: no extra pass through the scheduler
                    inbound.send_nowait(event.call)
                except trio.WouldBlock:
                    await inbound.send(event.call)
            elif isinstance(event, Answer):
                self._answer = event.frame
                self._answered.set()
            elif isinstance(event, Malformed):
                log.warning("malformed frame from CSMS (%s): %s", event.error.code.value, event.error.description)
                if event.reply is not None:
                    await self._send(event.reply)
            elif isinstance(event, Late):
                log.warning(
                    "dropping a late answer to %s %r (given up on already)", event.call.action, event.frame.message_id
                )
            elif isinstance(event, Stray):
                log.warning("dropping a response to unknown message id %r", event.frame.message_id)

    async def _dispatch_loop(self, inbound: trio.MemoryReceiveChannel[Call], nursery: trio.Nursery) -> None:
        async with inbound:
            async for call in inbound:
                refusal = self._session.inbound_refusal(call)
                answer: CallResult | CallError
                reply: Reply | None
                if refusal is not None:
                    log.warning(
                        "answering %s %s with CALLERROR %s: %s",
                        call.action,
                        call.message_id,
                        refusal.code.value,
                        refusal.description,
                    )
                    answer, reply = call_error_for(call.message_id, refusal), None
                else:
                    answer, reply = await self._dispatcher.handle(call)
                try:
                    await self._send(encode(answer))
                except BaseException:
                    if reply is not None and reply.abandon is not None:
                        reply.abandon()
                    raise
                if reply is not None and reply.then is not None:
                    nursery.start_soon(self._run_followup, call.action, reply.then)

    async def _run_followup(self, action: str, then: Callable[[], Awaitable[None]]) -> None:
        try:
            await then()
        except CallFailed as exc:
            log.warning("follow-up of %s not completed: %s", action, exc)

    async def _send(self, text: str) -> None:
        if frame_log.isEnabledFor(logging.DEBUG):
            frame_log.debug("frame out: %s", redact_frame(text))
        await self._ws.send_message(text)

    async def hold_calls(self) -> None:
        """Wait for our outstanding CALL (if any) to be answered, then let no new one start.

        Used just before closing on purpose: the answer in flight is still received and acted on (a journaled
        message gets marked delivered instead of being sent again after the restart).
        """
        async with self._call_lock:
            self._session.hold()

    async def call(
        self,
        action: str,
        payload: dict,
        *,
        timeout: float | None = None,
        message_id: str | None = None,
        payload_text: str | None = None,
    ) -> dict:
        """Send one CALL and return the CSMS's CALLRESULT payload.

        Raises CallTimeout, CallErrorReply or LinkDown. Waits for our previous CALL first: OCPP-J allows one
        outstanding CALL per direction. A journaled message passes its own `message_id`, reused by every
        attempt (allowed by the 2024 errata), so the CSMS can recognise a resend, and may pass `payload_text`,
        the payload as the journal stored it (JSON text of exactly `payload`): the frame is then built
        around that text instead of serialising `payload` again. `payload` is still what is validated.
        """
        if not self._registry.compiled(action):
            await trio.to_thread.run_sync(self._registry.prepare, action)
        self._registry.validate_request(action, payload)  # our own bug if this fails: let it raise
        async with self._call_lock:
            if self._closed.is_set():
                raise LinkDown("not connected")
            message_id = message_id or new_message_id()
            try:
                text = self._session.begin_call(message_id, action, payload, payload_text)
            except NotAllowed as exc:
                raise LinkDown(str(exc)) from None
            self._answer = None
            self._answered = trio.Event()
            try:
                try:
                    await self._send(text)
                except (ConnectionClosed, trio.BrokenResourceError, trio.ClosedResourceError) as exc:
                    raise LinkDown(f"link lost while sending {action}") from exc
                limit = self._message_timeout() if timeout is None else timeout
                with trio.move_on_after(limit if limit > 0 else math.inf):
                    await self._answered.wait()
                answer = self._answer
            finally:
                self._session.give_up(message_id)
        if answer is None:
            if self._closed.is_set():
                raise LinkDown(f"link lost while waiting for the answer to {action}")
            raise CallTimeout(f"no answer to {action} within {limit:g} s")
        if isinstance(answer, CallError):
            raise CallErrorReply(answer.code, answer.description, answer.details)
        try:
            payload, deviations = self._registry.validate_response_lenient(action, answer.payload)
        except OcppError as exc:
            log.warning("CSMS answered %s with an invalid payload: %s", action, exc.description)
            raise CallErrorReply(exc.code.value, f"invalid response: {exc.description}", {}) from exc
        self._warn_deviations(action, deviations)
        return payload

    def _warn_deviations(self, action: str, deviations: list[Found]) -> None:
        """Say once per connection and kind what the CSMS does differently, so the log stays readable while
        an integrator still learns every habit of their CSMS."""
        for found in deviations:
            if found.kind in self._deviations_warned:
                continue
            self._deviations_warned.add(found.kind)
            log.warning(
                "CSMS answer deviates from OCPP 2.0.1 (%s) in %s at %s: %s; further ones on this "
                "connection are accepted silently",
                found.kind.value,
                action,
                found.path or "payload",
                ACCEPTED_AS[found.kind],
            )
