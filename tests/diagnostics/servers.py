"""Real upload servers for the log-upload tests, each in its own thread: HTTP(S) PUT (stdlib http.server, TLS with
a trustme certificate), FTP (pyftpdlib), and a TCP server that accepts connections and never answers."""

from __future__ import annotations

import logging
import socket
import ssl
import threading
import time
from dataclasses import dataclass
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import trustme
from pyftpdlib.authorizers import DummyAuthorizer
from pyftpdlib.handlers import FTPHandler
from pyftpdlib.servers import FTPServer


@dataclass(frozen=True)
class Received:
    path: str
    body: bytes
    headers: dict[str, str]


class HttpUploadServer:
    """Takes PUTs and answers `status`; with `hold` set, waits for it before answering (an upload in progress)."""

    def __init__(
        self,
        *,
        status: int = 201,
        ca: trustme.CA | None = None,
        hold: threading.Event | None = None,
        hostname: str = "localhost",
    ) -> None:
        self.status = status
        self.hold = hold
        self.received: list[Received] = []
        self.requests = 0
        #: time.monotonic() at each request's arrival.
        self.times: list[float] = []
        self.ca = ca
        server = self

        class Handler(BaseHTTPRequestHandler):
            def do_PUT(self) -> None:
                server.requests += 1
                server.times.append(time.monotonic())
                length = int(self.headers.get("Content-Length", "0"))
                body = self.rfile.read(length)
                if server.hold is not None:
                    server.hold.wait(10)
                if 200 <= server.status < 300:
                    server.received.append(Received(self.path, body, dict(self.headers.items())))
                self.send_response(server.status)
                self.send_header("Content-Length", "0")
                self.end_headers()

            def log_message(self, format: str, *args: Any) -> None:
                pass

        self._httpd = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self._httpd.daemon_threads = True
        self.scheme = "http"
        if ca is not None:
            context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
            ca.issue_cert(hostname).configure_cert(context)
            self._httpd.socket = context.wrap_socket(self._httpd.socket, server_side=True)
            self.scheme = "https"
        self.hostname = hostname
        self._thread = threading.Thread(target=self._httpd.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True)

    @property
    def url(self) -> str:
        return f"{self.scheme}://{self.hostname}:{self._httpd.server_address[1]}/logs/"

    def __enter__(self) -> HttpUploadServer:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        if self.hold is not None:
            self.hold.set()
        self._httpd.shutdown()
        self._httpd.server_close()
        self._thread.join(5)


class SilentServer:
    """Accepts TCP connections and never reads or answers: a stalled upload server."""

    def __init__(self) -> None:
        self._sock = socket.create_server(("127.0.0.1", 0))
        self._sock.settimeout(0.05)
        self.accepted = 0
        self._held: list[socket.socket] = []
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._serve, daemon=True)

    @property
    def port(self) -> int:
        return int(self._sock.getsockname()[1])

    def _serve(self) -> None:
        while not self._stop.is_set():
            try:
                conn, _ = self._sock.accept()
            except TimeoutError:
                continue
            self.accepted += 1
            self._held.append(conn)

    def __enter__(self) -> SilentServer:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join(5)
        for conn in self._held:
            conn.close()
        self._sock.close()


class FtpUploadServer:
    """pyftpdlib with one user (`logs` / `secret`, write access to `root`) and anonymous read-only access."""

    USER = "logs"
    PASSWORD = "secret"

    def __init__(self, root: Path) -> None:
        logging.getLogger("pyftpdlib").setLevel(logging.WARNING)
        self.root = root
        authorizer = DummyAuthorizer()
        authorizer.add_user(self.USER, self.PASSWORD, str(root), perm="elradfmw")
        authorizer.add_anonymous(str(root), perm="elr")
        handler = type("Handler", (FTPHandler,), {"authorizer": authorizer, "timeout": 10, "auth_failed_timeout": 0.05})
        self._server = FTPServer(("127.0.0.1", 0), handler)
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._serve, daemon=True)

    @property
    def port(self) -> int:
        return int(self._server.address[1])

    def url(self, user: str | None = USER, password: str | None = PASSWORD) -> str:
        auth = f"{user}:{password}@" if user is not None else ""
        return f"ftp://{auth}127.0.0.1:{self.port}/"

    def _serve(self) -> None:
        while not self._stop.is_set():
            self._server.serve_forever(timeout=0.05, blocking=False)
        self._server.close_all()

    def __enter__(self) -> FtpUploadServer:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join(5)
