"""`appliance-journal` end to end over real journal files: every command and option, tables and JSON,
exit codes, reading beside a writer, and the console script in a subprocess.
"""

from __future__ import annotations

import csv
import hashlib
import io
import json
import os
import sqlite3
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest
from sqlite_utils import Database

import appliance
from appliance.journal.cli import main, render_table
from appliance.storage.db import DB_NAME, migration_files
from tests.journal.test_verify import TOKEN, build_journal, edit_payload, ts

EVENT_FIELDS = {
    "action",
    "messageId",
    "transactionId",
    "seqNo",
    "eventType",
    "triggerReason",
    "offline",
    "createdAt",
    "deliveredAt",
    "attempts",
    "payload",
    "outcome",
}
TX_FIELDS = {"transactionId", "evseId", "idToken", "idTokenType", "startedAt", "endedAt", "energyWh", "state", "events"}


@pytest.fixture
def journal(tmp_path: Path) -> Iterator[sqlite3.Connection]:
    conn = build_journal(tmp_path)
    yield conn
    conn.close()


def run(capsys: pytest.CaptureFixture[str], tmp_path: Path, *args: str) -> tuple[int, str, str]:
    code = main(["--db", str(tmp_path / DB_NAME), *args])
    captured = capsys.readouterr()
    return code, captured.out, captured.err


def json_lines(text: str) -> list[dict]:
    return [json.loads(line) for line in text.splitlines()]


def test_summary_json(journal: sqlite3.Connection, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    code, out, _ = run(capsys, tmp_path, "summary", "--json")
    assert code == 0
    data = json.loads(out)
    assert data["transactions"] == {"open": 1, "ended": 1}
    assert data["messages"] == 10
    assert data["pending"] == 1
    assert data["dropped"] == 1
    assert data["oldestPendingAt"] == ts(35)
    assert data["openTransactions"] == [
        {"transactionId": "TX-B", "evseId": 2, "lastSeqNo": 3, "startedAt": ts(20), "pending": 1}
    ]


def test_summary_table(journal: sqlite3.Connection, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    code, out, _ = run(capsys, tmp_path, "summary")
    assert code == 0
    assert "1 open, 1 ended" in out
    assert "10 (1 pending, 8 delivered, 1 dropped)" in out
    assert f"oldest pending   {ts(35)}" in out
    header, row = out.split("open transactions:\n")[1].splitlines()
    assert header.split() == ["TRANSACTION", "EVSE", "LAST", "SEQNO", "PENDING", "STARTED"]
    assert row.split() == ["TX-B", "2", "3", "1", ts(20)]


def test_transactions(journal: sqlite3.Connection, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    code, out, _ = run(capsys, tmp_path, "transactions", "--json")
    assert code == 0
    a, b = json_lines(out)
    assert a.keys() >= TX_FIELDS
    assert {k: a[k] for k in TX_FIELDS} == {
        "transactionId": "TX-A",
        "evseId": 1,
        "idToken": TOKEN["idToken"],
        "idTokenType": "ISO14443",
        "startedAt": ts(0),
        "endedAt": ts(15),
        "energyWh": 2000.0,
        "state": "ended",
        "events": 4,
    }
    assert (b["transactionId"], b["state"], b["endedAt"], b["idToken"], b["energyWh"], b["events"]) == (
        "TX-B",
        "open",
        None,
        None,
        1200.0,
        4,
    )

    code, out, _ = run(capsys, tmp_path, "transactions", "--open", "--json")
    assert [t["transactionId"] for t in json_lines(out)] == ["TX-B"]

    code, out, _ = run(capsys, tmp_path, "transactions")
    lines = out.splitlines()
    assert lines[0].split() == [
        "TRANSACTION",
        "EVSE",
        "ID",
        "TOKEN",
        "STARTED",
        "ENDED",
        "ENERGY",
        "WH",
        "STATE",
        "EVENTS",
    ]
    assert lines[1].split() == ["TX-A", "1", "04A1B2C3D4", ts(0), ts(15), "2000", "ended", "4"]
    assert lines[2].split() == ["TX-B", "2", "-", ts(20), "-", "1200", "open", "4"]


def test_events_json(journal: sqlite3.Connection, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    code, out, _ = run(capsys, tmp_path, "events", "--json")
    assert code == 0
    events = json_lines(out)
    assert len(events) == 10
    assert all(e.keys() >= EVENT_FIELDS for e in events)
    assert [e["id"] for e in events] == sorted(e["id"] for e in events)  # journal order
    offline = events[3]
    assert (
        offline["action"],
        offline["transactionId"],
        offline["seqNo"],
        offline["eventType"],
        offline["triggerReason"],
        offline["offline"],
        offline["outcome"],
    ) == ("TransactionEvent", "TX-A", 2, "Updated", "MeterValuePeriodic", True, "delivered")
    assert offline["payload"]["seqNo"] == 2 and offline["payload"]["offline"] is True
    assert offline["createdAt"] == ts(10) and offline["deliveredAt"].endswith("Z")
    dropped = next(e for e in events if e["action"] == "SecurityEventNotification")
    assert (dropped["outcome"], dropped["attempts"], dropped["deliveredAt"], dropped["transactionId"]) == (
        "dropped",
        2,
        None,
        None,
    )
    pending = events[-1]
    assert (pending["deliveredAt"], pending["outcome"], pending["seqNo"]) == (None, None, 3)


def test_events_filters(journal: sqlite3.Connection, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    _, out, _ = run(capsys, tmp_path, "events", "--tx", "TX-A", "--json")
    assert [e["seqNo"] for e in json_lines(out)] == [0, 1, 2, 3]
    _, out, _ = run(capsys, tmp_path, "events", "--pending", "--json")
    assert [(e["transactionId"], e["seqNo"]) for e in json_lines(out)] == [("TX-B", 3)]
    _, out, _ = run(capsys, tmp_path, "events", "--since", "2024-05-01T10:20:00Z", "--json")
    assert [e["createdAt"] for e in json_lines(out)] == [ts(20), ts(21), ts(25), ts(30), ts(35)]
    _, out, _ = run(capsys, tmp_path, "events", "--since", "2024-05-01T12:24:59+02:00", "--tx", "TX-B", "--json")
    assert [e["seqNo"] for e in json_lines(out)] == [1, 2, 3]
    _, out, _ = run(capsys, tmp_path, "events", "--since", "2024-05-02", "--json")
    assert out == ""
    code, out, _ = run(capsys, tmp_path, "events", "--tx", "nope")
    assert (code, out) == (0, "no messages\n")


def test_events_table(journal: sqlite3.Connection, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    code, out, _ = run(capsys, tmp_path, "events")
    assert code == 0
    lines = out.splitlines()
    assert lines[0].split() == [
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
    ]
    assert len(lines) == 11
    assert lines[4].split()[1:8] == ["TransactionEvent", "TX-A", "2", "Updated", "MeterValuePeriodic", "yes", ts(10)]
    assert lines[-1].split()[-3:] == ["-", "0", "pending"]
    _, out, _ = run(capsys, tmp_path, "events", "--pending")
    assert len(out.splitlines()) == 2


def test_verify_clean(journal: sqlite3.Connection, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert run(capsys, tmp_path, "verify") == (0, "OK: no violations (2 transactions, 10 messages checked)\n", "")
    code, out, _ = run(capsys, tmp_path, "verify", "--json")
    assert code == 0
    assert json.loads(out) == {"ok": True, "violations": [], "checked": {"transactions": 2, "messages": 10}}


def test_verify_violations(journal: sqlite3.Connection, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    journal.execute("DELETE FROM outbox WHERE transaction_id = 'TX-B' AND seq_no = 1")
    edit_payload(journal, "TX-A", 2, "$.timestamp", ts(1))
    code, out, _ = run(capsys, tmp_path, "verify", "--json")
    assert code == 1
    report = json.loads(out)
    assert report["ok"] is False
    assert [(v["transactionId"], v["seqNo"]) for v in report["violations"]] == [("TX-A", 2), ("TX-B", 1)]
    assert report["violations"][1]["problem"] == "gap: seqNo 1 missing"

    code, out, _ = run(capsys, tmp_path, "verify")
    assert code == 1
    lines = out.splitlines()
    assert lines[0].split() == ["TRANSACTION", "SEQNO", "PROBLEM"]
    assert lines[1].startswith("TX-A") and "timestamp goes back at seqNo 2" in lines[1]
    assert lines[2].split() == ["TX-B", "1", "gap:", "seqNo", "1", "missing"]
    assert lines[3] == "2 violation(s) (2 transactions, 9 messages checked)"


def test_export_jsonl_and_csv(journal: sqlite3.Connection, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    _, events_out, _ = run(capsys, tmp_path, "events", "--json")
    code, out, _ = run(capsys, tmp_path, "export")
    assert code == 0
    assert out == events_out  # the same objects, one per line
    code, out, _ = run(capsys, tmp_path, "export", "--format", "csv")
    assert code == 0
    rows = list(csv.DictReader(io.StringIO(out)))
    assert len(rows) == 10
    row = rows[3]
    assert (row["transactionId"], row["seqNo"], row["offline"], row["outcome"], row["deliveredAt"] != "") == (
        "TX-A",
        "2",
        "true",
        "delivered",
        True,
    )
    assert json.loads(row["payload"])["meterValue"][0]["sampledValue"][0]["value"] == 2200
    assert rows[-1]["deliveredAt"] == "" and rows[-1]["outcome"] == ""


def test_json_flag_before_command(
    journal: sqlite3.Connection, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    assert main(["--json", "--db", str(tmp_path), "summary"]) == 0  # --db may name the data directory
    assert json.loads(capsys.readouterr().out)["messages"] == 10


def test_empty_journal(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    from appliance.storage.db import open_station_db

    open_station_db(tmp_path).close()
    assert run(capsys, tmp_path, "transactions") == (0, "no transactions\n", "")
    assert run(capsys, tmp_path, "transactions", "--open", "--json") == (0, "", "")
    code, out, _ = run(capsys, tmp_path, "summary", "--json")
    assert code == 0
    assert json.loads(out)["oldestPendingAt"] is None and json.loads(out)["openTransactions"] == []
    assert run(capsys, tmp_path, "verify")[0] == 0


def test_reads_beside_an_open_write_transaction(
    journal: sqlite3.Connection, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    journal.execute("BEGIN IMMEDIATE")
    journal.execute("UPDATE outbox SET attempts = 99")
    journal.execute("UPDATE transactions SET state = 'ended' WHERE transaction_id = 'TX-B'")
    try:
        code, out, _ = run(capsys, tmp_path, "events", "--json")
        assert code == 0 and all(e["attempts"] != 99 for e in json_lines(out))
        assert run(capsys, tmp_path, "verify")[0] == 0  # sees the last commit, not the half-written one
        assert json.loads(run(capsys, tmp_path, "summary", "--json")[1])["openTransactions"][0]["lastSeqNo"] == 3
    finally:
        journal.execute("COMMIT")
    assert run(capsys, tmp_path, "verify")[0] == 1  # now committed: TX-B is ended without an Ended event


def test_never_writes(journal: sqlite3.Connection, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    journal.close()  # checkpoints: everything is in journal.db now
    before = hashlib.sha256((tmp_path / DB_NAME).read_bytes()).hexdigest()
    for args in (["summary"], ["transactions"], ["events"], ["verify"], ["export", "--format", "csv"]):
        assert run(capsys, tmp_path, *args)[0] == 0
    assert hashlib.sha256((tmp_path / DB_NAME).read_bytes()).hexdigest() == before


def test_config_and_default_config(
    journal: sqlite3.Connection, tmp_path: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    config = tmp_path / "station.toml"
    config.write_text(
        f'[station]\nid = "CS001"\ndata_dir = "{tmp_path}"\n[csms]\nurl = "ws://127.0.0.1:9/"\nsecurity_profile = 0\n'
    )
    assert main(["--config", str(config), "summary", "--json"]) == 0
    assert json.loads(capsys.readouterr().out)["messages"] == 10

    monkeypatch.chdir(tmp_path)  # the embedded default config: data_dir var/cs001 under the current directory
    build_journal(tmp_path / "var" / "cs001").close()
    assert main(["transactions", "--json"]) == 0
    assert len(json_lines(capsys.readouterr().out)) == 2


@pytest.mark.parametrize(
    "setup, args, message",
    [
        (None, ["--db", "{tmp}/missing.db", "summary"], "no such journal file"),
        ("garbage", ["--db", "{tmp}/journal.db", "summary"], "not a journal"),
        ("other-sqlite", ["--db", "{tmp}/journal.db", "verify"], "not a journal (no schema_migrations table)"),
        (
            "old-schema",
            ["--db", "{tmp}/journal.db", "events"],
            "not a complete journal (no outbox table; no transactions table)",
        ),
        (
            "rails",
            ["--db", "{tmp}/journal.db", "summary"],
            "not a journal (its schema_migrations table is another program's)",
        ),
        (
            "foreign-id",
            ["--db", "{tmp}/journal.db", "summary"],
            "not a journal (its SQLite application_id is 0x000004d2, ours is 0x4f43504a)",
        ),
        ("bad-config", ["--config", "{tmp}/bad.toml", "summary"], "config error: station.colour: unknown key"),
        (None, ["--config", "{tmp}/nowhere.toml", "summary"], "config error: --config: cannot read"),
        (None, ["--db", "{tmp}/journal.db", "events", "--since", "last tuesday"], "not an ISO 8601 time"),
        (None, ["--db", "x", "--config", "y", "summary"], "not allowed with argument"),
        (None, ["--db", "{tmp}/journal.db", "dance"], "invalid choice"),
    ],
)
def test_errors_exit_2(
    setup: str | None, args: list[str], message: str, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    if setup == "garbage":
        (tmp_path / "journal.db").write_bytes(b"definitely not SQLite " * 200)
    elif setup in ("other-sqlite", "old-schema", "rails", "foreign-id"):
        db = Database(tmp_path / "journal.db")
        if setup == "old-schema":  # our history table, but the journal tables never created
            db["schema_migrations"].insert({"version": 1, "name": migration_files()[0][1], "applied_at": "x"})
        elif setup == "rails":  # Rails keeps a schema_migrations table too
            db["schema_migrations"].insert({"version": "20240501120000"})
        else:
            db["t"].insert({"a": 1})
            if setup == "foreign-id":
                db.execute("PRAGMA application_id = 1234")
        db.close()
    elif setup == "bad-config":
        (tmp_path / "bad.toml").write_text(
            '[station]\nid = "CS001"\ndata_dir = "x"\ncolour = "red"\n[csms]\nurl = "ws://h/"\nsecurity_profile = 0\n'
        )
    code = main([a.replace("{tmp}", str(tmp_path)) for a in args])
    captured = capsys.readouterr()
    assert code == 2
    assert captured.out == ""
    assert message in captured.err
    if setup is not None or "nowhere" in args[1]:
        assert len(captured.err.strip().splitlines()) == 1  # one clear line, no traceback


def test_render_table_truncates_long_cells() -> None:
    text = render_table(("A", "B"), [["x" * 100, 1.5], ["y", None]])
    header, second, third = text.splitlines()
    assert header.split() == ["A", "B"]
    assert second.startswith("x" * 39 + "…") and second.endswith("1.5")
    assert third.split() == ["y", "-"]


def test_console_script_subprocess(journal: sqlite3.Connection, tmp_path: Path) -> None:
    """The entry point as installed (`appliance-journal`), or exactly what its setuptools wrapper runs."""
    root = Path(appliance.__file__).resolve().parents[1]
    env = {**os.environ, "PYTHONPATH": str(root)}
    script = Path(sys.executable).with_name("appliance-journal")
    wrapper = (
        [str(script)]
        if script.exists()
        else [sys.executable, "-c", "import sys; from appliance.journal.cli import main; sys.exit(main())"]
    )
    for command in (wrapper, [sys.executable, "-m", "appliance.journal.cli"]):
        done = subprocess.run(
            [*command, "--db", str(tmp_path / DB_NAME), "summary", "--json"],
            env=env,
            capture_output=True,
            text=True,
            timeout=60,
            check=False,
        )
        assert done.returncode == 0, done.stderr
        assert json.loads(done.stdout)["transactions"] == {"open": 1, "ended": 1}
    journal.execute("DELETE FROM outbox WHERE transaction_id = 'TX-B' AND seq_no = 1")
    done = subprocess.run(
        [*wrapper, "--db", str(tmp_path / DB_NAME), "verify"],
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert done.returncode == 1 and "seqNo 1 missing" in done.stdout
    done = subprocess.run(
        [*wrapper, "--db", str(tmp_path / "none.db"), "verify"],
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert done.returncode == 2 and done.stderr.count("\n") == 1
    assert "appliance-journal = appliance.journal.cli:main" in (root / "setup.cfg").read_text()


def test_schema_introspection(journal: sqlite3.Connection, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    """A journal missing a column the queries read: the reading commands name it, verify lists it as a violation."""
    journal.close()
    db = Database(tmp_path / DB_NAME)
    db.execute("ALTER TABLE outbox DROP COLUMN last_error")  # what a hand-edited journal may look like
    assert "last_error" not in db["outbox"].columns_dict
    db.close()
    code, out, err = run(capsys, tmp_path, "events", "--json")
    assert (code, out) == (2, "")
    assert err.strip().endswith("not a complete journal (the outbox table has no column last_error)")
    code, out, _ = run(capsys, tmp_path, "verify", "--json")
    report = json.loads(out)
    assert code == 1 and not report["ok"]
    assert {
        "transactionId": None,
        "problem": "schema: the outbox table has no column last_error",
        "seqNo": None,
    } in report["violations"]
