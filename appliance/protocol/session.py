"""The OCPP-J session rules, sans-IO: boot and connection states, and the correlation of our CALLs.

What may be sent and answered depends on where the boot stands (Part 2 B01–B03, Part 4 §4.1): before the CSMS
has accepted the BootNotification, the station sends nothing else of its own (while Pending it may answer a
configuration request with the NotifyReports it asked for); while the boot is Rejected, every CSMS request is
answered with SecurityError except TriggerMessage(BootNotification), which is how a CSMS ends the wait early
(TC_B_30/31). OCPP-J allows one outstanding CALL per direction; an answer is matched to it by message id, and
one that matches nothing is dropped, never answered (§4.1.4): *late* if it answers a CALL we already gave up on,
*stray* otherwise.

`Session` holds these rules as plain state: events in (`connected`, `receive`, `boot_answered` …), decisions
and events out. It lives as long as the process (the boot state outlives a connection: a reconnect without a
reboot does not boot again); the CALL bookkeeping starts afresh with every connection. `appliance.link` is its
Trio driver, which owns the socket, the timers and the waiting.
"""

from __future__ import annotations

import enum
from collections import deque
from dataclasses import dataclass

from appliance.protocol.errors import ErrorCode, OcppError
from appliance.protocol.frames import (
    Call,
    CallError,
    CallResult,
    FrameError,
    call_error_for,
    decode,
    encode,
    encode_call_text,
)


class LinkState(enum.Enum):
    OFFLINE = "offline"
    CONNECTED = "connected"  # WebSocket up, boot not yet answered
    PENDING = "pending"  # BootNotification answered Pending
    REJECTED = "rejected"  # BootNotification answered Rejected
    ACCEPTED = "accepted"


#: Sent in any connected state: the boot itself.
BOOT_ACTION = "BootNotification"
#: Besides the boot, what may go out while Pending (B02: the CSMS configures the station, asking for reports).
PENDING_ACTIONS = frozenset({"NotifyReport", "NotifyMonitoringReport"})
#: How many given-up CALLs are remembered, to tell a late answer from a stray one in the log.
LATE_MEMORY = 8

#: Boot answers and the state each leads to.
_BOOT_STATES = {"Accepted": LinkState.ACCEPTED, "Pending": LinkState.PENDING, "Rejected": LinkState.REJECTED}


class SessionError(Exception):
    """An event the session's state does not allow: a bug in the driver, not something a peer can cause."""


class NotAllowed(Exception):
    """Our CALL may not be sent now (offline, closing, or the boot not accepted); the text says why."""


@dataclass(frozen=True, slots=True)
class Outstanding:
    """Our CALL on the wire, waiting for its answer."""

    message_id: str
    action: str


# --- what `receive` makes of a message ------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Request:
    """A CSMS CALL, to be answered in order (`inbound_refusal` says first whether a handler may see it)."""

    call: Call


@dataclass(frozen=True, slots=True)
class Answer:
    """The answer to our outstanding CALL, which is no longer outstanding."""

    call: Outstanding
    frame: CallResult | CallError


@dataclass(frozen=True, slots=True)
class Late:
    """An answer to a CALL we already gave up on (timed out): dropped."""

    call: Outstanding
    frame: CallResult | CallError


@dataclass(frozen=True, slots=True)
class Stray:
    """An answer matching no CALL of ours on this connection: dropped."""

    frame: CallResult | CallError


@dataclass(frozen=True, slots=True)
class Malformed:
    """Not a usable frame; `reply` is the CALLERROR text to send back, None for a broken response (§4.2.3)."""

    error: FrameError
    reply: str | None


Event = Request | Answer | Late | Stray | Malformed


class Session:
    """The boot state of the station and the CALL correlation of the current connection."""

    def __init__(self) -> None:
        self.state = LinkState.OFFLINE
        #: The CSMS accepted a boot of this process once: a reconnect does not boot again (Part 4 §5.3).
        self.accepted_once = False
        self.outstanding: Outstanding | None = None
        self._holding = False
        self._given_up: deque[Outstanding] = deque(maxlen=LATE_MEMORY)

    # --- connection and boot -------------------------------------------------------------------------

    def connected(self) -> None:
        """A WebSocket is up; the boot procedure runs next. The CALL bookkeeping starts afresh."""
        if self.state is not LinkState.OFFLINE:
            raise SessionError(f"connected while {self.state.value}")
        self.state = LinkState.CONNECTED
        self.outstanding = None
        self._holding = False
        self._given_up.clear()

    def disconnected(self) -> Outstanding | None:
        """The connection is gone; returns the CALL that was still waiting (it will get no answer now)."""
        lost, self.outstanding = self.outstanding, None
        self.state = LinkState.OFFLINE
        return lost

    def boot_answered(self, status: str) -> LinkState:
        """The CSMS answered our BootNotification with `status` (Accepted, Pending or Rejected)."""
        if self.state not in (LinkState.CONNECTED, LinkState.PENDING, LinkState.REJECTED):
            raise SessionError(f"a boot answer while {self.state.value}")
        try:
            self.state = _BOOT_STATES[status]
        except KeyError:
            raise SessionError(f"unknown boot status {status!r}") from None
        if self.state is LinkState.ACCEPTED:
            self.accepted_once = True
        return self.state

    def boot_done(self) -> None:
        """The boot procedure returned: the CSMS accepted this boot now, or an earlier one on a reconnect."""
        if self.state is LinkState.ACCEPTED:
            return
        if self.state is not LinkState.CONNECTED or not self.accepted_once:
            raise SessionError(f"boot done while {self.state.value} (accepted once: {self.accepted_once})")
        self.state = LinkState.ACCEPTED

    def hold(self) -> None:
        """Closing on purpose: no new CALL of ours may start (the one outstanding is still answered)."""
        self._holding = True

    # --- what may be sent and answered ---------------------------------------------------------------

    def send_refusal(self, action: str) -> str | None:
        """Why our CALL `action` may not be sent now; None when it may."""
        if self.state is LinkState.OFFLINE:
            return "offline"
        if self._holding:
            return "closing"
        if action == BOOT_ACTION or self.state is LinkState.ACCEPTED:
            return None
        if self.state is LinkState.PENDING and action in PENDING_ACTIONS:
            return None
        return f"boot not accepted ({self.state.value})"

    def inbound_refusal(self, call: Call) -> OcppError | None:
        """The CALLERROR a CSMS CALL gets before any handler sees it; None when it may be handled.

        Decided before schema validation, so the payload's shape is not trusted.
        """
        if self.state is not LinkState.REJECTED:
            return None
        if (
            call.action == "TriggerMessage"
            and isinstance(call.payload, dict)
            and call.payload.get("requestedMessage") == BOOT_ACTION
        ):
            return None
        return OcppError(ErrorCode.SecurityError, "boot was rejected; no requests accepted")

    # --- our CALLs -----------------------------------------------------------------------------------

    def begin_call(
        self, message_id: str, action: str, payload: dict[str, object], payload_text: str | None = None
    ) -> str:
        """Our CALL goes out: its frame text. NotAllowed if the state forbids it; SessionError if another
        CALL is still outstanding (the driver must wait its turn).

        `payload_text`, when given, is `payload` already serialised as compact JSON (the journal keeps it so):
        it goes into the frame as it is, instead of encoding `payload` again."""
        refusal = self.send_refusal(action)
        if refusal is not None:
            raise NotAllowed(refusal)
        if self.outstanding is not None:
            raise SessionError(f"{action} while {self.outstanding.action} is outstanding")
        if payload_text is None:
            text = encode(Call(message_id, action, payload))  # encoded at once: no copy needed against later edits
        else:
            text = encode_call_text(message_id, action, payload_text)
        self.outstanding = Outstanding(message_id, action)
        return text

    def give_up(self, message_id: str) -> None:
        """We stop waiting for the answer to `message_id` (timed out, or it could not be sent). An answer that
        still comes is then a `Late` one. Nothing happens if that CALL is no longer outstanding."""
        if self.outstanding is not None and self.outstanding.message_id == message_id:
            self._given_up.append(self.outstanding)
            self.outstanding = None

    # --- what comes in -------------------------------------------------------------------------------

    def receive(self, data: str | bytes | bytearray) -> Event:
        """One WebSocket message from the CSMS, decoded and matched."""
        try:
            frame = decode(data)
        except FrameError as exc:
            reply = encode(call_error_for(exc.message_id, exc)) if exc.reply else None
            return Malformed(exc, reply)
        if isinstance(frame, Call):
            return Request(frame)
        if self.outstanding is not None and frame.message_id == self.outstanding.message_id:
            answered, self.outstanding = self.outstanding, None
            return Answer(answered, frame)
        for call in self._given_up:
            if call.message_id == frame.message_id:
                self._given_up.remove(call)
                return Late(call, frame)
        return Stray(frame)
