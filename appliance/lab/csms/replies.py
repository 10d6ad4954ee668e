"""How a test scripts the CSMS's answers, and the errors the CSMS raises to its callers.

A test that checks retries, offline queueing or error handling needs the CSMS to misbehave on purpose: answer
with a CALLERROR, answer late, or never answer. These small value types say which, so that a response override
is a plain value (or a function returning one) rather than a subclass of the server.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Any, Final


@dataclass(frozen=True)
class CsmsCallError:
    """Answer the station's CALL with a CALLERROR, e.g. `CsmsCallError("InternalError")` (what the station
    raises on receiving one is `link.rpc.CallErrorReply`)."""

    code: str
    description: str = ""
    details: dict[str, Any] | None = None


class _NoAnswer:
    """Type of `NO_ANSWER`; a singleton so that `reply is NO_ANSWER` reads naturally."""

    _instance: _NoAnswer | None = None

    def __new__(cls) -> _NoAnswer:
        if cls._instance is None:
            cls._instance = super().__new__(cls)
        return cls._instance

    def __repr__(self) -> str:
        return "NO_ANSWER"


NO_ANSWER: Final = _NoAnswer()
"""Never answer this CALL — for the station's message-timeout and retry paths."""


@dataclass(frozen=True)
class Delayed:
    """Answer after `seconds` without blocking the connection meanwhile (so a late answer can arrive after
    the station has given up and moved on, which is exactly the case a retry test wants)."""

    seconds: float
    reply: Reply


Reply = dict[str, Any] | CsmsCallError | Delayed | _NoAnswer | Any  # Any: an ocpp.v201.call_result dataclass
"""A CALLRESULT payload (camelCase dict or `ocpp.v201.call_result.<Action>`), a CsmsCallError, a Delayed or
NO_ANSWER."""

Responder = Reply | Callable[[str, dict[str, Any]], "Reply | Awaitable[Reply | None] | None"]
"""What `set_response` accepts: a fixed reply, or `fn(station_id, payload)` returning one (None = answer as
the CSMS would by default). The function runs on the CSMS's event-loop thread, so it must not block; it may be
a coroutine function."""


class CsmsError(Exception):
    """Base of everything the loopback CSMS raises at its caller."""


class StationNotConnected(CsmsError):
    """The station has no open OCPP-J connection to this CSMS right now."""


class CsmsCallTimeout(CsmsError, TimeoutError):
    """The station did not answer a CSMS CALL in time (the station's own is `link.rpc.CallTimeout`)."""


class StationCallError(CsmsError):
    """The station answered a CSMS CALL with a CALLERROR; `code` is the OCPP-J error code."""

    def __init__(self, action: str, code: str, description: str, details: Any) -> None:
        super().__init__(f"station answered {action} with CALLERROR {code}: {description!r} {details!r}")
        self.action = action
        self.code = code
        self.description = description
        self.details = details


class InvalidStationResponse(CsmsError):
    """The station's CALLRESULT does not satisfy the official schema (also recorded as a violation)."""

    def __init__(self, action: str, payload: Any, problem: str) -> None:
        super().__init__(f"station's {action} response fails the OCPP 2.0.1 schema: {problem}")
        self.action = action
        self.payload = payload
        self.problem = problem


class InvalidCsmsRequest(CsmsError, ValueError):
    """The test asked the CSMS to send a request that fails the schema (pass `validate=False` to send it
    anyway, for negative tests)."""
