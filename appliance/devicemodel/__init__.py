"""The OCPP 2.0.1 device model of the station: components, variables, their values and who may change them.

Modules: `types` (keys, attributes, characteristics), `values` (checking and canonical text per dataType),
`paths` (the CONTRACT's `Component[...].Variable[...].Attribute` names), `catalog` (what this station has),
`store` (SQLite), `model` (the `DeviceModel` facade), `getset` (GetVariables/SetVariables), `report`
(entries for NotifyReport).
"""

from appliance.devicemodel.catalog import DEFAULT_LAYOUTS
from appliance.devicemodel.model import DeviceModel, FactoryValueError
from appliance.devicemodel.paths import PathError, format_path, parse_path
from appliance.devicemodel.report import Entry
from appliance.devicemodel.types import (
    AttributeType,
    Characteristics,
    ComponentKey,
    DataType,
    Mutability,
    SetBy,
    UnknownAttribute,
    UnknownComponent,
    UnknownVariable,
    VariableDef,
    VariableKey,
)
from appliance.devicemodel.values import ValueRefused

__all__ = [
    "DEFAULT_LAYOUTS",
    "AttributeType",
    "Characteristics",
    "ComponentKey",
    "DataType",
    "DeviceModel",
    "Entry",
    "FactoryValueError",
    "Mutability",
    "PathError",
    "SetBy",
    "UnknownAttribute",
    "UnknownComponent",
    "UnknownVariable",
    "ValueRefused",
    "VariableDef",
    "VariableKey",
    "format_path",
    "parse_path",
]
