"""Read-only queries over the journal, as plain dicts with the CONTRACT's camelCase keys.

These back `appliance-journal` and are reusable by tests and the torture harness. They never write: the
connection comes from `db.open_read_only` and the station may be appending while we read. Several SELECTs
that must agree with each other (summary, verify) run inside `snapshot()`, one WAL read transaction, so a
commit landing between two statements cannot make the numbers contradict each other.

Field names are a stable interface (CONTRACT `appliance-journal`): fields may be added, never renamed.
"""

from __future__ import annotations

import contextlib
import json
import sqlite3
from collections.abc import Iterator
from datetime import UTC, datetime
from typing import Any

_EVENT_COLUMNS = (
    "id, message_id, action, transaction_id, seq_no, event_type, trigger_reason, offline, created_at,"
    " delivered_at, attempts, outcome, last_error, payload"
)


@contextlib.contextmanager
def snapshot(conn: sqlite3.Connection) -> Iterator[sqlite3.Connection]:
    """Run the enclosed reads against one consistent snapshot (a deferred read transaction).

    In WAL mode a reader's transaction never blocks the station's writer; it only pins the WAL until we are
    done, which is a few milliseconds. Re-entrant: inside an open transaction it just reuses it.
    """
    if conn.in_transaction:
        yield conn
        return
    conn.execute("BEGIN")
    try:
        yield conn
    finally:
        conn.execute("ROLLBACK")


def parse_time(text: str) -> datetime:
    """An ISO 8601 instant as an aware UTC datetime; a time without an offset is taken as UTC.

    Comparing parsed instants (not strings) keeps `--since` and the verifier right even if some writer stores
    a different number of fractional digits or an offset instead of `Z`.
    """
    value = datetime.fromisoformat(text.strip())
    if value.tzinfo is None:
        value = value.replace(tzinfo=UTC)
    return value.astimezone(UTC)


def _load_json(text: str | None) -> Any:
    if text is None:
        return None
    try:
        return json.loads(text)
    except (TypeError, ValueError):
        return None


def _event(row: tuple) -> dict[str, Any]:
    (row_id, message_id, action, tx_id, seq_no, event_type, trigger, offline, created, delivered, attempts,
     outcome, last_error, payload_text) = row
    payload = _load_json(payload_text)
    event: dict[str, Any] = {
        "id": row_id,
        "action": action,
        "messageId": message_id,
        "transactionId": tx_id,
        "seqNo": seq_no,
        "eventType": event_type,
        "triggerReason": trigger,
        "offline": bool(offline),
        "createdAt": created,
        "deliveredAt": delivered,
        "attempts": attempts,
        "outcome": outcome,
        "lastError": last_error,
        "payload": payload if isinstance(payload, dict) else None,
    }
    if not isinstance(payload, dict):
        # Keep the evidence: the verifier reports it, and people can see what is actually stored.
        event["payloadText"] = payload_text
    return event


def iter_events(
    conn: sqlite3.Connection,
    *,
    transaction_id: str | None = None,
    pending: bool = False,
    since: datetime | None = None,
) -> Iterator[dict[str, Any]]:
    """Journaled outbound messages in journal order (outbox id), streamed so a big export stays small.

    `since` keeps messages created at or after that instant; rows whose createdAt cannot be parsed are kept
    (hiding them would hide exactly the rows someone is looking for).
    """
    where, args = [], []
    if transaction_id is not None:
        where.append("transaction_id = ?")
        args.append(transaction_id)
    if pending:
        where.append("outcome IS NULL")
    sql = f"SELECT {_EVENT_COLUMNS} FROM outbox"
    if where:
        sql += " WHERE " + " AND ".join(where)
    sql += " ORDER BY id"
    for row in conn.execute(sql, args):
        event = _event(row)
        if since is not None:
            try:
                if parse_time(event["createdAt"]) < since:
                    continue
            except (TypeError, ValueError):
                pass
        yield event


def events(conn: sqlite3.Connection, **filters: Any) -> list[dict[str, Any]]:
    """`iter_events` as a list (see there for the filters)."""
    with snapshot(conn):
        return list(iter_events(conn, **filters))


def _id_token(text: str | None) -> tuple[str | None, str | None]:
    """(idToken string, type) from the stored IdTokenType JSON; a non-JSON value is shown as it is."""
    if text is None:
        return None, None
    value = _load_json(text)
    if isinstance(value, dict):
        token = value.get("idToken")
        return (str(token) if token is not None else None), value.get("type")
    return text, None


def transactions(conn: sqlite3.Connection, *, open_only: bool = False) -> list[dict[str, Any]]:
    """One dict per transactions row, oldest first, with its message counts."""
    sql = (
        "SELECT t.transaction_id, t.evse_id, t.connector_id, t.id_token, t.remote_start_id, t.started_at,"
        " t.ended_at, t.stopped_reason, t.meter_start_wh, t.meter_last_wh, t.next_seq_no, t.state,"
        " (SELECT count(*) FROM outbox o WHERE o.transaction_id = t.transaction_id),"
        " (SELECT count(*) FROM outbox o WHERE o.transaction_id = t.transaction_id AND o.outcome IS NULL)"
        " FROM transactions t"
    )
    if open_only:
        sql += " WHERE t.state = 'open'"
    sql += " ORDER BY t.started_at, t.rowid"
    result = []
    with snapshot(conn):
        rows = conn.execute(sql).fetchall()
    for (tx_id, evse_id, connector_id, id_token, remote_start_id, started, ended, stopped, start_wh, last_wh,
         next_seq_no, state, n_events, n_pending) in rows:
        token, token_type = _id_token(id_token)
        energy = None
        if start_wh is not None and last_wh is not None:
            energy = round(last_wh - start_wh, 3)
        result.append({
            "transactionId": tx_id,
            "evseId": evse_id,
            "connectorId": connector_id,
            "idToken": token,
            "idTokenType": token_type,
            "remoteStartId": remote_start_id,
            "startedAt": started,
            "endedAt": ended,
            "stoppedReason": stopped,
            "energyWh": energy,
            "meterStartWh": start_wh,
            "meterLastWh": last_wh,
            "state": state,
            "nextSeqNo": next_seq_no,
            "events": n_events,
            "pending": n_pending,
        })
    return result


def summary(conn: sqlite3.Connection) -> dict[str, Any]:
    """The journal at a glance: transaction counts, message counts, the backlog and open transactions."""
    with snapshot(conn):
        counts = dict(conn.execute("SELECT state, count(*) FROM transactions GROUP BY state").fetchall())
        messages, pending, delivered, dropped = conn.execute(
            "SELECT count(*), count(*) FILTER (WHERE outcome IS NULL),"
            " count(*) FILTER (WHERE outcome = 'delivered'), count(*) FILTER (WHERE outcome = 'dropped')"
            " FROM outbox"
        ).fetchone()
        oldest = conn.execute(
            "SELECT created_at FROM outbox WHERE outcome IS NULL ORDER BY id LIMIT 1"
        ).fetchone()
        open_rows = conn.execute(
            "SELECT t.transaction_id, t.evse_id, t.next_seq_no, t.started_at,"
            " (SELECT max(seq_no) FROM outbox o WHERE o.transaction_id = t.transaction_id),"
            " (SELECT count(*) FROM outbox o WHERE o.transaction_id = t.transaction_id AND o.outcome IS NULL)"
            " FROM transactions t WHERE t.state = 'open' ORDER BY t.started_at, t.rowid"
        ).fetchall()
    open_transactions = []
    for tx_id, evse_id, next_seq_no, started, max_seq, tx_pending in open_rows:
        # next_seq_no is the allocator, so it is authoritative; the outbox max is the fallback.
        last = next_seq_no - 1 if next_seq_no else max_seq
        open_transactions.append({
            "transactionId": tx_id, "evseId": evse_id, "lastSeqNo": last, "startedAt": started,
            "pending": tx_pending,
        })
    return {
        "transactions": {"open": counts.get("open", 0), "ended": counts.get("ended", 0)},
        "messages": messages,
        "pending": pending,
        "delivered": delivered,
        "dropped": dropped,
        "oldestPendingAt": oldest[0] if oldest else None,
        "openTransactions": open_transactions,
    }


def quick_check(conn: sqlite3.Connection, limit: int = 20) -> list[str]:
    """SQLite's own structural check, one problem per line (at most `limit`); empty when the file is sound."""
    rows = [r[0] for r in conn.execute(f"PRAGMA quick_check({int(limit)})").fetchall()]
    if rows == ["ok"]:
        return []
    lines = [line for row in rows for line in str(row).splitlines()]
    return [line for line in lines if line.strip() and not line.startswith("*** in database")]
