"""Part 6 N01 GetLog: TC_N_25 (DiagnosticsLog uploaded), TC_N_26 (upload failed after retries), TC_N_34 (nothing to
send: Rejected), TC_N_35 (SecurityLog uploaded), TC_N_36 (a second GetLog cancels the running upload:
AcceptedCanceled), TC_F_16 (TriggerMessage LogStatusNotification while uploading); beyond Part 6: uploads over
HTTP PUT, HTTPS PUT and FTP STOR, a server that accepts and never answers, a second GetLog that would be Rejected
leaving the running upload alone, a restart mid-upload, and the journal holding every LogStatusNotification
before it went out.

The upload servers are real (tests/diagnostics/servers.py); the station's timeouts are shortened through its
`diagnostics.timeouts` so a stalled attempt ends in half a second.
"""

from __future__ import annotations

import dataclasses
import json
import logging
import sqlite3
import threading
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

import pytest
import trio
import trustme

from appliance.diagnostics.upload import Timeouts
from appliance.lab.csms import LoopbackCsms
from appliance.station import Station
from tests.conformance.helpers import STATION_ID
from tests.conformance.remote_helpers import call, incarnation
from tests.diagnostics.servers import FtpUploadServer, HttpUploadServer, SilentServer
from tests.harness import make_config

FAST = Timeouts(connect=2, idle=0.5, transfer=10)
FINAL = {"Uploaded", "UploadFailure", "BadMessage", "PermissionDenied", "NotSupportedOperation", "AcceptedCanceled"}


@pytest.fixture(autouse=True)
def info_logs(caplog: pytest.LogCaptureFixture) -> None:
    """The station's INFO lines reach its log files (pytest leaves the root logger at WARNING)."""
    caplog.set_level(logging.INFO)


@asynccontextmanager
async def station(
    csms: LoopbackCsms, data_dir: Path, tweak: Callable[[Any], Any] | None = None
) -> AsyncIterator[Station]:
    config = make_config(data_dir, csms)
    if tweak is not None:
        config = tweak(config)
    async with incarnation(csms, config) as running:
        running.diagnostics.timeouts = FAST
        yield running


async def get_log(
    csms: LoopbackCsms, request_id: int, url: str, log_type: str = "DiagnosticsLog", **extra: Any
) -> dict[str, Any]:
    window = {"remoteLocation": url, **extra.pop("window", {})}
    return await call(csms, "GetLog", {"logType": log_type, "requestId": request_id, "log": window, **extra})


def log_statuses(csms: LoopbackCsms, request_id: int | None, since: int = 0) -> list[dict[str, Any]]:
    return [p for p in csms.actions(STATION_ID, "LogStatusNotification", since) if p.get("requestId") == request_id]


async def until_final(
    csms: LoopbackCsms, request_id: int, since: int, timeout: float = 15, *, attempts: int = 1
) -> list[str]:
    """The statuses of request `request_id` up to and including its final one: each attempt ends in a status of
    FINAL (a failed attempt that is retried too), so the request's is the `attempts`-th."""

    def done() -> list[str] | None:
        seen = [p["status"] for p in log_statuses(csms, request_id, since)]
        return seen if sum(status in FINAL for status in seen) >= attempts else None

    return await csms.trio.wait_for(done, timeout, what=f"final LogStatusNotification of {request_id}")


def journaled(data_dir: Path) -> list[tuple[dict[str, Any], str | None]]:
    """LogStatusNotifications in the station's journal, in order, with when the CSMS acknowledged each."""
    with sqlite3.connect(f"file:{data_dir / 'journal.db'}?mode=ro", uri=True) as db:
        rows = db.execute(
            "SELECT payload, delivered_at FROM outbox WHERE action = 'LogStatusNotification' ORDER BY id"
        ).fetchall()
    return [(json.loads(p), d) for p, d in rows]


async def test_TC_N_25_diagnostics_log_uploaded_over_http(csms: LoopbackCsms, data_dir: Path) -> None:
    """TC_N_25_CS (N01.FR.01/02/04/07/08/09/13): GetLog DiagnosticsLog → Accepted with a non-empty filename; then
    LogStatusNotification Uploading and Uploaded, both with the requestId. The server received a PUT of that file
    holding the station's own log lines (logfmt); every status was journaled and acknowledged."""
    with HttpUploadServer() as server:
        async with station(csms, data_dir):
            mark = csms.mark()
            answer = await get_log(csms, 11, server.url)
            assert answer["status"] == "Accepted" and answer["filename"], answer
            assert await until_final(csms, 11, mark) == ["Uploading", "Uploaded"]
            await csms.trio.wait_for(lambda: all(d for _, d in journaled(data_dir)), 5, what="acknowledged")
    [got] = server.received
    assert got.path == f"/logs/{answer['filename']}"
    lines = got.body.decode().splitlines()
    assert lines and all(line.startswith("ts=") for line in lines)
    assert any(f"station {STATION_ID} running" in line for line in lines), lines[:5]
    assert [(p["status"], p["requestId"]) for p, _ in journaled(data_dir)] == [("Uploading", 11), ("Uploaded", 11)]


async def test_diagnostics_log_window_and_https_upload(csms: LoopbackCsms, data_dir: Path, tmp_path: Path) -> None:
    """HTTPS PUT to a server whose certificate the configured CSMS root (csms.ca_file) vouches for; the log is cut
    to the window: a window ending before the station started has nothing (Rejected), one around now has it."""
    ca = trustme.CA()
    ca_file = tmp_path / "root.pem"
    ca.cert_pem.write_to_path(str(ca_file))

    def trust(config: Any) -> Any:
        return dataclasses.replace(config, csms=dataclasses.replace(config.csms, ca_file=ca_file))

    with HttpUploadServer(ca=ca) as server:
        async with station(csms, data_dir, trust):
            mark = csms.mark()
            before = await get_log(csms, 12, server.url, window={"latestTimestamp": "2020-01-01T00:00:00Z"})
            assert before["status"] == "Rejected" and "filename" not in before, before
            answer = await get_log(
                csms,
                13,
                server.url,
                window={"oldestTimestamp": "2020-01-01T00:00:00Z", "latestTimestamp": "2099-01-01T00:00:00Z"},
            )
            assert answer["status"] == "Accepted", answer
            assert await until_final(csms, 13, mark) == ["Uploading", "Uploaded"]
    [got] = server.received
    assert got.path.endswith(answer["filename"]) and b"logger=appliance" in got.body


async def test_diagnostics_log_uploaded_over_ftp(csms: LoopbackCsms, data_dir: Path, tmp_path: Path) -> None:
    """FTP STOR into the directory the URL names, with the URL's user and password."""
    root = tmp_path / "ftp"
    root.mkdir()
    with FtpUploadServer(root) as server:
        async with station(csms, data_dir):
            mark = csms.mark()
            answer = await get_log(csms, 14, server.url())
            assert answer["status"] == "Accepted", answer
            assert await until_final(csms, 14, mark) == ["Uploading", "Uploaded"]
    assert b"logger=appliance" in (root / answer["filename"]).read_bytes()


async def test_TC_N_35_security_log_uploaded(csms: LoopbackCsms, data_dir: Path, tmp_path: Path) -> None:
    """TC_N_35_CS (N01.FR.01/02/03/07/08/09/13): GetLog SecurityLog → Accepted with a filename; Uploading, Uploaded
    with the requestId; the file holds the security log (the start-up event), here over FTP. A window with no
    security event in it → Rejected."""
    root = tmp_path / "ftp"
    root.mkdir()
    with FtpUploadServer(root) as server:
        async with station(csms, data_dir):
            mark = csms.mark()
            empty = await get_log(
                csms, 24, server.url(), "SecurityLog", window={"latestTimestamp": "2001-01-01T00:00:00Z"}
            )
            assert empty["status"] == "Rejected" and "filename" not in empty, empty
            answer = await get_log(csms, 25, server.url(), "SecurityLog")
            assert answer["status"] == "Accepted" and "SecurityLog" in answer["filename"], answer
            assert await until_final(csms, 25, mark) == ["Uploading", "Uploaded"]
    lines = (root / answer["filename"]).read_text().splitlines()
    assert any("\tStartupOfTheDevice\t" in line for line in lines), lines


async def test_TC_N_26_upload_failed_after_retries(csms: LoopbackCsms, data_dir: Path) -> None:
    """TC_N_26_CS (N01.FR.10): retries 3, retryInterval 1 against a server answering 500 → four attempts, each
    started at least retryInterval after the one before, each reported Uploading then UploadFailure with the
    requestId ("step (3,) 5, four times"); nothing after the fourth."""
    with HttpUploadServer(status=500) as server:
        async with station(csms, data_dir):
            mark = csms.mark()
            answer = await get_log(csms, 15, server.url, retries=3, retryInterval=1)
            assert answer["status"] == "Accepted", answer
            assert await until_final(csms, 15, mark, attempts=4) == ["Uploading", "UploadFailure"] * 4
            await trio.sleep(1.5)  # a fifth attempt would have begun by now
    assert log_statuses(csms, 15, mark)[-1]["status"] == "UploadFailure" and len(log_statuses(csms, 15, mark)) == 8
    assert server.requests == 4
    assert all(b - a >= 0.9 for a, b in zip(server.times, server.times[1:], strict=False)), server.times


async def test_server_that_never_answers_fails_after_retries(csms: LoopbackCsms, data_dir: Path) -> None:
    """The upload server accepts the connection and never answers: each attempt ends within the idle timeout,
    the station retries (retries 1 = two attempts, each reported), then is free for the next GetLog."""
    with SilentServer() as silent, HttpUploadServer() as good:
        async with station(csms, data_dir):
            mark = csms.mark()
            answer = await get_log(csms, 16, f"http://127.0.0.1:{silent.port}/logs/", retries=1, retryInterval=1)
            assert answer["status"] == "Accepted", answer
            assert await until_final(csms, 16, mark, attempts=2) == ["Uploading", "UploadFailure"] * 2
            assert silent.accepted == 2
            again = await get_log(csms, 17, good.url)
            assert again["status"] == "Accepted", again
            assert await until_final(csms, 17, mark) == ["Uploading", "Uploaded"]


async def test_permission_denied_and_unsupported_protocol(csms: LoopbackCsms, data_dir: Path) -> None:
    """A server refusing our credentials ends in PermissionDenied; an sftp:// URL in NotSupportedOperation at once
    (no attempt can succeed, so no Uploading and no retries)."""
    with HttpUploadServer(status=403) as server:
        async with station(csms, data_dir):
            mark = csms.mark()
            assert (await get_log(csms, 18, server.url, retries=0))["status"] == "Accepted"
            assert await until_final(csms, 18, mark) == ["Uploading", "PermissionDenied"]
            assert (await get_log(csms, 19, "sftp://127.0.0.1/logs/", retries=5))["status"] == "Accepted"
            assert await until_final(csms, 19, mark) == ["NotSupportedOperation"]


async def test_TC_N_34_nothing_to_send_is_rejected(csms: LoopbackCsms, data_dir: Path) -> None:
    """TC_N_34_CS (N01.FR.05): no log information in the requested period → GetLog Rejected without a filename,
    and no LogStatusNotification follows."""
    async with station(csms, data_dir):
        mark = csms.mark()
        answer = await get_log(csms, 20, "http://127.0.0.1:9/logs/", window={"latestTimestamp": "2001-01-01T00:00:00Z"})
        assert answer["status"] == "Rejected" and "filename" not in answer, answer
        assert answer["statusInfo"]["reasonCode"] == "NoLogAvailable"
        await trio.sleep(0.3)
        assert csms.actions(STATION_ID, "LogStatusNotification", mark) == []


async def test_TC_F_16_trigger_while_uploading_and_second_get_log(csms: LoopbackCsms, data_dir: Path) -> None:
    """TC_F_16_CS (F06.FR.04/05/10/14): while an upload is in progress, TriggerMessage LogStatusNotification →
    Accepted, then LogStatusNotification Uploading with the requestId; the upload completes. Afterwards a trigger
    reports Idle, without a requestId."""
    hold = threading.Event()
    with HttpUploadServer(hold=hold) as server:
        async with station(csms, data_dir):
            mark = csms.mark()
            assert (await get_log(csms, 21, server.url))["status"] == "Accepted"
            await csms.trio.wait_for(lambda: log_statuses(csms, 21, mark), 5, what="Uploading")
            await csms.trio.wait_for(lambda: server.requests == 1, 5, what="the PUT arriving")
            trigger_mark = csms.mark()
            answer = await call(csms, "TriggerMessage", {"requestedMessage": "LogStatusNotification"})
            assert answer["status"] == "Accepted", answer
            [triggered] = await csms.trio.wait_action(STATION_ID, "LogStatusNotification", since=trigger_mark)
            assert triggered == {"status": "Uploading", "requestId": 21}
            hold.set()
            assert (await until_final(csms, 21, mark))[-1] == "Uploaded"
            idle_mark = csms.mark()
            assert (await call(csms, "TriggerMessage", {"requestedMessage": "LogStatusNotification"}))[
                "status"
            ] == "Accepted"
            [idle] = await csms.trio.wait_action(STATION_ID, "LogStatusNotification", since=idle_mark)
            assert idle == {"status": "Idle"}
    assert len(server.received) == 1


async def test_TC_N_36_second_request_cancels_the_upload(csms: LoopbackCsms, data_dir: Path) -> None:
    """TC_N_36_CS (N01.FR.12/13): GetLog → Accepted, Uploading; a second GetLog while it uploads → AcceptedCanceled;
    LogStatusNotification AcceptedCanceled (for the cancelled request), then Uploading and Uploaded for the second.
    A GetLog that is Rejected (nothing in its window) leaves the running upload alone."""
    hold = threading.Event()
    with HttpUploadServer(hold=hold) as server:
        async with station(csms, data_dir):
            mark = csms.mark()
            assert (await get_log(csms, 31, server.url))["status"] == "Accepted"
            await csms.trio.wait_for(lambda: server.requests == 1, 5, what="the first PUT arriving")
            empty = await get_log(csms, 33, server.url, window={"latestTimestamp": "2001-01-01T00:00:00Z"})
            assert empty["status"] == "Rejected" and empty["statusInfo"]["reasonCode"] == "NoLogAvailable"
            second = await get_log(csms, 32, server.url)
            assert second["status"] == "AcceptedCanceled" and second["filename"], second
            assert await until_final(csms, 31, mark) == ["Uploading", "AcceptedCanceled"]
            await csms.trio.wait_for(lambda: server.requests == 2, 5, what="the second PUT arriving")
            hold.set()
            assert await until_final(csms, 32, mark) == ["Uploading", "Uploaded"]
            order = [(p["status"], p.get("requestId")) for p in csms.actions(STATION_ID, "LogStatusNotification", mark)]
            assert order == [("Uploading", 31), ("AcceptedCanceled", 31), ("Uploading", 32), ("Uploaded", 32)]
            await csms.trio.wait_for(lambda: all(d for _, d in journaled(data_dir)), 5, what="acknowledged")
    assert f"/logs/{second['filename']}" in [r.path for r in server.received]
    assert [(p["status"], p["requestId"]) for p, _ in journaled(data_dir)] == order


async def test_second_request_with_the_same_id_in_the_same_second(csms: LoopbackCsms, data_dir: Path) -> None:
    """Found by the fuzzer: two GetLogs with requestId 0 in one second name the same file. The second cancels the
    first without deleting its own bundle (it was an internal error), and its upload carries the log."""
    hold = threading.Event()
    with HttpUploadServer(hold=hold) as server:
        async with station(csms, data_dir):
            mark = csms.mark()
            first = await get_log(csms, 0, server.url)
            await csms.trio.wait_for(lambda: server.requests == 1, 5, what="the first PUT arriving")
            second = await get_log(csms, 0, server.url)
            assert second["status"] == "AcceptedCanceled", second
            hold.set()
            await csms.trio.wait_for(
                lambda: [p["status"] for p in log_statuses(csms, 0, mark)][-1:] == ["Uploaded"], 10, what="Uploaded"
            )
    assert [p["status"] for p in log_statuses(csms, 0, mark)] == [
        "Uploading",
        "AcceptedCanceled",
        "Uploading",
        "Uploaded",
    ]
    bodies = [r.body for r in server.received if r.path == f"/logs/{second['filename']}"]
    assert bodies and all(b.startswith(b"ts=") for b in bodies), (first, second, [r.path for r in server.received])


async def test_restart_mid_upload_reports_upload_failure(csms: LoopbackCsms, data_dir: Path) -> None:
    """The station stops while uploading (its upload is cut with it): the journal's last status for the request is
    Uploading, so the next start reports UploadFailure for it, exactly once, and a trigger then reports Idle."""
    hold = threading.Event()
    with HttpUploadServer(hold=hold) as server:
        async with station(csms, data_dir):
            mark = csms.mark()
            assert (await get_log(csms, 23, server.url))["status"] == "Accepted"
            await csms.trio.wait_for(lambda: log_statuses(csms, 23, mark), 5, what="Uploading")
            await csms.trio.wait_for(lambda: server.requests == 1, 5, what="the PUT arriving")
            # Stopped once Uploading is marked delivered: one cut off before its answer is rightly sent again.
            await csms.trio.wait_for(lambda: all(d for _, d in journaled(data_dir)), 5, what="Uploading marked")
        hold.set()
        async with station(csms, data_dir):
            assert await until_final(csms, 23, mark) == ["Uploading", "UploadFailure"]
            # Left only once acknowledged: a status cut off before its answer is recorded is rightly sent again.
            await csms.trio.wait_for(lambda: all(d for _, d in journaled(data_dir)), 5, what="acknowledged")
        async with station(csms, data_dir):
            await trio.sleep(0.3)
    assert [p["status"] for p in log_statuses(csms, 23, mark)] == ["Uploading", "UploadFailure"]
    assert [p["status"] for p, _ in journaled(data_dir)] == ["Uploading", "UploadFailure"]
