"""A WebSocket peer on a blocking raw socket: the least code between a benchmark's clock and the wire.

trio-websocket and wsproto cost tens of microseconds a message in Python, which is the same order as what the
benchmarks measure; these few functions do an unfragmented frame's header and the RFC 6455 handshake by hand
so that a benchmark's own share stays near the loopback's. Lab equipment (benchmarks and their peers): no
extensions, no fragmentation, no validation of what the other side sends beyond the frame header.
"""

from __future__ import annotations

import base64
import hashlib
import os
import socket
import struct
import time

GUID = b"258EAFA5-E914-47DA-95CA-C5AB0DC85B11"
SUBPROTOCOL = "ocpp2.0.1"

TEXT, CLOSE, PING, PONG = 1, 8, 9, 10


def frame(payload: bytes, opcode: int = 1, mask: bool = False) -> bytes:
    """One unfragmented WebSocket frame (masked as a client must, unmasked as a server does)."""
    length = len(payload)
    head = bytes([0x80 | opcode])
    bit = 0x80 if mask else 0
    if length < 126:
        head += bytes([bit | length])
    elif length < 65536:
        head += bytes([bit | 126]) + struct.pack("!H", length)
    else:
        head += bytes([bit | 127]) + struct.pack("!Q", length)
    if not mask:
        return head + payload
    key = os.urandom(4)
    return head + key + _unmask(payload, key)


def _unmask(data: bytes, key: bytes) -> bytes:
    repeated = (key * (len(data) // 4 + 1))[: len(data)]
    return (int.from_bytes(data, "big") ^ int.from_bytes(repeated, "big")).to_bytes(len(data), "big")


class Peer:
    """One WebSocket connection over a blocking socket; `receive()` returns (opcode, payload, perf_counter stamp
    taken as the `recv` completing the frame returned)."""

    def __init__(self, sock: socket.socket, client: bool) -> None:
        sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        self.sock = sock
        self.client = client
        self.buffer = b""

    def send(self, payload: bytes, opcode: int = 1) -> None:
        self.sock.sendall(frame(payload, opcode, mask=self.client))

    def _parse(self) -> tuple[int, bytes] | None:
        data = self.buffer
        if len(data) < 2:
            return None
        opcode, length, offset = data[0] & 0x0F, data[1] & 0x7F, 2
        if length == 126:
            if len(data) < 4:
                return None
            (length,) = struct.unpack_from("!H", data, 2)
            offset = 4
        elif length == 127:
            if len(data) < 10:
                return None
            (length,) = struct.unpack_from("!Q", data, 2)
            offset = 10
        masked = data[1] & 0x80
        key = data[offset : offset + 4] if masked else b""
        offset += len(key)
        if len(data) < offset + length:
            return None
        payload = data[offset : offset + length]
        self.buffer = data[offset + length :]
        return opcode, (_unmask(payload, key) if masked else payload)

    def receive(self) -> tuple[int, bytes, float]:
        while True:
            parsed = self._parse()
            if parsed is not None:
                return parsed[0], parsed[1], time.perf_counter()
            chunk = self.sock.recv(65536)
            if not chunk:
                raise ConnectionError("peer closed")
            self.buffer += chunk


def _read_head(sock: socket.socket) -> tuple[bytes, bytes]:
    """The handshake's HTTP head, and whatever the peer sent after it (already WebSocket frames)."""
    data = b""
    while b"\r\n\r\n" not in data:
        chunk = sock.recv(4096)
        if not chunk:
            raise ConnectionError("closed during the handshake")
        data += chunk
    head, _, rest = data.partition(b"\r\n\r\n")
    return head, rest


def accept_ws(listener: socket.socket, timeout: float | None) -> Peer:
    """Accept one connection on `listener` and complete its handshake, choosing ocpp2.0.1 (auth not checked)."""
    listener.settimeout(timeout)
    sock, _ = listener.accept()
    sock.settimeout(None)
    head, rest = _read_head(sock)
    headers = dict(
        (name.strip().lower(), value.strip())
        for name, _, value in (line.partition(b":") for line in head.split(b"\r\n")[1:])
    )
    accept = base64.b64encode(hashlib.sha1(headers[b"sec-websocket-key"] + GUID).digest())
    sock.sendall(
        b"HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n"
        b"Sec-WebSocket-Accept: " + accept + b"\r\nSec-WebSocket-Protocol: ocpp2.0.1\r\n\r\n"
    )
    peer = Peer(sock, client=False)
    peer.buffer = rest
    return peer


def connect_ws(host: str, port: int, path: str) -> Peer:
    """A client connection (no auth; the peers that use it do not need any)."""
    sock = socket.create_connection((host, port))
    sock.sendall(
        f"GET {path} HTTP/1.1\r\nHost: {host}:{port}\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n"
        "Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\n"
        f"Sec-WebSocket-Protocol: {SUBPROTOCOL}\r\n\r\n".encode()
    )
    head, rest = _read_head(sock)
    if not head.startswith(b"HTTP/1.1 101"):
        raise ConnectionError(head.split(b"\r\n", 1)[0].decode(errors="replace"))
    peer = Peer(sock, client=True)
    peer.buffer = rest
    return peer
