"""A module imported on the first attribute read, for code that only a rarely used feature runs.

Every module a station imports at boot stays in its RSS for good. A module that only one rarely used feature
needs (cryptography for a certificate, tarfile for a firmware image, http.client and ftplib for a download or a
log upload) is bound to a `Deferred` instead, with the real import under `TYPE_CHECKING` for mypy:

    if TYPE_CHECKING:
        import tarfile
    else:
        tarfile = Deferred("tarfile")

The first attribute read (`tarfile.open(…)`, `tarfile.TarError` in an `except` clause once something is
raised) imports the module and forwards to it from then on. The import goes through `importlib.import_module`,
under Python's per-module import lock, so a worker thread and the Trio thread may both be first without harm.
`tests/test_import_fence.py` checks that a booted, serving station has not loaded these modules, and that the
feature loads them.
"""

from __future__ import annotations

import importlib
from typing import Any


class Deferred:
    """Stands in for module `name` until an attribute is read; then imports it and forwards to it."""

    def __init__(self, name: str) -> None:
        self._name = name

    def __getattr__(self, attribute: str) -> Any:
        # Called only for names not yet in this object's __dict__: store each one, so the next read is plain.
        value = getattr(importlib.import_module(self._name), attribute)
        setattr(self, attribute, value)
        return value

    def __repr__(self) -> str:
        return f"<deferred module {self._name!r}>"
