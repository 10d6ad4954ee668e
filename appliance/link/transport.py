"""Opening the WebSocket to the CSMS: TCP, optional TLS, the OCPP-J handshake, basic auth.

TLS (Security Profiles 2 and 3) is built by `appliance.security.tls` from the endpoint's `TlsTrust`, asked
afresh at every attempt, so a newly installed CSMS root or a renewed client certificate counts from the next
connection. A refused handshake raises `TlsRefused` with its named cause (unknown CA, expired, name mismatch,
wildcard, protocol version, cipher suite), never a bare BrokenResourceError. A profile-2/3 endpoint without
`wss://` is refused here too: there is no path by which the station falls back to plain WebSocket.

We open the TCP stream ourselves rather than through `open_websocket_url` because the socket options that
make a pulled cable visible (TCP_USER_TIMEOUT, keepalive) are not exposed there, and because every step needs
its own deadline: a blackholed reconnect must fail in bounded time, not hang.
"""

from __future__ import annotations

import base64
import contextlib
import logging
import socket
import ssl
from collections.abc import AsyncIterator
from dataclasses import dataclass
from urllib.parse import quote, urlsplit

import trio
from trio_websocket import WebSocketConnection, wrap_client_stream

from appliance.link.framesize import MessageSizes
from appliance.security.tls import TlsRefused, TlsTrust, check_peer_name, classify, client_context

log = logging.getLogger("appliance.link")

SUBPROTOCOL = "ocpp2.0.1"
#: The smallest limit on one message from the CSMS: OCPP messages are small, and a CSMS sending more than this
#: in one frame is broken or hostile. The link raises it to the largest request the device model permits
#: (`frame_limit`); a message over the limit closes the connection with 1009, logged with the message's size.
MAX_MESSAGE_SIZE = 256 * 1024


class HandshakeFailed(Exception):
    """The CSMS accepted TCP but not our OCPP-J connection (wrong subprotocol, auth refused …)."""


class _WatchedStream(trio.abc.Stream):
    """The connection's stream, noticing when the peer closes or breaks it, and how big its messages are.

    trio-websocket's client handshake waits for an answer that a closed stream can never bring: its reader
    task ends, but `wrap_client_stream` keeps waiting until our connect timeout (30 s by default) fires. This
    wrapper lets the handshake fail the moment the CSMS hangs up, so the back-off starts at once. It also
    follows the frame headers (`MessageSizes`), because trio-websocket does not say how big a message it
    refused was.
    """

    def __init__(self, stream: trio.abc.Stream, max_message_size: int) -> None:
        self._stream = stream
        self.peer_gone = trio.Event()
        self.sizes = MessageSizes(max_message_size)

    async def send_all(self, data: bytes | bytearray | memoryview) -> None:
        try:
            await self._stream.send_all(data)
        except trio.BrokenResourceError:
            self.peer_gone.set()
            raise

    async def wait_send_all_might_not_block(self) -> None:
        await self._stream.wait_send_all_might_not_block()

    async def receive_some(self, max_bytes: int | None = None) -> bytes | bytearray:
        try:
            data = await self._stream.receive_some(max_bytes)
        except trio.BrokenResourceError:
            self.peer_gone.set()
            raise
        if not data:
            self.peer_gone.set()
        self.sizes.feed(data)
        return data

    async def aclose(self) -> None:
        await self._stream.aclose()


async def _handshake(
    nursery: trio.Nursery, watched: _WatchedStream, host: str, resource: str, headers: list[tuple[bytes, bytes]]
) -> WebSocketConnection:
    """The OCPP-J opening handshake, failing with HandshakeFailed as soon as the CSMS closes the connection."""
    ws: WebSocketConnection | None = None
    async with trio.open_nursery() as guard:

        async def hang_up() -> None:
            await watched.peer_gone.wait()
            guard.cancel_scope.cancel()

        guard.start_soon(hang_up)
        # trio-websocket annotates `stream` as a SocketStream or SSLStream, but only uses it as a trio Stream
        # (its WebSocketConnection takes any `trio.abc.Stream`; the type decides only how the peer is named).
        ws = await wrap_client_stream(
            nursery,
            watched,  # type: ignore[arg-type]
            host,
            resource,
            subprotocols=[SUBPROTOCOL],
            extra_headers=headers,
            message_queue_size=4,
            max_message_size=watched.sizes.limit,
        )
        guard.cancel_scope.cancel()
    if ws is None or (watched.peer_gone.is_set() and ws.closed):
        raise HandshakeFailed("CSMS closed the connection during the WebSocket handshake")
    return ws


@dataclass(frozen=True)
class Endpoint:
    """Where and how to connect: derived from the config and the device model at each attempt."""

    url: str  # the CSMS endpoint without the station id
    station_id: str
    security_profile: int
    password: str | None
    trust: TlsTrust | None = None  # CSMS roots and client identity (profiles 2 and 3)

    @property
    def full_url(self) -> str:
        """Endpoint URL + '/' + percent-encoded identity (Part 4 §3.1.1)."""
        return self.url.rstrip("/") + "/" + quote(self.station_id, safe="")

    def redacted(self) -> str:
        return f"{self.full_url} (security profile {self.security_profile})"


def auth_header(station_id: str, password: str) -> tuple[bytes, bytes]:
    token = base64.b64encode(f"{station_id}:{password}".encode()).decode("ascii")
    return (b"Authorization", f"Basic {token}".encode("ascii"))


async def _tls_context(endpoint: Endpoint) -> ssl.SSLContext:
    """The context for this attempt, from the trust as it is now (read off the event loop: it may read files)."""
    trust = endpoint.trust
    if trust is None:
        raise TlsRefused("no CSMS root certificate configured", None)
    profile3 = endpoint.security_profile >= 3

    def build() -> ssl.SSLContext:
        try:
            roots = trust.csms_roots()
        except (OSError, ValueError) as exc:
            raise TlsRefused(f"cannot read the CSMS root certificates: {exc}", None) from None
        identity = trust.client_identity() if profile3 else None
        if profile3 and identity is None:
            raise TlsRefused("security profile 3 needs a client certificate, and none is installed", None)
        return client_context(roots, identity)

    return await trio.to_thread.run_sync(build)


async def _tls_handshake(tcp: trio.SocketStream, endpoint: Endpoint, host: str) -> trio.SSLStream[trio.SocketStream]:
    """TLS per OCPP, and the CSMS's name checked on its verified certificate before anything is sent."""
    stream = trio.SSLStream(tcp, await _tls_context(endpoint), server_hostname=host, https_compatible=True)
    try:
        await stream.do_handshake()
    except trio.BrokenResourceError as exc:
        raise (classify(exc) or exc) from exc
    der = stream.getpeercert(binary_form=True)
    if der is None:
        raise TlsRefused("the CSMS presented no certificate", "InvalidCsmsCertificate")
    check_peer_name(der, host, stream.getpeercert())
    return stream


def _tune_socket(stream: trio.SocketStream, dead_after: float) -> None:
    """Make the kernel give up on unacknowledged data after `dead_after` seconds (a pulled cable)."""
    sock = stream.socket
    with contextlib.suppress(OSError, AttributeError):
        sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_KEEPALIVE, 1)
        sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_KEEPIDLE, max(1, int(dead_after)))
        sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_KEEPINTVL, max(1, int(dead_after / 3)))
        sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_KEEPCNT, 3)
        sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_USER_TIMEOUT, max(1000, int(dead_after * 1000)))


@contextlib.asynccontextmanager
async def open_websocket(
    endpoint: Endpoint,
    *,
    connect_timeout: float,
    dead_after: float,
    close_timeout: float = 2.0,
    max_message_size: int = MAX_MESSAGE_SIZE,
) -> AsyncIterator[WebSocketConnection]:
    """Connect, and close with a close frame (bounded by `close_timeout`) when the body ends.

    Raises OSError / trio.TooSlowError / HandshakeFailed / TlsRefused / trio_websocket.HandshakeError on failure.
    """
    parts = urlsplit(endpoint.full_url)
    host = parts.hostname or ""
    tls = parts.scheme == "wss"
    port = parts.port or (443 if tls else 80)
    resource = parts.path + (f"?{parts.query}" if parts.query else "")
    if endpoint.security_profile >= 2 and not tls:
        raise HandshakeFailed(f"security profile {endpoint.security_profile} needs a wss:// URL, not {parts.scheme}://")
    headers = []
    if endpoint.security_profile in (1, 2) and endpoint.password:  # profile 3 authenticates by its certificate
        headers.append(auth_header(endpoint.station_id, endpoint.password))
    async with trio.open_nursery() as nursery:
        stream: trio.SocketStream | trio.SSLStream[trio.SocketStream] | None = None
        try:
            with trio.fail_after(connect_timeout):
                tcp = await trio.open_tcp_stream(host, port)
                stream = tcp
                _tune_socket(tcp, dead_after)
                if tls:
                    stream = await _tls_handshake(tcp, endpoint, host)
                watched = _WatchedStream(stream, max_message_size)
                ws = await _handshake(nursery, watched, parts.netloc, resource, headers)
            if ws.subprotocol != SUBPROTOCOL:
                with trio.move_on_after(close_timeout):
                    await ws.aclose(1002, "ocpp2.0.1 subprotocol required")
                raise HandshakeFailed(f"CSMS did not select subprotocol {SUBPROTOCOL} (got {ws.subprotocol!r})")
            try:
                yield ws
            finally:
                if watched.sizes.oversized is not None:
                    log.error(
                        "CSMS sent a message of %d bytes, over the %d-byte limit: connection closed with 1009 "
                        "(Message Too Big)",
                        watched.sizes.oversized,
                        watched.sizes.limit,
                    )
                with trio.CancelScope(shield=True), trio.move_on_after(close_timeout):
                    await ws.aclose()
        finally:
            # trio-websocket leaves the TCP socket open when the CSMS closes or rejects the connection.
            nursery.cancel_scope.cancel()
            if stream is not None:
                with trio.CancelScope(shield=True):
                    await trio.aclose_forcefully(stream)
