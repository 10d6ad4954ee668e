"""OCPP CertificateHashDataType: how a CSMS names an installed certificate without sending it again.

The three values are those of an RFC 6960 OCSP CertID, which is what OCPP borrowed them from (Part 2 M):
issuerNameHash over the DER encoding of the certificate's *issuer* Name, issuerKeyHash over the issuer's public
key — the value of the subjectPublicKey BIT STRING, not the whole SubjectPublicKeyInfo (a known interop trap) —
and the serial number in lowercase hex without leading zeros. A CSMS may spell hex in either case and may ask
for SHA-384 or SHA-512, so comparisons recompute with the request's algorithm and ignore case.
"""

from __future__ import annotations

import hashlib
from collections.abc import Mapping
from typing import TYPE_CHECKING

from appliance.certs.crypto import serialization

if TYPE_CHECKING:
    from cryptography.hazmat.primitives.asymmetric.types import CertificatePublicKeyTypes

    from appliance.certs.crypto import x509

#: OCPP's HashAlgorithmEnumType → the hashlib name (the same digests cryptography's would give).
ALGORITHMS = {"SHA256": "sha256", "SHA384": "sha384", "SHA512": "sha512"}
DEFAULT_ALGORITHM = "SHA256"


def _digest(algorithm: str, data: bytes) -> str:
    return hashlib.new(ALGORITHMS[algorithm], data).hexdigest()


def _tlv(data: bytes, offset: int) -> tuple[int, int, int]:
    """(tag, start of value, end of value) of the DER element at `offset` (definite lengths only, as DER is)."""
    tag = data[offset]
    first = data[offset + 1]
    if first < 0x80:
        return tag, offset + 2, offset + 2 + first
    count = first & 0x7F
    length = int.from_bytes(data[offset + 2 : offset + 2 + count], "big")
    start = offset + 2 + count
    return tag, start, start + length


def public_key_bits(key: CertificatePublicKeyTypes) -> bytes:
    """The subjectPublicKey BIT STRING's value (without its unused-bits octet), for any key type.

    Read out of the SubjectPublicKeyInfo DER rather than rebuilt per key type, so RSA, EC and EdDSA keys all
    take the one path: SEQUENCE { algorithm AlgorithmIdentifier, subjectPublicKey BIT STRING }.
    """
    spki = key.public_bytes(serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo)
    tag, start, _ = _tlv(spki, 0)
    if tag != 0x30:
        raise ValueError("SubjectPublicKeyInfo is not a SEQUENCE")
    _, _, after_algorithm = _tlv(spki, start)
    tag, bits_start, bits_end = _tlv(spki, after_algorithm)
    if tag != 0x03 or spki[bits_start] != 0:
        raise ValueError("subjectPublicKey is not a whole-octet BIT STRING")
    return spki[bits_start + 1 : bits_end]


def serial_hex(cert: x509.Certificate) -> str:
    return format(cert.serial_number, "x")


def hash_data(
    cert: x509.Certificate, issuer_key: CertificatePublicKeyTypes, algorithm: str = DEFAULT_ALGORITHM
) -> dict[str, str]:
    """CertificateHashDataType of `cert`, whose issuer holds `issuer_key` (a root's own key)."""
    return {
        "hashAlgorithm": algorithm,
        "issuerNameHash": _digest(algorithm, cert.issuer.public_bytes()),
        "issuerKeyHash": _digest(algorithm, public_key_bits(issuer_key)),
        "serialNumber": serial_hex(cert),
    }


def _serial(value: str) -> str:
    return value.strip().lower().lstrip("0") or "0"


def same(wanted: Mapping[str, object], actual: Mapping[str, str]) -> bool:
    """Whether a CSMS's hash data names the certificate `actual` describes (same algorithm; hex in any case,
    serial leading zeros ignored)."""
    return (
        wanted.get("hashAlgorithm") == actual["hashAlgorithm"]
        and str(wanted.get("issuerNameHash", "")).lower() == actual["issuerNameHash"]
        and str(wanted.get("issuerKeyHash", "")).lower() == actual["issuerKeyHash"]
        and _serial(str(wanted.get("serialNumber", ""))) == _serial(actual["serialNumber"])
    )


def names(wanted: Mapping[str, object], cert: x509.Certificate) -> bool:
    """Whether the hash data's issuer name and serial number are `cert`'s (no issuer key needed): enough to
    recognise the station's own certificate, which a CSMS must not delete."""
    algorithm = str(wanted.get("hashAlgorithm"))
    if algorithm not in ALGORITHMS:
        return False
    return str(wanted.get("issuerNameHash", "")).lower() == _digest(algorithm, cert.issuer.public_bytes()) and _serial(
        str(wanted.get("serialNumber", ""))
    ) == _serial(serial_hex(cert))
