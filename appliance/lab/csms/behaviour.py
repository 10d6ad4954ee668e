"""What the loopback CSMS answers: the boot script, the token table, response overrides, passwords.

This is plain state behind one lock, separate from the I/O, because tests change it from their own thread
while the event-loop thread reads it for every frame. Nothing here blocks or does I/O.
"""

from __future__ import annotations

import threading
from collections.abc import Iterable
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from appliance.timetext import now_text

from .replies import Responder

DEFAULT_INTERVAL = 300

#: CALLs a station may still send while its boot is Pending: answers to what the CSMS asked for during the
#: Pending phase (GetBaseReport → NotifyReport …). Everything else must wait for Accepted (B02, errata FR.04).
PENDING_ALLOWED = frozenset({"BootNotification", "NotifyReport", "NotifyMonitoringReport"})


def utc_now_iso() -> str:
    """currentTime as OCPP wants it: UTC, millisecond precision, with a 'Z' (never '+00:00')."""
    return now_text()


def _iso(value: datetime | str | None) -> str | None:
    if value is None or isinstance(value, str):
        return value
    if value.tzinfo is None:
        raise ValueError("cache_expiry must be timezone-aware (OCPP times are UTC)")
    return value.astimezone(UTC).isoformat(timespec="seconds").replace("+00:00", "Z")


@dataclass(frozen=True)
class TokenInfo:
    """The CSMS's verdict on one idToken (becomes idTokenInfo in Authorize/TransactionEvent responses)."""

    status: str
    group_id: str | None = None
    cache_expiry: str | None = None  # ISO 8601 UTC with Z

    def as_payload(self) -> dict[str, Any]:
        """camelCase idTokenInfo, optional fields omitted."""
        info: dict[str, Any] = {"status": self.status}
        if self.group_id is not None:
            info["groupIdToken"] = {"idToken": self.group_id, "type": "Central"}
        if self.cache_expiry is not None:
            info["cacheExpiryDateTime"] = self.cache_expiry
        return info


@dataclass(frozen=True)
class Override:
    responder: Responder
    validate: bool


class Behaviour:
    """Thread-safe CSMS policy, consulted by the event-loop thread for every station CALL."""

    def __init__(
        self,
        boot_responses: Iterable[tuple[str, int]] | None,
        heartbeat_interval: int,
        passwords: dict[str, str] | None,
        reject_before_accepted: bool,
    ) -> None:
        self._lock = threading.RLock()  # re-entrant: next_boot_response calls note_boot_status
        self._boot_script: list[tuple[str, int]] = []
        self._boot_counts: dict[str, int] = {}
        self._boot_status: dict[str, str] = {}  # last status we answered each station's BootNotification with
        self._csms_asked_while_pending: set[str] = set()
        self._tokens: dict[str, TokenInfo] = {}
        self._unknown_token = TokenInfo("Accepted")
        self._overrides: dict[str, Override] = {}
        self._passwords = dict(passwords) if passwords is not None else None
        self.reject_before_accepted = reject_before_accepted
        self.set_boot_responses(boot_responses or [("Accepted", heartbeat_interval)])

    # ---- boot --------------------------------------------------------------------------------------------

    def set_boot_responses(self, responses: Iterable[tuple[str, int]]) -> None:
        script = [(str(status), int(interval)) for status, interval in responses]
        if not script:
            raise ValueError("boot_responses needs at least one (status, interval)")
        for status, _ in script:
            if status not in ("Accepted", "Pending", "Rejected"):
                raise ValueError(f"boot status must be Accepted, Pending or Rejected, not {status!r}")
        with self._lock:
            self._boot_script = script
            self._boot_counts.clear()  # the new script starts from its first entry for every station

    def next_boot_response(self, station_id: str) -> tuple[str, int]:
        """The (status, interval) for this station's next BootNotification; the last entry repeats."""
        with self._lock:
            n = self._boot_counts.get(station_id, 0)
            self._boot_counts[station_id] = n + 1
            status, interval = self._boot_script[min(n, len(self._boot_script) - 1)]
            self.note_boot_status(station_id, status)
            return status, interval

    def note_boot_status(self, station_id: str, status: str) -> None:
        with self._lock:
            self._boot_status[station_id] = status
            self._csms_asked_while_pending.discard(station_id)

    def boot_status(self, station_id: str) -> str | None:
        with self._lock:
            return self._boot_status.get(station_id)

    def note_csms_request(self, station_id: str) -> None:
        """The CSMS sent the station a CALL; while Pending, what the station sends back is allowed."""
        with self._lock:
            if self._boot_status.get(station_id) == "Pending":
                self._csms_asked_while_pending.add(station_id)

    def refusal_before_accepted(self, station_id: str, action: str) -> str | None:
        """Why this CALL breaks the not-yet-Accepted rules (B02/B03), or None when it is fine.

        A station this CSMS never saw boot is given the benefit of the doubt: it may have booted against an
        earlier CSMS instance and merely reconnected, which needs no new BootNotification.
        """
        with self._lock:
            if not self.reject_before_accepted or action == "BootNotification":
                return None
            status = self._boot_status.get(station_id)
            if status is None or status == "Accepted":
                return None
            if status == "Pending" and (action in PENDING_ALLOWED or station_id in self._csms_asked_while_pending):
                return None
            return f"{action} sent while the boot is {status}"

    # ---- authorization -------------------------------------------------------------------------------------

    def set_token(
        self, token: str, status: str, group_id: str | None = None, cache_expiry: datetime | str | None = None
    ) -> None:
        with self._lock:
            self._tokens[token] = TokenInfo(status, group_id, _iso(cache_expiry))

    def set_unknown_token_status(self, status: str) -> None:
        with self._lock:
            self._unknown_token = TokenInfo(status)

    def token_info(self, token: str) -> TokenInfo:
        with self._lock:
            return self._tokens.get(token, self._unknown_token)

    # ---- overrides -----------------------------------------------------------------------------------------

    def set_override(self, action: str, responder: Responder | None, validate: bool) -> None:
        with self._lock:
            if responder is None:
                self._overrides.pop(action, None)
            else:
                self._overrides[action] = Override(responder, validate)

    def override(self, action: str) -> Override | None:
        with self._lock:
            return self._overrides.get(action)

    # ---- basic auth ----------------------------------------------------------------------------------------

    @property
    def auth_required(self) -> bool:
        with self._lock:
            return self._passwords is not None

    def set_password(self, station_id: str, password: str | None) -> None:
        with self._lock:
            if self._passwords is None:
                self._passwords = {}
            if password is None:
                self._passwords.pop(station_id, None)
            else:
                self._passwords[station_id] = password

    def password(self, station_id: str) -> str | None:
        with self._lock:
            return None if self._passwords is None else self._passwords.get(station_id)
