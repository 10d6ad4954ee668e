"""The chaos proxy does what the resilience tests rely on: forward, go silent, reset, refuse, stop cleanly."""

from __future__ import annotations

import contextlib
import json
import socket
import threading
import time
from collections.abc import Iterator

import pytest
import trio
from trio_websocket import ConnectionClosed, open_websocket_url

from appliance.lab.csms import LoopbackCsms
from appliance.lab.proxy import ChaosProxy


class EchoServer:
    """Upstream for the proxy: echoes bytes and remembers everything it received, per connection."""

    def __init__(self) -> None:
        self._listener = socket.create_server(("127.0.0.1", 0))
        self._listener.settimeout(0.05)  # accept() is not woken by close() from another thread: poll a flag
        self._closing = False
        self.port = self._listener.getsockname()[1]
        self.received = bytearray()
        self.eofs = 0
        self.errors: list[OSError] = []
        self._threads: list[threading.Thread] = []
        self.connections: list[socket.socket] = []
        self._accept_thread = threading.Thread(target=self._accept, daemon=True)
        self._accept_thread.start()

    def _accept(self) -> None:
        while not self._closing:
            try:
                conn, _ = self._listener.accept()
            except TimeoutError:
                continue
            except OSError:
                return
            conn.settimeout(None)
            self.connections.append(conn)
            thread = threading.Thread(target=self._echo, args=(conn,), daemon=True)
            self._threads.append(thread)
            thread.start()

    def _echo(self, conn: socket.socket) -> None:
        with conn:
            while True:
                try:
                    data = conn.recv(65536)
                except OSError as error:
                    self.errors.append(error)
                    return
                if not data:
                    self.eofs += 1
                    return
                self.received += data
                with contextlib.suppress(OSError):
                    conn.sendall(data)

    def close(self) -> None:
        self._closing = True
        self._accept_thread.join(5)
        self._listener.close()
        for conn in self.connections:
            with contextlib.suppress(OSError):
                conn.shutdown(socket.SHUT_RDWR)
        for thread in self._threads:
            thread.join(5)


@pytest.fixture
def echo() -> Iterator[EchoServer]:
    server = EchoServer()
    yield server
    server.close()


@pytest.fixture
def proxy(echo: EchoServer) -> Iterator[ChaosProxy]:
    with ChaosProxy("127.0.0.1", echo.port) as chaos:
        yield chaos


def _client(proxy: ChaosProxy) -> socket.socket:
    sock = socket.create_connection(("127.0.0.1", proxy.port), timeout=5)
    sock.settimeout(2)
    return sock


def _recv_exactly(sock: socket.socket, n: int) -> bytes:
    data = b""
    while len(data) < n:
        chunk = sock.recv(n - len(data))
        if not chunk:
            raise EOFError(f"EOF after {data!r}")
        data += chunk
    return data


def _eventually(condition, timeout: float = 5.0) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        if time.monotonic() > deadline:
            raise AssertionError("condition not reached in time")
        time.sleep(0.01)


def test_forwards_both_ways_and_counts(proxy: ChaosProxy) -> None:
    with _client(proxy) as sock:
        sock.sendall(b"hello")
        assert _recv_exactly(sock, 5) == b"hello"
        big = bytes(range(256)) * 4096  # 1 MiB: more than the proxy buffers, so flow control is exercised
        sender = threading.Thread(target=sock.sendall, args=(big,))
        sender.start()
        assert _recv_exactly(sock, len(big)) == big
        sender.join()
    stats = proxy.stats()
    assert stats.accepted == 1
    assert stats.bytes_up == stats.bytes_down == 5 + len(big)


def test_client_eof_reaches_upstream_and_back(proxy: ChaosProxy, echo: EchoServer) -> None:
    with _client(proxy) as sock:
        sock.sendall(b"bye")
        sock.shutdown(socket.SHUT_WR)
        assert _recv_exactly(sock, 3) == b"bye"
        assert sock.recv(10) == b""  # the echo server closed after our FIN: its FIN came back through
    _eventually(lambda: echo.eofs == 1)
    _eventually(lambda: proxy.stats().active == 0)


def test_blackhole_is_silent_then_restore_resumes(proxy: ChaosProxy, echo: EchoServer) -> None:
    with _client(proxy) as sock:
        sock.sendall(b"a")
        assert _recv_exactly(sock, 1) == b"a"
        proxy.blackhole()
        sock.sendall(b"lost")  # send still succeeds: nothing tells the client the path is gone
        sock.settimeout(0.5)
        with pytest.raises(TimeoutError):
            sock.recv(10)  # no data, no EOF, no reset — just silence
        assert bytes(echo.received) == b"a"
        assert echo.eofs == 0 and not echo.errors
        assert proxy.stats().dropped_up == 4

        # A connection opened during the blackhole is accepted (the kernel does that) but goes nowhere.
        with _client(proxy) as late:
            late.sendall(b"void")
            late.settimeout(0.3)
            with pytest.raises(TimeoutError):
                late.recv(10)

        proxy.restore()
        sock.settimeout(2)
        sock.sendall(b"b")
        assert _recv_exactly(sock, 1) == b"b"  # the old connection resumes, minus what was dropped
        assert bytes(echo.received) == b"ab"
    with _client(proxy) as fresh:
        fresh.sendall(b"new")
        assert _recv_exactly(fresh, 3) == b"new"


def test_blackhole_without_drop_stops_reading(proxy: ChaosProxy) -> None:
    with _client(proxy) as sock:
        proxy.blackhole(drop=False)
        sock.sendall(b"held")
        sock.settimeout(0.3)
        with pytest.raises(TimeoutError):
            sock.recv(10)
        assert proxy.stats().dropped_up == 0  # not read at all: it waits in the kernel buffers
        proxy.restore()
        sock.settimeout(2)
        assert _recv_exactly(sock, 4) == b"held"


def test_upstream_eof_during_blackhole_is_held_until_restore(proxy: ChaosProxy, echo: EchoServer) -> None:
    with _client(proxy) as sock:
        sock.sendall(b"x")
        assert _recv_exactly(sock, 1) == b"x"
        proxy.blackhole()
        for conn in echo.connections:
            conn.shutdown(socket.SHUT_RDWR)  # the upstream goes away behind the pulled cable
        time.sleep(0.2)
        sock.settimeout(0.3)
        with pytest.raises(TimeoutError):
            sock.recv(10)
        proxy.restore()
        sock.settimeout(2)
        assert sock.recv(10) == b""  # now the news arrives


def test_reset_all_gives_econnreset(proxy: ChaosProxy, echo: EchoServer) -> None:
    with _client(proxy) as sock:
        sock.sendall(b"x")
        assert _recv_exactly(sock, 1) == b"x"
        assert proxy.reset_all() == 1
        with pytest.raises(ConnectionResetError):
            sock.recv(10)
    _eventually(lambda: any(e.errno == 104 for e in echo.errors))  # the upstream was reset too
    assert proxy.stats().active == 0


@pytest.mark.parametrize("mode", ["close", "reset"])
def test_refuse_new_connections(proxy: ChaosProxy, mode: str) -> None:
    with _client(proxy) as old:
        proxy.refuse(True, mode=mode)  # type: ignore[arg-type]
        if mode == "close":
            with _client(proxy) as refused:
                assert refused.recv(10) == b""
        else:
            with pytest.raises(ConnectionResetError), _client(proxy) as refused:  # may hit connect() itself
                refused.recv(10)
        old.sendall(b"still")  # existing connections are not affected
        assert _recv_exactly(old, 5) == b"still"
        proxy.refuse(False)
        with _client(proxy) as again:
            again.sendall(b"ok")
            assert _recv_exactly(again, 2) == b"ok"
    assert proxy.stats().refused == 1


def test_upstream_down_resets_the_client(echo: EchoServer) -> None:
    spare = socket.create_server(("127.0.0.1", 0))
    dead_port = spare.getsockname()[1]
    spare.close()  # nothing listens there now
    # The RST may even beat connect() returning, hence the client is opened inside pytest.raises.
    with (
        ChaosProxy("127.0.0.1", dead_port) as chaos,
        contextlib.ExitStack() as sockets,
        pytest.raises(ConnectionResetError),
    ):
        sockets.enter_context(_client(chaos)).recv(10)


def test_stop_leaves_no_thread_and_closes_connections(echo: EchoServer) -> None:
    chaos = ChaosProxy("127.0.0.1", echo.port).start()
    sock = _client(chaos)
    sock.sendall(b"x")
    assert _recv_exactly(sock, 1) == b"x"
    chaos.stop()
    chaos.stop()  # idempotent
    assert [t for t in threading.enumerate() if t.name.startswith("chaos-proxy")] == []
    assert sock.recv(10) == b""
    sock.close()
    with pytest.raises(ConnectionRefusedError):
        socket.create_connection(("127.0.0.1", chaos.port), timeout=2)
    with pytest.raises(RuntimeError):
        chaos.blackhole()


async def test_between_a_websocket_client_and_the_loopback_csms() -> None:
    """The intended use: station → proxy → CSMS; a blackhole hides frames, a reset kills the connection."""
    boot = {"reason": "PowerUp", "chargingStation": {"model": "Hand", "vendorName": "Tests"}}
    with LoopbackCsms(close_timeout=0.5) as csms, ChaosProxy("127.0.0.1", csms.port) as chaos:
        url = f"ws://127.0.0.1:{chaos.port}/ocpp/CS001"
        async with open_websocket_url(url, subprotocols=["ocpp2.0.1"], disconnect_timeout=0.5) as ws:
            await ws.send_message(json.dumps([2, "1", "BootNotification", boot]))
            with trio.fail_after(5):
                assert json.loads(await ws.get_message())[2]["status"] == "Accepted"

            chaos.blackhole()
            await ws.send_message(json.dumps([2, "2", "Heartbeat", {}]))
            with trio.move_on_after(0.5) as silent:
                await ws.get_message()
            assert silent.cancelled_caught
            assert csms.actions("CS001", "Heartbeat") == []  # it never reached the CSMS
            assert csms.is_connected("CS001")  # and the CSMS noticed nothing either

            chaos.restore()
            await ws.send_message(json.dumps([2, "3", "Heartbeat", {}]))
            with trio.fail_after(5):
                assert json.loads(await ws.get_message())[1] == "3"

            chaos.reset_all()
            with trio.fail_after(5), pytest.raises(ConnectionClosed):
                await ws.get_message()
        await trio.to_thread.run_sync(csms.wait_disconnected, "CS001")
        record = csms.connections[-1]
        assert (record.close_code, record.close_initiator) == (1006, "none")
        assert csms.violations == []
