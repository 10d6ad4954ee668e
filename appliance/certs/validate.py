"""Checks on certificates a CSMS sends: a root to trust (InstallCertificate) or a chain for the station
(CertificateSigned). Each check returns the reason for refusing, in words a log reader understands, or None.

Chains are walked by hand with `verify_directly_issued_by` (issuer name and signature) rather than with
`cryptography.x509.verification`, whose client verifier insists on web-PKI rules (subjectAltName, EKU) that
OCPP's station certificates need not follow; validity and the CA bit are checked on every link.
"""

from __future__ import annotations

from datetime import datetime
from typing import TYPE_CHECKING

from appliance.certs.crypto import exceptions, serialization, x509

if TYPE_CHECKING:
    from cryptography.hazmat.primitives.asymmetric.types import PrivateKeyTypes

#: The longest chain we follow from leaf to root (leaf, up to three sub-CAs, root).
MAX_DEPTH = 5


class CertificateProblem(ValueError):
    """A certificate (or PEM text) that cannot be used; the message says why."""


def parse_pem(text: str) -> list[x509.Certificate]:
    """Every certificate in PEM text, in order; CertificateProblem if there is none or one is damaged."""
    try:
        certs = x509.load_pem_x509_certificates(text.encode("utf-8"))
    except ValueError as exc:
        raise CertificateProblem(f"not a PEM X.509 certificate ({exc})") from None
    if not certs:
        raise CertificateProblem("no PEM certificate in the text")
    return certs


def subject_text(cert: x509.Certificate) -> str:
    return cert.subject.rfc4514_string() or "(empty subject)"


def _validity(cert: x509.Certificate, now: datetime) -> str | None:
    if now < cert.not_valid_before_utc:
        return f"{subject_text(cert)} is not valid before {cert.not_valid_before_utc:%Y-%m-%dT%H:%M:%SZ}"
    if now > cert.not_valid_after_utc:
        return f"{subject_text(cert)} expired at {cert.not_valid_after_utc:%Y-%m-%dT%H:%M:%SZ}"
    return None


def _is_ca(cert: x509.Certificate) -> bool:
    try:
        return bool(cert.extensions.get_extension_for_class(x509.BasicConstraints).value.ca)
    except x509.ExtensionNotFound:
        return False


def signed_by(cert: x509.Certificate, issuer: x509.Certificate) -> bool:
    try:
        cert.verify_directly_issued_by(issuer)
    except (ValueError, TypeError, exceptions.InvalidSignature):
        return False
    return True


def root_problem(cert: x509.Certificate, now: datetime) -> str | None:
    """Why `cert` cannot be installed as a root (M05.FR.07: invalid or expired), or None.

    A root is a self-signed CA certificate valid now: its own signature is checked, so a damaged or forged
    certificate is refused, and hash data can be computed from its own key.
    """
    problem = _validity(cert, now)
    if problem:
        return problem
    if not _is_ca(cert):
        return f"{subject_text(cert)} is not a CA certificate (basicConstraints cA is not true)"
    if not signed_by(cert, cert):
        return f"{subject_text(cert)} is not a self-signed root (issuer {cert.issuer.rfc4514_string()})"
    return None


def chain_problem(chain: list[x509.Certificate], roots: list[x509.Certificate], now: datetime) -> str | None:
    """Why `chain` (leaf first, then sub-CAs) does not lead to one of `roots`, or None.

    Every certificate on the way must be valid now, every issuer a CA, and every signature right; the chain
    may end with the root itself or just below it.
    """
    if not roots:
        return "no CSMSRootCertificate is installed to verify the chain against"
    for cert in chain:
        problem = _validity(cert, now)
        if problem:
            return problem
    current = chain[0]
    rest = list(chain[1:])
    for _ in range(MAX_DEPTH):
        for root in roots:
            if root.subject == current.issuer and signed_by(current, root):
                return None
        if not rest:
            return f"{subject_text(current)} is not issued by an installed CSMSRootCertificate"
        issuer = rest.pop(0)
        if not _is_ca(issuer):
            return f"{subject_text(issuer)} in the chain is not a CA certificate"
        if not signed_by(current, issuer):
            return f"{subject_text(current)} is not signed by the next certificate in the chain"
        current = issuer
    return f"the chain is longer than {MAX_DEPTH} certificates"


def key_matches(cert: x509.Certificate, key: PrivateKeyTypes) -> bool:
    """Whether `cert` carries the public half of `key` (the key the station made for its CSR)."""
    spki = serialization.PublicFormat.SubjectPublicKeyInfo
    der = serialization.Encoding.DER
    return cert.public_key().public_bytes(der, spki) == key.public_key().public_bytes(der, spki)
