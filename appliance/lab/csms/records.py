"""What the loopback CSMS saw: frames, WebSocket connections and protocol violations.

The CSMS is a *checker*: tests assert on what crossed the wire, not on what the station says it did.
Everything is recorded by the event-loop thread and read by test threads, so the store is guarded by one lock
whose condition variable also wakes waiters — that is what lets `wait_for` return as soon as a frame arrives
instead of sleeping in fixed steps. Readers always get copies (snapshots), never the live lists.
"""

from __future__ import annotations

import json
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field, replace
from typing import Any, Literal, TypeVar

Direction = Literal["in", "out"]
"""'in' = sent by the station to the CSMS, 'out' = sent by the CSMS to the station."""

T = TypeVar("T")

_CALL, _CALLRESULT, _CALLERROR = 2, 3, 4
#: How many unanswered CALL ids per connection and direction we remember to label responses with their
#: action. A station that never answers must not make the recorder grow without bound.
_MAX_PENDING_IDS = 1024


@dataclass(frozen=True)
class RecordedFrame:
    """One WebSocket text frame, exactly as it crossed the wire."""

    index: int  # absolute position in the recording; pass it (or `LoopbackCsms.mark()`) as `since=`
    monotonic: float  # time.monotonic() when recorded
    wall: float  # time.time() when recorded
    station_id: str
    connection_id: int
    direction: Direction
    raw: str
    parsed: Any  # the decoded JSON (normally a list), None when the text is not JSON
    action: str | None = None  # for a CALL its action; for CALLRESULT/CALLERROR the action of the CALL answered

    @property
    def message_type(self) -> int | None:
        """2 (CALL), 3 (CALLRESULT), 4 (CALLERROR), or None for anything that is not an OCPP-J frame."""
        if isinstance(self.parsed, list) and self.parsed and self.parsed[0] in (_CALL, _CALLRESULT, _CALLERROR):
            return int(self.parsed[0])
        return None

    @property
    def message_id(self) -> str | None:
        if self.message_type is not None and len(self.parsed) > 1 and isinstance(self.parsed[1], str):
            return self.parsed[1]
        return None

    @property
    def payload(self) -> Any:
        """The payload of a CALL or CALLRESULT, the errorDetails of a CALLERROR, None otherwise."""
        kind = self.message_type
        position = {_CALL: 3, _CALLRESULT: 2, _CALLERROR: 4}.get(kind) if kind is not None else None
        if position is None or len(self.parsed) <= position:
            return None
        return self.parsed[position]

    @property
    def is_call(self) -> bool:
        return self.message_type == _CALL

    @property
    def error_code(self) -> str | None:
        if self.message_type == _CALLERROR and len(self.parsed) > 2:
            return self.parsed[2]
        return None


@dataclass(frozen=True)
class ConnectionRecord:
    """One WebSocket connection attempt, accepted or not. The password is never stored."""

    connection_id: int
    station_id: str
    path: str
    remote: tuple[Any, ...] | None
    opened_monotonic: float
    opened_wall: float
    offered_subprotocols: tuple[str, ...]
    auth_username: str | None  # from the Authorization header; None when absent or unreadable
    auth_ok: bool | None  # None when the CSMS requires no auth (security profile 0)
    http_status: int | None = None  # 101 when the upgrade was accepted; 401/404/503/… when refused
    subprotocol: str | None = None  # as negotiated
    accepted: bool = False  # the OCPP session started (upgrade done with ocpp2.0.1; call() works from now)
    rejected: str | None = None  # why the CSMS refused or closed it right away, for test messages
    closed_monotonic: float | None = None
    close_code: int | None = None  # the code the station sent, 1006 when the TCP connection just ended
    close_reason: str | None = None
    close_initiator: Literal["station", "csms", "none"] | None = None  # "none": no close frame either way
    client_certificate: bytes | None = None  # DER of the TLS client certificate the station presented (profile 3)

    @property
    def is_open(self) -> bool:
        return self.accepted and self.closed_monotonic is None


@dataclass(frozen=True)
class WireViolation:
    """Something on the wire that breaks OCPP 2.0.1 (not a journal invariant: that is `journal.verify.Violation`).

    `direction` says whose fault it is: "in" = the station's, "out" = the CSMS script's (e.g. a response
    override that fails the schema). Tests normally assert `csms.violations == []`.
    """

    monotonic: float
    station_id: str
    connection_id: int
    direction: Direction
    kind: str  # malformed-frame, binary-frame, schema, unhandled-action, not-accepted, invalid-response, …
    action: str | None
    message_id: str | None
    detail: str
    raw: str | None = None


@dataclass
class _PendingIds:
    """CALL ids awaiting an answer on one connection, per direction of the CALL."""

    by_direction: dict[str, dict[str, str]] = field(default_factory=lambda: {"in": {}, "out": {}})

    def remember(self, direction: str, message_id: str, action: str) -> None:
        ids = self.by_direction[direction]
        if len(ids) >= _MAX_PENDING_IDS:
            ids.pop(next(iter(ids)))
        ids[message_id] = action

    def answer(self, direction: str, message_id: str) -> str | None:
        # A response travelling "in" answers a CALL that went "out", and vice versa.
        return self.by_direction["out" if direction == "in" else "in"].pop(message_id, None)


class Recorder:
    """Thread-safe store of frames, connections and violations, with a condition to wait on."""

    def __init__(self, max_frames: int = 200_000) -> None:
        self._cond = threading.Condition(threading.RLock())
        self._frames: list[RecordedFrame] = []
        self._dropped = 0  # frames discarded from the front when `max_frames` was exceeded
        self._max_frames = max_frames
        self._connections: dict[int, ConnectionRecord] = {}
        self._violations: list[WireViolation] = []
        self._pending: dict[int, _PendingIds] = {}
        self._generation = 0  # bumped on every change; waiters compare it to know something happened

    # ---- writers (event-loop thread) ------------------------------------------------------------------

    def _changed(self) -> None:
        self._generation += 1
        self._cond.notify_all()

    def add_frame(self, station_id: str, connection_id: int, direction: Direction, data: str | bytes) -> RecordedFrame:
        raw = data if isinstance(data, str) else data.decode("utf-8", errors="replace")
        try:
            parsed = json.loads(raw)
        except ValueError:
            parsed = None
        with self._cond:
            action = self._label(connection_id, direction, parsed)
            frame = RecordedFrame(
                index=self._dropped + len(self._frames),
                monotonic=time.monotonic(),
                wall=time.time(),
                station_id=station_id,
                connection_id=connection_id,
                direction=direction,
                raw=raw,
                parsed=parsed,
                action=action,
            )
            self._frames.append(frame)
            if len(self._frames) > self._max_frames:
                # Drop the older half at once so trimming stays amortised O(1) per frame.
                cut = len(self._frames) // 2
                del self._frames[:cut]
                self._dropped += cut
            self._changed()
        return frame

    def _label(self, connection_id: int, direction: str, parsed: Any) -> str | None:
        if not (isinstance(parsed, list) and len(parsed) >= 3 and isinstance(parsed[1], str)):
            return None
        pending = self._pending.setdefault(connection_id, _PendingIds())
        if parsed[0] == _CALL and isinstance(parsed[2], str):
            pending.remember(direction, parsed[1], parsed[2])
            return parsed[2]
        if direction == "out" and parsed[0] not in (_CALLRESULT, _CALLERROR):
            # A deliberately malformed frame sent with send_raw (e.g. message type 7, a numeric action): Part 4
            # tells the station to answer it with a CALLERROR carrying its id, so that answer is expected.
            pending.remember(direction, parsed[1], "<malformed>")
            return None
        if parsed[0] in (_CALLRESULT, _CALLERROR):
            return pending.answer(direction, parsed[1])
        return None

    def open_connection(self, **fields: Any) -> int:
        with self._cond:
            connection_id = len(self._connections) + 1
            self._connections[connection_id] = ConnectionRecord(
                connection_id=connection_id,
                opened_monotonic=time.monotonic(),
                opened_wall=time.time(),
                **fields,
            )
            self._changed()
        return connection_id

    def update_connection(self, connection_id: int, **changes: Any) -> None:
        with self._cond:
            self._connections[connection_id] = replace(self._connections[connection_id], **changes)
            if "closed_monotonic" in changes:
                self._pending.pop(connection_id, None)
            self._changed()

    def add_violation(self, **fields: Any) -> WireViolation:
        violation = WireViolation(monotonic=time.monotonic(), **fields)
        with self._cond:
            self._violations.append(violation)
            self._changed()
        return violation

    # ---- readers (any thread) -------------------------------------------------------------------------

    def mark(self) -> int:
        """The index the next frame will get: pass it as `since=` to look only at what comes after."""
        with self._cond:
            return self._dropped + len(self._frames)

    def frames(self, station_id: str | None = None, since: int = 0) -> list[RecordedFrame]:
        with self._cond:
            start = max(0, since - self._dropped)
            return [f for f in self._frames[start:] if station_id is None or f.station_id == station_id]

    def connection(self, connection_id: int) -> ConnectionRecord:
        with self._cond:
            return self._connections[connection_id]

    def connections(self, station_id: str | None = None) -> list[ConnectionRecord]:
        with self._cond:
            return [c for c in self._connections.values() if station_id is None or c.station_id == station_id]

    def violations(self, station_id: str | None = None) -> list[WireViolation]:
        with self._cond:
            return [v for v in self._violations if station_id is None or v.station_id == station_id]

    def wait_for(self, predicate: Callable[[], T | None], timeout: float, what: str | None = None) -> T:
        """Return the first truthy value of `predicate()`, re-evaluated whenever something is recorded.

        The predicate runs *without* the lock held, so it may call the snapshot readers and may be slow
        without stalling the event loop. It is also re-run every 50 ms in case it depends on something we do
        not record.
        """
        deadline = time.monotonic() + timeout
        while True:
            with self._cond:
                generation = self._generation
            value = predicate()
            if value:
                return value
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                raise TimeoutError(f"timed out after {timeout:g} s waiting for {what or predicate!r}")
            with self._cond:
                if self._generation == generation:
                    self._cond.wait(min(remaining, 0.05))
