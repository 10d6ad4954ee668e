"""Real file servers for the firmware downloads, each in its own thread: HTTP and HTTPS (stdlib http.server,
TLS from a trustme CA) and FTP (pyftpdlib).

The HTTP server serves `files` (URL path → bytes) and can misbehave on purpose, per path: `stall_after[path]`
sends the headers (with the full Content-Length) and that many bytes, then stops sending while keeping the
connection open (the first `stall_first[path]` requests only, if given); `delay[path]` waits that long (or
until `hurry` is set) before the body; `no_length` paths are sent without Content-Length (the end is the
connection's close); `redirects[path]` answers (status, Location) instead of the file.
`requests` counts the GETs per path, so a test sees how many attempts the station made.
"""

from __future__ import annotations

import contextlib
import http.server
import ssl
import threading
from collections import Counter
from collections.abc import Iterator
from pathlib import Path

import trustme
from pyftpdlib.authorizers import DummyAuthorizer
from pyftpdlib.handlers import FTPHandler
from pyftpdlib.servers import FTPServer


class FileServer(http.server.ThreadingHTTPServer):
    daemon_threads = True

    def __init__(self) -> None:
        super().__init__(("127.0.0.1", 0), _Handler)
        self.files: dict[str, bytes] = {}
        self.stall_after: dict[str, int] = {}
        self.stall_first: dict[str, int] = {}  # stall only this many requests of the path (default: all)
        self.no_length: set[str] = set()
        self.redirects: dict[str, tuple[int, str]] = {}
        self.authorization: dict[str, str | None] = {}  # the last Authorization header per path
        self.delay: dict[str, float] = {}
        self.hurry = threading.Event()  # ends every `delay` early
        self.requests: Counter[str] = Counter()
        self.released = threading.Event()  # set at shutdown: stalled handlers end
        self.scheme = "http"

    def url(self, path: str) -> str:
        return f"{self.scheme}://localhost:{self.server_address[1]}{path}"


class _Handler(http.server.BaseHTTPRequestHandler):
    server: FileServer

    def log_message(self, format: str, *args: object) -> None:
        pass  # the test output is not the place for access logs

    def do_GET(self) -> None:
        server = self.server
        server.requests[self.path] += 1
        server.authorization[self.path] = self.headers.get("Authorization")
        if self.path in server.redirects:
            status, location = server.redirects[self.path]
            self.send_response(status)
            self.send_header("Location", location)
            self.send_header("Content-Length", "0")
            self.end_headers()
            return
        body = server.files.get(self.path)
        if body is None:
            self.send_error(404, "Not Found")
            return
        self.send_response(200)
        self.send_header("Content-Type", "application/octet-stream")
        if self.path not in server.no_length:
            self.send_header("Content-Length", str(len(body)))
        else:
            self.send_header("Connection", "close")
        self.end_headers()
        stall = server.stall_after.get(self.path)
        if stall is not None and server.requests[self.path] > server.stall_first.get(self.path, 1 << 30):
            stall = None
        if self.path in server.delay:
            server.hurry.wait(server.delay[self.path])
        with contextlib.suppress(OSError):
            if stall is not None:
                self.wfile.write(body[:stall])
                self.wfile.flush()
                server.released.wait(30)  # never sends the rest
                return
            self.wfile.write(body)
        self.close_connection = True


@contextlib.contextmanager
def http_server(tls: trustme.CA | None = None) -> Iterator[FileServer]:
    server = FileServer()
    if tls is not None:
        context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
        tls.issue_cert("localhost", "127.0.0.1").configure_cert(context)
        server.socket = context.wrap_socket(server.socket, server_side=True)
        server.scheme = "https"
    thread = threading.Thread(target=server.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True)
    thread.start()
    try:
        yield server
    finally:
        server.released.set()
        server.shutdown()
        server.server_close()
        thread.join(5)


class FtpServer:
    def __init__(self, root: Path) -> None:
        self.root = root
        authorizer = DummyAuthorizer()
        authorizer.add_anonymous(str(root))
        authorizer.add_user("fw", "fw-secret", str(root), perm="elr")
        handler = type("Handler", (FTPHandler,), {"authorizer": authorizer, "passive_ports": None})
        self._server = FTPServer(("127.0.0.1", 0), handler)
        self.port = self._server.address[1]
        self._stop = threading.Event()

    def url(self, name: str, *, user: str | None = None) -> str:
        creds = f"{user}:fw-secret@" if user else ""
        return f"ftp://{creds}127.0.0.1:{self.port}/{name}"

        self._stop = threading.Event()

    def serve(self) -> None:
        """pyftpdlib's loop in slices, so the thread can be stopped; everything closed from this thread."""
        while not self._stop.is_set():
            self._server.serve_forever(timeout=0.05, blocking=False, handle_exit=False)
        self._server.close_all()

    def stop(self) -> None:
        self._stop.set()


@contextlib.contextmanager
def ftp_server(root: Path) -> Iterator[FtpServer]:
    server = FtpServer(root)
    thread = threading.Thread(target=server.serve, daemon=True)
    thread.start()
    try:
        yield server
    finally:
        server.stop()
        thread.join(5)
