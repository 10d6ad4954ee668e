"""The declared size of each WebSocket message the CSMS sends, from the frame headers (sans-IO).

trio-websocket enforces our message size limit by closing with 1009 (Message Too Big), but tells nobody how
big the message was: it stops counting at the limit. An operator whose CSMS sends a 2 MB report page needs that
number. The frame headers state every frame's payload length up front (RFC 6455 §5.2), so following them on
the raw byte stream gives the size of the message that crossed the limit -- exactly for an unfragmented
message, the fragments so far for a fragmented one -- at the cost of a few arithmetic steps per frame (the
payload itself is skipped, not looked at).
"""

from __future__ import annotations

_END_OF_HTTP = b"\r\n\r\n"
#: The HTTP response to our upgrade request is a few hundred bytes; past this we stop looking for its end.
_MAX_HTTP_RESPONSE = 64 * 1024
_MAX_HEADER = 14  # 2 + 8 (64-bit length) + 4 (mask key)
_DATA_OPCODES = frozenset({0x0, 0x1, 0x2})  # continuation, text, binary


class MessageSizes:
    """Fed every byte the server sends (HTTP response first), remembers the first message over `limit`."""

    def __init__(self, limit: int) -> None:
        self.limit = limit
        self.oversized: int | None = None  # declared size of the first message over the limit
        self._pending = bytearray()  # an incomplete HTTP response or frame header
        self._in_http = True
        self._skip = 0  # payload bytes of the current frame not yet seen
        self._message = 0  # declared payload bytes of the data message in progress
        self._lost = False  # gave up (an HTTP response without end): no more sizes

    def feed(self, data: bytes | bytearray | memoryview) -> None:
        if self._lost or self.oversized is not None:
            return
        view = memoryview(data)
        if self._in_http:
            self._pending += view
            end = self._pending.find(_END_OF_HTTP)
            if end < 0:
                self._lost = len(self._pending) > _MAX_HTTP_RESPONSE
                return
            view = memoryview(bytes(self._pending[end + len(_END_OF_HTTP) :]))
            self._pending.clear()
            self._in_http = False
        while view:
            if self._skip:
                step = min(self._skip, len(view))
                self._skip -= step
                view = view[step:]
                continue
            # A header is at most 14 bytes: copy only those, never the payload behind them.
            known = len(self._pending)
            head = bytes(self._pending) + bytes(view[:_MAX_HEADER])
            consumed = self._header(head)
            if not consumed:
                self._pending += view
                return
            self._pending.clear()
            view = view[consumed - known :]

    def _header(self, head: bytes) -> int:
        """Parse the frame header at the start of `head`; return its length, or 0 while it is incomplete."""
        if len(head) < 2:
            return 0
        length, size = head[1] & 0x7F, 2
        if length == 126:
            size = 4
        elif length == 127:
            size = 10
        masked = bool(head[1] & 0x80)
        total = size + (4 if masked else 0)
        if len(head) < total:
            return 0
        if size > 2:
            length = int.from_bytes(head[2:size], "big")
        opcode, final = head[0] & 0x0F, bool(head[0] & 0x80)
        if opcode in _DATA_OPCODES:
            self._message += length
            if self._message > self.limit:
                self.oversized = self._message
            if final:
                self._message = 0
        self._skip = length
        return total
