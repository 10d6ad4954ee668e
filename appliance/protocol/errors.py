"""OCPP-J RPC error codes and the exception that carries one to the CALLERROR writer.

Any code in the station (frame decoding, schema validation, a functional block's handler) that wants the
CSMS to receive a CALLERROR raises :class:`OcppError`; the dispatcher turns it into a frame with
:func:`appliance.protocol.frames.call_error_for`. Keeping the code, the description limit and the details
in one exception means no handler has to know the wire format.
"""

from __future__ import annotations

import enum
from collections.abc import Mapping
from typing import Any

#: Part 4 table 7: ErrorDescription is string[255].
MAX_DESCRIPTION_LENGTH = 255


class ErrorCode(enum.StrEnum):
    """The RPC framework error codes of OCPP 2.0.1 (Part 4 table 8).

    A ``StrEnum`` (a ``str`` and an ``Enum``) so a member compares equal to, formats as and JSON-encodes as
    its wire spelling. Note the
    2.0.1 spelling ``OccurrenceConstraintViolation`` (OCPP 1.6 had "Occurence"): a peer still using the
    1.6 spelling is not rejected here, because incoming CALLERROR codes stay plain strings.
    """

    FormatViolation = "FormatViolation"
    GenericError = "GenericError"
    InternalError = "InternalError"
    MessageTypeNotSupported = "MessageTypeNotSupported"
    NotImplemented = "NotImplemented"
    NotSupported = "NotSupported"
    OccurrenceConstraintViolation = "OccurrenceConstraintViolation"
    PropertyConstraintViolation = "PropertyConstraintViolation"
    ProtocolError = "ProtocolError"
    RpcFrameworkError = "RpcFrameworkError"
    SecurityError = "SecurityError"
    TypeConstraintViolation = "TypeConstraintViolation"


def clip_description(text: str, limit: int = MAX_DESCRIPTION_LENGTH) -> str:
    """Cut ``text`` to ``limit`` characters, marking the cut so a reader knows the text went on."""
    if len(text) <= limit:
        return text
    return text[: limit - 1] + "…"


class OcppError(Exception):
    """Raise to answer the current CALL with a CALLERROR.

    The description is clipped at construction time, so whatever a handler writes (even text built from
    CSMS input) can never make the station emit an over-long errorDescription.
    """

    def __init__(
        self,
        code: ErrorCode | str,
        description: str = "",
        details: Mapping[str, Any] | None = None,
    ) -> None:
        self.code: ErrorCode = ErrorCode(code)
        self.description: str = clip_description(description)
        self.details: dict[str, Any] = dict(details) if details else {}
        super().__init__(f"{self.code.value}: {self.description}" if self.description else self.code.value)

    def __reduce__(self) -> tuple[Any, ...]:
        # Exception's default pickling replays ``args`` (the formatted message) into __init__, which would
        # be read as the code; rebuild from the real fields instead.
        return (type(self), (self.code, self.description, self.details))

    def __repr__(self) -> str:
        return f"{type(self).__name__}({self.code.value!r}, {self.description!r}, {self.details!r})"
