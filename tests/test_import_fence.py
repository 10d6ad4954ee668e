"""The firmware/lab fence: no firmware module needs `websockets` or the `ocpp` library's Python code.

A station image runs `appliance run`; the loopback CSMS, the chaos proxy and the demo (appliance.lab) are lab
equipment that may need both. The proof runs in fresh interpreters with a meta-path finder that refuses to
*load* those two packages while still letting them be *found*: the firmware may locate the schema files inside
the `ocpp` package (`importlib.util.find_spec`), never execute its code. Every refusal is also recorded, so an
import that some module guards with `try/except ImportError` is caught too.

The fence itself is tested: the lab cannot be imported behind it, so a fence that refused nothing would fail.
"""

from __future__ import annotations

import ast
import json
import os
import pkgutil
import signal
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path
from typing import IO

from appliance.lab.csms import LoopbackCsms
from appliance.lab.csms.pki import certificate, new_key, pem
from appliance.lab.process import PACKAGE_ROOT, PASSWORD, config_text
from tests.conformance.firmware_helpers import firmware_lab
from tests.diagnostics.servers import FtpUploadServer, HttpUploadServer
from tests.harness import REPO

FENCED = ("websockets", "ocpp")

#: Installed first thing in the child interpreter. `REFUSED` lists every fenced module something tried to load;
#: `_lab()` the lab modules loaded so far (`appliance run` must load none, even those that would pass the fence);
#: `_report()` prints both as one line.
FENCE = f"""
import importlib.abc, importlib.machinery, json, sys

FENCED = {FENCED!r}
REFUSED = []


class _Refusing(importlib.abc.Loader):
    def create_module(self, spec):
        REFUSED.append(spec.name)
        raise ImportError(f"fenced: {{spec.name}} is lab-only", name=spec.name)

    def exec_module(self, module):
        raise AssertionError("create_module always refuses")


class Fence(importlib.abc.MetaPathFinder):
    def find_spec(self, name, path=None, target=None):
        if name.partition(".")[0] not in FENCED:
            return None
        spec = importlib.machinery.PathFinder.find_spec(name, path)
        if spec is not None:
            spec.loader = _Refusing()
        return spec


def _lab():
    return sorted(name for name in sys.modules if name == "appliance.lab" or name.startswith("appliance.lab."))


def _report():
    print("fence:", json.dumps({{"refused": REFUSED, "lab": _lab()}}), file=sys.stderr)


assert not [name for name in sys.modules if name.partition(".")[0] in FENCED], "loaded before the fence"
sys.meta_path.insert(0, Fence())
"""


def fenced_python(code: str, *args: str, output: IO[str] | None = None) -> subprocess.Popen[str]:
    """`python -c FENCE+code args`; its output to `output` (a station logs more than a pipe should hold)."""
    return subprocess.Popen(
        [sys.executable, "-c", FENCE + code, *args],
        cwd=PACKAGE_ROOT,
        text=True,
        stdout=output or subprocess.PIPE,
        stderr=output or subprocess.PIPE,
        env={**os.environ, "PYTHONUNBUFFERED": "1"},
    )


def run_fenced(code: str) -> dict:
    """Run `code` behind the fence; it leaves its findings in `result`, returned with the refusals."""
    proc = fenced_python(code + "\nprint(json.dumps({'result': result, 'refused': REFUSED}))")
    out, err = proc.communicate(timeout=120)
    assert proc.returncode == 0, err
    return json.loads(out.splitlines()[-1])


def firmware_modules() -> list[str]:
    """Every module under appliance/ except the lab, found on disk (pkgutil.walk_packages would import each
    package to look inside it, the lab included)."""
    names = []

    def walk(directory: Path, prefix: str) -> None:
        for info in pkgutil.iter_modules([str(directory)], prefix):
            if info.name in ("appliance.lab", "appliance.__main__"):  # __main__ runs the CLI: see the run test
                continue
            names.append(info.name)
            if info.ispkg:
                walk(directory / info.name.rpartition(".")[2], info.name + ".")

    walk(REPO / "appliance", "appliance.")
    return ["appliance", *names]


def test_every_firmware_module_imports_behind_the_fence() -> None:
    modules = firmware_modules()
    assert len(modules) > 50 and "appliance.cli" in modules and "appliance.protocol.schemas" in modules
    found = run_fenced(f"""
import importlib, json
result = {{}}
for name in {modules!r}:
    try:
        importlib.import_module(name)
    except ImportError as exc:
        result[name] = str(exc)
result["lab loaded"] = _lab()
""")
    assert found == {"result": {"lab loaded": []}, "refused": []}


def test_schemas_load_as_package_data_behind_the_fence() -> None:
    found = run_fenced("""
import json
from appliance.protocol import OcppError, default_registry
registry = default_registry()
registry.validate_request("Heartbeat", {})
try:
    registry.validate_request("Heartbeat", {"extra": 1})
    result = "accepted"
except OcppError as exc:
    result = exc.code.value
""")
    assert found == {"result": "FormatViolation", "refused": []}


def test_the_fence_stops_the_lab() -> None:
    found = run_fenced("""
import importlib, importlib.util, json
result = {"ocpp located": bool(importlib.util.find_spec("ocpp").submodule_search_locations)}
for name in ("websockets", "ocpp", "appliance.lab.csms", "appliance.lab.demo"):
    try:
        importlib.import_module(name)
        result[name] = "imported"
    except ImportError as exc:
        result[name] = str(exc)
""")
    assert found["result"] == {
        "ocpp located": True,
        "websockets": "fenced: websockets is lab-only",
        "ocpp": "fenced: ocpp is lab-only",
        "appliance.lab.csms": "fenced: websockets is lab-only",
        "appliance.lab.demo": "fenced: websockets is lab-only",
    }
    assert set(found["refused"]) == {"websockets", "ocpp"}


def test_appliance_run_boots_and_stops_behind_the_fence(tmp_path: Path, data_dir: Path) -> None:
    """`appliance run` for real: boot against the loopback CSMS (schemas, link, journal), then SIGTERM."""
    with LoopbackCsms(passwords={"CS001": PASSWORD}) as csms:
        err = run_fenced_station(tmp_path, data_dir, csms, "", lambda log: None)
    fence = [json.loads(line.partition(" ")[2]) for line in err.splitlines() if line.startswith("fence: ")]
    assert fence == [{"refused": [], "lab": []}], err
    assert csms.violations == []


def announce(*names: str) -> str:
    """A prelude that prints `NAME imported by: FILE LINE` the moment anything first imports each of `names` (the
    log is unbuffered), naming the firmware line that asked for it (a `Deferred` stands in for that line)."""
    return f"""
import traceback

ANNOUNCED = set({names!r})


class _Announce(importlib.abc.MetaPathFinder):
    def find_spec(self, name, path=None, target=None):
        if name in ANNOUNCED:
            ANNOUNCED.discard(name)
            frames = [
                f for f in traceback.extract_stack()
                if "/appliance/" in f.filename and not f.filename.endswith("/appliance/util/deferred.py")
            ]
            print(name, "imported by:", frames[-1].filename, frames[-1].lineno, file=sys.stderr)
        return None


assert not ANNOUNCED & set(sys.modules), "loaded before the announcer"
sys.meta_path.insert(0, _Announce())
"""


def test_profile_1_station_imports_cryptography_only_for_a_certificate(tmp_path: Path, data_dir: Path) -> None:
    """A profile-1 station without certificates boots and serves without `cryptography` (~8.5 MB of RSS):
    `appliance.certs.crypto` defers it. The first certificate it is given loads it, and the install works."""
    root = pem(certificate("Fence Root", new_key("ec")))
    seen: dict[str, dict[str, str]] = {}

    def exercise(log: Path) -> None:
        answer = csms.call("CS001", "GetVariables", {"getVariableData": [HEARTBEAT_INTERVAL]})
        assert answer["getVariableResult"][0]["attributeStatus"] == "Accepted"
        assert csms.call("CS001", "GetInstalledCertificateIds", {}) == {"status": "NotFound"}
        seen["before"] = announced(log)
        answer = csms.call(
            "CS001", "InstallCertificate", {"certificateType": "CSMSRootCertificate", "certificate": root}
        )
        assert answer == {"status": "Accepted"}
        seen["after"] = announced(log)

    with LoopbackCsms(passwords={"CS001": PASSWORD}) as csms:
        err = run_fenced_station(tmp_path, data_dir, csms, announce("cryptography"), exercise)
    assert seen["before"] == {}, err
    assert list(seen["after"]) == ["cryptography"] and "/appliance/certs/" in seen["after"]["cryptography"], err
    assert csms.violations == []


#: Standard-library modules only a rarely used feature needs (~1 MB of RSS together), and the firmware module
#: whose feature loads each: FTP and HTTP log uploads (GetLog), reading a firmware image's tar file.
FEATURE_MODULES = {
    "ftplib": "/appliance/diagnostics/upload.py",
    "http.client": "/appliance/diagnostics/upload.py",
    "tarfile": "/appliance/firmware/image.py",
}


def test_station_imports_transfer_and_image_modules_only_when_their_feature_runs(
    tmp_path: Path, data_dir: Path
) -> None:
    """A booted, serving station has loaded none of `FEATURE_MODULES`; an FTP and an HTTP GetLog upload load
    ftplib and http.client, an UpdateFirmware whose file is no tar file loads tarfile to find that out. The log
    files (written all along) never load `logging.handlers` and its `pickle`."""
    seen: dict[str, dict[str, str]] = {}

    def exercise(log: Path) -> None:
        answer = csms.call("CS001", "GetVariables", {"getVariableData": [HEARTBEAT_INTERVAL]})
        assert answer["getVariableResult"][0]["attributeStatus"] == "Accepted"
        seen["serving"] = announced(log)
        for request_id, url in ((1, ftp.url()), (2, http.url)):
            get_log = {"logType": "SecurityLog", "requestId": request_id, "log": {"remoteLocation": url}}
            assert csms.call("CS001", "GetLog", get_log)["status"] == "Accepted"
            csms.wait_action(
                "CS001",
                "LogStatusNotification",
                30,
                predicate=lambda p, r=request_id: p.get("requestId") == r and p["status"] == "Uploaded",
            )
        seen["uploaded"] = announced(log)
        not_a_tar = tmp_path / "firmware.img"
        not_a_tar.write_bytes(b"not a tar file" * 100)
        update = firmware.request(firmware.publish("firmware.img", not_a_tar), not_a_tar)
        assert csms.call("CS001", "UpdateFirmware", update)["status"] == "Accepted"
        csms.wait_action(
            "CS001", "FirmwareStatusNotification", 30, predicate=lambda p: p["status"] == "InstallVerificationFailed"
        )
        seen["installed"] = announced(log)

    with (
        LoopbackCsms(passwords={"CS001": PASSWORD}) as csms,
        FtpUploadServer(tmp_path) as ftp,
        HttpUploadServer() as http,
        firmware_lab(tmp_path / "firmware") as firmware,
    ):
        err = run_fenced_station(
            tmp_path, data_dir, csms, announce(*FEATURE_MODULES, *NEVER_LOADED), exercise, extra=firmware.config_extra()
        )
    assert seen["serving"] == {}, err
    loaded = {name: importer.partition(" ")[0] for name, importer in seen["installed"].items()}
    assert {name: path[-len(FEATURE_MODULES[name]) :] for name, path in loaded.items()} == FEATURE_MODULES, err
    assert set(seen["uploaded"]) == {"ftplib", "http.client"}, err
    assert len(http.received) == 1 and len(list(tmp_path.glob("CS001-SecurityLog-*.log"))) == 1, err
    assert csms.violations == []


#: What the station's log files (`appliance.logsetup`) would load with the stdlib's RotatingFileHandler.
NEVER_LOADED = ("logging.handlers", "pickle")

HEARTBEAT_INTERVAL = {"component": {"name": "OCPPCommCtrlr"}, "variable": {"name": "HeartbeatInterval"}}


def announced(log: Path) -> dict[str, str]:
    """The modules `announce` has seen imported so far, each with the `FILE LINE` that imported it."""
    lines = log.read_text().splitlines()
    return dict(line.split(" imported by: ", 1) for line in lines if " imported by: " in line)


def run_fenced_station(
    tmp_path: Path,
    data_dir: Path,
    csms: LoopbackCsms,
    prelude: str,
    exercise: Callable[[Path], None],
    *,
    extra: str = "",
) -> str:
    """Boot `appliance run` (profile 1, sim hardware, `extra` config sections) behind the fence with `prelude`
    run first, call `exercise(log file)` once it has sent its status notifications, stop it with SIGTERM; its log."""
    config = tmp_path / "station.toml"
    config.write_text(config_text(data_dir, csms.url, extra=extra))
    log_path = tmp_path / "station.log"

    def booted_then_exercise() -> None:
        csms.wait_action("CS001", "StatusNotification", count=2, timeout=30)
        exercise(log_path)

    return run_fenced_config(config, prelude, log_path, booted_then_exercise)


def run_fenced_config(config: Path, prelude: str, log_path: Path, exercise: Callable[[], None]) -> str:
    """`appliance run --config config` behind the fence with `prelude` run first, its output in `log_path`;
    `exercise()` while it runs, then SIGTERM; it must exit 0. Its log."""
    code = (
        prelude + "\nimport atexit, runpy\natexit.register(_report)\n"
        "runpy.run_module('appliance', run_name='__main__', alter_sys=True)"
    )
    with log_path.open("w") as log:
        station = fenced_python(code, "run", "--config", str(config), output=log)
        try:
            exercise()
            station.send_signal(signal.SIGTERM)
            station.wait(timeout=30)
        finally:
            if station.poll() is None:
                station.kill()
                station.wait()
    err = log_path.read_text()
    assert station.returncode == 0, err
    return err


def test_no_firmware_source_imports_the_lab_side() -> None:
    """The runtime checks above see the imports that ran; this one also sees imports inside functions that
    did not (a rarely used command, an error path). The only ways in are the `demo`, `devsim` and `fleet` commands."""
    allowed = {
        ("appliance.cli", "appliance.lab.demo"),
        ("appliance.cli", "appliance.lab.demo.run_demo"),
        ("appliance.cli", "appliance.lab.devsim"),
        ("appliance.cli", "appliance.lab.devsim.cli"),
        ("appliance.cli", "appliance.lab.fleet"),
        ("appliance.cli", "appliance.lab.fleet.FleetOptions"),
        ("appliance.cli", "appliance.lab.fleet.SCENARIOS"),
        ("appliance.cli", "appliance.lab.fleet.run_fleet"),
    }
    found = [hit for hit in lab_imports(REPO / "appliance") if not _is_lab(hit[0])]
    assert set(found) == allowed
    lab = lab_imports(REPO / "appliance" / "lab", "appliance.lab")
    assert ("appliance.lab.csms.session", "websockets.asyncio.server") in lab  # the scan sees what is there
    assert ("appliance.lab.csms.server", "appliance.lab.csms.session") in lab  # relative imports resolved


def lab_imports(root: Path, package: str = "appliance") -> list[tuple[str, str]]:
    """(module, imported name) for every import of websockets, ocpp or appliance.lab, at any depth."""
    hits = []
    for path in sorted(root.rglob("*.py")):
        parts = path.relative_to(root).with_suffix("").parts
        module = ".".join([package, *parts]).removesuffix(".__init__")
        is_package = path.name == "__init__.py"
        for node in ast.walk(ast.parse(path.read_text(), str(path))):
            if isinstance(node, ast.Import):
                names = [alias.name for alias in node.names]
            elif isinstance(node, ast.ImportFrom):
                source = node.module or ""
                if node.level:  # relative: resolve against the importing module's package
                    base = module if is_package else module.rpartition(".")[0]
                    for _ in range(node.level - 1):
                        base = base.rpartition(".")[0]
                    source = f"{base}.{source}".rstrip(".")
                # `from appliance import lab` names the lab in the alias, not in the module
                names = [source, *(f"{source}.{alias.name}" for alias in node.names)]
            else:
                continue
            hits += [(module, name) for name in names if name.partition(".")[0] in FENCED or _is_lab(name)]
    return sorted(set(hits))


def _is_lab(name: str) -> bool:
    return name == "appliance.lab" or name.startswith("appliance.lab.")
