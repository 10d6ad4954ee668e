"""`[hardware.serial]`: where the reader, the controller board and the meters are wired, checked at load.

Every problem is a ConfigError naming the full key (`hardware.serial.meters.2.unit: …`), so `appliance run`
exits 2 before it opens a port. The README's "Serial hardware" section lists every key. Port names are not
checked for existence here: a device may be plugged in after the station starts (it is opened with back-off),
but the name must look like one (a path or a pyserial URL such as `socket://host:port`).
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any

from appliance.config import ConfigError
from appliance.hardware.base import EvseLayout
from appliance.hardware.serial.registers import BUILT_IN, FUNCTIONS, TYPES, WORD_ORDERS, Field, RegisterMap

_TOP_KEYS = {"poll_interval_s", "reopen_max_s", "meter_failures", "reader", "controller", "buses", "meters", "maps"}
_PORT_KEYS = {"port", "baudrate", "parity", "stopbits", "bytesize"}
_READER_KEYS = _PORT_KEYS | {"debounce_s", "evse", "selection_timeout_s"}
_CONTROLLER_KEYS = _PORT_KEYS | {"heartbeat_timeout_s", "contactor_timeout_s"}
_BUS_KEYS = _PORT_KEYS | {"timeout_s"}
_METER_KEYS = {"bus", "unit", "map"}
_MAP_KEYS = {"function", "word_order", "energy_wh", "power_w", "voltage_v", "current_a"}
_FIELD_KEYS = {"address", "type", "scale"}
BAUDRATES = (1200, 2400, 4800, 9600, 19200, 38400, 57600, 115200, 230400, 460800, 921600)


@dataclass(frozen=True)
class PortSettings:
    """A serial line: a device path (/dev/ttyUSB0, /dev/serial/by-id/…) or a pyserial URL (socket://…)."""

    url: str
    baudrate: int = 9600
    parity: str = "N"
    stopbits: int = 1
    bytesize: int = 8


@dataclass(frozen=True)
class ReaderSettings:
    port: PortSettings
    debounce_s: float = 3.0
    evse: int | None = None  # a reader mounted at one EVSE selects it
    selection_timeout_s: float = 30.0


@dataclass(frozen=True)
class ControllerSettings:
    port: PortSettings
    heartbeat_timeout_s: float = 3.0
    contactor_timeout_s: float = 2.0


@dataclass(frozen=True)
class BusSettings:
    name: str
    port: PortSettings
    timeout_s: float = 0.5


@dataclass(frozen=True)
class MeterSettings:
    evse_id: int
    bus: str
    unit: int
    register_map: RegisterMap


@dataclass(frozen=True)
class SerialSettings:
    controller: ControllerSettings
    buses: dict[str, BusSettings]
    meters: dict[int, MeterSettings]
    reader: ReaderSettings | None = None
    poll_interval_s: float = 1.0
    reopen_max_s: float = 30.0
    meter_failures: int = 3


def parse_serial(raw: Any, evses: list[EvseLayout], variables: dict[str, Any]) -> SerialSettings:
    """Check `[hardware.serial]` (the raw TOML table) against the EVSE layout; ConfigError naming the key."""
    top = "hardware.serial"
    table = _table(raw, top)
    _only(table, _TOP_KEYS, top)
    poll = _number(table, top, "poll_interval_s", 1.0, 0.1, 10.0)
    _poll_within_sampling(poll, variables)
    reopen = _number(table, top, "reopen_max_s", 30.0, 1.0, 3600.0)
    failures = _int(table, top, "meter_failures", 3, 1, 100)
    maps = {**BUILT_IN, **_maps(table.get("maps", {}))}
    ids = [layout.evse_id for layout in evses]

    reader = None
    if "reader" in table:
        where = f"{top}.reader"
        t = _table(table["reader"], where)
        _only(t, _READER_KEYS, where)
        evse = t.get("evse")
        if evse is not None and (type(evse) is not int or evse not in ids):
            raise ConfigError(f"{where}.evse", f"must be one of the EVSE ids {ids}, got {evse!r}")
        reader = ReaderSettings(
            _port(t, where, 9600),
            _number(t, where, "debounce_s", 3.0, 0.0, 60.0),
            evse,
            _number(t, where, "selection_timeout_s", 30.0, 1.0, 600.0),
        )

    if "controller" not in table:
        raise ConfigError(f"{top}.controller", "missing: the charge controller board's port")
    where = f"{top}.controller"
    t = _table(table["controller"], where)
    _only(t, _CONTROLLER_KEYS, where)
    controller = ControllerSettings(
        _port(t, where, 115200),
        _number(t, where, "heartbeat_timeout_s", 3.0, 0.5, 60.0),
        _number(t, where, "contactor_timeout_s", 2.0, 0.2, 30.0),
    )

    buses: dict[str, BusSettings] = {}
    for name, bus in _table(table.get("buses", {}), f"{top}.buses").items():
        where = f"{top}.buses.{name}"
        t = _table(bus, where)
        _only(t, _BUS_KEYS, where)
        buses[name] = BusSettings(name, _port(t, where, 9600), _number(t, where, "timeout_s", 0.5, 0.05, 10.0))

    meters: dict[int, MeterSettings] = {}
    raw_meters = _table(table.get("meters", {}), f"{top}.meters")
    for key in raw_meters:
        if not key.isdigit() or int(key) not in ids:
            raise ConfigError(f"{top}.meters.{key}", f"names no EVSE (the EVSE ids are {ids})")
    seen: dict[tuple[str, int], int] = {}
    for evse_id in ids:
        where = f"{top}.meters.{evse_id}"
        if str(evse_id) not in raw_meters:
            raise ConfigError(where, f"missing: EVSE {evse_id} needs its energy meter (bus, unit, map)")
        t = _table(raw_meters[str(evse_id)], where)
        _only(t, _METER_KEYS, where)
        bus_name = t.get("bus")
        if bus_name not in buses:
            raise ConfigError(
                f"{where}.bus", f"must name a [{top}.buses.NAME] table (known: {sorted(buses)}), got {bus_name!r}"
            )
        unit = _int(t, where, "unit", None, 1, 247)
        if (bus_name, unit) in seen:
            raise ConfigError(
                f"{where}.unit", f"unit {unit} on bus {bus_name!r} is EVSE {seen[bus_name, unit]}'s meter already"
            )
        seen[bus_name, unit] = evse_id
        map_name = t.get("map", "sdm630")
        if map_name not in maps:
            raise ConfigError(
                f"{where}.map",
                f"unknown register map {map_name!r} (built in: sdm630, b23; or a [{top}.maps.NAME] table)",
            )
        meters[evse_id] = MeterSettings(evse_id, bus_name, unit, maps[map_name])
    return SerialSettings(controller, buses, meters, reader, poll, reopen, failures)


def _poll_within_sampling(poll: float, variables: dict[str, Any]) -> None:
    """The meters are polled at least as often as the station samples them, so a sample is never older than
    one sampling interval. Checked against the factory values in `[variables]`; should a CSMS later set a
    shorter interval, a sample may be up to one poll interval old (its reading says when it was taken)."""
    for name in ("SampledDataCtrlr.TxUpdatedInterval", "SampledDataCtrlr.TxEndedInterval", "AlignedDataCtrlr.Interval"):
        value = variables.get(name)
        if isinstance(value, int | float) and not isinstance(value, bool) and 0 < value < poll:
            raise ConfigError(
                "hardware.serial.poll_interval_s",
                f"{poll:g} s is longer than {name} ({value} s): "
                "meters must be polled at least as often as they are sampled",
            )


def _maps(raw: Any) -> dict[str, RegisterMap]:
    out = {}
    for name, spec in _table(raw, "hardware.serial.maps").items():
        where = f"hardware.serial.maps.{name}"
        if name in BUILT_IN:
            raise ConfigError(where, f"{name!r} is a built-in map; choose another name")
        t = _table(spec, where)
        _only(t, _MAP_KEYS, where)
        function = t.get("function", "holding")
        if function not in FUNCTIONS:
            raise ConfigError(f"{where}.function", f"must be 'holding' (3) or 'input' (4), got {function!r}")
        order = t.get("word_order", "big")
        if order not in WORD_ORDERS:
            raise ConfigError(f"{where}.word_order", f"must be 'big' or 'little', got {order!r}")
        for key in ("energy_wh", "power_w", "voltage_v", "current_a"):
            if key not in t:
                raise ConfigError(f"{where}.{key}", "missing")
        out[name] = RegisterMap(
            name,
            FUNCTIONS[function],
            order,
            energy_wh=_field(t["energy_wh"], f"{where}.energy_wh"),
            power_w=_field(t["power_w"], f"{where}.power_w"),
            voltage_v=_phase_fields(t["voltage_v"], f"{where}.voltage_v"),
            current_a=_phase_fields(t["current_a"], f"{where}.current_a"),
        )
    return out


def _phase_fields(raw: Any, where: str) -> tuple[Field, ...]:
    if not isinstance(raw, list) or not 1 <= len(raw) <= 3:
        raise ConfigError(where, "must be a list of 1 to 3 fields (L1, L2, L3)")
    return tuple(_field(item, f"{where}[{i}]") for i, item in enumerate(raw))


def _field(raw: Any, where: str) -> Field:
    t = _table(raw, where)
    _only(t, _FIELD_KEYS, where)
    address = t.get("address")
    if type(address) is not int or not 0 <= address <= 0xFFFF:
        raise ConfigError(f"{where}.address", f"must be a register address 0-65535, got {address!r}")
    kind = t.get("type", "float32")
    if kind not in TYPES:
        raise ConfigError(f"{where}.type", f"must be one of {', '.join(TYPES)}, got {kind!r}")
    if address + TYPES[kind][0] > 0x10000:
        raise ConfigError(f"{where}.address", "the value runs past register 65535")
    scale = t.get("scale", 1.0)
    if not isinstance(scale, int | float) or isinstance(scale, bool) or not math.isfinite(scale) or scale == 0:
        raise ConfigError(f"{where}.scale", f"must be a non-zero number, got {scale!r}")
    return Field(address, kind, float(scale))


def _port(t: dict[str, Any], where: str, default_baud: int) -> PortSettings:
    url = t.get("port")
    if not isinstance(url, str) or not url.strip() or "\0" in url:
        raise ConfigError(f"{where}.port", "missing or empty: a device path (/dev/ttyUSB0) or socket://host:port")
    if "://" in url and not url.startswith(("socket://", "rfc2217://", "loop://")):
        raise ConfigError(f"{where}.port", f"unsupported URL {url!r} (a device path, socket:// or rfc2217://)")
    baud = t.get("baudrate", default_baud)
    if baud not in BAUDRATES or type(baud) is not int:
        raise ConfigError(f"{where}.baudrate", f"must be one of {', '.join(map(str, BAUDRATES))}, got {baud!r}")
    parity = t.get("parity", "N")
    if parity not in ("N", "E", "O"):
        raise ConfigError(f"{where}.parity", f"must be 'N', 'E' or 'O', got {parity!r}")
    stopbits = t.get("stopbits", 1)
    if stopbits not in (1, 2) or type(stopbits) is not int:
        raise ConfigError(f"{where}.stopbits", f"must be 1 or 2, got {stopbits!r}")
    bytesize = t.get("bytesize", 8)
    if bytesize not in (7, 8) or type(bytesize) is not int:
        raise ConfigError(f"{where}.bytesize", f"must be 7 or 8, got {bytesize!r}")
    return PortSettings(url, baud, parity, stopbits, bytesize)


def _table(raw: Any, where: str) -> dict[str, Any]:
    if not isinstance(raw, dict):
        raise ConfigError(where, "must be a table")
    return raw


def _only(t: dict[str, Any], allowed: set[str], where: str) -> None:
    for key in t:
        if key not in allowed:
            raise ConfigError(f"{where}.{key}", f"unknown key (known: {', '.join(sorted(allowed))})")


def _number(t: dict[str, Any], where: str, key: str, default: float, low: float, high: float) -> float:
    value = t.get(key, default)
    if not isinstance(value, int | float) or isinstance(value, bool) or not low <= value <= high:
        raise ConfigError(f"{where}.{key}", f"must be a number from {low:g} to {high:g}, got {value!r}")
    return float(value)


def _int(t: dict[str, Any], where: str, key: str, default: int | None, low: int, high: int) -> int:
    value = t.get(key, default)
    if type(value) is not int or not low <= value <= high:
        what = "missing" if value is None else f"got {value!r}"
        raise ConfigError(f"{where}.{key}", f"must be an integer from {low} to {high}, {what}")
    return value
