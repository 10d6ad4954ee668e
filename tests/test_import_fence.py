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
from pathlib import Path
from typing import IO

from appliance.lab.csms import LoopbackCsms
from appliance.lab.process import PACKAGE_ROOT, PASSWORD, config_text
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
        config = tmp_path / "station.toml"
        config.write_text(config_text(data_dir, csms.url))
        code = (
            "import atexit, runpy\natexit.register(_report)\n"
            "runpy.run_module('appliance', run_name='__main__', alter_sys=True)"
        )
        log_path = tmp_path / "station.log"
        with log_path.open("w") as log:
            station = fenced_python(code, "run", "--config", str(config), output=log)
            try:
                csms.wait_action("CS001", "StatusNotification", count=2, timeout=30)
                station.send_signal(signal.SIGTERM)
                station.wait(timeout=30)
            finally:
                if station.poll() is None:
                    station.kill()
                    station.wait()
    err = log_path.read_text()
    assert station.returncode == 0, err
    fence = [json.loads(line.partition(" ")[2]) for line in err.splitlines() if line.startswith("fence: ")]
    assert fence == [{"refused": [], "lab": []}], err
    assert csms.violations == []


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
