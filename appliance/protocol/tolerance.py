"""Tolerance for CSMS answers: normalise the harmless deviations real CSMSs make, and name each one.

Strict in what we send, tolerant in what we accept: a CALLRESULT whose only fault is a habit of its
implementation language (``datetime.isoformat()`` without an offset, microseconds, a field the CSMS added, an
enum spelled ``accepted``) must not turn an accepted boot into a retry loop or a delivered TransactionEvent into
a dropped one. This module walks a payload alongside its response schema and rewrites exactly those
deviations into the schema's spelling, so the strict validator that runs next -- and the station logic after
it -- only ever sees canonical values. Anything it does not recognise it leaves untouched for the validator to
refuse as before. CSMS *requests* never come here: they get the exact CALLERROR.

Timestamps are rewritten to the form we send ourselves (``2024-01-31T12:00:00.123Z``: UTC, upper case, at
most milliseconds) only when they deviate; a canonical value is left as it is.
"""

from __future__ import annotations

import enum
import re
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta, timezone
from typing import Any


class Deviation(enum.StrEnum):
    """A kind of harmless deviation; the value names it in logs, the docstring-table lives in the README."""

    TIMESTAMP_WITHOUT_OFFSET = "timestamp-without-offset"
    TIMESTAMP_NUMERIC_OFFSET = "timestamp-numeric-offset"
    TIMESTAMP_LOWER_CASE = "timestamp-lower-case"
    TIMESTAMP_SPACE_SEPARATOR = "timestamp-space-separator"
    TIMESTAMP_LONG_FRACTION = "timestamp-long-fraction"
    EXTRA_PROPERTY = "extra-property"
    ENUM_CASE = "enum-case"


#: How each deviation is taken, for the one warning per kind that the RPC layer logs.
ACCEPTED_AS: Mapping[Deviation, str] = {
    Deviation.TIMESTAMP_WITHOUT_OFFSET: "timestamp without a UTC offset, taken as UTC",
    Deviation.TIMESTAMP_NUMERIC_OFFSET: "timestamp with a numeric offset instead of Z, converted to UTC",
    Deviation.TIMESTAMP_LOWER_CASE: "timestamp with a lower-case t or z, upper-cased",
    Deviation.TIMESTAMP_SPACE_SEPARATOR: "timestamp with a space instead of T, taken as T",
    Deviation.TIMESTAMP_LONG_FRACTION: "timestamp with more than millisecond precision, cut to milliseconds",
    Deviation.EXTRA_PROPERTY: "property the schema does not define, ignored",
    Deviation.ENUM_CASE: "enum value in another letter case, taken as the schema's spelling",
}


@dataclass(frozen=True)
class Found:
    """One deviation and where it was (``idTokenInfo.status``), for the warning."""

    kind: Deviation
    path: str


# Date and time as RFC 3339 has them, with the deviations made optional: separator, offset, any fraction.
_LENIENT_DATETIME = re.compile(
    r"(\d{4}-\d{2}-\d{2})([Tt ])(\d{2}:\d{2}:\d{2})(?:\.(\d+))?([Zz]|[+-]\d{2}:\d{2})?",
    re.ASCII,
)
_MAX_FRACTION_DIGITS = 3


def normalise_datetime(text: str) -> tuple[str, list[Deviation]] | None:
    """The canonical spelling of a deviating timestamp and its deviations; None when nothing can be done.

    A value that is already canonical, or that is not a date-time at all, gives None: the strict validator
    then decides as before (and refuses, e.g., ``2024-02-30T00:00:00Z``).
    """
    match = _LENIENT_DATETIME.fullmatch(text)
    if match is None:
        return None
    date, separator, clock, fraction, offset = match.groups()
    kinds: list[Deviation] = []
    if separator == " ":
        kinds.append(Deviation.TIMESTAMP_SPACE_SEPARATOR)
    if separator == "t" or offset == "z":
        kinds.append(Deviation.TIMESTAMP_LOWER_CASE)
    if offset is None:
        kinds.append(Deviation.TIMESTAMP_WITHOUT_OFFSET)
    elif offset not in ("Z", "z"):
        kinds.append(Deviation.TIMESTAMP_NUMERIC_OFFSET)
    if fraction is not None and len(fraction) > _MAX_FRACTION_DIGITS:
        kinds.append(Deviation.TIMESTAMP_LONG_FRACTION)
    if not kinds:
        return None
    try:
        moment = datetime.fromisoformat(f"{date}T{clock}").replace(tzinfo=_zone(offset))
    except ValueError:
        return None  # 2024-13-01, 25:00:00, an offset of +24:00 …: a real error, left to the validator
    moment = moment.astimezone(UTC)
    stamp = moment.strftime("%Y-%m-%dT%H:%M:%S")
    if fraction is not None:
        stamp += "." + fraction[:_MAX_FRACTION_DIGITS].ljust(_MAX_FRACTION_DIGITS, "0")
    return stamp + "Z", kinds


def _zone(offset: str | None) -> timezone:
    if offset is None or offset in ("Z", "z"):
        return UTC
    sign = -1 if offset[0] == "-" else 1
    hours, minutes = int(offset[1:3]), int(offset[4:6])
    if hours > 23 or minutes > 59:
        raise ValueError("offset out of range")
    return timezone(sign * timedelta(hours=hours, minutes=minutes))


class Normaliser:
    """Rewrites one schema's harmless deviations; built once per response schema.

    Interprets the subset of draft-06 the OCPP schemas use (``$ref`` into ``definitions``, ``properties`` with
    ``additionalProperties``, ``items``, ``enum``, ``format: date-time``). A value of the wrong type is passed
    through unchanged, for the validator to name.
    """

    def __init__(self, schema: Mapping[str, Any]) -> None:
        self._schema = schema
        self._definitions: Mapping[str, Mapping[str, Any]] = schema.get("definitions", {})

    def normalise(self, payload: Any) -> tuple[Any, list[Found]]:
        """The payload with every harmless deviation rewritten (a new object; the input is not touched)."""
        found: list[Found] = []
        return self._walk(self._schema, payload, "", found), found

    def _resolve(self, node: Mapping[str, Any]) -> Mapping[str, Any]:
        ref = node.get("$ref")
        if isinstance(ref, str) and ref.startswith("#/definitions/"):
            return self._definitions.get(ref[len("#/definitions/") :], {})
        return node

    def _walk(self, node: Mapping[str, Any], value: Any, path: str, found: list[Found]) -> Any:
        node = self._resolve(node)
        if isinstance(value, dict) and "properties" in node:
            return self._object(node, value, path, found)
        if isinstance(value, list) and isinstance(node.get("items"), dict):
            return [self._walk(node["items"], item, f"{path}[{i}]", found) for i, item in enumerate(value)]
        if isinstance(value, str):
            return self._string(node, value, path, found)
        return value

    def _object(self, node: Mapping[str, Any], value: dict[str, Any], path: str, found: list[Found]) -> dict[str, Any]:
        properties: Mapping[str, Any] = node["properties"]
        closed = node.get("additionalProperties") is False
        result: dict[str, Any] = {}
        for key, item in value.items():
            where = f"{path}.{key}" if path else str(key)
            if key in properties:
                result[key] = self._walk(properties[key], item, where, found)
            elif closed:
                found.append(Found(Deviation.EXTRA_PROPERTY, where))
            else:
                result[key] = item
        return result

    def _string(self, node: Mapping[str, Any], value: str, path: str, found: list[Found]) -> str:
        members = node.get("enum")
        if isinstance(members, list) and value not in members:
            folded = [member for member in members if isinstance(member, str) and member.casefold() == value.casefold()]
            if len(folded) == 1:
                found.append(Found(Deviation.ENUM_CASE, path))
                return folded[0]
            return value
        if node.get("format") == "date-time":
            rewritten = normalise_datetime(value)
            if rewritten is not None:
                found.extend(Found(kind, path) for kind in rewritten[1])
                return rewritten[0]
        return value
