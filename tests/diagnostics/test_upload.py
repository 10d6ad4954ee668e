"""The upload clients against real servers: HTTP PUT, HTTPS PUT (trustme certificate), FTP STOR (pyftpdlib), a
server that accepts and never answers, and the failure statuses each kind of refusal maps to."""

from __future__ import annotations

import ssl
from pathlib import Path

import pytest
import trio
import trustme

from appliance.diagnostics.upload import Timeouts, UploadFailed, shown, target_url, upload
from tests.diagnostics.servers import FtpUploadServer, HttpUploadServer, SilentServer

FAST = Timeouts(connect=2, idle=0.5, transfer=5)
BODY = b"ts=2026-12-02T00:00:00.000Z level=info logger=x msg=hello\n" * 2000  # ~120 kB: several chunks


@pytest.fixture
def bundle(tmp_path: Path) -> Path:
    path = tmp_path / "CS001-DiagnosticsLog.log"
    path.write_bytes(BODY)
    return path


def test_target_url_appends_the_file_name_only_to_a_directory() -> None:
    assert target_url("http://h/logs/", "a b.log") == "http://h/logs/a%20b.log"
    assert target_url("http://h/logs/upload", "a.log") == "http://h/logs/upload"


def test_shown_hides_credentials() -> None:
    assert shown("ftp://user:pw@host:21/x/") == "ftp://***@host:21/x/"
    assert "pw" not in shown("https://u:pw@h/")


async def test_http_put(bundle: Path) -> None:
    with HttpUploadServer() as server:
        await upload(bundle, target_url(server.url, bundle.name), timeouts=FAST)
    [got] = server.received
    assert got.path == f"/logs/{bundle.name}"
    assert got.body == BODY
    assert got.headers["Content-Length"] == str(len(BODY))


async def test_http_put_with_basic_auth_from_the_url(bundle: Path) -> None:
    with HttpUploadServer() as server:
        url = server.url.replace("http://", "http://up%40load:s3cret@")
        await upload(bundle, url + "x.log", timeouts=FAST)
    [got] = server.received
    assert got.headers["Authorization"] == "Basic dXBAbG9hZDpzM2NyZXQ="  # up@load:s3cret


async def test_https_put_trusts_the_given_root_only(bundle: Path) -> None:
    ca = trustme.CA()
    with HttpUploadServer(ca=ca) as server:
        trusting = ssl.create_default_context()
        ca.configure_trust(trusting)
        await upload(bundle, server.url + "a.log", timeouts=FAST, ssl_context=trusting)
        with pytest.raises(UploadFailed) as refused:
            await upload(bundle, server.url + "b.log", timeouts=FAST, ssl_context=ssl.create_default_context())
    assert [r.path for r in server.received] == ["/logs/a.log"]
    assert refused.value.status == "UploadFailure" and "certificate" in refused.value.reason


@pytest.mark.parametrize(
    ("status", "expected", "final"),
    [
        (401, "PermissionDenied", False),
        (403, "PermissionDenied", False),
        (405, "NotSupportedOperation", True),
        (413, "BadMessage", False),
        (500, "UploadFailure", False),
        (404, "UploadFailure", False),
    ],
)
async def test_http_refusals_map_to_statuses(bundle: Path, status: int, expected: str, final: bool) -> None:
    with HttpUploadServer(status=status) as server, pytest.raises(UploadFailed) as failed:
        await upload(bundle, server.url + "a.log", timeouts=FAST)
    assert (failed.value.status, failed.value.final) == (expected, final)
    assert str(status) in failed.value.reason


@pytest.mark.parametrize("scheme", ["http", "https"])
async def test_server_that_never_answers_ends_within_the_idle_timeout(bundle: Path, scheme: str) -> None:
    """The server accepts and then neither reads nor answers (over HTTPS: not even the TLS handshake): the attempt
    fails (UploadFailure) on its own, well before the test's own deadline."""
    with SilentServer() as silent:
        with trio.fail_after(4), pytest.raises(UploadFailed) as failed:
            await upload(bundle, f"{scheme}://127.0.0.1:{silent.port}/logs/a.log", timeouts=FAST)
        assert silent.accepted == 1
    assert failed.value.status == "UploadFailure"


async def test_overall_transfer_timeout_ends_a_stalled_attempt(bundle: Path) -> None:
    """With a long idle timeout, the overall transfer deadline still ends it (the sockets are shut from the Trio
    side, so the worker thread does not linger)."""
    with SilentServer() as silent, trio.fail_after(4), pytest.raises(UploadFailed) as failed:
        await upload(
            bundle, f"http://127.0.0.1:{silent.port}/x.log", timeouts=Timeouts(connect=2, idle=60, transfer=0.5)
        )
    assert "not finished within 0.5 s" in failed.value.reason


async def test_ftp_stor(bundle: Path, tmp_path: Path) -> None:
    root = tmp_path / "ftp"
    root.mkdir()
    with FtpUploadServer(root) as server:
        await upload(bundle, target_url(server.url(), bundle.name), timeouts=FAST)
    assert (root / bundle.name).read_bytes() == BODY


async def test_ftp_wrong_password_and_read_only_user_are_permission_denied(bundle: Path, tmp_path: Path) -> None:
    root = tmp_path / "ftp"
    root.mkdir()
    with FtpUploadServer(root) as server:
        with pytest.raises(UploadFailed) as wrong:
            await upload(bundle, server.url(password="nope") + "a.log", timeouts=FAST)
        with pytest.raises(UploadFailed) as anonymous:
            await upload(bundle, server.url(user=None) + "a.log", timeouts=FAST)
    assert wrong.value.status == "PermissionDenied"
    assert anonymous.value.status == "PermissionDenied"
    assert list(root.iterdir()) == []


async def test_ftp_server_that_never_answers(bundle: Path) -> None:
    """No FTP greeting ever comes: the attempt ends within the idle/connect bounds."""
    with SilentServer() as silent, trio.fail_after(4), pytest.raises(UploadFailed) as failed:
        await upload(bundle, f"ftp://127.0.0.1:{silent.port}/a.log", timeouts=FAST)
    assert failed.value.status == "UploadFailure"


async def test_unsupported_protocol_is_final(bundle: Path) -> None:
    with pytest.raises(UploadFailed) as failed:
        await upload(bundle, "sftp://host/a.log", timeouts=FAST)
    assert (failed.value.status, failed.value.final) == ("NotSupportedOperation", True)


async def test_nobody_listening_is_an_upload_failure(bundle: Path) -> None:
    with SilentServer() as silent:
        port = silent.port
    with pytest.raises(UploadFailed) as failed:
        await upload(bundle, f"http://127.0.0.1:{port}/a.log", timeouts=FAST)
    assert failed.value.status == "UploadFailure"
