"""Properties of the OCPP-J codec: round trips, total decoding, and always-sendable CALLERROR answers."""

from __future__ import annotations

import json
from typing import Any

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from appliance.protocol import (
    MAX_DESCRIPTION_LENGTH,
    MAX_MESSAGE_ID_LENGTH,
    Call,
    CallError,
    CallResult,
    ErrorCode,
    Frame,
    FrameError,
    call_error_for,
    decode,
    encode,
)

# JSON as the codec must carry it: finite floats only (NaN/Infinity are not JSON), any Unicode text.
json_scalars = st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False, allow_infinity=False) | st.text()
json_values = st.recursive(
    json_scalars,
    lambda children: st.lists(children, max_size=5) | st.dictionaries(st.text(max_size=10), children, max_size=5),
    max_leaves=25,
)
json_objects = st.dictionaries(st.text(max_size=10), json_values, max_size=6)
message_ids = st.text(max_size=MAX_MESSAGE_ID_LENGTH)
error_codes = st.sampled_from([code.value for code in ErrorCode]) | st.text(max_size=40)

frames: st.SearchStrategy[Frame] = st.one_of(
    st.builds(Call, message_ids, st.text(max_size=60), json_objects),
    st.builds(CallResult, message_ids, json_objects),
    st.builds(CallError, message_ids, error_codes, st.text(max_size=MAX_DESCRIPTION_LENGTH), json_objects),
)

# Arrays that look like frames, so the decoder's deeper branches are reached, not only the JSON parser.
type_numbers = st.sampled_from([2, 3, 4]) | st.integers(-5, 10) | json_scalars
frame_like = st.builds(
    lambda head, rest: [head, *rest],
    type_numbers,
    st.lists(st.text(max_size=40) | json_values | json_objects, max_size=6),
)

relaxed = settings(suppress_health_check=[HealthCheck.too_slow], deadline=None)


def decode_or_error(data: str | bytes) -> Frame | FrameError:
    try:
        return decode(data)
    except FrameError as error:
        return error


def assert_error_is_answerable(error: FrameError) -> None:
    assert isinstance(error.message_id, str)
    assert len(error.message_id) <= MAX_MESSAGE_ID_LENGTH
    assert len(error.description) <= MAX_DESCRIPTION_LENGTH
    if error.reply:
        reply = call_error_for(error.message_id, error)
        text = encode(reply)
        text.encode("utf-8")  # sendable as a WebSocket text frame
        assert decode(text) == reply
    else:
        assert error.is_response


@relaxed
@given(frames)
def test_encode_then_decode_round_trips(frame: Frame) -> None:
    text = encode(frame)
    assert decode(text) == frame
    assert decode(text.encode("utf-8")) == frame


@relaxed
@given(frames)
def test_encoding_is_compact_json(frame: Frame) -> None:
    text = encode(frame)
    assert text == json.dumps(json.loads(text), separators=(",", ":"), ensure_ascii=False)


@relaxed
@given(st.text())
def test_decode_of_any_text_returns_frame_or_frame_error(text: str) -> None:
    result = decode_or_error(text)
    if isinstance(result, FrameError):
        assert_error_is_answerable(result)


@relaxed
@given(st.binary())
def test_decode_of_any_bytes_returns_frame_or_frame_error(data: bytes) -> None:
    result = decode_or_error(data)
    if isinstance(result, FrameError):
        assert_error_is_answerable(result)


@relaxed
@given(json_values)
def test_decode_of_any_json_value_returns_frame_or_frame_error(value: Any) -> None:
    result = decode_or_error(json.dumps(value))
    if isinstance(result, FrameError):
        assert_error_is_answerable(result)


@relaxed
@given(frame_like, st.booleans())
def test_decode_of_frame_like_arrays(message: list[Any], ascii_only: bool) -> None:
    result = decode_or_error(json.dumps(message, ensure_ascii=ascii_only))
    if isinstance(result, FrameError):
        assert_error_is_answerable(result)
    else:
        # Whatever decodes also re-encodes to something that decodes to the same frame.
        assert decode(encode(result)) == result


@relaxed
@given(frames, st.integers(min_value=0), st.binary(max_size=4))
def test_truncated_or_corrupted_frames_never_escape(frame: Frame, cut: int, junk: bytes) -> None:
    raw = encode(frame).encode("utf-8")
    for data in (raw[: cut % (len(raw) + 1)], raw + junk, junk + raw):
        result = decode_or_error(data)
        if isinstance(result, FrameError):
            assert_error_is_answerable(result)
