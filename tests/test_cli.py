"""The `appliance` command as a service manager and a person meet it: exit codes, signals, the demo."""

from __future__ import annotations

import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest
import trustme
from sqlite_utils import Database

from appliance.lab.csms import LoopbackCsms
from appliance.lab.process import config_text, station_process
from appliance.storage.db import DB_NAME, migration_files, open_station_db
from tests.harness import REPO, wait_until
from tests.journal.test_verify import build_journal
from tests.permissions import as_other_user, read_only_mount, run_python, shared_dir
from tests.storage.test_db import corrupt_outbox


def run_appliance(*args: str, timeout: float = 60) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "appliance", *args], cwd=REPO, capture_output=True, text=True, timeout=timeout
    )


@pytest.mark.parametrize(
    ("edit", "key"),
    [
        (lambda t: t.replace("[station]", "[station"), "<file>"),
        (
            lambda t: t.replace('"OCPPCommCtrlr.RetryBackOffWaitMinimum"', '"OCPPCommCtrlr.NoSuchThing"'),
            "variables.OCPPCommCtrlr.NoSuchThing",
        ),
        (
            lambda t: t.replace('RetryBackOffRandomRange" = 0', 'RetryBackOffRandomRange" = -5'),
            "variables.OCPPCommCtrlr.RetryBackOffRandomRange",
        ),
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
    assert result.stderr.strip().splitlines() == [
        f"journal error: {tmp_path / 'data' / 'journal.db'}: the journal has schema version 999 but this firmware "
        f"knows only {migration_files()[-1][0]}: it was written by newer firmware, which stored no way back from "
        "0999_future.sql; refusing to touch it"
    ]


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
        assert 'level=info logger=appliance msg="received SIGTERM: shutting down"' in station.log()
        assert "s3cret-password-16" not in station.log()


#: A stop requested while the station is still starting (before `serve` listens for signals): the signal is
#: sent after the early guard is installed and before `serve` runs, the window a service manager can hit.
EARLY_STOP = """
import os, signal, sys
from pathlib import Path
import trio
from appliance import cli, logsetup
from appliance.config import load

logsetup.configure("INFO")
early = cli._EarlySignal()
os.kill(os.getpid(), signal.SIGTERM)
code, restart = trio.run(cli.serve, load(Path(sys.argv[1])), early)
sys.exit(code if not restart else 99)
"""


def test_sigterm_while_starting_still_exits_0(tmp_path: Path, data_dir: Path) -> None:
    config = tmp_path / "station.toml"
    config.write_text(config_text(data_dir, "ws://127.0.0.1:9/"))  # nobody listens: the stop comes first anyway
    done = subprocess.run(
        [sys.executable, "-c", EARLY_STOP, str(config)], capture_output=True, text=True, timeout=60, cwd=REPO
    )
    assert done.returncode == 0, done.stderr
    assert "received SIGTERM: shutting down" in done.stderr


#: A signal that trio's receiver holds unread when it closes is raised again to the handler underneath it.
REDELIVERED = """
import signal, sys
import trio
from appliance import cli

early = cli._EarlySignal()

async def main() -> None:
    with trio.open_signal_receiver(signal.SIGTERM):
        signal.raise_signal(signal.SIGTERM)
        await trio.sleep(0.1)  # delivered to the receiver, never read

trio.run(main)
sys.exit(0 if early.signum == signal.SIGTERM else 3)
"""


def test_a_signal_left_unread_at_the_end_is_noted_not_fatal() -> None:
    done = subprocess.run([sys.executable, "-c", REDELIVERED], capture_output=True, text=True, timeout=60, cwd=REPO)
    assert done.returncode == 0, (done.returncode, done.stderr)


@pytest.fixture
def shared() -> Iterator[Path]:
    with shared_dir() as path:
        yield path


def _profile_2(text: str, ca_file: Path) -> str:
    return text.replace("security_profile = 1", f'security_profile = 2\nca_file = "{ca_file}"')


#: (name, how to break the set-up, the start of the one stderr line, text it must contain, run as whom)
START_UP_ERRORS = [
    ("data-dir-is-a-file", "config error: station.data_dir: ", "is a file, not a directory", None),
    ("data-dir-read-only", "config error: station.data_dir: ", "cannot write in", "other-user"),
    ("data-dir-unreadable", "config error: station.data_dir: ", "is not readable", "other-user"),
    ("data-dir-read-only-mount", "config error: station.data_dir: ", "read-only file system", "ro-mount"),
    ("journal-read-only", "config error: station.data_dir: ", "cannot read and write", "other-user"),
    ("url-userinfo", "config error: csms.url: ", "must not carry user:password (ws://***@127.0.0.1:9/", None),
    ("url-port", "config error: csms.url: ", "port '65536' is not a number from 1 to 65535", None),
    ("url-query", "config error: csms.url: ", "must not have a query", None),
    ("sim-socket-too-long", "config error: hardware.sim_socket: ", "a Unix socket path has at most 107", None),
    ("ca-file-missing", "config error: csms.ca_file: ", "absent.pem: no such file", None),
    ("ca-file-garbage", "config error: csms.ca_file: ", "garbage.pem holds no usable PEM certificate", None),
    (
        "variables-contradict",
        "config error: variables.SecurityCtrlr.SecurityProfile: ",
        "contradicts csms.security_profile (1)",
        None,
    ),
    ("journal-damaged", "journal error: ", "the journal is damaged", None),
    ("journal-foreign", "journal error: ", "another program's SQLite database, not a station journal", None),
]


@pytest.mark.parametrize(("case", "prefix", "contains", "who"), START_UP_ERRORS, ids=[c[0] for c in START_UP_ERRORS])
def test_start_up_errors_exit_2_with_one_line(
    shared: Path, case: str, prefix: str, contains: str, who: str | None
) -> None:
    """What a person must fix: exit 2, one line naming the key or the file, no traceback, no secret."""
    data = shared / "data"
    text = config_text(data, "ws://127.0.0.1:9/ocpp")
    if case == "data-dir-is-a-file":
        data.write_text("not a directory")
    elif case in ("data-dir-read-only", "data-dir-unreadable", "journal-read-only"):
        data.mkdir()
        if case == "journal-read-only":
            open_station_db(data).close()
            (data / DB_NAME).chmod(0o444)
        data.chmod({"data-dir-read-only": 0o555, "data-dir-unreadable": 0o000, "journal-read-only": 0o777}[case])
    elif case == "url-userinfo":
        text = text.replace("ws://127.0.0.1:9/ocpp", "ws://CS001:hunter2-secret-pw@127.0.0.1:9/ocpp")
    elif case == "url-port":
        text = text.replace("127.0.0.1:9/", "127.0.0.1:65536/")
    elif case == "url-query":
        text = text.replace("/ocpp", "/ocpp?token=abc")
    elif case == "sim-socket-too-long":
        text = text.replace(f'sim_socket = "{data}/sim.sock"', f'sim_socket = "{data}/{"s" * 120}.sock"')
    elif case == "ca-file-missing":
        text = _profile_2(text.replace("ws://", "wss://"), shared / "absent.pem")
    elif case == "ca-file-garbage":
        (shared / "garbage.pem").write_text("-----BEGIN CERTIFICATE-----\nnot base64 at all\n")
        text = _profile_2(text.replace("ws://", "wss://"), shared / "garbage.pem")
    elif case == "variables-contradict":
        text += '"SecurityCtrlr.SecurityProfile" = 2\n'
    elif case == "journal-damaged":
        build_journal(data).close()
        corrupt_outbox(data)
    elif case == "journal-foreign":
        data.mkdir()
        Database(data / DB_NAME)["photos"].insert({"name": "cat.jpg"})
    config = shared / "station.toml"
    config.write_text(text)
    runner = {None: [], "other-user": as_other_user(), "ro-mount": None}[who]
    if runner is None:
        data.mkdir()
        runner = read_only_mount(shared)
    result = run_python(runner, "appliance", "run", "--config", str(config))
    assert result.returncode == 2, result.stderr
    assert "Traceback" not in result.stderr and result.stdout == ""
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1, result.stderr
    assert lines[0].startswith(prefix) and contains in lines[0], lines[0]
    assert "hunter2" not in result.stderr
    if case.startswith("data-dir") or case.startswith("journal-"):
        assert str(data) in lines[0]
    if case == "journal-damaged":
        assert f"appliance-journal --db {data / DB_NAME} verify" in lines[0]
        verdict = run_python([], "appliance.journal.cli", "--db", str(data), "verify")
        assert verdict.returncode == 1 and "quick_check" in verdict.stdout  # the pointer leads somewhere


def test_a_good_ca_file_passes_the_start_up_check(shared: Path) -> None:
    """Not vacuous: a real CA certificate gets past the check (the station then fails to reach the CSMS)."""
    trustme.CA().cert_pem.write_to_path(str(shared / "ca.pem"))
    config = shared / "station.toml"
    config.write_text(_profile_2(config_text(shared / "data", "wss://127.0.0.1:9/ocpp"), shared / "ca.pem"))
    with station_process(config, shared / "station.log") as station:
        wait_until(lambda: "connect" in station.log().lower(), timeout=30)
        assert station.stop() == 0, station.log()
    assert "config error" not in station.log()


def test_profile_0_boots_without_a_password(tmp_path: Path, data_dir: Path) -> None:
    """Config and link alike: no basic_auth_password, no Authorization header, a CSMS without auth accepts."""
    with LoopbackCsms() as csms:
        config = tmp_path / "station.toml"
        config.write_text(config_text(data_dir, csms.url, profile=0, password=None))
        with station_process(config, tmp_path / "station.log") as station:
            csms.wait_action("CS001", "BootNotification", timeout=20)
            assert station.stop() == 0, station.log()
        assert [r.auth_username for r in csms.connections_snapshot("CS001")] == [None]


@pytest.mark.slow
def test_demo_exits_0() -> None:
    result = run_appliance("demo", timeout=240)
    assert result.returncode == 0, result.stdout + result.stderr
    assert "every step behaved" in result.stdout


@pytest.mark.parametrize(
    ("argv", "usage", "stray"),
    [
        (["status", "--evse", "1"], "usage: appliance sim status [-h]", "--evse 1"),
        (["plug", "1", "--watts", "5"], "usage: appliance sim plug [-h] EVSE", "--watts 5"),
        (["--evse", "1", "status"], "usage: appliance sim [-h]", None),
    ],
)
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
    """`serial` without its devices configured is refused with exit 2 naming the missing key (issue 12)."""
    config = tmp_path / "station.toml"
    config.write_text(
        config_text(tmp_path / "data", "ws://127.0.0.1:9/ocpp").replace('backend = "sim"', 'backend = "serial"')
    )
    result = run_appliance("run", "--config", str(config))
    assert result.returncode == 2, result.stderr
    assert (
        result.stderr.strip().splitlines()[-1]
        == "config error: hardware.serial.controller: missing: the charge controller board's port"
    )
