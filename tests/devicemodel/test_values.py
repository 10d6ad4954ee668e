"""Value checking per dataType: what is accepted, its canonical text, and the reason for a refusal."""

from __future__ import annotations

from datetime import datetime, timedelta, timezone

import pytest
from hypothesis import given
from hypothesis import strategies as st

from appliance.devicemodel.types import Characteristics, DataType
from appliance.devicemodel.values import INT_MAX, INT_MIN, ValueRefused, canonical, split_members, typed

INTEGER = Characteristics(DataType.integer, min_limit=0, max_limit=1000)
DECIMAL = Characteristics(DataType.decimal, min_limit=0, max_limit=22080)
BOOLEAN = Characteristics(DataType.boolean)
DATETIME = Characteristics(DataType.dateTime)
STRING = Characteristics(DataType.string, min_limit=16, max_limit=40)
OPTION = Characteristics(DataType.OptionList, values_list=("LRU", "LFU"))
MEASURANDS = ("Current.Import", "Energy.Active.Import.Register", "Voltage")
MEMBERS = Characteristics(DataType.MemberList, values_list=MEASURANDS)
POINTS = Characteristics(DataType.MemberList, values_list=("EVConnected", "Authorized"), non_empty=True)
SEQUENCE = Characteristics(DataType.SequenceList, values_list=("Heartbeat", "NTP", "GPS"))


def refused(chars: Characteristics, value: object) -> ValueRefused:
    with pytest.raises(ValueRefused) as info:
        canonical(chars, value)
    return info.value


# --- integer -----------------------------------------------------------------------------------------


@pytest.mark.parametrize(("value", "text"), [("300", "300"), ("+7", "7"), ("007", "7"), (0, "0"), (1000, "1000")])
def test_integer_accepted(value: object, text: str) -> None:
    assert canonical(INTEGER, value) == text


@pytest.mark.parametrize(
    "value", ["300.1", "300.0", "true", "abc", "", " 3", "3e2", "2024-01-01T00:00:00Z", "١٢", 300.0, True, ["1"]]
)
def test_integer_format_refused(value: object) -> None:
    assert refused(INTEGER, value).reason_code == "InvalidValue"


@pytest.mark.parametrize("value", ["-1", "1001", 5000])
def test_integer_range_refused(value: object) -> None:
    error = refused(INTEGER, value)
    assert error.reason_code == "ValueOutOfRange"
    assert "Limit" in error.info


def test_integer_must_fit_32_bits() -> None:
    unbounded = Characteristics(DataType.integer)
    assert canonical(unbounded, str(INT_MAX)) == str(INT_MAX)
    assert canonical(unbounded, str(INT_MIN)) == str(INT_MIN)
    assert refused(unbounded, str(INT_MAX + 1)).reason_code == "ValueOutOfRange"


@given(st.integers(min_value=INT_MIN, max_value=INT_MAX))
def test_integer_round_trip(number: int) -> None:
    unbounded = Characteristics(DataType.integer)
    text = canonical(unbounded, str(number))
    assert typed(unbounded, text) == number
    assert canonical(unbounded, text) == text  # canonical text is a fixed point


@given(st.integers(min_value=-5000, max_value=5000))
def test_integer_limits_are_exact(number: int) -> None:
    if 0 <= number <= 1000:
        assert typed(INTEGER, canonical(INTEGER, number)) == number
    else:
        assert refused(INTEGER, number).reason_code == "ValueOutOfRange"


# --- decimal -----------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("value", "text"),
    [
        ("7360", "7360"),
        ("7360.0", "7360"),
        ("0.50", "0.5"),
        (".5", "0.5"),
        (22080.0, "22080"),
        (7, "7"),
        ("-0", "0"),
        ("1.", "1"),
    ],
)
def test_decimal_accepted(value: object, text: str) -> None:
    assert canonical(DECIMAL, value) == text


@pytest.mark.parametrize("value", ["abc", "1e3", "", "1,5", "NaN", "inf", True, float("nan")])
def test_decimal_format_refused(value: object) -> None:
    assert refused(DECIMAL, value).reason_code == "InvalidValue"


def test_decimal_range_refused() -> None:
    assert refused(DECIMAL, "22080.01").reason_code == "ValueOutOfRange"
    assert refused(DECIMAL, "-0.1").reason_code == "ValueOutOfRange"


@given(st.decimals(min_value=0, max_value=22080, allow_nan=False, allow_infinity=False, places=3))
def test_decimal_round_trip(number: object) -> None:
    text = canonical(DECIMAL, format(number, "f"))
    assert canonical(DECIMAL, text) == text
    assert abs(typed(DECIMAL, text) - float(number)) < 1e-9  # type: ignore[operator, arg-type]


# --- boolean -----------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("value", "text"), [("true", "true"), ("TRUE", "true"), ("False", "false"), (True, "true"), (False, "false")]
)
def test_boolean_accepted_lowercase_out(value: object, text: str) -> None:
    assert canonical(BOOLEAN, value) == text
    assert typed(BOOLEAN, text) is (text == "true")


@pytest.mark.parametrize("value", ["1", "0", "yes", "", "300", 1, "2024-01-01T00:00:00Z", " true"])
def test_boolean_refused(value: object) -> None:
    assert refused(BOOLEAN, value).reason_code == "InvalidValue"


# --- dateTime ----------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("value", "text"),
    [
        ("2024-05-06T10:00:00Z", "2024-05-06T10:00:00Z"),
        ("2024-05-06t10:00:00.123z", "2024-05-06T10:00:00.123Z"),
        ("2024-05-06T10:00:00+02:00", "2024-05-06T10:00:00+02:00"),
        ("2024-05-06T10:00:00.123456789-05:30", "2024-05-06T10:00:00.123456789-05:30"),
    ],
)
def test_datetime_accepted(value: str, text: str) -> None:
    assert canonical(DATETIME, value) == text


@pytest.mark.parametrize(
    "value",
    [
        "300",
        "300.1",
        "true",
        "abc",
        "2024-05-06",
        "2024-05-06T10:00:00",
        "2024-05-06 10:00:00Z",
        "2024-02-30T10:00:00Z",
        "2024-05-06T25:00:00Z",
        "2024-05-06T10:00:00+0200",
    ],
)
def test_datetime_refused(value: str) -> None:
    assert refused(DATETIME, value).reason_code == "InvalidValue"


@given(st.datetimes(), st.integers(min_value=-(23 * 60 + 59), max_value=23 * 60 + 59))
def test_datetime_isoformat_round_trip(moment: datetime, offset_minutes: int) -> None:
    aware = moment.replace(tzinfo=timezone(timedelta(minutes=offset_minutes)))
    text = canonical(DATETIME, aware.isoformat())
    assert datetime.fromisoformat(text) == aware


# --- string ------------------------------------------------------------------------------------------


def test_string_length_limits() -> None:
    assert canonical(STRING, "x" * 16) == "x" * 16
    assert canonical(STRING, "ü" * 40) == "ü" * 40  # characters, not bytes
    assert refused(STRING, "x" * 15).reason_code == "ValueOutOfRange"
    too_long = refused(STRING, "x" * 41)
    assert too_long.reason_code == "ValueOutOfRange"
    assert "x" * 20 not in too_long.info  # a refused password is not echoed back


def test_string_pattern() -> None:
    slots = Characteristics(DataType.string, pattern=r"[0-9]+(,[0-9]+)*")
    assert canonical(slots, "1,2") == "1,2"
    assert canonical(slots, 1) == "1"
    assert refused(slots, "1,,2").reason_code == "InvalidValue"


@given(st.text(max_size=60))
def test_string_accepts_exactly_the_lengths_allowed(text: str) -> None:
    if 16 <= len(text) <= 40:
        assert canonical(STRING, text) == text
    else:
        assert refused(STRING, text).reason_code == "ValueOutOfRange"


# --- option, member and sequence lists ----------------------------------------------------------------


def test_option_list() -> None:
    assert canonical(OPTION, "LFU") == "LFU"
    assert canonical(OPTION, "lru") == "LRU"  # the valuesList's spelling wins
    assert refused(OPTION, "FIFO").reason_code == "InvalidValue"
    assert refused(OPTION, "LRU,LFU").reason_code == "InvalidValue"
    assert refused(OPTION, "").reason_code == "InvalidValue"


def test_member_list_forms() -> None:
    assert canonical(MEMBERS, "Voltage,Current.Import") == "Voltage,Current.Import"
    assert canonical(MEMBERS, ["Voltage", "Current.Import"]) == "Voltage,Current.Import"
    assert canonical(MEMBERS, "voltage, current.import") == "Voltage,Current.Import"
    assert canonical(MEMBERS, "") == ""
    assert typed(MEMBERS, "") == []
    assert typed(MEMBERS, "Voltage,Current.Import") == ["Voltage", "Current.Import"]


@pytest.mark.parametrize(
    "value", ["Voltage,Voltage", "Voltage,Power.Offered", "Voltage,", ",Voltage", "x", ["Voltage", 1]]
)
def test_member_list_refused(value: object) -> None:
    assert refused(MEMBERS, value).reason_code == "InvalidValue"


def test_non_empty_member_list() -> None:
    assert canonical(POINTS, "Authorized") == "Authorized"
    assert refused(POINTS, "").reason_code == "InvalidValue"
    assert refused(POINTS, []).reason_code == "InvalidValue"


def test_list_max_limit_is_the_csv_length() -> None:
    short = Characteristics(DataType.MemberList, values_list=MEASURANDS, max_limit=20)
    assert canonical(short, "Voltage") == "Voltage"
    assert refused(short, "Voltage,Current.Import").reason_code == "ValueOutOfRange"


def test_a_list_is_only_for_list_types() -> None:
    assert refused(Characteristics(DataType.string), ["a", "b"]).reason_code == "InvalidValue"


@given(st.lists(st.sampled_from(MEASURANDS), unique=True))
def test_member_list_round_trip(members: list[str]) -> None:
    text = canonical(MEMBERS, members)
    assert typed(MEMBERS, text) == members
    assert canonical(MEMBERS, text) == text


@given(st.lists(st.sampled_from(("Heartbeat", "NTP", "GPS")), min_size=2))
def test_sequence_list_keeps_order_and_refuses_duplicates(members: list[str]) -> None:
    if len(set(members)) == len(members):
        assert split_members(canonical(SEQUENCE, members)) == members
    else:
        assert refused(SEQUENCE, members).reason_code == "InvalidValue"


def test_other_python_types_refused() -> None:
    assert refused(STRING, None).reason_code == "InvalidValue"
    assert refused(INTEGER, {"a": 1}).reason_code == "InvalidValue"
