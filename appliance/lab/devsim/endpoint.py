"""Where a simulated device is plugged in: a pseudo-terminal or a TCP port, as the station's config names it.

* `PtyEndpoint(link)`: a pty pair; its slave device (/dev/pts/N) is what the station opens, reached through a
  stable symlink `link`, as udev's /dev/serial/by-id/… names a USB adapter. `unplug()` closes the pair and
  removes the link (the station's port disappears: EIO); `plug()` makes a new pair behind the same link.
* `TcpEndpoint(port)`: a TCP listener on loopback for the station's `socket://127.0.0.1:PORT`; one client at
  a time; `unplug()` drops the client and stops listening, `plug()` listens again on the same port.
* `PtyRelay`: two pty pairs joined back to back (what `socat PTY PTY` does), for a simulator that must open a
  tty by name itself (pymodbus' serial server) while the station opens the other one.

All blocking, for the simulators' own threads; `read(timeout)` returns b"" when nothing came.
"""

from __future__ import annotations

import contextlib
import os
import select
import socket
import termios
import threading
import tty
from pathlib import Path


def _raw_pty() -> tuple[int, int]:
    master, slave = os.openpty()
    tty.setraw(slave, termios.TCSANOW)
    return master, slave


class PtyEndpoint:
    def __init__(self, link: Path) -> None:
        self.link = Path(link)
        self._master: int | None = None
        self._slave: int | None = None
        self._lock = threading.Lock()
        self.plug()

    @property
    def url(self) -> str:
        return str(self.link)

    def plug(self) -> None:
        with self._lock:
            if self._master is not None:
                return
            self._master, self._slave = _raw_pty()
            tmp = self.link.with_name(self.link.name + ".new")
            with contextlib.suppress(FileNotFoundError):
                tmp.unlink()
            tmp.symlink_to(os.ttyname(self._slave))
            tmp.replace(self.link)

    def unplug(self) -> None:
        with self._lock:
            with contextlib.suppress(FileNotFoundError):
                self.link.unlink()
            for fd in (self._master, self._slave):
                if fd is not None:
                    with contextlib.suppress(OSError):
                        os.close(fd)
            self._master = self._slave = None

    @property
    def plugged(self) -> bool:
        return self._master is not None

    @property
    def fd(self) -> int | None:
        """The master side, while plugged."""
        return self._master

    def read(self, timeout: float) -> bytes:
        fd = self._master
        if fd is None:
            threading.Event().wait(timeout)
            return b""
        try:
            ready, _, _ = select.select([fd], [], [], timeout)
            return os.read(fd, 4096) if ready else b""
        except OSError:  # unplugged meanwhile, or the station's side is not open (EIO)
            return b""

    def write(self, data: bytes) -> None:
        fd = self._master
        if fd is None:
            return
        with contextlib.suppress(OSError):
            os.write(fd, data)

    def close(self) -> None:
        self.unplug()


class TcpEndpoint:
    def __init__(self, port: int = 0, host: str = "127.0.0.1") -> None:
        self.host = host
        self.port = port
        self._listener: socket.socket | None = None
        self._client: socket.socket | None = None
        self.plug()

    @property
    def url(self) -> str:
        return f"socket://{self.host}:{self.port}"

    def plug(self) -> None:
        if self._listener is not None:
            return
        listener = socket.socket()
        listener.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        listener.bind((self.host, self.port))
        listener.listen(1)
        self.port = listener.getsockname()[1]
        self._listener = listener

    def unplug(self) -> None:
        for sock in (self._client, self._listener):
            if sock is not None:
                with contextlib.suppress(OSError):
                    sock.close()
        self._client = self._listener = None

    @property
    def plugged(self) -> bool:
        return self._listener is not None

    def read(self, timeout: float) -> bytes:
        listener, client = self._listener, self._client
        if listener is None:
            threading.Event().wait(timeout)
            return b""
        watch = [s for s in (listener, client) if s is not None]
        try:
            ready, _, _ = select.select(watch, [], [], timeout)
        except (OSError, ValueError):
            return b""
        data = b""
        for sock in ready:
            if sock is listener:
                new, _ = listener.accept()
                if self._client is not None:
                    self._client.close()
                self._client = new
            else:
                try:
                    data = sock.recv(4096)
                except OSError:
                    data = b""
                if not data:
                    sock.close()
                    self._client = None
        return data

    def write(self, data: bytes) -> None:
        client = self._client
        if client is not None:
            with contextlib.suppress(OSError):
                client.sendall(data)

    def close(self) -> None:
        self.unplug()


Endpoint = PtyEndpoint | TcpEndpoint


def endpoint_for(where: str) -> Endpoint:
    """`socket://HOST:PORT` (PORT 0: any free one) or a path for a pty's symlink."""
    if where.startswith("socket://"):
        host, _, port = where.removeprefix("socket://").rpartition(":")
        return TcpEndpoint(int(port or 0), host or "127.0.0.1")
    return PtyEndpoint(Path(where))


class PtyRelay:
    """Two raw pty pairs joined back to back: the station opens `link`, the simulator opens `inner`."""

    def __init__(self, link: Path) -> None:
        self.outer = PtyEndpoint(link)
        self._inner_master, self._inner_slave = _raw_pty()
        self.inner = os.ttyname(self._inner_slave)
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._pump, name=f"pty-relay {link.name}", daemon=True)
        self._thread.start()

    def _pump(self) -> None:
        inner = self._inner_master
        while not self._stop.is_set():
            outer = self.outer.fd
            fds = [inner] if outer is None else [inner, outer]
            try:
                ready, _, _ = select.select(fds, [], [], 0.1)
            except (OSError, ValueError):
                continue
            for fd in ready:
                try:
                    data = os.read(fd, 4096)
                except OSError:  # the outer pair was unplugged meanwhile
                    continue
                if fd == inner:
                    self.outer.write(data)
                else:
                    with contextlib.suppress(OSError):
                        os.write(inner, data)

    def close(self) -> None:
        self._stop.set()
        self._thread.join(2)
        self.outer.close()
        for fd in (self._inner_master, self._inner_slave):
            with contextlib.suppress(OSError):
                os.close(fd)
