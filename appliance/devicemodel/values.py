"""Reading, checking and writing variable values as the characteristics say.

Every value has one canonical text (what is stored, compared and sent in GetVariables/NotifyReport) and one
typed form (what station code gets from `DeviceModel.get`). Input comes from three places with different
shapes — the CSMS (always a string), the config's `[variables]` (TOML str/int/float/bool/list) and station
code (Python values) — so `canonical()` first turns any of them into text and then checks that text; the
same rules therefore apply whoever writes.

Refusals carry an OCPP reasonCode from the Part 2 appendix list (Appendix 5, "Reason codes"): InvalidValue
for text that is not of the data type, ValueOutOfRange for a number outside min/maxLimit *and* for a text
whose length is outside them (Part 2 defines maxLimit of strings and lists as a length limit, so a too-long
string is out of that range; the appendix has no "too long" code for SetVariables).
"""

from __future__ import annotations

import math
import re
from decimal import Decimal, InvalidOperation

from appliance.devicemodel.types import Characteristics, DataType
from appliance.timetext import canonical_rfc3339

#: OCPP integer is a 32-bit signed number (Part 2 §2.1.4, primitive datatypes).
INT_MIN = -(2**31)
INT_MAX = 2**31 - 1

_INTEGER = re.compile(r"[+-]?[0-9]+", re.ASCII)
_DECIMAL = re.compile(r"[+-]?(?:[0-9]+(?:\.[0-9]*)?|\.[0-9]+)", re.ASCII)


class ValueRefused(ValueError):
    """A value the characteristics do not allow; `reason_code` goes into attributeStatusInfo."""

    def __init__(self, reason_code: str, info: str) -> None:
        super().__init__(info)
        self.reason_code = reason_code
        self.info = info


def to_text(value: object, data_type: DataType) -> str:
    """Turn a CSMS, TOML or Python value into text, before checking it.

    bool becomes "true"/"false" (tested before int, since bool is an int in Python); a list is only
    meaningful for member/sequence lists and becomes the comma-joined members; floats keep their repr so an
    integer variable given 300.0 is refused rather than silently truncated.
    """
    if isinstance(value, str):
        return value
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, int):
        return str(value)
    if isinstance(value, float):
        if not math.isfinite(value):
            raise ValueRefused("InvalidValue", f"{value!r} is not a finite number")
        return repr(value)
    if isinstance(value, list | tuple):
        if not data_type.is_list:
            raise ValueRefused(
                "InvalidValue", f"a list is only allowed for MemberList/SequenceList, not {data_type.value}"
            )
        if not all(isinstance(member, str) for member in value):
            raise ValueRefused("InvalidValue", "list members must be strings")
        return ",".join(value)
    raise ValueRefused("InvalidValue", f"unsupported value type {type(value).__name__}")


def canonical(chars: Characteristics, value: object) -> str:
    """The canonical text of `value`, or ValueRefused saying why the characteristics refuse it."""
    text = to_text(value, chars.data_type)
    check = _CHECKS[chars.data_type]
    return check(chars, text)


def typed(chars: Characteristics, text: str | None) -> object:
    """The Python form of a canonical text: int, float, bool, list[str] or str (None stays None)."""
    if text is None:
        return None
    match chars.data_type:
        case DataType.integer:
            return int(text)
        case DataType.decimal:
            return float(text)
        case DataType.boolean:
            return text == "true"
        case DataType.MemberList | DataType.SequenceList:
            return split_members(text)
        case _:
            return text


def split_members(text: str) -> list[str]:
    """Members of a comma-separated list; the empty text is the empty list, not one empty member."""
    return [] if text.strip() == "" else [member.strip() for member in text.split(",")]


# --- one check per data type -------------------------------------------------------------------------


def _check_integer(chars: Characteristics, text: str) -> str:
    if not _INTEGER.fullmatch(text):
        raise ValueRefused("InvalidValue", f"{_show(text)} is not an integer")
    number = int(text)
    if not INT_MIN <= number <= INT_MAX:
        raise ValueRefused("ValueOutOfRange", f"{number} does not fit a 32-bit integer")
    _check_range(chars, Decimal(number))
    return str(number)


def _check_decimal(chars: Characteristics, text: str) -> str:
    if not _DECIMAL.fullmatch(text):
        raise ValueRefused("InvalidValue", f"{_show(text)} is not a decimal number")
    try:
        number = Decimal(text)
    except InvalidOperation as exc:  # pragma: no cover - the regex admits only valid literals
        raise ValueRefused("InvalidValue", f"{_show(text)} is not a decimal number") from exc
    _check_range(chars, number)
    if number == 0:
        return "0"
    return format(number.normalize(), "f")


def _check_range(chars: Characteristics, number: Decimal) -> None:
    if chars.min_limit is not None and number < Decimal(str(chars.min_limit)):
        raise ValueRefused("ValueOutOfRange", f"{number} is below minLimit {_num(chars.min_limit)}")
    if chars.max_limit is not None and number > Decimal(str(chars.max_limit)):
        raise ValueRefused("ValueOutOfRange", f"{number} is above maxLimit {_num(chars.max_limit)}")


def _check_boolean(chars: Characteristics, text: str) -> str:
    lowered = text.lower()
    if lowered not in ("true", "false"):
        raise ValueRefused("InvalidValue", f"{_show(text)} is not a boolean (true or false)")
    return lowered


def _check_datetime(chars: Characteristics, text: str) -> str:
    try:
        return canonical_rfc3339(text)
    except ValueError:
        raise ValueRefused("InvalidValue", f"{_show(text)} is not an RFC 3339 date-time") from None


def _check_string(chars: Characteristics, text: str) -> str:
    _check_length(chars, text)
    if chars.pattern is not None and not re.fullmatch(chars.pattern, text):
        # No echo of the text: string variables include secrets (BasicAuthPassword).
        raise ValueRefused("InvalidValue", "the text does not have the form this variable needs")
    return text


def _check_option(chars: Characteristics, text: str) -> str:
    member = _member(chars, text.strip())
    if member is None:
        raise ValueRefused("InvalidValue", f"{_show(text)} is not one of {','.join(chars.values_list)}")
    return member


def _check_list(chars: Characteristics, text: str) -> str:
    members = []
    for raw in split_members(text):
        member = _member(chars, raw)
        if member is None:
            raise ValueRefused("InvalidValue", f"{_show(raw)} is not one of {','.join(chars.values_list)}")
        if member in members:
            raise ValueRefused("InvalidValue", f"{member} is listed twice")
        members.append(member)
    if chars.non_empty and not members:
        raise ValueRefused("InvalidValue", "at least one member is needed")
    joined = ",".join(members)
    _check_length(chars, joined)
    return joined


def _member(chars: Characteristics, text: str) -> str | None:
    """The valuesList entry equal to `text`, matched case-insensitively, in the list's own spelling."""
    for allowed in chars.values_list:
        if allowed.lower() == text.lower():
            return allowed
    return None


def _check_length(chars: Characteristics, text: str) -> None:
    if chars.max_limit is not None and len(text) > chars.max_limit:
        raise ValueRefused("ValueOutOfRange", f"longer than maxLimit {_num(chars.max_limit)} characters")
    if chars.min_limit is not None and len(text) < chars.min_limit:
        raise ValueRefused("ValueOutOfRange", f"shorter than minLimit {_num(chars.min_limit)} characters")


def _show(text: str) -> str:
    """A value quoted for additionalInfo (≤ 512 characters in total), never the whole of a huge input."""
    return repr(text if len(text) <= 40 else text[:37] + "...")


def _num(limit: int | float) -> str:
    return str(int(limit)) if float(limit).is_integer() else str(limit)


_CHECKS = {
    DataType.integer: _check_integer,
    DataType.decimal: _check_decimal,
    DataType.boolean: _check_boolean,
    DataType.dateTime: _check_datetime,
    DataType.string: _check_string,
    DataType.OptionList: _check_option,
    DataType.MemberList: _check_list,
    DataType.SequenceList: _check_list,
}
