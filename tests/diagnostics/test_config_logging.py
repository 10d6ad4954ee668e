"""`[logging] file_max_bytes` / `file_count`: the bound of the station's own log files, checked at start."""

from __future__ import annotations

from pathlib import Path

import pytest

from appliance.config import ConfigError, parse
from appliance.lab.process import config_text


def logging_config(tmp_path: Path, table: str) -> str:
    return config_text(tmp_path, "ws://127.0.0.1:9/ocpp").replace("[station]", f"[logging]\n{table}\n[station]", 1)


def test_defaults_and_values(tmp_path: Path) -> None:
    default = parse(config_text(tmp_path, "ws://127.0.0.1:9/ocpp"), source="t")
    assert (default.log_file_max_bytes, default.log_file_count) == (1_048_576, 5)
    config = parse(logging_config(tmp_path, "file_max_bytes = 65536\nfile_count = 2"), source="t")
    assert (config.log_file_max_bytes, config.log_file_count) == (65536, 2)


@pytest.mark.parametrize(
    ("table", "key"),
    [
        ("file_max_bytes = 100", "logging.file_max_bytes"),
        ('file_max_bytes = "1M"', "logging.file_max_bytes"),
        ("file_count = 0", "logging.file_count"),
        ("file_count = true", "logging.file_count"),
    ],
)
def test_bad_values_name_the_key(tmp_path: Path, table: str, key: str) -> None:
    with pytest.raises(ConfigError) as error:
        parse(logging_config(tmp_path, table), source="t")
    assert error.value.key == key
