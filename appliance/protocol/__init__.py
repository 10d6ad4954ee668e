"""Sans-IO OCPP-J protocol layer: frames, RPC error codes and schema validation.

Everything here is plain Python without I/O, so the link, the dispatcher and the tests share one
definition of what a valid message is and which CALLERROR answers an invalid one.
"""

from appliance.protocol.errors import MAX_DESCRIPTION_LENGTH, ErrorCode, OcppError, clip_description
from appliance.protocol.frames import (
    MAX_MESSAGE_ID_LENGTH,
    UNREADABLE_MESSAGE_ID,
    Call,
    CallError,
    CallResult,
    Frame,
    FrameError,
    MessageType,
    call_error_for,
    decode,
    encode,
    new_message_id,
)
from appliance.protocol.schemas import (
    Direction,
    SchemaRegistry,
    default_registry,
    validate_request,
    validate_response,
)

__all__ = [
    "MAX_DESCRIPTION_LENGTH",
    "MAX_MESSAGE_ID_LENGTH",
    "UNREADABLE_MESSAGE_ID",
    "Call",
    "CallError",
    "CallResult",
    "Direction",
    "ErrorCode",
    "Frame",
    "FrameError",
    "MessageType",
    "OcppError",
    "SchemaRegistry",
    "call_error_for",
    "clip_description",
    "decode",
    "default_registry",
    "encode",
    "new_message_id",
    "validate_request",
    "validate_response",
]
