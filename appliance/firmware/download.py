"""Downloading an image over HTTP, HTTPS or FTP so that it can neither hang nor fill the disk.

The transfer itself is blocking stdlib code (http.client, ftplib) in a worker thread; what bounds it:

* a connect timeout (TCP + TLS handshake / FTP greeting and login),
* a stall timeout on every socket read, so a server that stops sending mid-file ends the attempt,
* an overall transfer timeout — a Trio cancel scope around the thread; on expiry (or any cancellation, e.g.
  SIGTERM) the socket is shut down, which makes the thread's blocking read return at once, and the thread
  checks a flag between chunks, so no thread outlives its attempt by more than one read,
* a size cap (Content-Length / FTP SIZE checked before the first byte, the count checked on every chunk), and a
  free-space check that keeps `reserve_bytes` free on the data partition.

HTTP redirects (301, 302, 303, 307, 308) are followed, at most `MAX_REDIRECTS` of them, within the same overall
deadline: firmware is often served from a CDN or an object store behind a redirecting URL. A redirect from
HTTPS to plain HTTP is refused (it would drop the server check), and credentials from the URL are only sent to
the host they were given for.

Each attempt writes its own `.part` file, fsynced and renamed into place only when complete.
"""

from __future__ import annotations

import base64
import contextlib
import logging
import os
import shutil
import socket
import ssl
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, BinaryIO
from urllib.parse import SplitResult, unquote, urljoin, urlsplit

import trio

from appliance.util.deferred import Deferred

if TYPE_CHECKING:
    import ftplib
    from http import client as http_client
else:  # loaded by the first download of each kind, not by every station at boot
    ftplib = Deferred("ftplib")
    http_client = Deferred("http.client")

log = logging.getLogger("appliance.firmware.download")

CHUNK = 64 * 1024
SCHEMES = ("http", "https", "ftp")
MAX_REDIRECTS = 5
_REDIRECTS = (301, 302, 303, 307, 308)


class DownloadError(Exception):
    """An attempt failed; the message names the cause (it is logged and may be retried)."""


@dataclass(frozen=True)
class Limits:
    connect_timeout: float = 15.0
    stall_timeout: float = 30.0
    transfer_timeout: float = 900.0
    max_bytes: int = 512 * 1024 * 1024
    reserve_bytes: int = 16 * 1024 * 1024


class _Attempt:
    """What the Trio side and the worker thread share: the cancel flag and the socket to shut down."""

    def __init__(self) -> None:
        self.cancelled = threading.Event()
        self._lock = threading.Lock()
        self._sockets: list[socket.socket] = []

    def hold(self, sock: socket.socket | None) -> None:
        if sock is None:
            return
        with self._lock:
            self._sockets.append(sock)
            if self.cancelled.is_set():
                self._shutdown(sock)

    def cancel(self) -> None:
        with self._lock:
            self.cancelled.set()
            for sock in self._sockets:
                self._shutdown(sock)

    @staticmethod
    def _shutdown(sock: socket.socket) -> None:
        with contextlib.suppress(OSError):  # already closed: nothing left to interrupt
            sock.shutdown(socket.SHUT_RDWR)


def check_url(url: str) -> str | None:
    """Why `url` cannot be downloaded from, or None."""
    try:
        parts = urlsplit(url)
        parts.port  # noqa: B018 - raises ValueError for a bad port
    except ValueError as exc:
        return f"not a URL: {exc}"
    if parts.scheme.lower() not in SCHEMES:
        return f"unsupported scheme {parts.scheme!r} (supported: {', '.join(SCHEMES)})"
    if not parts.hostname:
        return "no host in the URL"
    return None


async def download(
    url: str,
    dest: Path,
    limits: Limits,
    *,
    ssl_context: Callable[[], ssl.SSLContext] = ssl.create_default_context,
    attempt_no: int = 1,
) -> int:
    """Fetch `url` into `dest` (replaced atomically); the number of bytes, or DownloadError."""
    problem = check_url(url)
    if problem:
        raise DownloadError(problem)
    part = dest.with_name(f"{dest.name}.{attempt_no}.part")
    attempt = _Attempt()
    deadline = time.monotonic() + limits.transfer_timeout
    with trio.move_on_after(limits.transfer_timeout) as scope:
        try:
            size = await trio.to_thread.run_sync(
                _fetch, url, part, limits, attempt, deadline, ssl_context, abandon_on_cancel=True
            )
        finally:
            attempt.cancel()  # the thread, if still reading, sees its socket shut and the flag set
    if scope.cancelled_caught:
        raise DownloadError(f"transfer not complete within {limits.transfer_timeout:g} s")
    await trio.to_thread.run_sync(os.replace, part, dest)
    return size


def _fetch(
    url: str, part: Path, limits: Limits, attempt: _Attempt, deadline: float, ssl_context: Callable[[], ssl.SSLContext]
) -> int:
    try:
        with open(part, "wb") as out:
            parts = urlsplit(url)
            scheme = parts.scheme.lower()
            if scheme == "ftp":
                size = _ftp(parts, out, limits, attempt, deadline)
            else:
                size = _http(parts, out, limits, attempt, deadline, ssl_context)
            out.flush()
            os.fsync(out.fileno())
        if attempt.cancelled.is_set():
            raise DownloadError("cancelled")
        return size
    except BaseException:
        part.unlink(missing_ok=True)
        raise


def _check_size(expected: int | None, limits: Limits, directory: Path) -> None:
    if expected is not None and expected > limits.max_bytes:
        raise DownloadError(f"the file has {expected} bytes, over the {limits.max_bytes}-byte limit")
    free = shutil.disk_usage(directory).free
    need = (expected or 0) + limits.reserve_bytes
    if free < need:
        raise DownloadError(f"not enough free space in {directory}: {free} bytes free, {need} needed")


class _Progress:
    """Logs the transfer every quarter (or every 10 s when the size is unknown)."""

    def __init__(self, url: str, expected: int | None) -> None:
        self._url, self._expected = _shown(url), expected
        self._next_quarter = 1
        self._last_log = time.monotonic()

    def update(self, done: int) -> None:
        if self._expected:
            while self._next_quarter <= 4 and done * 4 >= self._next_quarter * self._expected:
                log.info(
                    "downloading %s: %d%% (%d of %d bytes)", self._url, self._next_quarter * 25, done, self._expected
                )
                self._next_quarter += 1
        elif time.monotonic() - self._last_log >= 10:
            self._last_log = time.monotonic()
            log.info("downloading %s: %d bytes so far", self._url, done)


def _shown(url: str) -> str:
    """The URL without user:password (never logged)."""
    parts = urlsplit(url)
    if parts.password is None and parts.username is None:
        return url
    host = parts.hostname or ""
    return parts._replace(netloc=f"***@{host}" + (f":{parts.port}" if parts.port else "")).geturl()


def _copy(
    read: Callable[[int], bytes],
    out: BinaryIO,
    expected: int | None,
    limits: Limits,
    attempt: _Attempt,
    deadline: float,
    url: str,
) -> int:
    progress = _Progress(url, expected)
    done = 0
    checked_free = 0
    directory = Path(out.name).parent
    while True:
        if attempt.cancelled.is_set() or time.monotonic() > deadline:
            raise DownloadError("cancelled or out of time")
        try:
            chunk = read(CHUNK)
        except TimeoutError:
            raise DownloadError(f"stalled: no data for {limits.stall_timeout:g} s after {done} bytes") from None
        except (OSError, http_client.HTTPException) as exc:
            raise DownloadError(f"transfer broken after {done} bytes: {exc!r}") from None
        if not chunk:
            break
        done += len(chunk)
        if done > limits.max_bytes:
            raise DownloadError(f"more than {limits.max_bytes} bytes: over the limit")
        out.write(chunk)
        if expected is None and done - checked_free >= 4 * 1024 * 1024:
            checked_free = done
            if shutil.disk_usage(directory).free < limits.reserve_bytes:
                raise DownloadError(f"the data partition is running out of space after {done} bytes")
        progress.update(done)
    if attempt.cancelled.is_set():
        raise DownloadError("cancelled")
    if expected is not None and done != expected:
        raise DownloadError(f"the transfer ended after {done} of {expected} bytes")
    return done


def _http(
    parts: SplitResult,
    out: BinaryIO,
    limits: Limits,
    attempt: _Attempt,
    deadline: float,
    ssl_context: Callable[[], ssl.SSLContext],
) -> int:
    """GET `parts`, following redirects; the bytes copied into `out`."""
    credentials_for = parts.hostname
    for _ in range(MAX_REDIRECTS + 1):
        location = _http_once(parts, out, limits, attempt, deadline, ssl_context, credentials_for)
        if isinstance(location, int):
            return location
        target = urlsplit(urljoin(parts.geturl(), location))
        problem = check_url(target.geturl())
        if problem or target.scheme.lower() == "ftp":
            raise DownloadError(f"redirected to {_shown(target.geturl())}: {problem or 'not HTTP(S)'}")
        if parts.scheme.lower() == "https" and target.scheme.lower() == "http":
            raise DownloadError(f"redirected from HTTPS to plain HTTP ({_shown(target.geturl())}): refused")
        log.info("download redirected to %s", _shown(target.geturl()))
        parts = target
    raise DownloadError(f"more than {MAX_REDIRECTS} redirects")


def _http_once(
    parts: SplitResult,
    out: BinaryIO,
    limits: Limits,
    attempt: _Attempt,
    deadline: float,
    ssl_context: Callable[[], ssl.SSLContext],
    credentials_for: str | None,
) -> int | str:
    """One GET: the bytes copied, or the Location of a redirect."""
    host, port = parts.hostname or "", parts.port  # check_url refused a URL without a host
    conn: http_client.HTTPConnection
    if parts.scheme.lower() == "https":
        conn = http_client.HTTPSConnection(host, port, timeout=limits.connect_timeout, context=ssl_context())
    else:
        conn = http_client.HTTPConnection(host, port, timeout=limits.connect_timeout)
    try:
        if attempt.cancelled.is_set() or time.monotonic() > deadline:
            raise DownloadError("cancelled or out of time")
        try:
            conn.connect()
        except TimeoutError:
            raise DownloadError(f"no connection within {limits.connect_timeout:g} s") from None
        except (OSError, ssl.SSLError) as exc:
            raise DownloadError(f"cannot connect: {exc}") from None
        assert conn.sock is not None
        attempt.hold(conn.sock)
        conn.sock.settimeout(limits.stall_timeout)
        headers = {"User-Agent": "appliance-firmware", "Accept-Encoding": "identity"}
        if parts.username is not None and parts.hostname == credentials_for:
            creds = f"{unquote(parts.username)}:{unquote(parts.password or '')}".encode()
            headers["Authorization"] = "Basic " + base64.b64encode(creds).decode()
        target = (parts.path or "/") + (f"?{parts.query}" if parts.query else "")
        try:
            conn.request("GET", target, headers=headers)
            response = conn.getresponse()
        except TimeoutError:
            raise DownloadError(f"no answer within {limits.stall_timeout:g} s") from None
        except (OSError, http_client.HTTPException) as exc:
            raise DownloadError(f"request failed: {exc!r}") from None
        if response.status in _REDIRECTS:
            location = response.getheader("Location")
            if not location:
                raise DownloadError(f"HTTP {response.status} {response.reason} without a Location")
            return location
        if response.status != 200:
            raise DownloadError(f"HTTP {response.status} {response.reason}")
        length = response.getheader("Content-Length")
        expected = int(length) if length and length.isdigit() else None
        _check_size(expected, limits, Path(out.name).parent)
        return _copy(response.read, out, expected, limits, attempt, deadline, parts.geturl())
    finally:
        conn.close()


def _ftp(parts: SplitResult, out: BinaryIO, limits: Limits, attempt: _Attempt, deadline: float) -> int:
    ftp = ftplib.FTP(timeout=limits.connect_timeout)
    try:
        try:
            ftp.connect(parts.hostname or "", parts.port or 21)
            attempt.hold(ftp.sock)
            ftp.login(unquote(parts.username or "anonymous"), unquote(parts.password or "anonymous@"))
            ftp.voidcmd("TYPE I")
        except TimeoutError:
            raise DownloadError(f"no FTP session within {limits.connect_timeout:g} s") from None
        except (OSError, ftplib.Error, EOFError) as exc:
            raise DownloadError(f"FTP connect/login failed: {exc}") from None
        path = unquote(parts.path) or "/"
        assert ftp.sock is not None  # connected above
        ftp.sock.settimeout(limits.stall_timeout)
        try:
            expected: int | None = ftp.size(path)
        except (ftplib.Error, ValueError):
            expected = None  # SIZE is optional; the byte count still bounds the transfer
        except TimeoutError:
            raise DownloadError(f"no FTP answer within {limits.stall_timeout:g} s") from None
        _check_size(expected, limits, Path(out.name).parent)
        try:
            data = ftp.transfercmd(f"RETR {path}")
        except TimeoutError:
            raise DownloadError(f"no FTP data connection within {limits.stall_timeout:g} s") from None
        except (OSError, ftplib.Error, EOFError) as exc:
            raise DownloadError(f"FTP RETR {path}: {exc}") from None
        with data:
            attempt.hold(data)
            data.settimeout(limits.stall_timeout)
            size = _copy(data.recv, out, expected, limits, attempt, deadline, parts.geturl())
        try:
            ftp.voidresp()
        except (OSError, ftplib.Error, EOFError) as exc:
            raise DownloadError(f"FTP transfer not confirmed: {exc}") from None
        return size
    finally:
        ftp.close()
