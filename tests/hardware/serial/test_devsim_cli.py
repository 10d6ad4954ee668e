"""`appliance devsim …` as a person runs it: the devices come up where asked, say so, and take commands."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

from appliance.lab.process import PACKAGE_ROOT


def devsim(*args: str, stdin: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "appliance", "devsim", *args],
        cwd=PACKAGE_ROOT,
        input=stdin,
        capture_output=True,
        text=True,
        timeout=30,
    )


def test_bench_on_ptys_prints_where_and_takes_commands(tmp_path: Path) -> None:
    done = devsim("bench", "--dir", str(tmp_path), stdin="plug 1\ncharge 1 7400\nfly 1\nquit\n")
    assert done.returncode == 0, done.stderr
    lines = [json.loads(line) for line in done.stdout.splitlines()]
    ready = lines[0]["ready"]
    assert ready["reader"] == str(tmp_path / "reader") and ready["controller"] == str(tmp_path / "board")
    assert "[hardware.serial.meters.2]" in ready["config"]
    assert lines[1:] == [
        {"ok": ["plug", "1"]},
        {"ok": ["charge", "1", "7400"]},
        {"error": "fly 1: unknown command 'fly' (try help)"},
    ]
    assert not (tmp_path / "reader").exists()  # the devices are unplugged on the way out


def test_meter_on_a_socket_and_a_bad_unit() -> None:
    done = devsim("meter", "--port", "socket://127.0.0.1:0", "--unit", "7:b23", stdin="meter-load 7 1000\nquit\n")
    assert done.returncode == 0, done.stderr
    ready = json.loads(done.stdout.splitlines()[0])["ready"]
    assert ready["meters"].startswith("socket://127.0.0.1:") and ready["units"] == {"7": "b23"}
    bad = devsim("meter", "--port", "socket://127.0.0.1:0", "--unit", "7:sdm120", stdin="")
    assert bad.returncode == 2 and "--unit '7:sdm120'" in bad.stderr
