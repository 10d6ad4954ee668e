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
        (
            '"OCPPCommCtrlr.HeartbeatInterval" = 60',
            '"OCPPCommCtrlr.HeartbeatInterval" = {a = 1}',
            "variables.OCPPCommCtrlr.HeartbeatInterval",
        ),
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
    text = GOOD + "\n[[evse]]\nid = 1\nphases = 1\nmax_current_a = 16\n"
    config = parse(text, source="t")
    assert len(config.evses) == 1
    assert config.evses[0].max_power_w == pytest.approx(16 * 230)
    with pytest.raises(ConfigError) as info:
        parse(GOOD + "\n[[evse]]\nid = 2\n", source="t")
    assert info.value.key == "evse[0].id"


URL = 'url = "ws://127.0.0.1:9000/ocpp"'


@pytest.mark.parametrize(
    ("url", "problem"),
    [
        ("ws://127.0.0.1:99999/ocpp", "port '99999' is not a number from 1 to 65535"),
        ("ws://127.0.0.1:0/ocpp", "port '0' is not a number from 1 to 65535"),
        ("ws://127.0.0.1:90a0/ocpp", "port '90a0' is not a number from 1 to 65535"),
        ("ws://[::1]:70000/ocpp", "port '70000' is not a number from 1 to 65535"),
        ("ws://[::1/ocpp", "not a URL"),
        ("ws://127.0.0.1:9000/ocpp?station=1", "must not have a query"),
        ("ws://127.0.0.1:9000/ocpp#top", "must not have a fragment"),
        ("ws://127.0.0.1:9000/ocpp?", "must not have a query"),
    ],
)
def test_csms_url_errors(url: str, problem: str) -> None:
    with pytest.raises(ConfigError) as info:
        parse(GOOD.replace(URL, f'url = "{url}"'), source="t")
    assert info.value.key == "csms.url"
    assert problem in str(info.value)


@pytest.mark.parametrize("userinfo", ["CS001:hunter2-secret-pw@", "operator@", ":hunter2-secret-pw@"])
def test_csms_url_with_userinfo_never_repeats_it(userinfo: str) -> None:
    for url in (f"ws://{userinfo}127.0.0.1:9000/ocpp", f"http://{userinfo}127.0.0.1/"):
        with pytest.raises(ConfigError) as info:
            parse(GOOD.replace(URL, f'url = "{url}"'), source="t")
        assert info.value.key == "csms.url"
        assert "must not carry user:password (ws://***@" in str(info.value) or "http://***@" in str(info.value)
        assert "hunter2" not in str(info.value) and "operator" not in str(info.value)


def test_good_urls() -> None:
    for url in ("ws://[::1]:9000/ocpp", "ws://csms.example:1/", "ws://csms.example:65535/a/b", "ws://h/"):
        assert parse(GOOD.replace(URL, f'url = "{url}"'), source="t").csms.url == url


def test_sim_socket_over_the_af_unix_limit() -> None:
    longest = "/" + "s" * 106  # 107 bytes + NUL = 108: the most sun_path holds
    assert parse(GOOD.replace('sim_socket = "var/cs001/sim.sock"', f'sim_socket = "{longest}"'), source="t")
    with pytest.raises(ConfigError) as info:
        parse(GOOD.replace('sim_socket = "var/cs001/sim.sock"', f'sim_socket = "{longest}x"'), source="t")
    assert info.value.key == "hardware.sim_socket"
    assert "is 108 bytes; a Unix socket path has at most 107 (108 with the NUL)" in str(info.value)
    derived = GOOD.replace('sim_socket = "var/cs001/sim.sock"\n', "").replace(
        'data_dir = "var/cs001"', f'data_dir = "/{"d" * 100}"'
    )
    with pytest.raises(ConfigError) as info:
        parse(derived, source="t")
    assert info.value.key == "hardware.sim_socket"
    assert "(derived from station.data_dir)" in str(info.value)


@pytest.mark.parametrize(
    ("line", "key", "shown"),
    [
        ('"SecurityCtrlr.SecurityProfile" = 2', "SecurityCtrlr.SecurityProfile", "csms.security_profile (1)"),
        (
            '"securityctrlr.securityprofile.Actual" = "0"',
            "securityctrlr.securityprofile.Actual",
            "csms.security_profile (1)",
        ),
        ('"SecurityCtrlr.Identity" = "CS999"', "SecurityCtrlr.Identity", "station.id ('CS001')"),
        ('"ChargingStation.Model" = "Other"', "ChargingStation.Model", "station.model ('AC22')"),
        (
            '"SecurityCtrlr.BasicAuthPassword" = "another-password-99"',
            "SecurityCtrlr.BasicAuthPassword",
            "csms.basic_auth_password:",
        ),
    ],
)
def test_variables_the_config_contradicts(line: str, key: str, shown: str) -> None:
    with pytest.raises(ConfigError) as info:
        parse(GOOD + line + "\n", source="t")
    assert info.value.key == f"variables.{key}"
    assert f"contradicts {shown}" in str(info.value)
    assert "another-password" not in str(info.value) and "0123456789abcdef" not in str(info.value)


def test_variables_that_agree_with_the_config_are_accepted() -> None:
    text = GOOD + '"SecurityCtrlr.SecurityProfile" = 1\n"SecurityCtrlr.BasicAuthPassword" = "0123456789abcdef"\n'
    assert parse(text, source="t").variables["SecurityCtrlr.SecurityProfile"] == 1


def test_profile_0_needs_no_password() -> None:
    text = GOOD.replace("security_profile = 1", "security_profile = 0").replace(
        'basic_auth_password = "0123456789abcdef"\n', ""
    )
    config = parse(text, source="t")
    assert config.csms.security_profile == 0 and config.csms.basic_auth_password is None
    with pytest.raises(ConfigError) as info:
        parse(text + '"SecurityCtrlr.SecurityProfile" = 1\n', source="t")
    assert info.value.key == "variables.SecurityCtrlr.SecurityProfile"
