"""A TCP chaos proxy: pull the cable, reset connections, refuse new ones — without root.

It ships in the lab package because `appliance demo` cuts the network with it (tests and the torture
scenarios use it too). Put it between the station and the loopback CSMS (station → proxy → CSMS) and flip
faults from the test:

* `blackhole()` — a pulled cable: both directions go silent. Bytes are read and dropped (or, with
  `drop=False`, left unread so the peers' windows fill up); nothing is closed, no FIN, no RST. Only the
  station's own keep-alive (WebSocket ping with a deadline) can notice.
* `restore()` — plug it back in. New connections work again; an existing connection resumes (minus what
  was dropped). A real TCP connection cut for long would be dead by then — the station must not rely on
  resuming.
* `reset_all()` — every connection gets an RST (SO_LINGER 0, then close), both towards the station and the
  CSMS: a firewall or a crashed CSMS host.
* `refuse(True)` — new connections are accepted then closed at once (mode "close": EOF during the
  handshake) or reset (mode "reset").

What a user-space proxy cannot emulate (use the netns + nftables setup of research/resilience.md §2 for
those): in drop mode the proxy's kernel ACKs the dropped bytes, so the sender's TCP_USER_TIMEOUT never fires;
a connect() to a blackholed proxy still completes (the kernel finishes the TCP handshake).

Implementation: one thread runs a `selectors` loop over non-blocking sockets. Test threads never touch the
sockets: each command is queued to that thread, which applies it between two I/O rounds, and the caller waits
until it has been applied — so `blackhole()` has taken effect when it returns. Buffers are bounded: a
direction stops reading once `buffer_limit` bytes wait to be written.
"""

from __future__ import annotations

import contextlib
import errno
import queue
import selectors
import socket
import struct
import threading
from collections.abc import Callable
from dataclasses import dataclass, field
from types import TracebackType
from typing import Any, Literal, Self, TypeVar

T = TypeVar("T")

_CHUNK = 64 * 1024
_LINGER_RST = struct.pack("ii", 1, 0)  # l_onoff=1, l_linger=0: close() sends RST instead of FIN
_COMMAND_TIMEOUT = 10.0


@dataclass(frozen=True)
class ProxyStats:
    """Counters, as a consistent snapshot."""

    accepted: int  # TCP connections accepted from clients (refused ones included)
    refused: int  # accepted then closed/reset at once because of refuse()
    active: int  # connections currently proxied
    resets: int  # connections ended by reset_all() or by an RST from either peer
    bytes_up: int  # client → upstream, delivered
    bytes_down: int  # upstream → client, delivered
    dropped_up: int  # client → upstream, swallowed by the blackhole
    dropped_down: int  # upstream → client, swallowed by the blackhole


@dataclass(eq=False)
class _Pipe:
    """One direction of one connection: bytes read from `src`, waiting to be written to `dst`."""

    name: Literal["up", "down"]
    buffer: bytearray = field(default_factory=bytearray)
    eof: bool = False  # src sent FIN
    shut: bool = False  # we passed the FIN on (shutdown(SHUT_WR) on dst)


@dataclass(eq=False)
class _Link:
    """A proxied connection: client socket, upstream socket and the two directions between them."""

    client: socket.socket
    upstream: socket.socket | None = None
    connecting: bool = False  # upstream connect() in progress
    up: _Pipe = field(default_factory=lambda: _Pipe("up"))
    down: _Pipe = field(default_factory=lambda: _Pipe("down"))
    dead: set[str] = field(default_factory=set)  # sides ("client"/"upstream") that errored and are closed

    @property
    def failed(self) -> bool:
        """A side errored (RST, refused connect …): the other side must be reset once we may show it."""
        return bool(self.dead)


class ChaosProxy:
    """`ChaosProxy(host, port).start()`; connect to `.port` instead of the upstream. Thread-safe."""

    def __init__(
        self,
        upstream_host: str,
        upstream_port: int,
        *,
        listen_host: str = "127.0.0.1",
        listen_port: int = 0,
        buffer_limit: int = 256 * 1024,
    ) -> None:
        self.upstream = (upstream_host, upstream_port)
        self.host = listen_host
        self.port = listen_port
        self._buffer_limit = buffer_limit
        self._commands: queue.SimpleQueue[tuple[Callable[[], Any], _Outcome]] = queue.SimpleQueue()
        self._thread: threading.Thread | None = None
        self._stopped = False
        self._lifecycle = threading.Lock()
        # Proxy thread only.
        self._selector: selectors.BaseSelector | None = None
        self._listener: socket.socket | None = None
        self._wake_r: socket.socket | None = None
        self._wake_w: socket.socket | None = None
        self._links: list[_Link] = []
        self._interest: dict[socket.socket, int] = {}
        self._blackholed: Literal["drop", "stall"] | None = None
        self._refusing: Literal["close", "reset"] | None = None
        self._running = False
        self._counts = dict.fromkeys(
            ("accepted", "refused", "resets", "bytes_up", "bytes_down", "dropped_up", "dropped_down"), 0
        )

    # ---- public API (any thread) ---------------------------------------------------------------------------

    def start(self) -> Self:
        with self._lifecycle:
            if self._thread is not None:
                raise RuntimeError("ChaosProxy already started")
            listener = socket.create_server((self.host, self.port), reuse_port=False)
            listener.setblocking(False)
            self.port = listener.getsockname()[1]
            self._listener = listener
            self._wake_r, self._wake_w = socket.socketpair()
            self._wake_r.setblocking(False)
            self._wake_w.setblocking(False)
            self._selector = selectors.DefaultSelector()
            self._selector.register(listener, selectors.EVENT_READ, None)
            self._selector.register(self._wake_r, selectors.EVENT_READ, None)
            self._running = True
            self._thread = threading.Thread(target=self._run, name=f"chaos-proxy:{self.port}", daemon=True)
            self._thread.start()
        return self

    def stop(self) -> None:
        """Close every connection (plain close) and the listener; end the thread. Idempotent."""
        with self._lifecycle:
            thread, already = self._thread, self._stopped
            self._stopped = True
        if thread is None or already:
            return
        self._execute(self._stop_now, allow_stopped=True)
        thread.join(_COMMAND_TIMEOUT)

    def __enter__(self) -> Self:
        return self.start()

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.stop()

    def blackhole(self, *, drop: bool = True) -> None:
        """Pull the cable: nothing passes either way, nothing is closed. `drop=True` reads and discards what
        arrives; `drop=False` stops reading, so the peers' send buffers and windows fill up."""
        self._execute(lambda: self._set_blackhole("drop" if drop else "stall"))

    def restore(self) -> None:
        """Plug the cable back in: forward again, and deliver EOFs/resets that happened meanwhile."""
        self._execute(lambda: self._set_blackhole(None))

    def reset_all(self) -> int:
        """RST every current connection, on both sides; return how many."""
        return self._execute(self._reset_all)

    def refuse(self, on: bool, *, mode: Literal["close", "reset"] = "close") -> None:
        """While on, accept new connections and immediately close (FIN) or reset (RST) them."""
        if mode not in ("close", "reset"):
            raise ValueError("mode must be 'close' or 'reset'")
        self._execute(lambda: setattr(self, "_refusing", mode if on else None))

    def stats(self) -> ProxyStats:
        return self._execute(lambda: ProxyStats(active=len(self._links), **self._counts))

    @property
    def connections_accepted(self) -> int:
        return self.stats().accepted

    @property
    def bytes_up(self) -> int:
        return self.stats().bytes_up

    @property
    def bytes_down(self) -> int:
        return self.stats().bytes_down

    # ---- commands: queued to the proxy thread --------------------------------------------------------------

    def _execute(self, command: Callable[[], T], *, allow_stopped: bool = False) -> T:
        if self._thread is None or (self._stopped and not allow_stopped):
            raise RuntimeError("ChaosProxy is not running")
        if threading.current_thread() is self._thread:
            return command()
        outcome = _Outcome()
        self._commands.put((command, outcome))
        if self._wake_w is not None:
            with contextlib.suppress(OSError):
                self._wake_w.send(b"x")
        if not outcome.done.wait(_COMMAND_TIMEOUT):
            raise RuntimeError("the chaos proxy thread did not respond (it has stopped?)")
        if outcome.error is not None:
            raise outcome.error
        return outcome.value

    def _run_commands(self) -> None:
        while True:
            try:
                command, outcome = self._commands.get_nowait()
            except queue.Empty:
                return
            try:
                outcome.value = command()
            except Exception as error:  # handed back to the calling thread
                outcome.error = error
            outcome.done.set()

    # ---- the proxy thread ----------------------------------------------------------------------------------

    def _run(self) -> None:
        assert self._selector is not None
        try:
            while self._running:
                self._update_interest()
                for key, events in self._selector.select(timeout=1.0):
                    # Only sockets are registered; the selector's stubs type `fileobj` as any file-like object.
                    self._dispatch(key.fileobj, key.data, events)  # type: ignore[arg-type]
                self._run_commands()
                self._progress()
        finally:
            self._close_everything()
            self._run_commands()  # release anyone who queued a command while we were stopping

    def _dispatch(self, sock: socket.socket, data: Any, events: int) -> None:
        if sock is self._wake_r:
            with contextlib.suppress(OSError):
                sock.recv(4096)
        elif sock is self._listener:
            self._accept()
        else:
            link, side = data
            if link not in self._links:
                return  # closed earlier in this round
            if events & selectors.EVENT_WRITE:
                self._on_writable(link, side)
            if events & selectors.EVENT_READ and link in self._links:
                self._on_readable(link, side)

    def _accept(self) -> None:
        assert self._listener is not None
        try:
            client, _ = self._listener.accept()
        except (BlockingIOError, InterruptedError):
            return
        self._counts["accepted"] += 1
        if self._refusing is not None:
            self._counts["refused"] += 1
            _close(client, reset=self._refusing == "reset")
            return
        client.setblocking(False)
        link = _Link(client)
        self._links.append(link)
        if self._blackholed is None:
            self._connect_upstream(link)
        # While blackholed the upstream is not even contacted (nothing gets through a pulled cable); restore()
        # connects it.

    def _connect_upstream(self, link: _Link) -> None:
        upstream = socket.socket(socket.AF_INET6 if ":" in self.upstream[0] else socket.AF_INET)
        upstream.setblocking(False)
        link.upstream = upstream
        link.connecting = True
        code = upstream.connect_ex(self.upstream)
        if code not in (0, errno.EINPROGRESS, errno.EWOULDBLOCK):
            self._fail(link, "upstream")

    def _on_writable(self, link: _Link, side: str) -> None:
        if side == "upstream" and link.connecting:
            assert link.upstream is not None
            if link.upstream.getsockopt(socket.SOL_SOCKET, socket.SO_ERROR) != 0:
                self._fail(link, side)  # the upstream refused: the client gets an RST, the nearest thing
                return
            link.connecting = False
            return
        pipe = link.up if side == "upstream" else link.down
        dst = link.upstream if side == "upstream" else link.client
        assert dst is not None
        try:
            sent = dst.send(pipe.buffer)
        except (BlockingIOError, InterruptedError):
            return
        except OSError:
            self._fail(link, side)
            return
        del pipe.buffer[:sent]
        self._counts["bytes_up" if pipe.name == "up" else "bytes_down"] += sent

    def _on_readable(self, link: _Link, side: str) -> None:
        pipe = link.up if side == "client" else link.down
        src = link.client if side == "client" else link.upstream
        assert src is not None
        try:
            data = src.recv(_CHUNK)
        except (BlockingIOError, InterruptedError):
            return
        except OSError:
            self._fail(link, side)
            return
        if not data:
            pipe.eof = True
        elif self._blackholed is not None:
            self._counts["dropped_up" if pipe.name == "up" else "dropped_down"] += len(data)
        else:
            pipe.buffer += data

    def _fail(self, link: _Link, side: str) -> None:
        """A side errored (RST, refused connect …): close it; the other side is reset when we may."""
        link.dead.add(side)
        sock = link.client if side == "client" else link.upstream
        if sock is not None:
            self._forget(sock)
            _close(sock, reset=True)
        self._progress_link(link)

    def _progress(self) -> None:
        for link in list(self._links):
            self._progress_link(link)

    def _progress_link(self, link: _Link) -> None:
        """Pass on FINs and resets, and retire finished links — except while blackholed: a pulled cable
        carries no news."""
        if self._blackholed is not None or link not in self._links:
            return
        if link.failed:
            self._counts["resets"] += 1
            self._drop_link(link, reset=True)
            return
        if link.connecting or link.upstream is None:
            return
        for pipe, dst in ((link.up, link.upstream), (link.down, link.client)):
            if pipe.eof and not pipe.buffer and not pipe.shut:
                pipe.shut = True
                with contextlib.suppress(OSError):
                    dst.shutdown(socket.SHUT_WR)
        if link.up.shut and link.down.shut:
            self._drop_link(link, reset=False)

    def _update_interest(self) -> None:
        wanted: dict[socket.socket, tuple[int, Any]] = {}
        for link in self._links:
            wanted[link.client] = (self._events(link, "client"), (link, "client"))
            if link.upstream is not None:
                wanted[link.upstream] = (self._events(link, "upstream"), (link, "upstream"))
        assert self._selector is not None
        for sock in list(self._interest):
            if wanted.get(sock, (0, None))[0] == 0:
                self._selector.unregister(sock)
                del self._interest[sock]
        for sock, (events, data) in wanted.items():
            if events == 0:
                continue
            if sock not in self._interest:
                self._selector.register(sock, events, data)
            elif self._interest[sock] != events:
                self._selector.modify(sock, events, data)
            self._interest[sock] = events

    def _events(self, link: _Link, side: str) -> int:
        if side in link.dead:
            return 0
        if link.failed:
            # The other side is gone, but while the cable is "pulled" nobody may learn it: keep swallowing.
            return selectors.EVENT_READ if self._blackholed == "drop" and not _inbound_eof(link, side) else 0
        if side == "upstream" and link.connecting:
            return selectors.EVENT_WRITE
        inbound = link.up if side == "client" else link.down  # read from this side into this pipe
        outbound = link.down if side == "client" else link.up  # write this pipe to this side
        events = 0
        room = self._blackholed == "drop" or (self._blackholed is None and len(inbound.buffer) < self._buffer_limit)
        if room and not inbound.eof:
            events |= selectors.EVENT_READ
        if self._blackholed is None and outbound.buffer and not link.connecting and link.upstream is not None:
            events |= selectors.EVENT_WRITE
        return events

    def _set_blackhole(self, mode: Literal["drop", "stall"] | None) -> None:
        if mode is not None and self._blackholed is None:
            for link in self._links:  # bytes in flight when the cable is pulled are lost
                self._counts["dropped_up"] += len(link.up.buffer)
                self._counts["dropped_down"] += len(link.down.buffer)
                link.up.buffer.clear()
                link.down.buffer.clear()
        self._blackholed = mode
        if mode is None:
            for link in list(self._links):
                if link.upstream is None and not link.failed:
                    self._connect_upstream(link)
            self._progress()

    def _reset_all(self) -> int:
        links = list(self._links)
        for link in links:
            self._drop_link(link, reset=True)
        self._counts["resets"] += len(links)
        return len(links)

    def _drop_link(self, link: _Link, *, reset: bool) -> None:
        for side, sock in (("client", link.client), ("upstream", link.upstream)):
            if sock is not None and side not in link.dead:
                self._forget(sock)
                _close(sock, reset=reset)
        with contextlib.suppress(ValueError):
            self._links.remove(link)

    def _forget(self, sock: socket.socket) -> None:
        if sock in self._interest:
            assert self._selector is not None
            self._selector.unregister(sock)
            del self._interest[sock]

    def _stop_now(self) -> None:
        self._running = False

    def _close_everything(self) -> None:
        for link in list(self._links):
            self._drop_link(link, reset=False)
        for sock in (self._listener, self._wake_r, self._wake_w):
            if sock is not None:
                with contextlib.suppress(KeyError, ValueError):
                    assert self._selector is not None
                    self._selector.unregister(sock)
                sock.close()
        if self._selector is not None:
            self._selector.close()


@dataclass(eq=False)
class _Outcome:
    done: threading.Event = field(default_factory=threading.Event)
    value: Any = None
    error: BaseException | None = None


def _inbound_eof(link: _Link, side: str) -> bool:
    return (link.up if side == "client" else link.down).eof


def _close(sock: socket.socket, *, reset: bool) -> None:
    if reset:
        with contextlib.suppress(OSError):
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, _LINGER_RST)
    with contextlib.suppress(OSError):
        sock.close()
