"""The certificate store: the roots the station trusts, by use (CSMS roots for TLS, manufacturer roots for
firmware), installed over OCPP or imported from the factory files.

Rows in the station database (migration 0007), read once at open and served from memory, so `trusted_pem()` —
asked by the TLS transport before every connection — and `trusted()` — by the firmware check — never touch the
disk. An entry keeps its PEM and fingerprint and parses the certificate (`Installed.cert`, with `cryptography`)
only when something asks for it: TLS needs only the PEM (OpenSSL parses it in the handshake), so a station on
Security Profile 2 boots, connects and serves without loading `cryptography` (~8 MB of RSS). Every change is
one transaction on the storage worker, awaited before the answer goes out: what the station said it installed
is on disk, and an answer of Failed means nothing changed.

The factory files (`[csms] ca_file`, `[firmware] manufacturer_root_file`) are imported when the station opens:
a certificate in them that the store has never seen is added as `factory`; one the CSMS deleted stays deleted
(its row keeps `deleted_at`). So the CSMS's view is the station's truth, and a station maker who ships a new
root in the factory file gets it trusted at the next start. Known certificates are recognised by the SHA-256
of their DER (`pemtext`, no parse); a file holding anything else — a certificate not seen before, a block that
is not exact base64, any other PEM block — is parsed and judged in full as at the first start, and a damaged
one still stops the station.
"""

from __future__ import annotations

import hashlib
import logging
import sqlite3
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from datetime import UTC, datetime
from functools import cached_property
from pathlib import Path
from typing import TYPE_CHECKING

from appliance.certs import hashdata, pemtext
from appliance.certs.crypto import serialization
from appliance.certs.validate import CertificateProblem, parse_pem, root_problem, subject_text
from appliance.clock import format_iso
from appliance.config import ConfigError
from appliance.storage import Storage

if TYPE_CHECKING:
    from appliance.certs.crypto import x509

log = logging.getLogger("appliance.certs")

CSMS_ROOT = "CSMSRootCertificate"
MANUFACTURER_ROOT = "ManufacturerRootCertificate"
#: The uses this station keeps; InstallCertificateUseEnumType also names V2G and MO roots (ISO 15118).
ROOT_USES = (CSMS_ROOT, MANUFACTURER_ROOT)
#: Uses whose last certificate cannot be deleted (AQ-1: a station with no CSMS root could never connect
#: over TLS again, and no OCPP message could repair it).
KEEP_LAST = (CSMS_ROOT,)


@dataclass(frozen=True)
class Installed:
    use: str
    pem: str
    fingerprint: str
    origin: str  # "factory" or "csms"
    installed_at: str

    @cached_property
    def cert(self) -> x509.Certificate:
        """The parsed certificate, made on first use (it loads `cryptography`); the PEM was valid when stored."""
        return parse_pem(self.pem)[0]

    def hash_data(self, algorithm: str = hashdata.DEFAULT_ALGORITHM) -> dict[str, str]:
        """A root is its own issuer."""
        return hashdata.hash_data(self.cert, self.cert.public_key(), algorithm)


@dataclass(frozen=True)
class Outcome:
    """An OCPP status with the reason code and words that go with it (statusInfo)."""

    status: str
    reason: str | None = None
    info: str | None = None

    def payload(self) -> dict:
        answer: dict = {"status": self.status}
        if self.reason:
            answer["statusInfo"] = {
                "reasonCode": self.reason,
                **({"additionalInfo": self.info[:512]} if self.info else {}),
            }
        return answer


def fingerprint(cert: x509.Certificate) -> str:
    return hashlib.sha256(cert.public_bytes(serialization.Encoding.DER)).hexdigest()


def read_factory_file(path: Path, key: str) -> str:
    """A factory file's text; ConfigError naming `key` if it cannot be read."""
    try:
        return path.read_text(encoding="utf-8")
    except FileNotFoundError:
        raise ConfigError(key, f"{path}: no such file") from None
    except (OSError, UnicodeDecodeError) as exc:
        raise ConfigError(key, f"cannot read {path}: {getattr(exc, 'strerror', None) or exc}") from None


def parse_factory_file(text: str, path: Path, key: str) -> list[x509.Certificate]:
    """The certificates in a factory file's text; ConfigError naming `key` if it holds none or a damaged one."""
    try:
        return parse_pem(text)
    except CertificateProblem as exc:
        raise ConfigError(key, f"{path}: {exc}") from None


def known_only(text: str, known: set[str]) -> bool:
    """Whether `text` is nothing but certificate blocks whose fingerprints are in `known` (then there is
    nothing to import or judge: each of them was parsed when it was stored)."""
    try:
        blocks, complete = pemtext.split(text)
    except ValueError:
        return False
    return complete and bool(blocks) and all(b.fingerprint in known for b in blocks)


class CertificateStore:
    def __init__(self, storage: Storage, entries: list[Installed], capacity: Callable[[], int | None]) -> None:
        self._storage = storage
        self._entries = entries
        self._capacity = capacity

    @classmethod
    async def open(
        cls, storage: Storage, factory: Mapping[str, tuple[str, Path | None]], capacity: Callable[[], int | None]
    ) -> CertificateStore:
        """Load the rows and import unseen factory certificates. `factory`: use → (config key, file or None)."""

        def load() -> list[Installed]:
            seen: dict[str, set[str]] = {}  # deleted rows too: a certificate the CSMS deleted is not imported again
            for use, fp in storage.writer.execute("SELECT use, fingerprint FROM certificates"):
                seen.setdefault(use, set()).add(fp)
            imported: list[tuple[str, x509.Certificate]] = []
            for use, (key, path) in factory.items():
                if path is not None:
                    text = read_factory_file(path, key)
                    if not known_only(text, seen.get(use, set())):
                        imported += [(use, cert) for cert in parse_factory_file(text, path, key)]
            now = format_iso(datetime.now(UTC))
            for use, cert in imported:
                inserted = storage.writer.execute(
                    "INSERT OR IGNORE INTO certificates (use, fingerprint, pem, origin, installed_at) "
                    "VALUES (?, ?, ?, 'factory', ?)",
                    (use, fingerprint(cert), cert.public_bytes(serialization.Encoding.PEM).decode(), now),
                )
                if inserted.rowcount:
                    log.info("imported factory %s %s", use, subject_text(cert))
            rows = storage.writer.execute(
                "SELECT use, pem, fingerprint, origin, installed_at FROM certificates "
                "WHERE deleted_at IS NULL ORDER BY installed_at, rowid"
            ).fetchall()
            return [Installed(use, pem, fp, origin, at) for use, pem, fp, origin, at in rows]

        return cls(storage, await storage.write(load), capacity)

    # --- reading (memory) ----------------------------------------------------------------------------

    def trusted(self, use: str) -> list[x509.Certificate]:
        """The certificates of `use` the station trusts now, parsed (for the firmware check:
        ManufacturerRootCertificate; for a CertificateSigned chain: CSMSRootCertificate)."""
        return [e.cert for e in self._entries if e.use == use]

    def trusted_pem(self, use: str) -> list[str]:
        """The same as PEM text, without parsing (for TLS: OpenSSL takes the CSMS roots as `cadata`)."""
        return [e.pem for e in self._entries if e.use == use]

    def entries(self, uses: tuple[str, ...] | None = None) -> list[Installed]:
        return [e for e in self._entries if uses is None or e.use in uses]

    def __len__(self) -> int:
        return len(self._entries)

    # --- changing (one transaction each) -------------------------------------------------------------

    async def install(self, use: str, pem: str, now: datetime) -> Outcome:
        """InstallCertificate of a root (M05): Accepted, Rejected (invalid, expired, not a root) or Failed."""
        try:
            certs = parse_pem(pem)
        except CertificateProblem as exc:
            return Outcome("Rejected", "InvalidCertificate", str(exc))
        if len(certs) != 1:
            return Outcome("Rejected", "InvalidCertificate", f"expected one certificate, got {len(certs)}")
        cert = certs[0]
        problem = root_problem(cert, now)
        if problem:
            return Outcome("Rejected", "InvalidCertificate", problem)
        fp = fingerprint(cert)
        if any(e.use == use and e.fingerprint == fp for e in self._entries):
            return Outcome("Accepted")  # already installed: installing it again changes nothing
        capacity = self._capacity()
        if capacity is not None and len(self._entries) >= capacity:
            return Outcome(
                "Failed",
                "OutOfStorage",
                f"the store holds its maximum of {capacity} certificates (CertificateEntries maxLimit)",
            )
        text = cert.public_bytes(serialization.Encoding.PEM).decode()
        at = format_iso(now)
        try:
            await self._storage.write(_upsert, self._storage.writer, use, fp, text, at)
        except (sqlite3.Error, OSError) as exc:
            log.error("InstallCertificate %s could not be stored: %s", use, exc)
            return Outcome("Failed", "InternalError", "the certificate could not be stored")
        self._entries.append(Installed(use, text, fp, "csms", at))
        log.info("installed %s %s (expires %s)", use, subject_text(cert), format_iso(cert.not_valid_after_utc))
        return Outcome("Accepted")

    def find(self, wanted: Mapping[str, object]) -> Installed | None:
        """The installed certificate a CSMS's CertificateHashDataType names, if any."""
        algorithm = str(wanted.get("hashAlgorithm"))
        if algorithm not in hashdata.ALGORITHMS:
            return None
        return next((e for e in self._entries if hashdata.same(wanted, e.hash_data(algorithm))), None)

    async def delete(self, entry: Installed, now: datetime) -> Outcome:
        """DeleteCertificate of an installed root (M04): Accepted, or Failed for the last CSMS root."""
        if entry.use in KEEP_LAST and sum(e.use == entry.use for e in self._entries) == 1:
            return Outcome(
                "Failed",
                "Unspecified",
                f"the last {entry.use} cannot be deleted: the station could not verify its CSMS any more",
            )
        try:
            await self._storage.write(
                _mark_deleted, self._storage.writer, entry.use, entry.fingerprint, format_iso(now)
            )
        except (sqlite3.Error, OSError) as exc:
            log.error("DeleteCertificate could not be stored: %s", exc)
            return Outcome("Failed", "InternalError", "the deletion could not be stored")
        self._entries.remove(entry)
        log.info("deleted %s %s", entry.use, subject_text(entry.cert))
        return Outcome("Accepted")


def _upsert(conn: sqlite3.Connection, use: str, fp: str, pem: str, at: str) -> None:
    """Install, or reinstate a certificate deleted earlier (it is the CSMS's again now)."""
    conn.execute(
        "INSERT INTO certificates (use, fingerprint, pem, origin, installed_at) VALUES (?, ?, ?, 'csms', ?) "
        "ON CONFLICT(use, fingerprint) DO UPDATE SET origin = 'csms', installed_at = excluded.installed_at, "
        "deleted_at = NULL",
        (use, fp, pem, at),
    )


def _mark_deleted(conn: sqlite3.Connection, use: str, fp: str, at: str) -> None:
    conn.execute("UPDATE certificates SET deleted_at = ? WHERE use = ? AND fingerprint = ?", (at, use, fp))
