"""Time as text (`appliance.timetext`): the one form the station writes, the one rule that checks what comes in,
the one parser; and no SQL statement of the firmware makes a stamp of its own."""

from __future__ import annotations

import re
from datetime import UTC, datetime, timedelta, timezone
from pathlib import Path

import pytest
from hypothesis import given
from hypothesis import strategies as st

from appliance.devicemodel.types import Characteristics, DataType
from appliance.devicemodel.values import ValueRefused, canonical
from appliance.protocol import OcppError, default_registry
from appliance.timetext import (
    canonical_rfc3339,
    format_iso,
    format_timestamp,
    is_rfc3339,
    now_text,
    parse_iso,
)

ROOT = Path(__file__).resolve().parents[1]
WRITTEN = re.compile(r"\d{4}-\d{2}-\d{2}T\d{2}:\d{2}:\d{2}\.\d{3}Z")
moments = st.datetimes(min_value=datetime(1970, 1, 2), max_value=datetime(2199, 12, 31), timezones=st.just(UTC))
offsets = st.integers(min_value=-23 * 60 - 59, max_value=23 * 60 + 59).map(lambda m: timezone(timedelta(minutes=m)))


@given(moments)
def test_what_the_station_writes_is_one_form_and_reads_back_to_the_millisecond(moment: datetime) -> None:
    text = format_iso(moment)
    assert WRITTEN.fullmatch(text) and is_rfc3339(text)
    assert parse_iso(text) == moment.replace(microsecond=moment.microsecond // 1000 * 1000)
    assert format_timestamp(moment.timestamp()) in (
        text,
        format_iso(moment + timedelta(milliseconds=1)),
        format_iso(moment - timedelta(milliseconds=1)),
    )


@given(moments, offsets)
def test_an_offset_is_read_as_the_same_instant(moment: datetime, zone: timezone) -> None:
    local = moment.astimezone(zone)
    text = local.isoformat()
    assert is_rfc3339(text)
    assert parse_iso(text) == moment
    assert format_iso(local) == format_iso(moment), "written in UTC whatever zone the moment came in"


def test_now_text_is_the_written_form() -> None:
    assert WRITTEN.fullmatch(now_text())


@pytest.mark.parametrize(
    "text",
    [
        "2024-02-29T23:59:59Z",
        "2024-01-01t00:00:00z",
        "2024-01-01T00:00:00.123456789+05:30",
        "0001-01-01T00:00:00-23:59",
    ],
)
def test_valid(text: str) -> None:
    assert is_rfc3339(text)
    assert parse_iso(text).tzinfo is UTC


@pytest.mark.parametrize(
    "text",
    [
        "2024-02-30T00:00:00Z",  # no such day
        "2024-01-01T24:00:00Z",
        "2024-01-01T23:59:60Z",  # a leap second fits no datetime
        "0000-01-01T00:00:00Z",
        "2024-01-01T00:00:00",  # no offset
        "2024-01-01 00:00:00Z",  # RFC 3339 allows a space only in prose
        "2024-01-01T00:00:00+24:00",
        "2024-01-01T00:00:00+12:75",
        "2024-01-01T00:00:00+0100",
        "2024-1-01T00:00:00Z",
        "٢٠٢٤-01-01T00:00:00Z",  # non-ASCII digits
    ],
)
def test_invalid(text: str) -> None:
    assert not is_rfc3339(text)


@pytest.mark.parametrize("text", ["2024-02-30T00:00:00Z", "2024-01-01T00:00:00+12:75", "2024-01-01T00:00:00"])
def test_the_schema_check_and_the_device_model_follow_the_one_rule(text: str) -> None:
    """Before, the schema's date-time format and a dateTime variable had two validators with different rules
    (an offset of +12:75 passed the device model's)."""
    registry = default_registry()
    payload = {"currentTime": text, "interval": 60, "status": "Accepted"}
    with pytest.raises(OcppError, match="currentTime"):
        registry.validate_response("BootNotification", payload)
    with pytest.raises(ValueRefused):
        canonical(Characteristics(DataType.dateTime), text)


def test_a_device_model_date_time_is_kept_as_given_with_upper_case_t_and_z() -> None:
    assert canonical_rfc3339("2024-01-01t10:00:00.5z") == "2024-01-01T10:00:00.5Z"
    assert canonical_rfc3339("2024-01-01T10:00:00+02:00") == "2024-01-01T10:00:00+02:00"
    with pytest.raises(ValueError):
        canonical_rfc3339("soon")


def test_parse_is_lenient_for_what_people_type_and_the_station_stored() -> None:
    assert parse_iso(" 2024-01-01 10:00:00 ") == datetime(2024, 1, 1, 10, tzinfo=UTC)  # no offset: UTC
    with pytest.raises(ValueError):
        parse_iso("yesterday")


def test_no_sql_of_the_firmware_or_its_migrations_makes_a_stamp_of_its_own() -> None:
    """Stamps are made by timetext and passed as parameters, so every row has the one written form."""
    own_stamp = re.compile(r"strftime\s*\(\s*'|datetime\s*\(\s*'now'|CURRENT_TIMESTAMP|julianday\s*\(\s*'now'", re.I)
    sources = [*ROOT.joinpath("appliance").rglob("*.py"), *ROOT.joinpath("migrations").glob("*.sql")]
    offenders = [str(p.relative_to(ROOT)) for p in sources if own_stamp.search(p.read_text(encoding="utf-8"))]
    assert offenders == []
