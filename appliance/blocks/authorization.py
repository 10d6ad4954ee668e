"""Functional blocks C and D (authorization, local authorization list): may this idToken charge?

Every decision goes through `Authorizer.authorize` (RFID taps, remote starts with
AuthCtrlr.AuthorizeRemoteStart, stop-by-group checks). The order (Part 2 C01–C16, D01):

1. What the station knows: the local list first (LocalAuthListCtrlr.Enabled), then the cache
   (AuthCacheCtrlr.Enabled); a cached Accepted whose time is up reads as Expired.
2. Online: with AuthCtrlr.LocalPreAuthorize a locally known Accepted token starts at once; otherwise the CSMS
   is asked (Authorize) and its answer refreshes the cache. A locally known non-Accepted token is refused
   without asking when DisablePostAuthorize is set.
3. Offline (or the CSMS did not answer): with AuthCtrlr.LocalAuthorizeOffline a locally known Accepted token
   may charge; anything else is refused (no Unknown Offline Authorization: the
   station has no AuthCtrlr.OfflineTxForUnknownIdEnabled, whose presence would declare it).
"""

from __future__ import annotations

import json
import logging
from collections.abc import Mapping

import trio

from appliance.blocks.auth_store import AuthCache, LocalList
from appliance.blocks.base import Block
from appliance.clock import StationClock
from appliance.devicemodel import settings as keys
from appliance.devicemodel.model import Provider
from appliance.devicemodel.settings import Settings
from appliance.link.link import Link
from appliance.link.rpc import CallFailed, Handler
from appliance.protocol import ErrorCode, OcppError
from appliance.util.redact import mask

log = logging.getLogger("appliance.authorization")

#: The most entries the local list holds (LocalAuthListCtrlr.Entries maxLimit, as certified).
LOCAL_LIST_CAPACITY = 10


class Authorizer(Block):
    migrations = ("0004_authorization.sql",)

    def __init__(
        self,
        link: Link,
        *,
        cache: AuthCache,
        local_list: LocalList,
        clock: StationClock,
        settings: Settings,
    ) -> None:
        self._link = link
        self.cache = cache
        self.local_list = local_list
        self._clock = clock
        self._settings = settings

    def handlers(self) -> Mapping[str, Handler]:
        return {
            "ClearCache": self._clear_cache,
            "SendLocalList": self._send_local_list,
            "GetLocalListVersion": self._get_local_list_version,
        }

    def live_variables(self) -> Mapping[str, Provider]:
        return {
            "AuthCacheCtrlr.Storage": self.cache.used_bytes,
            "LocalAuthListCtrlr.Entries": self.local_list.count,
            "LocalAuthListCtrlr.Storage": self.local_list.used_bytes,
        }

    async def run(self, *, task_status: trio.TaskStatus[None] = trio.TASK_STATUS_IGNORED) -> None:
        """Read the cache and the local list into memory before the station serves anything (after a restart or
        a power cut too: SQLite is the truth, the copy is rebuilt from it)."""
        await self.cache.load()
        await self.local_list.load()
        task_status.started()

    # --- the decision --------------------------------------------------------------------------------------

    async def known(self, id_token: dict) -> tuple[str, dict] | None:
        """What the station itself knows about a token: ("list" | "cache", idTokenInfo), or None."""
        if self._settings.flag(keys.LOCAL_LIST_ENABLED):
            info = self.local_list.get(id_token)
            if info is not None:
                return "list", info
        if self._settings.flag(keys.AUTH_CACHE_ENABLED):
            info = await self.cache.get(id_token, self._clock.now(), self._settings.seconds(keys.AUTH_CACHE_LIFE_TIME))
            if info is not None:
                return "cache", info
        return None

    async def authorize(self, id_token: dict) -> dict:
        """The idTokenInfo that applies to `id_token` now (status Accepted means it may charge)."""
        token = mask(id_token["idToken"])
        known = await self.known(id_token)
        if self._link.online:
            if known is not None:
                source, info = known
                if info["status"] == "Accepted" and self._settings.flag(keys.LOCAL_PRE_AUTHORIZE):
                    log.info("token %s: Accepted from the %s (local pre-authorization)", token, source)
                    await self._used(id_token, source)
                    return info
                if info["status"] != "Accepted" and self._disable_post_authorize(source):
                    log.info("token %s: %s in the %s; not asking the CSMS", token, info["status"], source)
                    return info
            try:
                answer = await self._link.call("Authorize", {"idToken": id_token})
            except CallFailed as exc:
                log.warning("Authorize for %s failed (%s); deciding offline", token, exc)
            else:
                info = answer["idTokenInfo"]
                log.info("token %s: %s (CSMS)", token, info["status"])
                await self.learn(id_token, info)
                return info
        if known is not None and self._settings.flag(keys.LOCAL_AUTHORIZE_OFFLINE):
            source, info = known
            log.info("token %s: %s from the %s (offline)", token, info["status"], source)
            if info["status"] == "Accepted":
                await self._used(id_token, source)
            return info
        log.info("token %s: offline and not known locally; refused", token)
        return {"status": "Unknown"}

    async def learn(self, id_token: dict, info: dict) -> None:
        """Remember what the CSMS said about a token (Authorize or TransactionEvent answers, C02/C10)."""
        if not self._settings.flag(keys.AUTH_CACHE_ENABLED):
            return
        if self._settings.flag(keys.LOCAL_LIST_ENABLED) and self.local_list.get(id_token) is not None:
            return  # the local list is the operator's word for this token; the cache must not shadow it
        await self.cache.put(id_token, info, self._clock.now())

    async def _used(self, id_token: dict, source: str) -> None:
        if source == "cache":
            await self.cache.touch(id_token, self._clock.now())

    def _disable_post_authorize(self, source: str) -> bool:
        key = keys.AUTH_CACHE_DISABLE_POST_AUTHORIZE if source == "cache" else keys.LOCAL_LIST_DISABLE_POST_AUTHORIZE
        return self._settings.flag(key)

    # --- CSMS requests ---------------------------------------------------------------------------------

    async def _clear_cache(self, payload: dict) -> dict:
        if not self._settings.flag(keys.AUTH_CACHE_ENABLED):
            return {"status": "Rejected"}  # TC_C_38
        await self.cache.clear()
        log.info("authorization cache cleared by the CSMS")
        return {"status": "Accepted"}

    async def _get_local_list_version(self, payload: dict) -> dict:
        if not self._settings.flag(keys.LOCAL_LIST_ENABLED):
            return {"versionNumber": 0}  # TC_D_10
        return {"versionNumber": self.local_list.version()}

    async def _send_local_list(self, payload: dict) -> dict:
        entries = payload.get("localAuthorizationList", [])
        items_limit = self._settings.integer(keys.LOCAL_LIST_ITEMS_PER_MESSAGE)
        if len(entries) > items_limit:
            raise OcppError(
                ErrorCode.OccurrenceConstraintViolation,
                f"{len(entries)} entries; LocalAuthListCtrlr.ItemsPerMessage is {items_limit}",
            )
        size = len(_compact(payload).encode())
        bytes_limit = self._settings.integer(keys.LOCAL_LIST_BYTES_PER_MESSAGE)
        if size > bytes_limit:
            raise OcppError(
                ErrorCode.FormatViolation, f"{size} bytes; LocalAuthListCtrlr.BytesPerMessage is {bytes_limit}"
            )
        if not self._settings.flag(keys.LOCAL_LIST_ENABLED):
            return {"status": "Failed", "statusInfo": {"reasonCode": "Disabled"}}
        version = int(payload["versionNumber"])
        updates = [(e["idToken"], e.get("idTokenInfo")) for e in entries]
        broken = _broken_rule(payload["updateType"], version, updates)
        if broken is not None:
            reason, detail = broken
            log.warning("SendLocalList version %d refused: %s; list and version unchanged", version, detail)
            return {"status": "Failed", "statusInfo": {"reasonCode": reason, "additionalInfo": detail}}
        if payload["updateType"] == "Full":
            full = [(t, i) for t, i in updates if i is not None]  # all of them: checked above
            if len(full) > LOCAL_LIST_CAPACITY:
                return {"status": "Failed", "statusInfo": {"reasonCode": "ListFull"}}
            await self.local_list.replace(version, full)
        else:
            if version <= self.local_list.version():
                return {"status": "VersionMismatch"}  # TC_D_06
            if self.local_list.size_after_patch(updates) > LOCAL_LIST_CAPACITY:
                return {"status": "Failed", "statusInfo": {"reasonCode": "ListFull"}}
            await self.local_list.patch(version, updates)
        log.info(
            "local list %s update to version %d: %d entries now",
            payload["updateType"],
            version,
            self.local_list.count(),
        )
        return {"status": "Accepted"}


def _broken_rule(update_type: str, version: int, updates: list[tuple[dict, dict | None]]) -> tuple[str, str] | None:
    """The SendLocalList rule a schema-valid request still breaks (D01/D02), as (reasonCode, detail), or None.

    Such a list is refused whole (Failed) rather than applied in part: what the CSMS meant is unclear, and a
    partly applied list under a new version number would make the CSMS believe the station holds what it sent.
    """
    if version <= 0:
        return "ValuePositiveOnly", f"versionNumber must be > 0 (0 means no list), got {version}"
    seen: set[tuple[str, str]] = set()
    for id_token, info in updates:
        key = (id_token["idToken"], id_token["type"])
        if key in seen:
            return "InvalidValue", f"idToken {mask(key[0])} ({key[1]}) appears more than once"
        seen.add(key)
        if update_type == "Full" and info is None:
            return "MissingParam", f"Full update: idToken {mask(key[0])} ({key[1]}) has no idTokenInfo"
    return None


def _compact(payload: dict) -> str:
    return json.dumps(payload, separators=(",", ":"), ensure_ascii=False)
