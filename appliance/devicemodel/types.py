"""The vocabulary of the device model: keys, attributes, characteristics (OCPP 2.0.1 Part 1 §4, Part 2 B).

Everything here is immutable data. The catalog builds these once at start-up from the EVSE layout; the
store, the Get/Set handler and the report code only ever look them up, so a definition cannot drift while
the station runs.
"""

from __future__ import annotations

import enum
import functools
from dataclasses import dataclass, field


class AttributeType(enum.StrEnum):
    """Which value of a variable: the measured/actual one or one of the set points (AttributeEnumType)."""

    Actual = "Actual"
    Target = "Target"
    MinSet = "MinSet"
    MaxSet = "MaxSet"


class Mutability(enum.StrEnum):
    """Who may write an attribute from outside: the CSMS via SetVariables (MutabilityEnumType)."""

    ReadOnly = "ReadOnly"
    WriteOnly = "WriteOnly"
    ReadWrite = "ReadWrite"


class DataType(enum.StrEnum):
    """DataEnumType: how the text of a value is to be read."""

    string = "string"
    decimal = "decimal"
    integer = "integer"
    dateTime = "dateTime"
    boolean = "boolean"
    OptionList = "OptionList"
    SequenceList = "SequenceList"
    MemberList = "MemberList"

    @property
    def is_list(self) -> bool:
        """Member and sequence lists hold several comma-separated members of the valuesList."""
        return self in (DataType.MemberList, DataType.SequenceList)


class SetBy(enum.StrEnum):
    """Who wrote a persisted value last; decides nothing at run time but answers "why is it like this?"."""

    default = "default"  # the catalog's default, written when the row was created
    factory = "factory"  # the config's [variables], written when the row was created
    csms = "csms"  # a SetVariables the CSMS sent
    station = "station"  # the station itself (set_internal), e.g. HeartbeatInterval from BootNotification


@dataclass(frozen=True, order=True)
class ComponentKey:
    """A component as OCPP addresses it: name, optional instance, optional EVSE and connector."""

    name: str
    instance: str | None = None
    evse: int | None = None
    connector: int | None = None

    def __hash__(self) -> int:
        return self._hash

    @functools.cached_property
    def _hash(self) -> int:
        """Hashed once: every device-model read looks a key up (the generated __hash__ rehashes each time)."""
        return hash((self.name, self.instance, self.evse, self.connector))

    def to_ocpp(self) -> dict:
        """The ComponentType JSON object (names in the catalog's spelling)."""
        out: dict = {"name": self.name}
        if self.instance is not None:
            out["instance"] = self.instance
        if self.evse is not None:
            evse: dict = {"id": self.evse}
            if self.connector is not None:
                evse["connectorId"] = self.connector
            out["evse"] = evse
        return out


@dataclass(frozen=True, order=True)
class VariableKey:
    """One variable of one component; its attributes hang below it."""

    component: ComponentKey
    name: str
    instance: str | None = None

    def __hash__(self) -> int:
        return self._hash

    @functools.cached_property
    def _hash(self) -> int:
        """Hashed once, like ComponentKey."""
        return hash((self.component, self.name, self.instance))

    def to_ocpp(self) -> dict:
        """The VariableType JSON object."""
        out: dict = {"name": self.name}
        if self.instance is not None:
            out["instance"] = self.instance
        return out


@dataclass(frozen=True)
class Characteristics:
    """VariableCharacteristicsType plus two station-internal refinements that are never reported.

    `min_limit`/`max_limit` bound numbers; for strings and lists they bound the length of the text, which is
    how Part 2 defines maxLimit for string, OptionList, SequenceList and MemberList (we read minLimit the same
    way for strings, which is what BasicAuthPassword's 16..40 needs).
    """

    data_type: DataType
    unit: str | None = None
    min_limit: int | float | None = None
    max_limit: int | float | None = None
    values_list: tuple[str, ...] = ()
    supports_monitoring: bool = False
    #: string only: a regular expression (fullmatch) the value must satisfy, e.g. a list of slot numbers.
    pattern: str | None = None
    #: lists only: refuse the empty list (a TxStartPoint with no member would never start a transaction).
    non_empty: bool = False

    def to_ocpp(self) -> dict:
        """The VariableCharacteristicsType JSON object."""
        out: dict = {"dataType": self.data_type.value, "supportsMonitoring": self.supports_monitoring}
        if self.unit is not None:
            out["unit"] = self.unit
        if self.min_limit is not None:
            out["minLimit"] = self.min_limit
        if self.max_limit is not None:
            out["maxLimit"] = self.max_limit
        if self.values_list:
            out["valuesList"] = ",".join(self.values_list)
        return out


@dataclass(frozen=True)
class AttributeDef:
    """One attribute of a variable: its mutability, report flags and factory-less default text."""

    type: AttributeType
    mutability: Mutability
    default: str | None  # canonical text, or None for "no value" (e.g. a password never set)
    persistent: bool = True
    constant: bool = False


@dataclass(frozen=True)
class VariableDef:
    """A variable and everything the station knows about it; only its attributes' values live elsewhere."""

    key: VariableKey
    characteristics: Characteristics
    attributes: tuple[AttributeDef, ...]
    #: a CSMS change only takes effect after a reboot: SetVariables answers RebootRequired.
    reboot_required: bool = False
    _by_type: dict[AttributeType, AttributeDef] = field(default_factory=dict, init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        for attribute in self.attributes:
            if attribute.type in self._by_type:
                raise ValueError(f"{self.key}: attribute {attribute.type} declared twice")
            self._by_type[attribute.type] = attribute

    def attribute(self, attribute_type: AttributeType) -> AttributeDef | None:
        """The declared attribute of that type, or None (NotSupportedAttributeType)."""
        return self._by_type.get(attribute_type)

    @property
    def writable(self) -> bool:
        """True if the CSMS may write any attribute (what ConfigurationInventory reports)."""
        return any(a.mutability is not Mutability.ReadOnly for a in self.attributes)


#: The key of one stored value: the variable and which attribute of it.
AttributeKey = tuple[VariableKey, AttributeType]


class UnknownComponent(KeyError):
    """No component with that name, instance, EVSE and connector (GetVariables: UnknownComponent)."""


class UnknownVariable(KeyError):
    """The component exists but has no such variable/instance (GetVariables: UnknownVariable)."""


class UnknownAttribute(KeyError):
    """The variable exists but does not have that attribute type (NotSupportedAttributeType)."""
