"""Functional block B (provisioning): BootNotification, Heartbeat, GetVariables, SetVariables.

Boot rules (Part 2 B01–B03, Part 6 TC_B_01/02/03/30/31): the first message on every connection after a
(re)boot is BootNotification; nothing of our own goes out until it is Accepted. Pending means "wait
`interval` and ask again, but answer the CSMS" (it may configure us meanwhile); Rejected means "wait
`interval`, answer every CSMS request with SecurityError" — except TriggerMessage(BootNotification), which in
either state is Accepted and sends a BootNotification (reason Triggered) at once. A reconnect without a reboot
does not boot again.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping

import trio

from appliance.blocks.base import Block, TriggerHandler, TriggerRequest
from appliance.clock import StationClock
from appliance.devicemodel import DeviceModel
from appliance.devicemodel import settings as keys
from appliance.link.link import Link, OnlineService
from appliance.link.rpc import CallErrorReply, CallTimeout, Handler, Reply
from appliance.storage import StateStore
from appliance.util.watched import Watched

log = logging.getLogger("appliance.provisioning")

#: Wait before re-sending a BootNotification the CSMS did not answer, or answered with interval 0.
DEFAULT_BOOT_RETRY = 30


#: station_state key: the reason the next BootNotification gives (set before a restart the station chose).
NEXT_BOOT_REASON = "next_boot_reason"


class Provisioning(Block):
    """Boot (B01–B04), heartbeat and the device model's Get/SetVariables (B05–B07).

    Owns the boot-reason bookkeeping: a restart the station performs (Reset, later a firmware install) stores the
    reason the next boot must report; it is consumed only once the CSMS has accepted that boot.
    """

    def __init__(
        self,
        *,
        device_model: DeviceModel,
        link: Link,
        state: StateStore,
        clock: StationClock,
        charging_station: dict,
        settings_changed: Watched[int],
    ) -> None:
        self._dm = device_model
        self._link = link
        self._state = state
        self._clock = clock
        self._charging_station = charging_station
        self.boot_reason = state.get(NEXT_BOOT_REASON) or "PowerUp"
        self._settings_changed = settings_changed
        self._boot_triggered = trio.Event()
        self.boot_status: str | None = None

    def handlers(self) -> Mapping[str, Handler]:
        return {"GetVariables": self._get_variables, "SetVariables": self._set_variables}

    def online_services(self) -> Mapping[str, OnlineService]:
        return {"heartbeat": self.heartbeat_service}

    def triggers(self) -> Mapping[str, TriggerHandler]:
        return {"BootNotification": self._trigger_boot, "Heartbeat": self._trigger_heartbeat}

    async def restart_with_reason(self, reason: str) -> None:
        """Make `reason` durable as the next boot's reason, before the station restarts."""
        await self._state.put(NEXT_BOOT_REASON, reason)

    # --- boot ----------------------------------------------------------------------------------------

    def trigger_boot(self) -> bool:
        """TriggerMessage(BootNotification): allowed only while the boot is not yet Accepted (TC_F_26)."""
        if self.boot_status == "Accepted":
            return False
        self._boot_triggered.set()
        return True

    async def boot(self, link: Link) -> None:
        """Run on each new connection; returns once the CSMS has accepted us."""
        if link.accepted_once:
            return  # plain reconnect: no new BootNotification (Part 4 §5.3)
        reason = self.boot_reason
        while True:
            payload = {"reason": reason, "chargingStation": self._charging_station}
            try:
                answer = await link.call("BootNotification", payload)
            except (CallTimeout, CallErrorReply) as exc:
                log.warning("BootNotification failed (%s); retrying in %d s", exc, DEFAULT_BOOT_RETRY)
                await self._wait_for_retry(DEFAULT_BOOT_RETRY)
                continue
            await self._clock.adjust(answer["currentTime"])
            status, interval = answer["status"], int(answer["interval"])
            self.boot_status = status
            log.info("BootNotification (%s) answered %s, interval %d s", reason, status, interval)
            if status == "Accepted":
                if interval > 0:
                    await self._dm.set_internal(
                        "OCPPCommCtrlr.HeartbeatInterval", self._dm.clamp("OCPPCommCtrlr.HeartbeatInterval", interval)
                    )
                await self._state.put(NEXT_BOOT_REASON, None)  # consumed only once the CSMS has heard it
                link.boot_answered(status)
                return
            link.boot_answered(status)
            # Pending or Rejected, a TriggerMessage(BootNotification) ends the wait (B02, B03 / TC_B_31).
            triggered = await self._wait_for_retry(interval if interval > 0 else DEFAULT_BOOT_RETRY)
            reason = "Triggered" if triggered else reason

    async def _wait_for_retry(self, seconds: float) -> bool:
        """Sleep until the retry is due; True if a TriggerMessage cut it short."""
        self._boot_triggered = trio.Event()
        with trio.move_on_after(seconds):
            await self._boot_triggered.wait()
            return True
        return False

    async def _trigger_boot(self, request: TriggerRequest) -> dict:
        return {"status": "Accepted"} if self.trigger_boot() else {"status": "Rejected"}

    async def _trigger_heartbeat(self, request: TriggerRequest) -> Reply:
        async def send() -> None:
            answer = await self._link.call("Heartbeat", {})
            await self._clock.adjust(answer["currentTime"])

        return Reply({"status": "Accepted"}, then=send)

    # --- heartbeat -----------------------------------------------------------------------------------

    async def heartbeat_service(self, link: Link) -> None:
        """Heartbeat every HeartbeatInterval; the CSMS's currentTime keeps the station clock right."""
        last = trio.current_time()
        while True:
            interval = self._dm.settings.seconds(keys.HEARTBEAT_INTERVAL)
            if interval <= 0:
                await self._settings_changed.wait_change()
                continue
            with trio.move_on_at(last + interval) as due:
                await self._settings_changed.wait_change()
            if not due.cancelled_caught:
                continue  # a setting changed: recompute the due time with the current interval
            last = trio.current_time()
            try:
                answer = await link.call("Heartbeat", {})
            except (CallTimeout, CallErrorReply) as exc:
                log.warning("Heartbeat failed: %s", exc)
                continue
            await self._clock.adjust(answer["currentTime"])

    # --- device model requests -----------------------------------------------------------------------

    async def _get_variables(self, payload: dict) -> dict:
        return self._dm.handle_get_variables(payload)

    async def _set_variables(self, payload: dict) -> dict | Reply:
        answer = await self._dm.handle_set_variables(payload)
        password_changed = any(
            result["attributeStatus"] in ("Accepted", "RebootRequired")
            and result["component"]["name"].lower() == "securityctrlr"
            and result["variable"]["name"].lower() == "basicauthpassword"
            for result in answer["setVariableResult"]
        )
        if password_changed:
            # A01: answer first, then drop the connection and come back with the new password.
            async def reconnect() -> None:
                self._link.reconnect("BasicAuthPassword changed")

            return Reply(answer, then=reconnect)
        return answer
