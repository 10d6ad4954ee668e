"""Functional block B (B09/B10): network connection profiles and falling back between them.

Slot 1 is the factory profile from the config's `[csms]`; SetNetworkProfile stores further slots durably.
OCPPCommCtrlr.NetworkConfigurationPriority orders the slots to try. The link asks `endpoint()` before every
connection attempt; after NetworkProfileConnectionAttempts consecutive failures on a slot the next slot in
the priority list is used, wrapping around, so a CSMS migration that goes wrong falls back to the profile
that worked. The choice depends only on the count of consecutive failures, which a successful connection
resets, so there is no second state machine to get out of step with the link's.

Security profiles (A05, B09.FR.04): the station never goes down. Once a connection on a higher profile has been
accepted, that profile is the floor (persisted, `security_profile_floor`): the slots below it are dropped from
NetworkConfigurationPriority (TC_A_19) and never tried again, SetNetworkProfile refuses a lower profile
(TC_A_22), and SecurityCtrlr.SecurityProfile reports the active slot's profile. A priority that would select a
TLS slot is refused while no CSMS root certificate is installed (TC_A_20), and a profile-3 slot while there is
no client certificate (TC_A_21).
"""

from __future__ import annotations

import json
import logging
import sqlite3
from collections.abc import Callable, Mapping
from typing import Any
from urllib.parse import urlsplit

from appliance.blocks.base import Block
from appliance.config import CsmsConfig
from appliance.devicemodel import settings as keys
from appliance.devicemodel.model import Provider, Validator
from appliance.devicemodel.settings import Settings
from appliance.link.link import Link
from appliance.link.rpc import Handler
from appliance.link.transport import Endpoint
from appliance.security.tls import TlsTrust
from appliance.storage import StateStore

log = logging.getLogger("appliance.network")

SLOTS = (1, 2, 3)
KEY = "network_profiles"
#: station_state key: the lowest security profile the station may still use (raised by an accepted upgrade).
FLOOR_KEY = "security_profile_floor"


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
        trust: TlsTrust,
        set_priority: Callable[[str], Any],
    ) -> None:
        self._station_id = station_id
        self._factory = factory
        self._state = state
        self._settings = settings
        self._failures = failures
        self._password = password
        self._trust = trust
        self._set_priority = set_priority  # awaitable: the station writes NetworkConfigurationPriority
        raw = state.get(KEY)
        self.profiles: dict[int, dict] = {int(k): v for k, v in (json.loads(raw) if raw else {}).items()}
        self.active_slot = 1

    def handlers(self) -> Mapping[str, Handler]:
        return {"SetNetworkProfile": self._set_network_profile}

    def live_variables(self) -> Mapping[str, Provider]:
        return {
            "OCPPCommCtrlr.ActiveNetworkProfile": lambda: self.active_slot,
            "SecurityCtrlr.SecurityProfile": lambda: self.slot_profile(self.active_slot),
        }

    def validators(self) -> Mapping[str, Validator]:
        return {keys.NETWORK_CONFIGURATION_PRIORITY.path: self.validate_priority}

    @property
    def floor(self) -> int:
        """The lowest security profile still allowed: the factory one, or the highest upgrade accepted since."""
        return max(self._factory.security_profile, int(self._state.get(FLOOR_KEY) or 0))

    def slot_profile(self, slot: int) -> int:
        return self._factory.security_profile if slot == 1 else int(self.profiles[slot]["securityProfile"])

    def priority(self) -> list[int]:
        slots = [int(s) for s in (self._settings.text(keys.NETWORK_CONFIGURATION_PRIORITY) or "").split(",") if s]
        usable = [s for s in slots if (s == 1 or s in self.profiles) and self.slot_profile(s) >= self.floor]
        if usable:
            return usable
        known = [1, *sorted(self.profiles)]
        return [max(known, key=self.slot_profile)]  # never below the floor, even with a priority list gone bad

    def validate_priority(self, value: object) -> str | None:
        """SetVariables check for NetworkConfigurationPriority: only slots that hold a profile the station can use."""
        for text in (s for s in str(value).split(",") if s):
            slot = int(text)
            if slot not in SLOTS or (slot != 1 and slot not in self.profiles):
                return f"slot {slot} holds no network profile"
            profile = self.slot_profile(slot)
            if profile < self.floor:
                return f"slot {slot} has security profile {profile}, below the current {self.floor}"
            if profile >= 2 and not self._has_roots():
                return f"slot {slot} needs TLS and no CSMS root certificate is installed"
            if profile >= 3 and self._trust.client_identity() is None:
                return f"slot {slot} needs security profile 3 and no charging station certificate is installed"
        return None

    def _has_roots(self) -> bool:
        try:
            return bool(self._trust.csms_roots())
        except (OSError, ValueError):
            return False

    async def accepted(self, link: Link) -> None:
        """Part of every boot, once the CSMS has accepted it and before the online services start (so a CSMS
        that has seen our status reports never sees the old priority): a boot accepted on a higher profile
        makes it the floor and drops the slots below it from NetworkConfigurationPriority (A05.FR.04/05)."""
        profile = self.slot_profile(self.active_slot)
        if profile <= self.floor:
            return
        await self._state.put(FLOOR_KEY, str(profile))
        slots = [s for s in (self._settings.text(keys.NETWORK_CONFIGURATION_PRIORITY) or "").split(",") if s]
        kept = [s for s in slots if (int(s) == 1 or int(s) in self.profiles) and self.slot_profile(int(s)) >= profile]
        log.warning(
            "security profile raised to %d on slot %d; dropped from the priority: %s",
            profile,
            self.active_slot,
            ",".join(s for s in slots if s not in kept) or "nothing",
        )
        await self._set_priority(",".join(kept or [str(self.active_slot)]))

    def endpoint(self) -> Endpoint:
        order = self.priority()
        attempts = max(1, self._settings.integer(keys.NETWORK_PROFILE_CONNECTION_ATTEMPTS))
        slot = order[(self._failures() // attempts) % len(order)]
        if slot != self.active_slot:
            log.warning("network profile: switching from slot %d to slot %d", self.active_slot, slot)
            self.active_slot = slot
        if slot == 1:
            f = self._factory
            return Endpoint(f.url, self._station_id, f.security_profile, self._password(), self._trust)
        data = self.profiles[slot]
        return Endpoint(
            data["ocppCsmsUrl"], self._station_id, int(data["securityProfile"]), self._password(), self._trust
        )

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
        if profile < self.floor:
            return rejected(f"security profile {profile} is lower than the current {self.floor}")  # B09.FR.04
        scheme = urlsplit(data["ocppCsmsUrl"]).scheme
        if (profile >= 2) != (scheme == "wss") or scheme not in ("ws", "wss"):
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
