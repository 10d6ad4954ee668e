"""OCPP-J framing (Part 4 §4): concrete frames for every decode rule, round trips and CALLERROR building."""

from __future__ import annotations

import json
import pickle

import pytest

from appliance.protocol import (
    MAX_DESCRIPTION_LENGTH,
    Call,
    CallError,
    CallResult,
    ErrorCode,
    FrameError,
    MessageType,
    OcppError,
    call_error_for,
    decode,
    encode,
    new_message_id,
)

BOOT = {"reason": "PowerUp", "chargingStation": {"model": "SingleSocketCharger", "vendorName": "VendorX"}}


def decode_error(data: str | bytes) -> FrameError:
    with pytest.raises(FrameError) as caught:
        decode(data)
    return caught.value


# --- ErrorCode / OcppError -----------------------------------------------------------------------------


def test_error_codes_are_the_twelve_of_part4_table8() -> None:
    assert {code.value for code in ErrorCode} == {
        "FormatViolation",
        "GenericError",
        "InternalError",
        "MessageTypeNotSupported",
        "NotImplemented",
        "NotSupported",
        "OccurrenceConstraintViolation",
        "PropertyConstraintViolation",
        "ProtocolError",
        "RpcFrameworkError",
        "SecurityError",
        "TypeConstraintViolation",
    }
    assert ErrorCode.OccurrenceConstraintViolation == "OccurrenceConstraintViolation"
    assert json.dumps(ErrorCode.SecurityError) == '"SecurityError"'


def test_ocpp_error_defaults_and_clipping() -> None:
    error = OcppError(ErrorCode.NotSupported)
    assert (error.code, error.description, error.details) == (ErrorCode.NotSupported, "", {})
    long = OcppError("GenericError", "x" * 1000, {"k": 1})
    assert long.code is ErrorCode.GenericError
    assert len(long.description) == MAX_DESCRIPTION_LENGTH
    assert long.details == {"k": 1}


def test_ocpp_error_rejects_unknown_code() -> None:
    with pytest.raises(ValueError):
        OcppError("OccurenceConstraintViolation")  # the OCPP 1.6 spelling


def test_errors_survive_pickling() -> None:
    error = pickle.loads(pickle.dumps(OcppError(ErrorCode.InternalError, "boom", {"a": 1})))
    assert (error.code, error.description, error.details) == (ErrorCode.InternalError, "boom", {"a": 1})
    frame_error = pickle.loads(pickle.dumps(decode_error('[3,"abc"]')))
    assert (frame_error.message_id, frame_error.kind) == ("abc", MessageType.CALLRESULT)


# --- encoding ------------------------------------------------------------------------------------------


def test_encode_is_compact_and_keeps_unicode() -> None:
    text = encode(Call("19223201", "DataTransfer", {"vendorId": "Ünïcødé", "data": "€ 😀"}))
    assert text == '[2,"19223201","DataTransfer",{"vendorId":"Ünïcødé","data":"€ 😀"}]'


def test_encode_each_frame_type() -> None:
    assert encode(CallResult("1", {})) == '[3,"1",{}]'
    assert encode(CallError("1", "NotSupported", "", {})) == '[4,"1","NotSupported","",{}]'
    assert encode(CallError("1", ErrorCode.NotSupported)) == '[4,"1","NotSupported","",{}]'


def test_encode_clips_call_error_description() -> None:
    decoded = decode(encode(CallError("1", "GenericError", "d" * 300, {})))
    assert isinstance(decoded, CallError)
    assert len(decoded.description) == MAX_DESCRIPTION_LENGTH


@pytest.mark.parametrize(
    "frame",
    [
        Call("x" * 37, "Heartbeat", {}),
        CallResult("1", {"value": float("nan")}),
        CallResult("1", {"value": object()}),
    ],
)
def test_encode_refuses_frames_that_must_not_be_sent(frame: Call | CallResult) -> None:
    with pytest.raises((ValueError, TypeError)):
        encode(frame)


def test_new_message_id_is_unique_uuid_within_36_chars() -> None:
    ids = {new_message_id() for _ in range(1000)}
    assert len(ids) == 1000
    assert all(len(message_id) == 36 for message_id in ids)


# --- decoding: valid frames ----------------------------------------------------------------------------


def test_decode_spec_examples() -> None:
    call = decode('[2,\n "19223201",\n "BootNotification",\n ' + json.dumps(BOOT) + "\n]")
    assert call == Call("19223201", "BootNotification", BOOT)
    result = decode('[3, "19223201", {"currentTime": "2013-02-01T20:53:32.486Z", "interval": 300}]')
    assert result == CallResult("19223201", {"currentTime": "2013-02-01T20:53:32.486Z", "interval": 300})
    error = decode('[4, "162376037", "NotSupported", "SetDisplayMessageRequest not implemented", {}]')
    assert error == CallError("162376037", "NotSupported", "SetDisplayMessageRequest not implemented", {})


@pytest.mark.parametrize(
    "frame",
    [
        Call("a", "Heartbeat", {}),
        Call("-1", "BootNotification", BOOT),
        Call("z" * 36, "DataTransfer", {"vendorId": "v", "data": [1, 2.5, None, True, {"k": "ü"}]}),
        CallResult("b", {"status": "Accepted"}),
        CallError("c", "InternalError", "oops", {"cause": "disk"}),
        CallError("", "SomeFutureCode", "", {}),
    ],
)
def test_round_trip(frame: Call | CallResult | CallError) -> None:
    assert decode(encode(frame)) == frame
    assert decode(encode(frame).encode("utf-8")) == frame


def test_decode_accepts_bytes_and_bytearray() -> None:
    raw = '[2,"id","DataTransfer",{"vendorId":"Ünïcødé"}]'.encode()
    assert decode(raw) == Call("id", "DataTransfer", {"vendorId": "Ünïcødé"})
    assert decode(bytearray(raw)) == decode(raw)


def test_decode_reads_escaped_surrogate_pairs() -> None:
    assert decode(r'[3,"id",{"t":"\ud83d\ude00"}]') == CallResult("id", {"t": "😀"})


def test_decode_reads_null_payload_as_empty_object() -> None:
    assert decode('[2,"id","Heartbeat",null]') == Call("id", "Heartbeat", {})
    assert decode('[3,"id",null]') == CallResult("id", {})
    assert decode('[4,"id","GenericError","",null]') == CallError("id", "GenericError", "", {})


def test_decode_keeps_unknown_call_error_codes() -> None:
    frame = decode('[4,"id","OccurenceConstraintViolation","1.6 spelling",{}]')
    assert isinstance(frame, CallError)
    assert frame.code == "OccurenceConstraintViolation"


# --- decoding: unreadable messages (reply with "-1") ---------------------------------------------------


@pytest.mark.parametrize(
    "data",
    [
        b"\xff\xfe[2]",
        b'[2,"id","Heartbeat",{"a":"\xc3"}]',
        "\ud800",
        "",
        "[2,",
        "not json",
        '[2,"id","Heartbeat",{}] trailing',
        '[2,"id","Heartbeat",{"v":NaN}]',
        '[2,"id","Heartbeat",{"v":Infinity}]',
        '[2,"id","Heartbeat",{"v":1e999}]',
        '[2,"id","Heartbeat",{"v":' + "9" * 5000 + "}]",
        "[" * 100_000 + "]" * 100_000,
        r'[2,"id","Heartbeat",{"v":"\ud800"}]',
        r'[2,"id","Heartbeat",{"\udfff":1}]',
        '\ufeff[2,"id","Heartbeat",{}]',
    ],
)
def test_unreadable_text_is_rpc_framework_error_with_minus_one(data: str | bytes) -> None:
    error = decode_error(data)
    assert error.code is ErrorCode.RpcFrameworkError
    assert (error.message_id, error.reply, error.kind) == ("-1", True, None)


@pytest.mark.parametrize("data", ["{}", '"text"', "42", "null", "true", "[]", '{"0":2}'])
def test_non_array_json_is_rpc_framework_error_with_minus_one(data: str) -> None:
    error = decode_error(data)
    assert (error.code, error.message_id, error.reply) == (ErrorCode.RpcFrameworkError, "-1", True)


def test_error_description_never_echoes_the_input() -> None:
    secret = "SECRET-" + "s" * 40
    for data in (f"[2, {secret}", f'{{"{secret}": 1}}', f'[2,"{secret}",1,{{}}]'):
        assert secret not in decode_error(data).description


# --- decoding: message type ----------------------------------------------------------------------------


@pytest.mark.parametrize("number", [0, 1, 5, 6, -2, 2**70])
def test_unknown_message_type_is_not_supported_and_echoes_readable_id(number: int) -> None:
    error = decode_error(f'[{number},"abc",{{}}]')
    assert (error.code, error.message_id, error.reply) == (ErrorCode.MessageTypeNotSupported, "abc", True)


def test_unknown_message_type_without_readable_id_uses_minus_one() -> None:
    for data in ("[7]", "[7,12]", f'[7,"{"x" * 37}"]'):
        error = decode_error(data)
        assert (error.code, error.message_id) == (ErrorCode.MessageTypeNotSupported, "-1")


@pytest.mark.parametrize("number", ['"2"', "2.0", "true", "null", "[2]", "{}"])
def test_non_integer_message_type_is_rpc_framework_error(number: str) -> None:
    error = decode_error(f'[{number},"abc","Heartbeat",{{}}]')
    assert (error.code, error.message_id, error.reply) == (ErrorCode.RpcFrameworkError, "abc", True)


# --- decoding: CALL ------------------------------------------------------------------------------------


@pytest.mark.parametrize("message_id", ["12", "null", "{}", '["a"]', '"' + "x" * 37 + '"'])
def test_call_with_unreadable_id_is_rpc_framework_error_with_minus_one(message_id: str) -> None:
    error = decode_error(f'[2,{message_id},"Heartbeat",{{}}]')
    assert (error.code, error.message_id, error.reply) == (ErrorCode.RpcFrameworkError, "-1", True)
    assert error.kind is MessageType.CALL


def test_call_id_of_exactly_36_chars_is_readable() -> None:
    assert decode(f'[2,"{"x" * 36}","Heartbeat",{{}}]').message_id == "x" * 36


@pytest.mark.parametrize(
    "data",
    [
        '[2,"abc"]',
        '[2,"abc","Heartbeat"]',
        '[2,"abc","Heartbeat",{},{}]',
        '[2,"abc",{}]',
    ],
)
def test_call_with_wrong_element_count_is_rpc_framework_error(data: str) -> None:
    error = decode_error(data)
    assert (error.code, error.message_id, error.reply, error.kind) == (
        ErrorCode.RpcFrameworkError,
        "abc",
        True,
        MessageType.CALL,
    )


@pytest.mark.parametrize("action", ["42", "null", '["Heartbeat"]', "{}", "true"])
def test_call_with_non_string_action_is_rpc_framework_error(action: str) -> None:
    error = decode_error(f'[2,"abc",{action},{{}}]')
    assert (error.code, error.message_id, error.reply) == (ErrorCode.RpcFrameworkError, "abc", True)


@pytest.mark.parametrize("payload", ["[]", '"x"', "1", "true", "[{}]"])
def test_call_with_non_object_payload_is_format_violation(payload: str) -> None:
    error = decode_error(f'[2,"abc","Heartbeat",{payload}]')
    assert (error.code, error.message_id, error.reply) == (ErrorCode.FormatViolation, "abc", True)


# --- decoding: malformed responses are never answered --------------------------------------------------


@pytest.mark.parametrize(
    ("data", "message_id", "kind"),
    [
        ('[3,"abc"]', "abc", MessageType.CALLRESULT),
        ('[3,"abc",{},{}]', "abc", MessageType.CALLRESULT),
        ('[3,"abc",[]]', "abc", MessageType.CALLRESULT),
        ("[3,5,{}]", "-1", MessageType.CALLRESULT),
        ('[4,"abc","GenericError",""]', "abc", MessageType.CALLERROR),
        ('[4,"abc","GenericError","",{},1]', "abc", MessageType.CALLERROR),
        ('[4,"abc",1,"",{}]', "abc", MessageType.CALLERROR),
        ('[4,"abc","GenericError",null,{}]', "abc", MessageType.CALLERROR),
        ('[4,"abc","GenericError","",[]]', "abc", MessageType.CALLERROR),
        (f'[4,"{"y" * 37}","GenericError","",{{}}]', "-1", MessageType.CALLERROR),
    ],
)
def test_malformed_response_is_not_answered(data: str, message_id: str, kind: MessageType) -> None:
    error = decode_error(data)
    assert error.reply is False
    assert error.is_response is True
    assert (error.message_id, error.kind) == (message_id, kind)


def test_malformed_call_is_not_a_response() -> None:
    error = decode_error('[2,"abc","Heartbeat",[]]')
    assert error.is_response is False


# --- CALLERROR building --------------------------------------------------------------------------------


def test_call_error_for_handler_error() -> None:
    error = OcppError(ErrorCode.NotSupported, "SetDisplayMessageRequest not implemented")
    frame = call_error_for("162376037", error)
    assert frame == CallError("162376037", "NotSupported", "SetDisplayMessageRequest not implemented", {})
    assert encode(frame) == '[4,"162376037","NotSupported","SetDisplayMessageRequest not implemented",{}]'


def test_call_error_for_frame_error_round_trips() -> None:
    error = decode_error("garbage")
    assert decode(encode(call_error_for(error.message_id, error))) == CallError(
        "-1", "RpcFrameworkError", error.description, {}
    )


def test_call_error_details_are_copied() -> None:
    error = OcppError(ErrorCode.GenericError, "", {"a": 1})
    frame = call_error_for("1", error)
    error.details["a"] = 2
    assert frame.details == {"a": 1}
