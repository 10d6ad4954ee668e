"""MessageSizes follows server frame headers on the raw stream, however the bytes are split."""

from __future__ import annotations

from hypothesis import given
from hypothesis import strategies as st

from appliance.link.framesize import MessageSizes

HTTP = b"HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n\r\n"


def frame(payload_len: int, *, opcode: int = 0x1, final: bool = True, masked: bool = False) -> bytes:
    first = (0x80 if final else 0) | opcode
    mask_bit = 0x80 if masked else 0
    if payload_len < 126:
        head = bytes([first, mask_bit | payload_len])
    elif payload_len < 1 << 16:
        head = bytes([first, mask_bit | 126]) + payload_len.to_bytes(2, "big")
    else:
        head = bytes([first, mask_bit | 127]) + payload_len.to_bytes(8, "big")
    return head + (b"\x01\x02\x03\x04" if masked else b"") + b"x" * payload_len


def feed_in_pieces(sizes: MessageSizes, data: bytes, cuts: list[int]) -> None:
    start = 0
    for cut in [*sorted({c % (len(data) + 1) for c in cuts}), len(data)]:
        sizes.feed(data[start:cut])
        start = cut


@given(st.lists(st.integers(min_value=0), max_size=30))
def test_the_first_oversized_message_is_measured_exactly(cuts: list[int]) -> None:
    stream = HTTP + frame(10) + frame(4, opcode=0x9) + frame(300) + frame(70_000) + frame(5)
    sizes = MessageSizes(limit=65_536)
    feed_in_pieces(sizes, stream, cuts)
    assert sizes.oversized == 70_000


@given(st.lists(st.integers(min_value=0), max_size=30))
def test_fragments_add_up_and_control_frames_do_not_count(cuts: list[int]) -> None:
    stream = (
        HTTP
        + frame(400, final=False)
        + frame(125, opcode=0x9)
        + frame(400, opcode=0x0, final=False)
        + frame(300, opcode=0x0, masked=True)
    )
    sizes = MessageSizes(limit=1000)
    feed_in_pieces(sizes, stream, cuts)
    assert sizes.oversized == 1100


def test_messages_within_the_limit_leave_nothing_to_report() -> None:
    sizes = MessageSizes(limit=1000)
    sizes.feed(HTTP + frame(1000) + frame(999) + frame(1000, opcode=0x2) + frame(125, opcode=0xA))
    assert sizes.oversized is None


def test_64_bit_lengths() -> None:
    sizes = MessageSizes(limit=1 << 20)
    sizes.feed(HTTP + frame(3 << 20)[:20])
    assert sizes.oversized == 3 << 20
