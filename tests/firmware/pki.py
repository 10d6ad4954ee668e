"""A manufacturer's PKI for the firmware tests: a root (the ManufacturerRootCertificate) and signing certificates
(RSA and ECDSA) made with `cryptography`, plus images packed and signed the way a station maker does."""

from __future__ import annotations

import datetime
from dataclasses import dataclass
from pathlib import Path

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec, rsa
from cryptography.x509.oid import NameOID

from appliance.firmware import image, signing

Key = rsa.RSAPrivateKey | ec.EllipticCurvePrivateKey


def _name(cn: str) -> x509.Name:
    return x509.Name(
        [x509.NameAttribute(NameOID.ORGANIZATION_NAME, "TestVendor"), x509.NameAttribute(NameOID.COMMON_NAME, cn)]
    )


def _key(kind: str) -> Key:
    return rsa.generate_private_key(65537, 2048) if kind == "rsa" else ec.generate_private_key(ec.SECP256R1())


def _cert(
    subject: str,
    key: Key,
    issuer: x509.Certificate | None,
    issuer_key: Key,
    *,
    ca: bool,
    days: tuple[int, int] = (-1, 365),
) -> x509.Certificate:
    now = datetime.datetime.now(datetime.UTC)
    builder = (
        x509.CertificateBuilder()
        .subject_name(_name(subject))
        .issuer_name(issuer.subject if issuer else _name(subject))
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now + datetime.timedelta(days=days[0]))
        .not_valid_after(now + datetime.timedelta(days=days[1]))
        .add_extension(x509.BasicConstraints(ca=ca, path_length=None), critical=True)
    )
    return builder.sign(issuer_key, hashes.SHA256())


def pem(cert: x509.Certificate) -> str:
    return cert.public_bytes(serialization.Encoding.PEM).decode()


def key_pem(key: Key) -> bytes:
    return key.private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
    )


@dataclass
class Signer:
    key: Key
    cert: x509.Certificate

    @property
    def cert_pem(self) -> str:
        return pem(self.cert)

    def sign(self, path: Path) -> str:
        return signing.sign(key_pem(self.key), path)


class Manufacturer:
    """A root and its signing certificates; `root_file` is what `[firmware] manufacturer_root_file` names."""

    def __init__(self, directory: Path, name: str = "Mfr Root") -> None:
        self.root_key = _key("ec")
        self.root = _cert(name, self.root_key, None, self.root_key, ca=True)
        self.root_file = directory / f"{name.replace(' ', '-').lower()}.pem"
        self.root_file.write_text(pem(self.root))

    def signer(self, kind: str = "rsa", *, days: tuple[int, int] = (-1, 365)) -> Signer:
        key = _key(kind)
        return Signer(key, _cert(f"Firmware signing {kind}", key, self.root, self.root_key, ca=False, days=days))


def make_image(directory: Path, version: str, *, entry_script: str | None = None, size: int = 2000) -> Path:
    """A firmware image of `version` whose payload is a file of `size` bytes and optionally an entry script."""
    payload = directory / f"payload-{version}"
    payload.mkdir(parents=True, exist_ok=True)
    (payload / "release.bin").write_bytes(bytes(range(256)) * (size // 256) + b"x" * (size % 256))
    entry = None
    if entry_script is not None:
        script = payload / "start"
        script.write_text(entry_script)
        script.chmod(0o755)
        entry = "start"
    out = directory / f"firmware-{version}.img"
    image.pack(version, out, payload, entry)
    return out
