"""`[firmware]` keys: each mistake is a config error naming its key, and `appliance run` exits 2 with one line."""

from __future__ import annotations

from pathlib import Path

import pytest

from appliance.config import ConfigError, parse
from appliance.firmware.installers import INSTALLERS
from appliance.lab.process import config_text
from tests.test_cli import run_appliance


def _text(tmp_path: Path, firmware: str) -> str:
    return config_text(tmp_path / "data", "ws://127.0.0.1:9/ocpp", extra=f"[firmware]\n{firmware}\n")


def test_defaults_and_the_contract_keys(tmp_path: Path) -> None:
    config = parse(_text(tmp_path, ""), source="t")
    assert config.firmware.installer == "slots" and config.firmware.manufacturer_root_file is None
    config = parse(
        _text(
            tmp_path,
            'manufacturer_root_file = "mfr.pem"\ninstaller = "command"\n'
            'install_command = "rauc install"\nstall_timeout = 2.5',
        ),
        source="t",
    )
    assert config.firmware.installer == "command" and config.firmware.install_command == "rauc install"
    assert config.firmware.manufacturer_root_file == Path("mfr.pem") and config.firmware.stall_timeout == 2.5
    assert set(INSTALLERS) == {"slots", "command"}


@pytest.mark.parametrize(
    ("firmware", "key"),
    [
        ('installer = "flash-o-matic"', "firmware.installer"),
        ('installer = "command"', "firmware.install_command"),
        ("connect_timeout = 0", "firmware.connect_timeout"),
        ("trial_boots = 0", "firmware.trial_boots"),
        ('max_image_bytes = "big"', "firmware.max_image_bytes"),
        ("colour = 1", "firmware.colour"),
    ],
)
def test_bad_keys_are_named(tmp_path: Path, firmware: str, key: str) -> None:
    with pytest.raises(ConfigError) as error:
        parse(_text(tmp_path, firmware), source="t")
    assert error.value.key == key


@pytest.mark.parametrize(
    ("firmware", "line"),
    [
        (
            'installer = "flash-o-matic"',
            "config error: firmware.installer: unknown installer 'flash-o-matic' (known: command, slots)",
        ),
        (
            'manufacturer_root_file = "/nonexistent/mfr.pem"',
            "config error: firmware.manufacturer_root_file: /nonexistent/mfr.pem:",
        ),
    ],
)
def test_appliance_run_exits_2(tmp_path: Path, firmware: str, line: str) -> None:
    path = tmp_path / "station.toml"
    path.write_text(_text(tmp_path, firmware))
    result = run_appliance("run", "--config", str(path))
    assert result.returncode == 2, result.stderr
    assert result.stderr.strip().splitlines()[-1].startswith(line)
    assert result.stderr.count("config error:") == 1
