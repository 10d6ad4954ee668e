"""The CONTRACT's one-line name for a variable attribute, used by `[variables]` keys and station code:

    Component[(componentInstance)][[evseId[,connectorId]]].Variable[[variableInstance]][.Attribute]

e.g. ``OCPPCommCtrlr.HeartbeatInterval``, ``OCPPCommCtrlr.MessageAttempts[TransactionEvent]``,
``EVSE[2].Power.MaxSet``, ``Connector[1,1].ConnectorType``. The attribute defaults to Actual.

Parsing is purely syntactic; whether the names exist is the catalog's business. Names are matched
case-insensitively later (as OCPP does for component and variable names and instances), so the parser keeps
the spelling it was given. Listeners always receive the canonical spelling from `format_path`.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

from appliance.devicemodel.types import AttributeType, VariableKey

_NAME = r"[^.\[\]()\s,]+"
_PATH = re.compile(
    rf"(?P<component>{_NAME})"
    r"(?:\((?P<cinst>[^()]+)\))?"
    r"(?:\[\s*(?P<evse>[0-9]+)\s*(?:,\s*(?P<connector>[0-9]+)\s*)?\])?"
    rf"\.(?P<variable>{_NAME})"
    r"(?:\[(?P<vinst>[^\[\]]+)\])?"
    r"(?:\.(?P<attribute>[A-Za-z]+))?",
    re.ASCII,
)
_ATTRIBUTES = {a.value.lower(): a for a in AttributeType}


class PathError(ValueError):
    """The text is not in the path syntax at all."""


@dataclass(frozen=True)
class ParsedPath:
    """A path split into its parts, names as written."""

    component: str
    component_instance: str | None
    evse: int | None
    connector: int | None
    variable: str
    variable_instance: str | None
    attribute: AttributeType


def parse_path(text: str) -> ParsedPath:
    """Split a path; PathError if it does not follow the syntax (including an unknown attribute name)."""
    match = _PATH.fullmatch(text)
    if match is None:
        raise PathError(f"{text!r} is not Component[(instance)][[evse[,connector]]].Variable[[instance]][.Attribute]")
    attribute_text = match["attribute"]
    if attribute_text is None:
        attribute = AttributeType.Actual
    else:
        found = _ATTRIBUTES.get(attribute_text.lower())
        if found is None:
            raise PathError(f"{attribute_text!r} is not an attribute (Actual, Target, MinSet, MaxSet)")
        attribute = found
    return ParsedPath(
        component=match["component"],
        component_instance=match["cinst"],
        evse=int(match["evse"]) if match["evse"] is not None else None,
        connector=int(match["connector"]) if match["connector"] is not None else None,
        variable=match["variable"],
        variable_instance=match["vinst"],
        attribute=attribute,
    )


def format_path(key: VariableKey, attribute: AttributeType = AttributeType.Actual) -> str:
    """The canonical path of a variable attribute (Actual left implicit, as the CONTRACT's examples do)."""
    component = key.component
    text = component.name
    if component.instance is not None:
        text += f"({component.instance})"
    if component.evse is not None:
        text += f"[{component.evse}" + (f",{component.connector}" if component.connector is not None else "") + "]"
    text += "." + key.name
    if key.instance is not None:
        text += f"[{key.instance}]"
    if attribute is not AttributeType.Actual:
        text += "." + attribute.value
    return text
