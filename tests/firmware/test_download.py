"""Downloads over HTTP, HTTPS and FTP from real servers, and every way one must end: a stall mid-file, the overall
timeout, a file over the cap (announced or not), too little free space, a missing file, cancellation; redirects
followed (bounded, never HTTPS to HTTP, credentials only to their host)."""

from __future__ import annotations

import os
import ssl
from pathlib import Path

import pytest
import trio
import trustme

from appliance.firmware.download import DownloadError, Limits, download
from tests.firmware.servers import ftp_server, http_server

BODY = os.urandom(300_000)


def left_behind(directory: Path, name: str = "fw.img") -> list[Path]:
    """The file itself (if the download failed it must not exist) and any partial file."""
    return [p for p in directory.iterdir() if p.name == name or p.name.endswith(".part")]


def content(path: Path) -> bytes:
    return path.read_bytes()


FAST = Limits(connect_timeout=2, stall_timeout=0.5, transfer_timeout=10, max_bytes=1_000_000, reserve_bytes=0)


async def test_http(tmp_path: Path) -> None:
    with http_server() as server:
        server.files["/fw.img"] = BODY
        assert await download(server.url("/fw.img"), tmp_path / "fw.img", FAST) == len(BODY)
    assert content(tmp_path / "fw.img") == BODY
    assert [p.name for p in left_behind(tmp_path)] == ["fw.img"]


async def test_https_with_the_configured_ca(tmp_path: Path) -> None:
    ca = trustme.CA()
    ca_file = tmp_path / "ca.pem"
    ca.cert_pem.write_to_path(str(ca_file))
    with http_server(tls=ca) as server:
        server.files["/fw.img"] = BODY
        await download(
            server.url("/fw.img"),
            tmp_path / "fw.img",
            FAST,
            ssl_context=lambda: ssl.create_default_context(cafile=str(ca_file)),
        )
        assert content(tmp_path / "fw.img") == BODY
        with pytest.raises(DownloadError, match="cannot connect"):  # a server the station does not trust
            await download(server.url("/fw.img"), tmp_path / "other.img", FAST)


@pytest.mark.parametrize("user", [None, "fw"])
async def test_ftp(tmp_path: Path, user: str | None) -> None:
    root = tmp_path / "ftp"
    root.mkdir()
    (root / "fw.img").write_bytes(BODY)
    with ftp_server(root) as server:
        assert await download(server.url("fw.img", user=user), tmp_path / "fw.img", FAST) == len(BODY)
        with pytest.raises(DownloadError, match=r"RETR|550"):
            await download(server.url("missing.img"), tmp_path / "missing.img", FAST)
    assert content(tmp_path / "fw.img") == BODY


async def test_missing_file(tmp_path: Path) -> None:
    with http_server() as server, pytest.raises(DownloadError, match="HTTP 404"):
        await download(server.url("/nope.img"), tmp_path / "fw.img", FAST)


async def test_server_that_stops_sending_mid_file(tmp_path: Path) -> None:
    with http_server() as server:
        server.files["/fw.img"] = BODY
        server.stall_after["/fw.img"] = 100_000
        started = trio.current_time()
        with pytest.raises(DownloadError, match="stalled"):
            await download(server.url("/fw.img"), tmp_path / "fw.img", FAST)
        assert trio.current_time() - started < 5  # the stall timeout (0.5 s) ended it, not the 30 s server wait
    assert left_behind(tmp_path) == []


async def test_overall_timeout_while_the_server_trickles(tmp_path: Path) -> None:
    """A stall timeout longer than the transfer timeout: the overall cancel scope ends it and the thread stops."""
    limits = Limits(connect_timeout=2, stall_timeout=20, transfer_timeout=0.5, max_bytes=1_000_000, reserve_bytes=0)
    with http_server() as server:
        server.files["/fw.img"] = BODY
        server.stall_after["/fw.img"] = 1000
        started = trio.current_time()
        with pytest.raises(DownloadError, match="not complete within"):
            await download(server.url("/fw.img"), tmp_path / "fw.img", limits)
        assert trio.current_time() - started < 5
        await trio.sleep(0.2)  # the worker saw its socket shut down and removed its partial file
    assert left_behind(tmp_path) == []


@pytest.mark.parametrize("announced", [True, False])
async def test_file_over_the_cap(tmp_path: Path, announced: bool) -> None:
    limits = Limits(connect_timeout=2, stall_timeout=1, transfer_timeout=10, max_bytes=100_000, reserve_bytes=0)
    with http_server() as server:
        server.files["/big.img"] = BODY
        if not announced:
            server.no_length.add("/big.img")
        with pytest.raises(DownloadError, match=r"over the|limit"):
            await download(server.url("/big.img"), tmp_path / "big.img", limits)
    assert left_behind(tmp_path, "big.img") == []


async def test_not_enough_free_space(tmp_path: Path) -> None:
    free = os.statvfs(tmp_path).f_bavail * os.statvfs(tmp_path).f_frsize
    limits = Limits(
        connect_timeout=2, stall_timeout=1, transfer_timeout=10, max_bytes=1_000_000, reserve_bytes=free + 10**9
    )
    with http_server() as server:
        server.files["/fw.img"] = BODY
        with pytest.raises(DownloadError, match="not enough free space"):
            await download(server.url("/fw.img"), tmp_path / "fw.img", limits)


async def test_unsupported_scheme_and_bad_url(tmp_path: Path) -> None:
    with pytest.raises(DownloadError, match="unsupported scheme"):
        await download("sftp://host/fw.img", tmp_path / "fw.img", FAST)
    with pytest.raises(DownloadError, match=r"cannot connect|no connection"):
        await download("http://127.0.0.1:9/fw.img", tmp_path / "fw.img", FAST)  # nothing listens on discard


async def test_cancellation_ends_the_transfer(tmp_path: Path) -> None:
    with http_server() as server:
        server.files["/fw.img"] = BODY
        server.stall_after["/fw.img"] = 1000
        limits = Limits(connect_timeout=2, stall_timeout=20, transfer_timeout=20, max_bytes=1_000_000, reserve_bytes=0)
        with trio.move_on_after(0.3) as scope:
            await download(server.url("/fw.img"), tmp_path / "fw.img", limits)
        assert scope.cancelled_caught
        await trio.sleep(0.2)
    assert left_behind(tmp_path) == []


@pytest.mark.parametrize("status", [301, 302, 303, 307, 308])
async def test_redirects_are_followed(tmp_path: Path, status: int) -> None:
    with http_server() as server, http_server() as cdn:
        cdn.files["/blob/fw.img"] = BODY
        server.redirects["/fw.img"] = (status, "/moved/fw.img")  # relative: resolved against the URL
        server.redirects["/moved/fw.img"] = (status, cdn.url("/blob/fw.img").replace("localhost", "127.0.0.1"))
        url = server.url("/fw.img").replace("://", "://user:secret@")
        assert await download(url, tmp_path / "fw.img", FAST) == len(BODY)
        assert server.authorization["/moved/fw.img"] is not None  # the same host: the credentials go along
        assert cdn.authorization["/blob/fw.img"] is None  # another host never sees them
    assert content(tmp_path / "fw.img") == BODY


async def test_redirect_loops_and_bad_targets_end_the_attempt(tmp_path: Path) -> None:
    with http_server() as server:
        server.redirects["/loop"] = (302, "/loop")
        with pytest.raises(DownloadError, match="more than 5 redirects"):
            await download(server.url("/loop"), tmp_path / "fw.img", FAST)
        assert server.requests["/loop"] == 6
        server.redirects["/ftp"] = (302, "ftp://localhost/fw.img")
        server.redirects["/none"] = (302, "")
        with pytest.raises(DownloadError, match="not HTTP"):
            await download(server.url("/ftp"), tmp_path / "fw.img", FAST)
        with pytest.raises(DownloadError, match="without a Location"):
            await download(server.url("/none"), tmp_path / "fw.img", FAST)
    assert left_behind(tmp_path) == []


async def test_a_redirect_from_https_to_http_is_refused(tmp_path: Path) -> None:
    ca = trustme.CA()
    ca_file = tmp_path / "ca.pem"
    ca.cert_pem.write_to_path(str(ca_file))
    with http_server(tls=ca) as secure, http_server() as plain:
        plain.files["/fw.img"] = BODY
        secure.redirects["/fw.img"] = (302, plain.url("/fw.img"))
        with pytest.raises(DownloadError, match="HTTPS to plain HTTP"):
            await download(
                secure.url("/fw.img"),
                tmp_path / "fw.img",
                FAST,
                ssl_context=lambda: ssl.create_default_context(cafile=str(ca_file)),
            )
        assert plain.requests["/fw.img"] == 0
