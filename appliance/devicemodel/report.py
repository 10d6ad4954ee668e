"""One device-model variable as reports see it (GetBaseReport/GetReport → NotifyReport's ReportDataType).

`DeviceModel.entries()` yields an `Entry` per variable with its values read at that moment (live ones from
their providers). WriteOnly values never get into an Entry at all, so no report path can leak a password,
and values are cut to the reporting size (min(ReportingValueSize, ValueSize), Part 2 DeviceDataCtrlr).
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass

from appliance.devicemodel.types import (
    AttributeType,
    Characteristics,
    ComponentKey,
    Mutability,
    VariableDef,
    VariableKey,
)


@dataclass(frozen=True)
class Entry:
    """A variable, its declared attributes with their current values, and its characteristics."""

    definition: VariableDef
    values: Mapping[AttributeType, str | None]  # WriteOnly attributes map to None
    value_limit: int

    @property
    def component(self) -> ComponentKey:
        return self.definition.key.component

    @property
    def variable(self) -> VariableKey:
        return self.definition.key

    @property
    def characteristics(self) -> Characteristics:
        return self.definition.characteristics

    @property
    def writable(self) -> bool:
        """ConfigurationInventory lists the variables the CSMS can write."""
        return self.definition.writable

    def value(self, attribute: AttributeType = AttributeType.Actual) -> str | None:
        """The attribute's current text as reported (None for WriteOnly, absent or valueless attributes)."""
        text = self.values.get(attribute)
        return None if text is None else text[: self.value_limit]

    def report_data(self) -> dict:
        """The ReportDataType object: component, variable, variableAttribute[], variableCharacteristics.

        An attribute without a value (say, a dateTime nobody set yet) is reported with the empty string:
        the schema lets only WriteOnly attributes omit `value`.
        """
        attributes = []
        for attribute in self.definition.attributes:
            item: dict = {"type": attribute.type.value}
            if attribute.mutability is not Mutability.WriteOnly:
                item["value"] = self.value(attribute.type) or ""
            item["mutability"] = attribute.mutability.value
            item["persistent"] = attribute.persistent
            item["constant"] = attribute.constant
            attributes.append(item)
        return {
            "component": self.component.to_ocpp(),
            "variable": self.variable.to_ocpp(),
            "variableAttribute": attributes,
            "variableCharacteristics": self.characteristics.to_ocpp(),
        }

    def matches(self, component: Mapping, variable: Mapping | None = None) -> bool:
        """Does a GetReport ComponentVariableType select this entry?

        Names and instances compare case-insensitively. A field the request leaves out is a wildcard: no
        instance matches every instance, no evse every EVSE (and the station-level components), no
        connectorId every connector of that EVSE, no variable every variable of the component.
        """
        own = self.component
        if str(component.get("name", "")).lower() != own.name.lower():
            return False
        if "instance" in component and str(component["instance"]).lower() != (own.instance or "").lower():
            return False
        evse = component.get("evse")
        if evse is not None:
            if own.evse != evse.get("id"):
                return False
            if "connectorId" in evse and own.connector != evse["connectorId"]:
                return False
        if variable is None:
            return True
        if str(variable.get("name", "")).lower() != self.variable.name.lower():
            return False
        return "instance" not in variable or (
            str(variable["instance"]).lower() == (self.variable.instance or "").lower()
        )
