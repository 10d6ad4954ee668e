"""A line-oriented serial port driven from Trio, and the back-off between attempts to re-open one.

Why not a thread per port: the reader and the controller board speak short text lines, and a POSIX serial port
(or pyserial's `socket://` stand-in) has a file descriptor the event loop can wait on. Reading only what is
there once it is readable (timeout 0) never blocks the loop; opening may (a USB adapter settling), so it runs in
a worker thread. Writing is non-blocking too (write_timeout 0): a board that does not drain a 40-byte command
is as good as gone.

A port that disappears (USB unplugged, the pty's other side closed, the socket reset) surfaces as `PortLost`
from `lines()` or `write()`; whoever owns the port reports the device lost and calls `open()` again under
`Backoff`.
"""

from __future__ import annotations

import contextlib
import logging
from collections.abc import AsyncIterator
from dataclasses import dataclass

import serial
import trio

from appliance.hardware.serial.settings import PortSettings

log = logging.getLogger("appliance.hardware.serial")


class PortLost(Exception):
    """The port cannot be opened, or it vanished while open (the message says which and why)."""


@dataclass
class Backoff:
    """Re-open delays: 0.5 s, doubling, at most `maximum`; `reset()` after a port answered."""

    maximum: float = 30.0
    first: float = 0.5
    _next: float = 0.0

    def next_delay(self) -> float:
        delay = self._next or self.first
        self._next = min(delay * 2, self.maximum)
        return delay

    def reset(self) -> None:
        self._next = 0.0


def open_serial(settings: PortSettings, *, timeout: float = 0.0, write_timeout: float | None = 0.0) -> serial.Serial:
    """Open the port (blocking; call in a thread). PortLost names the port and the cause."""
    try:
        port: serial.Serial = serial.serial_for_url(
            settings.url,
            baudrate=settings.baudrate,
            parity=settings.parity,
            stopbits=settings.stopbits,
            bytesize=settings.bytesize,
            timeout=timeout,
            write_timeout=write_timeout,
        )
        return port
    except (serial.SerialException, OSError, ValueError) as exc:
        raise PortLost(f"cannot open {settings.url}: {_why(exc)}") from None


class LinePort:
    """Text lines in and out of one serial port; lines over `max_line` bytes are cut off and reported."""

    def __init__(self, settings: PortSettings, *, max_line: int = 128) -> None:
        self.settings = settings
        self.max_line = max_line
        self._port: serial.Serial | None = None

    async def open(self) -> None:
        self.close()
        self._port = await trio.to_thread.run_sync(open_serial, self.settings)

    def close(self) -> None:
        port, self._port = self._port, None
        if port is not None:
            with contextlib.suppress(serial.SerialException, OSError, ValueError, RuntimeError):
                trio.lowlevel.notify_closing(port.fileno())  # a task waiting on it gets ClosedResourceError
            with contextlib.suppress(serial.SerialException, OSError):
                port.close()

    async def lines(self) -> AsyncIterator[bytes | None]:
        """Each complete line without its CR/LF; None for a line that was too long (its bytes are dropped up to
        the next line end). Raises PortLost when the port goes away."""
        buffer = bytearray()
        overflow = False
        while True:
            chunk = await self._read_some()
            buffer += chunk
            while True:
                cut = min((i for i in (buffer.find(b"\n"), buffer.find(b"\r")) if i >= 0), default=-1)
                if cut < 0:
                    break
                line, buffer = bytes(buffer[:cut]), buffer[cut + 1 :]
                if overflow:
                    overflow = False
                    yield None
                elif line:
                    yield line
            if len(buffer) > self.max_line:
                buffer.clear()
                overflow = True

    async def _read_some(self) -> bytes:
        port = self._port
        if port is None:
            raise PortLost(f"{self.settings.url} is not open")
        try:
            await trio.lowlevel.wait_readable(port.fileno())
            data = port.read(max(port.in_waiting, 1))
        except (serial.SerialException, OSError, TypeError, ValueError, trio.ClosedResourceError) as exc:
            self.close()
            raise PortLost(f"{self.settings.url} disappeared: {_why(exc)}") from None
        if not data:  # readable but nothing there: the other end hung up
            self.close()
            raise PortLost(f"{self.settings.url} disappeared: end of file")
        return bytes(data)

    def write_line(self, text: str) -> None:
        """Send one line (CR LF appended). Raises PortLost if the port is gone or does not take it."""
        port = self._port
        if port is None:
            raise PortLost(f"{self.settings.url} is not open")
        try:
            port.write(text.encode("ascii") + b"\r\n")
        except (serial.SerialException, OSError, ValueError) as exc:
            self.close()
            raise PortLost(f"{self.settings.url}: write failed: {_why(exc)}") from None


def _why(exc: BaseException) -> str:
    if isinstance(exc, OSError) and exc.strerror:
        return exc.strerror.lower()
    text = str(exc) or type(exc).__name__
    return text.splitlines()[0][:200]
