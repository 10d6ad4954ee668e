"""`appliance-journal`: look into a station's journal without disturbing it (CONTRACT `appliance-journal`).

The journal is opened read-only (`db.open_read_only`: SQLite `mode=ro`, or `immutable=1` when nobody has it
open) and read through sqlite-utils (`queries`). In WAL mode a reader never blocks the station's writer, so this
is safe on a running station, and it needs no write permission anywhere (a read-only mount, another user).
Output is a table for people or, with `--json`, one JSON object (one per line for listings) with the CONTRACT's
stable camelCase field names.

Exit codes: 0 fine; 1 `verify` found violations; 2 usage, config or journal error (one line on stderr).
"""

from __future__ import annotations

import argparse
import csv
import json
import os
import sqlite3
import sys
from collections.abc import Iterable, Sequence
from datetime import datetime
from pathlib import Path
from typing import Any, TextIO

from sqlite_utils import Database

from appliance.config import ConfigError, load
from appliance.journal import queries
from appliance.journal.verify import verify_report
from appliance.storage.db import DB_NAME, JournalError, open_read_only
from appliance.timetext import parse_iso

PROG = "appliance-journal"
#: Table cells longer than this are cut with an ellipsis; columns given as unlimited are never cut.
MAX_CELL = 40
CSV_COLUMNS = (
    "id",
    "messageId",
    "action",
    "transactionId",
    "seqNo",
    "eventType",
    "triggerReason",
    "offline",
    "createdAt",
    "deliveredAt",
    "outcome",
    "attempts",
    "lastError",
    "payload",
)


def _since(text: str) -> datetime:
    """argparse type for `--since`: an ISO 8601 date or time (UTC when it has no offset)."""
    try:
        return parse_iso(text)
    except ValueError:
        raise argparse.ArgumentTypeError(
            f"not an ISO 8601 time: {text!r} (e.g. 2024-05-01T12:00:00Z or 2024-05-01)"
        ) from None


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog=PROG, description="Read a station's journal (read-only; safe while the station runs)."
    )
    where = parser.add_mutually_exclusive_group()
    where.add_argument("--db", metavar="PATH", help=f"the journal file (or the data directory holding {DB_NAME})")
    where.add_argument(
        "--config",
        metavar="PATH",
        help="a station config; its station.data_dir holds the journal (default: the embedded default config)",
    )
    parser.add_argument("--json", action="store_true", default=False, help="print JSON instead of a table")
    # The subcommands repeat --json (CONTRACT: `COMMAND [--json]`); SUPPRESS keeps a top-level --json.
    common = argparse.ArgumentParser(add_help=False)
    common.add_argument("--json", action="store_true", default=argparse.SUPPRESS, help="print JSON")
    commands = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    commands.add_parser("summary", parents=[common], help="transactions, messages, the backlog, open transactions")
    tx = commands.add_parser("transactions", parents=[common], help="one row per transaction")
    tx.add_argument("--open", action="store_true", help="only open transactions")
    ev = commands.add_parser("events", parents=[common], help="the outbound messages in journal order")
    ev.add_argument("--tx", metavar="ID", help="only this transaction's messages")
    ev.add_argument("--pending", action="store_true", help="only messages not yet delivered")
    ev.add_argument("--since", metavar="ISO8601", type=_since, help="only messages created at or after this time")
    commands.add_parser("verify", parents=[common], help="check the journal's invariants; exit 1 on violations")
    ex = commands.add_parser("export", parents=[common], help="every journaled message, for other tools")
    ex.add_argument("--format", choices=("jsonl", "csv"), default="jsonl", help="output format (default: jsonl)")
    return parser


# --- output -------------------------------------------------------------------------------------------------


def _cell(value: Any) -> str:
    if value is None:
        return "-"
    if isinstance(value, bool):
        return "yes" if value else "no"
    if isinstance(value, float):
        return f"{value:.3f}".rstrip("0").rstrip(".")
    return str(value)


def render_table(headers: Sequence[str], rows: Iterable[Sequence[Any]], unlimited: Iterable[int] = ()) -> str:
    """An aligned plain-text table; numbers right-aligned, long cells cut (except `unlimited` columns)."""
    free = set(unlimited)
    cells = []
    numeric = [True] * len(headers)
    for row in rows:
        line = []
        for i, value in enumerate(row):
            text = _cell(value).replace("\n", " ")
            if i not in free and len(text) > MAX_CELL:
                text = text[: MAX_CELL - 1] + "…"
            numeric[i] &= value is None or (isinstance(value, int | float) and not isinstance(value, bool))
            line.append(text)
        cells.append(line)
    widths = [max([len(h), *(len(r[i]) for r in cells)]) for i, h in enumerate(headers)]

    def fmt(line: Sequence[str], align_numbers: bool) -> str:
        parts = [
            t.rjust(w) if align_numbers and numeric[i] else t.ljust(w)
            for i, (t, w) in enumerate(zip(line, widths, strict=True))
        ]
        return "  ".join(parts).rstrip()

    return "\n".join(fmt(line, bool(cells)) for line in [list(headers), *cells])


def _print_json_lines(items: Iterable[dict[str, Any]], out: TextIO) -> None:
    for item in items:
        out.write(json.dumps(item) + "\n")


# --- commands -----------------------------------------------------------------------------------------------


def _summary(db: Database, path: Path, as_json: bool, out: TextIO) -> int:
    data = {**queries.summary(db), "journal": str(path)}
    if as_json:
        out.write(json.dumps(data) + "\n")
        return 0
    tx = data["transactions"]
    lines = [
        f"journal          {path}",
        f"transactions     {tx['open']} open, {tx['ended']} ended",
        f"messages         {data['messages']} ({data['pending']} pending, {data['delivered']} delivered, "
        f"{data['dropped']} dropped)",
        f"oldest pending   {data['oldestPendingAt'] or '-'}",
    ]
    if data["openTransactions"]:
        table = render_table(
            ("TRANSACTION", "EVSE", "LAST SEQNO", "PENDING", "STARTED"),
            (
                [t["transactionId"], t["evseId"], t["lastSeqNo"], t["pending"], t["startedAt"]]
                for t in data["openTransactions"]
            ),
        )
        lines += ["", "open transactions:", table]
    out.write("\n".join(lines) + "\n")
    return 0


def _transactions(db: Database, args: argparse.Namespace, out: TextIO) -> int:
    rows = queries.transactions(db, open_only=args.open)
    if args.json:
        _print_json_lines(rows, out)
        return 0
    if not rows:
        out.write("no open transactions\n" if args.open else "no transactions\n")
        return 0
    out.write(
        render_table(
            ("TRANSACTION", "EVSE", "ID TOKEN", "STARTED", "ENDED", "ENERGY WH", "STATE", "EVENTS"),
            (
                [
                    t["transactionId"],
                    t["evseId"],
                    t["idToken"],
                    t["startedAt"],
                    t["endedAt"],
                    t["energyWh"],
                    t["state"],
                    t["events"],
                ]
                for t in rows
            ),
        )
        + "\n"
    )
    return 0


def _events(db: Database, args: argparse.Namespace, out: TextIO) -> int:
    filters = {"transaction_id": args.tx, "pending": args.pending, "since": args.since}
    if args.json:
        with queries.snapshot(db):
            _print_json_lines(queries.iter_events(db, **filters), out)
        return 0
    rows = queries.events(db, **filters)
    if not rows:
        out.write("no messages\n")
        return 0
    out.write(
        render_table(
            (
                "#",
                "ACTION",
                "TRANSACTION",
                "SEQNO",
                "EVENT",
                "TRIGGER",
                "OFFLINE",
                "CREATED",
                "DELIVERED",
                "ATTEMPTS",
                "OUTCOME",
            ),
            (
                [
                    e["id"],
                    e["action"],
                    e["transactionId"],
                    e["seqNo"],
                    e["eventType"],
                    e["triggerReason"],
                    e["offline"],
                    e["createdAt"],
                    e["deliveredAt"],
                    e["attempts"],
                    e["outcome"] or "pending",
                ]
                for e in rows
            ),
        )
        + "\n"
    )
    return 0


def _verify(db: Database, as_json: bool, out: TextIO) -> int:
    report = verify_report(db)
    if as_json:
        out.write(json.dumps(report) + "\n")
    else:
        checked = f"{report['checked']['transactions']} transactions, {report['checked']['messages']} messages"
        if report["ok"]:
            out.write(f"OK: no violations ({checked} checked)\n")
        else:
            violations = report["violations"]
            out.write(
                render_table(
                    ("TRANSACTION", "SEQNO", "PROBLEM"),
                    ([v["transactionId"], v["seqNo"], v["problem"]] for v in violations),
                    unlimited=(0, 2),
                )
                + "\n"
            )
            out.write(f"{len(violations)} violation(s) ({checked} checked)\n")
    return 0 if report["ok"] else 1


def _csv_value(value: Any) -> Any:
    """CSV cells as a JSON reader would expect them: empty for null, true/false for booleans."""
    if value is None:
        return ""
    if isinstance(value, bool):
        return "true" if value else "false"
    return value


def _export(db: Database, fmt: str, out: TextIO) -> int:
    with queries.snapshot(db):
        rows = queries.iter_events(db)
        if fmt == "jsonl":
            _print_json_lines(rows, out)
            return 0
        writer = csv.writer(out, lineterminator="\n")
        writer.writerow(CSV_COLUMNS)
        for event in rows:
            payload = event["payload"]
            record = {
                **event,
                "payload": json.dumps(payload, separators=(",", ":"))
                if payload is not None
                else event.get("payloadText"),
            }
            writer.writerow([_csv_value(record[c]) for c in CSV_COLUMNS])
    return 0


# --- entry point --------------------------------------------------------------------------------------------


def _journal_path(args: argparse.Namespace) -> Path:
    if args.db:
        path = Path(args.db)
        return path / DB_NAME if path.is_dir() else path
    config = load(Path(args.config) if args.config else None)
    return config.station.data_dir / DB_NAME


def _run(args: argparse.Namespace, out: TextIO) -> int:
    path = _journal_path(args)
    db = queries.database(open_read_only(path))
    try:
        missing = queries.schema_problems(db)
        if missing and args.command != "verify":  # verify reports them as violations, with quick_check's view
            raise JournalError(f"{path}: not a complete journal ({'; '.join(missing)})")
        if args.command == "summary":
            return _summary(db, path, args.json, out)
        if args.command == "transactions":
            return _transactions(db, args, out)
        if args.command == "events":
            return _events(db, args, out)
        if args.command == "verify":
            return _verify(db, args.json, out)
        return _export(db, args.format, out)
    except sqlite3.DatabaseError as exc:
        raise JournalError(f"{path}: cannot read the journal: {exc}") from exc
    finally:
        db.close()


def main(argv: list[str] | None = None) -> int:
    """The console script `appliance-journal`; returns the exit code instead of raising SystemExit."""
    try:
        args = build_parser().parse_args(argv)
    except SystemExit as exc:  # --help (0) or a usage error (2), already printed by argparse
        return exc.code if isinstance(exc.code, int) else 2
    out = sys.stdout
    try:
        code = _run(args, out)
        out.flush()
        return code
    except ConfigError as exc:
        print(str(exc), file=sys.stderr)
    except JournalError as exc:
        print(f"{PROG}: {exc}", file=sys.stderr)
    except BrokenPipeError:
        # `appliance-journal events | head`: the reader left; silence the flush at interpreter exit.
        devnull = os.open(os.devnull, os.O_WRONLY)
        os.dup2(devnull, sys.stdout.fileno())
        return 1
    except KeyboardInterrupt:
        return 130
    return 2


if __name__ == "__main__":
    sys.exit(main())
