"""Read-only queries over the journal, as plain dicts with the CONTRACT's camelCase keys.

These back `appliance-journal` and are reusable by tests and the torture harness. They never write: the
connection comes from `db.open_read_only` and the station may be appending while we read. Several SELECTs
that must agree with each other (summary, verify) run inside `snapshot()`, one WAL read transaction, so a
commit landing between two statements cannot make the numbers contradict each other.

The reads go through sqlite-utils (`sqlite_utils.Database` over the given connection): rows come back as
dicts keyed by column name, so a column added by a migration cannot shift a tuple, and `schema_problems`
introspects the tables before anything relies on them. The station's write path stays on plain sqlite3.

Field names are a stable interface (CONTRACT `appliance-journal`): fields may be added, never renamed.
"""

from __future__ import annotations

import contextlib
import json
import sqlite3
from collections.abc import Iterator
from datetime import datetime
from typing import Any

from sqlite_utils import Database

from appliance.journal.store import last_register_wh
from appliance.timetext import parse_iso

#: The columns these queries read, per table; `schema_problems` reports any a journal lacks.
READ_COLUMNS = {
    "outbox": (
        "id",
        "message_id",
        "action",
        "transaction_id",
        "seq_no",
        "event_type",
        "trigger_reason",
        "offline",
        "created_at",
        "delivered_at",
        "attempts",
        "outcome",
        "last_error",
        "payload",
    ),
    "transactions": (
        "transaction_id",
        "evse_id",
        "connector_id",
        "id_token",
        "remote_start_id",
        "started_at",
        "ended_at",
        "stopped_reason",
        "meter_start_wh",
        "state",
    ),
}

Reader = sqlite3.Connection | Database


def database(conn: Reader) -> Database:
    """`conn` seen through sqlite-utils, leaving the connection's settings alone (it may be read-only)."""
    if isinstance(conn, Database):
        return conn
    return Database(conn, recursive_triggers=False, execute_plugins=False)


def schema_problems(conn: Reader) -> list[str]:
    """What the journal lacks for these queries (tables, columns); empty when every read will find its data.

    A journal cut short by an old firmware, a damaged schema or a half-restored backup then gets a sentence
    naming the table, not an SQLite "no such column" halfway through an export.
    """
    db = database(conn)
    tables = set(db.table_names())
    problems = []
    for table, wanted in READ_COLUMNS.items():
        if table not in tables:
            problems.append(f"no {table} table")
            continue
        missing = [c for c in wanted if c not in db[table].columns_dict]
        if missing:
            problems.append(f"the {table} table has no column {', '.join(missing)}")
    return problems


@contextlib.contextmanager
def snapshot(conn: Reader) -> Iterator[Database]:
    """Run the enclosed reads against one consistent snapshot (a deferred read transaction).

    In WAL mode a reader's transaction never blocks the station's writer; it only pins the WAL until we are
    done, which is a few milliseconds. Re-entrant: inside an open transaction it just reuses it.
    """
    db = database(conn)
    if db.conn.in_transaction:
        yield db
        return
    db.conn.execute("BEGIN")
    try:
        yield db
    finally:
        db.conn.execute("ROLLBACK")


def _load_json(text: str | None) -> Any:
    if text is None:
        return None
    try:
        return json.loads(text)
    except (TypeError, ValueError):
        return None


def _event(row: dict[str, Any]) -> dict[str, Any]:
    payload_text = row["payload"]
    payload = _load_json(payload_text)
    event: dict[str, Any] = {
        "id": row["id"],
        "action": row["action"],
        "messageId": row["message_id"],
        "transactionId": row["transaction_id"],
        "seqNo": row["seq_no"],
        "eventType": row["event_type"],
        "triggerReason": row["trigger_reason"],
        "offline": bool(row["offline"]),
        "createdAt": row["created_at"],
        "deliveredAt": row["delivered_at"],
        "attempts": row["attempts"],
        "outcome": row["outcome"],
        "lastError": row["last_error"],
        "payload": payload if isinstance(payload, dict) else None,
    }
    if not isinstance(payload, dict):
        # Keep the evidence: the verifier reports it, and people can see what is actually stored.
        event["payloadText"] = payload_text
    return event


def iter_events(
    conn: Reader,
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
    rows = database(conn)["outbox"].rows_where(
        " AND ".join(where) or None, args, order_by="id", select=", ".join(READ_COLUMNS["outbox"])
    )
    for row in rows:
        event = _event(row)
        if since is not None:
            try:
                if parse_iso(event["createdAt"]) < since:
                    continue
            except (TypeError, ValueError):
                pass
        yield event


def events(conn: Reader, **filters: Any) -> list[dict[str, Any]]:
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


def transactions(conn: Reader, *, open_only: bool = False) -> list[dict[str, Any]]:
    """One dict per transactions row, oldest first, with its message counts."""
    columns = ", ".join(f"t.{c}" for c in READ_COLUMNS["transactions"])
    sql = (
        f"SELECT {columns},"
        " (SELECT count(*) FROM outbox o WHERE o.transaction_id = t.transaction_id) AS n_events,"
        " (SELECT count(*) FROM outbox o WHERE o.transaction_id = t.transaction_id AND o.outcome IS NULL)"
        " AS n_pending,"
        " (SELECT max(seq_no) FROM outbox o WHERE o.transaction_id = t.transaction_id) AS max_seq"
        " FROM transactions t"
    )
    if open_only:
        sql += " WHERE t.state = 'open'"
    sql += " ORDER BY t.started_at, t.rowid"
    result = []
    with snapshot(conn) as db:
        rows = [(row, last_register_wh(db.conn, row["transaction_id"])) for row in db.query(sql)]
    for row, last_wh in rows:
        token, token_type = _id_token(row["id_token"])
        start_wh = row["meter_start_wh"]
        energy = None
        if start_wh is not None and last_wh is not None:
            energy = round(last_wh - start_wh, 3)
        result.append(
            {
                "transactionId": row["transaction_id"],
                "evseId": row["evse_id"],
                "connectorId": row["connector_id"],
                "idToken": token,
                "idTokenType": token_type,
                "remoteStartId": row["remote_start_id"],
                "startedAt": row["started_at"],
                "endedAt": row["ended_at"],
                "stoppedReason": row["stopped_reason"],
                "energyWh": energy,
                "meterStartWh": start_wh,
                "meterLastWh": last_wh,
                "state": row["state"],
                "nextSeqNo": 0 if row["max_seq"] is None else row["max_seq"] + 1,
                "events": row["n_events"],
                "pending": row["n_pending"],
            }
        )
    return result


def summary(conn: Reader) -> dict[str, Any]:
    """The journal at a glance: transaction counts, message counts, the backlog and open transactions."""
    with snapshot(conn) as db:
        counts = {r["state"]: r["n"] for r in db.query("SELECT state, count(*) AS n FROM transactions GROUP BY state")}
        totals = next(
            db.query(
                "SELECT count(*) AS messages, count(*) FILTER (WHERE outcome IS NULL) AS pending,"
                " count(*) FILTER (WHERE outcome = 'delivered') AS delivered,"
                " count(*) FILTER (WHERE outcome = 'dropped') AS dropped FROM outbox"
            )
        )
        oldest = next(db["outbox"].rows_where("outcome IS NULL", order_by="id", select="created_at", limit=1), None)
        open_rows = list(
            db.query(
                "SELECT t.transaction_id, t.evse_id, t.started_at,"
                " (SELECT max(seq_no) FROM outbox o WHERE o.transaction_id = t.transaction_id) AS max_seq,"
                " (SELECT count(*) FROM outbox o WHERE o.transaction_id = t.transaction_id AND o.outcome IS NULL)"
                " AS pending FROM transactions t WHERE t.state = 'open' ORDER BY t.started_at, t.rowid"
            )
        )
    open_transactions = []
    for row in open_rows:
        open_transactions.append(
            {
                "transactionId": row["transaction_id"],
                "evseId": row["evse_id"],
                "lastSeqNo": row["max_seq"],
                "startedAt": row["started_at"],
                "pending": row["pending"],
            }
        )
    return {
        "transactions": {"open": counts.get("open", 0), "ended": counts.get("ended", 0)},
        **totals,
        "oldestPendingAt": oldest["created_at"] if oldest else None,
        "openTransactions": open_transactions,
    }


def quick_check(conn: Reader, limit: int = 20) -> list[str]:
    """SQLite's own structural check, one problem per line (at most `limit`); empty when the file is sound."""
    rows = [r[0] for r in database(conn).execute(f"PRAGMA quick_check({int(limit)})").fetchall()]
    if rows == ["ok"]:
        return []
    lines = [line for row in rows for line in str(row).splitlines()]
    return [line for line in lines if line.strip() and not line.startswith("*** in database")]
