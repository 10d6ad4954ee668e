"""Hypothesis strategies derived from the official OCPP 2.0.1 JSON schemas: valid payloads, and mutated ones
that break exactly one rule, each with the CALLERROR code that rule must produce.

Only the draft-06 subset the OCPP schemas use is interpreted (`$ref` into `definitions`, objects with
`required`/`additionalProperties`, arrays with `minItems`/`maxItems`, strings with `maxLength`/`enum`/
`format: date-time`, integers/numbers with `minimum`/`maximum`, booleans). A generic generator would mostly
produce component names no station has; `HINTS` mixes in the values that reach deep into the station (its own
component and variable names, its EVSE ids, a known card), so the handlers past validation get exercised too.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from hypothesis import strategies as st

from appliance.clock import format_iso
from appliance.devicemodel.catalog import DEFAULT_LAYOUTS, build_catalog
from appliance.protocol import Direction, ErrorCode, default_registry

Schema = Mapping[str, Any]


def _hints() -> dict[tuple[str, str], st.SearchStrategy[Any]]:
    """Values that mean something to the station under test (the harness layout: EVSE 1 and 2)."""
    keys = [definition.key for definition in build_catalog(DEFAULT_LAYOUTS)]
    components = sorted({key.component.name for key in keys})
    variables = sorted({key.name for key in keys})
    instances = sorted({key.instance for key in keys if key.instance is not None})
    return {
        ("ComponentType", "name"): st.one_of(st.sampled_from(components), st.text(max_size=50)),
        ("VariableType", "name"): st.one_of(st.sampled_from(variables), st.text(max_size=50)),
        ("VariableType", "instance"): st.one_of(st.sampled_from(instances), st.text(max_size=50)),
        ("EVSEType", "id"): st.integers(min_value=0, max_value=3),
        ("EVSEType", "connectorId"): st.integers(min_value=0, max_value=2),
        ("IdTokenType", "idToken"): st.sampled_from(["04A1B2C3", "04D5E6F7", "UNKNOWN1", ""]),
    }


HINTS = _hints()
#: Properties whose numbers are ids or small counts: draw small values mostly, so lookups can succeed.
SMALL_INTEGER_NAMES = frozenset(
    {"evseId", "connectorId", "id", "requestId", "remoteStartId", "versionNumber", "configurationSlot", "seqNo"}
)


def _small_or_any(minimum: int | None, maximum: int | None) -> st.SearchStrategy[int]:
    low = -(2**31) if minimum is None else minimum
    high = 2**31 - 1 if maximum is None else maximum
    small = st.integers(min_value=max(low, -1), max_value=min(high, 5)) if max(low, -1) <= min(high, 5) else None
    wide = st.integers(min_value=low, max_value=high)
    return st.one_of(small, wide) if small is not None else wide


_DATETIMES = st.datetimes(min_value=datetime(2000, 1, 1), max_value=datetime(2099, 12, 31), timezones=st.just(UTC)).map(
    format_iso
)


class SchemaStrategies:
    """Valid instances of one schema document."""

    def __init__(self, schema: Schema) -> None:
        self._definitions: Mapping[str, Schema] = schema.get("definitions", {})
        self._schema = schema

    def resolve(self, node: Schema) -> tuple[Schema, str | None]:
        ref = node.get("$ref")
        if isinstance(ref, str) and ref.startswith("#/definitions/"):
            name = ref[len("#/definitions/") :]
            return self._definitions[name], name
        return node, None

    def valid(
        self, node: Schema | None = None, *, owner: str | None = None, key: str | None = None
    ) -> st.SearchStrategy[Any]:
        node, name = self.resolve(self._schema if node is None else node)
        hint = HINTS.get((owner or "", key or ""))
        if hint is not None:
            return hint
        if "enum" in node:
            return st.sampled_from(node["enum"])
        kind = node.get("type")
        if kind == "object":
            return self._object(node, name)
        if kind == "array":
            items = node.get("items", {})
            low = node.get("minItems", 0)
            high = min(node.get("maxItems", low + 3), low + 3)
            return st.lists(self.valid(items, owner=owner, key=key), min_size=low, max_size=max(low, high))
        if kind == "string":
            if node.get("format") == "date-time":
                return _DATETIMES
            limit = node.get("maxLength", 64)
            full = st.sampled_from(["x", "\u00e9", "\U0001f600", '"']).map(lambda c: c * limit)
            return st.one_of(st.text(max_size=min(limit, 20)), full)
        if kind == "integer":
            if key in SMALL_INTEGER_NAMES:
                return _small_or_any(node.get("minimum"), node.get("maximum"))
            return st.integers(min_value=node.get("minimum", -(2**31)), max_value=node.get("maximum", 2**31 - 1))
        if kind == "number":
            return st.floats(
                min_value=node.get("minimum"),
                max_value=node.get("maximum"),
                allow_nan=False,
                allow_infinity=False,
                width=32,
            )
        if kind == "boolean":
            return st.booleans()
        return st.none()

    def _object(self, node: Schema, name: str | None) -> st.SearchStrategy[dict[str, Any]]:
        properties: Mapping[str, Schema] = node.get("properties", {})
        required = set(node.get("required", ()))
        fields = {key: self.valid(sub, owner=name, key=key) for key, sub in properties.items() if key != "customData"}
        must = {key: value for key, value in fields.items() if key in required}
        may = {key: value for key, value in fields.items() if key not in required}
        return st.fixed_dictionaries(must, optional=may)


@dataclass(frozen=True)
class Mutated:
    """A payload breaking one rule, and the code the station must answer it with."""

    payload: Any
    code: ErrorCode
    rule: str


def _paths(
    schema: SchemaStrategies, node: Schema, value: Any, path: tuple[Any, ...] = ()
) -> list[tuple[tuple[Any, ...], Schema]]:
    """Every (path, schema node) in a valid instance, root included."""
    node, _ = schema.resolve(node)
    found = [(path, node)]
    if isinstance(value, dict):
        for key, item in value.items():
            sub = node.get("properties", {}).get(key)
            if sub is not None:
                found += _paths(schema, sub, item, (*path, key))
    elif isinstance(value, list):
        for index, item in enumerate(value):
            found += _paths(schema, node.get("items", {}), item, (*path, index))
    return found


def _replace(value: Any, path: tuple[Any, ...], new: Any) -> Any:
    if not path:
        return new
    head, rest = path[0], path[1:]
    if isinstance(value, dict):
        return {**value, head: _replace(value[head], rest, new)}
    copy = list(value)
    copy[head] = _replace(copy[head], rest, new)
    return copy


def _at(value: Any, path: tuple[Any, ...]) -> Any:
    for step in path:
        value = value[step]
    return value


_WRONG_TYPE = {"object": [], "array": {}, "string": 17, "integer": "17", "number": "1.5", "boolean": "true"}


def _mutations(node: Schema, current: Any) -> list[tuple[str, Any, ErrorCode]]:
    """(rule, replacement value or marker, code) for one node; markers are handled by the caller."""
    options: list[tuple[str, Any, ErrorCode]] = []
    kind = node.get("type")
    if kind in _WRONG_TYPE:
        options.append(("type", _WRONG_TYPE[kind], ErrorCode.TypeConstraintViolation))
    if "enum" in node:
        options.append(("enum", "NotAnEnumValue", ErrorCode.PropertyConstraintViolation))
    if kind == "string" and "maxLength" in node:
        options.append(("maxLength", "x" * (node["maxLength"] + 1), ErrorCode.PropertyConstraintViolation))
    if node.get("format") == "date-time":
        options.append(("format", "2024-02-30T25:00:00", ErrorCode.PropertyConstraintViolation))
    if kind == "integer" and "minimum" in node:
        options.append(("minimum", node["minimum"] - 1, ErrorCode.PropertyConstraintViolation))
    if kind == "array" and node.get("minItems", 0) > 0:
        options.append(("minItems", [], ErrorCode.OccurrenceConstraintViolation))
    if kind == "array" and "maxItems" in node and isinstance(current, list) and current:
        options.append(("maxItems", current * (node["maxItems"] + 1), ErrorCode.OccurrenceConstraintViolation))
    if kind == "object" and isinstance(current, dict):
        options.append(("additionalProperties", {**current, "notInTheSchema": 1}, ErrorCode.FormatViolation))
        for key in node.get("required", ()):
            if key in current:
                reduced = {k: v for k, v in current.items() if k != key}
                options.append(("required", reduced, ErrorCode.OccurrenceConstraintViolation))
    return options


@st.composite
def mutated(draw: st.DrawFn, schema: SchemaStrategies, root: Schema) -> Mutated:
    """A valid instance with one rule broken at one place."""
    value = draw(schema.valid(root))
    candidates = [
        (path, option) for path, node in _paths(schema, root, value) for option in _mutations(node, _at(value, path))
    ]
    if not candidates:  # the {} of an action whose payload has no fields: give it one it must not have
        return Mutated({**value, "notInTheSchema": 1}, ErrorCode.FormatViolation, "additionalProperties")
    path, (rule, replacement, code) = draw(st.sampled_from(candidates))
    return Mutated(_replace(value, path, replacement), code, rule)


@dataclass(frozen=True)
class ActionStrategies:
    """Both halves of one action."""

    action: str
    request: SchemaStrategies
    response: SchemaStrategies


def for_action(action: str) -> ActionStrategies:
    registry = default_registry()
    return ActionStrategies(
        action,
        SchemaStrategies(registry.schema(action, Direction.REQUEST)),
        SchemaStrategies(registry.schema(action, Direction.RESPONSE)),
    )


def requests(action: str) -> st.SearchStrategy[Mutated | dict[str, Any]]:
    """Valid (a dict) or mutated (a Mutated) CALL payloads for `action`, about half each."""
    strategies = for_action(action).request
    root = strategies._schema
    return st.one_of(strategies.valid(root), mutated(strategies, root))


def responses(action: str) -> st.SearchStrategy[Mutated | dict[str, Any]]:
    """Valid or mutated CALLRESULT payloads for `action` (what a CSMS might answer)."""
    strategies = for_action(action).response
    root = strategies._schema
    return st.one_of(strategies.valid(root), mutated(strategies, root))
