"""CertificateHashDataType computed two independent ways: ours (DER walk of the SubjectPublicKeyInfo) against
`cryptography`'s RFC 6960 OCSP CertID (issuerNameHash, issuerKeyHash, serialNumber), for RSA and EC issuers,
every algorithm OCPP allows, a leaf under a sub-CA, and serial numbers with leading zero nibbles."""

from __future__ import annotations

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec, rsa
from cryptography.x509 import ocsp

from appliance.certs import hashdata
from appliance.lab.csms.pki import certificate, new_key

OCSP_HASHES = {"SHA256": hashes.SHA256, "SHA384": hashes.SHA384, "SHA512": hashes.SHA512}


def ocsp_cert_id(cert: x509.Certificate, issuer: x509.Certificate, algorithm: str) -> dict[str, str]:
    request = ocsp.OCSPRequestBuilder().add_certificate(cert, issuer, OCSP_HASHES[algorithm]()).build()
    return {
        "hashAlgorithm": algorithm,
        "issuerNameHash": request.issuer_name_hash.hex(),
        "issuerKeyHash": request.issuer_key_hash.hex(),
        "serialNumber": format(request.serial_number, "x"),
    }


def key_bits_by_type(key: object) -> bytes:
    """The BIT STRING content rebuilt per key type: PKCS#1 RSAPublicKey, or the uncompressed EC point."""
    if isinstance(key, rsa.RSAPublicKey):
        return key.public_bytes(serialization.Encoding.DER, serialization.PublicFormat.PKCS1)
    assert isinstance(key, ec.EllipticCurvePublicKey)
    return key.public_bytes(serialization.Encoding.X962, serialization.PublicFormat.UncompressedPoint)


@pytest.mark.parametrize("kind", ["rsa", "ec"])
@pytest.mark.parametrize("algorithm", ["SHA256", "SHA384", "SHA512"])
def test_root_hash_data_equals_ocsp_cert_id(kind: str, algorithm: str) -> None:
    key = new_key(kind)
    root = certificate("O=Lab,CN=Hash Root", key, serial=0x00ABCDEF)
    ours = hashdata.hash_data(root, root.public_key(), algorithm)
    assert ours == ocsp_cert_id(root, root, algorithm)
    assert ours["serialNumber"] == "abcdef"
    assert hashdata.public_key_bits(root.public_key()) == key_bits_by_type(root.public_key())


@pytest.mark.parametrize("kind", ["rsa", "ec"])
def test_leaf_under_sub_ca(kind: str) -> None:
    root_key, sub_key, leaf_key = new_key(kind), new_key(kind), new_key("ec")
    root = certificate("Root", root_key)
    sub = certificate("Sub", sub_key, issuer=root, issuer_key=root_key)
    leaf = certificate("Leaf", leaf_key, issuer=sub, issuer_key=sub_key, ca=False, serial=0x0F)
    ours = hashdata.hash_data(leaf, sub.public_key())
    assert ours == ocsp_cert_id(leaf, sub, "SHA256")
    assert ours["serialNumber"] == "f"
    assert hashdata.names(ours, leaf) and not hashdata.names(ours, sub)


def test_comparison_ignores_case_and_leading_zeros_but_not_algorithm() -> None:
    root = certificate("Root", new_key("ec"), serial=0x1A2B)
    actual = hashdata.hash_data(root, root.public_key())
    shouted = {
        **actual,
        "issuerNameHash": actual["issuerNameHash"].upper(),
        "issuerKeyHash": actual["issuerKeyHash"].upper(),
        "serialNumber": "001A2B",
    }
    assert hashdata.same(shouted, actual)
    assert not hashdata.same({**shouted, "hashAlgorithm": "SHA384"}, actual)
    assert not hashdata.same({**actual, "serialNumber": "1a2c"}, actual)
    key_hash = actual["issuerKeyHash"]
    other_first_byte = "ff" if key_hash[:2].lower() != "ff" else "00"  # "00" alone was the same 1 time in 256
    assert not hashdata.same({**actual, "issuerKeyHash": other_first_byte + key_hash[2:]}, actual)
