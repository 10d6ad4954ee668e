"""The authorization data's copy in memory (blocks/auth_store.py) against the SQLite tables it copies.

The decisions made from it are tested in test_authorizer.py (in memory and past the copy's bound); here: the
copy equals the tables after every commit — past its bound and back, under concurrent writers, after a rolled
back transaction, after a restart — and it cannot be read before it was loaded.
"""

from __future__ import annotations

import sqlite3
from collections.abc import AsyncIterator
from pathlib import Path

import pytest
import trio

from appliance.blocks.auth_store import AuthCache, LocalList, NotLoaded
from appliance.clock import StationClock
from appliance.storage import Storage

ACCEPTED = {"status": "Accepted"}
DAY = 86_400
#: AuthCacheCtrlr.Storage's count for one of `token(i)`'s entries with ACCEPTED.
ENTRY_BYTES = len("TOKEN000") + len("ISO14443") + len('{"status":"Accepted"}') + 48


def token(i: int) -> dict:
    return {"idToken": f"TOKEN{i:03d}", "type": "ISO14443"}


@pytest.fixture
async def storage(tmp_path: Path) -> AsyncIterator[Storage]:
    storage = await Storage.open(tmp_path)
    yield storage
    storage.close()


def table(storage: Storage) -> dict[str, str]:
    """What auth_cache holds, read through a connection of the test's own: token → idTokenInfo JSON."""
    with sqlite3.connect(storage.path) as conn:
        return dict(conn.execute("SELECT id_token, id_token_info FROM auth_cache"))


async def copied(cache: AuthCache, tokens: range, now: StationClock) -> dict[str, str]:
    """What the cache answers for each of `tokens`, in the form of `table`."""
    found = {}
    for i in tokens:
        info = await cache.get(token(i), now.now(), DAY)
        if info is not None:
            found[token(i)["idToken"]] = f'{{"status":"{info["status"]}"}}'
    return found


async def test_the_cache_leaves_memory_past_its_bound_and_comes_back(storage: Storage) -> None:
    clock = StationClock()
    cache = AuthCache(storage, capacity_bytes=1_048_576, mirror_bytes=3 * ENTRY_BYTES)
    await cache.load()
    for i in range(3):
        await cache.put(token(i), ACCEPTED, clock.now())
    assert cache.mirrored and cache.count() == 3 and cache.used_bytes() == 3 * ENTRY_BYTES
    await cache.put(token(3), {"status": "Blocked"}, clock.now())
    assert not cache.mirrored  # looked up on the storage worker now
    assert cache.count() == 4 and cache.used_bytes() == 4 * ENTRY_BYTES - 1  # "Blocked": one letter shorter
    assert await copied(cache, range(6), clock) == table(storage) and len(table(storage)) == 4
    await cache.write(AuthCache.forget_in, storage.writer, token(3))  # as customer information clears: back in memory
    assert cache.mirrored and cache.count() == 3
    assert await copied(cache, range(6), clock) == table(storage) and len(table(storage)) == 3
    await cache.clear()
    assert cache.mirrored and cache.count() == 0 and cache.used_bytes() == 0
    assert await cache.get(token(0), clock.now(), DAY) is None


async def test_concurrent_writers_leave_the_copy_equal_to_the_table(storage: Storage) -> None:
    """The copy is published by each job after its commit, so the last commit wins in memory as on disk, whichever
    waiting task Trio happens to wake first."""
    clock = StationClock()
    cache = AuthCache(storage, capacity_bytes=12 * ENTRY_BYTES)  # evicts too
    await cache.load()
    async with trio.open_nursery() as nursery:
        for i in range(40):
            status = ("Accepted", "Blocked", "Invalid")[i % 3]
            nursery.start_soon(cache.put, token(i % 15), {"status": status}, clock.now())
            nursery.start_soon(cache.touch, token((i * 7) % 15), clock.now())
    assert await copied(cache, range(15), clock) == table(storage)
    assert cache.count() == len(table(storage)) == 12


async def test_a_rolled_back_change_publishes_nothing(storage: Storage) -> None:
    clock = StationClock()
    cache = AuthCache(storage, capacity_bytes=1_048_576)
    await cache.load()
    await cache.put(token(1), ACCEPTED, clock.now())

    def forget_then_fail(conn: sqlite3.Connection) -> None:
        assert AuthCache.forget_in(conn, token(1))
        raise sqlite3.OperationalError("disk I/O error")  # what a failing SD card raises mid-transaction

    with pytest.raises(sqlite3.OperationalError):
        await cache.write(forget_then_fail, storage.writer)
    assert await cache.get(token(1), clock.now(), DAY) == ACCEPTED
    assert cache.count() == 1 and len(table(storage)) == 1


async def test_a_restart_reads_the_copy_back_and_nothing_is_read_before(tmp_path: Path) -> None:
    clock = StationClock()
    storage = await Storage.open(tmp_path)
    try:
        cache, local_list = AuthCache(storage, capacity_bytes=1_048_576), LocalList(storage)
        await cache.load()
        await local_list.load()
        await cache.put(token(1), ACCEPTED, clock.now())
        await local_list.replace(4, [(token(2), {"status": "Blocked"})])
        await local_list.patch(5, [(token(3), ACCEPTED)])
    finally:
        storage.close()
    storage = await Storage.open(tmp_path)
    try:
        cache, local_list = AuthCache(storage, capacity_bytes=1_048_576), LocalList(storage)
        with pytest.raises(NotLoaded):
            local_list.version()
        with pytest.raises(NotLoaded):
            await cache.get(token(1), clock.now(), DAY)
        await cache.load()
        await local_list.load()
        assert await cache.get(token(1), clock.now(), DAY) == ACCEPTED and cache.count() == 1
        assert local_list.version() == 5 and local_list.count() == 2
        assert local_list.get(token(2)) == {"status": "Blocked"} and local_list.get(token(3)) == ACCEPTED
        assert local_list.used_bytes() == 2 * (len("TOKEN000") + len("ISO14443")) + len('{"status":"Blocked"}') + len(
            '{"status":"Accepted"}'
        )
    finally:
        storage.close()
