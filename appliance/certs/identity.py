"""The station's own TLS identity (Security Profile 3): its ChargingStationCertificate chain and private key.

Where they live: the factory pair from `[security]` until the CSMS signs a new certificate; then a generation
directory `<data_dir>/certs/station/<name>/` holding `cert.pem` (the chain as the CSMS sent it) and `key.pem`,
named by the station-state row `station_certificate`. The switch is that one row, written in one transaction
after both files are on disk, so a power cut leaves either the old identity or the new one, never a key that
does not fit its certificate. The key for a pending CSR is `<data_dir>/certs/pending-key.pem`, so a
CertificateSigned that arrives after a restart still finds it.

Keys are EC P-256 (ECDSA: OCPP's TLS 1.2 suites ECDHE-ECDSA-AES128/256-GCM), made by `cryptography`, written
0600 in a 0700 directory, never logged. All file work runs on the storage worker.
"""

from __future__ import annotations

import logging
import os
import shutil
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import TYPE_CHECKING

from appliance.certs import files
from appliance.certs.crypto import ec, hashes, serialization, x509
from appliance.certs.validate import CertificateProblem, chain_problem, key_matches, parse_pem
from appliance.config import ConfigError
from appliance.storage import StateStore, Storage
from appliance.storage.db import fsync_dir

if TYPE_CHECKING:
    from cryptography.hazmat.primitives.asymmetric.types import PrivateKeyTypes

log = logging.getLogger("appliance.certs")

STATE_KEY = "station_certificate"
PENDING_KEY = "pending-key.pem"


@dataclass(frozen=True)
class Identity:
    """A certificate chain (leaf first) and the files TLS loads it from."""

    chain: list[x509.Certificate]
    chain_file: Path
    key_file: Path
    origin: str  # "factory" or "renewed"

    @property
    def leaf(self) -> x509.Certificate:
        return self.chain[0]


def _load_key(path: Path) -> PrivateKeyTypes:
    return serialization.load_pem_private_key(path.read_bytes(), password=None)


def _pem_key(key: PrivateKeyTypes) -> bytes:
    return key.private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
    )


class StationIdentity:
    def __init__(
        self,
        storage: Storage,
        state: StateStore,
        certs_dir: Path,
        current: Identity | None,
        pending: PrivateKeyTypes | None,
    ) -> None:
        self._storage = storage
        self._state = state
        self._dir = certs_dir
        self.current = current
        self._pending = pending

    @classmethod
    async def open(
        cls, storage: Storage, state: StateStore, data_dir: Path, factory_cert: Path | None, factory_key: Path | None
    ) -> StationIdentity:
        """The identity in use (renewed, else factory, else none) and a pending CSR key; stale generations
        (left by a power cut before the switch, or replaced by a later one) are removed."""
        certs_dir = data_dir / "certs"
        generation = state.get(STATE_KEY)

        def load() -> tuple[Identity | None, PrivateKeyTypes | None]:
            files.private_dir(files.private_dir(certs_dir) / "station")
            current = None
            if generation:
                where = certs_dir / "station" / generation
                try:
                    current = Identity(
                        parse_pem((where / "cert.pem").read_text()), where / "cert.pem", where / "key.pem", "renewed"
                    )
                except (OSError, CertificateProblem) as exc:
                    log.error("renewed station certificate %s unusable (%s); using the factory one", where, exc)
            for stale in (certs_dir / "station").iterdir():
                if stale.name != generation:
                    shutil.rmtree(stale, ignore_errors=True)
            if current is None and factory_cert is not None and factory_key is not None:
                current = _factory(factory_cert, factory_key)
            pending = None
            with_key = certs_dir / PENDING_KEY
            if with_key.exists():
                try:
                    pending = _load_key(with_key)
                except (OSError, ValueError) as exc:
                    log.error("pending CSR key %s unusable (%s); discarded", with_key, exc)
            return current, pending

        current, pending = await storage.run(load)
        return cls(storage, state, certs_dir, current, pending)

    def client_identity(self) -> tuple[Path, Path] | None:
        """(chain file, key file) for the TLS client certificate, or None when the station has none."""
        return None if self.current is None else (self.current.chain_file, self.current.key_file)

    def valid(self, now: datetime) -> bool:
        """Whether the station holds a certificate it can connect with now (A05.FR.03, TC_A_21)."""
        leaf = self.current.leaf if self.current else None
        return leaf is not None and leaf.not_valid_before_utc <= now <= leaf.not_valid_after_utc

    async def new_csr(self, common_name: str, organization: str) -> str:
        """A fresh key (stored as the pending one) and its PKCS#10 CSR, PEM (A02.FR.02)."""

        def make() -> tuple[PrivateKeyTypes, str]:
            key = ec.generate_private_key(ec.SECP256R1())
            files.private_dir(self._dir)
            files.write_private(self._dir / PENDING_KEY, _pem_key(key))
            attributes = [x509.NameAttribute(x509.NameOID.COMMON_NAME, common_name)]
            if organization:
                attributes.append(x509.NameAttribute(x509.NameOID.ORGANIZATION_NAME, organization))
            csr = x509.CertificateSigningRequestBuilder().subject_name(x509.Name(attributes)).sign(key, hashes.SHA256())
            return key, csr.public_bytes(serialization.Encoding.PEM).decode("ascii")

        key, csr = await self._storage.run(make)
        self._pending = key
        return csr

    def check_signed(
        self, chain_pem: str, roots: list[x509.Certificate], now: datetime
    ) -> tuple[list[x509.Certificate], str | None]:
        """The chain of a CertificateSigned and why it cannot be used (None: it can): PEM, the pending CSR
        key, validity, and a path to an installed CSMS root (A02.FR.05)."""
        try:
            chain = parse_pem(chain_pem)
        except CertificateProblem as exc:
            return [], str(exc)
        if self._pending is None:
            return chain, "no certificate signing request is pending"
        if not key_matches(chain[0], self._pending):
            return chain, "the certificate does not carry the key of the station's pending CSR"
        return chain, chain_problem(chain, roots, now)

    async def adopt(self, chain: list[x509.Certificate]) -> None:
        """Make `chain` (checked) and the pending key the station's identity, durably (see module doc)."""
        assert self._pending is not None
        name = f"{chain[0].not_valid_before_utc:%Y%m%dT%H%M%S}-{chain[0].serial_number:x}"[:64]
        where = self._dir / "station" / name
        text = b"".join(c.public_bytes(serialization.Encoding.PEM) for c in chain)

        def write() -> None:
            files.private_dir(where)
            files.write_private(where / "cert.pem", text)
            os.replace(self._dir / PENDING_KEY, where / "key.pem")
            fsync_dir(where)
            fsync_dir(self._dir)

        await self._storage.run(write)
        old = self.current
        await self._state.put(STATE_KEY, name)
        self.current = Identity(chain, where / "cert.pem", where / "key.pem", "renewed")
        self._pending = None
        if old is not None and old.origin == "renewed" and old.chain_file.parent != where:
            await self._storage.run(lambda: shutil.rmtree(old.chain_file.parent, ignore_errors=True))


def _factory(cert: Path, key: Path) -> Identity:
    """The factory pair from `[security]`; ConfigError naming the key when it is unreadable or does not fit."""
    try:
        chain = parse_pem(cert.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, CertificateProblem) as exc:
        raise ConfigError("security.client_cert_file", f"{cert}: {getattr(exc, 'strerror', None) or exc}") from None
    try:
        private = _load_key(key)
    except (OSError, ValueError, TypeError) as exc:
        # never the key's text: only why it could not be read
        raise ConfigError(
            "security.client_key_file",
            f"{key}: {getattr(exc, 'strerror', None) or 'not an unencrypted PEM private key'}",
        ) from None
    if not key_matches(chain[0], private):
        raise ConfigError("security.client_key_file", f"{key} is not the key of {cert}")
    mode = key.stat().st_mode & 0o077
    if mode:
        log.warning(
            "security.client_key_file %s is readable by others (mode %o); it should be 0600",
            key,
            key.stat().st_mode & 0o777,
        )
    return Identity(chain, cert, key, "factory")
