"""One EVSE's session state machine (sans-IO): inputs in, transaction events and energy commands out.

The transaction rules (Part 2 E01–E07, the digest §3):

* A transaction starts when the first of TxCtrlr.TxStartPoint's conditions becomes true and ends when any of
  TxCtrlr.TxStopPoint's conditions stops being true. None starts on an Unavailable or Faulted EVSE (it "does
  not allow any charging", Part 6 TC_G_03/G_05), and energy never flows outside a transaction: an offer
  that begins while a start condition already holds (the cable left in after a stop) starts one.
  Conditions: EVConnected (cable plugged at the EV), Authorized (a token or remote start authorized the
  session), PowerPathClosed (energy offered), EnergyTransfer (energy flowing). StopTxOnEVSideDisconnect
  (true, fixed cable) also ends it on unplug.
* Energy is offered only while authorized, plugged, operative and not faulted (a fault code from the hardware,
  or a device of the EVSE that stopped answering).
* chargingState: Idle (not plugged), EVConnected, Charging, SuspendedEV (offered, EV not drawing),
  SuspendedEVSE (EV wants energy, station does not offer). Every event carries the current state; a change
  that no other event reports becomes an Updated with triggerReason ChargingStateChanged.
* Unplugging ends the authorization (fixed cable: the certified station does not keep it).

The machine decides; `EvseRunner` (runner.py) carries out its `TxEvent`s (journal) and `offer` (hardware).
Nothing here does I/O or knows about time other than what it is told.
"""

from __future__ import annotations

import uuid
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any


def new_transaction_id() -> str:
    """A station-unique transactionId (the digest recommends a UUID; 36 characters, the schema's maximum)."""
    return str(uuid.uuid4())


@dataclass
class Authorization:
    id_token: dict[str, Any] | None  # IdTokenType of the card or remote start that authorized the session
    group_id_token: dict[str, Any] | None = None  # its GroupId (IdTokenType): Authorize or TransactionEvent answer
    remote_start_id: int | None = None
    reported: bool = False  # has a TransactionEvent carried this idToken yet?


@dataclass(frozen=True)
class TxEvent:
    """A TransactionEvent to journal; the runner adds timestamp, meter values, offline flag and seqNo."""

    event_type: str  # Started | Updated | Ended
    trigger_reason: str
    transaction_id: str
    charging_state: str
    evse_id: int
    id_token: dict[str, Any] | None = None
    group_id_token: dict[str, Any] | None = None  # the GroupId of `id_token`, journaled with the transaction
    remote_start_id: int | None = None
    stopped_reason: str | None = None
    first: bool = False  # carries `evse` and opens the journal's transaction row


@dataclass
class Transaction:
    transaction_id: str
    remote_start_id: int | None = None
    reported_state: str = ""
    pending_stop_reason: str | None = None
    stop_token: dict[str, Any] | None = None  # the card that stopped it, reported with the StopAuthorized event


@dataclass
class EvseState:
    evse_id: int
    start_points: tuple[str, ...] = ("EVConnected", "Authorized")
    stop_points: tuple[str, ...] = ("EVConnected", "Authorized")
    plugged: bool = False
    ev_wants_energy: bool = False
    operative: bool = True
    fault_code: str | None = None  # the fault the hardware reports (FaultRaised)
    silent: frozenset[str] = frozenset()  # devices of this EVSE that stopped answering (DeviceFault)
    authorization: Authorization | None = None
    blocked: bool = False  # the CSMS said the token is not valid and StopTxOnInvalidId is false: no energy
    tx: Transaction | None = None
    #: Where transaction ids come from: injected, so a test (or a replay) can run the machine reproducibly.
    transaction_ids: Callable[[], str] = field(default=new_transaction_id, repr=False)

    # --- derived -------------------------------------------------------------------------------------------

    @property
    def fault(self) -> str | None:
        """Why the EVSE is Faulted (None: it is not): the hardware's fault code, else the first device that
        went silent. Whoever asks "is it faulted?" gets both kinds."""
        if self.fault_code is not None:
            return self.fault_code
        return f"{min(self.silent)}Silent" if self.silent else None

    @property
    def offering(self) -> bool:
        return (
            self.authorization is not None
            and self.plugged
            and self.operative
            and self.fault is None
            and not self.blocked
        )

    @property
    def charging_state(self) -> str:
        if not self.plugged:
            return "Idle"
        if self.offering:
            return "Charging" if self.ev_wants_energy else "SuspendedEV"
        return "SuspendedEVSE" if self.ev_wants_energy else "EVConnected"

    def _conditions(self) -> dict[str, bool]:
        return {
            "EVConnected": self.plugged,
            "Authorized": self.authorization is not None,
            "PowerPathClosed": self.offering,
            "EnergyTransfer": self.offering and self.ev_wants_energy,
        }

    # --- inputs (each returns the events it caused, in order) ---------------------------------------------

    def plug(self) -> list[TxEvent]:
        return self._change(lambda: setattr(self, "plugged", True), "CablePluggedIn")

    def unplug(self) -> list[TxEvent]:
        def apply() -> None:
            self.plugged = False
            self.ev_wants_energy = False
            self.authorization = None  # EV-side unplug ends the authorization

        return self._change(apply, "EVCommunicationLost", stop_reason="EVDisconnected", force_stop=True)

    def ev_state(self, wants_energy: bool) -> list[TxEvent]:
        return self._change(lambda: setattr(self, "ev_wants_energy", wants_energy), "ChargingStateChanged")

    def authorize(self, auth: Authorization, trigger: str = "Authorized") -> list[TxEvent]:
        """A token (trigger Authorized) or a remote start (trigger RemoteStart) authorizes this EVSE."""
        return self._change(lambda: setattr(self, "authorization", auth), trigger)

    def deauthorize(self, trigger: str, stop_reason: str, id_token: dict[str, Any] | None = None) -> list[TxEvent]:
        """Local stop (StopAuthorized/Local), remote stop (RemoteStop/Remote), invalid id (Deauthorized/…).

        `id_token` is the card that stopped the session; the event reporting the stop carries it (C_39–C_41).
        """
        if self.tx is not None:
            self.tx.pending_stop_reason = stop_reason
            self.tx.stop_token = id_token
        return self._change(lambda: setattr(self, "authorization", None), trigger, stop_reason=stop_reason)

    def invalid_id(self, stop: bool) -> list[TxEvent]:
        """The CSMS answered a TransactionEvent with a non-Accepted idTokenInfo (C10, E05 offline start).

        TxCtrlr.StopTxOnInvalidId true: deauthorize (Deauthorized / DeAuthorized); false: keep the
        transaction but offer no more energy (SuspendedEVSE).
        """
        if self.tx is None:
            return []
        if stop:
            return self.deauthorize("Deauthorized", "DeAuthorized")
        return self._change(lambda: setattr(self, "blocked", True), "Deauthorized")

    def learn_group(
        self, transaction_id: str, id_token: dict[str, Any], group_id_token: dict[str, Any]
    ) -> list[TxEvent]:
        """C09.FR.03: a TransactionEvent answer named the GroupId of this session's idToken (an Authorize may not
        have been asked, e.g. a remote start); from now on another card of that group may stop the session."""
        auth = self.authorization
        if (
            self.tx is not None
            and self.tx.transaction_id == transaction_id
            and auth is not None
            and auth.id_token is not None
            and _same_token(auth.id_token, id_token)
        ):
            auth.group_id_token = group_id_token
        return []

    def connection_timeout(self) -> list[TxEvent]:
        """EVConnectionTimeOut passed with an authorization but no EV: drop it (TC_E_39 / TC_F_04)."""
        if self.plugged or self.authorization is None:
            return []
        return self._change(
            lambda: setattr(self, "authorization", None), "EVConnectTimeout", stop_reason="Timeout", force_stop=True
        )

    def set_fault(self, code: str | None) -> list[TxEvent]:
        return self._change(lambda: setattr(self, "fault_code", code), "ChargingStateChanged")

    def set_silent(self, device: str, silent: bool) -> list[TxEvent]:
        """A device of this EVSE stopped answering (True) or answers again (False): Faulted meanwhile."""
        devices = self.silent | {device} if silent else self.silent - {device}
        return self._change(lambda: setattr(self, "silent", frozenset(devices)), "ChargingStateChanged")

    def set_operative(self, operative: bool) -> list[TxEvent]:
        return self._change(lambda: setattr(self, "operative", operative), "ChargingStateChanged")

    def end_now(self, trigger: str, stop_reason: str) -> list[TxEvent]:
        """End a running transaction whatever the stop points say (reset, power loss …)."""
        if self.tx is None:
            return []
        # The energy stops with the transaction: EVConnected if the EV is still there (TC_B_22/B_27).
        event = self._event("Ended", trigger, stop_reason=stop_reason, state="EVConnected" if self.plugged else "Idle")
        self.tx = None
        self.authorization = None
        self.blocked = False
        return [event]

    def reset_session(self) -> list[TxEvent]:
        """An EVSE reset: forget any authorization waiting for an EV (the transaction already ended)."""
        if self.tx is None:
            self.authorization = None
            self.blocked = False
        return []

    def trigger(self) -> list[TxEvent]:
        """TriggerMessage(TransactionEvent): an Updated with triggerReason Trigger, if a transaction runs."""
        return [self._event("Updated", "Trigger")] if self.tx is not None else []

    def periodic(self, trigger: str) -> list[TxEvent]:
        """MeterValuePeriodic / MeterValueClock Updated events during a transaction."""
        return [self._event("Updated", trigger)] if self.tx is not None else []

    # --- the rules -----------------------------------------------------------------------------------------

    def _change(
        self, apply: Callable[[], object], trigger: str, *, stop_reason: str | None = None, force_stop: bool = False
    ) -> list[TxEvent]:
        before = self._conditions()
        apply()
        after = self._conditions()
        events: list[TxEvent] = []
        if self.tx is None:
            became_true = [c for c in self.start_points if after[c] and not before[c]]
            # The offer begins while a start condition already holds (TxStartPoint EVConnected alone, the cable
            # still in after a stop or a reset, then a new tap): energy never flows outside a transaction.
            offer_begins = (
                after["PowerPathClosed"] and not before["PowerPathClosed"] and any(after[c] for c in self.start_points)
            )
            # No new transaction on an EVSE that is Unavailable or Faulted: it "does not allow any charging"
            # (Part 6 TC_G_03/G_05), and a tap or a remote start is refused there too.
            if (became_true or offer_begins) and self.operative and self.fault is None:
                self.tx = Transaction(self.transaction_ids(), remote_start_id=self._remote_start_id())
                events.append(self._event("Started", trigger, first=True, state=self._plug_state(trigger)))
                events += self._follow_plug_in(trigger)
            return events
        became_false = [c for c in self.stop_points if before[c] and not after[c]]
        if became_false or (force_stop and not self.plugged) or (force_stop and trigger == "EVConnectTimeout"):
            reason = self.tx.pending_stop_reason or stop_reason or "Local"
            events.append(self._event("Ended", trigger, stop_reason=reason))
            self.tx = None
            self.authorization = None
            self.blocked = False
            return events
        if (
            self._unreported_token()
            or self.charging_state != self.tx.reported_state
            or trigger in ("StopAuthorized", "RemoteStop", "Deauthorized", "RemoteStart")
        ):
            events.append(self._event("Updated", trigger, state=self._plug_state(trigger)))
            events += self._follow_plug_in(trigger)
        return events

    def _plug_state(self, trigger: str) -> str | None:
        """The plug-in event reports EVConnected (TC_E_04/E_38), whatever energy offer follows at once."""
        return "EVConnected" if trigger == "CablePluggedIn" else None

    def _follow_plug_in(self, trigger: str) -> list[TxEvent]:
        """…and the state the plug-in led to (e.g. SuspendedEV when energy is offered) comes right after it."""
        if trigger == "CablePluggedIn" and self.tx is not None and self.charging_state != self.tx.reported_state:
            return [self._event("Updated", "ChargingStateChanged")]
        return []

    def _remote_start_id(self) -> int | None:
        return self.authorization.remote_start_id if self.authorization else None

    def _unreported_token(self) -> bool:
        return (
            self.authorization is not None
            and not self.authorization.reported
            and self.authorization.id_token is not None
        )

    def _event(
        self,
        event_type: str,
        trigger: str,
        *,
        stop_reason: str | None = None,
        first: bool = False,
        state: str | None = None,
    ) -> TxEvent:
        assert self.tx is not None
        id_token = group = None
        if self._unreported_token() and event_type != "Ended":
            assert self.authorization is not None
            id_token, group = self.authorization.id_token, self.authorization.group_id_token
            self.authorization.reported = True
        elif trigger == "StopAuthorized" and self.tx.stop_token is not None:
            id_token = self.tx.stop_token
        remote_start_id = None
        if (
            self.authorization is not None
            and self.authorization.remote_start_id is not None
            and (first or trigger == "RemoteStart")
        ):
            remote_start_id = self.authorization.remote_start_id
            self.tx.remote_start_id = remote_start_id
        state = state or self.charging_state
        self.tx.reported_state = state
        event = TxEvent(
            event_type,
            trigger,
            self.tx.transaction_id,
            state,
            self.evse_id,
            id_token=id_token,
            group_id_token=group,
            remote_start_id=remote_start_id,
            stopped_reason=stop_reason if event_type == "Ended" else None,
            first=first,
        )
        return event


def _same_token(a: dict[str, Any], b: dict[str, Any]) -> bool:
    return a.get("idToken") == b.get("idToken") and a.get("type") == b.get("type")
