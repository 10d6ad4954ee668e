"""Functional blocks E and F (transactions, remote control of them): local and remote start/stop,
GetTransactionStatus, and what a power cut left behind.

Each EVSE's `EvseRunner` owns its session; this module turns outside requests (an RFID tap, a CSMS
RequestStart/StopTransaction) into runner decisions, and answers GetTransactionStatus from the journal —
the journal, not memory, is the truth about what is still queued.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping
from typing import Any, Protocol

import trio

from appliance.blocks.authorization import Authorizer
from appliance.blocks.base import Block, ResponseHook, TriggerHandler, TriggerRequest
from appliance.clock import StationClock
from appliance.devicemodel import settings as keys
from appliance.devicemodel.settings import Settings
from appliance.evse.meter import meter_value
from appliance.evse.runner import EvseRunner
from appliance.evse.state import Authorization, EvseState
from appliance.hardware.base import EVState, Hardware, Indication
from appliance.journal.journal import Journal
from appliance.journal.store import Append, Queued
from appliance.link.link import Link, LinkState
from appliance.link.rpc import Handler, Reply
from appliance.util.redact import mask

log = logging.getLogger("appliance.transactions")


class RemoteStartProfiles(Protocol):
    """Where a RequestStartTransaction's chargingProfile goes (the smart charging block)."""

    def check_remote_start(self, evse_id: int, raw: Mapping[str, Any]) -> dict | None: ...

    async def install_remote_start(self, evse_id: int, raw: Mapping[str, Any], transaction_id: str | None) -> None: ...


class Transactions(Block):
    migrations = ("0005_transaction_group.sql",)  # the session's GroupId, kept with the journal's transaction row

    def __init__(
        self,
        *,
        runners: dict[int, EvseRunner],
        journal: Journal,
        authorizer: Authorizer,
        link: Link,
        hardware: Hardware,
        clock: StationClock,
        settings: Settings,
        charging_profiles: RemoteStartProfiles | None = None,
    ) -> None:
        self._runners = runners
        self._profiles = charging_profiles
        self._journal = journal
        self._authorizer = authorizer
        self._link = link
        self._hw = hardware
        self._clock = clock
        self._settings = settings

    def handlers(self) -> Mapping[str, Handler]:
        return {
            "RequestStartTransaction": self._request_start,
            "RequestStopTransaction": self._request_stop,
            "GetTransactionStatus": self._get_status,
        }

    def response_hooks(self) -> Mapping[str, ResponseHook]:
        return {"TransactionEvent": self.on_transaction_event_answer}

    async def run(self, *, task_status: trio.TaskStatus[None] = trio.TASK_STATUS_IGNORED) -> None:
        """Before any EVSE runs: end what a power cut left open (the runners must start from a clean journal)."""
        await self.recover()
        task_status.started()

    def triggers(self) -> Mapping[str, TriggerHandler]:
        return {"MeterValues": self._trigger_meter_values, "TransactionEvent": self._trigger_transaction_event}

    def _targets(self, evse_id: int | None) -> list[EvseRunner]:
        return [self._runners[evse_id]] if evse_id else list(self._runners.values())

    async def _trigger_meter_values(self, request: TriggerRequest) -> dict | Reply:
        if not self._settings.members(keys.ALIGNED_MEASURANDS):
            # The triggered MeterValues carries AlignedDataCtrlr.Measurands (F06.FR.06); with none configured
            # there is nothing to send, and an Accepted followed by silence would mislead the CSMS.
            return {
                "status": "Rejected",
                "statusInfo": {
                    "reasonCode": "MissingDevModelInfo",
                    "additionalInfo": "AlignedDataCtrlr.Measurands is empty",
                },
            }

        async def send() -> None:
            for runner in self._targets(request.evse_id):
                reading = self._hw.read_meter(runner.evse_id)
                mv = meter_value(self._clock.iso(), reading, self._settings.members(keys.ALIGNED_MEASURANDS), "Trigger")
                if mv is not None:
                    await self._journal.append(Append("MeterValues", {"evseId": runner.evse_id, "meterValue": [mv]}))

        return Reply({"status": "Accepted"}, then=send)

    async def _trigger_transaction_event(self, request: TriggerRequest) -> dict | Reply:
        targets = self._targets(request.evse_id)
        if not any(r.state.tx is not None for r in targets):
            return {"status": "Rejected", "statusInfo": {"reasonCode": "NoTransaction"}}

        async def send() -> None:
            for runner in targets:
                await runner.apply(lambda s: s.trigger())

        return Reply({"status": "Accepted"}, then=send)

    # --- the CSMS's word on a token, in a TransactionEvent answer ---------------------------------------

    async def on_transaction_event_answer(self, item: Queued, answer: dict) -> None:
        """Cache the idTokenInfo (C02), keep the GroupId it names for the transaction (C09.FR.03), and end or
        suspend the session if the token is not valid (C10, E05)."""
        info = answer.get("idTokenInfo")
        id_token = item.payload.get("idToken")
        if info is None or id_token is None:
            return
        await self._authorizer.learn(id_token, info)
        tx_id = item.payload["transactionInfo"]["transactionId"]
        if info["status"] == "Accepted":
            group = info.get("groupIdToken")
            if group is not None:
                await self._keep_group(tx_id, id_token, group)
            return
        stop = self._settings.flag(keys.STOP_TX_ON_INVALID_ID)
        for runner in self._runners.values():
            if runner.state.tx is not None and runner.state.tx.transaction_id == tx_id:
                log.warning(
                    "EVSE %d: the CSMS says token %s is %s; %s",
                    runner.evse_id,
                    mask(id_token["idToken"]),
                    info["status"],
                    "stopping the transaction" if stop else "suspending energy",
                )
                await runner.apply(lambda s: s.invalid_id(stop) if s.tx and s.tx.transaction_id == tx_id else [])

    async def _keep_group(self, tx_id: str, id_token: dict, group: dict) -> None:
        """Durably first (the journal's transaction row, like the rest of what a restart recovers), then for the
        running session."""
        await self._journal.run_sync(self._journal.store.set_group_id_token, tx_id, group)
        for runner in self._runners.values():
            if runner.state.tx is not None and runner.state.tx.transaction_id == tx_id:
                log.info(
                    "EVSE %d: transaction %s belongs to GroupId %s (CSMS)",
                    runner.evse_id,
                    tx_id,
                    mask(group["idToken"]),
                )
                await runner.apply(lambda s: s.learn_group(tx_id, id_token, group))

    # --- after a power cut ---------------------------------------------------------------------------------

    async def recover(self) -> int:
        """End every transaction the journal still has open: the power went while it ran (stoppedReason
        PowerLoss). Its seqNo continues from the journal; nothing already journaled is touched."""
        open_txs = await self._journal.run_sync(self._journal.store.open_transactions)
        for tx in open_txs:
            evse_id = tx["evse_id"]
            now = self._clock.iso()
            samples = await self._journal.run_sync(self._journal.store.tx_meter_values, tx["transaction_id"])
            # The car may well still be plugged in (the hardware kept its state through the outage): then the
            # transaction ends with the EV connected, not idle.
            plugged = evse_id in self._runners and self._hw.ev_state(evse_id) is not EVState.A
            payload: dict[str, Any] = {
                "eventType": "Ended",
                "timestamp": now,
                "triggerReason": "AbnormalCondition",
                "seqNo": 0,
                "transactionInfo": {
                    "transactionId": tx["transaction_id"],
                    "chargingState": "EVConnected" if plugged else "Idle",
                    "stoppedReason": "PowerLoss",
                },
                "offline": True,
            }
            if evse_id in self._runners:
                reading = self._hw.read_meter(evse_id)
                mv = meter_value(now, reading, self._settings.members(keys.TX_ENDED_MEASURANDS), "Transaction.End")
                if mv is not None:
                    samples.append(mv)
            if samples:
                payload["meterValue"] = samples
            stored = await self._journal.append(Append("TransactionEvent", payload))
            log.warning(
                "transaction %s on EVSE %d was interrupted by a power loss: ended (seqNo %d)",
                tx["transaction_id"],
                evse_id,
                stored["seqNo"],
            )
        return len(open_txs)

    # --- local start/stop (RFID) ---------------------------------------------------------------------------

    async def on_card(self, token: str, evse_id: int | None, token_type: str = "ISO14443") -> None:
        id_token = {"idToken": token, "type": token_type}
        runner = self._runner_for_card(token, evse_id)
        if runner is None:
            log.info("card %s: no EVSE selected; select an EVSE on the display first", mask(token))
            self._hw.indicate(None, Indication.REJECTED)
            return
        current = runner.state.authorization
        if current is not None:
            if await self._may_stop(current, id_token):
                log.info("EVSE %d: stop by card %s", runner.evse_id, mask(token))
                self._hw.indicate(runner.evse_id, Indication.ACCEPTED)
                # Only the session the card was checked against: it may have ended while the CSMS was asked.
                await runner.apply(
                    lambda s: s.deauthorize("StopAuthorized", "Local", id_token) if s.authorization is current else []
                )
            else:
                log.info("EVSE %d: card %s may not stop this session", runner.evse_id, mask(token))
                self._hw.indicate(runner.evse_id, Indication.REJECTED)
            return
        if not runner.state.operative or runner.state.fault is not None:
            self._hw.indicate(runner.evse_id, Indication.UNAVAILABLE)
            return
        plugged, session = runner.state.plugged, _transaction_id(runner.state)
        info = await self._authorizer.authorize(id_token)
        if info["status"] != "Accepted":
            self._hw.indicate(runner.evse_id, Indication.REJECTED)
            return
        if plugged and (not runner.state.plugged or _transaction_id(runner.state) != session):
            # Presented to an EV that left while the CSMS was asked: applied now it would open a transaction for
            # nobody, which only EVConnectionTimeOut would end. (A card presented before plugging in stands.)
            log.info(
                "EVSE %d: card %s accepted after the EV it was presented to left: not used", runner.evse_id, mask(token)
            )
            self._hw.indicate(runner.evse_id, Indication.IDLE)
            return
        self._hw.indicate(runner.evse_id, Indication.ACCEPTED)
        auth = Authorization(id_token, group_id_token=info.get("groupIdToken"))
        await runner.apply(lambda s: s.authorize(auth, "Authorized"))

    def _runner_for_card(self, token: str, evse_id: int | None) -> EvseRunner | None:
        if evse_id is not None:
            return self._runners.get(evse_id)
        for runner in self._runners.values():  # a tap without selection may stop the card's own session
            auth = runner.state.authorization
            if auth is not None and auth.id_token and auth.id_token.get("idToken") == token:
                return runner
        return next(iter(self._runners.values())) if len(self._runners) == 1 else None

    async def _may_stop(self, current: Authorization, id_token: dict) -> bool:
        """The same token stops its session at once. Any other is authorized first, as for a start — by the local
        list or cache where they know it, otherwise by the CSMS (TC_C_04 waits for that AuthorizeRequest) — and
        stops the session only if Accepted and of the session's GroupId (C09, TC_C_39/C_42); a session without a
        GroupId is stopped by its own token only."""
        if current.id_token is not None and current.id_token.get("idToken") == id_token["idToken"]:
            return True
        info = await self._authorizer.authorize(id_token)
        if info["status"] != "Accepted":
            return False
        session_group = current.group_id_token["idToken"] if current.group_id_token else None
        if session_group is None or _group(info) != session_group:
            log.info(
                "card %s is Accepted but shares no GroupId with the session: it may not stop it",
                mask(id_token["idToken"]),
            )
            return False
        return True

    # --- remote start/stop -----------------------------------------------------------------------------

    async def _request_start(self, payload: dict) -> dict | Reply:
        """F01/F02: answer first, then (with AuthorizeRemoteStart) Authorize, then start."""
        if self._link.state.value is not LinkState.ACCEPTED:
            return {"status": "Rejected", "statusInfo": {"reasonCode": "NotAccepted"}}  # TC_B_02
        runner = self._pick_evse(payload.get("evseId"))
        if runner is None:
            return {"status": "Rejected", "statusInfo": {"reasonCode": "UnknownEvse"}}
        s = runner.state
        if not s.operative or s.fault is not None or s.authorization is not None:
            return {
                "status": "Rejected",
                "statusInfo": {"reasonCode": "OccupiedEvse" if s.authorization else "Unavailable"},
            }
        answer: dict[str, Any] = {"status": "Accepted"}
        if s.tx is not None:
            answer["transactionId"] = s.tx.transaction_id
        id_token = payload["idToken"]
        auth = Authorization(id_token, remote_start_id=payload["remoteStartId"])
        profile = payload.get("chargingProfile")
        if profile is not None and self._profiles is None:
            log.info("RequestStartTransaction carries a chargingProfile: ignored (no smart charging, TC_K_38)")
            profile = None
        if profile is not None and self._profiles is not None:
            refused = self._profiles.check_remote_start(runner.evse_id, profile)  # K05: a bad one refuses the start
            if refused is not None:
                return refused

        async def start() -> None:
            if self._settings.flag(keys.AUTHORIZE_REMOTE_START):
                info = await self._authorizer.authorize(id_token)
                if info["status"] != "Accepted":
                    log.info(
                        "remote start %d refused: token %s is %s",
                        payload["remoteStartId"],
                        mask(id_token["idToken"]),
                        info["status"],
                    )
                    return
                auth.group_id_token = info.get("groupIdToken")
            if profile is not None and self._profiles is not None and runner.state.authorization is None:
                tx = runner.state.tx
                await self._profiles.install_remote_start(runner.evse_id, profile, tx.transaction_id if tx else None)
            await runner.apply(lambda st: st.authorize(auth, "RemoteStart") if st.authorization is None else [])

        return Reply(answer, then=start)

    def _pick_evse(self, evse_id: int | None) -> EvseRunner | None:
        if evse_id is not None:
            return self._runners.get(evse_id)
        for runner in self._runners.values():
            s = runner.state
            if s.operative and s.fault is None and s.authorization is None:
                return runner
        return None

    async def _request_stop(self, payload: dict) -> dict | Reply:
        tx_id = payload["transactionId"]
        for runner in self._runners.values():
            tx = runner.state.tx
            if tx is not None and tx.transaction_id == tx_id:

                async def stop(runner: EvseRunner = runner) -> None:
                    await runner.apply(
                        lambda s: s.deauthorize("RemoteStop", "Remote") if s.tx and s.tx.transaction_id == tx_id else []
                    )

                return Reply({"status": "Accepted"}, then=stop)
        return {"status": "Rejected"}

    async def _get_status(self, payload: dict) -> dict:
        store = self._journal.store
        tx_id = payload.get("transactionId")
        if tx_id is None:
            pending = await self._journal.run_sync(store.pending_count)
            return {"messagesInQueue": pending > 0}
        state = await self._journal.run_sync(store.transaction_state, tx_id)
        pending = await self._journal.run_sync(store.pending_count, tx_id)
        return {"ongoingIndicator": state == "open", "messagesInQueue": pending > 0}


def _group(info: dict) -> str | None:
    group = info.get("groupIdToken")
    return group["idToken"] if group else None


def _transaction_id(state: EvseState) -> str | None:
    return state.tx.transaction_id if state.tx is not None else None
