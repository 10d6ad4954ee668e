"""The journal verifier: clean on a journal the store wrote, and each invariant caught when rows are corrupted.

Journals are real SQLite files written through `JournalStore` (migrations applied by `open_station_db`), then
corrupted by hand with SQL the way a bug or a bad disk would. `build_journal` is shared with test_cli.py.
"""

from __future__ import annotations

import copy
import sqlite3
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

from appliance.journal.store import Append, JournalStore, NewTransaction
from appliance.journal.verify import Violation, check_events, register_samples, verify
from appliance.storage.db import DB_NAME, open_read_only, open_station_db

T0 = datetime(2024, 5, 1, 10, 0, tzinfo=UTC)
REGISTER = "Energy.Active.Import.Register"
TOKEN = {"idToken": "04A1B2C3D4", "type": "ISO14443"}


def ts(minute: float) -> str:
    """A station timestamp `minute` minutes after T0, in the journal's format."""
    return (T0 + timedelta(minutes=minute)).strftime("%Y-%m-%dT%H:%M:%S.000Z")


def meter_value(minute: float, wh: float, context: str = "Sample.Periodic") -> dict:
    """A realistic MeterValueType: the total register plus power and per-phase readings (ignored by checks)."""
    return {
        "timestamp": ts(minute),
        "sampledValue": [
            {
                "value": wh,
                "context": context,
                "measurand": REGISTER,
                "location": "Outlet",
                "unitOfMeasure": {"unit": "Wh"},
            },
            {
                "value": 7200.0,
                "context": context,
                "measurand": "Power.Active.Import",
                "location": "Outlet",
                "unitOfMeasure": {"unit": "W"},
            },
            {"value": 10.0, "context": context, "measurand": REGISTER, "phase": "L1", "unitOfMeasure": {"unit": "Wh"}},
            {
                "value": 231.2,
                "context": context,
                "measurand": "Voltage",
                "phase": "L1-N",
                "unitOfMeasure": {"unit": "V"},
            },
        ],
    }


def tx_event(
    event_type: str,
    tx_id: str,
    minute: float,
    trigger: str,
    wh: float | None = None,
    *,
    evse: int = 1,
    offline: bool = False,
    charging: str = "Charging",
    **extra: object,
) -> dict:
    """A TransactionEvent payload as the station builds it (the journal fills in seqNo)."""
    payload: dict = {
        "eventType": event_type,
        "timestamp": ts(minute),
        "triggerReason": trigger,
        "seqNo": 0,
        "transactionInfo": {"transactionId": tx_id, "chargingState": charging},
        "evse": {"id": evse, "connectorId": 1},
    }
    if offline:
        payload["offline"] = True
    if wh is not None:
        context = {"Started": "Transaction.Begin", "Ended": "Transaction.End"}.get(event_type, "Sample.Periodic")
        payload["meterValue"] = [meter_value(minute, wh, context)]
    payload.update(extra)
    return payload


def build_journal(data_dir: Path) -> sqlite3.Connection:
    """A journal with one ended transaction (TX-A, EVSE 1), one open one (TX-B, EVSE 2) and loose messages.

    TX-A: Started 0 / Updated 1 / Updated 2 (offline) / Ended 3, all delivered; its Ended repeats the
    TxEnded readings, including the Transaction.Begin one, as a real station does. TX-B: Started 0 and
    Updated 1..3, seqNo 3 still pending. A StatusNotification delivered, a SecurityEventNotification dropped
    after failures. created_at is set to the payload time so `--since` is deterministic.
    Returns the station's (writer) connection, left open.
    """
    conn = open_station_db(data_dir)
    store = JournalStore(conn)
    ended = tx_event(
        "Ended",
        "TX-A",
        15,
        "EVCommunicationLost",
        3000,
        transactionInfo={"transactionId": "TX-A", "chargingState": "Idle", "stoppedReason": "EVDisconnected"},
    )
    ended["meterValue"] = [
        meter_value(0, 1000, "Transaction.Begin"),
        meter_value(5, 1500),
        meter_value(10, 2200),
        meter_value(15, 3000, "Transaction.End"),
    ]
    store.append_batch(
        [
            Append(
                "TransactionEvent",
                tx_event("Started", "TX-A", 0, "Authorized", 1000, idToken=TOKEN),
                new_transaction=NewTransaction("TX-A", 1, id_token=TOKEN),
            ),
            Append(
                "StatusNotification",
                {"timestamp": ts(0.5), "connectorStatus": "Occupied", "evseId": 1, "connectorId": 1},
            ),
        ]
    )
    store.append_batch([Append("TransactionEvent", tx_event("Updated", "TX-A", 5, "MeterValuePeriodic", 1500))])
    store.append_batch(
        [
            Append("TransactionEvent", tx_event("Updated", "TX-A", 10, "MeterValuePeriodic", 2200, offline=True)),
            Append("TransactionEvent", ended),
        ]
    )
    store.append_batch(
        [
            Append(
                "TransactionEvent",
                tx_event("Started", "TX-B", 20, "CablePluggedIn", 500, evse=2, charging="EVConnected"),
                new_transaction=NewTransaction("TX-B", 2),
            ),
            Append("SecurityEventNotification", {"type": "TamperDetectionActivated", "timestamp": ts(21)}),
        ]
    )
    store.append_batch(
        [
            Append(
                "TransactionEvent", tx_event("Updated", "TX-B", 25 + i * 5, "MeterValuePeriodic", 900 + i * 400, evse=2)
            )
            for i in range(3)
        ]
    )
    conn.execute("UPDATE outbox SET created_at = json_extract(payload, '$.timestamp')")
    ids = [r[0] for r in conn.execute("SELECT id FROM outbox ORDER BY id")]
    for row_id in ids[:6]:
        store.mark_delivered(row_id)
    security = conn.execute("SELECT id FROM outbox WHERE action = 'SecurityEventNotification'").fetchone()[0]
    store.record_failure(security, "CALLERROR InternalError")
    store.record_failure(security, "timeout")
    store.mark_dropped(security)
    for row_id in ids[7:9]:
        store.mark_delivered(row_id)
    return conn


@pytest.fixture
def journal(tmp_path: Path) -> Iterator[sqlite3.Connection]:
    conn = build_journal(tmp_path)
    yield conn
    conn.close()


def problems(tmp_path: Path) -> list[Violation]:
    ro = open_read_only(tmp_path / DB_NAME)
    try:
        return verify(ro)
    finally:
        ro.close()


def edit_payload(conn: sqlite3.Connection, tx_id: str, seq_no: int, path: str, value: object) -> None:
    """Corrupt one field of a stored payload (and keep the event_type column in step when it is eventType)."""
    conn.execute(
        "UPDATE outbox SET payload = json_set(payload, ?, ?) WHERE transaction_id = ? AND seq_no = ?",
        (path, value, tx_id, seq_no),
    )
    if path == "$.eventType":
        conn.execute("UPDATE outbox SET event_type = ? WHERE transaction_id = ? AND seq_no = ?", (value, tx_id, seq_no))


def test_clean_journal(journal: sqlite3.Connection, tmp_path: Path) -> None:
    assert problems(tmp_path) == []


CORRUPTIONS = {
    "gap": (["DELETE FROM outbox WHERE transaction_id = 'TX-B' AND seq_no = 1"], "TX-B", "gap: seqNo 1 missing"),
    "gap of several": (
        ["DELETE FROM outbox WHERE transaction_id = 'TX-B' AND seq_no IN (1, 2)"],
        "TX-B",
        "gap: seqNos 1..2 missing",
    ),
    "first rows of an open transaction gone": (
        ["DELETE FROM outbox WHERE transaction_id = 'TX-B' AND seq_no IN (0, 1)"],
        "TX-B",
        "seqNo 0 missing",
    ),
    "transaction row still open after Ended": (
        ["UPDATE transactions SET state = 'open' WHERE transaction_id = 'TX-A'"],
        "TX-A",
        "an Ended event is journaled but the transactions row is still open",
    ),
    "transaction row ended without Ended": (
        ["UPDATE transactions SET state = 'ended' WHERE transaction_id = 'TX-B'"],
        "TX-B",
        "the transactions row is ended but no Ended event is journaled",
    ),
    "open transaction without events": (
        ["DELETE FROM outbox WHERE transaction_id = 'TX-B'"],
        "TX-B",
        "open transaction without any journaled TransactionEvent",
    ),
    "orphan rows": (
        ["PRAGMA foreign_keys = OFF", "DELETE FROM transactions WHERE transaction_id = 'TX-B'"],
        "TX-B",
        "4 journaled TransactionEvent(s) but no transactions row",
    ),
    "column and payload disagree": (
        ["UPDATE outbox SET seq_no = 9 WHERE transaction_id = 'TX-B' AND seq_no = 3"],
        "TX-B",
        "outbox.seq_no is 9 but the payload says 3",
    ),
}


@pytest.mark.parametrize("name", list(CORRUPTIONS))
def test_sql_corruption_caught(name: str, journal: sqlite3.Connection, tmp_path: Path) -> None:
    statements, tx_id, expected = CORRUPTIONS[name]
    for sql in statements:
        journal.execute(sql)
    found = problems(tmp_path)
    assert any(v.transaction_id == tx_id and expected in v.problem for v in found), found


def test_repeat(journal: sqlite3.Connection, tmp_path: Path) -> None:
    # UNIQUE (transaction_id, seq_no) keeps the column unique, so a repeat can only hide in the payload.
    edit_payload(journal, "TX-B", 2, "$.seqNo", 1)
    texts = [v.problem for v in problems(tmp_path)]
    assert "seqNo 1 appears 2 times" in texts
    assert any("outbox.seq_no is 2 but the payload says 1" in t for t in texts)


def test_started_not_first(journal: sqlite3.Connection, tmp_path: Path) -> None:
    edit_payload(journal, "TX-B", 0, "$.eventType", "Updated")
    edit_payload(journal, "TX-B", 1, "$.eventType", "Started")
    texts = [v.problem for v in problems(tmp_path) if v.transaction_id == "TX-B"]
    assert texts == ["seqNo 0 is Updated, not Started", "Started at seqNo 1: only seqNo 0 may be Started"]


def test_two_ended(journal: sqlite3.Connection, tmp_path: Path) -> None:
    edit_payload(journal, "TX-A", 2, "$.eventType", "Ended")
    assert [(v.transaction_id, v.problem, v.seq_no) for v in problems(tmp_path)] == [
        ("TX-A", "Ended 2 times (seqNos 2, 3)", 3)
    ]


def test_event_after_ended(journal: sqlite3.Connection, tmp_path: Path) -> None:
    edit_payload(journal, "TX-A", 2, "$.eventType", "Ended")
    edit_payload(journal, "TX-A", 3, "$.eventType", "Updated")
    assert [v.problem for v in problems(tmp_path)] == ["events after Ended (seqNo 2): seqNos 3"]


def test_timestamp_goes_back(journal: sqlite3.Connection, tmp_path: Path) -> None:
    edit_payload(journal, "TX-A", 2, "$.timestamp", ts(1))
    found = problems(tmp_path)
    assert [(v.transaction_id, v.seq_no) for v in found] == [("TX-A", 2)]
    assert found[0].problem.startswith("timestamp goes back at seqNo 2")


def test_bad_timestamp(journal: sqlite3.Connection, tmp_path: Path) -> None:
    edit_payload(journal, "TX-B", 1, "$.timestamp", "yesterday")
    assert [v.problem for v in problems(tmp_path)] == ["seqNo 1: timestamp 'yesterday' is not ISO 8601"]


def test_energy_goes_back(journal: sqlite3.Connection, tmp_path: Path) -> None:
    edit_payload(journal, "TX-B", 2, "$.meterValue[0].sampledValue[0].value", 100)
    found = problems(tmp_path)
    assert [(v.transaction_id, v.seq_no) for v in found] == [("TX-B", 2)]
    assert "energy register goes back: 900 Wh" in found[0].problem and "then 100 Wh" in found[0].problem


def test_pruned_ended_transaction_is_fine(journal: sqlite3.Connection, tmp_path: Path) -> None:
    # The store's own prune works by whole transactions: what is left of TX-A is complete or nothing.
    JournalStore(journal).prune(keep_rows=0, older_than=ts(7))
    left = journal.execute("SELECT min(seq_no) FROM outbox WHERE transaction_id = 'TX-A'").fetchone()[0]
    assert left in (0, None)
    assert problems(tmp_path) == []
    # Everything of TX-A gone, and then its transactions row too.
    JournalStore(journal).prune(keep_rows=0, older_than=ts(100))
    assert journal.execute("SELECT count(*) FROM transactions WHERE transaction_id = 'TX-A'").fetchone()[0] == 0
    assert problems(tmp_path) == []


def test_hole_in_pruned_transaction_still_caught(journal: sqlite3.Connection, tmp_path: Path) -> None:
    journal.execute("DELETE FROM outbox WHERE transaction_id = 'TX-A' AND seq_no IN (0, 2)")
    assert [v.problem for v in problems(tmp_path)] == ["gap: seqNo 2 missing"]


def test_quick_check_reports_a_damaged_file(journal: sqlite3.Connection, tmp_path: Path) -> None:
    root = journal.execute("SELECT rootpage FROM sqlite_master WHERE name = 'outbox_pending'").fetchone()[0]
    page_size = journal.execute("PRAGMA page_size").fetchone()[0]
    journal.execute("PRAGMA wal_checkpoint(TRUNCATE)")
    journal.close()
    with (tmp_path / DB_NAME).open("r+b") as f:
        f.seek((root - 1) * page_size + 8)  # the cell pointer array of the index's leaf page
        f.write(b"\xff" * 16)
    found = problems(tmp_path)
    assert found and all(v.transaction_id is None for v in found[:1])
    assert found[0].problem.startswith("PRAGMA quick_check")


# --- the pure function, as a CSMS-side harness would use it --------------------------------------------------


def session(tx_id: str = "T1") -> list[dict]:
    """Bare payloads of a whole session with seqNos, as the CSMS receives them."""
    payloads = [
        tx_event("Started", tx_id, 0, "Authorized", 1000),
        tx_event("Updated", tx_id, 1, "MeterValuePeriodic", 1200),
        tx_event("Ended", tx_id, 2, "StopAuthorized", 1300),
    ]
    payloads[2]["meterValue"] = [meter_value(0, 1000, "Transaction.Begin"), meter_value(2, 1300, "Transaction.End")]
    for seq, payload in enumerate(payloads):
        payload["seqNo"] = seq
    return payloads


def test_bare_payloads_clean() -> None:
    mixed = [*session("T1"), {"action": "Heartbeat", "payload": {}}, *session("T2")]
    assert check_events(mixed) == []


def test_bare_payloads_must_start_at_zero() -> None:
    assert [v.problem for v in check_events(session()[1:])] == ["seqNo 0 missing: the first journaled seqNo is 1"]


def test_resends() -> None:
    events = session()
    events.insert(2, copy.deepcopy(events[1]))
    assert [v.problem for v in check_events(events)] == ["seqNo 1 appears 2 times"]
    assert check_events(events, allow_resends=True) == []
    events[2]["triggerReason"] = "Trigger"  # not identical: a real repeat even with resends allowed
    assert [v.problem for v in check_events(events, allow_resends=True)] == ["seqNo 1 appears 2 times"]


def test_malformed_events() -> None:
    broken = [
        {"action": "TransactionEvent", "messageId": "m1", "transactionId": "T9", "seqNo": 0, "payload": None},
        {"eventType": "Started", "timestamp": ts(0), "seqNo": 0, "transactionInfo": {}},
        {"eventType": "Started", "timestamp": ts(0), "transactionInfo": {"transactionId": "T8"}},
    ]
    assert [(v.transaction_id, v.problem) for v in check_events(broken)] == [
        (None, "TransactionEvent without a transactionId"),
        ("T9", "message m1: payload is not a JSON object"),
        ("T8", "TransactionEvent without an integer seqNo (None)"),
    ]


def test_register_samples_units_and_defaults() -> None:
    payload = {
        "meterValue": [
            {
                "timestamp": ts(0),
                "sampledValue": [
                    {"value": 1.5, "unitOfMeasure": {"unit": "kWh"}},  # measurand defaults to the register
                    {"value": 2, "measurand": REGISTER, "unitOfMeasure": {"unit": "Wh", "multiplier": 3}},
                    {"value": 7, "measurand": REGISTER, "phase": "L2"},  # a phase register: not the total
                    {"value": 9, "measurand": REGISTER, "location": "EV"},  # another meter
                    {"value": 5, "measurand": "Power.Active.Import"},
                ],
            }
        ]
    }
    assert list(register_samples(payload)) == [(ts(0), 1500.0), (ts(0), 2000.0)]


def test_energy_in_kwh_going_back() -> None:
    events = session()
    events[1]["meterValue"][0]["sampledValue"][0].update(value=0.9, unitOfMeasure={"unit": "kWh"})
    assert [v.seq_no for v in check_events(events)] == [1]
