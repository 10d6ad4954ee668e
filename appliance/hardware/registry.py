"""The one place a hardware backend is chosen: `[hardware] backend` names an entry of `BACKENDS`.

Each entry builds its backend from the config and imports its code only then, so a station image carries
the serial drivers' imports only when it uses them. A backend named in the config but not built into this
firmware is a config error (exit 2, naming the key), never a traceback.
"""

from __future__ import annotations

from collections.abc import Callable

from appliance.config import Config, ConfigError
from appliance.hardware.base import Hardware


def _sim(config: Config) -> Hardware:
    from appliance.hardware.sim import SimHardware

    return SimHardware(config.evses, config.hardware.sim_socket, state_dir=config.station.data_dir)


def _serial(config: Config) -> Hardware:
    from appliance.hardware.serial.backend import SerialHardware

    settings = config.hardware.serial_settings
    if settings is None:  # parse() fills it whenever backend = "serial"
        raise ConfigError("hardware.serial", "missing")
    return SerialHardware(config.evses, settings)


BACKENDS: dict[str, Callable[[Config], Hardware]] = {"sim": _sim, "serial": _serial}


def make_hardware(config: Config) -> Hardware:
    """The backend the config asks for (ConfigError if this build has none by that name)."""
    factory = BACKENDS.get(config.hardware.backend)
    if factory is None:
        raise ConfigError(
            "hardware.backend", f"unknown backend {config.hardware.backend!r} (known: {', '.join(BACKENDS)})"
        )
    return factory(config)
