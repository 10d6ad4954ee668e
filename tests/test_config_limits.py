"""The config's `[limits]`: the certified minLimit/maxLimit a station maker declares, checked for shape by the
config and against the device model at start; every mistake exits 2 naming `limits.<key>`."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

from appliance.config import ConfigError, parse
from appliance.lab.process import config_text
from tests.harness import REPO

LIMITS = """
[limits]
"SampledDataCtrlr.TxUpdatedInterval" = { min = 10 }
"OCPPCommCtrlr.HeartbeatInterval" = { min = 30, max = 86400 }
"""


def text(extra: str) -> str:
    return config_text(Path("/tmp/x"), "ws://127.0.0.1:9/ocpp", extra=extra)


def test_limits_parsed() -> None:
    config = parse(text(LIMITS), source="t")
    assert config.limits == {
        "SampledDataCtrlr.TxUpdatedInterval": {"min": 10},
        "OCPPCommCtrlr.HeartbeatInterval": {"min": 30, "max": 86400},
    }
    assert parse(text(""), source="t").limits == {}


@pytest.mark.parametrize(
    ("extra", "key"),
    [
        ('[limits]\n"A.B" = 5\n', "limits.A.B"),
        ('[limits]\n"A.B" = {}\n', "limits.A.B"),
        ('[limits]\n"A.B" = { least = 5 }\n', "limits.A.B.least"),
        ('[limits]\n"A.B" = { min = "5" }\n', "limits.A.B.min"),
        ('[limits]\n"A.B" = { max = true }\n', "limits.A.B.max"),
        ('[limits]\n"A.B" = { max = nan }\n', "limits.A.B.max"),
        ('[limits]\n"A.B" = { max = inf }\n', "limits.A.B.max"),
        ('[limits]\n"A.B" = { min = 9, max = 3 }\n', "limits.A.B"),
        ("[[limits]]\n", "limits"),
    ],
)
def test_shape_errors_name_the_key(extra: str, key: str) -> None:
    with pytest.raises(ConfigError) as error:
        parse(text(extra), source="t")
    assert error.value.key == key, error.value


@pytest.mark.parametrize(
    ("extra", "key"),
    [
        ('[limits]\n"SampledDataCtrlr.Nothing" = { min = 1 }\n', "limits.SampledDataCtrlr.Nothing"),
        (
            '[limits]\n"SampledDataCtrlr.TxUpdatedInterval" = { min = 90 }\n',
            "limits.SampledDataCtrlr.TxUpdatedInterval",
        ),
        (
            '[limits]\n"OCPPCommCtrlr.WebSocketPingInterval" = { min = 10 }\n',  # the harness's factory value is 0
            "variables.OCPPCommCtrlr.WebSocketPingInterval",
        ),
    ],
)
def test_model_errors_exit_2_naming_the_key(tmp_path: Path, extra: str, key: str) -> None:
    config = tmp_path / "station.toml"
    config.write_text(config_text(tmp_path / "data", "ws://127.0.0.1:9/ocpp", extra=extra))
    result = subprocess.run(
        [sys.executable, "-m", "appliance", "run", "--config", str(config)],
        cwd=REPO,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert result.returncode == 2, result.stderr
    assert result.stderr.strip().splitlines()[-1].startswith(f"config error: {key}: "), result.stderr
    assert "Traceback" not in result.stderr
