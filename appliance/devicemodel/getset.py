"""GetVariables (B06) and SetVariables (B05) request handling.

Per item, in this order (Part 2 B05/B06 requirements, Part 6 TC_B_06…B_39):

1. component not found (name, instance, evse.id, evse.connectorId; names case-insensitive) → UnknownComponent
2. variable not found on it (name, instance)                                              → UnknownVariable
3. attribute type not declared by the variable                                             → NotSupportedAttributeType
4. Get of a WriteOnly attribute → Rejected (reasonCode WriteOnly, no value);
   Set of a ReadOnly attribute  → Rejected (reasonCode ReadOnly)
5. Set: value longer than min(ConfigurationValueSize, ValueSize) → Rejected (TooLargeElement); a value the
   characteristics refuse → Rejected (InvalidValue / ValueOutOfRange); a station validator's refusal →
   Rejected (InvalidValue)
6. otherwise Accepted — or RebootRequired for a variable flagged so in the catalog.

The answer echoes the request's component and variable objects unchanged (same spelling), and always
states the attributeType it answered for (Actual when the request left it out).

Whole-request limits (B06.FR.16/17, B05 likewise), checked before any item: more items than
DeviceDataCtrlr.ItemsPerMessage[GetVariables|SetVariables] → CALLERROR OccurrenceConstraintViolation; a
payload longer than BytesPerMessage[…] → CALLERROR FormatViolation. The length measured is that of the
request *payload* (the CALL's third element), re-serialised as compact JSON — no whitespace between
tokens, non-ASCII characters as UTF-8 rather than \\u escapes — in UTF-8 bytes. That is the message's
content independent of how the CSMS happened to format it; the frame around it (message type, id, action)
is not counted.

Set is all-or-nothing on disk: every accepted value of one request is written in one transaction before the
response is built (a power cut leaves all of them or none), and listeners run after that commit.
"""

from __future__ import annotations

import json
from typing import TYPE_CHECKING, Any

from appliance.devicemodel import values
from appliance.devicemodel.settings import bytes_per_message, items_per_message
from appliance.devicemodel.store import Write
from appliance.devicemodel.types import (
    AttributeDef,
    AttributeType,
    Mutability,
    SetBy,
    UnknownComponent,
    UnknownVariable,
    VariableDef,
)
from appliance.protocol.errors import ErrorCode, OcppError

if TYPE_CHECKING:
    from appliance.devicemodel.model import DeviceModel

#: StatusInfoType.additionalInfo is string[512].
_INFO_MAX = 512


#: Compact JSON with non-ASCII kept as UTF-8: the form a request payload is measured in (module docstring).
_MEASURING = json.JSONEncoder(separators=(",", ":"), ensure_ascii=False)


def payload_size(payload: dict) -> int:
    """The measured size of a request payload in bytes (see the module docstring)."""
    text = _MEASURING.encode(payload)
    return len(text) if text.isascii() else len(text.encode("utf-8"))  # ASCII: one byte per character


def check_limits(dm: DeviceModel, payload: dict, items: list, action: str) -> None:
    """Raise the CALLERROR for a request over ItemsPerMessage / BytesPerMessage of `action`."""
    max_items = dm.settings.integer(items_per_message(action))
    if len(items) > max_items:
        raise OcppError(
            ErrorCode.OccurrenceConstraintViolation, f"{len(items)} items; ItemsPerMessage[{action}] is {max_items}"
        )
    max_bytes = dm.settings.integer(bytes_per_message(action))
    size = payload_size(payload)
    if size > max_bytes:
        raise OcppError(ErrorCode.FormatViolation, f"{size} bytes; BytesPerMessage[{action}] is {max_bytes}")


def get_variables(dm: DeviceModel, payload: dict) -> dict:
    items = payload["getVariableData"]
    check_limits(dm, payload, items, "GetVariables")
    size = dm.reporting_value_size()
    results = []
    for item in items:
        attribute = AttributeType(item.get("attributeType", "Actual"))
        result = _echo(item, attribute)
        located = _locate(dm, item, attribute)
        if isinstance(located, str):
            result["attributeStatus"] = located
        elif located[1].mutability is Mutability.WriteOnly:
            _reject(result, "WriteOnly", "the attribute is write-only")
        else:
            result["attributeStatus"] = "Accepted"
            result["attributeValue"] = (dm.current_text(located[0], attribute) or "")[:size]
        results.append(result)
    return {"getVariableResult": results}


def set_variables(dm: DeviceModel, payload: dict) -> tuple[dict, list[Write]]:
    """The answer and the writes to persist before sending it (the caller commits them)."""
    items = payload["setVariableData"]
    check_limits(dm, payload, items, "SetVariables")
    max_value = dm.configuration_value_size()
    results = []
    writes: list[Write] = []
    for item in items:
        attribute = AttributeType(item.get("attributeType", "Actual"))
        result = _echo(item, attribute)
        results.append(result)
        located = _locate(dm, item, attribute)
        if isinstance(located, str):
            result["attributeStatus"] = located
            continue
        definition, declared = located
        if declared.mutability is Mutability.ReadOnly:
            _reject(result, "ReadOnly", "the attribute is read-only")
            continue
        raw = item["attributeValue"]
        if len(raw) > max_value:
            _reject(result, "TooLargeElement", f"value longer than ConfigurationValueSize {max_value}")
            continue
        try:
            text = values.canonical(definition.characteristics, raw)
        except values.ValueRefused as exc:
            _reject(result, exc.reason_code, exc.info)
            continue
        key = (definition.key, attribute)
        validator = dm.validator(key)
        if validator is not None:
            refusal = validator(values.typed(definition.characteristics, text))
            if refusal is not None:
                _reject(result, "InvalidValue", refusal)
                continue
        writes.append(Write(key, text, SetBy.csms))
        result["attributeStatus"] = "RebootRequired" if definition.reboot_required else "Accepted"
    return {"setVariableResult": results}, writes


def _echo(item: dict, attribute: AttributeType) -> dict:
    """The result's skeleton: the request's own component and variable objects, and the attribute type."""
    return {
        "attributeType": attribute.value,
        "component": _copied(item["component"]),
        "variable": _copied(item["variable"]),
    }


def _copied(data: Any) -> Any:
    """A copy of validated JSON data (dicts, lists, scalars), so the answer shares no object with the request;
    a tenth of what a json.dumps/json.loads round trip costs."""
    if isinstance(data, dict):
        return {key: _copied(value) for key, value in data.items()}
    if isinstance(data, list):
        return [_copied(value) for value in data]
    return data


def _locate(dm: DeviceModel, item: dict, attribute: AttributeType) -> tuple[VariableDef, AttributeDef] | str:
    """The addressed variable and its declared attribute, or the status that says why there is none."""
    component, variable = item["component"], item["variable"]
    evse = component.get("evse") or {}
    try:
        definition = dm.find(
            component["name"],
            component.get("instance"),
            evse.get("id"),
            evse.get("connectorId"),
            variable["name"],
            variable.get("instance"),
        )
    except UnknownComponent:
        return "UnknownComponent"
    except UnknownVariable:
        return "UnknownVariable"
    declared = definition.attribute(attribute)
    if declared is None:
        return "NotSupportedAttributeType"
    return definition, declared


def _reject(result: dict, reason: str, info: str) -> None:
    result["attributeStatus"] = "Rejected"
    result["attributeStatusInfo"] = {"reasonCode": reason, "additionalInfo": info[:_INFO_MAX]}
