"""Running commands without privileges, for tests of what file permissions and read-only mounts refuse.

Tests often run as root, for whom chmod changes nothing; so a command under test runs as the unprivileged
`nobody` (via `setpriv`) when we are root, and as ourselves otherwise. Paths it must reach live in a directory
from `shared_dir` (pytest's tmp_path sits under a 0700 directory another user cannot enter). A read-only mount
is a private bind mount (`unshare --mount`), which needs root. Where a tool or privilege is missing the test is
skipped with the reason.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import stat
import subprocess
import sys
import tempfile
from collections.abc import Iterator, Sequence
from pathlib import Path

import pytest

from tests.harness import REPO

NOBODY = 65534


def as_other_user() -> list[str]:
    """A command prefix that drops root to `nobody`; empty when we are not root (chmod already binds us)."""
    if os.geteuid() != 0:
        return []
    setpriv = shutil.which("setpriv")
    if setpriv is None:
        pytest.skip("running as root without setpriv: cannot drop privileges, so permissions cannot refuse")
    return [setpriv, f"--reuid={NOBODY}", f"--regid={NOBODY}", "--clear-groups", "--"]


def read_only_mount(path: Path) -> list[str]:
    """A command prefix that runs the command with `path` bind-mounted read-only onto itself (root only)."""
    unshare = shutil.which("unshare")
    if os.geteuid() != 0 or unshare is None:
        pytest.skip("a read-only bind mount needs root and unshare(1)")
    probe = subprocess.run(
        [unshare, "--mount", "sh", "-c", f"mount --bind -o ro '{path}' '{path}'"],
        capture_output=True,
        text=True,
        check=False,
    )
    if probe.returncode != 0:
        pytest.skip(f"cannot make a private read-only bind mount here: {probe.stderr.strip()}")
    return [unshare, "--mount", "sh", "-c", 'mount --bind -o ro "$0" "$0" && exec "$@"', str(path)]


@contextlib.contextmanager
def shared_dir() -> Iterator[Path]:
    """A fresh directory (mode 0755) that any user can reach; removed afterwards whatever its modes became."""
    path = Path(tempfile.mkdtemp(prefix="ap-perm-", dir="/tmp"))
    path.chmod(0o755)
    try:
        yield path
    finally:
        path.chmod(stat.S_IRWXU)
        for root, dirs, _ in os.walk(path):  # top-down: each directory is opened up before it is entered
            for name in dirs:
                os.chmod(os.path.join(root, name), stat.S_IRWXU)
        shutil.rmtree(path, ignore_errors=True)


def run_python(prefix: Sequence[str], module: str, *args: str, timeout: float = 60) -> subprocess.CompletedProcess[str]:
    """`python -m module args` from the repository, behind `prefix` (another user, a mount namespace)."""
    return subprocess.run(
        [*prefix, sys.executable, "-m", module, *args],
        cwd=REPO,
        capture_output=True,
        text=True,
        timeout=timeout,
        check=False,
        env={**os.environ, "PYTHONPATH": str(REPO)},
    )
