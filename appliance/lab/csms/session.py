"""One station's OCPP-J session on the loopback CSMS, built on the `ocpp` library's ChargePoint.

We use the library (not our own `appliance.protocol`) on purpose: the station must be checked by code we did
not write. The library routes station CALLs to `@on` handlers and validates every request and response against
the official OCPP 2.0.1 JSON schemas. We wrap that with three things a checker needs and the library lacks:

* every frame in and out is recorded *before* the library sees it, malformed ones included;
* a broken station message becomes a recorded `WireViolation`, not just a log line;
* tests can override any answer (CALLERROR, late, never) and send raw camelCase requests and get the
  station's exact camelCase response back (the library's dataclass round trip would rename keys).

Everything in this module runs on the CSMS's event-loop thread.
"""

from __future__ import annotations

import asyncio
import contextlib
import inspect
import logging
from dataclasses import is_dataclass
from typing import Any

from ocpp.charge_point import remove_nones, serialize_as_dict, snake_to_camel_case
from ocpp.exceptions import InternalError, OCPPError, SecurityError
from ocpp.messages import Call, CallError, MessageType, unpack, validate_payload
from ocpp.routing import on
from ocpp.v201 import ChargePoint, call_result
from websockets.asyncio.server import ServerConnection

from .behaviour import Behaviour, TokenInfo, utc_now_iso
from .records import RecordedFrame, Recorder
from .replies import (
    NO_ANSWER,
    CsmsCallError,
    CsmsCallTimeout,
    Delayed,
    InvalidCsmsRequest,
    InvalidStationResponse,
    Reply,
    StationCallError,
    StationNotConnected,
)

log = logging.getLogger("appliance.lab.csms")
#: How long an answer received just before the connection closed may take to reach its caller.
ANSWER_AFTER_CLOSE = 1.0


class _LibraryLog(logging.LoggerAdapter):
    """The library logs every frame at INFO; we record frames ourselves, so that is DEBUG noise for us (and
    would flood `appliance demo`, which logs at INFO)."""

    def info(self, msg: object, *args: Any, **kwargs: Any) -> None:
        self.debug(msg, *args, **kwargs)


_library_log = _LibraryLog(logging.getLogger("appliance.lab.csms.ocpp"), {})

OCPP_VERSION = "2.0.1"
_MAX_MESSAGE_ID = 36


def _as_payload(value: Any) -> dict[str, Any]:
    """A camelCase dict from a dict or an `ocpp.v201.call`/`call_result` dataclass (the library's way)."""
    if is_dataclass(value) and not isinstance(value, type):
        return remove_nones(snake_to_camel_case(serialize_as_dict(value)))
    if not isinstance(value, dict):
        raise TypeError(f"payload must be a dict or an ocpp.v201 dataclass, not {type(value).__name__}")
    return value


def _problem(error: OCPPError) -> str:
    cause = error.details.get("cause") if isinstance(error.details, dict) else None
    return f"{error.code}: {cause or error.description}"


class RecordingConnection:
    """The websocket as the library sees it (`recv`/`send`), recording every frame on the way."""

    def __init__(self, ws: ServerConnection, recorder: Recorder, station_id: str, connection_id: int) -> None:
        self.ws = ws
        self._recorder = recorder
        self.station_id = station_id
        self.connection_id = connection_id
        self.last_in: RecordedFrame | None = None  # the frame recv() returned last, as recorded

    async def recv(self) -> str | bytes:
        data = await self.ws.recv()
        self.last_in = self._recorder.add_frame(self.station_id, self.connection_id, "in", data)
        return data

    async def send(self, text: str) -> None:
        # Recorded before sending so the frame list shows cause before effect even if the station is fast.
        self._recorder.add_frame(self.station_id, self.connection_id, "out", text)
        await self.ws.send(text)


class StationSession(ChargePoint):
    """The library's ChargePoint, plus recording, violations, overrides and raw requests."""

    def __init__(self, connection: RecordingConnection, recorder: Recorder, behaviour: Behaviour) -> None:
        super().__init__(connection.station_id, connection, response_timeout=30, logger=_library_log)
        self.wire = connection  # the recorded websocket; send_raw goes through it too
        self._recorder = recorder
        self._behaviour = behaviour
        self._late_replies: set[asyncio.Task[None]] = set()

    # ---- incoming frames -----------------------------------------------------------------------------------

    def _violation(self, direction: str, kind: str, detail: str, msg: Any = None, raw: str | None = None) -> None:
        self._recorder.add_violation(
            station_id=self.id,
            connection_id=self.wire.connection_id,
            direction=direction,
            kind=kind,
            action=getattr(msg, "action", None),
            message_id=getattr(msg, "unique_id", None),
            detail=detail,
            raw=raw,
        )
        log.warning("violation by %s: %s %s", "station " + self.id if direction == "in" else "CSMS", kind, detail)

    async def route_message(self, raw_msg: str | bytes) -> None:
        """Check the frame's shape first, so a malformed frame is a violation rather than a log line."""
        if isinstance(raw_msg, bytes):
            self._violation("in", "binary-frame", "OCPP-J frames must be text frames", raw=repr(raw_msg[:200]))
            return
        try:
            msg = unpack(raw_msg)
        except OCPPError as error:
            self._violation("in", "malformed-frame", _problem(error), raw=raw_msg)
            return
        if not isinstance(msg.unique_id, str) or not 0 < len(msg.unique_id) <= _MAX_MESSAGE_ID:
            self._violation("in", "malformed-frame", "messageId must be a string of 1..36 characters", msg, raw_msg)
        if msg.message_type_id != MessageType.Call:
            answered = self.wire.last_in.action if self.wire.last_in is not None else None
            if answered is None and msg.unique_id != "-1":  # "-1": answer to a CALL whose id was unreadable
                self._violation("in", "unexpected-response", "answers no CALL the CSMS sent", msg, raw_msg)
            await super().route_message(raw_msg)  # the library hands responses to the waiting request()
            return
        if not isinstance(msg.action, str):
            self._violation("in", "malformed-frame", "action must be a string", msg, raw_msg)
            return
        # As the library's route_message does for a CALL, minus its multi-page traceback in the log for what
        # is, here, an expected and already recorded outcome.
        try:
            await self._handle_call(msg)
        except OCPPError as error:
            await self._send(msg.create_call_error(error).to_json())

    async def _handle_call(self, msg: Call) -> Any:
        """Validate, enforce the boot rules, then answer from an override or the library's `@on` handlers."""
        override = self._behaviour.override(msg.action)
        if override is None and msg.action not in self.route_map:
            self._violation("in", "unhandled-action", f"a CSMS does not accept {msg.action!r} from a station", msg)
            return await super()._handle_call(msg)  # the library answers NotImplemented / NotSupported
        try:
            await validate_payload(msg, OCPP_VERSION)
        except OCPPError as error:
            self._violation("in", "schema", _problem(error), msg)
            raise  # route_message answers with the library's CALLERROR for it
        refusal = self._behaviour.refusal_before_accepted(self.id, msg.action)
        if refusal is not None:
            self._violation("in", "not-accepted", refusal, msg)
            raise SecurityError(description=refusal)
        if override is not None:
            reply = await self._run_responder(override.responder, msg)
            if reply is not None:
                await self._send_reply(msg, reply, override.validate)
                return None
        try:
            return await super()._handle_call(msg)
        except OCPPError as error:
            # The request passed validation above, so this is our own handler's answer failing the schema.
            self._violation("out", "invalid-response", _problem(error), msg)
            raise

    async def _run_responder(self, responder: Any, msg: Call) -> Reply | None:
        if not callable(responder):
            return responder
        try:
            reply = responder(self.id, msg.payload)
            if inspect.isawaitable(reply):
                reply = await reply
        except Exception as error:  # a bug in the test's responder: answer InternalError and make it visible
            self._violation("out", "responder-failed", repr(error), msg)
            return CsmsCallError("InternalError", "CSMS test responder failed")
        return reply

    async def _send_reply(self, msg: Call, reply: Reply, validate: bool) -> None:
        if reply is NO_ANSWER:
            return
        if isinstance(reply, Delayed):
            task = asyncio.get_running_loop().create_task(self._reply_later(msg, reply, validate))
            self._late_replies.add(task)
            task.add_done_callback(self._late_replies.discard)
            return
        if isinstance(reply, CsmsCallError):
            error = CallError(msg.unique_id, reply.code, reply.description, reply.details or {})
            await self._send(error.to_json())
            return
        result = msg.create_call_result(_as_payload(reply))
        if msg.action == "BootNotification" and isinstance(result.payload.get("status"), str):
            self._behaviour.note_boot_status(self.id, result.payload["status"])  # keep the boot rules right
        if validate:
            try:
                await validate_payload(result, OCPP_VERSION)
            except OCPPError as error:
                self._violation("out", "invalid-response", _problem(error), msg)
                await self._send(msg.create_call_error(InternalError()).to_json())
                return
        await self._send(result.to_json())

    async def _reply_later(self, msg: Call, delayed: Delayed, validate: bool) -> None:
        await asyncio.sleep(delayed.seconds)
        with contextlib.suppress(Exception):  # the connection may be gone by now; that is the point of it
            await self._send_reply(msg, delayed.reply, validate)

    def cancel_late_replies(self) -> None:
        for task in list(self._late_replies):
            task.cancel()

    # ---- CSMS → station ------------------------------------------------------------------------------------

    async def request(self, action: str, payload: Any, timeout: float, validate: bool = True) -> dict[str, Any]:
        """Send one CALL and return the station's CALLRESULT payload exactly as sent (camelCase).

        This is the library's `ChargePoint.call` with dict payloads: same message classes, same schema
        validation, same one-outstanding-CALL lock and response correlation.
        """
        if is_dataclass(payload) and type(payload).__name__ != action:
            raise TypeError(f"payload is a {type(payload).__name__} but the action is {action}")
        call = Call(unique_id=str(self._unique_id_generator()), action=action, payload=_as_payload(payload))
        if validate:
            try:
                await validate_payload(call, OCPP_VERSION)
            except OCPPError as error:
                raise InvalidCsmsRequest(f"{action} request fails the OCPP 2.0.1 schema: {_problem(error)}") from None
        self._behaviour.note_csms_request(self.id)
        async with self._call_lock:
            await self._send(call.to_json())
            response = await self._response_or_close(action, call.unique_id, timeout)
        if response.message_type_id == MessageType.CallError:
            raise StationCallError(action, response.error_code, response.error_description, response.error_details)
        response.action = action
        if validate:
            try:
                await validate_payload(response, OCPP_VERSION)
            except OCPPError as error:
                self._violation("in", "schema", _problem(error), response)
                raise InvalidStationResponse(action, response.payload, _problem(error)) from None
        return response.payload

    async def _response_or_close(self, action: str, message_id: str, timeout: float) -> Any:
        """The library's response correlation, but giving up as soon as the connection closes.

        A station may answer and close right after (a new password: answer first, then reconnect); the close can
        be seen before the library has routed the answer received just ahead of it, so a closed connection gets a
        short grace for an answer already on its way.
        """
        response = asyncio.ensure_future(self._get_specific_response(message_id, timeout))
        closed = asyncio.ensure_future(self.wire.ws.wait_closed())
        try:
            await asyncio.wait({response, closed}, return_when=asyncio.FIRST_COMPLETED)
            if not response.done():
                await asyncio.wait({response}, timeout=ANSWER_AFTER_CLOSE)
        finally:
            closed.cancel()
            if not response.done():
                response.cancel()
                await asyncio.wait({response})  # let the cancellation land (wait() never raises it here)
        if response.cancelled():
            raise StationNotConnected(f"station {self.id} disconnected before answering {action}")
        try:
            return response.result()
        except TimeoutError:
            raise CsmsCallTimeout(f"station {self.id} did not answer {action} within {timeout:g} s") from None

    # ---- default answers (the library routes station CALLs here) -------------------------------------------

    @on("BootNotification")
    def on_boot_notification(self, **_: Any) -> call_result.BootNotification:
        status, interval = self._behaviour.next_boot_response(self.id)
        return call_result.BootNotification(current_time=utc_now_iso(), interval=interval, status=status)

    @on("Heartbeat")
    def on_heartbeat(self, **_: Any) -> call_result.Heartbeat:
        return call_result.Heartbeat(current_time=utc_now_iso())

    @on("Authorize")
    def on_authorize(self, id_token: dict[str, Any], **_: Any) -> call_result.Authorize:
        return call_result.Authorize(id_token_info=self._id_token_info(id_token))

    @on("TransactionEvent")
    def on_transaction_event(self, id_token: dict[str, Any] | None = None, **_: Any) -> call_result.TransactionEvent:
        if id_token is None:
            return call_result.TransactionEvent()
        return call_result.TransactionEvent(id_token_info=self._id_token_info(id_token))

    def _id_token_info(self, id_token: dict[str, Any]) -> dict[str, Any]:
        # The library hands handlers snake_case and turns our snake_case answer back into camelCase.
        info: TokenInfo = self._behaviour.token_info(id_token["id_token"])
        answer: dict[str, Any] = {"status": info.status}
        if info.group_id is not None:
            answer["group_id_token"] = {"id_token": info.group_id, "type": "Central"}
        if info.cache_expiry is not None:
            answer["cache_expiry_date_time"] = info.cache_expiry
        return answer

    @on("DataTransfer")
    def on_data_transfer(self, **_: Any) -> call_result.DataTransfer:
        return call_result.DataTransfer(status="UnknownVendorId")

    @on("StatusNotification")
    def on_status_notification(self, **_: Any) -> call_result.StatusNotification:
        return call_result.StatusNotification()

    @on("NotifyReport")
    def on_notify_report(self, **_: Any) -> call_result.NotifyReport:
        return call_result.NotifyReport()

    @on("NotifyEvent")
    def on_notify_event(self, **_: Any) -> call_result.NotifyEvent:
        return call_result.NotifyEvent()

    @on("SecurityEventNotification")
    def on_security_event_notification(self, **_: Any) -> call_result.SecurityEventNotification:
        return call_result.SecurityEventNotification()

    @on("MeterValues")
    def on_meter_values(self, **_: Any) -> call_result.MeterValues:
        return call_result.MeterValues()

    @on("FirmwareStatusNotification")
    def on_firmware_status_notification(self, **_: Any) -> call_result.FirmwareStatusNotification:
        return call_result.FirmwareStatusNotification()

    @on("SignCertificate")
    def on_sign_certificate(self, **_: Any) -> call_result.SignCertificate:
        # No certificate authority by default; a test that signs CSRs overrides this (lab/csms/pki.py).
        return call_result.SignCertificate(
            status="Rejected",
            status_info={"reasonCode": "Unspecified", "additionalInfo": "this loopback CSMS signs no CSRs by default"},
        )

    @on("LogStatusNotification")
    def on_log_status_notification(self, **_: Any) -> call_result.LogStatusNotification:
        return call_result.LogStatusNotification()

    @on("NotifyCustomerInformation")
    def on_notify_customer_information(self, **_: Any) -> call_result.NotifyCustomerInformation:
        return call_result.NotifyCustomerInformation()

    @on("ReportChargingProfiles")
    def on_report_charging_profiles(self, **_: Any) -> call_result.ReportChargingProfiles:
        return call_result.ReportChargingProfiles()

    @on("NotifyMonitoringReport")
    def on_notify_monitoring_report(self, **_: Any) -> call_result.NotifyMonitoringReport:
        return call_result.NotifyMonitoringReport()
