"""TLS test equipment: a CSMS root CA and its certificates, TLS loopback CSMSs whose server side a test can make
bad and then good again, names that resolve to loopback, and a probe server that records what a client offers.

Everything is real: certificates from trustme/cryptography, OpenSSL on both sides, the loopback CSMS of
`appliance.lab.csms`. A server context is changed in place (certificate, versions, suites): OpenSSL applies a
context's settings to every new handshake, so one CSMS on one port can refuse the station first (the bad
certificate of TC_A_05, the TLS 1.1 of TC_A_06) and accept it afterwards, exactly as the Part 6 scenarios run.
"""

from __future__ import annotations

import contextlib
import datetime as dt
import ipaddress
import socket
import ssl
import threading
import warnings
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import trio
import trustme
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID

from appliance.lab.csms import LoopbackCsms
from appliance.lab.process import PASSWORD

STATION_ID = "CS001"
#: A name only our resolver knows (tests never depend on the host's DNS): it is 127.0.0.1.
CSMS_NAME = "csms.test"


def server_context(leaf: trustme.LeafCert) -> ssl.SSLContext:
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    leaf.configure_cert(context)
    return context


def peer_certificate(server: ssl.SSLContext, trust_pem: str) -> tuple[bytes, dict[str, Any]]:
    """Handshake in memory with `server` as a client trusting `trust_pem` (no host-name check, as the station's
    context): the server certificate as DER and as OpenSSL decoded it — what `check_peer_name` is given."""
    client = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
    client.check_hostname = False
    client.load_verify_locations(cadata=trust_pem)
    to_server, to_client = ssl.MemoryBIO(), ssl.MemoryBIO()
    from_client, from_server = ssl.MemoryBIO(), ssl.MemoryBIO()
    tls_client = client.wrap_bio(to_client, from_client)
    tls_server = server.wrap_bio(to_server, from_server, server_side=True)
    for _ in range(4):  # TLS 1.3 takes two flights each way
        for side, output, peer_input in ((tls_client, from_client, to_server), (tls_server, from_server, to_client)):
            with contextlib.suppress(ssl.SSLWantReadError):
                side.do_handshake()
            peer_input.write(output.read())
    der, decoded = tls_client.getpeercert(binary_form=True), tls_client.getpeercert()
    assert der is not None and decoded is not None, "the in-memory handshake did not complete"
    return der, dict(decoded)


def tls_csms(context: ssl.SSLContext, port: int = 0) -> LoopbackCsms:
    return LoopbackCsms(port=port, passwords={STATION_ID: PASSWORD}, ssl_context=context, heartbeat_interval=300)


def self_signed(directory: Path, host: str = "127.0.0.1") -> Path:
    """A certificate signed by its own key, naming `host` correctly (only its issuer is wrong): cert+key PEM."""
    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, host)])
    now = dt.datetime.now(dt.UTC)
    cert = (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(name)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - dt.timedelta(hours=1))
        .not_valid_after(now + dt.timedelta(days=1))
        .add_extension(x509.SubjectAlternativeName([x509.IPAddress(ipaddress.ip_address(host))]), False)
        .sign(key, hashes.SHA256())
    )
    path = directory / "self-signed.pem"
    path.write_bytes(
        cert.public_bytes(serialization.Encoding.PEM)
        + key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption())
    )
    return path


@dataclass
class Bad:
    """One way a CSMS's TLS can be wrong: how to make a context so, the cause the station must log, its event."""

    name: str
    apply: Callable[[ssl.SSLContext, trustme.CA, Path], None]
    cause: str
    event: str
    host: str = "127.0.0.1"
    #: Served by a plain `ssl` server (ProbeServer) rather than the loopback CSMS: asyncio's TLS drops the
    #: connection without the alert OpenSSL sends (protocol_version, handshake_failure), and those alerts are
    #: what tells a client why — as a real CSMS's TLS stack sends them.
    plain_server: bool = False


def _leaf(make: Callable[[trustme.CA], trustme.LeafCert]) -> Callable[[ssl.SSLContext, trustme.CA, Path], None]:
    return lambda context, ca, _: make(ca).configure_cert(context)


def _tls_1_1(context: ssl.SSLContext, ca: trustme.CA, _: Path) -> None:
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", DeprecationWarning)  # TLS 1.1 is the point
        context.minimum_version = ssl.TLSVersion.TLSv1
        context.maximum_version = ssl.TLSVersion.TLSv1_1
    context.set_ciphers("DEFAULT:@SECLEVEL=0")  # OpenSSL 3 refuses TLS 1.1 at the default security level


def _foreign_suite(context: ssl.SSLContext, ca: trustme.CA, _: Path) -> None:
    """TLS 1.2 with only ECDHE-RSA-AES128-GCM-SHA256: a sound suite, but not one of OCPP's."""
    ca.issue_cert("127.0.0.1", key_type=trustme.KeyType.RSA).configure_cert(context)
    context.maximum_version = ssl.TLSVersion.TLSv1_2
    context.set_ciphers("ECDHE-RSA-AES128-GCM-SHA256")


def make_good(context: ssl.SSLContext, ca: trustme.CA, host: str = "127.0.0.1") -> None:
    """The configured server certificate and ordinary settings again."""
    ca.issue_cert(host).configure_cert(context)
    context.minimum_version = ssl.TLSVersion.TLSv1_2
    context.maximum_version = ssl.TLSVersion.MAXIMUM_SUPPORTED
    context.set_ciphers("DEFAULT")


_NOW = dt.datetime.now(dt.UTC)
BAD: list[Bad] = [
    Bad(
        "other-ca",
        _leaf(lambda ca: trustme.CA().issue_cert("127.0.0.1")),
        "unknown CA (not issued by an installed CSMS root certificate)",
        "InvalidCsmsCertificate",
    ),
    Bad(
        "expired",
        _leaf(
            lambda ca: ca.issue_cert(
                "127.0.0.1", not_before=_NOW - dt.timedelta(days=30), not_after=_NOW - dt.timedelta(days=1)
            )
        ),
        "certificate has expired",
        "InvalidCsmsCertificate",
    ),
    Bad(
        "not-yet-valid",
        _leaf(
            lambda ca: ca.issue_cert(
                "127.0.0.1", not_before=_NOW + dt.timedelta(days=1), not_after=_NOW + dt.timedelta(days=30)
            )
        ),
        "certificate not yet valid",
        "InvalidCsmsCertificate",
    ),
    Bad(
        "wrong-host",
        _leaf(lambda ca: ca.issue_cert("other.test")),
        "name mismatch: the certificate is for other.test, the CSMS is 127.0.0.1",
        "InvalidCsmsCertificate",
    ),
    Bad(
        "wildcard",
        _leaf(lambda ca: ca.issue_cert("*.test")),
        "wildcard certificate (*.test) refused",
        "InvalidCsmsCertificate",
        host=CSMS_NAME,
    ),
    Bad(
        "self-signed",
        lambda context, ca, tmp: context.load_cert_chain(self_signed(tmp)),
        "self-signed certificate",
        "InvalidCsmsCertificate",
    ),
    Bad("tls-1.1", _tls_1_1, "protocol version refused", "InvalidTLSVersion", plain_server=True),
    Bad("non-ocpp-suite", _foreign_suite, "no common cipher suite", "InvalidTLSCipherSuite", plain_server=True),
]


class LoopbackNames(trio.abc.HostnameResolver):
    """Trio's resolver for this run: CSMS_NAME is 127.0.0.1, everything else as the host resolves it."""

    async def getaddrinfo(
        self,
        host: bytes | str | None,
        port: bytes | str | int | None,
        family: int = 0,
        type: int = 0,
        proto: int = 0,
        flags: int = 0,
    ) -> Any:
        name = host.decode() if isinstance(host, bytes) else host
        if name == CSMS_NAME:
            name = "127.0.0.1"
        return await trio.to_thread.run_sync(socket.getaddrinfo, name, port, family, type, proto, flags)

    async def getnameinfo(self, sockaddr: tuple[str, int] | tuple[str, int, int, int], flags: int) -> tuple[str, str]:
        return await trio.to_thread.run_sync(socket.getnameinfo, sockaddr, flags)


@dataclass
class Hello:
    version: str | None = None
    cipher: str | None = None
    offered: list[str] = field(default_factory=list)  # the client's suites the (permissive) server also knows
    error: str | None = None


def all_suites(leaf: trustme.LeafCert, maximum: ssl.TLSVersion) -> ssl.SSLContext:
    """A server context knowing every suite OpenSSL has, so `shared_ciphers()` is the client's whole offer."""
    context = server_context(leaf)
    context.maximum_version = maximum
    context.set_ciphers("ALL:@SECLEVEL=0")
    return context


class ProbeServer:
    """A plain TLS server in a thread: it completes or fails each handshake with `context` (sending OpenSSL's
    alerts), records what the client offered and what was agreed, and closes the connection."""

    def __init__(self, context: ssl.SSLContext) -> None:
        self.context = context
        self.hellos: list[Hello] = []
        self._listener = socket.create_server(("127.0.0.1", 0))
        self.port = self._listener.getsockname()[1]
        self._thread = threading.Thread(target=self._serve, daemon=True)
        self._thread.start()

    def _serve(self) -> None:
        while True:
            try:
                conn, _ = self._listener.accept()
            except OSError:
                return
            hello = Hello()
            try:
                with self.context.wrap_socket(conn, server_side=True) as tls:
                    hello.version = tls.version()
                    hello.cipher = (tls.cipher() or ("",))[0]
                    hello.offered = [c[0] for c in tls.shared_ciphers() or []]
            except (OSError, ssl.SSLError) as exc:
                hello.error = str(exc)
            self.hellos.append(hello)

    def close(self) -> None:
        with contextlib.suppress(OSError):
            self._listener.shutdown(socket.SHUT_RDWR)  # wakes the blocked accept()
        self._listener.close()
        self._thread.join(5)
