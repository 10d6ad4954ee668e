"""The DeviceModel facade: the one object the rest of the station reads settings from and writes them to.

Who writes what:

* the config's `[limits]` narrow a numeric variable's minLimit/maxLimit below what the firmware allows (the
  limits the station was certified with, e.g. a TxUpdatedInterval of at least 10 s): reports show them, a
  SetVariables outside them is Rejected (ValueOutOfRange), a persisted value outside them is reset;
* the catalog's defaults and the config's `[variables]` ("factory" values) create the rows — a row is
  created once, the first time this firmware sees that variable attribute (first boot, or the first boot of
  a firmware that added the variable), from the factory value if the config names it, else the default;
  after that the persisted value wins, whoever set it. A factory value that differs from the persisted one
  is logged, not applied (CONTRACT: "applied at first boot only; never overwrites a value the CSMS has set").
  Rows of variables a later firmware dropped are left in the table, unused, so a downgrade finds them again.
* the CSMS, through SetVariables (`handle_set_variables`, see getset.py);
* the station, through `set_internal` (ReadOnly values it owns: counters, HeartbeatInterval from boot …).

Live variables (clock, availability states …) are read from a provider at read time (`bind_live`); their
stored row only serves when no provider is bound or it fails.

Listeners hear of every change of a value, by whichever writer, once it is durable.

Persistence goes through the storage worker (`appliance.storage`): every write is awaited, so nothing fsyncs on
the event loop, and a value is on disk before the CSMS hears Accepted or a listener acts on it. The decisions
themselves (`plan_set_variables`) are plain functions of the request and the model, testable without a disk.
"""

from __future__ import annotations

import contextlib
import dataclasses
import logging
from collections.abc import Callable, Iterator, Mapping

from appliance.devicemodel import getset, values
from appliance.devicemodel.catalog import build_catalog
from appliance.devicemodel.paths import PathError, format_path, parse_path
from appliance.devicemodel.report import Entry
from appliance.devicemodel.settings import CONFIGURATION_VALUE_SIZE, REPORTING_VALUE_SIZE, VALUE_SIZE, Settings
from appliance.devicemodel.store import VariableStore, Write
from appliance.devicemodel.types import (
    AttributeKey,
    AttributeType,
    Characteristics,
    DataType,
    Mutability,
    SetBy,
    UnknownAttribute,
    UnknownComponent,
    UnknownVariable,
    VariableDef,
    VariableKey,
)
from appliance.hardware.base import EvseLayout
from appliance.storage import Storage
from appliance.timetext import now_text

log = logging.getLogger("appliance.devicemodel")

Listener = Callable[[str, object], None]
Provider = Callable[[], object]
#: Returns None to allow a CSMS value (typed), or a text saying why it is refused.
Validator = Callable[[object], str | None]
_ComponentIndex = tuple[str, str, int, int]


#: A `[limits]` entry: {"min": number, "max": number}, either optional (the config has checked the shape).
FactoryLimits = Mapping[str, Mapping[str, int | float]]


class FactoryValueError(ValueError):
    """A `[variables]` (or `[limits]`) key the device model cannot take; the caller reports it as a config error
    (exit 2) naming `section.key`."""

    def __init__(self, key: str, message: str, section: str = "variables") -> None:
        super().__init__(f"{section}.{key}: {message}")
        self.key = key
        self.message = message
        self.section = section


def component_index(name: str, instance: str | None, evse: int | None, connector: int | None) -> _ComponentIndex:
    """How a component is looked up: case-insensitive names, absent parts as ''/0 (matching the store)."""
    return name.lower(), (instance or "").lower(), evse or 0, connector or 0


def _still_valid(definition: VariableDef, text: str | None) -> bool:
    if text is None:
        return True
    try:
        return values.canonical(definition.characteristics, text) == text
    except values.ValueRefused:
        return False


#: At most this many resolved paths are remembered (station code uses well under a hundred).
_RESOLVED_MAX = 1024


class _Index:
    """What follows from a catalog alone: its components by lookup key, and `_key` per path text.

    The catalog is fixed once built, and station code reads the same few dozen settings over and over: parsing
    and resolving the path cost more than the read (about 9 of 15 µs). Models of the same catalog (stations with
    the same EVSE layout share its immutable definitions, `build_catalog`) share one index: in one process with
    many stations (`appliance fleet`) it was ~20 KiB per station.
    """

    __slots__ = ("catalog", "components", "resolved")

    def __init__(self, catalog: tuple[VariableDef, ...]) -> None:
        self.catalog = catalog  # holds the definitions, so the ids in `_INDEXES`' key stay theirs
        self.components: dict[_ComponentIndex, dict[tuple[str, str], VariableDef]] = {}
        for definition in catalog:
            c, v = definition.key.component, definition.key
            variables = self.components.setdefault(component_index(c.name, c.instance, c.evse, c.connector), {})
            variables[(v.name.lower(), (v.instance or "").lower())] = definition
        self.resolved: dict[str, tuple[VariableDef, AttributeKey]] = {}


#: Indexes by the identities of their catalog's definitions (a process sees one or a few catalogs; a catalog with
#: a station maker's `[limits]` applied has definitions of its own, and so an index of its own).
_INDEXES: dict[tuple[int, ...], _Index] = {}
_INDEXES_MAX = 64


def _index(catalog: list[VariableDef]) -> _Index:
    key = tuple(map(id, catalog))
    found = _INDEXES.get(key)
    if found is None:
        found = _Index(tuple(catalog))
        if len(_INDEXES) < _INDEXES_MAX:  # bounded: a test building catalogs by the hundred keeps its own
            _INDEXES[key] = found
    return found


class DeviceModel:
    """Use `DeviceModel.open`; the constructor only indexes a catalog and its values."""

    def __init__(self, storage: Storage, catalog: list[VariableDef], stored: Mapping[AttributeKey, str | None]) -> None:
        self._storage = storage
        self._store = VariableStore(storage.writer)
        self._catalog = catalog
        index = _index(catalog)
        self._components = index.components
        self._values: dict[AttributeKey, str | None] = dict(stored)
        #: Live values: the provider, and the characteristics a live value is checked against (no limits).
        self._providers: dict[AttributeKey, tuple[Provider, Characteristics]] = {}
        self._validators: dict[AttributeKey, Validator] = {}
        self._listeners: list[Listener] = []
        self._resolved = index.resolved
        #: Typed reads of the settings the station acts on (`appliance.devicemodel.settings`).
        self.settings = Settings(self.get)

    # --- opening -------------------------------------------------------------------------------------

    @classmethod
    async def open(
        cls,
        storage: Storage,
        layouts: list[EvseLayout],
        factory: Mapping[str, object],
        limits: FactoryLimits | None = None,
    ) -> DeviceModel:
        """Load the persisted model, creating missing rows from `factory` over the defaults, under `limits`.

        Every factory key is checked on every open, so a bad config fails the same way on the hundredth boot
        as on the first; raises FactoryValueError naming the key.
        """
        catalog = build_catalog(layouts)
        if limits:
            catalog = cls(storage, catalog, {})._limited(limits, factory)
        model = cls(storage, catalog, {})
        wanted = model._check_factory(factory)
        persisted = await storage.run(model._store.load)
        new_rows, replaced_rows = [], []
        for definition in catalog:
            for attribute in definition.attributes:
                key = (definition.key, attribute.type)
                initial = (
                    Write(key, wanted[key][1], SetBy.factory)
                    if key in wanted
                    else Write(key, attribute.default, SetBy.default)
                )
                if key not in persisted:
                    new_rows.append(initial)
                elif not _still_valid(definition, persisted[key].value):
                    # A firmware update narrowed the characteristics: start over from factory/default.
                    log.warning("persisted %s is no longer valid; reset to %r", format_path(*key), initial.value)
                    replaced_rows.append(initial)
                else:
                    model._values[key] = persisted[key].value
                    if key in wanted and wanted[key][1] != persisted[key].value:
                        log.info(
                            "[variables] %s not applied: the value set by %s at %s wins",
                            wanted[key][0],
                            persisted[key].set_by.value,
                            persisted[key].set_at,
                        )
        if new_rows or replaced_rows:  # one transaction for all of it; none at all on an ordinary boot

            def store_rows() -> None:
                model._store.create(new_rows)
                model._store.write(replaced_rows)

            await storage.write(store_rows)
        for write in (*new_rows, *replaced_rows):
            model._values[write.key] = write.value
        # Until the station binds its own (corrected) clock, DateTime is the host's UTC time.
        model.bind_live("ClockCtrlr.DateTime", now_text)
        return model

    def _limited(self, limits: FactoryLimits, factory: Mapping[str, object]) -> list[VariableDef]:
        """The catalog with the station maker's narrower minLimit/maxLimit applied (FactoryValueError naming the
        `[limits]` key if it names no numeric variable, widens the firmware's own limits, or leaves a default
        without a `[variables]` value outside them)."""
        narrowed: dict[VariableKey, VariableDef] = {}
        factory_variables = set()
        for key in factory:
            with contextlib.suppress(PathError, KeyError):
                factory_variables.add(self.resolve(key)[0].key)
        for key, bounds in limits.items():

            def refuse(message: str, key: str = key) -> FactoryValueError:
                return FactoryValueError(key, message, section="limits")

            try:
                definition, attribute = self.resolve(key)
            except PathError as exc:
                raise refuse(str(exc)) from exc
            except KeyError as exc:
                raise refuse(exc.args[0]) from exc
            if attribute is not AttributeType.Actual:
                raise refuse("limits belong to the variable: name it without an attribute")
            if definition.key in narrowed:
                raise refuse("names a variable already limited by another key")
            chars = definition.characteristics
            if chars.data_type not in (DataType.integer, DataType.decimal):
                raise refuse(f"only integer and decimal variables take limits, this one is {chars.data_type.value}")
            low, high = bounds.get("min", chars.min_limit), bounds.get("max", chars.max_limit)
            for name, number in (("min", bounds.get("min")), ("max", bounds.get("max"))):
                if number is None:
                    continue
                if chars.data_type is DataType.integer and not float(number).is_integer():
                    raise refuse(f"{name} must be a whole number for an integer variable")
                if chars.min_limit is not None and number < chars.min_limit:
                    raise refuse(f"{name} {number} is below the firmware's minLimit {chars.min_limit}")
                if chars.max_limit is not None and number > chars.max_limit:
                    raise refuse(f"{name} {number} is above the firmware's maxLimit {chars.max_limit}")
            if low is not None and high is not None and low > high:
                raise refuse(f"min {low} is above max {high}")
            if chars.data_type is DataType.integer:
                low, high = (None if n is None else int(n) for n in (low, high))
            limited = dataclasses.replace(
                definition, characteristics=dataclasses.replace(chars, min_limit=low, max_limit=high)
            )
            if definition.key not in factory_variables:
                for attr in limited.attributes:
                    if not _still_valid(limited, attr.default):
                        raise refuse(
                            f"the default {attr.default} is outside these limits; set "
                            f"variables.{format_path(definition.key)} to a value within them"
                        )
            narrowed[definition.key] = limited
        return [narrowed.get(definition.key, definition) for definition in self._catalog]

    def _check_factory(self, factory: Mapping[str, object]) -> dict[AttributeKey, tuple[str, str]]:
        """Factory key → (key, canonical text), or FactoryValueError for the first bad key."""
        wanted: dict[AttributeKey, tuple[str, str]] = {}
        for key, value in factory.items():
            try:
                definition, attribute = self.resolve(key)
            except PathError as exc:
                raise FactoryValueError(key, str(exc)) from exc
            except KeyError as exc:
                raise FactoryValueError(key, exc.args[0]) from exc
            try:
                text = values.canonical(definition.characteristics, value)
            except values.ValueRefused as exc:
                raise FactoryValueError(key, f"{exc.info} ({exc.reason_code})") from exc
            attribute_key = (definition.key, attribute)
            if attribute_key in wanted:
                raise FactoryValueError(key, f"names the same variable as {wanted[attribute_key][0]!r}")
            wanted[attribute_key] = (key, text)
        return wanted

    # --- lookups -------------------------------------------------------------------------------------

    def find(
        self,
        name: str,
        instance: str | None,
        evse: int | None,
        connector: int | None,
        variable: str,
        variable_instance: str | None,
    ) -> VariableDef:
        """The variable so addressed (names case-insensitive); UnknownComponent / UnknownVariable."""
        variables = self._components.get(component_index(name, instance, evse, connector))
        if variables is None:
            raise UnknownComponent(
                f"no component {name!r}"
                + (f" instance {instance!r}" if instance else "")
                + (f" on EVSE {evse}" if evse is not None else "")
                + (f" connector {connector}" if connector is not None else "")
            )
        definition = variables.get((variable.lower(), (variable_instance or "").lower()))
        if definition is None:
            raise UnknownVariable(
                f"component {name!r} has no variable {variable!r}"
                + (f" instance {variable_instance!r}" if variable_instance else "")
            )
        return definition

    def resolve(self, path: str) -> tuple[VariableDef, AttributeType]:
        """The variable and attribute a path names; PathError for bad syntax, a KeyError subclass if unknown."""
        p = parse_path(path)
        definition = self.find(p.component, p.component_instance, p.evse, p.connector, p.variable, p.variable_instance)
        if definition.attribute(p.attribute) is None:
            raise UnknownAttribute(f"{format_path(definition.key)} has no {p.attribute.value} attribute")
        return definition, p.attribute

    def _key(self, path: str) -> tuple[VariableDef, AttributeKey]:
        found = self._resolved.get(path)
        if found is not None:
            return found
        try:
            definition, attribute = self.resolve(path)
        except PathError as exc:
            raise KeyError(str(exc)) from exc
        found = definition, (definition.key, attribute)
        if len(self._resolved) < _RESOLVED_MAX:  # bounded, whoever passes the paths
            self._resolved[path] = found
        return found

    # --- reading -------------------------------------------------------------------------------------

    def get(self, path: str) -> object:
        """The typed value (int, float, bool, str, list[str], or None if it has none); KeyError if unknown.

        Station code reads any attribute here, WriteOnly ones included (the link needs the password).
        """
        definition, key = self._key(path)
        return values.typed(definition.characteristics, self.current_text(definition, key[1]))

    def current_text(self, definition: VariableDef, attribute: AttributeType) -> str | None:
        """The canonical text now: from the live provider if one is bound and works, else the stored one."""
        key = (definition.key, attribute)
        live = self._providers.get(key)
        if live is not None:
            provider, chars = live
            try:
                return values.canonical(chars, provider())
            except Exception:
                log.exception("live value of %s failed; using the stored one", format_path(*key))
        return self._values.get(key)

    def clamp(self, path: str, number: int | float) -> int | float:
        """`number` moved into the variable's minLimit..maxLimit, for a value the station must take from the CSMS
        (BootNotification's interval) but has declared limits for."""
        definition, _ = self._key(path)
        chars = definition.characteristics
        clamped = number
        if chars.min_limit is not None and clamped < chars.min_limit:
            clamped = chars.min_limit
        if chars.max_limit is not None and clamped > chars.max_limit:
            clamped = chars.max_limit
        if clamped != number:
            log.warning("%s: %s is outside the declared limits; using %s", path, number, clamped)
        return clamped

    # --- writing -------------------------------------------------------------------------------------

    async def set_internal(self, path: str, value: object) -> None:
        """The station updates a value it owns, ReadOnly or not; checked against the characteristics.

        Raises KeyError for an unknown path and values.ValueRefused (a ValueError) for a value the
        characteristics refuse — a bug in the caller, not something to hide. Persisted before returning;
        an unchanged value is not written again.
        """
        definition, key = self._key(path)
        text = values.canonical(definition.characteristics, value)
        if key in self._values and self._values[key] == text:
            return
        await self.commit([Write(key, text, SetBy.station)])

    async def commit(self, writes: list[Write]) -> None:
        """Persist several values in one transaction, then update memory and tell listeners."""
        if not writes:
            return
        await self._storage.write(self._store.write, writes)
        changed = []
        for write in writes:
            if self._values.get(write.key) != write.value:
                changed.append(write)
            self._values[write.key] = write.value
        for write in changed:
            path = format_path(*write.key)
            typed = values.typed(self.definition(write.key).characteristics, write.value)
            for listener in list(self._listeners):
                try:
                    listener(path, typed)
                except Exception:
                    log.exception("device-model listener failed for %s", path)

    def definition(self, key: AttributeKey) -> VariableDef:
        variable = key[0]
        c = variable.component
        return self.find(c.name, c.instance, c.evse, c.connector, variable.name, variable.instance)

    # --- hooks ---------------------------------------------------------------------------------------

    def bind_live(self, path: str, provider: Provider) -> None:
        """Read this attribute from `provider()` from now on (replacing an earlier binding)."""
        definition, key = self._key(path)
        # A measurement is reported as measured: a live value must have the right form, but min/maxLimit
        # describe what may be *set* (EVSE.Power at 240 V can exceed its nominal maxLimit).
        self._providers[key] = provider, dataclasses.replace(definition.characteristics, min_limit=None, max_limit=None)

    def add_listener(self, fn: Listener) -> None:
        """`fn(canonical_path, typed_value)` after every durable change, from the CSMS or the station."""
        self._listeners.append(fn)

    def add_validator(self, path: str, fn: Validator) -> None:
        """An extra check for CSMS writes beyond the characteristics (e.g. a network slot must exist). Several
        blocks may check one variable; the first objection wins."""
        _, key = self._key(path)
        earlier = self._validators.get(key)
        if earlier is None:
            self._validators[key] = fn
        else:
            self._validators[key] = lambda value: earlier(value) or fn(value)

    def validator(self, key: AttributeKey) -> Validator | None:
        return self._validators.get(key)

    # --- OCPP requests and reports -------------------------------------------------------------------

    def handle_get_variables(self, payload: dict) -> dict:
        """GetVariablesRequest payload → GetVariablesResponse payload (OcppError over the limits)."""
        return getset.get_variables(self, payload)

    def plan_set_variables(self, payload: dict) -> tuple[dict, list[Write]]:
        """The SetVariablesResponse payload and the writes it stands for, nothing persisted yet."""
        return getset.set_variables(self, payload)

    async def handle_set_variables(self, payload: dict) -> dict:
        """SetVariablesRequest payload → SetVariablesResponse payload, every accepted value persisted."""
        answer, writes = self.plan_set_variables(payload)
        await self.commit(writes)
        return answer

    def reporting_value_size(self) -> int:
        return min(self.settings.integer(REPORTING_VALUE_SIZE), self.settings.integer(VALUE_SIZE))

    def configuration_value_size(self) -> int:
        return min(self.settings.integer(CONFIGURATION_VALUE_SIZE), self.settings.integer(VALUE_SIZE))

    def entries(self) -> Iterator[Entry]:
        """Every variable with its current values, in catalog order (station components, then per EVSE)."""
        size = self.reporting_value_size()
        for definition in self._catalog:
            current = {
                a.type: None if a.mutability is Mutability.WriteOnly else self.current_text(definition, a.type)
                for a in definition.attributes
            }
            yield Entry(definition, current, size)
