"""Secrets at rest (issue 10 item 5): the data directory is 0700 and the journal with its -wal/-shm 0600, also
after an older install left them open; the basic-auth password the CSMS sets is nowhere a person or another
program can read it — not in the log (DEBUG frames included), not in `appliance-journal` output, not in the
security log, not in GetVariables or a report — while the station keeps authenticating with it."""

from __future__ import annotations

import base64
import io
import json
import logging
import stat
from contextlib import redirect_stdout
from pathlib import Path

import pytest

from appliance.journal.cli import main as journal_main
from appliance.lab.csms import LoopbackCsms
from appliance.lab.process import PASSWORD
from appliance.storage.db import DB_NAME
from tests.conformance.helpers import (
    STATION_ID,
    booted_station,
    get_item,
    get_variables,
    set_item,
    set_variables,
)

NEW_PASSWORD = "CSMS-set_Passw0rd-4-A09"
JOURNAL_FILES = (DB_NAME, f"{DB_NAME}-wal", f"{DB_NAME}-shm")


def mode(path: Path) -> int:
    return stat.S_IMODE(path.stat().st_mode)


def open_up(data_dir: Path) -> None:
    """What an older install or a careless operator leaves: a world-readable directory and journal."""
    data_dir.chmod(0o755)
    for name in JOURNAL_FILES:
        if (data_dir / name).exists():
            (data_dir / name).chmod(0o644)


async def test_data_dir_and_journal_are_private(csms: LoopbackCsms, data_dir: Path) -> None:
    """A fresh start makes them private; a second start repairs what an older install (or an operator) opened."""
    open_up(data_dir)
    async with booted_station(csms, data_dir):
        assert mode(data_dir) == 0o700
        assert {name: mode(data_dir / name) for name in JOURNAL_FILES} == dict.fromkeys(JOURNAL_FILES, 0o600)
    open_up(data_dir)
    async with booted_station(csms, data_dir):
        assert mode(data_dir) == 0o700
        assert all(mode(data_dir / name) == 0o600 for name in JOURNAL_FILES)


async def test_password_never_shown(csms: LoopbackCsms, data_dir: Path, caplog: pytest.LogCaptureFixture) -> None:
    """SetVariables BasicAuthPassword (A01) → the station reconnects with it; then a GetVariables of it is
    Rejected without a value, a full report lists the variable without its value, the DEBUG log, every
    `appliance-journal` command and the security log (which does record that the password changed) hold neither
    the new nor the factory password, nor their basic-auth token."""
    caplog.set_level(logging.DEBUG)
    secrets = [NEW_PASSWORD, PASSWORD] + [
        base64.b64encode(f"{STATION_ID}:{p}".encode()).decode() for p in (NEW_PASSWORD, PASSWORD)
    ]
    async with booted_station(csms, data_dir) as station:
        csms.set_password(STATION_ID, NEW_PASSWORD)
        [result] = await set_variables(csms, set_item("SecurityCtrlr", "BasicAuthPassword", NEW_PASSWORD))
        assert result["attributeStatus"] == "Accepted", result
        await csms.trio.wait_for(
            lambda: sum(c.accepted for c in csms.connections_snapshot(STATION_ID)) == 2,
            10,
            what="the reconnection with the new password",
        )
        assert all(c.auth_ok for c in csms.connections_snapshot(STATION_ID) if c.accepted)

        [get] = await get_variables(csms, get_item("SecurityCtrlr", "BasicAuthPassword"))
        assert get["attributeStatus"] == "Rejected" and "attributeValue" not in get, get
        mark = csms.mark()
        answer = await csms.trio.call(STATION_ID, "GetBaseReport", {"requestId": 4711, "reportBase": "FullInventory"})
        assert answer["status"] == "Accepted"
        await csms.trio.wait_for(
            lambda: any(not p.get("tbc", False) for p in csms.actions(STATION_ID, "NotifyReport", mark)),
            10,
            what="the last NotifyReport",
        )
        reports = csms.actions(STATION_ID, "NotifyReport", mark)
        [entry] = [d for p in reports for d in p["reportData"] if d["variable"]["name"] == "BasicAuthPassword"]
        assert all("value" not in a for a in entry["variableAttribute"]), entry

        await station.storage.run(station.storage.checkpoint)
        logged = await station.security.log.entries()
        assert any(e.tech_info == "SecurityCtrlr.BasicAuthPassword changed" for e in logged), logged
        outputs = [json.dumps(reports), json.dumps(get), "\n".join(e.line() for e in logged)]

    for command in (["summary"], ["events"], ["export"], ["export", "--format", "csv"], ["events", "--json"]):
        out = io.StringIO()
        with redirect_stdout(out):
            assert journal_main(["--db", str(data_dir), *command]) == 0
        outputs.append(out.getvalue())
    outputs.append(
        "\n".join(
            f"{r.name} {r.getMessage()} {r.exc_text or ''}"
            for r in caplog.records
            if r.name.startswith("appliance.") and not r.name.startswith("appliance.lab")
        )
    )
    assert "frame in: [2," in outputs[-1], "the DEBUG frame log ran"
    for text in outputs:
        for secret in secrets:
            assert secret not in text
    # It is at rest in the journal (the station needs it), which is why that file is private.
    assert mode(data_dir / DB_NAME) == 0o600
