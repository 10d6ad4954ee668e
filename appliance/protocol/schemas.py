"""Validation of OCPP 2.0.1 payloads against the official JSON schemas, with the RPC error code to answer.

The schemas are the OCA draft-06 files shipped in the ``ocpp`` package (``ocpp/v201/schemas``). Each is
compiled with fastjsonschema once, on first use: compiling all 128 takes most of a second, which a boot
should not pay for messages it may never see, while a compiled validator checks a typical request in
microseconds.

fastjsonschema was checked against every construct these files use (``$ref`` to ``#/definitions``,
``additionalProperties: false``, ``enum``, ``maxLength``, ``minimum``/``maximum``, ``minItems``/``maxItems``,
``additionalItems`` next to a single ``items`` schema, ``format: date-time``, draft-06 integers) and handles
all of them, so no schema falls back to jsonschema. Three compile options matter:

* ``use_default=False``: by default fastjsonschema *writes* schema defaults into the validated dict (e.g.
  ``attributeType: "Actual"``). Validation must not alter a payload -- least of all one we are about to
  send -- so handlers apply defaults themselves.
* our own ``date-time`` check: fastjsonschema's built-in regex accepts non-ASCII digits (``\\d`` without
  ``re.ASCII``) and ``+0200`` offsets, neither of which is RFC 3339. (jsonschema would be no better: without
  the optional rfc3339-validator package it does not check date-time at all.)
* ``detailed_exceptions=False`` for the validators that check every message, compiled from the schema without
  its annotations (``description``, ``javaType``, ``comment``, which do not change what is valid). A detailed
  validator embeds, in every ``raise``, the sub-schema it checks and the rule's name; for
  TransactionEventRequest that is 196 KB of generated source, three quarters of it schema text, and compiling
  it peaks at some 10 MB of heap that the allocator keeps. Measured in one interpreter for the nine actions a
  station uses from boot: detailed validators +7.5 MB of RSS; plain ones +3.2 MB, +0.6 MB once the heap's free
  pages are handed back (those two with tracemalloc running); a station under tools/bench_rpc.py 42.9 -> 37.4
  MB. The detailed validator is compiled only to *explain* a payload the plain one rejected
  (`SchemaRegistry.explain`): the error code comes from the rule, which only it names. A CSMS that keeps
  sending the same bad message meets a small cache of them (`_EXPLAINERS`).

Error code mapping (Part 4 table 8; the same choice as the requirements digest §1):

============================  =================================  =============================================
schema rule                   code                               why
============================  =================================  =============================================
unknown action                NotImplemented                     "Requested Action is not known by receiver"
``type``                      TypeConstraintViolation            the table's own example, ``"somestring": 12``
``enum``, ``maxLength``,      PropertyConstraintViolation        syntactically correct, right type, but the
``minimum``/``maximum``,                                         value is not allowed: "at least one field
``format``                                                       contains an invalid value"
``required``, ``minItems``,   OccurrenceConstraintViolation      a field occurs fewer/more times than its
``maxItems``                                                     cardinality (0..1, 1..*, 1..4) allows
``additionalProperties``      FormatViolation                    a key the message format does not have: the
                                                                 payload is not the action's syntax
============================  =================================  =============================================

``maxLength`` is deliberately *not* FormatViolation: an over-long string is well-formed JSON of the right
type, only its value breaks the property's constraint (string[50]); FormatViolation stays for payloads whose
shape is wrong (and, in the device model, for requests over BytesPerMessage). The ``ocpp`` library maps it to
TypeConstraintViolation and ``required`` to ProtocolError; we follow the brief/table wording instead.
"""

from __future__ import annotations

import collections
import enum
import functools
import json
import logging
import threading
from collections.abc import Callable, Mapping
from importlib.resources.abc import Traversable
from importlib.util import find_spec
from pathlib import Path
from typing import Any

import fastjsonschema

from appliance.protocol.errors import ErrorCode, OcppError, clip_description
from appliance.protocol.tolerance import Found, Normaliser
from appliance.timetext import is_rfc3339
from appliance.util import memory

Validator = Callable[[Any], Any]

log = logging.getLogger("appliance.protocol")


class Direction(enum.StrEnum):
    """Which half of an action a payload belongs to; also the schema file name suffix."""

    REQUEST = "Request"
    RESPONSE = "Response"


_SCHEMA_SUFFIX = ".json"
#: Keywords of the OCA files that document and do not validate. `$schema` and `$id` stay: they pick the draft
#: and anchor `$ref`s.
_ANNOTATIONS = frozenset({"description", "javaType", "comment", "$comment", "title"})
#: Detailed validators kept for explaining rejections (`SchemaRegistry.explain`).
_EXPLAINERS = 4
_MAX_SHOWN_KEY = 40

_RULE_CODES: Mapping[str, ErrorCode] = {
    "type": ErrorCode.TypeConstraintViolation,
    "enum": ErrorCode.PropertyConstraintViolation,
    "const": ErrorCode.PropertyConstraintViolation,
    "maxLength": ErrorCode.PropertyConstraintViolation,
    "minLength": ErrorCode.PropertyConstraintViolation,
    "pattern": ErrorCode.PropertyConstraintViolation,
    "format": ErrorCode.PropertyConstraintViolation,
    "minimum": ErrorCode.PropertyConstraintViolation,
    "maximum": ErrorCode.PropertyConstraintViolation,
    "exclusiveMinimum": ErrorCode.PropertyConstraintViolation,
    "exclusiveMaximum": ErrorCode.PropertyConstraintViolation,
    "multipleOf": ErrorCode.PropertyConstraintViolation,
    "required": ErrorCode.OccurrenceConstraintViolation,
    "minItems": ErrorCode.OccurrenceConstraintViolation,
    "maxItems": ErrorCode.OccurrenceConstraintViolation,
    "additionalProperties": ErrorCode.FormatViolation,
}
#: Rules the OCPP schemas do not use land here; "the payload is not the action's syntax" is the safe reading.
_FALLBACK_CODE = ErrorCode.FormatViolation


#: The one date-time rule (`appliance.timetext.is_rfc3339`), shared with the device model's dateTime values.
_FORMATS: Mapping[str, Callable[[str], bool]] = {"date-time": is_rfc3339}


# --- registry -----------------------------------------------------------------------------------------


def _packaged_schema_dir() -> Traversable:
    """The schema folder inside the installed ``ocpp`` package, located without importing it.

    ``resources.files("ocpp")`` would import the package, i.e. run library code (its ``__init__.py``, empty in
    today's release, but that is the library's choice, not ours) in the firmware for the sake of 128 data
    files. ``find_spec`` of a top-level name only searches ``sys.path`` and returns the same folder without
    running anything (tests/test_import_fence.py holds us to it).
    """
    spec = find_spec("ocpp")
    if spec is None or not spec.submodule_search_locations:
        raise ModuleNotFoundError(
            "the OCPP 2.0.1 JSON schemas ship in the 'ocpp' package, which is not installed", name="ocpp"
        )
    return Path(spec.submodule_search_locations[0]) / "v201" / "schemas"


class SchemaRegistry:
    """All OCPP 2.0.1 schemas of one directory, compiled lazily and kept for the life of the process.

    Not locked: compiling is idempotent, so two threads racing on the first use of a schema only waste one
    compile, and the dict assignment itself is atomic.
    """

    def __init__(self, directory: Traversable | None = None) -> None:
        self._directory = directory if directory is not None else _packaged_schema_dir()
        self._actions = _scan_actions(self._directory)
        # One plain dict per direction, keyed by action: the lookup sits on every message's path, and an
        # Enum key would add a Python-level __hash__ call to it.
        self._requests: dict[str, Validator] = {}
        self._responses: dict[str, Validator] = {}
        self._normalisers: dict[str, Normaliser] = {}
        self._explainers: collections.OrderedDict[tuple[str, Direction], Validator] = collections.OrderedDict()
        self._explainers_lock = threading.Lock()

    @property
    def actions(self) -> frozenset[str]:
        """Every action that has a request schema (64 for OCPP 2.0.1)."""
        return self._actions

    def validate_request(self, action: str, payload: Any) -> None:
        """Check a CALL payload; raise :class:`OcppError` with the code the CALLERROR must carry.

        A rejected payload is explained on the calling thread (`explain`); the link checks with `accepts`
        first and explains off the event loop.
        """
        if not self.accepts(action, Direction.REQUEST, payload):
            raise self.explain(action, Direction.REQUEST, payload)

    def validate_response(self, action: str, payload: Any) -> None:
        """Check a CALLRESULT payload for ``action``; raises like :meth:`validate_request`."""
        if not self.accepts(action, Direction.RESPONSE, payload):
            raise self.explain(action, Direction.RESPONSE, payload)

    def accepts(self, action: str, direction: Direction, payload: Any) -> bool:
        """Whether `payload` is valid, by the plain validator: microseconds, and nothing built to say why not.

        Raises :class:`OcppError` (NotImplemented) for an action without this schema.
        """
        cache = self._requests if direction is Direction.REQUEST else self._responses
        validate = cache.get(action) or self._validator(action, direction)
        try:
            validate(payload)
        except fastjsonschema.JsonSchemaValueException:
            return False
        return True

    def explain(self, action: str, direction: Direction, payload: Any) -> OcppError:
        """The error a payload that `accepts` rejected must be answered with (code, field, constraint).

        Compiles the detailed validator (tens of milliseconds for the big schemas, hence off the event loop in
        the link) and keeps the last few, so a CSMS that repeats one bad message pays once.
        """
        key = (action, direction)
        with self._explainers_lock:  # explained on worker threads, possibly several at once
            validate = self._explainers.get(key)
            if validate is not None:
                self._explainers.move_to_end(key)
        if validate is None:
            validate = fastjsonschema.compile(
                self.schema(action, direction), formats=_FORMATS, use_default=False, detailed_exceptions=True
            )
            with self._explainers_lock:
                self._explainers[key] = validate
                while len(self._explainers) > _EXPLAINERS:
                    self._explainers.popitem(last=False)
        try:
            validate(payload)
        except fastjsonschema.JsonSchemaValueException as exc:
            return _error_from(exc)
        # Both validators come from one schema, so this means a fastjsonschema bug; still answer, never crash.
        log.error("BUG: the %s %s validators disagree about a payload", action, direction.value)
        return OcppError(_FALLBACK_CODE, "payload: violates the schema", {"field": "", "constraint": ""})

    def validate_response_lenient(self, action: str, payload: Any) -> tuple[Any, list[Found]]:
        """Check a CSMS's CALLRESULT payload, tolerating the harmless deviations of `appliance.protocol.tolerance`.

        Returns the payload in the schema's canonical spelling and the deviations that were normalised;
        anything else still raises like :meth:`validate_response`. Only for answers *from* a CSMS: requests
        get the exact CALLERROR, and what we send is checked strictly.
        """
        normaliser = self._normalisers.get(action)
        if normaliser is None:
            normaliser = Normaliser(self.schema(action, Direction.RESPONSE))
            self._normalisers[action] = normaliser
        normalised, found = normaliser.normalise(payload)
        self.validate_response(action, normalised)
        return normalised, found

    def schema(self, action: str, direction: Direction) -> dict[str, Any]:
        """The raw schema document, for tools and tests (re-read on every call; not on the hot path)."""
        document: dict[str, Any] = json.loads(self._schema_file(action, direction).read_text(encoding="utf-8"))
        return document

    def compiled(self, action: str) -> bool:
        """Both halves of `action` are compiled (or it is no action of ours, which `prepare` cannot help)."""
        return action in self._responses or action not in self._actions

    def prepare(self, action: str) -> None:
        """Compile both schemas of `action` now, unless done already; an unknown action is left to `validate_*`.

        The link calls this off the event loop (`trio.to_thread`) the first time it meets an action: compiling
        takes tens of milliseconds, which must not stall the loop, and compiling all 128 schemas at boot costs
        some 12 MB of RSS for messages a station mostly never sees. After the first time, `compiled` is a dict
        lookup and the validators are reused for the life of the process.
        """
        if action not in self._actions:
            return
        self._validator(action, Direction.REQUEST)
        # The response last: `compiled` looks only at it, so it is true only once both are in place.
        self._validator(action, Direction.RESPONSE)

    def compile_all(self) -> None:
        """Compile every schema now (tests and tools; the station compiles per action on first use)."""
        for action in self._actions:
            for direction in Direction:
                self._validator(action, direction)

    def _validator(self, action: str, direction: Direction) -> Validator:
        cache = self._requests if direction is Direction.REQUEST else self._responses
        validate = cache.get(action)
        if validate is None:
            schema = _without_annotations(self.schema(action, direction))
            validate = fastjsonschema.compile(schema, formats=_FORMATS, use_default=False, detailed_exceptions=False)
            cache[action] = validate
            memory.release_free_heap()  # the compiler's peak, handed back (it is the larger part of the cost)
        return validate

    def _schema_file(self, action: str, direction: Direction) -> Traversable:
        if action not in self._actions:
            raise OcppError(ErrorCode.NotImplemented, f"unknown action {clip_description(action, 60)!r}")
        schema_file = self._directory.joinpath(f"{action}{direction.value}{_SCHEMA_SUFFIX}")
        if not schema_file.is_file():
            raise OcppError(ErrorCode.NotImplemented, f"no {direction.value.lower()} schema for {action}")
        return schema_file


def _without_annotations(schema: Any) -> Any:
    """`schema` without the keywords that only document it: what is valid stays the same, the code shrinks.

    Only string values are dropped, so a property that happens to be *named* "description" (a dict, its
    sub-schema) is kept.
    """
    if isinstance(schema, dict):
        return {
            key: _without_annotations(value)
            for key, value in schema.items()
            if not (key in _ANNOTATIONS and isinstance(value, str))
        }
    if isinstance(schema, list):
        return [_without_annotations(item) for item in schema]
    return schema


def _scan_actions(directory: Traversable) -> frozenset[str]:
    suffix = f"{Direction.REQUEST.value}{_SCHEMA_SUFFIX}"
    actions = frozenset(entry.name[: -len(suffix)] for entry in directory.iterdir() if entry.name.endswith(suffix))
    if not actions:
        raise FileNotFoundError(f"no OCPP request schemas in {directory}")
    return actions


@functools.cache
def default_registry() -> SchemaRegistry:
    """The process-wide registry, so each schema is compiled once however many modules validate."""
    return SchemaRegistry()


def validate_request(action: str, payload: Any) -> None:
    """:meth:`SchemaRegistry.validate_request` on the shared registry."""
    default_registry().validate_request(action, payload)


def validate_response(action: str, payload: Any) -> None:
    """:meth:`SchemaRegistry.validate_response` on the shared registry."""
    default_registry().validate_response(action, payload)


# --- exception mapping --------------------------------------------------------------------------------


def _error_from(exc: fastjsonschema.JsonSchemaValueException) -> OcppError:
    rule = exc.rule or ""
    path, problem = _describe(rule, _field_path(exc.name), exc)
    code = _RULE_CODES.get(rule, _FALLBACK_CODE)
    return OcppError(code, f"{path or 'payload'}: {problem}", {"field": path, "constraint": rule})


def _field_path(name: str | None) -> str:
    # fastjsonschema names the root "data": "data.getVariableData[0].component.name".
    if not name:
        return ""
    if name.startswith("data"):
        name = name[len("data") :]
    return name.lstrip(".")


def _join(path: str, key: str) -> str:
    return f"{path}.{key}" if path else key


def _describe(rule: str, path: str, exc: fastjsonschema.JsonSchemaValueException) -> tuple[str, str]:
    """Return the field the violation is about and a short reason, never echoing the offending value."""
    limit = exc.rule_definition
    if rule == "required":
        missing = [key for key in limit if not isinstance(exc.value, dict) or key not in exc.value]
        return _join(path, missing[0] if missing else "?"), "required field missing"
    if rule == "additionalProperties":
        return _join(path, _first_extra_key(exc)), "property not allowed here"
    describe = _DESCRIPTIONS.get(rule)
    problem = describe(limit, exc.value) if describe else f"violates {rule or 'schema'}"
    return path, problem


def _first_extra_key(exc: fastjsonschema.JsonSchemaValueException) -> str:
    known = (exc.definition or {}).get("properties", {})
    extras = sorted(key for key in exc.value if key not in known) if isinstance(exc.value, dict) else []
    return clip_description(str(extras[0]), _MAX_SHOWN_KEY) if extras else "?"


def _json_type(value: Any) -> str:
    if value is None:
        return "null"
    if isinstance(value, bool):
        return "boolean"
    if isinstance(value, int):
        return "integer"
    if isinstance(value, float):
        return "number"
    if isinstance(value, str):
        return "string"
    if isinstance(value, list | tuple):
        return "array"
    if isinstance(value, dict):
        return "object"
    return type(value).__name__


def _expected_type(limit: Any) -> str:
    return " or ".join(limit) if isinstance(limit, list) else str(limit)


_DESCRIPTIONS: Mapping[str, Callable[[Any, Any], str]] = {
    "type": lambda limit, value: f"expected {_expected_type(limit)}, got {_json_type(value)}",
    "enum": lambda limit, value: "not one of " + ", ".join(str(item) for item in limit),
    "maxLength": lambda limit, value: f"longer than {limit} characters",
    "minLength": lambda limit, value: f"shorter than {limit} characters",
    "minimum": lambda limit, value: f"below the minimum {limit}",
    "maximum": lambda limit, value: f"above the maximum {limit}",
    "format": lambda limit, value: (
        f"not a valid {limit}" + (" (RFC 3339, e.g. 2024-01-31T12:00:00Z)" if limit == "date-time" else "")
    ),
    "minItems": lambda limit, value: f"fewer than {limit} items",
    "maxItems": lambda limit, value: f"more than {limit} items",
}
