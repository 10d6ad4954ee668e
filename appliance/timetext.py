"""Time as text, in one place: how the station writes, reads and checks an OCPP dateTime.

OCPP's dateTime is RFC 3339 `date-time`. Everything the station writes — message timestamps, journal and
device-model rows, log lines — takes one form, UTC with milliseconds and a `Z` (`2026-01-31T12:00:00.123Z`),
so stamps of one writer compare as text and every reader needs to know one form. What comes in is checked by
one rule (`is_rfc3339`: the schema's `date-time` format and a device-model dateTime value alike) and read by
one parser. SQL never makes a stamp of its own (SQLite's clock functions): stamps are made here and passed as
parameters, so a row written by SQL and one written by Python cannot differ in form.

Pure functions, no clock of their own except `now_text` (the host clock, for rows the station clock does not
stamp); `appliance.clock` applies the CSMS's correction on top.
"""

from __future__ import annotations

import re
import time
from datetime import UTC, datetime

# RFC 3339 §5.6 date-time: full-date "T" full-time, fraction optional, a mandatory offset; "t"/"z" allowed.
_RFC3339 = re.compile(
    r"(\d{4})-(\d{2})-(\d{2})[Tt](\d{2}):(\d{2}):(\d{2})(?:\.\d+)?(?:[Zz]|[+-](\d{2}):(\d{2}))",
    re.ASCII,
)


def is_rfc3339(text: str) -> bool:
    """RFC 3339 `date-time` with a real calendar date.

    Stricter than RFC 3339 in two ways, so that every accepted value also fits a Python `datetime`: year 0000
    and the leap second :60 are refused. Lower-case `t`/`z` are accepted, as RFC 3339 allows.
    """
    match = _RFC3339.fullmatch(text)
    if match is None:
        return False
    year, month, day, hour, minute, second = (int(part) for part in match.groups()[:6])
    offset_hour, offset_minute = match.group(7), match.group(8)
    if offset_hour is not None and (int(offset_hour) > 23 or int(offset_minute) > 59):
        return False
    try:
        datetime(year, month, day, hour, minute, second)
    except ValueError:
        return False
    return True


def canonical_rfc3339(text: str) -> str:
    """A valid RFC 3339 value spelled with upper-case `T` and `Z`, otherwise as given (a device-model value
    keeps the offset and precision the CSMS chose); ValueError if `text` is not RFC 3339."""
    if not is_rfc3339(text):
        raise ValueError(f"{text!r} is not an RFC 3339 date-time")
    return text[:10] + "T" + text[11:-1] + text[-1].upper()


def parse_iso(text: str) -> datetime:
    """An ISO 8601 instant as an aware UTC datetime; one without an offset is taken as UTC.

    Lenient on purpose (any fraction, a space for `T`, no offset): it reads what the station wrote, what a
    person types at the journal CLI, and CSMS values the schema check has already let through.
    ValueError if it is not a date and time at all.
    """
    parsed = datetime.fromisoformat(text.strip().replace("Z", "+00:00").replace("z", "+00:00"))
    if parsed.tzinfo is None:
        parsed = parsed.replace(tzinfo=UTC)
    return parsed.astimezone(UTC)


def format_iso(moment: datetime) -> str:
    """UTC with millisecond precision and a Z suffix, the form every OCPP timestamp we send takes."""
    return moment.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%S.") + f"{moment.microsecond // 1000:03d}Z"


def format_timestamp(seconds: float) -> str:
    """`format_iso` of a POSIX timestamp (seconds since the epoch)."""
    return format_iso(datetime.fromtimestamp(seconds, UTC))


def now_text() -> str:
    """The host clock's now, as `format_timestamp` writes it: for rows no station clock stamps (`updated_at`)."""
    return format_timestamp(time.time())
