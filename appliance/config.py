"""The station's TOML config, turned into typed settings.

Every problem is a `ConfigError` that names the offending key, because the person reading it is a station
maker at a terminal or a service manager's journal: `appliance run` prints it on one line and exits 2.
Variable values under `[variables]` are only checked for shape here; the device model checks them against
their characteristics when it opens (still before the station connects anywhere).
"""

from __future__ import annotations

import os
import tomllib
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any
from urllib.parse import SplitResult, urlsplit

from appliance.devicemodel.paths import PathError, parse_path
from appliance.devicemodel.types import AttributeType
from appliance.hardware.base import EvseLayout

if TYPE_CHECKING:  # serial backend (issue 12): its settings are parsed only when backend = "serial"
    from appliance.hardware.serial.settings import SerialSettings

#: Linux's sun_path is 108 bytes including the terminating NUL.
MAX_SOCKET_PATH_BYTES = 107

#: The embedded default: simulated hardware, data under the current directory, a CSMS on loopback.
DEFAULT_CONFIG = """
[station]
id = "CS001"
data_dir = "var/cs001"
vendor_name = "Appliance"
model = "AC22-2"
serial_number = "SIM-0001"
firmware_version = "0.1.0"

[csms]
url = "ws://127.0.0.1:9000/"
security_profile = 0

[hardware]
backend = "sim"
sim_socket = "var/cs001/sim.sock"
"""

_SECTIONS = {"station", "csms", "hardware", "variables", "limits", "evse", "logging", "journal", "security", "firmware"}
_STATION_KEYS = {"id", "data_dir", "vendor_name", "model", "serial_number", "firmware_version"}
_CSMS_KEYS = {"url", "security_profile", "basic_auth_password", "ca_file"}
_HARDWARE_KEYS = {"backend", "sim_socket", "serial"}
_EVSE_KEYS = {"id", "phases", "max_current_a", "nominal_voltage_v", "connector_type"}
_LOGGING_KEYS = {"level", "file_max_bytes", "file_count"}  # file_*: logs/diagnostics
_JOURNAL_KEYS = {"retention_days", "retention_rows"}
_SECURITY_KEYS = {"client_cert_file", "client_key_file"}  # security block (TLS client certificate, profile 3)
# [firmware] (firmware update block): the CONTRACT's three keys, then timeouts and limits (README "Firmware update")
_FIRMWARE_KEYS = {
    "manufacturer_root_file",
    "installer",
    "install_command",
    "install_timeout",
    "trial_boots",
    "connect_timeout",
    "stall_timeout",
    "transfer_timeout",
    "max_image_bytes",
    "reserve_bytes",
    "ca_file",
}


class ConfigError(Exception):
    """A config problem, always tied to the key that caused it."""

    def __init__(self, key: str, problem: str) -> None:
        super().__init__(f"config error: {key}: {problem}")
        self.key = key
        self.problem = problem


@dataclass(frozen=True)
class StationConfig:
    id: str
    data_dir: Path
    vendor_name: str
    model: str
    serial_number: str | None
    firmware_version: str | None


@dataclass(frozen=True)
class CsmsConfig:
    url: str
    security_profile: int
    basic_auth_password: str | None
    ca_file: Path | None


@dataclass(frozen=True)
class SecurityConfig:
    """`[security]`: the factory ChargingStationCertificate (chain PEM) and its key, for Security Profile 3."""

    client_cert_file: Path | None = None
    client_key_file: Path | None = None

    @property
    def client_identity(self) -> tuple[Path, Path] | None:
        if self.client_cert_file is None or self.client_key_file is None:
            return None
        return (self.client_cert_file, self.client_key_file)


@dataclass(frozen=True)
class HardwareConfig:
    backend: str
    sim_socket: Path
    serial: dict[str, Any] = field(default_factory=dict)
    #: serial backend (issue 12): `[hardware.serial]` checked, when backend = "serial"
    serial_settings: SerialSettings | None = None


@dataclass(frozen=True)
class JournalConfig:
    """How long delivered messages stay in the journal for inspection (pending ones always stay)."""

    retention_days: float = 30.0
    retention_rows: int = 100_000


@dataclass(frozen=True)
class FirmwareConfig:
    """[firmware]: where the factory ManufacturerRootCertificates are, which installer, download bounds."""

    manufacturer_root_file: Path | None = None
    installer: str = "slots"
    install_command: str | None = None
    install_timeout: float = 1800.0
    trial_boots: int = 3
    connect_timeout: float = 15.0
    stall_timeout: float = 30.0
    transfer_timeout: float = 900.0
    max_image_bytes: int = 512 * 1024 * 1024
    reserve_bytes: int = 16 * 1024 * 1024
    ca_file: Path | None = None


@dataclass(frozen=True)
class Config:
    station: StationConfig
    csms: CsmsConfig
    hardware: HardwareConfig
    evses: list[EvseLayout]
    variables: dict[str, Any]
    log_level: str = "INFO"
    # --- logs and customer information: the station's own rotated log files in <data_dir>/logs (GetLog)
    log_file_max_bytes: int = 1_048_576
    log_file_count: int = 5
    limits: dict[str, dict[str, int | float]] = field(default_factory=dict)
    journal: JournalConfig = field(default_factory=JournalConfig)
    security: SecurityConfig = field(default_factory=SecurityConfig)
    firmware: FirmwareConfig = field(default_factory=FirmwareConfig)
    source: str = "<embedded default>"


def load(path: Path | None) -> Config:
    """Read `path` (or the embedded default) and check it; raises ConfigError."""
    if path is None:
        return parse(DEFAULT_CONFIG, source="<embedded default>")
    try:
        text = path.read_text(encoding="utf-8")
    except OSError as exc:
        raise ConfigError("--config", f"cannot read {path}: {exc.strerror or exc}") from exc
    except UnicodeDecodeError as exc:
        raise ConfigError("--config", f"{path} is not UTF-8 text") from exc
    return parse(text, source=str(path))


def parse(text: str, *, source: str) -> Config:
    """Parse TOML text.

    Relative paths are taken from the current directory, as the CONTRACT's examples do; a service unit sets
    WorkingDirectory (see tools/appliance.service).
    """
    try:
        raw = tomllib.loads(text)
    except tomllib.TOMLDecodeError as exc:
        raise ConfigError("<file>", f"not valid TOML: {exc}") from exc
    _only(raw, _SECTIONS, "")
    station = _table(raw, "station")
    csms = _table(raw, "csms")
    hardware = _table(raw, "hardware", required=False)
    _only(station, _STATION_KEYS, "station.")
    _only(csms, _CSMS_KEYS, "csms.")
    _only(hardware, _HARDWARE_KEYS, "hardware.")

    station_id = _str(station, "station.id", "id", required=True)
    assert station_id is not None
    if not 1 <= len(station_id) <= 48 or ":" in station_id or "/" in station_id:
        raise ConfigError(
            "station.id",
            "must be 1-48 characters without ':' or '/' (it is the URL path segment and the basic-auth username)",
        )
    data_dir = Path(_str(station, "station.data_dir", "data_dir", required=True) or "")
    vendor = _str(station, "station.vendor_name", "vendor_name", default="Appliance", max_len=50)
    model = _str(station, "station.model", "model", default="AC22-2", max_len=20)
    serial = _str(station, "station.serial_number", "serial_number", max_len=25)
    firmware = _str(station, "station.firmware_version", "firmware_version", max_len=50)

    url = _str(csms, "csms.url", "url", required=True) or ""
    parts = _csms_url(url)
    profile = csms.get("security_profile", 1)
    if type(profile) is not int or profile not in (0, 1, 2, 3):
        raise ConfigError("csms.security_profile", f"must be 0, 1, 2 or 3, got {profile!r}")
    if profile >= 2 and parts.scheme != "wss":
        raise ConfigError("csms.url", f"security_profile {profile} needs a wss:// URL")
    if profile < 2 and parts.scheme == "wss":
        raise ConfigError("csms.security_profile", "a wss:// URL needs security_profile 2 or 3")
    password = _str(csms, "csms.basic_auth_password", "basic_auth_password")
    if profile in (1, 2) and password is None:
        raise ConfigError("csms.basic_auth_password", f"required for security_profile {profile}")
    if password is not None and not 16 <= len(password) <= 40:
        raise ConfigError("csms.basic_auth_password", "must be 16 to 40 characters (OCPP passwordString)")
    ca = _str(csms, "csms.ca_file", "ca_file")
    ca_file = Path(ca) if ca else None
    if profile >= 2 and ca_file is None:
        raise ConfigError("csms.ca_file", f"required for security_profile {profile} (the CSMS root certificate)")
    security = _security(_table(raw, "security", required=False), profile)

    backend = _str(hardware, "hardware.backend", "backend", default="sim")
    if backend not in ("sim", "serial"):
        raise ConfigError("hardware.backend", f"must be 'sim' or 'serial', got {backend!r}")
    sim_socket = Path(_str(hardware, "hardware.sim_socket", "sim_socket") or str(data_dir / "sim.sock"))
    if backend == "sim" and len(os.fsencode(sim_socket)) > MAX_SOCKET_PATH_BYTES:
        derived = "" if "sim_socket" in hardware else " (derived from station.data_dir)"
        raise ConfigError(
            "hardware.sim_socket",
            f"{str(sim_socket)!r}{derived} is {len(os.fsencode(sim_socket))} "
            f"bytes; a Unix socket path has at most {MAX_SOCKET_PATH_BYTES} (108 with the NUL): "
            "choose a shorter path",
        )
    serial_ports = hardware.get("serial", {})
    if not isinstance(serial_ports, dict):
        raise ConfigError("hardware.serial", "must be a table")

    variables = raw.get("variables", {})
    if not isinstance(variables, dict):
        raise ConfigError("variables", "must be a table")
    for key, value in variables.items():
        if not isinstance(value, str | int | float | bool | list) or (
            isinstance(value, list) and not all(isinstance(v, str) for v in value)
        ):
            raise ConfigError(f"variables.{key}", "value must be a string, number, boolean or list of strings")
    _no_contradiction(
        variables,
        {
            "securityctrlr.securityprofile": ("csms.security_profile", profile, False),
            "securityctrlr.basicauthpassword": ("csms.basic_auth_password", password, True),
            "securityctrlr.identity": ("station.id", station_id, False),
            "chargingstation.vendorname": ("station.vendor_name", vendor, False),
            "chargingstation.model": ("station.model", model, False),
        },
    )

    logging_table = _table(raw, "logging", required=False)
    _only(logging_table, _LOGGING_KEYS, "logging.")
    level = str(logging_table.get("level", "INFO")).upper()
    if level not in ("DEBUG", "INFO", "WARNING", "ERROR"):
        raise ConfigError("logging.level", f"must be DEBUG, INFO, WARNING or ERROR, got {level!r}")
    file_max_bytes = logging_table.get("file_max_bytes", 1_048_576)
    if type(file_max_bytes) is not int or not 4096 <= file_max_bytes <= 1 << 30:
        raise ConfigError("logging.file_max_bytes", "must be an integer from 4096 to 1073741824 (bytes per file)")
    file_count = logging_table.get("file_count", 5)
    if type(file_count) is not int or not 1 <= file_count <= 100:
        raise ConfigError("logging.file_count", "must be an integer from 1 to 100 (files kept)")

    journal_table = _table(raw, "journal", required=False)
    _only(journal_table, _JOURNAL_KEYS, "journal.")
    days = journal_table.get("retention_days", 30)
    if not isinstance(days, int | float) or isinstance(days, bool) or days < 0:
        raise ConfigError("journal.retention_days", "must be a number of days ≥ 0")
    rows = journal_table.get("retention_rows", 100_000)
    if type(rows) is not int or rows < 0:
        raise ConfigError("journal.retention_rows", "must be an integer ≥ 0")

    evses = _evses(raw.get("evse"))
    serial_settings = None
    if backend == "serial":  # serial backend (issue 12): every [hardware.serial] key checked before start
        from appliance.hardware.serial.settings import parse_serial

        serial_settings = parse_serial(serial_ports, evses, dict(variables))

    return Config(
        firmware=_firmware(_table(raw, "firmware", required=False)),
        journal=JournalConfig(float(days), rows),
        station=StationConfig(station_id, data_dir, vendor or "", model or "", serial, firmware),
        csms=CsmsConfig(url, profile, password, ca_file),
        hardware=HardwareConfig(backend or "sim", sim_socket, serial_ports, serial_settings),
        evses=evses,
        variables=dict(variables),
        limits=_limits(raw.get("limits", {})),
        log_level=level,
        log_file_max_bytes=file_max_bytes,
        log_file_count=file_count,
        security=security,
        source=source,
    )


def _security(table: dict[str, Any], profile: int) -> SecurityConfig:
    """`[security]` (security block): both files or neither; required for profile 3 (preflight checks them)."""
    _only(table, _SECURITY_KEYS, "security.")
    cert = _str(table, "security.client_cert_file", "client_cert_file")
    key = _str(table, "security.client_key_file", "client_key_file")
    for name, value, other in (("client_cert_file", cert, key), ("client_key_file", key, cert)):
        if value is None and (other is not None or profile == 3):
            why = (
                "security_profile 3 authenticates with a client certificate"
                if profile == 3
                else "the certificate and its key go together"
            )
            raise ConfigError(f"security.{name}", f"missing: {why}")
    return SecurityConfig(Path(cert) if cert else None, Path(key) if key else None)


def _firmware(table: dict[str, Any]) -> FirmwareConfig:
    """[firmware] (firmware update block). The installer name must be one the registry knows."""
    from appliance.firmware.installers import INSTALLERS

    _only(table, _FIRMWARE_KEYS, "firmware.")
    installer = _str(table, "firmware.installer", "installer", default="slots") or "slots"
    if installer not in INSTALLERS:
        known = ", ".join(sorted(INSTALLERS))
        raise ConfigError("firmware.installer", f"unknown installer {installer!r} (known: {known})")
    command = _str(table, "firmware.install_command", "install_command")
    if installer == "command" and command is None:
        raise ConfigError("firmware.install_command", 'required with installer = "command"')
    defaults = FirmwareConfig()
    numbers: dict[str, float] = {}
    for key in ("install_timeout", "connect_timeout", "stall_timeout", "transfer_timeout"):
        value = table.get(key, getattr(defaults, key))
        if not isinstance(value, int | float) or isinstance(value, bool) or value <= 0:
            raise ConfigError(f"firmware.{key}", "must be a number of seconds > 0")
        numbers[key] = float(value)
    counts: dict[str, int] = {}
    for key, least in (("trial_boots", 1), ("max_image_bytes", 1), ("reserve_bytes", 0)):
        value = table.get(key, getattr(defaults, key))
        if type(value) is not int or value < least:
            raise ConfigError(f"firmware.{key}", f"must be an integer ≥ {least}")
        counts[key] = value
    roots = _str(table, "firmware.manufacturer_root_file", "manufacturer_root_file")
    ca = _str(table, "firmware.ca_file", "ca_file")
    return FirmwareConfig(
        manufacturer_root_file=Path(roots) if roots else None,
        installer=installer,
        install_command=command,
        ca_file=Path(ca) if ca else None,
        install_timeout=numbers["install_timeout"],
        connect_timeout=numbers["connect_timeout"],
        stall_timeout=numbers["stall_timeout"],
        transfer_timeout=numbers["transfer_timeout"],
        trial_boots=counts["trial_boots"],
        max_image_bytes=counts["max_image_bytes"],
        reserve_bytes=counts["reserve_bytes"],
    )


def _csms_url(url: str) -> SplitResult:
    """The CSMS URL split, or ConfigError; the message never repeats a user:password it may carry.

    The station id is appended as the last path segment (CONTRACT), so a query or fragment would end up in the
    middle of the URL; credentials belong in csms.basic_auth_password (the station id is the username).
    """
    try:
        parts = urlsplit(url)
    except ValueError as exc:  # e.g. an unclosed IPv6 bracket
        raise ConfigError("csms.url", f"not a URL: {exc}") from None
    _, at, hostport = parts.netloc.rpartition("@")
    if at:
        shown = parts._replace(netloc=f"***@{hostport}").geturl()
        raise ConfigError(
            "csms.url",
            f"must not carry user:password ({shown}): the station id is the basic-auth "
            "username and csms.basic_auth_password the password",
        )
    if parts.scheme not in ("ws", "wss") or not parts.hostname:
        raise ConfigError("csms.url", f"must be a ws:// or wss:// URL with a host, got {url!r}")
    try:
        port = parts.port
    except ValueError:
        port = -1
    if port is not None and not 1 <= port <= 65535:
        text = hostport.rpartition("]")[2] if hostport.startswith("[") else hostport
        text = text.rpartition(":")[2]
        raise ConfigError("csms.url", f"port {text!r} is not a number from 1 to 65535")
    if "?" in url or "#" in url:
        part = "a query (?…)" if "?" in url else "a fragment (#…)"
        raise ConfigError("csms.url", f"must not have {part}: the station id is appended as the last path segment")
    return parts


def _no_contradiction(variables: dict[str, Any], owned: dict[str, tuple[str, Any, bool]]) -> None:
    """Refuse a `[variables]` value for a variable whose truth is another config key, unless they agree.

    The station reports those variables from the config (SecurityCtrlr.SecurityProfile is csms.security_profile),
    so a different factory value would be silently ignored (or, for the password, silently win over
    csms.basic_auth_password); a station maker must learn which one counts.
    `owned`: lower-case Component.Variable → (config key, its value, whether the value is secret).
    """
    for key, value in variables.items():
        try:
            path = parse_path(key)
        except PathError:
            continue  # the device model names the syntax error when it opens
        plain = path.component_instance is None and path.evse is None and path.variable_instance is None
        name = f"{path.component}.{path.variable}".lower()
        if not plain or path.attribute is not AttributeType.Actual or name not in owned:
            continue
        config_key, actual, secret = owned[name]
        if actual is not None and str(value) == str(actual):
            continue
        told = "" if secret or actual is None else f" ({actual!r})"
        raise ConfigError(
            f"variables.{key}",
            f"contradicts {config_key}{told}: the station reports {config_key}; set it there and remove this line",
        )


def _limits(raw: Any) -> dict[str, dict[str, int | float]]:
    """`[limits]`: the minLimit/maxLimit the station maker declares (certified) for numeric variables, keyed like
    `[variables]`, e.g. ``"SampledDataCtrlr.TxUpdatedInterval" = { min = 10 }``. Only the shape is checked here;
    the device model checks each key against its variable when it opens (unknown key, not numeric, wider than the
    firmware allows, or a default outside them: exit 2 naming `limits.<key>`)."""
    if not isinstance(raw, dict):
        raise ConfigError("limits", "must be a table")
    limits: dict[str, dict[str, int | float]] = {}
    for key, bounds in raw.items():
        where = f"limits.{key}"
        if not isinstance(bounds, dict) or not bounds:
            raise ConfigError(where, "must be an inline table with min and/or max, e.g. { min = 10, max = 3600 }")
        for name, number in bounds.items():
            if name not in ("min", "max"):
                raise ConfigError(f"{where}.{name}", "unknown key (known: max, min)")
            if not isinstance(number, int | float) or isinstance(number, bool) or not -(2**63) < number < 2**63:
                raise ConfigError(f"{where}.{name}", f"must be a number, got {number!r}")
        if "min" in bounds and "max" in bounds and bounds["min"] > bounds["max"]:
            raise ConfigError(where, f"min {bounds['min']} is above max {bounds['max']}")
        limits[key] = dict(bounds)
    return limits


def _evses(raw: Any) -> list[EvseLayout]:
    """The EVSE layout; the default is the certified station's: EVSE 1 three-phase, EVSE 2 single-phase."""
    if raw is None:
        return [EvseLayout(1, phases=3), EvseLayout(2, phases=1)]
    if not isinstance(raw, list) or not raw:
        raise ConfigError("evse", "must be an array of tables ([[evse]])")
    layouts = []
    for index, table in enumerate(raw):
        where = f"evse[{index}]"
        if not isinstance(table, dict):
            raise ConfigError(where, "must be a table")
        _only(table, _EVSE_KEYS, where + ".")
        evse_id = table.get("id", index + 1)
        if type(evse_id) is not int or evse_id != index + 1:
            raise ConfigError(f"{where}.id", f"EVSE ids run 1, 2, … in order; expected {index + 1}")
        phases = table.get("phases", 3)
        if phases not in (1, 3) or type(phases) is not int:
            raise ConfigError(f"{where}.phases", "must be 1 or 3")
        current = table.get("max_current_a", 32.0)
        if not isinstance(current, int | float) or isinstance(current, bool) or not 6 <= current <= 80:
            raise ConfigError(f"{where}.max_current_a", "must be a number from 6 to 80")
        voltage = table.get("nominal_voltage_v", 230.0)
        if not isinstance(voltage, int | float) or isinstance(voltage, bool) or not 100 <= voltage <= 260:
            raise ConfigError(f"{where}.nominal_voltage_v", "must be a number from 100 to 260")
        ctype = table.get("connector_type", "cType2")
        if ctype not in ("cType2", "sType2"):
            raise ConfigError(f"{where}.connector_type", "must be cType2 (fixed cable) or sType2 (socket)")
        layouts.append(EvseLayout(evse_id, phases, float(current), float(voltage), ctype))
    return layouts


def _table(raw: dict[str, Any], name: str, *, required: bool = True) -> dict[str, Any]:
    value = raw.get(name)
    if value is None:
        if required:
            raise ConfigError(name, "missing section")
        return {}
    if not isinstance(value, dict):
        raise ConfigError(name, "must be a table")
    return value


def _only(table: dict[str, Any], allowed: set[str], prefix: str) -> None:
    for key in table:
        if key not in allowed:
            raise ConfigError(prefix + key, f"unknown key (known: {', '.join(sorted(allowed))})")


def _str(
    table: dict[str, Any],
    full: str,
    key: str,
    *,
    required: bool = False,
    default: str | None = None,
    max_len: int | None = None,
) -> str | None:
    value = table.get(key)
    if value is None:
        if required:
            raise ConfigError(full, "missing")
        return default
    if not isinstance(value, str) or not value:
        raise ConfigError(full, "must be a non-empty string")
    if max_len is not None and len(value) > max_len:
        raise ConfigError(full, f"at most {max_len} characters (BootNotification limit)")
    return value
