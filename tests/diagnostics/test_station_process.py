"""`appliance run` as a real process: it keeps its own log files in data_dir (0600, across restarts), and a SIGKILL
in the middle of an upload is settled at the next start (UploadFailure for that request, once), the journal
verifying clean; the next GetLog uploads the lines of both runs."""

from __future__ import annotations

import contextlib
import signal
import sqlite3
import stat
import threading
from pathlib import Path

import trio

from appliance.lab.csms import LoopbackCsms
from tests.conformance.helpers import STATION_ID
from tests.conformance.remote_helpers import START_TIMEOUT, call, journal, station_proc, wait_boot, write_config
from tests.diagnostics.servers import HttpUploadServer


def statuses(csms: LoopbackCsms, request_id: int, since: int) -> list[str]:
    return [
        p["status"]
        for p in csms.actions(STATION_ID, "LogStatusNotification", since)
        if p.get("requestId") == request_id
    ]


def _delivered(data_dir: Path) -> list[str]:
    """The LogStatusNotifications the station's journal has marked delivered (read-only, beside the station)."""
    with contextlib.closing(sqlite3.connect(f"file:{data_dir / 'journal.db'}?mode=ro", uri=True)) as db:
        rows = db.execute(
            "SELECT json_extract(payload, '$.status') FROM outbox "
            "WHERE action = 'LogStatusNotification' AND delivered_at IS NOT NULL ORDER BY id"
        ).fetchall()
    return [status for (status,) in rows]


async def test_sigkill_mid_upload(csms: LoopbackCsms, data_dir: Path) -> None:
    config = write_config(data_dir, csms.url)
    hold = threading.Event()
    with HttpUploadServer(hold=hold) as stalled, HttpUploadServer() as good:
        mark = csms.mark()
        with station_proc(config) as proc:
            await wait_boot(csms, mark, START_TIMEOUT)
            answer = await call(
                csms, "GetLog", {"logType": "DiagnosticsLog", "requestId": 41, "log": {"remoteLocation": stalled.url}}
            )
            assert answer["status"] == "Accepted", answer
            await csms.trio.wait_for(
                lambda: statuses(csms, 41, mark) == ["Uploading"] and stalled.requests == 1, 10, what="upload under way"
            )
            # Killed once Uploading is marked delivered: one cut off before its answer is rightly sent again.
            await csms.trio.wait_for(lambda: _delivered(data_dir) == ["Uploading"], 10, what="Uploading marked")
            await trio.to_thread.run_sync(proc.stop, signal.SIGKILL)
        hold.set()
        logs = data_dir / "logs"
        assert stat.S_IMODE(logs.stat().st_mode) == 0o700
        assert stat.S_IMODE((logs / "appliance.log").stat().st_mode) == 0o600
        assert f"station {STATION_ID} running" in (logs / "appliance.log").read_text()

        restart = csms.mark()
        with station_proc(config) as proc:
            await wait_boot(csms, restart, START_TIMEOUT)
            await csms.trio.wait_for(
                lambda: statuses(csms, 41, mark) == ["Uploading", "UploadFailure"],
                10,
                what="UploadFailure after the restart",
            )
            answer = await call(
                csms, "GetLog", {"logType": "DiagnosticsLog", "requestId": 42, "log": {"remoteLocation": good.url}}
            )
            assert answer["status"] == "Accepted", answer
            await csms.trio.wait_for(
                lambda: statuses(csms, 42, restart) == ["Uploading", "Uploaded"], 10, what="second upload"
            )
            await trio.sleep(0.3)  # a duplicate would have come by now
            await trio.to_thread.run_sync(proc.stop)
    assert statuses(csms, 41, mark) == ["Uploading", "UploadFailure"]
    [body] = [r.body.decode() for r in good.received]
    assert body.count(f"station {STATION_ID} running") == 2, "both runs' lines are in the upload"
    code, report = await journal(config, "verify")
    assert code == 0 and report["ok"], report
