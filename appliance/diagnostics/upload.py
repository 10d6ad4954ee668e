"""Upload clients for GetLog (CONTRACT): HTTP(S) `PUT` of the file to the URL, FTP `STOR`.

Each transfer is blocking stdlib code (http.client, ftplib) in a worker thread, bounded three ways so a server
that stalls can never hold an upload open:

- `connect`: the TCP connect (and TLS handshake) must finish within it;
- `idle`: every later socket operation, so a server that accepts and then never reads or never answers ends
  the attempt within this many seconds;
- `transfer`: the whole attempt, a Trio deadline around the thread; when it fires (or the upload is cancelled)
  the sockets are shut down from the Trio side, which ends the blocked thread at once.

A failure is an `UploadFailed` carrying the LogStatusNotification status it means: PermissionDenied (the server
refused our credentials or the path), NotSupportedOperation (the server or this station does not do that
operation, e.g. an `sftp://` URL or an HTTP server without PUT: retrying cannot help), BadMessage (the server's
answer broke the protocol, or it called our request malformed), UploadFailure (everything else: unreachable,
timed out, server error). URLs appear in log lines with any user:password replaced by `***`.
"""

from __future__ import annotations

import base64
import contextlib
import logging
import socket
import ssl
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING
from urllib.parse import SplitResult, quote, unquote, urlsplit

import trio

from appliance.util.deferred import Deferred

if TYPE_CHECKING:
    import ftplib
    from http import client as http_client
else:  # loaded by the first upload of each kind, not by every station at boot
    ftplib = Deferred("ftplib")
    http_client = Deferred("http.client")

log = logging.getLogger("appliance.diagnostics.upload")

CHUNK = 64 * 1024
#: The body of an HTTP answer we read at most (its text goes into a log line when the upload fails).
ANSWER_BYTES = 4096
SCHEMES = ("http", "https", "ftp")


@dataclass(frozen=True)
class Timeouts:
    connect: float = 10.0
    idle: float = 30.0
    transfer: float = 300.0


class UploadFailed(Exception):
    """One attempt failed; `status` is the LogStatusNotification status it stands for."""

    def __init__(self, status: str, reason: str, *, final: bool = False) -> None:
        super().__init__(reason)
        self.status = status
        self.reason = reason
        #: Retrying cannot help (the operation is not supported): report at once.
        self.final = final


def target_url(remote_location: str, filename: str) -> str:
    """Where the file goes: `remoteLocation`, with the file name appended when it ends in `/` (CONTRACT)."""
    if remote_location.endswith("/"):
        return remote_location + quote(filename)
    return remote_location


def shown(url: str) -> str:
    """The URL as log lines show it: user:password replaced by `***`."""
    try:
        parts = urlsplit(url)
    except ValueError:
        return "<not a URL>"
    if "@" not in parts.netloc:
        return url
    return parts._replace(netloc="***@" + parts.netloc.rpartition("@")[2]).geturl()


def check_url(url: str) -> SplitResult:
    """The URL split, or UploadFailed: NotSupportedOperation for a scheme we do not speak, UploadFailure for a
    URL without a host."""
    try:
        parts = urlsplit(url)
        parts.port  # noqa: B018 - raises ValueError for a bad port
    except ValueError as exc:
        raise UploadFailed("UploadFailure", f"not a usable URL: {exc}", final=True) from None
    if parts.scheme.lower() not in SCHEMES:
        raise UploadFailed(
            "NotSupportedOperation", f"unsupported protocol {parts.scheme!r} (HTTP, HTTPS, FTP)", final=True
        )
    if not parts.hostname:
        raise UploadFailed("UploadFailure", "the URL has no host", final=True)
    return parts


async def upload(path: Path, url: str, *, timeouts: Timeouts, ssl_context: ssl.SSLContext | None = None) -> None:
    """Send the file at `path` to `url` once; raises UploadFailed."""
    parts = check_url(url)
    transfer: _Transfer
    if parts.scheme.lower() == "ftp":
        transfer = _FtpStor(parts, path, timeouts)
    else:
        transfer = _HttpPut(parts, path, timeouts, ssl_context or ssl.create_default_context())
    try:
        with trio.fail_after(timeouts.transfer):
            try:
                await trio.to_thread.run_sync(transfer.run, abandon_on_cancel=True)
            except trio.Cancelled:
                transfer.abort()  # the thread's blocked socket call fails now; it ends on its own
                raise
    except trio.TooSlowError:
        raise UploadFailed("UploadFailure", f"not finished within {timeouts.transfer:g} s") from None


class _Transfer:
    def __init__(self, parts: SplitResult, path: Path, timeouts: Timeouts) -> None:
        self.parts = parts
        self.path = path
        self.timeouts = timeouts
        self._sockets: list[socket.socket] = []

    def run(self) -> None:
        raise NotImplementedError

    def _track(self, sock: socket.socket | None) -> None:
        if sock is not None:
            self._sockets.append(sock)

    def abort(self) -> None:
        """Called from the Trio thread: shut the sockets so the worker's blocked call returns with an error."""
        for sock in self._sockets:
            with contextlib.suppress(OSError):
                sock.shutdown(socket.SHUT_RDWR)


def _credentials(parts: SplitResult) -> tuple[str | None, str | None]:
    user = unquote(parts.username) if parts.username is not None else None
    password = unquote(parts.password) if parts.password is not None else None
    return user, password


class _HttpPut(_Transfer):
    def __init__(self, parts: SplitResult, path: Path, timeouts: Timeouts, context: ssl.SSLContext) -> None:
        super().__init__(parts, path, timeouts)
        self.context = context

    def run(self) -> None:
        parts = self.parts
        conn: http_client.HTTPConnection
        if parts.scheme.lower() == "https":
            conn = http_client.HTTPSConnection(
                parts.hostname or "", parts.port, timeout=self.timeouts.connect, context=self.context, blocksize=CHUNK
            )
        else:
            conn = http_client.HTTPConnection(
                parts.hostname or "", parts.port, timeout=self.timeouts.connect, blocksize=CHUNK
            )
        size = self.path.stat().st_size
        headers = {"Content-Length": str(size), "Content-Type": "text/plain; charset=utf-8"}
        user, password = _credentials(parts)
        if user is not None:
            token = base64.b64encode(f"{user}:{password or ''}".encode()).decode()
            headers["Authorization"] = f"Basic {token}"
        target = parts.path or "/"
        if parts.query:
            target += "?" + parts.query
        try:
            conn.connect()
            assert conn.sock is not None
            self._track(conn.sock)
            conn.sock.settimeout(self.timeouts.idle)
            with self.path.open("rb") as body:
                conn.request("PUT", target, body=body, headers=headers)
            answer = conn.getresponse()
            text = answer.read(ANSWER_BYTES)
        except ssl.SSLCertVerificationError as exc:
            raise UploadFailed(
                "UploadFailure", f"the server's certificate is not trusted: {exc.verify_message}"
            ) from None
        except http_client.HTTPException as exc:
            raise UploadFailed("BadMessage", f"not an HTTP answer: {type(exc).__name__} {exc}") from None
        except TimeoutError:
            raise UploadFailed("UploadFailure", f"no progress for {self.timeouts.idle:g} s") from None
        except OSError as exc:
            raise UploadFailed("UploadFailure", f"{type(exc).__name__}: {exc}") from None
        finally:
            conn.close()
        status = answer.status
        if 200 <= status < 300:
            return
        detail = f"HTTP {status} {answer.reason}: {text[:200].decode(errors='replace')}".strip()
        if status in (401, 403, 407):
            raise UploadFailed("PermissionDenied", detail)
        if status in (405, 501):
            raise UploadFailed("NotSupportedOperation", detail, final=True)
        if status in (400, 411, 413, 414, 415, 422):
            raise UploadFailed("BadMessage", detail)
        raise UploadFailed("UploadFailure", detail)


class _FtpStor(_Transfer):
    def run(self) -> None:
        parts = self.parts
        user, password = _credentials(parts)
        # RFC 1738: the URL path is relative to the login directory.
        remote = unquote(parts.path[1:] if parts.path.startswith("/") else parts.path)
        if not remote or remote.endswith("/"):
            raise UploadFailed("UploadFailure", "the FTP URL names no file", final=True)
        ftp = ftplib.FTP(timeout=self.timeouts.connect)
        try:
            ftp.connect(parts.hostname or "", parts.port or 21)
            assert ftp.sock is not None
            self._track(ftp.sock)
            ftp.sock.settimeout(self.timeouts.idle)
            ftp.timeout = self.timeouts.idle  # the data connection's connect and transfer
            ftp.login(user or "anonymous", password if password is not None else "anonymous@")
            ftp.voidcmd("TYPE I")
            with ftp.transfercmd(f"STOR {remote}") as data, self.path.open("rb") as source:
                self._track(data)
                while chunk := source.read(CHUNK):
                    data.sendall(chunk)
            ftp.voidresp()
            with contextlib.suppress(OSError, ftplib.Error):  # stored; a dropped goodbye changes nothing
                ftp.quit()
        except ftplib.error_perm as exc:
            code = str(exc)[:3]
            if code in ("530", "532", "550", "553"):
                raise UploadFailed("PermissionDenied", f"FTP {exc}") from None
            if code in ("500", "501", "502", "504"):
                raise UploadFailed("NotSupportedOperation", f"FTP {exc}", final=True) from None
            raise UploadFailed("UploadFailure", f"FTP {exc}") from None
        except (ftplib.error_reply, ftplib.error_proto, EOFError) as exc:
            raise UploadFailed("BadMessage", f"FTP protocol: {type(exc).__name__} {exc}") from None
        except ftplib.error_temp as exc:
            raise UploadFailed("UploadFailure", f"FTP {exc}") from None
        except TimeoutError:
            raise UploadFailed("UploadFailure", f"no progress for {self.timeouts.idle:g} s") from None
        except OSError as exc:
            raise UploadFailed("UploadFailure", f"{type(exc).__name__}: {exc}") from None
        finally:
            ftp.close()
