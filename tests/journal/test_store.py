"""The journal's write path on a real SQLite file: seqNo allocation, closing, ordering, pruning."""

from __future__ import annotations

import sqlite3
from pathlib import Path

import pytest

from appliance.journal import store as store_module
from appliance.journal.store import Append, JournalStore, NewTransaction, Queued, last_register_wh
from appliance.storage.db import open_station_db


def tx_event(tx: str, event_type: str, ts: str, wh: float | None = None, **extra: object) -> dict:
    payload: dict = {
        "eventType": event_type,
        "timestamp": ts,
        "triggerReason": "Trigger",
        "seqNo": 0,
        "transactionInfo": {"transactionId": tx},
        **extra,
    }
    if wh is not None:
        payload["meterValue"] = [
            {
                "timestamp": ts,
                "sampledValue": [
                    {"value": wh, "measurand": "Energy.Active.Import.Register", "unitOfMeasure": {"unit": "Wh"}}
                ],
            }
        ]
    return payload


@pytest.fixture
def store(tmp_path: Path) -> JournalStore:
    return JournalStore(open_station_db(tmp_path))


def start(store: JournalStore, tx: str, ts: str = "2026-01-01T00:00:00.000Z") -> dict:
    return store.append_batch(
        [Append("TransactionEvent", tx_event(tx, "Started", ts, 1000.0), new_transaction=NewTransaction(tx, 1))]
    )[0]


def test_seq_no_allocated_in_order_and_closed(store: JournalStore) -> None:
    assert start(store, "t1")["seqNo"] == 0
    stored = store.append_batch(
        [
            Append("TransactionEvent", tx_event("t1", "Updated", "2026-01-01T00:01:00.000Z", 1500.0)),
            Append("TransactionEvent", tx_event("t1", "Ended", "2026-01-01T00:02:00.000Z", 2000.0)),
        ]
    )
    assert [p["seqNo"] for p in stored] == [1, 2]
    assert store.transaction_state("t1") == "ended"
    row = store.conn.execute("SELECT meter_start_wh, stopped_reason FROM transactions").fetchone()
    assert row == (1000.0, "Local")
    assert last_register_wh(store.conn, "t1") == 2000.0
    with pytest.raises(ValueError, match="not open"):
        store.append_batch([Append("TransactionEvent", tx_event("t1", "Updated", "2026-01-01T00:03:00.000Z"))])
    assert store.pending_count() == 3  # the failed batch left nothing behind


def test_failed_batch_rolls_back_whole(store: JournalStore) -> None:
    start(store, "t1")
    with pytest.raises(ValueError):
        store.append_batch(
            [
                Append("TransactionEvent", tx_event("t1", "Updated", "2026-01-01T00:01:00.000Z")),
                Append("TransactionEvent", tx_event("nope", "Updated", "2026-01-01T00:01:00.000Z")),
            ]
        )
    assert store.pending_count() == 1
    # What the rolled-back batch appended to t1 was not remembered either: the next message is seqNo 1.
    assert (
        store.append_batch([Append("TransactionEvent", tx_event("t1", "Updated", "2026-01-01T00:02:00.000Z"))])[0][
            "seqNo"
        ]
        == 1
    )


def test_timestamps_never_go_back_within_a_transaction(store: JournalStore) -> None:
    start(store, "t1", "2026-01-01T00:10:00.000Z")
    stored = store.append_batch([Append("TransactionEvent", tx_event("t1", "Updated", "2026-01-01T00:05:00.000Z"))])
    assert stored[0]["timestamp"] == "2026-01-01T00:10:00.000Z"


def next_pending(store: JournalStore) -> Queued | None:
    page = store.pending_page(0, 1)
    return page[0] if page else None


def test_delivery_marks_and_order(store: JournalStore) -> None:
    start(store, "t1")
    store.append_batch([Append("MeterValues", {"evseId": 1, "meterValue": []})])
    first = next_pending(store)
    assert first is not None and first.seq_no == 0
    assert store.record_failure(first.id, "boom") == 1
    store.mark_delivered(first.id)
    second = next_pending(store)
    assert second is not None and second.action == "MeterValues"
    store.mark_dropped(second.id)
    assert next_pending(store) is None


def test_prune_keeps_pending_and_open(store: JournalStore) -> None:
    start(store, "open")
    start(store, "done")
    store.append_batch([Append("TransactionEvent", tx_event("done", "Ended", "2026-01-01T00:02:00.000Z"))])
    for row_id, tx in store.conn.execute("SELECT id, transaction_id FROM outbox").fetchall():
        if tx == "done":
            store.mark_delivered(row_id)
    removed = store.prune(keep_rows=0, older_than="2999-01-01T00:00:00.000Z")
    assert removed == 2
    assert store.transaction_state("done") is None  # forgotten entirely
    assert store.transaction_state("open") == "open"
    assert store.pending_count() == 1


def test_unique_seq_no_enforced(store: JournalStore) -> None:
    start(store, "t1")
    with pytest.raises(sqlite3.IntegrityError):
        store.conn.execute(
            "INSERT INTO outbox (message_id, action, transaction_id, seq_no, payload, created_at)"
            " VALUES ('x', 'TransactionEvent', 't1', 0, '{}', 'now')"
        )


async def test_full_disk_is_reported_and_leaves_the_file_intact(tmp_path: Path) -> None:
    """SQLITE_FULL (here: max_page_count reached) surfaces as JournalFull; acknowledged data stays."""

    from appliance.journal.journal import Journal, JournalFull
    from appliance.storage import Storage
    from appliance.storage.db import DB_NAME

    conn = open_station_db(tmp_path)
    storage = Storage(conn, tmp_path / DB_NAME)
    storage.start()
    journal = Journal(storage)
    first = await journal.append(
        Append(
            "TransactionEvent",
            tx_event("t1", "Started", "2026-01-01T00:00:00.000Z"),
            new_transaction=NewTransaction("t1", 1),
        )
    )
    pages = conn.execute("PRAGMA page_count").fetchone()[0]
    conn.execute(f"PRAGMA max_page_count = {pages}")
    big = tx_event("t1", "Updated", "2026-01-01T00:01:00.000Z")
    big["transactionInfo"]["chargingState"] = "Charging"
    big["customData"] = {"vendorId": "x", "blob": "y" * 200_000}
    with pytest.raises(JournalFull):
        await journal.append(Append("TransactionEvent", big))
    assert first["seqNo"] == 0
    assert conn.execute("PRAGMA integrity_check").fetchone()[0] == "ok"
    assert JournalStore(conn).pending_count() == 1
    conn.execute("PRAGMA max_page_count = 1000000")  # room again: the refused message left no seqNo behind
    again = await journal.append(Append("TransactionEvent", tx_event("t1", "Updated", "2026-01-01T00:02:00.000Z")))
    assert again["seqNo"] == 1
    storage.close()


def test_seq_no_and_timestamp_continue_from_the_journal_after_a_restart(store: JournalStore) -> None:
    """A new store (a restart: nothing in memory) takes the next seqNo and the last timestamp from the outbox."""
    start(store, "t1", "2026-01-01T00:10:00.000Z")
    store.append_batch([Append("TransactionEvent", tx_event("t1", "Updated", "2026-01-01T00:20:00.000Z"))])
    restarted = JournalStore(store.conn)
    [stored] = restarted.append_batch(
        [Append("TransactionEvent", tx_event("t1", "Updated", "2026-01-01T00:15:00.000Z"))]  # clock went back
    )
    assert (stored["seqNo"], stored["timestamp"]) == (2, "2026-01-01T00:20:00.000Z")


def test_memory_dropped_past_its_bound_is_read_back(store: JournalStore, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(store_module, "_LAST_KEPT", 1)  # every batch with two transactions overflows it
    start(store, "a")
    start(store, "b")
    for minute in range(1, 4):
        stored = store.append_batch(
            [
                Append("TransactionEvent", tx_event(tx, "Updated", f"2026-01-01T00:0{minute}:00.000Z"))
                for tx in ("a", "b")
            ]
        )
        assert [p["seqNo"] for p in stored] == [minute, minute]


def test_first_id_token_is_kept_once(store: JournalStore) -> None:
    """A transaction started without an idToken (EV plugged in first) takes the first one a message carries; a
    later one (another card) does not replace it, in memory or after a restart."""
    first, second = {"idToken": "A1", "type": "ISO14443"}, {"idToken": "B2", "type": "ISO14443"}

    def token_of(tx: str) -> object:
        return store.conn.execute("SELECT id_token FROM transactions WHERE transaction_id = ?", (tx,)).fetchone()[0]

    start(store, "t1")
    assert token_of("t1") is None
    store.append_batch([Append("TransactionEvent", tx_event("t1", "Updated", "2026-01-01T00:01:00.000Z"))])
    assert token_of("t1") is None
    store.append_batch(
        [Append("TransactionEvent", tx_event("t1", "Updated", "2026-01-01T00:02:00.000Z", idToken=first))]
    )
    assert token_of("t1") == '{"idToken": "A1", "type": "ISO14443"}'
    store.append_batch(
        [Append("TransactionEvent", tx_event("t1", "Updated", "2026-01-01T00:03:00.000Z", idToken=second))]
    )
    JournalStore(store.conn).append_batch(
        [Append("TransactionEvent", tx_event("t1", "Updated", "2026-01-01T00:04:00.000Z", idToken=second))]
    )
    assert token_of("t1") == '{"idToken": "A1", "type": "ISO14443"}'
    start(store, "t2")  # and a restart before the first token still records it
    JournalStore(store.conn).append_batch(
        [Append("TransactionEvent", tx_event("t2", "Updated", "2026-01-01T00:01:00.000Z", idToken=second))]
    )
    assert token_of("t2") == '{"idToken": "B2", "type": "ISO14443"}'


def test_nothing_is_appended_after_ended_in_the_same_batch(store: JournalStore) -> None:
    start(store, "t1")
    with pytest.raises(ValueError, match="not open"):
        store.append_batch(
            [
                Append("TransactionEvent", tx_event("t1", "Ended", "2026-01-01T00:01:00.000Z")),
                Append("TransactionEvent", tx_event("t1", "Updated", "2026-01-01T00:02:00.000Z")),
            ]
        )
    assert store.transaction_state("t1") == "open" and store.pending_count() == 1


def test_a_started_event_opens_its_own_transaction_only(store: JournalStore) -> None:
    with pytest.raises(ValueError, match="cannot open transaction other"):
        store.append_batch(
            [
                Append(
                    "TransactionEvent",
                    tx_event("t1", "Started", "2026-01-01T00:00:00.000Z"),
                    new_transaction=NewTransaction("other", 1),
                )
            ]
        )
    assert store.transaction_state("other") is None and store.pending_count() == 0


def test_last_register_skips_messages_without_a_total_register(store: JournalStore) -> None:
    start(store, "t1")  # 1000 Wh
    assert last_register_wh(store.conn, "t1") == 1000.0
    phased = tx_event("t1", "Updated", "2026-01-01T00:01:00.000Z", 1500.0)
    phased["meterValue"][0]["sampledValue"][0]["phase"] = "L1"  # a per-phase register is not the total
    kwh = tx_event("t1", "Updated", "2026-01-01T00:02:00.000Z", 1.25)
    kwh["meterValue"][0]["sampledValue"][0]["unitOfMeasure"] = {"unit": "kWh"}
    store.append_batch([Append("TransactionEvent", kwh), Append("TransactionEvent", phased)])
    assert last_register_wh(store.conn, "t1") == 1250.0
    store.conn.execute(  # damaged by hand: skipped here, named by verify
        "UPDATE outbox SET payload = 'Energy.Active.Import.Register {' WHERE seq_no = 1 AND transaction_id = 't1'"
    )
    assert last_register_wh(store.conn, "t1") == 1000.0
    assert last_register_wh(store.conn, "nope") is None
