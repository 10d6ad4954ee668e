"""The `appliance` command as a service manager and a person meet it: exit codes, signals, the demo."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

from appliance.csms import LoopbackCsms
from appliance.journal.db import open_station_db
from tests.harness import REPO, config_text, station_process


def run_appliance(*args: str, timeout: float = 60) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "appliance", *args], cwd=REPO, capture_output=True, text=True,
                          timeout=timeout)


@pytest.mark.parametrize(
    ("edit", "key"),
    [
        (lambda t: t.replace("[station]", "[station"), "<file>"),
        (lambda t: t.replace('"OCPPCommCtrlr.RetryBackOffWaitMinimum"', '"OCPPCommCtrlr.NoSuchThing"'),
         "variables.OCPPCommCtrlr.NoSuchThing"),
        (lambda t: t.replace('RetryBackOffRandomRange" = 0', 'RetryBackOffRandomRange" = -5'),
         "variables.OCPPCommCtrlr.RetryBackOffRandomRange"),
        (lambda t: t.replace("security_profile = 1", "security_profile = 9"), "csms.security_profile"),
    ],
)
def test_config_errors_exit_2_naming_the_key(tmp_path: Path, edit, key: str) -> None:  # type: ignore[no-untyped-def]
    config = tmp_path / "station.toml"
    config.write_text(edit(config_text(tmp_path / "data", "ws://127.0.0.1:9/ocpp")))
    result = run_appliance("run", "--config", str(config))
    assert result.returncode == 2, result.stderr
    # Log lines may precede it (the journal was opened to check variables); the error is one line, last.
    assert result.stderr.strip().splitlines()[-1].startswith(f"config error: {key}: ")
    assert result.stderr.count("config error:") == 1


def test_missing_config_file_exits_2(tmp_path: Path) -> None:
    result = run_appliance("run", "--config", str(tmp_path / "absent.toml"))
    assert result.returncode == 2
    assert "cannot read" in result.stderr


def test_journal_from_newer_firmware_exits_2(tmp_path: Path) -> None:
    conn = open_station_db(tmp_path / "data")
    conn.execute("INSERT INTO schema_migrations VALUES (999, '0999_future.sql', 'x')")
    conn.close()
    config = tmp_path / "station.toml"
    config.write_text(config_text(tmp_path / "data", "ws://127.0.0.1:9/ocpp"))
    result = run_appliance("run", "--config", str(config))
    assert result.returncode == 2
    assert "newer firmware" in result.stderr


def test_sigterm_exits_0_with_a_close_frame(tmp_path: Path, data_dir: Path) -> None:
    with LoopbackCsms(passwords={"CS001": "s3cret-password-16"}) as csms:
        config = tmp_path / "station.toml"
        config.write_text(config_text(data_dir, csms.url))
        with station_process(config, tmp_path / "station.log") as station:
            csms.wait_action("CS001", "StatusNotification", count=2, timeout=20)
            assert station.stop() == 0, station.log()
        record = csms.connections_snapshot("CS001")[-1]
        assert record.close_initiator == "station"
        assert record.close_code == 1000
        assert "level=info logger=appliance msg=\"received SIGTERM: shutting down\"" in station.log()
        assert "s3cret-password-16" not in station.log()


@pytest.mark.slow
def test_demo_exits_0() -> None:
    result = run_appliance("demo", timeout=240)
    assert result.returncode == 0, result.stdout + result.stderr
    assert "every step behaved" in result.stdout


@pytest.mark.parametrize(("argv", "usage", "stray"), [
    (["status", "--evse", "1"], "usage: appliance sim status [-h]", "--evse 1"),
    (["plug", "1", "--watts", "5"], "usage: appliance sim plug [-h] EVSE", "--watts 5"),
    (["--evse", "1", "status"], "usage: appliance sim [-h]", None),
])
def test_sim_usage_names_the_right_syntax(tmp_path: Path, argv: list[str], usage: str, stray: str | None) -> None:
    """Issue 15: `appliance sim status --evse 1` answers with the usage of `appliance sim status` (it reports
    every EVSE and takes no EVSE), not the top-level usage; exit 2, before any station is contacted."""
    result = run_appliance("sim", "--socket", str(tmp_path / "none.sock"), *argv)
    assert result.returncode == 2, result
    assert result.stderr.startswith(usage), result.stderr
    if stray is not None:
        assert f"unrecognized arguments: {stray}" in result.stderr
    assert result.stdout == ""


def test_unknown_backend_and_serial_are_config_errors(tmp_path: Path) -> None:
    """The backend registry refuses `serial` (not in this build) with exit 2 naming the key."""
    config = tmp_path / "station.toml"
    config.write_text(config_text(tmp_path / "data", "ws://127.0.0.1:9/ocpp").replace(
        'backend = "sim"', 'backend = "serial"'))
    result = run_appliance("run", "--config", str(config))
    assert result.returncode == 2, result.stderr
    assert result.stderr.strip().splitlines()[-1].startswith("config error: hardware.backend: ")
