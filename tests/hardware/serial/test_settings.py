"""`[hardware.serial]` keys: a good config parses into settings; each mistake is a config error naming its key."""

from __future__ import annotations

import pytest

from appliance.config import ConfigError, parse

BASE = """
[station]
id = "CS001"
data_dir = "/tmp/x"
[csms]
url = "ws://127.0.0.1:9/"
security_profile = 0
[hardware]
backend = "serial"
[hardware.serial]
poll_interval_s = 0.5
[hardware.serial.reader]
port = "/dev/serial/by-id/reader"
evse = 2
[hardware.serial.controller]
port = "socket://127.0.0.1:7000"
[hardware.serial.buses.a]
port = "/dev/ttyUSB1"
baudrate = 19200
parity = "E"
[hardware.serial.meters.1]
bus = "a"
unit = 1
[hardware.serial.meters.2]
bus = "a"
unit = 2
map = "mine"
[hardware.serial.maps.mine]
function = "input"
word_order = "little"
energy_wh = { address = 0x100, type = "uint32", scale = 10 }
power_w = { address = 0x110, type = "int32" }
voltage_v = [ { address = 0x120, type = "uint16", scale = 0.1 } ]
current_a = [ { address = 0x130, type = "uint16", scale = 0.01 } ]
"""


def test_a_full_serial_config() -> None:
    settings = parse(BASE, source="t").hardware.serial_settings
    assert settings is not None
    assert settings.reader is not None and settings.reader.evse == 2 and settings.reader.port.baudrate == 9600
    assert settings.controller.port.url == "socket://127.0.0.1:7000" and settings.controller.port.baudrate == 115200
    assert settings.buses["a"].port.parity == "E" and settings.buses["a"].port.baudrate == 19200
    assert settings.meters[1].register_map.name == "sdm630"
    mine = settings.meters[2].register_map
    assert (mine.function, mine.word_order, mine.energy_wh.scale) == (4, "little", 10.0)


@pytest.mark.parametrize(
    ("old", "new", "key"),
    [
        ("unit = 2\nmap", "unit = 1\nmap", "hardware.serial.meters.2.unit"),
        ("unit = 2\nmap", "unit = 300\nmap", "hardware.serial.meters.2.unit"),
        ('map = "mine"', 'map = "sdm120"', "hardware.serial.meters.2.map"),
        ('bus = "a"\nunit = 1', 'bus = "b"\nunit = 1', "hardware.serial.meters.1.bus"),
        ("[hardware.serial.meters.2]\nbus", "[hardware.serial.meters.3]\nbus", "hardware.serial.meters.3"),
        ("baudrate = 19200", "baudrate = 12345", "hardware.serial.buses.a.baudrate"),
        ('parity = "E"', 'parity = "X"', "hardware.serial.buses.a.parity"),
        ("evse = 2", "evse = 5", "hardware.serial.reader.evse"),
        ('port = "socket://127.0.0.1:7000"', 'port = "http://x"', "hardware.serial.controller.port"),
        ("poll_interval_s = 0.5", "poll_interval_s = 0.5\nspeed = 1", "hardware.serial.speed"),
        ('type = "uint32", scale = 10', 'type = "uint24", scale = 10', "hardware.serial.maps.mine.energy_wh.type"),
        ("address = 0x110, type", "address = -1, type", "hardware.serial.maps.mine.power_w.address"),
        ('function = "input"', 'function = "coils"', "hardware.serial.maps.mine.function"),
        ('[hardware.serial.controller]\nport = "socket://127.0.0.1:7000"\n', "", "hardware.serial.controller"),
    ],
)
def test_mistakes_name_their_key(old: str, new: str, key: str) -> None:
    assert old in BASE
    with pytest.raises(ConfigError) as caught:
        parse(BASE.replace(old, new), source="t")
    assert caught.value.key == key, str(caught.value)


def test_polling_must_keep_up_with_sampling() -> None:
    text = (
        BASE.replace("poll_interval_s = 0.5", "poll_interval_s = 5")
        + '[variables]\n"SampledDataCtrlr.TxUpdatedInterval" = 2\n'
    )
    with pytest.raises(ConfigError) as caught:
        parse(text, source="t")
    assert caught.value.key == "hardware.serial.poll_interval_s"


def test_sim_backend_ignores_nothing_it_needs() -> None:
    """The serial keys are checked only for the serial backend (a sim config may keep them for later)."""
    assert parse(BASE.replace('backend = "serial"', 'backend = "sim"'), source="t").hardware.serial_settings is None
