"""The storage worker on a real SQLite file: jobs in order on one thread, errors handed back, never abandoned on
cancellation, savepoint-aware transactions, disk full told by SQLite's error code, a clear error after close."""

from __future__ import annotations

import sqlite3
import threading
from collections.abc import AsyncIterator
from pathlib import Path

import pytest
import trio

from appliance.blocks.auth_store import LocalList
from appliance.blocks.profile_store import ProfileStore
from appliance.storage import StateStore, Storage, StorageClosed, StorageWorker, is_disk_full, transaction
from appliance.storage.db import DB_NAME, open_station_db
from tests.harness import peek


@pytest.fixture
async def storage(tmp_path: Path) -> AsyncIterator[Storage]:
    store = await Storage.open(tmp_path)
    yield store
    store.close()


def _insert(conn: sqlite3.Connection, key: str, value: str) -> None:
    conn.execute("INSERT INTO station_state (key, value, updated_at) VALUES (?, ?, 'now')", (key, value))


async def test_jobs_run_in_order_on_one_thread(storage: Storage) -> None:
    seen: list[tuple[int, str]] = []

    def job(i: int) -> int:
        seen.append((i, threading.current_thread().name))
        return i * i

    async with trio.open_nursery() as nursery:
        for i in range(50):
            nursery.start_soon(storage.run, job, i)
    assert sorted(i for i, _ in seen) == list(range(50))
    assert {name for _, name in seen} == {"storage-writer"}
    assert threading.current_thread().name != "storage-writer"
    assert await storage.run(job, 7) == 49


async def test_an_error_is_raised_in_the_caller_and_the_worker_lives_on(storage: Storage) -> None:
    def fail() -> None:
        raise ValueError("boom")

    with pytest.raises(ValueError, match="boom"):
        await storage.run(fail)
    assert await storage.run(lambda: 1) == 1


async def test_a_failed_write_rolls_back_all_of_it(storage: Storage) -> None:
    def two_then_fail(conn: sqlite3.Connection) -> None:
        _insert(conn, "a", "1")
        _insert(conn, "b", "2")
        raise RuntimeError("power cut, as far as this transaction knows")

    with pytest.raises(RuntimeError):
        await storage.write(two_then_fail, storage.writer)
    assert peek(storage.path, "SELECT count(*) FROM station_state") == [(0,)]
    assert not await storage.run(lambda: storage.writer.in_transaction)


async def test_a_nested_transaction_is_a_savepoint(storage: Storage) -> None:
    def outer(conn: sqlite3.Connection) -> None:
        _insert(conn, "kept", "1")
        with pytest.raises(KeyError), transaction(conn):
            _insert(conn, "undone", "2")
            raise KeyError("inner fails")

    await storage.write(outer, storage.writer)
    keys = [row[0] for row in peek(storage.path, "SELECT key FROM station_state")]
    assert keys == ["kept"]


async def test_a_cancelled_caller_still_waits_for_its_write(storage: Storage) -> None:
    """The write was handed over and may be committing: the caller learns its outcome even when cancelled."""
    release = threading.Event()
    returned = False

    def slow(conn: sqlite3.Connection) -> None:
        release.wait(5)
        _insert(conn, "late", "1")

    async with trio.open_nursery() as nursery:

        async def caller(task_status: trio.TaskStatus[trio.CancelScope]) -> None:
            nonlocal returned
            with trio.CancelScope() as scope:
                task_status.started(scope)
                await storage.write(slow, storage.writer)
                returned = True  # no checkpoint between the write's return and here

        scope = await nursery.start(caller)
        scope.cancel()
        await trio.sleep(0.05)
        assert not returned  # still waiting for the worker, cancelled or not
        threading.Timer(0.05, release.set).start()
    assert returned
    assert peek(storage.path, "SELECT value FROM station_state WHERE key = 'late'") == [("1",)]


async def test_the_event_loop_runs_while_a_write_waits_for_a_lock(tmp_path: Path) -> None:
    """Another connection holds the write lock: the write waits on the worker, the Trio loop keeps ticking."""
    storage = await Storage.open(tmp_path)
    other = sqlite3.connect(tmp_path / DB_NAME, isolation_level=None)
    other.execute("BEGIN IMMEDIATE")
    ticks = 0
    try:
        async with trio.open_nursery() as nursery:

            async def write() -> None:
                await storage.write(_insert, storage.writer, "k", "v")
                nursery.cancel_scope.cancel()

            nursery.start_soon(write)
            for _ in range(20):
                await trio.sleep(0.01)
                ticks += 1
            other.execute("COMMIT")
            await trio.sleep_forever()
    finally:
        other.close()
        storage.close()
    assert ticks == 20  # the loop ran all through the wait
    check = sqlite3.connect(tmp_path / DB_NAME)
    assert check.execute("SELECT value FROM station_state").fetchone() == ("v",)
    check.close()


async def test_disk_full_is_told_by_the_error_code(tmp_path: Path) -> None:
    conn = open_station_db(tmp_path)
    pages = conn.execute("PRAGMA page_count").fetchone()[0]
    conn.execute(f"PRAGMA max_page_count = {pages}")
    with pytest.raises(sqlite3.Error) as full:
        conn.execute("INSERT INTO station_state (key, value, updated_at) VALUES ('big', ?, 'now')", ("x" * 100_000,))
    conn.close()
    assert is_disk_full(full.value)
    assert not is_disk_full(sqlite3.OperationalError("database or disk is full"))  # the text alone is not enough
    assert not is_disk_full(ValueError("full"))


async def test_after_close_a_write_fails_clearly(tmp_path: Path) -> None:
    storage = await Storage.open(tmp_path)
    storage.close()
    with pytest.raises(StorageClosed):
        await storage.run(lambda: None)


async def test_storages_sharing_a_worker_keep_their_own_order_and_close_alone(tmp_path: Path) -> None:
    worker = StorageWorker("shared-writer")
    worker.start()
    try:
        first = await Storage.open(tmp_path / "a", worker)
        second = await Storage.open(tmp_path / "b", worker)
        names: set[str] = set()

        def put(storage: Storage, key: str) -> None:
            names.add(threading.current_thread().name)
            _insert(storage.writer, key, storage.path.parent.name)

        async with trio.open_nursery() as nursery:
            for i in range(20):
                nursery.start_soon(first.write, put, first, f"k{i}")
                nursery.start_soon(second.write, put, second, f"k{i}")
        assert names == {"shared-writer"}
        first.close()
        with pytest.raises(StorageClosed):  # closed, although the shared thread still runs
            await first.run(lambda: None)
        await second.write(put, second, "after")  # the other station goes on
        assert peek(second.path, "SELECT count(*) FROM station_state WHERE value = 'b'") == [(21,)]
        second.close()
        assert worker.alive  # the pool's owner stops it, not a station
    finally:
        worker.stop()
    assert not worker.alive


async def test_state_store_writes_through_and_reloads(tmp_path: Path) -> None:
    storage = await Storage.open(tmp_path)
    state = await StateStore.open(storage)
    await state.put("clock_offset", "1.5")
    await state.put("gone", "x")
    await state.put("gone", None)
    assert state.get("clock_offset") == "1.5" and state.get("gone") is None
    storage.close()
    storage = await Storage.open(tmp_path)
    reopened = await StateStore.open(storage)
    assert reopened.get("clock_offset") == "1.5" and reopened.get("gone") is None
    storage.close()


async def test_profiles_and_authorization_data_load_through_the_worker(tmp_path: Path) -> None:
    """The charging profiles and the authorization data are read at every boot, as jobs, and looked up in memory
    afterwards."""
    storage = await Storage.open(tmp_path)
    try:
        await ProfileStore(storage).load()
        local_list = LocalList(storage)
        await local_list.load()
        assert local_list.version() == 0
    finally:
        storage.close()
