"""Checks of the host that a person must fix, made before the station opens anything.

`config.parse` checks the text; these look at the files it names: the data directory (a directory the station
can read and write, on a writable file system) and the CSMS root certificate. Each problem is a ConfigError
naming the key and the path, so `appliance run` prints one line and exits 2 instead of failing later on the
event loop with a traceback and exit 1 — a restart cannot cure a read-only mount or a missing certificate.
"""

from __future__ import annotations

import errno
import logging
import os
import ssl
import stat
import tempfile
from pathlib import Path

from appliance.config import Config, ConfigError
from appliance.storage.db import DB_NAME

log = logging.getLogger("appliance.preflight")

#: What the station needs on the journal's files while they exist (SQLite writes the -wal and -shm too).
JOURNAL_FILES = (DB_NAME, f"{DB_NAME}-wal", f"{DB_NAME}-shm")


def check(config: Config) -> None:
    """Raise ConfigError for the first host problem the config's paths have."""
    data_dir(config.station.data_dir)
    if config.hardware.backend == "sim":
        _writable_dir(config.hardware.sim_socket.parent, "hardware.sim_socket")
    if config.csms.ca_file is not None:
        ca_file(config.csms.ca_file)
    # security block: the Security Profile 3 client certificate and key
    if config.security.client_identity is not None:
        client_identity(*config.security.client_identity)


def data_dir(path: Path) -> None:
    """The data directory can be read and written, and so can the journal's files where they exist."""
    key = "station.data_dir"
    _writable_dir(path, key)
    for name in JOURNAL_FILES:
        file = path / name
        try:
            with open(file, "r+b"):  # opened only to prove the permission, as SQLite will open it
                pass
        except FileNotFoundError:
            continue
        except OSError as exc:
            raise ConfigError(key, f"cannot read and write {file}: {_reason(exc)}") from None


def _writable_dir(path: Path, key: str) -> None:
    """`path` is a directory (created if missing) this process can list and create files in, for real."""
    if path.exists() and not path.is_dir():
        raise ConfigError(key, f"{path} is a file, not a directory")
    try:
        path.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise ConfigError(key, f"cannot create {path}: {_reason(exc)}") from None
    if not os.access(path, os.R_OK | os.X_OK, effective_ids=True):
        raise ConfigError(key, f"{path} is not readable: the station needs read and search (r-x) permission on it")
    try:
        fd, probe = tempfile.mkstemp(prefix=".write-probe-", dir=path)
    except OSError as exc:
        raise ConfigError(key, f"cannot write in {path}: {_reason(exc)}") from None
    os.close(fd)
    os.unlink(probe)


def ca_file(path: Path) -> None:
    """The CSMS root certificate file exists, is readable and holds at least one PEM certificate."""
    key = "csms.ca_file"
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
    try:
        context.load_verify_locations(cafile=os.fspath(path))
    except FileNotFoundError:
        raise ConfigError(key, f"{path}: no such file") from None
    except ssl.SSLError as exc:
        detail = f" ({exc.reason})" if exc.reason and exc.reason != "PEM lib" else ""
        raise ConfigError(key, f"{path} holds no usable PEM certificate{detail}") from None
    except OSError as exc:
        raise ConfigError(key, f"cannot read {path}: {_reason(exc)}") from None
    if context.cert_store_stats()["x509"] == 0:
        raise ConfigError(key, f"{path} holds no certificate")


def client_identity(cert: Path, key: Path) -> None:
    """The client certificate chain and its private key load and belong together (the key is never shown)."""
    for name, path in (("security.client_cert_file", cert), ("security.client_key_file", key)):
        try:
            with open(path, "rb"):
                pass
        except FileNotFoundError:
            raise ConfigError(name, f"{path}: no such file") from None
        except OSError as exc:
            raise ConfigError(name, f"cannot read {path}: {_reason(exc)}") from None
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
    try:
        context.load_cert_chain(cert, key)
    except ssl.SSLError as exc:
        raise ConfigError(
            "security.client_key_file",
            f"{cert} and {key} are not a usable certificate and private key pair ({exc.reason or 'unreadable PEM'})",
        ) from None
    mode = stat.S_IMODE(os.stat(key).st_mode)
    if mode & 0o077:
        log.warning("security.client_key_file: %s is readable by others (mode %04o); make it 0600", key, mode)


def _reason(exc: OSError) -> str:
    if exc.errno == errno.EROFS:
        return "read-only file system"
    if exc.errno in (errno.EACCES, errno.EPERM):
        return "permission denied"
    if exc.errno in (errno.ENOTDIR, errno.EEXIST):
        return "a path component is a file, not a directory"
    return exc.strerror or str(exc)
