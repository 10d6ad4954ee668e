"""The journal's invariants, checked by a pure function so tests and the torture harness can reuse it.

What the CSMS may rely on (CONTRACT): per transaction, seqNo runs 0, 1, 2 … without gaps or repeats, Started
comes first, Ended comes last and once, timestamps and the energy register never go back. `check_events`
checks that over any iterable of events — outbox rows as `queries.iter_events` returns them, or the plain
TransactionEvent payloads a CSMS received — and `verify(conn)` runs it over a journal file, adding the checks
only the journal can answer (the tables and columns exist — introspected through sqlite-utils —, the
transactions row agrees with its events, SQLite's own quick_check).

Pruning (`JournalStore.prune`) deletes finished rows of ENDED transactions oldest first, and the transactions
row only once none of its rows are left. So an ended transaction may legitimately have lost a prefix of its
seqNos (never a hole in the middle, never its Ended), or all of them. An open transaction is never pruned and
must be complete from seqNo 0.
"""

from __future__ import annotations

import sqlite3
from collections.abc import Iterable, Iterator, Mapping
from dataclasses import dataclass
from datetime import datetime
from itertools import pairwise
from typing import Any

from appliance.journal.queries import (
    Reader,
    iter_events,
    quick_check,
    schema_problems,
    snapshot,
    transactions,
)
from appliance.timetext import parse_iso

REGISTER = "Energy.Active.Import.Register"
#: Float noise allowed when comparing register readings (Wh).
_EPSILON_WH = 1e-6


@dataclass(frozen=True)
class Violation:
    """One broken invariant; `transaction_id` is None for problems of the file as a whole."""

    transaction_id: str | None
    problem: str
    seq_no: int | None = None

    def to_dict(self) -> dict[str, Any]:
        return {"transactionId": self.transaction_id, "problem": self.problem, "seqNo": self.seq_no}


@dataclass(frozen=True)
class _Event:
    tx_id: str
    seq_no: int
    event_type: str | None
    timestamp: str | None
    payload: dict[str, Any]


def _fmt_wh(value: float) -> str:
    return f"{value:.3f}".rstrip("0").rstrip(".")


def _time(text: Any) -> datetime | None:
    if not isinstance(text, str):
        return None
    try:
        return parse_iso(text)
    except ValueError:
        return None


def register_samples(payload: Mapping[str, Any]) -> Iterator[tuple[str | None, float]]:
    """(meterValue timestamp, Wh) of every total import register reading in a payload, in payload order.

    Per OCPP 2.0.1 an absent measurand means Energy.Active.Import.Register and an absent unit means Wh.
    Per-phase readings and readings at another location than the outlet are different registers.
    """
    for meter_value in payload.get("meterValue") or ():
        if not isinstance(meter_value, dict):
            continue
        for sample in meter_value.get("sampledValue") or ():
            if not isinstance(sample, dict) or "phase" in sample:
                continue
            if sample.get("measurand", REGISTER) != REGISTER or sample.get("location", "Outlet") != "Outlet":
                continue
            unit = sample.get("unitOfMeasure") or {}
            scale = 1000.0 if unit.get("unit") == "kWh" else 1.0
            try:
                value = float(sample["value"]) * scale * 10 ** int(unit.get("multiplier", 0))
            except (KeyError, TypeError, ValueError):
                continue
            yield meter_value.get("timestamp"), value


def _normalise(raw: Mapping[str, Any], out: list[Violation]) -> _Event | None:
    """An event from an outbox row dict or a bare TransactionEvent payload; row-level problems go to `out`."""
    bare = "payload" not in raw
    if bare and "transactionInfo" not in raw:
        return None
    if not bare and raw.get("action", "TransactionEvent") != "TransactionEvent":
        return None
    payload = raw if bare else raw.get("payload")
    where = "" if bare else f"message {raw.get('messageId') or raw.get('id')}: "
    if not isinstance(payload, dict):
        out.append(Violation(raw.get("transactionId"), f"{where}payload is not a JSON object", raw.get("seqNo")))
        return None
    info = payload.get("transactionInfo")
    p_tx = info.get("transactionId") if isinstance(info, dict) else None
    p_seq, p_type = payload.get("seqNo"), payload.get("eventType")
    tx_id = p_tx if bare else raw.get("transactionId", p_tx)
    if not bare:
        for column, stored, sent in (
            ("transaction_id", tx_id, p_tx),
            ("seq_no", raw.get("seqNo", p_seq), p_seq),
            ("event_type", raw.get("eventType", p_type), p_type),
        ):
            if stored != sent:
                out.append(
                    Violation(
                        tx_id or p_tx,
                        f"{where}outbox.{column} is {stored!r} but the payload says {sent!r}",
                        p_seq if isinstance(p_seq, int) else None,
                    )
                )
    tx_id = tx_id or p_tx
    if not tx_id:
        out.append(Violation(None, f"{where}TransactionEvent without a transactionId"))
        return None
    if not isinstance(p_seq, int) or isinstance(p_seq, bool):
        out.append(Violation(tx_id, f"{where}TransactionEvent without an integer seqNo ({p_seq!r})"))
        return None
    return _Event(tx_id, p_seq, p_type, payload.get("timestamp"), payload)


def _check_sequence(
    tx_id: str, evs: list[_Event], *, prefix_may_be_pruned: bool, allow_resends: bool
) -> tuple[list[Violation], list[_Event]]:
    """seqNo 0,1,2… once each; returns the problems and one event per seqNo in seqNo order."""
    out: list[Violation] = []
    by_seq: dict[int, list[_Event]] = {}
    for ev in evs:
        by_seq.setdefault(ev.seq_no, []).append(ev)
    for seq, same in sorted(by_seq.items()):
        if len(same) > 1 and not (allow_resends and all(e.payload == same[0].payload for e in same)):
            out.append(Violation(tx_id, f"seqNo {seq} appears {len(same)} times", seq))
    seqs = sorted(by_seq)
    if seqs[0] < 0:
        out.append(Violation(tx_id, f"negative seqNo {seqs[0]}", seqs[0]))
    elif seqs[0] > 0 and not prefix_may_be_pruned:
        out.append(Violation(tx_id, f"seqNo 0 missing: the first journaled seqNo is {seqs[0]}", 0))
    for a, b in pairwise(seqs):
        if b - a == 2:
            out.append(Violation(tx_id, f"gap: seqNo {a + 1} missing", a + 1))
        elif b - a > 2:
            out.append(Violation(tx_id, f"gap: seqNos {a + 1}..{b - 1} missing", a + 1))
    return out, [by_seq[s][0] for s in seqs]


def _check_order(tx_id: str, ordered: list[_Event]) -> list[Violation]:
    """Started first, Ended once and last, timestamps and the energy register never going back."""
    out: list[Violation] = []
    for ev in ordered:
        if ev.seq_no == 0 and ev.event_type != "Started":
            out.append(Violation(tx_id, f"seqNo 0 is {ev.event_type}, not Started", 0))
        elif ev.seq_no != 0 and ev.event_type == "Started":
            out.append(Violation(tx_id, f"Started at seqNo {ev.seq_no}: only seqNo 0 may be Started", ev.seq_no))
    ended = [ev for ev in ordered if ev.event_type == "Ended"]
    if len(ended) > 1:
        seqs = ", ".join(str(ev.seq_no) for ev in ended)
        out.append(Violation(tx_id, f"Ended {len(ended)} times (seqNos {seqs})", ended[1].seq_no))
    if ended:
        after = [ev.seq_no for ev in ordered if ev.seq_no > ended[0].seq_no and ev.event_type != "Ended"]
        if after:
            listed = ", ".join(map(str, after))
            out.append(Violation(tx_id, f"events after Ended (seqNo {ended[0].seq_no}): seqNos {listed}", after[0]))

    previous: tuple[datetime, _Event] | None = None
    for ev in ordered:
        when = _time(ev.timestamp)
        if when is None:
            out.append(Violation(tx_id, f"seqNo {ev.seq_no}: timestamp {ev.timestamp!r} is not ISO 8601", ev.seq_no))
            continue
        if previous is not None and when < previous[0]:
            out.append(
                Violation(
                    tx_id,
                    f"timestamp goes back at seqNo {ev.seq_no}: {ev.timestamp} after "
                    f"{previous[1].timestamp} (seqNo {previous[1].seq_no})",
                    ev.seq_no,
                )
            )
        previous = (when, ev)

    # Readings are ordered by their own sample time: an Ended event legitimately repeats older readings
    # (TxEnded values, including the Transaction.Begin one), so payload order alone would raise false alarms.
    samples = []
    for ev in ordered:
        for index, (stamp, wh) in enumerate(register_samples(ev.payload)):
            when = _time(stamp) or _time(ev.timestamp)
            if when is not None:
                samples.append((when, ev.seq_no, index, wh, stamp or ev.timestamp))
    samples.sort(key=lambda s: s[:3])
    for (_, seq_a, _, wh_a, at_a), (_, seq_b, _, wh_b, at_b) in pairwise(samples):
        if wh_b < wh_a - _EPSILON_WH:
            out.append(
                Violation(
                    tx_id,
                    f"energy register goes back: {_fmt_wh(wh_a)} Wh at {at_a} (seqNo {seq_a})"
                    f" then {_fmt_wh(wh_b)} Wh at {at_b} (seqNo {seq_b})",
                    seq_b,
                )
            )
    return out


def _check_row(tx_id: str, row: Mapping[str, Any], ordered: list[_Event]) -> list[Violation]:
    """The transactions row agrees with its events: state ⇔ Ended."""
    out: list[Violation] = []
    has_ended = any(ev.event_type == "Ended" for ev in ordered)
    if row.get("state") == "ended" and not has_ended:
        out.append(Violation(tx_id, "the transactions row is ended but no Ended event is journaled"))
    if row.get("state") == "open" and has_ended:
        out.append(Violation(tx_id, "an Ended event is journaled but the transactions row is still open"))
    return out


def check_events(
    events: Iterable[Mapping[str, Any]],
    transactions: Mapping[str, Mapping[str, Any]] | None = None,
    *,
    allow_resends: bool = False,
) -> list[Violation]:
    """Every broken invariant in `events`, grouped by transaction in order of first appearance.

    `events`: outbox row dicts (`queries.iter_events`) or bare TransactionEvent payloads; other actions are
    ignored. `transactions`: the journal's rows by transactionId (`queries.transactions`, needs `state`);
    when given, rows and events must agree and ended transactions may have a pruned prefix.
    When None (what a CSMS received), every transaction must be complete from seqNo 0.
    `allow_resends`: an identical payload received twice is a resend, not a repeat (at-least-once delivery).
    """
    loose: list[Violation] = []
    groups: dict[str, list[_Event]] = {}
    row_problems: dict[str, list[Violation]] = {}
    for raw in events:
        found: list[Violation] = []
        ev = _normalise(raw, found)
        for violation in found:
            if violation.transaction_id is None:
                loose.append(violation)
            else:
                row_problems.setdefault(violation.transaction_id, []).append(violation)
        if ev is not None:
            groups.setdefault(ev.tx_id, []).append(ev)

    result = list(loose)
    for tx_id in dict.fromkeys([*groups, *row_problems]):
        result.extend(row_problems.get(tx_id, []))
        evs = groups.get(tx_id)
        if not evs:
            continue
        row = transactions.get(tx_id) if transactions is not None else None
        if transactions is not None and row is None:
            result.append(Violation(tx_id, f"{len(evs)} journaled TransactionEvent(s) but no transactions row"))
        prunable = transactions is not None and (row is None or row.get("state") == "ended")
        problems, ordered = _check_sequence(tx_id, evs, prefix_may_be_pruned=prunable, allow_resends=allow_resends)
        result.extend(problems)
        result.extend(_check_order(tx_id, ordered))
        if row is not None:
            result.extend(_check_row(tx_id, row, ordered))
    for tx_id, row in (transactions or {}).items():
        if tx_id not in groups and tx_id not in row_problems and row.get("state") == "open":
            result.append(
                Violation(tx_id, "open transaction without any journaled TransactionEvent (Started missing)", 0)
            )
    return result


def _collect(conn: Reader) -> tuple[list[Violation], int, int]:
    """(violations, transactions checked, messages checked) for the journal behind `conn`."""
    try:
        problems = [Violation(None, f"PRAGMA quick_check: {line}") for line in quick_check(conn)]
    except sqlite3.DatabaseError as exc:
        problems = [Violation(None, f"PRAGMA quick_check failed: {exc}")]
    try:
        missing = schema_problems(conn)
    except sqlite3.DatabaseError as exc:
        missing = [f"the schema cannot be read: {exc}"]
    if missing:  # the event checks would only repeat "no such table"
        return [*problems, *(Violation(None, f"schema: {text}") for text in missing)], 0, 0
    try:
        with snapshot(conn):
            rows = {t["transactionId"]: t for t in transactions(conn)}
            events = list(iter_events(conn))
    except sqlite3.DatabaseError as exc:
        if not problems:
            raise  # not corruption quick_check saw: an unreadable journal is the caller's exit-2 error
        problems.append(Violation(None, f"the journal cannot be read: {exc}"))
        rows, events = {}, []
    problems.extend(check_events(events, rows))
    return problems, len(rows), len(events)


def verify(conn: Reader) -> list[Violation]:
    """Every broken invariant of the journal behind `conn` (read-only); an empty list when it is sound."""
    return _collect(conn)[0]


def verify_report(conn: Reader) -> dict[str, Any]:
    """`verify` in the CONTRACT's JSON shape (`ok`, `violations`), plus how much was checked."""
    problems, n_transactions, n_messages = _collect(conn)
    return {
        "ok": not problems,
        "violations": [v.to_dict() for v in problems],
        "checked": {"transactions": n_transactions, "messages": n_messages},
    }
