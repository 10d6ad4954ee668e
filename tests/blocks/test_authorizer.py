"""The authorization decisions (blocks/authorization.py `Authorizer.authorize`) without a WebSocket.

A scripted answer source stands where the link would be (it is online or not, records every CALL and hands
back the next scripted answer or failure); the cache and the local list are the real ones, in a real SQLite
station database. The station clock is moved by its offset, so expiry needs no waiting. What the CSMS sees end
to end is covered by tests/station/test_authorization.py and tests/conformance/test_c_*.py / test_d_*.py.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from datetime import timedelta
from pathlib import Path
from typing import Any, cast

import pytest

from appliance.blocks.auth_store import MIRROR_BYTES, AuthCache, LocalList
from appliance.blocks.authorization import Authorizer
from appliance.clock import StationClock, format_iso
from appliance.devicemodel.catalog import STATION
from appliance.devicemodel.settings import Settings
from appliance.link.link import Link
from appliance.link.rpc import CallErrorReply, CallTimeout, LinkDown
from appliance.storage import Storage

CARD = {"idToken": "AA01", "type": "ISO14443"}
OTHER = {"idToken": "BB02", "type": "ISO14443"}
THIRD = {"idToken": "CC03", "type": "ISO14443"}
GROUP = {"idToken": "FLEET1", "type": "Central"}
ACCEPTED = {"status": "Accepted"}
DAY = 86_400


class ScriptedCsms:
    """The link as the Authorizer uses it: `online`, and `call` answering from a script (dict or exception)."""

    def __init__(self, *answers: dict | Exception, online: bool = True) -> None:
        self.online = online
        self.answers = list(answers)
        self.calls: list[tuple[str, dict]] = []

    async def call(self, action: str, payload: dict) -> dict:
        self.calls.append((action, payload))
        assert self.answers, f"unexpected {action} {payload}: nothing scripted"
        answer = self.answers.pop(0)
        if isinstance(answer, Exception):
            raise answer
        return answer


class Rig:
    def __init__(self, storage: Storage, capacity_bytes: int = 1_048_576, mirror_bytes: int = MIRROR_BYTES) -> None:
        self.settings: dict[str, Any] = {
            f"{s.component}.{s.variable}": s.default
            for s in STATION
            if s.component in ("AuthCtrlr", "AuthCacheCtrlr", "LocalAuthListCtrlr")
        }
        self.clock = StationClock()
        self.csms = ScriptedCsms()
        self.cache = AuthCache(storage, capacity_bytes=capacity_bytes, mirror_bytes=mirror_bytes)
        self.local_list = LocalList(storage)
        # The Authorizer uses only `online` and `call` of its link: the scripted source stands in for it.
        self.authorizer = Authorizer(
            cast(Link, self.csms),
            cache=self.cache,
            local_list=self.local_list,
            clock=self.clock,
            settings=Settings(self.settings.__getitem__),
        )

    def script(self, *answers: dict | Exception, online: bool = True) -> ScriptedCsms:
        self.csms.answers, self.csms.calls, self.csms.online = list(answers), [], online
        return self.csms

    async def cached(self, id_token: dict, info: dict) -> None:
        await self.cache.put(id_token, info, self.clock.now())

    async def listed(self, *entries: tuple[dict, dict]) -> None:
        await self.local_list.replace(self.local_list.version() + 1, entries)


@pytest.fixture
async def storage(tmp_path: Path) -> AsyncIterator[Storage]:
    storage = await Storage.open(tmp_path)
    yield storage
    storage.close()


@pytest.fixture(params=[MIRROR_BYTES, 0], ids=["cache-in-memory", "cache-past-the-memory-bound"])
async def rig(storage: Storage, request: pytest.FixtureRequest) -> Rig:
    """Every decision twice: with the cache copied in memory, and past the copy's bound (lookups as jobs)."""
    rig = Rig(storage, mirror_bytes=request.param)
    await rig.authorizer.run()  # loads the cache and the local list, as in a station
    return rig


def answer(status: str, **more: Any) -> dict:
    return {"idTokenInfo": {"status": status, **more}}


# --- online: the CSMS decides, and what it says is remembered ----------------------------------------------


async def test_unknown_token_online_asks_the_csms_and_caches_its_word(rig: Rig) -> None:
    csms = rig.script(answer("Accepted", groupIdToken=GROUP))
    assert await rig.authorizer.authorize(CARD) == {"status": "Accepted", "groupIdToken": GROUP}
    assert csms.calls == [("Authorize", {"idToken": CARD})]
    assert await rig.cache.get(CARD, rig.clock.now(), DAY) == {"status": "Accepted", "groupIdToken": GROUP}


@pytest.mark.parametrize("status", ["Blocked", "Invalid", "Unknown", "NoCredit"])
async def test_a_refusal_from_the_csms_is_returned_and_cached(rig: Rig, status: str) -> None:
    rig.script(answer(status))
    assert (await rig.authorizer.authorize(CARD))["status"] == status
    assert await rig.cache.get(CARD, rig.clock.now(), DAY) == {"status": status}


async def test_local_pre_authorize_starts_a_cached_accepted_token_without_asking(rig: Rig) -> None:
    await rig.cached(CARD, {"status": "Accepted", "groupIdToken": GROUP})
    csms = rig.script()
    assert await rig.authorizer.authorize(CARD) == {"status": "Accepted", "groupIdToken": GROUP}
    assert csms.calls == []


async def test_without_local_pre_authorize_the_csms_is_asked_even_for_a_cached_token(rig: Rig) -> None:
    """TC_C_36: LocalPreAuthorize false; the CSMS's answer replaces the cached one."""
    rig.settings["AuthCtrlr.LocalPreAuthorize"] = False
    await rig.cached(CARD, ACCEPTED)
    csms = rig.script(answer("Blocked"))
    assert (await rig.authorizer.authorize(CARD))["status"] == "Blocked"
    assert len(csms.calls) == 1
    assert await rig.cache.get(CARD, rig.clock.now(), DAY) == {"status": "Blocked"}


@pytest.mark.parametrize("disable_post", [False, True])
async def test_a_cached_refusal_is_rechecked_unless_post_authorize_is_disabled(rig: Rig, disable_post: bool) -> None:
    rig.settings["AuthCacheCtrlr.DisablePostAuthorize"] = disable_post
    await rig.cached(CARD, {"status": "Blocked"})
    csms = rig.script(answer("Accepted"))
    status = (await rig.authorizer.authorize(CARD))["status"]
    assert status == ("Blocked" if disable_post else "Accepted")
    assert len(csms.calls) == (0 if disable_post else 1)


@pytest.mark.parametrize("disable_post", [False, True])
async def test_local_list_refusal_and_its_own_disable_post_authorize(rig: Rig, disable_post: bool) -> None:
    """LocalAuthListCtrlr.DisablePostAuthorize governs list entries; the cache's flag does not."""
    rig.settings["LocalAuthListCtrlr.DisablePostAuthorize"] = disable_post
    rig.settings["AuthCacheCtrlr.DisablePostAuthorize"] = not disable_post
    await rig.listed((CARD, {"status": "Invalid"}))
    csms = rig.script(answer("Accepted"))
    status = (await rig.authorizer.authorize(CARD))["status"]
    assert status == ("Invalid" if disable_post else "Accepted")
    assert len(csms.calls) == (0 if disable_post else 1)


async def test_the_local_list_beats_the_cache_and_is_not_shadowed_by_it(rig: Rig) -> None:
    """TC_C_25: the list's entry wins over a cached one; a CSMS answer for a listed token is not cached."""
    await rig.cached(CARD, {"status": "Blocked"})
    await rig.listed((CARD, {"status": "Accepted", "groupIdToken": GROUP}))
    csms = rig.script()
    assert await rig.authorizer.authorize(CARD) == {"status": "Accepted", "groupIdToken": GROUP}
    assert csms.calls == []
    assert await rig.authorizer.known(CARD) == ("list", {"status": "Accepted", "groupIdToken": GROUP})
    await rig.authorizer.learn(OTHER, ACCEPTED)
    await rig.authorizer.learn(CARD, {"status": "Invalid"})
    assert await rig.cache.get(CARD, rig.clock.now(), DAY) == {"status": "Blocked"}  # untouched
    assert await rig.cache.get(OTHER, rig.clock.now(), DAY) == ACCEPTED


async def test_a_disabled_list_or_cache_is_not_consulted(rig: Rig) -> None:
    await rig.listed((CARD, ACCEPTED))
    await rig.cached(OTHER, ACCEPTED)
    rig.settings["LocalAuthListCtrlr.Enabled"] = False
    rig.settings["AuthCacheCtrlr.Enabled"] = False
    assert await rig.authorizer.known(CARD) is None and await rig.authorizer.known(OTHER) is None
    csms = rig.script(answer("Invalid"), answer("Invalid"))
    assert (await rig.authorizer.authorize(CARD))["status"] == "Invalid"
    assert (await rig.authorizer.authorize(OTHER))["status"] == "Invalid"
    assert len(csms.calls) == 2
    # …and a disabled cache learns nothing: re-enabled, it still holds the old Accepted.
    rig.settings["AuthCacheCtrlr.Enabled"] = True
    assert await rig.cache.get(OTHER, rig.clock.now(), DAY) == ACCEPTED


# --- offline, or the CSMS gave no usable answer -------------------------------------------------------------


@pytest.mark.parametrize("where", ["list", "cache"])
@pytest.mark.parametrize("offline_allowed", [True, False])
async def test_offline_a_locally_accepted_token_charges_only_with_local_authorize_offline(
    rig: Rig, where: str, offline_allowed: bool
) -> None:
    rig.settings["AuthCtrlr.LocalAuthorizeOffline"] = offline_allowed
    info = {"status": "Accepted", "groupIdToken": GROUP}
    await (rig.listed((CARD, info)) if where == "list" else rig.cached(CARD, info))
    csms = rig.script(online=False)
    result = await rig.authorizer.authorize(CARD)
    assert result == (info if offline_allowed else {"status": "Unknown"})
    assert csms.calls == []


@pytest.mark.parametrize("status", ["Blocked", "Invalid", "Expired"])
async def test_offline_a_locally_refused_token_stays_refused(rig: Rig, status: str) -> None:
    """TC_C_22–C_24 (list) and TC_C_09–C_12 (cache): only Accepted starts offline."""
    await rig.listed((CARD, {"status": status}))
    await rig.cached(OTHER, {"status": status})
    rig.script(online=False)
    assert (await rig.authorizer.authorize(CARD))["status"] == status
    assert (await rig.authorizer.authorize(OTHER))["status"] == status


async def test_offline_an_unknown_token_is_refused_without_asking(rig: Rig) -> None:
    """No OfflineTxForUnknownIdEnabled: an unknown token never charges offline."""
    csms = rig.script(online=False)
    assert await rig.authorizer.authorize(CARD) == {"status": "Unknown"}
    assert csms.calls == []


@pytest.mark.parametrize(
    "failure", [CallTimeout("no answer"), LinkDown("gone"), CallErrorReply("InternalError", "busy", {})], ids=type
)
async def test_no_usable_answer_is_decided_as_offline(rig: Rig, failure: Exception) -> None:
    rig.settings["AuthCtrlr.LocalPreAuthorize"] = False  # so the CSMS is asked for the cached token too
    await rig.cached(CARD, ACCEPTED)
    csms = rig.script(failure, failure)
    assert await rig.authorizer.authorize(CARD) == ACCEPTED
    assert await rig.authorizer.authorize(OTHER) == {"status": "Unknown"}
    assert [action for action, _ in csms.calls] == ["Authorize", "Authorize"]


# --- the cache's time: LifeTime since last use, or the CSMS's cacheExpiryDateTime --------------------------


async def test_a_cached_accepted_token_expires_after_its_life_time_since_last_use(rig: Rig) -> None:
    rig.settings["AuthCacheCtrlr.LifeTime"] = 3600
    await rig.cached(CARD, ACCEPTED)
    rig.clock.offset += 3000
    rig.script()
    assert await rig.authorizer.authorize(CARD) == ACCEPTED  # used: its life starts again
    rig.clock.offset += 3000
    assert await rig.authorizer.known(CARD) == ("cache", ACCEPTED)
    rig.clock.offset += 700
    assert await rig.authorizer.known(CARD) == ("cache", {"status": "Expired"})
    rig.script(online=False)
    assert (await rig.authorizer.authorize(CARD))["status"] == "Expired"
    # Online, an expired entry is a refusal to re-check: the CSMS's new word refreshes it.
    csms = rig.script(answer("Accepted"))
    assert await rig.authorizer.authorize(CARD) == ACCEPTED
    assert len(csms.calls) == 1
    assert await rig.authorizer.known(CARD) == ("cache", ACCEPTED)


async def test_cache_expiry_date_time_from_the_csms_wins_over_life_time(rig: Rig) -> None:
    expiry = format_iso(rig.clock.now() + timedelta(minutes=10))
    rig.script(answer("Accepted", cacheExpiryDateTime=expiry))
    await rig.authorizer.authorize(CARD)
    rig.clock.offset += 9 * 60
    assert await rig.authorizer.known(CARD) == ("cache", {"status": "Accepted", "cacheExpiryDateTime": expiry})
    rig.clock.offset += 2 * 60
    assert await rig.authorizer.known(CARD) == ("cache", {"status": "Expired", "cacheExpiryDateTime": expiry})


async def test_a_full_cache_evicts_the_least_recently_used_entry(storage: Storage) -> None:
    entry_bytes = len("AA01") + len("ISO14443") + len('{"status":"Accepted"}') + 48
    rig = Rig(storage, capacity_bytes=2 * entry_bytes)
    await rig.authorizer.run()
    for token in (CARD, OTHER):
        await rig.cached(token, ACCEPTED)
        rig.clock.offset += 10
    rig.script()
    await rig.authorizer.authorize(CARD)  # a pre-authorized start counts as a use: OTHER is now the oldest
    rig.clock.offset += 10
    await rig.authorizer.learn(THIRD, ACCEPTED)
    assert rig.cache.count() == 2
    assert await rig.authorizer.known(OTHER) is None
    assert await rig.authorizer.known(CARD) == ("cache", ACCEPTED)
    assert await rig.authorizer.known(THIRD) == ("cache", ACCEPTED)


# --- group ids: what the stop-by-group decision (blocks/transactions.py) is given -------------------------


async def test_the_group_id_comes_back_from_every_source(rig: Rig) -> None:
    """C09: whoever decides — the CSMS, the cache online or offline, the list — hands over the GroupId."""
    rig.script(answer("Accepted", groupIdToken=GROUP))
    assert (await rig.authorizer.authorize(CARD))["groupIdToken"] == GROUP
    rig.script(online=False)
    assert (await rig.authorizer.authorize(CARD))["groupIdToken"] == GROUP
    await rig.listed((OTHER, {"status": "Accepted", "groupIdToken": GROUP}))
    assert (await rig.authorizer.authorize(OTHER))["groupIdToken"] == GROUP
    # A TransactionEvent answer naming a new group for a cached token updates the cache (C10/TC_C_33).
    new_group = {"idToken": "FLEET2", "type": "Central"}
    await rig.authorizer.learn(CARD, {"status": "Accepted", "groupIdToken": new_group})
    assert (await rig.authorizer.authorize(CARD))["groupIdToken"] == new_group
