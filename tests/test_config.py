"""Config parsing: every mistake names its key."""

from pathlib import Path

import pytest

from appliance.config import ConfigError, load, parse

GOOD = """
[station]
id = "CS001"
data_dir = "var/cs001"
vendor_name = "Acme"
model = "AC22"

[csms]
url = "ws://127.0.0.1:9000/ocpp"
security_profile = 1
basic_auth_password = "0123456789abcdef"

[hardware]
backend = "sim"
sim_socket = "var/cs001/sim.sock"

[variables]
"OCPPCommCtrlr.HeartbeatInterval" = 60
"TxCtrlr.TxStartPoint" = ["EVConnected", "Authorized"]
"""


def test_good_config() -> None:
    config = parse(GOOD, source="t")
    assert config.station.id == "CS001"
    assert config.csms.security_profile == 1
    assert [e.phases for e in config.evses] == [3, 1]
    assert config.variables["TxCtrlr.TxStartPoint"] == ["EVConnected", "Authorized"]


def test_embedded_default() -> None:
    config = load(None)
    assert config.csms.url == "ws://127.0.0.1:9000/"
    assert config.hardware.backend == "sim"
    assert config.station.data_dir == Path("var/cs001")


@pytest.mark.parametrize(
    ("old", "new", "key"),
    [
        ('id = "CS001"', 'id = "CS:01"', "station.id"),
        ('id = "CS001"', "id = 5", "station.id"),
        ('url = "ws://127.0.0.1:9000/ocpp"', 'url = "http://x/"', "csms.url"),
        ("security_profile = 1", "security_profile = 4", "csms.security_profile"),
        ('basic_auth_password = "0123456789abcdef"', 'basic_auth_password = "short"', "csms.basic_auth_password"),
        ('basic_auth_password = "0123456789abcdef"', "", "csms.basic_auth_password"),
        ('backend = "sim"', 'backend = "usb"', "hardware.backend"),
        ('model = "AC22"', 'model = "AC22"\ncolour = "red"', "station.colour"),
        ('"OCPPCommCtrlr.HeartbeatInterval" = 60', '"OCPPCommCtrlr.HeartbeatInterval" = {a = 1}',
         "variables.OCPPCommCtrlr.HeartbeatInterval"),
        ("[hardware]", "[hardware]\n[evse]", "evse"),
    ],
)
def test_errors_name_the_key(old: str, new: str, key: str) -> None:
    assert old in GOOD
    with pytest.raises(ConfigError) as info:
        parse(GOOD.replace(old, new), source="t")
    assert info.value.key == key
    assert str(info.value).startswith(f"config error: {key}: ")


def test_not_toml() -> None:
    with pytest.raises(ConfigError, match="not valid TOML"):
        parse("[station", source="t")


def test_missing_file(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="cannot read"):
        load(tmp_path / "nope.toml")


def test_evse_layout() -> None:
    text = GOOD + '\n[[evse]]\nid = 1\nphases = 1\nmax_current_a = 16\n'
    config = parse(text, source="t")
    assert len(config.evses) == 1
    assert config.evses[0].max_power_w == pytest.approx(16 * 230)
    with pytest.raises(ConfigError) as info:
        parse(GOOD + "\n[[evse]]\nid = 2\n", source="t")
    assert info.value.key == "evse[0].id"
