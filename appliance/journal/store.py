"""The journal's SQL, synchronous and small: every write path is one explicit SQLite transaction.

Power-cut analysis of each write (a cut between any two statements rolls the open transaction back):

* append: `BEGIN IMMEDIATE` → (Started: INSERT transactions, the row born with what the event says) → (a
  transaction's first idToken, when it started without one, or its GroupId: UPDATE transactions) → (Ended:
  UPDATE transactions state) → INSERT outbox → COMMIT. All or nothing. A seqNo exists in one place only, the
  outbox row of its message: the next one is the newest row's + 1, so no allocator can disagree with the
  messages, and a cut can neither leave a gap nor repeat one (the UNIQUE (transaction_id, seq_no) index refuses
  a repeat outright). Most appends are that one INSERT: the newest row's seqNo and timestamp (which the next
  message must not precede) and whether the row has its idToken are remembered in memory, only after the
  commit returned, and read from the journal when unknown (after a restart). Memory that a cut wipes, never a
  second copy of durable state. The energy register is not repeated in the transactions row either: readers
  take it from the newest message that carries one (`last_register_wh`).
* delivered: one UPDATE per row, several rows per transaction (the delivery commits the marks of up to 100
  answered messages at once). A cut before that commit means those messages are sent again after the restart —
  the only way a duplicate can happen, and only for messages whose answer we had not yet recorded
  (at-least-once; the CSMS de-duplicates by transactionId + seqNo; the journal holds each message once).
* failed attempt / dropped: one UPDATE each; attempts survive a restart.
* a transaction's GroupId: with the event that carries its idToken (inside the append), or, when the CSMS names it
  in a TransactionEventResponse (C09.FR.03), one UPDATE after that answer — a cut just before it loses the GroupId
  of a transaction the restart ends anyway (PowerLoss).
* prune: one DELETE of delivered rows of ended transactions, oldest first.
"""

from __future__ import annotations

import json
import sqlite3
import time
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any, NamedTuple

from appliance.protocol import new_message_id
from appliance.storage.db import transaction
from appliance.timetext import format_timestamp, now_text


@dataclass(frozen=True)
class NewTransaction:
    """The row a Started event opens."""

    transaction_id: str
    evse_id: int
    connector_id: int = 1
    id_token: dict[str, Any] | None = None
    remote_start_id: int | None = None


@dataclass(frozen=True)
class Append:
    """One message to journal. For TransactionEvent the journal fills in `seqNo`."""

    action: str
    payload: dict[str, Any]
    new_transaction: NewTransaction | None = None
    transaction_id: str | None = None
    #: A TransactionEvent's transaction belongs to this GroupId (C09), kept with it in the same commit.
    group_id_token: dict[str, Any] | None = None


@dataclass(frozen=True)
class Queued:
    """A journaled message that still has to reach the CSMS."""

    id: int
    message_id: str
    action: str
    payload: dict[str, Any]
    transaction_id: str | None
    seq_no: int | None
    attempts: int
    #: `payload` exactly as journaled (compact JSON), for a sender that can put pre-serialised text on the wire.
    payload_text: str = ""


def _register_wh(payload: dict[str, Any]) -> float | None:
    """The last Energy.Active.Import.Register (total, in Wh) in a payload's meter values, if any."""
    found = None
    for meter_value in payload.get("meterValue", ()):
        for sample in meter_value.get("sampledValue", ()):
            if sample.get("measurand") == "Energy.Active.Import.Register" and "phase" not in sample:
                unit = sample.get("unitOfMeasure", {})
                scale = 1000.0 if unit.get("unit") == "kWh" else 1.0
                found = float(sample["value"]) * scale * 10 ** unit.get("multiplier", 0)
    return found


def last_register_wh(conn: sqlite3.Connection, transaction_id: str) -> float | None:
    """A transaction's last energy register (Wh), from its newest TransactionEvent that carries one.

    Read where it is shown (the journal CLI, customer information), not kept in the transactions row: a column
    there would cost every append one more UPDATE and one more page in its commit.
    """
    skip = 0
    while True:  # one row per query: almost always the newest such message is the answer
        row = conn.execute(
            "SELECT payload FROM outbox WHERE transaction_id = ? AND action = 'TransactionEvent'"
            " AND instr(payload, 'Energy.Active.Import.Register') ORDER BY seq_no DESC LIMIT 1 OFFSET ?",
            (transaction_id, skip),
        ).fetchone()
        if row is None:
            return None
        try:
            found = _register_wh(json.loads(row[0]))
        except (ValueError, TypeError, KeyError, AttributeError):  # a damaged message: `verify` names it
            found = None
        if found is not None:
            return found
        skip += 1


#: `json.dumps(obj, separators=(",", ":"))` without building an encoder per call (the same text).
_compact = json.JSONEncoder(separators=(",", ":")).encode


class _Stamp:
    """`now_text()` for created_at, formatted once per second instead of once per append."""

    __slots__ = ("prefix", "second")

    def __init__(self) -> None:
        self.second = -1
        self.prefix = ""

    def __call__(self) -> str:
        now = time.time()
        second = int(now)
        if second != self.second:
            self.second, self.prefix = second, format_timestamp(second)[:-5]  # "…T12:34:56"
        return f"{self.prefix}.{int((now - second) * 1000):03d}Z"


class _Last(NamedTuple):
    """An open transaction's newest journaled message, as the next append needs it."""

    seq_no: int  # -1: no message yet (the Started event being appended in this batch opens it)
    timestamp: str
    has_token: bool  # the transactions row holds an idToken (the first one a message carried stays)


#: What a batch remembers of a transaction it ended: nothing more may be appended to it.
_ENDED = _Last(-2, "", False)

#: Open transactions whose last message is remembered; past this (a leak, or a fleet of stations on one store)
#: the memory is dropped and refilled by reads.
_LAST_KEPT = 256


class JournalStore:
    """Synchronous access to the journal tables through one dedicated connection."""

    def __init__(self, conn: sqlite3.Connection) -> None:
        self.conn = conn
        #: transaction id -> its last message committed through this store (seqNo, timestamp, idToken known):
        #: the next append takes its seqNo and its timestamp check from it, without a statement.
        self._last: dict[str, _Last] = {}
        self._stamp = _Stamp()

    # --- writes -----------------------------------------------------------------------------------------

    def append_batch(self, items: Sequence[Append]) -> list[dict[str, Any]]:
        """Journal several messages in ONE transaction (group commit); return the payloads as stored."""
        seen: dict[str, _Last] = {}
        with transaction(self.conn):
            stored = [self._append_one(item, seen) for item in items]
        # Committed: what this batch wrote is now what the journal holds. (A rolled-back batch teaches nothing.)
        for tx_id, last in seen.items():
            if last is _ENDED:
                self._last.pop(tx_id, None)
            else:
                self._last[tx_id] = last
        if len(self._last) > _LAST_KEPT:
            self._last.clear()
        return stored

    def _append_one(self, item: Append, seen: dict[str, _Last]) -> dict[str, Any]:
        conn = self.conn
        payload = dict(item.payload)
        tx_id = item.transaction_id
        seq_no = None
        event_type = payload.get("eventType")
        if item.action == "TransactionEvent":
            tx_id = payload["transactionInfo"]["transactionId"]
            token = json.dumps(payload["idToken"]) if "idToken" in payload else None
            if item.new_transaction is not None:
                # Started: the row is born with everything the event says about it, and no message yet.
                t = item.new_transaction
                if t.transaction_id != tx_id:
                    raise ValueError(f"a Started event of {tx_id} cannot open transaction {t.transaction_id}")
                started_token = json.dumps(t.id_token) if t.id_token else token
                conn.execute(
                    "INSERT INTO transactions (transaction_id, evse_id, connector_id, id_token, remote_start_id,"
                    " started_at, meter_start_wh) VALUES (?, ?, ?, ?, ?, ?, ?)",
                    (
                        t.transaction_id,
                        t.evse_id,
                        t.connector_id,
                        started_token,
                        t.remote_start_id,
                        payload["timestamp"],
                        _register_wh(payload),
                    ),
                )
                last = _Last(-1, "", started_token is not None)
            else:
                last = seen.get(tx_id) or self._last.get(tx_id) or self._read_last(tx_id)
                if last is _ENDED:  # ended earlier in this batch
                    raise ValueError(f"transaction {tx_id} is not open in the journal")
            seq_no = last.seq_no + 1
            payload["seqNo"] = seq_no
            # Timestamps within a transaction never go backwards, even when the station clock is corrected
            # backwards by the CSMS or restarts before it has heard the CSMS's time again.
            if seq_no > 0 and last.timestamp > payload["timestamp"]:
                payload["timestamp"] = last.timestamp
            has_token = last.has_token
            if token is not None and not has_token:  # the first idToken of a transaction started without one
                conn.execute("UPDATE transactions SET id_token = ? WHERE transaction_id = ?", (token, tx_id))
                has_token = True
            if item.group_id_token is not None:
                self.set_group_id_token(tx_id, item.group_id_token)
            if event_type == "Ended":
                conn.execute(
                    "UPDATE transactions SET state = 'ended', ended_at = ?, stopped_reason = ?"
                    " WHERE transaction_id = ?",
                    (payload["timestamp"], payload["transactionInfo"].get("stoppedReason", "Local"), tx_id),
                )
                seen[tx_id] = _ENDED  # nothing more can be appended to it: forget it once committed
            else:
                seen[tx_id] = _Last(seq_no, payload["timestamp"], has_token)
        conn.execute(
            "INSERT INTO outbox (message_id, action, transaction_id, seq_no, event_type, trigger_reason, offline,"
            " payload, created_at) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?)",
            (
                new_message_id(),
                item.action,
                tx_id,
                seq_no,
                event_type,
                payload.get("triggerReason"),
                1 if payload.get("offline") else 0,
                _compact(payload),
                self._stamp(),
            ),
        )
        return payload

    def _read_last(self, tx_id: str) -> _Last:
        """What the next append to an open transaction needs, read from the journal (after a restart, or once
        the memory was dropped): its newest message's seqNo and timestamp, and whether it has an idToken."""
        row = self.conn.execute(
            "SELECT t.id_token IS NOT NULL, o.seq_no, json_extract(o.payload, '$.timestamp') FROM transactions t"
            " LEFT JOIN outbox o ON o.transaction_id = t.transaction_id"
            "  AND o.seq_no = (SELECT max(seq_no) FROM outbox WHERE transaction_id = t.transaction_id)"
            " WHERE t.transaction_id = ? AND t.state = 'open'",
            (tx_id,),
        ).fetchone()
        if row is None:
            raise ValueError(f"transaction {tx_id} is not open in the journal")
        has_token, seq_no, timestamp = row
        return _Last(-1 if seq_no is None else int(seq_no), timestamp or "", bool(has_token))

    def mark_delivered(self, row_id: int) -> None:
        self.conn.execute(
            "UPDATE outbox SET outcome = 'delivered', delivered_at = ? WHERE id = ? AND outcome IS NULL",
            (now_text(), row_id),
        )

    def mark_delivered_many(self, row_ids: Sequence[int]) -> None:
        """Several delivered marks in one transaction (one fsync)."""
        now = now_text()
        with transaction(self.conn):
            self.conn.executemany(
                "UPDATE outbox SET outcome = 'delivered', delivered_at = ? WHERE id = ? AND outcome IS NULL",
                [(now, row_id) for row_id in row_ids],
            )

    def record_failure(self, row_id: int, error: str) -> int:
        row = self.conn.execute(
            "UPDATE outbox SET attempts = attempts + 1, last_error = ? WHERE id = ? RETURNING attempts",
            (error[:500], row_id),
        ).fetchone()
        return int(row[0])

    def mark_dropped(self, row_id: int) -> None:
        self.conn.execute("UPDATE outbox SET outcome = 'dropped' WHERE id = ? AND outcome IS NULL", (row_id,))

    def set_group_id_token(self, transaction_id: str, group_id_token: dict[str, Any]) -> None:
        """The GroupId of an open transaction (one UPDATE; an ended transaction keeps the one it had)."""
        self.conn.execute(
            "UPDATE transactions SET group_id_token = ? WHERE transaction_id = ? AND state = 'open'",
            (json.dumps(group_id_token, separators=(",", ":")), transaction_id),
        )

    def add_tx_meter_value(self, transaction_id: str, meter_value: dict[str, Any]) -> None:
        self.conn.execute(
            "INSERT INTO tx_meter_values (transaction_id, meter_value) VALUES (?, ?)",
            (transaction_id, json.dumps(meter_value, separators=(",", ":"))),
        )

    def prune(self, *, keep_rows: int, older_than: str) -> int:
        """Forget finished history beyond the retention policy; return how many messages went.

        The unit is a whole ended transaction (all its messages delivered or dropped, ended before
        `older_than`), so what remains of a transaction is always complete from seqNo 0 to its Ended, and
        loose messages (MeterValues, security events) that are finished and older. The newest `keep_rows`
        finished messages are kept whatever their age. Pending messages and open transactions never go.
        """
        conn = self.conn
        with transaction(conn):
            conn.execute("CREATE TEMP TABLE IF NOT EXISTS prune_keep AS SELECT id FROM outbox WHERE 0")
            conn.execute("DELETE FROM prune_keep")
            conn.execute(
                "INSERT INTO prune_keep SELECT id FROM outbox WHERE outcome IS NOT NULL ORDER BY id DESC LIMIT ?",
                (keep_rows,),
            )
            doomed = (
                "SELECT t.transaction_id FROM transactions t WHERE t.state = 'ended' AND t.ended_at < ?"
                " AND NOT EXISTS (SELECT 1 FROM outbox o WHERE o.transaction_id = t.transaction_id"
                "   AND (o.outcome IS NULL OR o.id IN (SELECT id FROM prune_keep)))"
            )
            removed = conn.execute(f"DELETE FROM outbox WHERE transaction_id IN ({doomed})", (older_than,)).rowcount
            conn.execute(f"DELETE FROM tx_meter_values WHERE transaction_id IN ({doomed})", (older_than,))
            conn.execute(f"DELETE FROM transactions WHERE transaction_id IN ({doomed})", (older_than,))
            removed += conn.execute(
                "DELETE FROM outbox WHERE transaction_id IS NULL AND outcome IS NOT NULL AND created_at < ?"
                " AND id NOT IN (SELECT id FROM prune_keep)",
                (older_than,),
            ).rowcount
        return removed

    # --- reads ------------------------------------------------------------------------------------------

    def pending_page(self, after_id: int, limit: int) -> list[Queued]:
        """Pending messages in journal order, starting after `after_id`."""
        rows = self.conn.execute(
            "SELECT id, message_id, action, payload, transaction_id, seq_no, attempts FROM outbox"
            " WHERE outcome IS NULL AND id > ? ORDER BY id LIMIT ?",
            (after_id, limit),
        ).fetchall()
        return [Queued(r[0], r[1], r[2], json.loads(r[3]), r[4], r[5], r[6], r[3]) for r in rows]

    def pending_count(self, transaction_id: str | None = None) -> int:
        args: tuple[str, ...]
        if transaction_id is None:
            sql, args = "SELECT count(*) FROM outbox WHERE outcome IS NULL", ()
        else:
            sql, args = "SELECT count(*) FROM outbox WHERE outcome IS NULL AND transaction_id = ?", (transaction_id,)
        return int(self.conn.execute(sql, args).fetchone()[0])

    def open_transactions(self) -> list[dict[str, Any]]:
        rows = self.conn.execute(
            "SELECT transaction_id, evse_id, connector_id, id_token, remote_start_id, started_at, meter_start_wh,"
            " group_id_token FROM transactions WHERE state = 'open' ORDER BY started_at"
        ).fetchall()
        keys = (
            "transaction_id",
            "evse_id",
            "connector_id",
            "id_token",
            "remote_start_id",
            "started_at",
            "meter_start_wh",
            "group_id_token",
        )
        result = []
        for row in rows:
            item = dict(zip(keys, row, strict=True))
            for key in ("id_token", "group_id_token"):
                item[key] = json.loads(item[key]) if item[key] else None
            result.append(item)
        return result

    def transaction_state(self, transaction_id: str) -> str | None:
        row = self.conn.execute("SELECT state FROM transactions WHERE transaction_id = ?", (transaction_id,)).fetchone()
        return row[0] if row else None

    def tx_meter_values(self, transaction_id: str) -> list[dict[str, Any]]:
        rows = self.conn.execute(
            "SELECT meter_value FROM tx_meter_values WHERE transaction_id = ? ORDER BY id", (transaction_id,)
        ).fetchall()
        return [json.loads(r[0]) for r in rows]
