"""A CSMS operator's certificate authority for the lab: roots (good and deliberately bad), TLS server
certificates, and signing a station's CSR (A02/A03), all made with `cryptography`.

Lab equipment, not firmware: tests and the demo use it to play the CSMS side of certificate management and
Security Profile 3 (the station only ever sees the PEM it is sent).
"""

from __future__ import annotations

import ipaddress
import ssl
import tempfile
from datetime import UTC, datetime, timedelta
from pathlib import Path

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec, rsa
from cryptography.hazmat.primitives.asymmetric.types import CertificateIssuerPrivateKeyTypes
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID


def new_key(kind: str = "ec") -> CertificateIssuerPrivateKeyTypes:
    """An EC P-256 ("ec") or RSA 2048 ("rsa") private key."""
    if kind == "rsa":
        return rsa.generate_private_key(public_exponent=65537, key_size=2048)
    return ec.generate_private_key(ec.SECP256R1())


def pem(cert: x509.Certificate) -> str:
    return cert.public_bytes(serialization.Encoding.PEM).decode("ascii")


def key_pem(key: CertificateIssuerPrivateKeyTypes) -> bytes:
    return key.private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
    )


def certificate(
    subject: str,
    key: CertificateIssuerPrivateKeyTypes,
    *,
    issuer: x509.Certificate | None = None,
    issuer_key: CertificateIssuerPrivateKeyTypes | None = None,
    ca: bool = True,
    not_before: datetime | None = None,
    not_after: datetime | None = None,
    serial: int | None = None,
    hosts: tuple[str, ...] = (),
    public_key: object = None,
) -> x509.Certificate:
    """A certificate for `subject` (a CN, or an RFC 4514 string with '='), self-signed unless `issuer` is
    given. Defaults: valid from an hour ago for a year, a random serial."""
    now = datetime.now(UTC)
    name = (
        x509.Name.from_rfc4514_string(subject)
        if "=" in subject
        else x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, subject)])
    )
    signer_key = issuer_key if issuer_key is not None else key
    builder = (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(issuer.subject if issuer is not None else name)
        .public_key(public_key if public_key is not None else key.public_key())  # type: ignore[arg-type]
        .serial_number(serial if serial is not None else x509.random_serial_number())
        .not_valid_before(not_before or now - timedelta(hours=1))
        .not_valid_after(not_after or now + timedelta(days=365))
        .add_extension(x509.BasicConstraints(ca=ca, path_length=None), critical=True)
    )
    if ca:
        builder = builder.add_extension(
            x509.KeyUsage(
                digital_signature=True,
                content_commitment=False,
                key_encipherment=False,
                data_encipherment=False,
                key_agreement=False,
                key_cert_sign=True,
                crl_sign=True,
                encipher_only=False,
                decipher_only=False,
            ),
            critical=True,
        )
    if hosts:
        names: list[x509.GeneralName] = []
        for host in hosts:
            try:
                names.append(x509.IPAddress(ipaddress.ip_address(host)))
            except ValueError:
                names.append(x509.DNSName(host))
        builder = builder.add_extension(x509.SubjectAlternativeName(names), critical=False)
        builder = builder.add_extension(x509.ExtendedKeyUsage([ExtendedKeyUsageOID.SERVER_AUTH]), critical=False)
    return builder.sign(signer_key, hashes.SHA256())


class Authority:
    """A root CA (optionally with one sub-CA) that signs TLS server certificates and station CSRs."""

    def __init__(self, name: str = "Lab CSMS Root", *, kind: str = "ec", sub_ca: bool = False) -> None:
        self.key = new_key(kind)
        self.root = certificate(name, self.key)
        self.signer, self.signer_key = self.root, self.key
        self.intermediates: list[x509.Certificate] = []
        if sub_ca:
            self.signer_key = new_key(kind)
            self.signer = certificate(f"{name} Sub-CA", self.signer_key, issuer=self.root, issuer_key=self.key)
            self.intermediates = [self.signer]

    @property
    def root_pem(self) -> str:
        return pem(self.root)

    def sign_csr(
        self, csr_pem: str, *, days: float = 365, not_before: datetime | None = None, serial: int | None = None
    ) -> str:
        """The CSMS's CertificateSigned chain for a station's CSR: the leaf, then any sub-CA (root omitted)."""
        csr = x509.load_pem_x509_csr(csr_pem.encode("ascii"))
        if not csr.is_signature_valid:
            raise ValueError("the CSR's signature is not valid")
        start = not_before or datetime.now(UTC) - timedelta(minutes=5)
        leaf = (
            x509.CertificateBuilder()
            .subject_name(csr.subject)
            .issuer_name(self.signer.subject)
            .public_key(csr.public_key())
            .serial_number(serial if serial is not None else x509.random_serial_number())
            .not_valid_before(start)
            .not_valid_after(start + timedelta(days=days))
            .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
            .add_extension(x509.ExtendedKeyUsage([ExtendedKeyUsageOID.CLIENT_AUTH]), critical=False)
            .sign(self.signer_key, hashes.SHA256())
        )
        return "".join(pem(c) for c in (leaf, *self.intermediates))

    def issue(
        self, subject: str, *, key_kind: str = "ec", days: float = 365, hosts: tuple[str, ...] = ()
    ) -> tuple[str, bytes]:
        """A leaf (chain PEM, key PEM) signed by this authority: a station's factory certificate, or a TLS
        server certificate when `hosts` is given."""
        key = new_key(key_kind)
        not_after = datetime.now(UTC) + timedelta(days=days)  # a negative `days`: expired that long ago
        leaf = certificate(
            subject,
            key,
            issuer=self.signer,
            issuer_key=self.signer_key,
            ca=False,
            not_before=min(datetime.now(UTC), not_after) - timedelta(hours=1),
            not_after=not_after,
            hosts=hosts,
        )
        return "".join(pem(c) for c in (leaf, *self.intermediates)), key_pem(key)

    def server_context(
        self, host: str = "127.0.0.1", *, client_roots: list[x509.Certificate] | None = None
    ) -> ssl.SSLContext:
        """A TLS server context with a certificate for `host`; with `client_roots`, a client certificate
        chained to one of them is required (Security Profile 3)."""
        chain, key = self.issue(host, hosts=(host,))
        context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
        context.minimum_version = ssl.TLSVersion.TLSv1_2
        with tempfile.TemporaryDirectory() as tmp:
            cert_file, key_file = Path(tmp, "cert.pem"), Path(tmp, "key.pem")
            cert_file.write_text(chain)
            key_file.write_bytes(key)
            context.load_cert_chain(cert_file, key_file)
        if client_roots:
            context.verify_mode = ssl.CERT_REQUIRED
            context.load_verify_locations(cadata="".join(pem(c) for c in client_roots))
        return context
