"""OCPP's firmware signature and signing certificate (L01, CONTRACT "appliance firmware").

The signature is over the image *file's* bytes: SHA-256, then RSA PKCS#1 v1.5 or ECDSA (DER-encoded), whichever
the signing key is; it travels base64-encoded in UpdateFirmware's `firmware.signature`. The signing
certificate (PEM, optionally followed by intermediates) must chain to one of the installed
ManufacturerRootCertificates and be within its validity — checked before anything is downloaded (L01.FR.02).
"""

from __future__ import annotations

import base64
import binascii
import hashlib
from collections.abc import Sequence
from datetime import datetime
from pathlib import Path

from appliance.certs.crypto import ec, exceptions, hashes, padding, rsa, serialization, utils, x509

#: Longest chain accepted (leaf, intermediates, root).
MAX_CHAIN = 5


class CertificateProblem(Exception):
    """The signing certificate cannot be trusted; the message says why (it goes into the security event)."""


def _file_digest(path: Path) -> bytes:
    sha = hashlib.sha256()
    with open(path, "rb") as f:
        while chunk := f.read(1024 * 1024):
            sha.update(chunk)
    return sha.digest()


def sign(key_pem: bytes, image: Path) -> str:
    """The base64 signature UpdateFirmware carries, with an RSA or EC private key (PEM, unencrypted)."""
    key = serialization.load_pem_private_key(key_pem, password=None)
    digest = _file_digest(image)
    prehashed = utils.Prehashed(hashes.SHA256())
    if isinstance(key, rsa.RSAPrivateKey):
        raw = key.sign(digest, padding.PKCS1v15(), prehashed)
    elif isinstance(key, ec.EllipticCurvePrivateKey):
        raw = key.sign(digest, ec.ECDSA(prehashed))
    else:
        raise ValueError(f"unsupported key type {type(key).__name__}: use an RSA or EC key")
    return base64.b64encode(raw).decode()


def verify_signature(certificate: x509.Certificate, signature_b64: str, image: Path) -> bool:
    """Whether `signature_b64` is the certificate key's signature over the file."""
    try:
        raw = base64.b64decode(signature_b64.strip(), validate=True)
    except (binascii.Error, ValueError):
        return False
    key = certificate.public_key()
    digest = _file_digest(image)
    prehashed = utils.Prehashed(hashes.SHA256())
    try:
        if isinstance(key, rsa.RSAPublicKey):
            key.verify(raw, digest, padding.PKCS1v15(), prehashed)
        elif isinstance(key, ec.EllipticCurvePublicKey):
            key.verify(raw, digest, ec.ECDSA(prehashed))
        else:
            return False
    except (exceptions.InvalidSignature, ValueError):
        return False
    return True


def load_chain(pem: str | bytes) -> list[x509.Certificate]:
    """The certificates of a PEM text, leaf first; CertificateProblem if there is none or it does not parse."""
    data = pem.encode() if isinstance(pem, str) else pem
    try:
        chain = x509.load_pem_x509_certificates(data)
    except ValueError as exc:
        raise CertificateProblem(f"the signing certificate is not PEM X.509: {exc}") from None
    if not chain:
        raise CertificateProblem("no certificate in the signing certificate")
    return chain[:MAX_CHAIN]


def _valid_at(cert: x509.Certificate, now: datetime) -> None:
    if not cert.not_valid_before_utc <= now <= cert.not_valid_after_utc:
        raise CertificateProblem(
            f"certificate {cert.subject.rfc4514_string()} is not valid at "
            f"{now:%Y-%m-%dT%H:%M:%SZ} (valid {cert.not_valid_before_utc:%Y-%m-%d} to "
            f"{cert.not_valid_after_utc:%Y-%m-%d})"
        )


def _issued_by(cert: x509.Certificate, issuer: x509.Certificate) -> bool:
    if cert.issuer != issuer.subject:
        return False
    try:
        cert.verify_directly_issued_by(issuer)
    except (ValueError, TypeError, exceptions.InvalidSignature):
        return False
    return True


def _is_ca(cert: x509.Certificate) -> bool:
    """An intermediate may issue certificates only if it says it is a CA."""
    try:
        return bool(cert.extensions.get_extension_for_class(x509.BasicConstraints).value.ca)
    except x509.ExtensionNotFound:
        return False


def check_chain(chain: Sequence[x509.Certificate], roots: Sequence[x509.Certificate], now: datetime) -> None:
    """Raise CertificateProblem unless chain[0] chains through chain[1:] to one of `roots`, all valid at `now`."""
    if not roots:
        raise CertificateProblem("no ManufacturerRootCertificate is installed")
    current = chain[0]
    rest = list(chain[1:])
    for _ in range(MAX_CHAIN):
        _valid_at(current, now)
        for root in roots:
            if _issued_by(current, root) or current == root:
                _valid_at(root, now)
                return
        parent = next((c for c in rest if _is_ca(c) and _issued_by(current, c)), None)
        if parent is None:
            break
        rest.remove(parent)
        current = parent
    raise CertificateProblem(
        f"{chain[0].subject.rfc4514_string()} does not chain to an installed ManufacturerRootCertificate"
    )


def read_roots(path: Path) -> list[x509.Certificate]:
    """The ManufacturerRootCertificate(s) of a PEM file; OSError or CertificateProblem if unusable."""
    chain = load_chain(path.read_bytes())
    return list(chain)
