"""OCPP-J message frames (Part 4 §4): values, encoding and a defensive decoder.

Sans-IO on purpose: the link hands in whatever text or bytes arrived and gets back either a frame or a
:class:`FrameError` that already knows the answer the spec asks for (which error code, which message id,
whether to answer at all). Nothing here blocks, logs or touches a socket.

Decoding choices where Part 4 leaves room (each is also pinned by a test):

* The message id is echoed whenever element 1 is a string of at most 36 characters; otherwise the answer
  uses ``"-1"`` (§4.2.3). An over-long id is treated as unreadable because echoing it would make our own
  CALLERROR invalid.
* A message type number that is an integer other than 2/3/4 gets ``MessageTypeNotSupported`` (§4.4), even
  when the id is unreadable (then with ``"-1"``): the sender needs that code to fall back, whatever else is
  wrong with a frame of a type we cannot parse anyway. A type element that is not an integer at all
  (``"2"``, ``2.0``, ``true``) means the frame is not an RPC message: ``RpcFrameworkError``.
* A CALL whose wrapper is fine (4 elements, readable id, string action) but whose payload is not a JSON
  object gets ``FormatViolation``, not ``RpcFrameworkError``: table 8 reserves RpcFrameworkError for
  content that "is not a valid RPC Request" (the wrapper), while FormatViolation is "Payload for Action is
  syntactically incorrect" -- exactly this case, and it tells the CSMS which half of its message to fix.
* A ``null`` payload (or errorDetails) is read as ``{}``: §4.1.5 names ``null`` as a possible (if
  discouraged) notation for "no payload", so refusing it would be stricter than the spec.
* A CALLRESULT or CALLERROR that is malformed is never answered (a response must not be responded to); the
  error still carries its id when readable, so the caller can fail the matching pending CALL at once instead
  of waiting for the timeout.
* Text that is not UTF-8, not JSON (including NaN/Infinity, numbers that overflow a float, integers too long
  for Python to parse, nesting too deep to parse) or that holds a lone UTF-16 surrogate (``"\\ud800"``: not
  representable in UTF-8, so any echo of it would make our own frame unsendable) is unreadable:
  ``RpcFrameworkError`` with ``"-1"``.
"""

from __future__ import annotations

import enum
import json
import math
import re
import uuid
from dataclasses import dataclass, field
from typing import Any

from appliance.protocol.errors import ErrorCode, OcppError, clip_description

#: Part 4 table 4: messageId is string[36].
MAX_MESSAGE_ID_LENGTH = 36
#: The id a CALLERROR carries when the offending message's id could not be read (§4.2.3).
UNREADABLE_MESSAGE_ID = "-1"


class MessageType(enum.IntEnum):
    """Message Type Numbers (Part 4 table 3)."""

    CALL = 2
    CALLRESULT = 3
    CALLERROR = 4


@dataclass(frozen=True, slots=True)
class Call:
    """A request: ``[2, messageId, action, payload]``."""

    message_id: str
    action: str
    payload: dict[str, Any] = field(default_factory=dict)


@dataclass(frozen=True, slots=True)
class CallResult:
    """A successful response: ``[3, messageId, payload]``."""

    message_id: str
    payload: dict[str, Any] = field(default_factory=dict)


@dataclass(frozen=True, slots=True)
class CallError:
    """An error response: ``[4, messageId, errorCode, errorDescription, errorDetails]``.

    ``code`` is a plain string, not :class:`ErrorCode`, because a peer may send codes we do not know (e.g.
    OCPP 1.6 spellings) and the caller must still be able to match the response to its CALL.
    """

    message_id: str
    code: str
    description: str = ""
    details: dict[str, Any] = field(default_factory=dict)


Frame = Call | CallResult | CallError


class FrameError(OcppError):
    """A received message that is not a usable OCPP-J frame.

    ``kind`` is the message type the broken frame claimed to be, or ``None`` when that could not be told or
    is not one we support. It decides ``reply``: a broken CALL or an unreadable message gets a CALLERROR,
    a broken CALLRESULT/CALLERROR is only logged and dropped.
    """

    def __init__(
        self,
        code: ErrorCode | str,
        description: str = "",
        *,
        message_id: str = UNREADABLE_MESSAGE_ID,
        kind: MessageType | None = None,
    ) -> None:
        super().__init__(code, description)
        self.message_id = message_id
        self.kind = kind

    @property
    def reply(self) -> bool:
        """Whether the station should answer with a CALLERROR (never for a response, Part 4 §4.2.3)."""
        return self.kind is None or self.kind is MessageType.CALL

    @property
    def is_response(self) -> bool:
        """The frame claimed to answer one of our CALLs; ``message_id`` names that CALL when not "-1"."""
        return self.kind is MessageType.CALLRESULT or self.kind is MessageType.CALLERROR

    def __reduce__(self) -> tuple[Any, ...]:
        # Keyword-only fields cannot travel through the positional tuple; rebuild via a helper.
        return (_rebuild_frame_error, (self.code, self.description, self.message_id, self.kind))

    def __repr__(self) -> str:
        return (
            f"FrameError({self.code.value!r}, {self.description!r}, message_id={self.message_id!r}, kind={self.kind!r})"
        )


def _rebuild_frame_error(code: ErrorCode, description: str, message_id: str, kind: MessageType | None) -> FrameError:
    return FrameError(code, description, message_id=message_id, kind=kind)


def new_message_id() -> str:
    """A fresh id for an outgoing CALL: a UUID4 is unique across connections and reboots without state."""
    return str(uuid.uuid4())


def call_error_for(message_id: str, exc: OcppError) -> CallError:
    """The CALLERROR answering the CALL ``message_id`` that failed with ``exc``."""
    return CallError(message_id, exc.code.value, exc.description, dict(exc.details))


# --- encoding ------------------------------------------------------------------------------------------

# allow_nan=False: NaN/Infinity are not JSON (RFC 8259) and a peer would reject the whole frame.
_encoder = json.JSONEncoder(separators=(",", ":"), ensure_ascii=False, allow_nan=False)


def encode(frame: Frame) -> str:
    """The wire text of ``frame``: compact JSON, non-ASCII kept as UTF-8 (Part 4 §4.1.2).

    Raises ``ValueError``/``TypeError`` for a frame the station must not send (bad id, non-JSON payload):
    those are programming errors, and failing here keeps them off the wire.
    """
    if isinstance(frame, Call):
        body: list[Any] = [MessageType.CALL.value, frame.message_id, frame.action, frame.payload]
    elif isinstance(frame, CallResult):
        body = [MessageType.CALLRESULT.value, frame.message_id, frame.payload]
    elif isinstance(frame, CallError):
        code = frame.code.value if isinstance(frame.code, ErrorCode) else frame.code
        body = [
            MessageType.CALLERROR.value,
            frame.message_id,
            code,
            clip_description(frame.description),
            frame.details,
        ]
    else:
        raise TypeError(f"not an OCPP-J frame: {type(frame).__name__}")
    _check_outgoing_id(frame.message_id)
    return _encoder.encode(body)


def encode_call_text(message_id: str, action: str, payload_text: str) -> str:
    """The wire text of a CALL whose payload is already JSON text (e.g. as the journal stored it).

    The caller vouches that `payload_text` is one JSON object, the payload the CALL stands for (e.g. the
    journal's `json.dumps(payload, separators=(",", ":"))`; escaped non-ASCII is the same JSON); only the id
    and the action are encoded here.
    """
    _check_outgoing_id(message_id)
    return f"[{MessageType.CALL.value},{_encoder.encode(message_id)},{_encoder.encode(action)},{payload_text}]"


def _check_outgoing_id(message_id: object) -> None:
    if not isinstance(message_id, str) or len(message_id) > MAX_MESSAGE_ID_LENGTH:
        raise ValueError(f"message id must be a string of at most {MAX_MESSAGE_ID_LENGTH} characters")


# --- decoding ------------------------------------------------------------------------------------------

# An escaped UTF-16 surrogate; only then can json.loads produce a lone surrogate, so only then do we pay
# for walking the decoded value.
_SURROGATE_ESCAPE = re.compile(r"\\u[dD][89a-fA-F]")


def decode(data: str | bytes | bytearray) -> Frame:
    """Parse one received WebSocket message; raise :class:`FrameError` for anything unusable."""
    message = _parse_json(data)
    if not isinstance(message, list) or not message:
        raise FrameError(ErrorCode.RpcFrameworkError, "message is not a non-empty JSON array")
    message_id = _readable_id(message)
    kind = _message_type(message[0], message_id)
    if message_id is None:
        raise FrameError(
            ErrorCode.RpcFrameworkError,
            f"message id must be a string of at most {MAX_MESSAGE_ID_LENGTH} characters",
            kind=kind,
        )
    if kind is MessageType.CALL:
        return _decode_call(message, message_id)
    if kind is MessageType.CALLRESULT:
        return _decode_call_result(message, message_id)
    return _decode_call_error(message, message_id)


def _parse_json(data: str | bytes | bytearray) -> Any:
    if isinstance(data, bytes | bytearray):
        try:
            text = bytes(data).decode("utf-8")
        except UnicodeDecodeError:
            raise FrameError(ErrorCode.RpcFrameworkError, "message is not valid UTF-8") from None
    elif isinstance(data, str):
        text = data
        if not _is_utf8_encodable(text):
            raise FrameError(ErrorCode.RpcFrameworkError, "message is not valid UTF-8") from None
    else:
        raise TypeError(f"expected str or bytes, got {type(data).__name__}")
    try:
        value = _decoder.decode(text)
    except json.JSONDecodeError as exc:
        # Position only: the raw text must never be echoed (§4.2.3).
        raise FrameError(
            ErrorCode.RpcFrameworkError, f"message is not valid JSON ({exc.msg} at char {exc.pos})"
        ) from None
    except (ValueError, RecursionError) as exc:
        raise FrameError(ErrorCode.RpcFrameworkError, f"message is not usable JSON ({_reason(exc)})") from None
    if _SURROGATE_ESCAPE.search(text) and _holds_lone_surrogate(value):
        raise FrameError(ErrorCode.RpcFrameworkError, "message holds a lone UTF-16 surrogate")
    return value


def _reason(exc: BaseException) -> str:
    if isinstance(exc, RecursionError):
        return "nested too deeply"
    return clip_description(str(exc), 80)


def _reject_constant(name: str) -> Any:
    raise ValueError(f"{name} is not JSON")


def _finite_float(text: str) -> float:
    number = float(text)
    if not math.isfinite(number):
        raise ValueError("number out of range")
    return number


#: Built once: `json.loads` with hooks would build a new decoder (and scanner) for every message.
_decoder = json.JSONDecoder(parse_constant=_reject_constant, parse_float=_finite_float)


def _is_utf8_encodable(text: str) -> bool:
    try:
        text.encode("utf-8")
    except UnicodeEncodeError:
        return False
    return True


def _holds_lone_surrogate(value: Any) -> bool:
    # Iterative: the value may be nested as deeply as json.loads allows, close to the recursion limit.
    pending = [value]
    while pending:
        item = pending.pop()
        if isinstance(item, str):
            if not _is_utf8_encodable(item):
                return True
        elif isinstance(item, list):
            pending.extend(item)
        elif isinstance(item, dict):
            pending.extend(item.keys())
            pending.extend(item.values())
    return False


def _readable_id(message: list[Any]) -> str | None:
    if len(message) < 2:
        return None
    candidate = message[1]
    if isinstance(candidate, str) and len(candidate) <= MAX_MESSAGE_ID_LENGTH:
        return candidate
    return None


def _message_type(number: Any, message_id: str | None) -> MessageType:
    reply_id = UNREADABLE_MESSAGE_ID if message_id is None else message_id
    if type(number) is not int:
        raise FrameError(ErrorCode.RpcFrameworkError, "message type number is not an integer", message_id=reply_id)
    try:
        return MessageType(number)
    except ValueError:
        shown = number if abs(number) < 10**9 else "out of range"
        raise FrameError(
            ErrorCode.MessageTypeNotSupported, f"message type {shown} not supported", message_id=reply_id
        ) from None


def _decode_call(message: list[Any], message_id: str) -> Call:
    kind = MessageType.CALL
    _expect_length(message, 4, message_id, kind)
    action = message[2]
    if not isinstance(action, str):
        raise FrameError(ErrorCode.RpcFrameworkError, "CALL action is not a string", message_id=message_id, kind=kind)
    return Call(message_id, action, _payload(message[3], message_id, kind, "payload"))


def _decode_call_result(message: list[Any], message_id: str) -> CallResult:
    kind = MessageType.CALLRESULT
    _expect_length(message, 3, message_id, kind)
    return CallResult(message_id, _payload(message[2], message_id, kind, "payload"))


def _decode_call_error(message: list[Any], message_id: str) -> CallError:
    kind = MessageType.CALLERROR
    _expect_length(message, 5, message_id, kind)
    code, description = message[2], message[3]
    if not isinstance(code, str) or not isinstance(description, str):
        raise FrameError(
            ErrorCode.RpcFrameworkError,
            "CALLERROR errorCode and errorDescription must be strings",
            message_id=message_id,
            kind=kind,
        )
    return CallError(message_id, code, description, _payload(message[4], message_id, kind, "errorDetails"))


def _expect_length(message: list[Any], length: int, message_id: str, kind: MessageType) -> None:
    if len(message) != length:
        raise FrameError(
            ErrorCode.RpcFrameworkError,
            f"{kind.name} must have {length} elements, got {len(message)}",
            message_id=message_id,
            kind=kind,
        )


def _payload(value: Any, message_id: str, kind: MessageType, what: str) -> dict[str, Any]:
    if value is None:
        return {}
    if isinstance(value, dict):
        return value
    raise FrameError(
        ErrorCode.FormatViolation,
        f"{kind.name} {what} is not a JSON object",
        message_id=message_id,
        kind=kind,
    )
