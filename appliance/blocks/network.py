"""Functional block B (B09/B10): network connection profiles and falling back between them.

Slot 1 is the factory profile from the config's `[csms]`; SetNetworkProfile stores further slots durably.
OCPPCommCtrlr.NetworkConfigurationPriority orders the slots to try. The link asks `endpoint()` before every
connection attempt; after NetworkProfileConnectionAttempts consecutive failures on a slot the next slot in
the priority list is used, wrapping around, so a CSMS migration that goes wrong falls back to the profile
that worked. The choice depends only on the count of consecutive failures, which a successful connection
resets, so there is no second state machine to get out of step with the link's.
"""

from __future__ import annotations

import json
import logging
import sqlite3
from collections.abc import Callable, Mapping
from urllib.parse import urlsplit

from appliance.blocks.base import Block
from appliance.config import CsmsConfig
from appliance.devicemodel import settings as keys
from appliance.devicemodel.model import Provider, Validator
from appliance.devicemodel.settings import Settings
from appliance.link.rpc import Handler
from appliance.link.transport import Endpoint
from appliance.storage import StateStore

log = logging.getLogger("appliance.network")

SLOTS = (1, 2, 3)
KEY = "network_profiles"


class NetworkProfiles(Block):
    def __init__(
        self,
        *,
        station_id: str,
        factory: CsmsConfig,
        state: StateStore,
        settings: Settings,
        failures: Callable[[], int],
        password: Callable[[], str | None],
    ) -> None:
        self._station_id = station_id
        self._factory = factory
        self._state = state
        self._settings = settings
        self._failures = failures
        self._password = password
        raw = state.get(KEY)
        self.profiles: dict[int, dict] = {int(k): v for k, v in (json.loads(raw) if raw else {}).items()}
        self.active_slot = 1

    def handlers(self) -> Mapping[str, Handler]:
        return {"SetNetworkProfile": self._set_network_profile}

    def live_variables(self) -> Mapping[str, Provider]:
        return {"OCPPCommCtrlr.ActiveNetworkProfile": lambda: self.active_slot}

    def validators(self) -> Mapping[str, Validator]:
        return {"OCPPCommCtrlr.NetworkConfigurationPriority": self.validate_priority}

    def priority(self) -> list[int]:
        slots = [int(s) for s in (self._settings.text(keys.NETWORK_CONFIGURATION_PRIORITY) or "").split(",") if s]
        usable = [s for s in slots if s == 1 or s in self.profiles]
        return usable or [1]

    def validate_priority(self, value: object) -> str | None:
        """SetVariables check for NetworkConfigurationPriority: only slots that hold a profile."""
        for slot in (s for s in str(value).split(",") if s):
            if int(slot) not in SLOTS or (int(slot) != 1 and int(slot) not in self.profiles):
                return f"slot {slot} holds no network profile"
        return None

    def endpoint(self) -> Endpoint:
        order = self.priority()
        attempts = max(1, self._settings.integer(keys.NETWORK_PROFILE_CONNECTION_ATTEMPTS))
        slot = order[(self._failures() // attempts) % len(order)]
        if slot != self.active_slot:
            log.warning("network profile: switching from slot %d to slot %d", self.active_slot, slot)
            self.active_slot = slot
        if slot == 1:
            f = self._factory
            return Endpoint(f.url, self._station_id, f.security_profile, self._password(), f.ca_file)
        data = self.profiles[slot]
        return Endpoint(data["ocppCsmsUrl"], self._station_id, int(data["securityProfile"]), self._password(),
                        self._factory.ca_file)

    async def _set_network_profile(self, payload: dict) -> dict:
        slot = payload["configurationSlot"]
        data = payload["connectionData"]

        def rejected(reason: str) -> dict:
            log.warning("SetNetworkProfile slot %s rejected: %s", slot, reason)
            return {"status": "Rejected", "statusInfo": {"reasonCode": "InvalidProfile", "additionalInfo": reason}}

        if slot not in SLOTS or slot == 1:
            return rejected("slot 1 is the factory profile; slots 2 and 3 can be set")
        if slot == self.active_slot:
            return rejected("the slot is in use")
        if data["ocppVersion"] != "OCPP20" or data["ocppTransport"] != "JSON":
            return rejected("only OCPP 2.0.1 over JSON")
        profile = int(data["securityProfile"])
        if profile < self._factory.security_profile:
            return rejected("a lower security profile than the current one")  # B09.FR.04, TC_A_22
        if profile > 2:
            return rejected("security profile 3 is not supported")
        scheme = urlsplit(data["ocppCsmsUrl"]).scheme
        if (profile == 2) != (scheme == "wss") or scheme not in ("ws", "wss"):
            return rejected("the URL scheme does not fit the security profile")
        stored = {**self.profiles, slot: data}
        try:
            await self._state.put(KEY, json.dumps({str(k): v for k, v in stored.items()}))
        except (sqlite3.Error, OSError) as exc:
            log.error("SetNetworkProfile slot %d could not be stored: %s", slot, exc)
            return {"status": "Failed", "statusInfo": {"reasonCode": "WriteFailed"}}
        self.profiles = stored
        log.info("network profile stored in slot %d (%s)", slot, data["ocppCsmsUrl"])
        return {"status": "Accepted"}
