"""Secret files the way a power cut and other users cannot hurt them: directories 0700, files 0600, each file
replaced atomically (temporary file created 0600, fsync, rename, directory fsync). Blocking: call these on the
storage worker (`storage.run`), never on the Trio thread."""

from __future__ import annotations

import contextlib
import os
from pathlib import Path

from appliance.storage.db import fsync_dir


def private_dir(path: Path) -> Path:
    """`path` (and missing parents) as a directory only the station's user can enter; returned for chaining."""
    path.mkdir(mode=0o700, parents=True, exist_ok=True)
    os.chmod(path, 0o700)  # mkdir's mode is masked by the umask, and an existing directory keeps its own
    return path


def write_private(path: Path, data: bytes) -> None:
    """Replace `path` with `data`, readable and writable by the owner only, durably and atomically."""
    tmp = path.with_name(f".{path.name}.tmp")
    with contextlib.suppress(FileNotFoundError):
        tmp.unlink()
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    with os.fdopen(fd, "wb") as file:
        file.write(data)
        file.flush()
        os.fsync(file.fileno())
    os.replace(tmp, path)
    fsync_dir(path.parent)
